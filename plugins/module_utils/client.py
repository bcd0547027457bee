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
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode, urlsplit

from ansible_collections.nimguard.k8s.plugins.module_utils.errors import ApiError, NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.kubeconfig import (
    authorization, connection_params, expired, refreshable, resolve_config)
from ansible_collections.nimguard.k8s.plugins.module_utils.labels import MANAGED, MANAGED_SELECTOR, selector
from ansible_collections.nimguard.k8s.plugins.module_utils.transport import Route, ssl_context, vet

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
        self._list_locks = {}
        self.shared_lists = False
        self._lock = threading.Lock()
        self._auth_lock = threading.Lock()
        self._generation = 0  # bumped when a refreshed credential brings a new client certificate
        self.requests = 0
        self.writes = 0
        self.warnings = vet(cfg, self.scheme)
        self._route = Route(cfg, self.scheme, self.host, self.port, self.timeout)
        self._headers = [("Accept", "application/json"), ("User-Agent", "nimguard.k8s")]
        if cfg.impersonate_user:
            self._headers.append(("Impersonate-User", cfg.impersonate_user))
        self._headers.extend(("Impersonate-Group", g) for g in cfg.impersonate_groups or ())
        self._auth = authorization(cfg)
        self._ssl = ssl_context(cfg) if self.scheme == "https" else None

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "generation", 0) != self._generation:
            self._drop_connection()
            conn = None
        if conn is None:
            conn = self._route.connect(self._ssl)
            self._local.conn, self._local.generation = conn, self._generation
        return conn

    def _drop_connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _refresh_credentials(self, used):
        """Fetch the credential anew (exec plugin run again, token file read again), unless another thread
        already did since `used` was sent. A new client certificate means new TLS connections."""
        with self._auth_lock:
            if self._auth != used:
                return
            cert = (self.cfg.cert_data, self.cfg.key_data)
            self._auth = authorization(self.cfg)
            if self.scheme == "https" and (self.cfg.cert_data, self.cfg.key_data) != cert:
                self._ssl = ssl_context(self.cfg)
                self._generation += 1

    def _send(self, conn, method, url, payload, content_type):
        """One request; the headers as a list, since Impersonate-Group is repeated once per group."""
        headers = list(self._headers)
        if self._auth:
            headers.append(("Authorization", self._auth))
        headers.extend(self._route.request_headers())
        if payload is not None:
            headers.extend([("Content-Type", content_type), ("Content-Length", str(len(payload)))])
        conn.putrequest(method, url, skip_accept_encoding=True)
        for key, value in headers:
            conn.putheader(key, value)
        conn.endheaders(payload)

    def request(self, method, path, query=None, body=None, content_type="application/json"):
        """Send one request; retry connection failures, 429 and 5xx (and 409 optimistic-lock conflicts)
        with exponential backoff until retry_timeout has passed. A credential from an exec plugin is fetched
        anew when it expires, and once when the API server refuses it (401), as kubectl does."""
        url = self._route.url(self.prefix + path + ("?" + urlencode(query, doseq=True) if query else ""))
        payload = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode("utf-8"))
        deadline = time.monotonic() + self.retry_timeout
        delay = 0.2
        refreshed = False
        while True:
            if expired(self.cfg):
                self._refresh_credentials(self._auth)
            used = self._auth
            try:
                with self._lock:
                    self.requests += 1
                    if method in ("POST", "PUT", "PATCH", "DELETE"):
                        self.writes += 1
                conn = self._connection()
                self._send(conn, method, url, payload, content_type)
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                if resp.getheader("Connection", "").lower() == "close":
                    self._drop_connection()
            except ssl.SSLCertVerificationError as e:
                self._drop_connection()
                raise NimError("TLS verification of %s failed (%s). Fix: set `ca_cert` to the cluster CA (or the "
                               "kubeconfig's certificate-authority, and tls-server-name when the certificate names "
                               "another host); `validate_certs: false` only for tests."
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
            if status == 401 and not refreshed and refreshable(self.cfg):
                refreshed = True
                self._refresh_credentials(used)
                continue
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
            # checks.read asks from several threads at once: the first LISTs, the others wait for its answer
            with self._list_locks.setdefault(key, threading.Lock()):
                if key not in self._lists:
                    self._lists[key] = dict((i["metadata"]["name"], i)
                                            for i in self.list(res, namespace, MANAGED_SELECTOR))
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
