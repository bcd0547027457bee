# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small Kubernetes API client on the standard library: HTTP, resources, retries, the discovery cache.

Why not the `kubernetes` package: importing it costs about 0.3 s per task and every module here
needs only GET, LIST, server-side apply, DELETE and POST. Using http.client keeps a module's start
cheap and the controller-side action plugin free of third-party imports. Which server and which
credentials come from kubeconfig.py.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import ssl
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode, urlsplit

from ansible_collections.nimguard.k8s.plugins.module_utils.errors import ApiError, NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.kubeconfig import (
    authorization, connection_params, resolve_config)
from ansible_collections.nimguard.k8s.plugins.module_utils.labels import MANAGED, MANAGED_SELECTOR, selector

FIELD_MANAGER = "nimguard"
MAX_WORKERS = 8

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


def parallel(fn, items):
    """fn over items, concurrently (each thread keeps its own keep-alive connection), results in order."""
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(items))) as pool:
        return list(pool.map(fn, items))


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
        auth = authorization(cfg)
        if auth:
            self._headers["Authorization"] = auth
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
            return self.list(res, namespace, selector(labels))
        key = (res.api_version, res.kind, namespace or "")
        if key not in self._lists:
            self._lists[key] = dict((i["metadata"]["name"], i) for i in self.list(res, namespace, MANAGED_SELECTOR))
        return [i for i in self._lists[key].values()
                if all((i["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())]

    def get_cached(self, res, namespace, name):
        """get(), answered from the shared namespace-wide LIST when one serves this loop (objects we
        manage); anything else (an unlabelled Secret made by another tool) still gets its own GET."""
        if self.shared_lists:
            self.list_labelled(res, namespace, MANAGED)
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
