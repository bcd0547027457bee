# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every wait: a Deployment's rollout, an object's status condition, and the events that say why not.

A timeout names the object, what it is waiting for (the phase it is stuck in: unschedulable, image pull,
admission, a condition's reason) and where to look further; what was applied stays applied."""

from __future__ import annotations

import time

from ansible_collections.nimguard.k8s.plugins.module_utils.errors import ApiError, NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.labels import selector

# Kinds without status conditions: present is ready.
STATUSLESS = ("ConfigMap", "Secret", "RuntimeClass", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
              "ClusterRoleBinding", "Namespace")


def rollout(client, namespace, name, timeout, sleep=time.sleep):
    """Wait until a Deployment has all replicas updated and available; on timeout say why not."""
    res = client.resource("apps/v1", "Deployment")
    deadline = time.monotonic() + timeout
    dep = None
    while True:
        try:
            dep = client.get(res, namespace, name)
        except NimError as e:
            if not e.details.get("unreachable"):
                raise
            raise NimError("Deployment %s/%s: the API server stopped answering while waiting for the rollout (%s). "
                           "What was applied stays applied. Fix: once the API server answers again, rerun (it "
                           "changes nothing already done and waits again), or run `kubectl rollout status "
                           "deployment/%s -n %s`." % (namespace, name, e, name, namespace), unreachable=True)
        if dep is None:
            raise NimError("Deployment %s/%s disappeared while waiting for its rollout." % (namespace, name))
        if rollout_complete(dep):
            return dep
        stuck = _admission_failure(dep)
        if stuck or time.monotonic() >= deadline:
            break
        sleep(1.0)
    reason = stuck or why_not_ready(client, dep)
    raise NimError("Deployment %s/%s did not finish its rollout within %ss: %s" % (namespace, name, timeout, reason),
                   rollout=rollout_status(dep))


def rollout_complete(dep):
    spec, status = dep.get("spec", {}), dep.get("status", {})
    want = spec.get("replicas", 1)
    return (status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
            and status.get("updatedReplicas", 0) == want and status.get("availableReplicas", 0) == want
            and status.get("replicas", 0) == want and not status.get("unavailableReplicas"))


def rollout_status(dep):
    status = dep.get("status", {})
    keys = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas")
    return dict((k, status.get(k, 0)) for k in keys)


def _admission_failure(dep):
    for cond in dep.get("status", {}).get("conditions", []):
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return ("pods cannot be created: %s. Fix: make the pod spec satisfy the namespace's Pod Security level "
                    "and that every RuntimeClass/ServiceAccount it names exists." % cond.get("message"))
    return None


def why_not_ready(client, dep):
    """Turn pod states into the reason a user needs: unschedulable, image pull, config, crash."""
    pods = client.list(client.resource("v1", "Pod"), dep["metadata"]["namespace"],
                       selector(dep["spec"]["selector"].get("matchLabels", {})))
    reasons = []
    for pod in pods:
        name = pod["metadata"]["name"]
        for cond in pod.get("status", {}).get("conditions", []):
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                msg = cond.get("message", "")
                hint = (" Fix: no node has free nvidia.com/gpu or matches node_selector/tolerations; add GPU nodes "
                        "or lower resources.gpus." if "nvidia.com/gpu" in msg else
                        " Fix: check resources, node_selector and tolerations.")
                reasons.append("pod %s is unschedulable: %s.%s" % (name, msg, hint))
        statuses = pod.get("status", {}).get("initContainerStatuses", []) + pod.get("status", {}).get(
            "containerStatuses", [])
        for cs in statuses:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            why = waiting.get("reason")
            if why in ("ErrImagePull", "ImagePullBackOff"):
                reasons.append("pod %s cannot pull image %s (%s). Fix: check image.repository/tag and that "
                               "image.pull_secrets names an existing registry Secret for that registry."
                               % (name, cs.get("image"), waiting.get("message", why)))
            elif why in ("CreateContainerConfigError", "CreateContainerError"):
                reasons.append("pod %s container %s cannot start: %s. Fix: create the Secret/ConfigMap it names."
                               % (name, cs.get("name"), waiting.get("message", why)))
            elif why == "CrashLoopBackOff":
                reasons.append("pod %s container %s keeps crashing (restarts: %s). Look at `kubectl logs -n %s %s "
                               "-c %s --previous`." % (name, cs.get("name"), cs.get("restartCount"),
                                                       dep["metadata"]["namespace"], name, cs.get("name")))
            elif not cs.get("ready") and (cs.get("state") or {}).get("running"):
                reasons.append("pod %s container %s is running but not ready (readiness probe)." % (name, cs["name"]))
    if not pods:
        reasons.append("no pods exist for it yet (status: %s)" % rollout_status(dep))
    return " ".join(reasons) or "replicas not yet available (status: %s)" % rollout_status(dep)


def condition(client, obj, ctype, cstatus, deadline):
    """Wait until the object has condition `ctype` at status `cstatus` for its current generation (nim_apply's
    and nim_info's wait_condition); on timeout say why, with the object's last Warning event."""
    res = client.resource(obj["apiVersion"], obj["kind"])
    meta = obj["metadata"]
    last = live = None
    while True:
        live = client.get(res, meta.get("namespace"), meta["name"])
        if live is not None and obj["kind"] in STATUSLESS:
            return live
        status = (live or {}).get("status") or {}
        generation = (live or {}).get("metadata", {}).get("generation", 0)
        for c in status.get("conditions") or []:
            if c.get("type") == ctype:
                last = c
                # A condition from before the change just applied (cert-manager, Deployments) is no verdict on it.
                seen = c.get("observedGeneration", status.get("observedGeneration", generation))
                if c.get("status") == cstatus and seen >= generation:
                    return live
        if time.monotonic() >= deadline:
            if live is None:
                why = "it does not exist"
            elif last:
                why = "%s=%s (reason %s: %s)" % (ctype, last.get("status"), last.get("reason"), last.get("message"))
            else:
                why = "no %s condition yet" % ctype
            event = last_warning(client, live) if live is not None else None
            raise NimError("%s %s did not reach %s=%s in time: %s.%s Look further: kubectl describe %s %s%s"
                           % (obj["kind"], meta["name"], ctype, cstatus, why,
                              " Last warning event: %s." % event if event else "", obj["kind"].lower(),
                              meta["name"], " -n " + meta["namespace"] if meta.get("namespace") else ""),
                           condition=last)
        time.sleep(1.0)


def last_warning(client, live):
    """The newest Warning event about an object: controllers (External Secrets, cert-manager) often put the
    cause there ("connection refused") and only a summary in the condition ("unable to create client")."""
    meta = live["metadata"]
    path = ("/api/v1/namespaces/%s/events" % meta["namespace"]) if meta.get("namespace") else "/api/v1/events"
    query = {"fieldSelector": "involvedObject.uid=%s,type=Warning" % meta.get("uid")}
    try:
        items = client.request("GET", path, query=query)[1].get("items") or []
    except (ApiError, NimError):
        return None  # events are a hint; not being allowed to read them must not hide the real error
    items.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return "%s: %s" % (items[-1].get("reason"), items[-1].get("message")) if items else None
