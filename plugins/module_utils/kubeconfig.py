# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which cluster to talk to, and as whom: the connection options, their K8S_AUTH_* environment
fallbacks, and their resolution through a kubeconfig (file or dict, contexts, exec credential plugins),
the in-cluster service account, or explicit `host`/`api_key`/certificates. No HTTP here (client.py)."""

from __future__ import annotations

import base64
import json
import os
import shutil

from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError

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
    api_proxy=dict(type="str", aliases=["proxy"]),
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
    tls_server_name = None
    exec_spec = None
    source = ""


def _env_bool(value):
    if isinstance(value, bool) or value is None:
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def connection_params(params, env=None):
    """Connection options from task params, falling back to K8S_AUTH_* variables."""
    env = os.environ if env is None else env
    out = {}
    for key in CONNECTION_ARGS:
        value = params.get(key)
        if value is None and key in ENV_FALLBACK:
            value = env.get(ENV_FALLBACK[key])
            if key == "validate_certs" and value is not None:
                value = _env_bool(value)
        out[key] = value
    return out


def _read_kubeconfig(path):
    if not HAS_YAML:
        raise NimError("PyYAML is required to read kubeconfig files: pip install PyYAML")
    try:
        with open(path) as f:
            return yaml.safe_load(f) or {}
    except (OSError, IOError) as e:
        raise NimError("kubeconfig: cannot read %s (%s). Fix: point `kubeconfig` (or K8S_AUTH_KUBECONFIG) at a "
                       "readable kubeconfig file." % (path, e.strerror or e))
    except yaml.YAMLError:
        raise NimError("kubeconfig: %s is not valid YAML. Fix: check the file with `kubectl config view "
                       "--kubeconfig %s`." % (path, path))


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
    doc, base_dir = None, None
    if isinstance(kubeconfig, dict):
        doc, base_dir, cfg.source = kubeconfig, os.getcwd(), "(inline)"
    elif kubeconfig or not conn.get("host"):
        path = kubeconfig
        if not path:
            for candidate in (env.get("KUBECONFIG") or "").split(os.pathsep) + [os.path.expanduser("~/.kube/config")]:
                if candidate and os.path.exists(candidate):
                    path = candidate
                    break
        if path:
            path = os.path.expanduser(str(path))
            doc, base_dir, cfg.source = _read_kubeconfig(path), os.path.dirname(os.path.abspath(path)), path
        elif env.get("KUBERNETES_SERVICE_HOST"):
            _in_cluster(cfg, env)
        else:
            raise NimError("No cluster to talk to: no kubeconfig found (looked at $KUBECONFIG and ~/.kube/config) "
                           "and no `host`. Fix: set `kubeconfig` (or K8S_AUTH_KUBECONFIG), or `host` with "
                           "`api_key` or client certificates.")
    if doc is not None:
        _from_kubeconfig(cfg, doc, conn.get("context"), base_dir)
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


def _from_kubeconfig(cfg, doc, context, base_dir):
    context = context or doc.get("current-context")
    if not context:
        raise NimError("kubeconfig %s has no current-context. Fix: set `context` (or K8S_AUTH_CONTEXT)." % cfg.source)
    ctx = _named(doc.get("contexts"), context, "context", cfg.source)
    cluster = _named(doc.get("clusters"), ctx.get("cluster"), "cluster", cfg.source) if ctx.get("cluster") else {}
    user = _named(doc.get("users"), ctx.get("user"), "user", cfg.source) if ctx.get("user") else {}

    def rel(p):
        return p if not p or os.path.isabs(p) else os.path.join(base_dir, p)

    cfg.server = cluster.get("server")
    cfg.verify = not cluster.get("insecure-skip-tls-verify", False)
    cfg.ca_file = rel(cluster.get("certificate-authority"))
    cfg.ca_data = _b64(cluster.get("certificate-authority-data"))
    cfg.tls_server_name = cluster.get("tls-server-name")
    cfg.proxy = cluster.get("proxy-url")
    cfg.cert_file = rel(user.get("client-certificate"))
    cfg.key_file = rel(user.get("client-key"))
    cfg.cert_data = _b64(user.get("client-certificate-data"))
    cfg.key_data = _b64(user.get("client-key-data"))
    cfg.token = user.get("token")
    cfg.token_file = rel(user.get("tokenFile"))
    cfg.username, cfg.password = user.get("username"), user.get("password")
    cfg.exec_spec = user.get("exec")
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
    """kubeconfig `exec` credential plugins (EKS, GKE, OIDC): run once per client, use its token/cert."""
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
    status = json.loads(stdout or "{}").get("status") or {}
    return status


def authorization(cfg):
    """The Authorization header value for a resolved Config, or None (client certificates only). An exec
    plugin runs here, once per client; a client certificate it returns is put into cfg."""
    token = cfg.token
    if cfg.exec_spec and not token:
        status = _run_exec_plugin(cfg.exec_spec)
        token = status.get("token")
        if status.get("clientCertificateData"):
            cfg.cert_data, cfg.key_data = status["clientCertificateData"], status.get("clientKeyData")
    if not token and cfg.token_file:
        try:
            with open(cfg.token_file) as f:
                token = f.read().strip()
        except (OSError, IOError) as e:
            raise NimError("Cannot read the token file %s (%s)." % (cfg.token_file, e))
    if token:
        return "Bearer " + token
    if cfg.username:
        pair = ("%s:%s" % (cfg.username, cfg.password or "")).encode("utf-8")
        return "Basic " + base64.b64encode(pair).decode("ascii")
    return None
