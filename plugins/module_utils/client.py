# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small Kubernetes API client on the standard library.

Why not the `kubernetes` package: importing it costs about 0.3 s per task and every module here
needs only GET, LIST, server-side apply, DELETE and POST. Using http.client keeps a module's start
cheap and the controller-side action plugin free of third-party imports.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import ssl
import tempfile
import threading
import time
from urllib.parse import quote, urlencode, urlsplit

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    HAS_YAML = False

FIELD_MANAGER = "nimguard"

# Connection options, as kubernetes.core names them, with the same K8S_AUTH_* environment fallbacks.
# The env fallback is resolved by resolve_config() so that the action plugin and the module agree.
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

# Kinds the collection works with, so that no discovery request is needed for them.
# (apiVersion, kind) -> (plural, namespaced)
KNOWN_KINDS = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Node"): ("nodes", False),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Service"): ("services", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Event"): ("events", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "ReplicaSet"): ("replicasets", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("networking.k8s.io/v1", "Ingress"): ("ingresses", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", True),
    ("node.k8s.io/v1", "RuntimeClass"): ("runtimeclasses", False),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): ("selfsubjectaccessreviews", False),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
}

TRANSIENT_STATUS = (429, 500, 502, 503, 504)


class NimError(Exception):
    """An error for the user: `msg` names the field and the fix. Extra keys go into the result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class ApiError(NimError):
    def __init__(self, status, reason, message, method, path, causes=None):
        self.status = status
        self.reason = reason or ""
        self.api_message = message or ""
        self.method = method
        self.path = path
        self.causes = causes or []
        super().__init__(self._explain(), status=status, reason=self.reason)

    def _explain(self):
        where = "%s %s" % (self.method, self.path)
        if self.status == 401:
            return ("Unauthorized (%s): the API server rejected the credentials. Fix: refresh the token or client "
                    "certificate in the kubeconfig, or check api_key." % where)
        if self.status == 403:
            return ("Forbidden: %s (%s). Fix: grant this identity that verb on that resource (a Role or ClusterRole "
                    "and a binding), or use a kubeconfig/context that has it." % (self.api_message, where))
        if self.status == 422:
            causes = "; ".join("%s: %s" % (c.get("field", "?"), c.get("message", "")) for c in self.causes)
            return "Invalid (%s): %s. Fix the option that sets these fields." % (where, causes or self.api_message)
        return "%s: HTTP %s %s: %s" % (where, self.status, self.reason, self.api_message)

    @property
    def field_conflict(self):
        return self.status == 409 and any(c.get("type") == "FieldManagerConflict" for c in self.causes)


class Resource(object):
    __slots__ = ("api_version", "kind", "plural", "namespaced")

    def __init__(self, api_version, kind, plural, namespaced):
        self.api_version, self.kind, self.plural, self.namespaced = api_version, kind, plural, namespaced

    def path(self, namespace=None, name=None):
        base = "/api/v1" if self.api_version == "v1" else "/apis/" + self.api_version
        if self.namespaced and namespace:
            base += "/namespaces/" + quote(namespace, safe="")
        base += "/" + self.plural
        if name:
            base += "/" + quote(name, safe="")
        return base


# ---------------------------------------------------------------------------------------------
# Configuration


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


# How a kubeconfig exec plugin is started: run(argv, env_update) -> (exit code, stdout text). A module must start
# commands through AnsibleModule.run_command (ansible-test's pylint refuses subprocess in module_utils from 2.21 on),
# and the action plugins, which run this code in Ansible's worker without an AnsibleModule, start them themselves:
# each entry point sets its own (runner.run_module, plugin_utils/action.py).
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
    returncode, stdout = COMMAND_RUNNER["run"]([command] + list(spec.get("args") or []), env)
    if returncode != 0:
        raise NimError("kubeconfig exec plugin %r failed with exit code %d. Fix: run it by hand to see why "
                       "(its output is not shown because it may hold credentials)." % (command, returncode))
    status = json.loads(stdout or "{}").get("status") or {}
    return status


# ---------------------------------------------------------------------------------------------
# HTTP


DISCOVERY_TTL = 600


def _discovery_cache(server, groups=None):
    """Read (groups=None) or write the API group list of `server`; None when absent, stale or unusable.
    Never fails a task: an unwritable home (some execution environments) just means no cache."""
    base = os.environ.get("NIMGUARD_DISCOVERY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "nimguard", "discovery")
    if base == "off":
        return None
    path = os.path.join(base, hashlib.sha256(server.encode("utf-8")).hexdigest()[:16] + ".json")
    try:
        if groups is None:
            if time.time() - os.stat(path).st_mtime > DISCOVERY_TTL:
                return None
            with open(path) as f:
                return json.load(f)
        if not os.path.isdir(base):
            os.makedirs(base, 0o700)
        tmp = "%s.%d" % (path, os.getpid())
        with open(tmp, "w") as f:
            json.dump(groups, f)
        os.rename(tmp, path)
    except (OSError, IOError, ValueError):
        return None
    return None


class Client(object):
    """One client per task: keep-alive connections (one per thread), bounded retries, light errors."""

    def __init__(self, cfg, request_timeout=30, retry_timeout=20):
        self.cfg = cfg
        self.timeout = request_timeout or 30
        self.retry_timeout = 20 if retry_timeout is None else retry_timeout
        url = urlsplit(cfg.server)
        if url.scheme not in ("https", "http"):
            raise NimError("host %r must start with https:// (or http:// for a plain local proxy)." % cfg.server)
        self.scheme, self.host, self.port = url.scheme, url.hostname, url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        self._local = threading.local()
        self._discovery = {}
        self._groups = None
        self._lists = {}
        self.shared_lists = False
        self._lock = threading.Lock()
        self.requests = 0
        self.writes = 0
        self._headers = {"Accept": "application/json", "User-Agent": "nimguard.k8s"}
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
            self._headers["Authorization"] = "Bearer " + token
        elif cfg.username:
            pair = ("%s:%s" % (cfg.username, cfg.password or "")).encode("utf-8")
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        self._ssl = self._ssl_context() if self.scheme == "https" else None

    def _ssl_context(self):
        cfg = self.cfg
        try:
            ctx = ssl.create_default_context(cafile=cfg.ca_file or None, cadata=cfg.ca_data or None)
        except (OSError, ssl.SSLError) as e:
            raise NimError("ca_cert: cannot load the CA certificate (%s). Fix: point `ca_cert` at a PEM file, or "
                           "fix certificate-authority in the kubeconfig." % e)
        # Python 3.13 adds X.509 strict checking to the default context: RFC 5280 conformance of each
        # certificate in the chain, so a CA without keyUsage (openssl's defaults leave it out; common in older
        # self-made clusters) is refused. kubectl and every Kubernetes component (Go) accept such a CA, so the
        # client checks what kubectl checks: the chain must still end at the configured CA and the name must
        # match, which is where the trust lies; a refusal would only push users to `validate_certs: false`.
        # (docs/security.md, "TLS to the API server")
        ctx.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
        if not cfg.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cfg.cert_data or cfg.cert_file:
            tmp = None
            try:
                cert, key = cfg.cert_file, cfg.key_file
                if cfg.cert_data:
                    # ssl can only load a key pair from files: write them to a private folder, load, remove.
                    tmp = tempfile.mkdtemp(prefix="nimguard-")
                    cert, key = os.path.join(tmp, "c"), os.path.join(tmp, "k")
                    for path, data in ((cert, cfg.cert_data), (key, cfg.key_data or "")):
                        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                        with os.fdopen(fd, "w") as f:
                            f.write(data)
                ctx.load_cert_chain(cert, key or None)
            except (OSError, ssl.SSLError) as e:
                raise NimError("client_cert/client_key: cannot load the client certificate (%s). Fix: check that "
                               "the certificate and key files exist and belong together." % getattr(e, "strerror", e))
            finally:
                if tmp:
                    shutil.rmtree(tmp, ignore_errors=True)
        return ctx

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.cfg.proxy:
                p = urlsplit(self.cfg.proxy)
                if self.scheme == "https":
                    conn = http.client.HTTPSConnection(p.hostname, p.port or 3128, timeout=self.timeout,
                                                       context=self._ssl)
                    conn.set_tunnel(self.host, self.port)
                else:
                    conn = http.client.HTTPConnection(p.hostname, p.port or 3128, timeout=self.timeout)
            elif self.scheme == "https":
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _drop_connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(self, method, path, query=None, body=None, content_type="application/json"):
        """Send one request; retry connection failures, 429 and 5xx (and 409 optimistic-lock conflicts)
        with exponential backoff until retry_timeout has passed."""
        url = self.prefix + path + ("?" + urlencode(query, doseq=True) if query else "")
        if self.cfg.proxy and self.scheme == "http":
            url = "http://%s:%s%s" % (self.host, self.port, url)
        payload = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode("utf-8"))
        headers = dict(self._headers)
        if payload is not None:
            headers["Content-Type"] = content_type
        deadline = time.monotonic() + self.retry_timeout
        delay = 0.2
        while True:
            try:
                with self._lock:
                    self.requests += 1
                    if method in ("POST", "PUT", "PATCH", "DELETE"):
                        self.writes += 1
                conn = self._connection()
                conn.request(method, url, body=payload, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                if resp.getheader("Connection", "").lower() == "close":
                    self._drop_connection()
            except ssl.SSLCertVerificationError as e:
                self._drop_connection()
                raise NimError("TLS verification of %s failed (%s). Fix: set `ca_cert` to the cluster CA (or the "
                               "kubeconfig's certificate-authority); `validate_certs: false` only for tests."
                               % (self.cfg.server, e.verify_message))
            except (OSError, http.client.HTTPException) as e:
                self._drop_connection()
                if time.monotonic() + delay > deadline:
                    raise NimError(
                        "Cannot reach the Kubernetes API server at %s (%s: %s), retried for %ss. Fix: check "
                        "`host`/`kubeconfig`/`context` (now: %s), that the server is up, and any `proxy`."
                        % (self.cfg.server, type(e).__name__, e, self.retry_timeout, self.cfg.source or "explicit host"),
                        unreachable=True)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if status < 400:
                return status, (json.loads(data) if data else {})
            err = self._error(status, data, method, path)
            retry = status in TRANSIENT_STATUS or (status == 409 and not err.field_conflict
                                                   and method in ("PUT", "PATCH") and "modified" in err.api_message)
            if retry and time.monotonic() + delay <= deadline:
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            raise err

    @staticmethod
    def _error(status, data, method, path):
        try:
            doc = json.loads(data)
        except ValueError:
            doc = {"message": data[:300].decode("utf-8", "replace")}
        causes = (doc.get("details") or {}).get("causes") or []
        return ApiError(status, doc.get("reason"), doc.get("message"), method, path, causes)

    # --- resource helpers ----------------------------------------------------------------------

    def resource(self, api_version, kind):
        known = KNOWN_KINDS.get((api_version, kind))
        if known:
            return Resource(api_version, kind, known[0], known[1])
        if api_version not in self._discovery:
            path = "/api/v1" if api_version == "v1" else "/apis/" + api_version
            try:
                self._discovery[api_version] = self.request("GET", path)[1].get("resources", [])
            except ApiError as e:
                if e.status == 404:
                    self._discovery[api_version] = None
                else:
                    raise
        resources = self._discovery[api_version]
        for r in resources or []:
            if r.get("kind") == kind and "/" not in r.get("name", ""):
                return Resource(api_version, kind, r["name"], r.get("namespaced", False))
        raise NimError("The cluster does not serve %s %s%s. Fix: install the CRD (or the operator that brings it) "
                       "or check apiVersion/kind." % (api_version, kind,
                                                      "" if resources else " (API group version not found)"),
                       missing_kind="%s/%s" % (api_version, kind))

    def api_groups(self, cached=False):
        """{group: [versions]} served by the cluster, from one request (kept for the task).

        cached=True may answer from a discovery cache on disk (like kubectl's ~/.kube/cache), for
        callers to whom a few minutes' staleness is harmless: detecting OpenShift, or whether NIMService
        objects could exist to prune. Every fresh answer refreshes that cache."""
        if self._groups is None and cached:
            self._groups = _discovery_cache(self.cfg.server)
        if self._groups is None:
            doc = self.request("GET", "/apis")[1]
            self._groups = dict((g["name"], [v["version"] for v in g.get("versions", [])])
                                for g in doc.get("groups", []))
            _discovery_cache(self.cfg.server, self._groups)
        return self._groups

    def has_api_group(self, group, version=None, cached=False):
        versions = self.api_groups(cached).get(group)
        return versions is not None and (version is None or version in versions)

    def get(self, res, namespace, name):
        """The live object, or None when it does not exist."""
        try:
            return self.request("GET", res.path(namespace, name))[1]
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def list_labelled(self, res, namespace, labels):
        """Objects of a kind carrying all `labels`. With shared_lists (a loop over many instances in one
        worker process), one namespace-wide LIST per kind serves every item, filtered here."""
        if not self.shared_lists:
            return self.list(res, namespace, ",".join("%s=%s" % kv for kv in sorted(labels.items())))
        key = (res.api_version, res.kind, namespace or "")
        if key not in self._lists:
            managed = "app.kubernetes.io/managed-by=%s" % labels.get("app.kubernetes.io/managed-by", "nimguard")
            self._lists[key] = dict((i["metadata"]["name"], i) for i in self.list(res, namespace, managed))
        return [i for i in self._lists[key].values()
                if all((i["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())]

    def get_cached(self, res, namespace, name):
        """get(), answered from the shared namespace-wide LIST when one serves this loop (objects we
        manage); anything else (an unlabelled Secret made by another tool) still gets its own GET."""
        if self.shared_lists:
            self.list_labelled(res, namespace, {"app.kubernetes.io/managed-by": "nimguard"})
            hit = self._lists[(res.api_version, res.kind, namespace or "")].get(name)
            if hit is not None:
                return hit
        return self.get(res, namespace, name)

    def remember(self, res, obj):
        key = (res.api_version, res.kind, obj.get("metadata", {}).get("namespace") or "")
        if key in self._lists:
            obj.setdefault("apiVersion", res.api_version)
            obj.setdefault("kind", res.kind)
            self._lists[key][obj["metadata"]["name"]] = obj

    def forget(self, res, namespace, name):
        self._lists.get((res.api_version, res.kind, namespace or ""), {}).pop(name, None)

    def list(self, res, namespace=None, selector=None):
        query = {"labelSelector": selector} if selector else None
        items = self.request("GET", res.path(namespace), query=query)[1].get("items", [])
        for item in items:  # list items carry no apiVersion/kind
            item.setdefault("apiVersion", res.api_version)
            item.setdefault("kind", res.kind)
        return items

    def apply(self, res, obj, dry_run=False, force=False):
        """Server-side apply. Returns (http_status, object): 201 means created."""
        meta = obj["metadata"]
        query = {"fieldManager": FIELD_MANAGER}
        if force:
            query["force"] = "true"
        if dry_run:
            query["dryRun"] = "All"
        return self.request("PATCH", res.path(meta.get("namespace"), meta["name"]), query=query,
                            body=json.dumps(obj, sort_keys=True).encode("utf-8"),
                            content_type="application/apply-patch+yaml")

    def delete(self, res, namespace, name, dry_run=False, propagation="Background"):
        query = {"dryRun": "All"} if dry_run else None
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if dry_run:
            # With a body the API server reads DeleteOptions from it and ignores the query string: a
            # dryRun only in the query would delete for real.
            body["dryRun"] = ["All"]
        try:
            self.request("DELETE", res.path(namespace, name), query=query, body=body)
            return True
        except ApiError as e:
            if e.status == 404:
                return False
            raise

    def create(self, res, obj, namespace=None):
        return self.request("POST", res.path(namespace), body=obj)[1]

    def can_i(self, verb, resource, namespace=None, group="", name=None):
        attrs = {"verb": verb, "resource": resource, "group": group}
        if namespace:
            attrs["namespace"] = namespace
        if name:
            attrs["name"] = name
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": attrs}}
        res = self.resource("authorization.k8s.io/v1", "SelfSubjectAccessReview")
        return bool(self.create(res, review).get("status", {}).get("allowed"))


# One client per connection settings and worker process: the items of a loop reuse its keep-alive
# connections, discovery and (with shared_lists) LIST results. A fresh worker starts empty.
_CLIENTS = {}


def client_from_params(params, env=None, reuse=False):
    conn = connection_params(params, env)
    key = json.dumps(conn, sort_keys=True, default=str)
    if reuse and key in _CLIENTS:
        return _CLIENTS[key]
    client = Client(resolve_config(conn, env), conn.get("request_timeout"), conn.get("retry_timeout"))
    if reuse:
        client.shared_lists = True
        _CLIENTS[key] = client
    return client
