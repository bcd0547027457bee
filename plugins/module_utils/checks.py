# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a NIM service needs from the cluster, checked by reading only: its Secrets and their keys, its
pull Secrets, its RuntimeClass, free GPUs, its CA ConfigMap, whether hostPath is allowed.

One implementation for two callers. Each check reports a problem to `report.add(check, status, message,
fix, field=...)`: nim_service's preflight passes a Preflight, which turns the first failure into the
task's error (the field, the message, the fix); nim_doctor passes its findings list, which keeps them all.
The calls with literal messages are what tools/docs.py lists in docs/troubleshooting.md."""

from __future__ import annotations

from ansible_collections.nimguard.k8s.plugins.module_utils.apply import is_subset, translate
from ansible_collections.nimguard.k8s.plugins.module_utils.client import parallel
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import ApiError, NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.labels import INSTANCE, MANAGED_BY, MANAGER, POD_SECURITY_ENFORCE
from ansible_collections.nimguard.k8s.plugins.module_utils.specs import NGC_KEY

GPU = "nvidia.com/gpu"


class Preflight(object):
    """A report for a task that stops at the first failure; warnings go into the task's result."""

    def __init__(self, warnings):
        self.warnings = warnings

    def add(self, check, status, message, fix=None, field=None, **details):
        text = "%s: %s" % (field, message) if field else message
        if status == "fail":
            raise NimError("%s. Fix: %s" % (text, fix), **details)
        self.warnings.append(text + ".")


def read(client, kind, namespace, names):
    """{name: live object or None} of objects of one kind ((apiVersion, kind)), read concurrently (or from a
    loop's shared LIST); an API error says which object and what to do."""
    res = client.resource(*kind)

    def get(name):
        try:
            return client.get_cached(res, namespace, name)
        except ApiError as e:
            raise translate(e, {"kind": kind[1], "metadata": {"name": name, "namespace": namespace}}, verb="get")
    return dict(zip(names, parallel(get, names)))


def openshift(client, setting):
    """Whether to render OpenShift's SCC rule: `setting` auto asks the cluster (a cached discovery will do)."""
    if setting == "auto":
        return client.has_api_group("security.openshift.io", cached=True)
    return setting == "yes"


def _create_command(name, namespace, keys, kind):
    if kind == "registry":
        return ("kubectl create secret docker-registry %s --docker-server=nvcr.io --docker-username='$oauthtoken' "
                "--docker-password=<your-ngc-api-key> -n %s" % (name, namespace))
    literals = " ".join("--from-literal=%s=<value>" % k for k in keys or [NGC_KEY])
    return "kubectl create secret generic %s %s -n %s" % (name, literals, namespace)


def secret(report, live, namespace, name, keys, kind="ngc", field="auth_secret", key_field="auth_secret_key"):
    """The Secret exists and carries `keys`. A Secret read from the API carries `data` only."""
    if live is None:
        report.add("secrets", "fail", 'secret "%s" not found in namespace "%s"' % (name, namespace),
                   "create it in that namespace with nimguard.k8s.nim_secret (pass the value from Ansible Vault or an "
                   "environment variable), or: %s" % _create_command(name, namespace, keys, kind),
                   field=field, missing_secret=name)
        return
    have = sorted(live.get("data") or {})
    missing = [k for k in keys if k not in have]
    if missing:
        report.add("secrets", "fail", "Secret %s/%s has no key %s (it has: %s)"
                   % (namespace, name, ", ".join(missing), ", ".join(have) or "none"),
                   "recreate it with that key, or set %s to the key it uses." % key_field, field=key_field,
                   missing_keys=missing)


def pull_secret(report, live, namespace, name, field="image.pull_secrets"):
    """An image pull Secret exists and is a registry Secret."""
    secret(report, live, namespace, name, [], "registry", field)
    if live is not None and live.get("type") != "kubernetes.io/dockerconfigjson":
        report.add("secrets", "fail", "Secret %s/%s has type %s, not kubernetes.io/dockerconfigjson"
                   % (namespace, name, live.get("type")), "create it with nimguard.k8s.nim_secret kind: registry.",
                   field=field)


def runtime_class(report, client, name, field="runtime_class_name"):
    try:
        missing = client.get(client.resource("node.k8s.io/v1", "RuntimeClass"), None, name) is None
    except ApiError as e:
        if e.status != 403:
            raise
        report.add("runtime", "warn", "could not check RuntimeClass %s (forbidden)" % name, field=field)
        return
    if missing:
        report.add("runtime", "fail", "RuntimeClass %r does not exist, so every pod would be rejected" % name,
                   "create it (the nimguard.k8s.gpu_runtime role does, handler nvidia) or remove "
                   "runtime_class_name.", field=field)


def ca_config_map(report, client, namespace, name, field="proxy.cert_config_map"):
    cm = client.get(client.resource("v1", "ConfigMap"), namespace, name)
    if cm is None or "ca.crt" not in (cm.get("data") or {}):
        report.add("ca", "fail", "CA ConfigMap %s %s" % (name, "not found" if cm is None else "has no key ca.crt"),
                   "kubectl create configmap %s --from-file=ca.crt=/path/to/ca.crt -n %s" % (name, namespace),
                   field=field)


def host_path(report, client, namespace, field="storage.host_path"):
    """hostPath volumes under a namespace whose Pod Security level forbids them: no pod would start."""
    ns = client.get(client.resource("v1", "Namespace"), None, namespace)
    level = ((ns or {}).get("metadata", {}).get("labels") or {}).get(POD_SECURITY_ENFORCE)
    if level in ("restricted", "baseline"):
        report.add("runtime", "fail", "namespace %s enforces Pod Security '%s', which forbids hostPath volumes, so "
                   "no pod would start" % (namespace, level),
                   "use storage.pvc (or empty_dir), or run this service in a namespace labelled "
                   "%s=privileged." % POD_SECURITY_ENFORCE, field=field)


def new_pods(desired, live):
    """Which pods converging a Deployment starts, for the GPU check: "all" when it is new, "surge" when its pod
    template changes or it grows (maxUnavailable is 0, so each new pod starts beside the running ones, which keep
    their GPUs until it is ready: rollout.max_surge at a time), None when no pod starts (a rerun, or a change to
    other objects or to the Deployment's own metadata), so that a rerun never needs a free GPU."""
    if live is None:
        return "all"
    want, have = desired.get("spec") or {}, live.get("spec") or {}
    if want.get("replicas", 1) > have.get("replicas", 1) or not is_subset(want.get("template"), have.get("template")):
        return "surge"
    return None


def gpus(report, client, need, services=(), field="resources.gpus", surge=False):
    """Some node has `need` free GPUs: allocatable minus what the other pods on it request. The pods of
    `services` ((namespace, name) pairs, the ones being checked) are not other pods: a rollout replaces them.
    `surge`: a rolling update is about to start new pods beside those pods, so they still hold their GPUs."""
    try:
        nodes = client.list(client.resource("v1", "Node"))
    except ApiError as e:
        if e.status != 403:
            raise
        report.add("gpu", "warn", "could not list nodes to look for free GPUs (forbidden)", field=field)
        return
    nodes = [n for n in nodes if _count((n.get("status", {}).get("allocatable") or {}).get(GPU))]
    others = () if surge else services
    try:
        used = parallel(lambda n: _gpus_requested(client, n["metadata"]["name"], others), nodes)
    except ApiError as e:
        if e.status != 403:
            raise
        report.add("gpu", "warn", "could not list pods to count the GPUs in use (forbidden): counted allocatable "
                   "GPUs only", field=field)
        used = [0] * len(nodes)
    best = max([_count(n["status"]["allocatable"][GPU]) - u for n, u in zip(nodes, used)] or [0])
    if best >= need:
        return
    if surge:
        report.add("gpu", "fail", "%d GPU(s) requested per pod, but no node has that many free nvidia.com/gpu for "
                   "the rolling update's new pod, which starts beside the running ones before they stop (most free "
                   "on one node, the service's own pods counted: %d)" % (need, best),
                   "free GPUs or add GPU nodes before changing the pods, or scale the service to 0 replicas first "
                   "(its pods then start anew).", field=field)
    else:
        report.add("gpu", "fail", "%d GPU(s) requested per pod, but no node advertises that many free "
                   "nvidia.com/gpu (allocatable minus what other pods request; most free on one node: %d)"
                   % (need, best),
                   "add GPU nodes with the NVIDIA device plugin (GPU Operator), free GPUs, or lower resources.gpus.",
                   field=field)


def _count(value):
    return int(value or 0)


def _gpus_requested(client, node, services):
    pods = client.request("GET", "/api/v1/pods", query={
        "fieldSelector": "spec.nodeName=%s,status.phase!=Succeeded,status.phase!=Failed" % node})[1].get("items", [])
    total = 0
    for pod in pods:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        if labels.get(MANAGED_BY) == MANAGER and (meta.get("namespace"), labels.get(INSTANCE)) in services:
            continue
        spec = pod.get("spec") or {}
        # A pod holds the larger of its containers' sum and its largest init container (they run first, alone).
        total += max([_requested(spec.get("containers"))] + [_requested([c]) for c in spec.get("initContainers") or []])
    return total


def _requested(containers):
    return sum(_count(((c.get("resources") or {}).get("requests") or {}).get(GPU)) for c in containers or [])
