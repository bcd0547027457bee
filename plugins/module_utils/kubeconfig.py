# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which cluster to talk to, and as whom: the connection options, their K8S_AUTH_* environment
fallbacks, and their resolution through a kubeconfig (file or dict, contexts, exec credential plugins),
the in-cluster service account, or explicit `host`/`api_key`/certificates. No HTTP here (client.py)."""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import time

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.redact import register

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    HAS_YAML = False

# Connection options, as kubernetes.core names them, with the same K8S_AUTH_* environment fallbacks.
# The env fallback is resolved by connection_params() so that the action plugin and the module agree.
CONNECTION_ARGS = dict(
    kubeconfig=dict(type="raw", no_log=False),
    context=dict(type="str"),
    host=dict(type="str"),
    api_key=dict(type="str", no_log=True),
    username=dict(type="str"),
    password=dict(type="str", no_log=True),
    ca_cert=dict(type="path", aliases=["ssl_ca_cert"]),
    client_cert=dict(type="path", aliases=["cert_file"]),
    client_key=dict(type="path", aliases=["key_file"], no_log=False),
    validate_certs=dict(type="bool", aliases=["verify_ssl"]),
    allow_plain_http_credentials=dict(type="bool", default=False),
    api_proxy=dict(type="str", aliases=["proxy"], no_log=True),  # may hold user:password
    no_proxy=dict(type="str"),
    proxy_headers=dict(type="dict", options=dict(
        proxy_basic_auth=dict(type="str", no_log=True),
        basic_auth=dict(type="str", no_log=True),
        user_agent=dict(type="str"),
    )),
    impersonate_user=dict(type="str"),
    impersonate_groups=dict(type="list", elements="str"),
    request_timeout=dict(type="float", default=30),
    retry_timeout=dict(type="float", default=20),
)

ENV_FALLBACK = dict(
    kubeconfig="K8S_AUTH_KUBECONFIG",
    context="K8S_AUTH_CONTEXT",
    host="K8S_AUTH_HOST",
    api_key="K8S_AUTH_API_KEY",
    username="K8S_AUTH_USERNAME",
    password="K8S_AUTH_PASSWORD",
    ca_cert="K8S_AUTH_SSL_CA_CERT",
    client_cert="K8S_AUTH_CERT_FILE",
    client_key="K8S_AUTH_KEY_FILE",
    validate_certs="K8S_AUTH_VERIFY_SSL",
    api_proxy="K8S_AUTH_PROXY",
    no_proxy="K8S_AUTH_NO_PROXY",
    impersonate_user="K8S_AUTH_IMPERSONATE_USER",
    impersonate_groups="K8S_AUTH_IMPERSONATE_GROUPS",
)


class Config(object):
    server = None
    verify = True
    ca_file = None
    ca_data = None
    cert_file = None
    key_file = None
    cert_data = None
    key_data = None
    token = None
    token_file = None
    username = None
    password = None
    proxy = None
    no_proxy = None
    proxy_headers = None
    impersonate_user = None
    impersonate_groups = ()
    plain_http_credentials = False
    tls_server_name = None
    exec_spec = None
    expires = None  # when the exec plugin's credential runs out (time.time() seconds), else None
    source = ""


def parse_bool(value, field):
    """A boolean from a string (an environment variable, a kubeconfig value), as Ansible parses them: yes/no,
    true/false, on/off, 1/0 (any case); empty or absent is unset (None); anything else is refused naming `field`,
    so that a typo never turns certificate checking off."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return boolean(text, strict=True)
    except TypeError:
        raise NimError("%s: %r is not a boolean. Fix: set it to true or false (yes/no, 1/0 also work), or leave it "
                       "unset." % (field, text))


def connection_params(params, env=None):
    """Connection options from task params, falling back to K8S_AUTH_* variables."""
    env = os.environ if env is None else env
    out = {}
    for key in CONNECTION_ARGS:
        value = params.get(key)
        if value is None and key in ENV_FALLBACK:
            value = env.get(ENV_FALLBACK[key])
            if key == "validate_certs":
                value = parse_bool(value, ENV_FALLBACK[key])
            elif key == "impersonate_groups" and value is not None:
                value = [g.strip() for g in value.split(",") if g.strip()]
        out[key] = value
    return out


def _read_kubeconfig(path):
    if not HAS_YAML:
        raise NimError("PyYAML is required to read kubeconfig files: pip install PyYAML")
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except (OSError, IOError) as e:
        raise NimError("kubeconfig: cannot read %s (%s). Fix: point `kubeconfig` (or K8S_AUTH_KUBECONFIG) at a "
                       "readable kubeconfig file." % (path, e.strerror or e))
    except yaml.YAMLError:
        raise NimError("kubeconfig: %s is not valid YAML. Fix: check the file with `kubectl config view "
                       "--kubeconfig %s`." % (path, path))
    if not isinstance(doc, dict):
        raise NimError("kubeconfig: %s is not a kubeconfig (a mapping with clusters, contexts, users). Fix: check "
                       "the file with `kubectl config view --kubeconfig %s`." % (path, path))
    return doc


# The file paths a kubeconfig entry may name; a relative one is relative to the file that names it.
_PATHS = dict(clusters=("certificate-authority",), users=("client-certificate", "client-key", "tokenFile"))


def _merge(paths):
    """Several kubeconfig files merged as kubectl merges $KUBECONFIG: the first file to name a cluster, context
    or user wins, the first current-context set wins, and each relative path is resolved against the folder of
    the file that names it (so it still points at the right file after the merge)."""
    merged = {"clusters": [], "contexts": [], "users": []}
    for path in paths:
        doc = _read_kubeconfig(path)
        folder = os.path.dirname(os.path.abspath(path))
        if not merged.get("current-context") and doc.get("current-context"):
            merged["current-context"] = doc["current-context"]
        for section in ("clusters", "contexts", "users"):
            seen = set(e.get("name") for e in merged[section])
            for entry in doc.get(section) or []:
                if not isinstance(entry, dict) or entry.get("name") in seen:
                    continue
                seen.add(entry.get("name"))
                body = dict(entry.get(section[:-1]) or {})
                for key in _PATHS.get(section, ()):
                    if body.get(key) and not os.path.isabs(body[key]):
                        body[key] = os.path.join(folder, body[key])
                merged[section].append(dict(entry, **{section[:-1]: body}))
    return merged


def _kubeconfig_files(kubeconfig, env):
    """The files to read: `kubeconfig` (a path, or paths joined like $KUBECONFIG; each must exist), else the
    files of $KUBECONFIG that exist (kubectl skips missing ones), else ~/.kube/config when it exists."""
    if kubeconfig:
        return [os.path.expanduser(p) for p in str(kubeconfig).split(os.pathsep) if p]
    listed = [os.path.expanduser(p) for p in (env.get("KUBECONFIG") or "").split(os.pathsep) if p]
    found = [p for p in listed if os.path.exists(p)]
    if found:
        return found
    default = os.path.expanduser("~/.kube/config")
    return [default] if os.path.exists(default) else []


def _named(entries, name, what, source):
    for entry in entries or []:
        if entry.get("name") == name:
            return entry.get(what) or {}
    known = ", ".join(sorted(e.get("name", "?") for e in entries or [])) or "none"
    raise NimError("kubeconfig %s: no %s named %r (known: %s). Fix: set `context` to one of the contexts "
                   "in the file, or fix the file." % (source, what, name, known))


def resolve_config(conn, env=None):
    """Turn connection options into a Config: kubeconfig (file or dict), in-cluster, then overrides."""
    env = os.environ if env is None else env
    cfg = Config()
    kubeconfig = conn.get("kubeconfig")
    doc = None
    if isinstance(kubeconfig, dict):
        doc, cfg.source = kubeconfig, "(inline)"
    elif kubeconfig or not conn.get("host"):
        paths = _kubeconfig_files(kubeconfig, env)
        if paths:
            doc, cfg.source = _merge(paths), os.pathsep.join(paths)
        elif env.get("KUBERNETES_SERVICE_HOST"):
            _in_cluster(cfg, env)
        else:
            raise NimError("No cluster to talk to: no kubeconfig found (looked at $KUBECONFIG and ~/.kube/config) "
                           "and no `host`. Fix: set `kubeconfig` (or K8S_AUTH_KUBECONFIG), or `host` with "
                           "`api_key` or client certificates.")
    if doc is not None:
        _from_kubeconfig(cfg, doc, conn.get("context"))
    if conn.get("host"):
        cfg.server = conn["host"]
    if conn.get("api_key"):
        cfg.token, cfg.token_file, cfg.exec_spec = conn["api_key"], None, None
    if conn.get("username"):
        cfg.username, cfg.password = conn["username"], conn.get("password")
    if conn.get("ca_cert"):
        cfg.ca_file, cfg.ca_data = conn["ca_cert"], None
    if conn.get("client_cert"):
        cfg.cert_file, cfg.cert_data = conn["client_cert"], None
    if conn.get("client_key"):
        cfg.key_file, cfg.key_data = conn["client_key"], None
    if conn.get("validate_certs") is not None:
        cfg.verify = bool(conn["validate_certs"])
    if conn.get("api_proxy"):
        cfg.proxy = conn["api_proxy"]
    cfg.no_proxy = conn.get("no_proxy")
    cfg.proxy_headers = conn.get("proxy_headers") or {}
    if conn.get("impersonate_user"):
        cfg.impersonate_user = conn["impersonate_user"]
    if conn.get("impersonate_groups"):
        cfg.impersonate_groups = tuple(conn["impersonate_groups"])
    cfg.plain_http_credentials = bool(conn.get("allow_plain_http_credentials"))
    if cfg.impersonate_groups and not cfg.impersonate_user:
        raise NimError("impersonate_groups: the API server impersonates groups only together with a user. Fix: set "
                       "`impersonate_user` too (or the kubeconfig user's `as`).")
    if not cfg.server:
        raise NimError("No API server address: the kubeconfig context has no cluster server and `host` is not "
                       "set. Fix: set `host: https://<api-server>:6443` or use a complete kubeconfig.")
    return cfg


def _in_cluster(cfg, env):
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    host, port = env["KUBERNETES_SERVICE_HOST"], env.get("KUBERNETES_SERVICE_PORT", "443")
    cfg.server = "https://%s:%s" % ("[%s]" % host if ":" in host else host, port)
    cfg.token_file = os.path.join(sa, "token")
    cfg.ca_file = os.path.join(sa, "ca.crt")
    cfg.source = "in-cluster service account"


def _from_kubeconfig(cfg, doc, context):
    context = context or doc.get("current-context")
    if not context:
        raise NimError("kubeconfig %s has no current-context. Fix: set `context` (or K8S_AUTH_CONTEXT)." % cfg.source)
    ctx = _named(doc.get("contexts"), context, "context", cfg.source)
    cluster = _named(doc.get("clusters"), ctx.get("cluster"), "cluster", cfg.source) if ctx.get("cluster") else {}
    user = _named(doc.get("users"), ctx.get("user"), "user", cfg.source) if ctx.get("user") else {}
    where = "kubeconfig %s" % cfg.source
    if user.get("auth-provider"):
        raise NimError(
            "%s (context %s): users[%s].user.auth-provider (%s) is not supported: the standard-library client "
            "cannot refresh it, and kubectl itself dropped the gcp and azure providers. Fix: use an exec "
            "credential plugin for the user (OIDC: `kubectl oidc-login get-token` from kubelogin; GKE: "
            "gke-gcloud-auth-plugin; AKS: `kubelogin get-token`), or a ServiceAccount token (`api_key`)."
            % (where, context, ctx.get("user"), (user["auth-provider"] or {}).get("name", "?")))
    cfg.server = cluster.get("server")
    cfg.verify = not parse_bool(cluster.get("insecure-skip-tls-verify"),
                                "%s: clusters[%s].cluster.insecure-skip-tls-verify" % (where, ctx.get("cluster")))
    cfg.ca_file = cluster.get("certificate-authority")
    cfg.ca_data = _b64(cluster.get("certificate-authority-data"))
    cfg.tls_server_name = cluster.get("tls-server-name")
    cfg.proxy = cluster.get("proxy-url")
    cfg.cert_file = user.get("client-certificate")
    cfg.key_file = user.get("client-key")
    cfg.cert_data = _b64(user.get("client-certificate-data"))
    cfg.key_data = _b64(user.get("client-key-data"))
    cfg.token = user.get("token")
    cfg.token_file = user.get("tokenFile")
    cfg.username, cfg.password = user.get("username"), user.get("password")
    cfg.exec_spec = user.get("exec")
    cfg.impersonate_user, cfg.impersonate_groups = user.get("as"), tuple(user.get("as-groups") or ())
    cfg.source = "%s (context %s)" % (cfg.source, context)


def _b64(value):
    return base64.b64decode(value).decode("utf-8") if value else None


# How a command is started where the task runs: run(argv, env_update=None, timeout=None) -> (exit code, stdout, stderr), text
# (AnsibleModule.run_command has no timeout: on the module path the task's own timeout applies).
# A module must start commands through AnsibleModule.run_command (ansible-test's pylint refuses subprocess in
# module_utils from 2.21 on); the action plugins run this code in Ansible's worker, without an AnsibleModule, and
# start them themselves. Each entry point sets its own: runner.run_module, plugin_utils/action.py.
COMMAND_RUNNER = {"run": None}


def _run_exec_plugin(spec):
    """kubeconfig `exec` credential plugins (EKS, GKE, OIDC): run it, return its ExecCredential status."""
    command = spec.get("command")
    env = dict((item["name"], item["value"]) for item in spec.get("env") or [])
    api_version = spec.get("apiVersion", "client.authentication.k8s.io/v1")
    env["KUBERNETES_EXEC_INFO"] = json.dumps({"apiVersion": api_version, "kind": "ExecCredential",
                                              "spec": {"interactive": False}})
    if not command or not shutil.which(command):
        raise NimError("kubeconfig exec plugin %r was not found on PATH. Fix: install it where the task runs, "
                       "or use a token/certificate kubeconfig." % command)
    returncode, stdout = COMMAND_RUNNER["run"]([command] + list(spec.get("args") or []), env, 60)[:2]
    if returncode != 0:
        raise NimError("kubeconfig exec plugin %r failed with exit code %d. Fix: run it by hand to see why "
                       "(its output is not shown because it may hold credentials)." % (command, returncode))
    try:
        status = json.loads(stdout or "{}").get("status") or {}
    except (ValueError, AttributeError):
        raise NimError("kubeconfig exec plugin %r printed no ExecCredential JSON. Fix: run it by hand and check "
                       "that it prints {\"kind\": \"ExecCredential\", \"status\": {...}}." % command)
    return status


def _expiry(stamp):
    """An ExecCredential's expirationTimestamp (RFC 3339) as time.time() seconds; None when absent or unreadable
    (then the credential is refreshed only when the API server refuses it)."""
    if not stamp:
        return None
    text = str(stamp).strip().replace("Z", "+00:00")
    if "." in text:  # the fraction dropped: fromisoformat before Python 3.11 takes only 3 or 6 digits
        head, tail = text.split(".", 1)
        text = head + tail[next((i for i, c in enumerate(tail) if not c.isdigit()), len(tail)):]
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def refreshable(cfg):
    """Whether a refused or expired credential can be fetched anew: an exec plugin's, or a token file's
    (rotated on disk, like the in-cluster ServiceAccount token)."""
    return bool(not cfg.token and (cfg.exec_spec or cfg.token_file))


def expired(cfg, skew=10):
    """The exec plugin's credential runs out within `skew` seconds (client-go refreshes it ahead as well)."""
    return cfg.expires is not None and time.time() + skew >= cfg.expires


def authorization(cfg):
    """The Authorization header value for a resolved Config, or None (client certificates only). An exec
    plugin runs here (again on each call: the client calls this again when the credential expired or was
    refused); a client certificate it returns is put into cfg, and when the credential runs out into cfg.expires."""
    token = cfg.token
    if cfg.exec_spec and not token:
        status = _run_exec_plugin(cfg.exec_spec)
        token = status.get("token")
        cfg.expires = _expiry(status.get("expirationTimestamp"))
        if status.get("clientCertificateData"):
            cfg.cert_data, cfg.key_data = status["clientCertificateData"], status.get("clientKeyData")
    if not token and cfg.token_file:
        try:
            with open(cfg.token_file) as f:
                token = f.read().strip()
        except (OSError, IOError) as e:
            raise NimError("Cannot read the token file %s (%s). Fix: point tokenFile (or the in-cluster "
                           "ServiceAccount mount) at a readable file." % (cfg.token_file, e.strerror or e))
    # Whatever the credential came from, every output masks it (redact.register), and a token's surrounding
    # whitespace (a YAML '|' block, a file's final newline) is dropped: a header cannot carry a line break.
    for value in (token, cfg.password, cfg.key_data):
        register(value)
    if token and token.strip():
        return "Bearer " + token.strip()
    if cfg.username:
        pair = ("%s:%s" % (cfg.username, cfg.password or "")).encode("utf-8")
        return "Basic " + base64.b64encode(pair).decode("ascii")
    return None
