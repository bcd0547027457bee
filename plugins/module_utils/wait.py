# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every wait: a Deployment's rollout, an object's status condition, and the events that say why not.

A timeout names the object, what it is waiting for (the phase it is stuck in: unschedulable, image pull,
admission, a condition's reason) and where to look further; what was applied stays applied."""

from __future__ import annotations

import time

from ansible_collections.nimguard.k8s.plugins.module_utils.client import parallel
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import ApiError, NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.labels import selector

# Kinds without status conditions: present is ready.
STATUSLESS = ("ConfigMap", "Secret", "RuntimeClass", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
              "ClusterRoleBinding", "Namespace")

# A long wait says how it stands at least this often (the action plugin displays it; a module cannot).
PROGRESS_EVERY = 20


def rollout(client, namespace, name, timeout, sleep=time.sleep, progress=None):
    """Wait until a Deployment has all replicas updated and available; on timeout say why not."""
    return rollouts(client, [(namespace, name)], timeout, sleep, progress)[0]


def rollouts(client, targets, timeout, sleep=time.sleep, progress=None):
    """Wait for the rollouts of several Deployments ((namespace, name) pairs) together, so that services applied
    one after the other start their pods at the same time; `progress(line)` hears how it stands every
    PROGRESS_EVERY seconds. Returns the Deployments; on timeout (or a rollout that cannot go on) names each
    unfinished one and the phase its pods are in."""
    res = client.resource("apps/v1", "Deployment")
    started = time.monotonic()
    deadline, report_at = started + timeout, started + PROGRESS_EVERY
    last, done, stuck = {}, set(), set()
    while True:
        pending = [t for t in targets if t not in done]
        last.update(zip(pending, parallel(lambda t: _deployment(client, res, t), pending)))
        done.update(t for t in pending if rollout_complete(last[t]))
        stuck.update(t for t in pending if t not in done and _admission_failure(last[t]))
        now = time.monotonic()
        if len(done) == len(targets):
            return [last[t] for t in targets]
        if stuck or now >= deadline:
            break
        if progress and now >= report_at:
            report_at = now + PROGRESS_EVERY
            waiting = [t for t in targets if t not in done]
            progress("waited %ds of %ss; %d of %d rollout(s) not finished: %s" % (
                now - started, timeout, len(waiting), len(targets),
                ", ".join("%s/%s (%s of %s ready)" % (t[0], t[1], (last[t].get("status") or {}).get(
                    "readyReplicas", 0), last[t].get("spec", {}).get("replicas", 1)) for t in waiting)))
        sleep(1.0)
    unfinished = [t for t in targets if t not in done]
    reasons = [_admission_failure(last[t]) if t in stuck else why_not_ready(client, last[t]) for t in unfinished]
    if len(targets) == 1:
        raise NimError("Deployment %s/%s did not finish its rollout within %ss: %s"
                       % (targets[0][0], targets[0][1], timeout, reasons[0]), rollout=rollout_status(last[targets[0]]))
    raise NimError("%d of %d Deployments did not finish their rollouts within %ss:\n%s" % (
        len(unfinished), len(targets), timeout,
        "\n".join("- Deployment %s/%s: %s" % (t[0], t[1], r) for t, r in zip(unfinished, reasons))),
        rollouts=dict(("%s/%s" % t, rollout_status(last[t])) for t in unfinished))


def _deployment(client, res, target):
    namespace, name = target
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
    return dep


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
            return ("admission: pods cannot be created: %s. Fix: make the pod spec satisfy the namespace's Pod Security level "
                    "and that every RuntimeClass/ServiceAccount it names exists." % cond.get("message"))
    return None


def why_not_ready(client, dep):
    """Turn pod states into the reason a user needs, led by the phase each pod is stuck in: unschedulable, image
    pull, container config, crash, startup probe, readiness probe."""
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
                reasons.append("unschedulable: pod %s cannot be placed on a node: %s.%s" % (name, msg, hint))
        probes = dict((c["name"], c) for c in (pod.get("spec") or {}).get("containers") or [])
        statuses = pod.get("status", {}).get("initContainerStatuses", []) + pod.get("status", {}).get(
            "containerStatuses", [])
        for cs in statuses:
            reason = _container_phase(pod, cs, probes.get(cs.get("name")))
            if reason:
                reasons.append(reason)
    if not pods:
        reasons.append("no pods exist for it yet (status: %s)" % rollout_status(dep))
    return " ".join(reasons) or "replicas not yet available (status: %s)" % rollout_status(dep)


def _container_phase(pod, cs, container):
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    waiting = (cs.get("state") or {}).get("waiting") or {}
    why = waiting.get("reason")
    if why in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"):
        return ("image pull: pod %s cannot pull image %s (%s). Fix: check image.repository/tag and that "
                "image.pull_secrets names an existing registry Secret for that registry."
                % (name, cs.get("image"), waiting.get("message", why)))
    if why in ("ContainerCreating", "PodInitializing"):
        return ("image pull: pod %s container %s is not started yet (%s: a large image is still being pulled, or its "
                "volumes mounted). Fix: raise wait_timeout for a first pull, or look at `kubectl describe pod %s -n %s`."
                % (name, cs.get("name"), why, name, namespace))
    if why in ("CreateContainerConfigError", "CreateContainerError"):
        return ("container config: pod %s container %s cannot start: %s. Fix: create the Secret/ConfigMap it names."
                % (name, cs.get("name"), waiting.get("message", why)))
    if why == "CrashLoopBackOff":
        return ("crash: pod %s container %s keeps crashing (restarts: %s). Look at `kubectl logs -n %s %s -c %s "
                "--previous`." % (name, cs.get("name"), cs.get("restartCount"), namespace, name, cs.get("name")))
    if cs.get("ready") or not (cs.get("state") or {}).get("running"):
        return None
    startup = (container or {}).get("startupProbe")
    if startup and cs.get("started") is False:
        allowed = (startup.get("initialDelaySeconds", 0)
                   + startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3))
        return ("startup probe: pod %s container %s is running but has not passed its startup probe yet (it allows "
                "%s s from the container's start: a model download can take that long). Fix: raise wait_timeout, "
                "or look at `kubectl logs -n %s %s -c %s`." % (name, cs["name"], allowed, namespace, name, cs["name"]))
    return ("readiness probe: pod %s container %s is running but not ready (its readiness probe fails). Look at "
            "`kubectl describe pod %s -n %s` and the probe's path (probes.readiness)."
            % (name, cs["name"], name, namespace))


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
