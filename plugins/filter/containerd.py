# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container runtime config that gpu_runtime writes on GPU nodes (each filter is documented in its
NAME.yml): containerd_nvidia_dropin, containerd_main_config, containerd_config_info, containerd_runtime_check,
crio_nvidia_dropin. Pure functions of the files' texts, so every rule is unit-tested without a node."""

from __future__ import annotations

import base64
import copy
import datetime
import json
import os
import re

from ansible.errors import AnsibleFilterError

try:
    import tomllib
except ImportError:  # Python < 3.11 (ansible-core 2.16 to 2.18 controllers)
    tomllib = None

# The CRI plugin that holds containerd.runtimes, by config version.
CRI_PLUGINS = {2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}
HEADER = """\
# Managed by nimguard.k8s.gpu_runtime: the nvidia runtime, as `nvidia-ctk runtime configure` adds it.
# containerd before 2.1 replaces a plugin's whole section with an imported file's, so this file carries the
# effective {cri} section too (main config and its other imports); the role re-syncs it on each run.
"""
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# A RuntimeClass handler is a DNS-1123 label (the API server refuses anything else).
HANDLER = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Registry settings that hold credentials in a containerd 1.x CRI section (never carried without consent).
REGISTRY_SECRETS = ("auths", "headers")


def _fail(msg):
    raise AnsibleFilterError(msg)


def _key(key):
    return key if BARE_KEY.match(key) else _string(key)


def _string(text):
    # ensure_ascii=False: json's \\uD83D-style surrogate pairs are not valid TOML escapes. DEL must be escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value):
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # inf, nan and 1e+20 read the same in TOML
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join("%s = %s" % (_key(k), _value(value[k])) for k in sorted(value)) + "}"
    return _fail("cannot write %r as TOML" % (type(value).__name__,))


def _table(table, path, lines):
    """Append a table's keys: scalars and arrays first, then each subtable under its own [header]."""
    scalars = [k for k in sorted(table) if not isinstance(table[k], dict)]
    tables = [k for k in sorted(table) if isinstance(table[k], dict)]
    if path and (scalars or not tables):  # a header only where it holds keys, or keeps an empty table
        lines += ["", "[%s]" % ".".join(_key(k) for k in path)]
    lines += ["%s = %s" % (_key(k), _value(table[k])) for k in scalars]
    for k in tables:
        _table(table[k], path + [k], lines)


def to_toml(data):
    """Deterministic TOML text of a dict: keys sorted, so the same data always gives the same bytes."""
    lines = []
    _table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _load(text, name):
    if tomllib is None:
        _fail("the gpu_runtime filters need Python 3.11 or later on the controller (tomllib)")
    try:
        return tomllib.loads(text or "")
    except (tomllib.TOMLDecodeError, TypeError) as e:
        # The parser's message names a line and column, never a value.
        return _fail("%s is not valid TOML (%s): fix it, containerd cannot read it either" % (name, e))


def _version(version, name):
    try:
        version = int(version)
    except (TypeError, ValueError):
        version = None
    if version not in CRI_PLUGINS:
        _fail("containerd config version must be 2 or 3 (containerd 1.x or 2.x) for %s: set "
              "gpu_runtime_containerd_config_version" % name)
    return version


def check_handler(handler, binary, field="gpu_runtime_runtime_binary"):
    """The runtime's name and path are pasted into TOML keys and into commands: refuse what could break out."""
    if not isinstance(handler, str) or not HANDLER.match(handler):
        _fail("gpu_runtime_handler %r is not a valid RuntimeClass handler: use a lowercase DNS label (letters, digits "
              "and '-', at most 63 characters), for example nvidia" % (handler,))
    if (not isinstance(binary, str) or not binary.startswith("/") or re.search(r"[\x00-\x1f\x7f]", binary)
            or "/../" in binary + "/"):
        _fail("%s %r is not an absolute path: set the full path of nvidia-container-runtime, for example "
              "/usr/bin/nvidia-container-runtime" % (field, binary))


# ---- containerd: the effective config --------------------------------------------------------------------------


def _merge_deep(to, frm):
    """containerd 2.1+ (mergo with override): tables merged key by key, arrays appended without duplicates."""
    for key, value in frm.items():
        if isinstance(value, dict) and isinstance(to.get(key), dict):
            _merge_deep(to[key], value)
        elif isinstance(value, list) and isinstance(to.get(key), list):
            to[key] = to[key] + [v for v in value if v not in to[key]]
        else:
            to[key] = copy.deepcopy(value)


def effective_plugins(main, imports, version):
    """The plugins table containerd builds from the main config and its imports, in order: containerd 1.x
    (config version 2) replaces a plugin's whole section with an imported file's; 2.x merges them."""
    plugins = copy.deepcopy(main.get("plugins") or {})
    for doc in imports:
        for name, section in (doc.get("plugins") or {}).items():
            if version == 2 or not isinstance(plugins.get(name), dict):
                plugins[name] = copy.deepcopy(section)
            else:
                _merge_deep(plugins[name], section)
    return plugins


def _registry_secrets(section):
    """Paths (never values) of the credential settings in a containerd 1.x CRI section's registry table."""
    registry = section.get("registry") or {}
    found = ["registry.%s" % k for k in REGISTRY_SECRETS if registry.get(k)]
    for host, conf in sorted((registry.get("configs") or {}).items()):
        if isinstance(conf, dict) and conf.get("auth"):
            found.append("registry.configs.%s.auth" % _key(host))
    return found


def _import_docs(imports, version):
    """The imported files' TOML, from slurp results ({source, content} in base64) or {path, text}."""
    docs = []
    for item in imports or []:
        path = item.get("path") or item.get("source")
        text = item["text"] if "text" in item else base64.b64decode(item.get("content") or "").decode("utf-8")
        doc = _load(text, path)
        if doc.get("imports"):
            _fail("%s imports other files: gpu_runtime reads one level of imports. Fix: list those files in the main "
                  "config's imports instead" % path)
        if "version" in doc and doc["version"] != version:
            _fail("%s has config version %s, the main config %s: give every file the same version"
                  % (path, doc["version"], version))
        docs.append(doc)
    return docs


def containerd_nvidia_dropin(main_text, version, handler, binary, default_runtime=False, config_path=None,
                             imports=None, allow_registry_auth=False):
    """The drop-in's TOML text: the effective CRI runtime section plus containerd.runtimes.<handler>."""
    name = config_path or "containerd's main config"
    version = _version(version, name)
    check_handler(handler, binary)
    main = _load(main_text, name)
    cri = CRI_PLUGINS[version]
    section = copy.deepcopy(effective_plugins(main, _import_docs(imports, version), version).get(cri) or {})
    secrets = _registry_secrets(section) if version == 2 else []
    if secrets and not allow_registry_auth:
        _fail("containerd's CRI section (%s and its imports) holds registry credentials (%s). containerd 1.x replaces "
              "that whole section with the drop-in's, so the drop-in would have to copy them. Fix: move registry "
              "credentials to the kubelet (image pull secrets or a credential provider) or to registry host files "
              "(config_path), or set gpu_runtime_containerd_allow_registry_auth: true to copy them into a drop-in "
              "readable by root only" % (name, ", ".join(secrets)))
    containerd = section.setdefault("containerd", {})
    runtimes = containerd.setdefault("runtimes", {})
    # As nvidia-ctk: the new entry starts as a copy of the first low-level runtime found (the default unless it
    # is an nvidia one, runc, crun), so options such as SystemdCgroup stay the same for pods of either runtime.
    default = containerd.get("default_runtime_name") or ""
    candidates = ([] if default.startswith("nvidia") or not default else [default]) + ["runc", "crun"]
    base = next((runtimes[r] for r in candidates if isinstance(runtimes.get(r), dict)), None)
    if base is None:
        base = {"runtime_type": "io.containerd.runc.v2", "runtime_root": "", "runtime_engine": "",
                "privileged_without_host_devices": False}
    runtime = copy.deepcopy(base)
    if not runtime.get("runtime_type"):
        runtime["runtime_type"] = "io.containerd.runc.v2"
    runtime.setdefault("options", {})["BinaryName"] = binary
    runtimes[handler] = runtime
    if default_runtime:
        containerd["default_runtime_name"] = handler
    elif default == handler:
        del containerd["default_runtime_name"]
    return HEADER.format(cri=cri) + to_toml({"version": version, "plugins": {cri: section}})


# ---- containerd: the main config's imports line ----------------------------------------------------------------


def _skip(text, i):
    """The offset after the string or comment starting at text[i] (TOML's four string forms and # comments)."""
    c, n = text[i], len(text)
    if c == "#":
        end = text.find("\n", i)
        return n if end < 0 else end
    quote = c * 3 if text.startswith(c * 3, i) else c
    i += len(quote)
    while i < n and not text.startswith(quote, i):
        i += 2 if c == '"' and text[i] == "\\" else 1
    return i + len(quote)


def _first_table_offset(text):
    """Offset of the line of the first table header ([x] or [[x]]) of a TOML text, len(text) when it has none:
    top-level keys must stay above it. Strings, comments and multi-line arrays are skipped: their brackets never
    count as headers."""
    i, n, depth, line_start = 0, len(text), 0, True
    while i < n:
        c = text[i]
        if c in "#\"'":
            i, line_start = _skip(text, i), line_start and c == "#"
            continue
        if c == "\n":
            line_start = True
        elif c not in " \t\r":
            if c == "[" and depth == 0 and line_start:
                return text.rfind("\n", 0, i) + 1
            line_start = False
            depth += 1 if c == "[" else -1 if c == "]" else 0
        i += 1
    return n


def _assignment_span(text, key):
    """(start, stop) of the lines of a top-level `key = value` in text (the part above the first table), the
    value's continuation lines and a trailing comment included; None when there is none."""
    match = re.search(r"(?m)^[ \t]*%s[ \t]*=" % re.escape(key), text)
    if not match:
        return None
    i, n, depth = match.end(), len(text), 0
    while i < n:
        c = text[i]
        if c in "#\"'":
            i = _skip(text, i)
            continue
        if c == "\n" and depth == 0:
            return match.start(), i + 1
        depth += 1 if c == "[" else -1 if c == "]" else 0
        i += 1
    return match.start(), n


def containerd_main_config(text, dropin_glob, version, config_path=None):
    """The main config's text with dropin_glob in its top-level imports (and a version line when it had none),
    everything else byte for byte as it was; the text unchanged when both are there already."""
    name = config_path or "containerd's main config"
    version = _version(version, name)
    text = text or ""
    doc = _load(text, name)
    imports = doc.get("imports") or []
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        _fail("imports in %s is not a list of paths: fix it, containerd cannot read it either" % name)
    if dropin_glob in imports and "version" in doc:
        return text
    if "version" not in doc and any(not k.startswith("io.containerd.") for k in doc.get("plugins") or {}):
        _fail("%s has no version line and uses version 1 plugin names (%s): gpu_runtime writes version %s "
              "drop-ins. Fix: migrate it (containerd config migrate) or set version = 2 with full plugin names"
              % (name, ", ".join(sorted(doc["plugins"])), version))
    wanted = imports if dropin_glob in imports else imports + [dropin_glob]
    end = _first_table_offset(text)
    head, tail = text[:end], text[end:]
    span = _assignment_span(head, "imports")
    if span:  # rewritten in place, on one line
        head = head[:span[0]] + head[span[1]:]
    lines = ([] if "version" in doc else ["version = %d" % version]) + ["imports = [%s]" % ", ".join(
        _string(i) for i in wanted)]
    if "version" in doc:  # after the version line, where nvidia-ctk puts it
        at = _assignment_span(head, "version")
        at = at[1] if at else len(head)
    else:  # a new version line goes first, so that it reads like containerd's own configs
        at = 0
    before = head[:at] + ("\n" if at and not head[:at].endswith("\n") else "")
    new = before + "\n".join(lines) + "\n" + head[at:] + tail
    expected = dict(doc, imports=wanted)
    expected.setdefault("version", version)
    if _load(new, name) != expected:  # a layout this editor does not know: never write what we did not mean
        _fail("could not add the imports line to %s safely. Fix: add imports = [%s] at its top, above the first "
              "[table], by hand" % (name, _string(dropin_glob)))
    return new


def containerd_config_info(main_text, config_path, version="auto", containerd_version=""):
    """What the role needs to know of the main config before it reads anything else: the config version (from
    its version line; for a new file, 3 when `containerd --version` says 2.x, else 2) and what it imports as find
    arguments [{paths, patterns}], in containerd's order. containerd globs an entry with * as it is
    (filepath.Glob) and resolves other relative entries against the main config's folder; a literal name's [ and ?
    are escaped so that find matches that file only."""
    doc = _load(main_text, config_path)
    major = re.search(r"\sv?(\d+)\.\d+", containerd_version or "")
    major = int(major.group(1)) if major else None
    if str(version) == "auto":
        version = doc.get("version", 3 if major and major >= 2 else 2)
    version = _version(version, config_path)
    if version == 3 and major == 1:
        _fail("%s is config version 3, which only containerd 2.x reads, and this node runs containerd 1.x (%s). Fix: "
              "write version 2 (containerd 1.x) or upgrade containerd" % (config_path, containerd_version.strip()))
    if "version" in doc and doc["version"] != version:
        _fail("%s has config version %s, not %s: leave gpu_runtime_containerd_config_version at auto or set it to "
              "the file's version" % (config_path, doc["version"], version))
    imports = []
    for entry in doc.get("imports") or []:
        if "*" in entry:
            path = entry
        else:
            path = os.path.normpath(entry if os.path.isabs(entry) else
                                    os.path.join(os.path.dirname(config_path), entry))
            path = os.path.join(os.path.dirname(path), re.sub(r"([\[?])", r"[\1]", os.path.basename(path)))
        if not os.path.isabs(path):
            _fail("imports in %s has the relative pattern %s, which containerd resolves against its working folder. "
                  "Fix: make it absolute" % (config_path, _string(entry)))
        if "*" in os.path.dirname(path):
            _fail("imports in %s has %s, a pattern in a folder name: gpu_runtime reads patterns in file names only. "
                  "Fix: list the folders" % (config_path, _string(entry)))
        imports.append({"paths": os.path.dirname(path), "patterns": os.path.basename(path)})
    return {"version": version, "imports": imports}


def containerd_runtime_check(dump_text, version, handler, binary):
    """What `containerd config dump` (the config containerd would run with) says of the runtime: a short summary
    with no config values but the runtime's, or an error naming what is missing."""
    version = _version(version, "the dumped config")
    doc = _load(dump_text, "containerd config dump's output")
    section = (doc.get("plugins") or {}).get(CRI_PLUGINS[version]) or {}
    runtimes = (section.get("containerd") or {}).get("runtimes") or {}
    got = ((runtimes.get(handler) or {}).get("options") or {}).get("BinaryName")
    if got != binary:
        _fail("containerd would run without the %s runtime (its merged config has %s): a file imported after the "
              "drop-in replaces the CRI section, or the main config does not import the drop-in. Fix: give the "
              "drop-in a name that sorts last (gpu_runtime_containerd_dropin_name) and check the imports line"
              % (handler, "BinaryName %s" % _string(got) if got else "no such runtime"))
    return {"runtimes": sorted(runtimes), "default_runtime": (section.get("containerd") or {}).get(
        "default_runtime_name", ""), handler: {"BinaryName": got}}


# ---- CRI-O ------------------------------------------------------------------------------------------------------


def crio_nvidia_dropin(handler, binary, default_runtime=False, monitor_path="/usr/libexec/crio/conmon"):
    """The CRI-O drop-in's TOML text: crio.runtime.runtimes.<handler> (CRI-O merges drop-ins key by key)."""
    check_handler(handler, binary)
    runtime = {"runtime_path": binary, "runtime_type": "oci", "monitor_path": monitor_path}
    table = {"runtimes": {handler: runtime}}
    if default_runtime:
        table["default_runtime"] = handler
    return "# Managed by nimguard.k8s.gpu_runtime\n" + to_toml({"crio": {"runtime": table}})


class FilterModule(object):
    def filters(self):
        return {"containerd_nvidia_dropin": containerd_nvidia_dropin, "containerd_main_config": containerd_main_config,
                "containerd_config_info": containerd_config_info,
                "containerd_runtime_check": containerd_runtime_check, "crio_nvidia_dropin": crio_nvidia_dropin}
