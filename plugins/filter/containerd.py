# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""containerd_nvidia_dropin: the nvidia runtime drop-in for containerd (documented in containerd_nvidia_dropin.yml)."""

from __future__ import annotations

import copy
import datetime
import json
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
# containerd replaces a plugin's whole section with an imported file's, so this file carries the main
# config's {cri} section too; the role re-syncs it from the main config on each run.
"""
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


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
    raise AnsibleFilterError("containerd_nvidia_dropin: cannot write %r as TOML" % (value,))


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


def containerd_nvidia_dropin(main_text, version, handler, binary, default_runtime=False, config_path=None):
    """The drop-in's TOML text: the main config's CRI section plus containerd.runtimes.<handler>."""
    name = config_path or "containerd's main config"
    try:
        version = int(version)
    except (TypeError, ValueError):
        version = None
    if version not in CRI_PLUGINS:
        raise AnsibleFilterError("containerd_nvidia_dropin: config version must be 2 or 3 for %s" % name)
    if tomllib is None:
        raise AnsibleFilterError("containerd_nvidia_dropin needs Python 3.11 or later on the controller (tomllib)")
    try:
        main = tomllib.loads(main_text or "")
    except (tomllib.TOMLDecodeError, TypeError) as e:
        raise AnsibleFilterError("%s is not valid TOML (%s): fix it, containerd cannot read it either" % (name, e))
    cri = CRI_PLUGINS[version]
    section = copy.deepcopy((main.get("plugins") or {}).get(cri) or {})
    containerd = section.setdefault("containerd", {})
    runtimes = containerd.setdefault("runtimes", {})
    # Like nvidia-ctk: the new entry starts as a copy of the default runtime's, so options such as
    # SystemdCgroup stay the same for pods of either runtime.
    base = runtimes.get(containerd.get("default_runtime_name")) or runtimes.get("runc") or {}
    runtime = copy.deepcopy(base)
    runtime.setdefault("runtime_type", "io.containerd.runc.v2")
    runtime.setdefault("options", {})["BinaryName"] = binary
    runtimes[handler] = runtime
    if default_runtime:
        containerd["default_runtime_name"] = handler
    return HEADER.format(cri=cri) + to_toml({"version": version, "plugins": {cri: section}})


class FilterModule(object):
    def filters(self):
        return {"containerd_nvidia_dropin": containerd_nvidia_dropin}
