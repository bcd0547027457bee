# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nim_service: every object of one NIM service converged in one call, checked before, waited for after."""

from __future__ import annotations

from ansible_collections.nimguard.k8s.plugins.module_utils import checks, pod, render, specs, wait
from ansible_collections.nimguard.k8s.plugins.module_utils.apply import Converger, hash_key, prune_scope
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.labels import HASH_KEY_SECRET
from ansible_collections.nimguard.k8s.plugins.module_utils.redact import secret_content_hash, secret_looking, short_hash

NAME = "nim_service"
NIMSERVICE = ("apps.nvidia.com/v1alpha1", "NIMService")
SECRET = ("v1", "Secret")


def run(p, task):
    p = specs.complete_service(p)
    if p["wait_timeout"] is None:  # derived from the probes, so a first model download is not cut short
        p["wait_timeout"] = pod.rollout_timeout(p)
    name, namespace, native = p["name"], p["namespace"], p["backend"] == "native"
    with_rbac = native and p["rbac"]["create"]
    client = task.client(p)
    conv = Converger(client, task.check_mode, task.diff, p["force_conflicts"])
    kinds = list(render.SERVICE_KINDS)
    # Native backend: the operator matters only for pruning NIMService objects an earlier run made (with a
    # fresh discovery, which refreshed the cache), so a cached answer is enough.
    operator_present = (client.has_api_group("apps.nvidia.com", "v1alpha1", cached=native)
                        and _serves(client, *NIMSERVICE))
    if not native and not operator_present:
        raise NimError("backend: operator needs the NIMService CRD (apps.nvidia.com/v1alpha1), which this cluster "
                       "does not serve. Fix: install the NIM Operator, or use backend: native.",
                       missing_kind="apps.nvidia.com/v1alpha1/NIMService")
    if operator_present:
        kinds.append(NIMSERVICE)
    if p["state"] == "absent":
        conv.absent(conv.read([], prune_scope(name, ["service", "rbac"], kinds, namespace))[1])
        return conv.result()
    prune = prune_scope(name, ["service"] + (["rbac"] if with_rbac else []), kinds, namespace,
                        ("apps/v1", "Deployment", name) if native else None)

    warnings = []
    # The consumed secrets are an input (their hash rolls the pods); the rest of the preflight runs only
    # when something is about to change, so a rerun with nothing to do reads each object once.
    uses = render.secrets_consumed(p)
    # The namespace's hash key is read with them (concurrently), when a rotation hash is to be made of them.
    consumed = checks.read(client, SECRET, namespace, sorted(uses) + ([HASH_KEY_SECRET] if uses else []))
    key_secret = consumed.pop(HASH_KEY_SECRET, None)
    secrets_hash = _secrets_hash(conv, p, warnings, consumed, uses, key_secret)
    objs = render.render_service(p, secrets_hash, with_rbac and checks.openshift(client, p["rbac"]["openshift"]))
    for item in p["env"]:
        if item.get("value") is not None and secret_looking(item["name"], item["value"]):
            warnings.append("env %s holds a literal value that looks secret; use value_from.secret_key_ref so it is "
                            "kept in a Secret (it is redacted from diffs)." % item["name"])
    rotation = _rotation_warning(p)
    if rotation:
        warnings.append(rotation)
    plan = conv.plan(objs, prune)
    if p["preflight"] and plan.pending:
        preflight(client, p, task.check_mode, warnings, consumed, _new_pods(plan, native))
    conv.converge(objs, prune, plan=plan)
    conv.warnings.extend(warnings)
    extra = dict(secrets_hash=secrets_hash, secret_delivery=p["secret_delivery"]["mode"],
                 endpoint="http://%s.%s.svc:%s" % (name, namespace, p["expose"]["service"]["port"]))
    if native:  # what nim_rollout waits for, all services together, after applying them all
        extra.update(wait_for=dict(name=name, namespace=namespace), wait_timeout=p["wait_timeout"])
    if p["wait"] and not task.check_mode and native:
        extra["rollout"] = wait.rollout_status(wait.rollout(client, namespace, name, p["wait_timeout"],
                                                            progress=task.progress))
    return conv.result(**extra)


def _rotation_warning(p):
    """Without restart_on_rotation a rotated Secret reaches a running pod only as a file: say when the process
    keeps the old key anyway."""
    delivery = p["secret_delivery"]
    if p["restart_on_rotation"] or (delivery["mode"] == "vault_agent" and not delivery["vault"]["refresh"]):
        return None
    if delivery["mode"] == "env":
        return ("restart_on_rotation is false with secret_delivery.mode env: a rotated key reaches the pods only when "
                "they restart. Fix: set restart_on_rotation: true, or use mode file with export_env: false.")
    if delivery["export_env"]:
        return ("restart_on_rotation is false but secret_delivery.export_env is true: a rotated key reaches the file "
                "%s/NGC_API_KEY, but the NIM process keeps the key exported at its start in its environment until it "
                "restarts. Fix: set secret_delivery.export_env: false for a NIM that reads NGC_API_KEY_FILE, or "
                "restart_on_rotation: true." % delivery["mount_path"])
    return None


def _serves(client, api_version, kind):
    try:
        client.resource(api_version, kind)
        return True
    except NimError as e:
        if e.details.get("missing_kind"):
            return False
        raise


def _secrets_hash(conv, p, warnings, consumed, uses, key_secret):
    """The keyed content hash of the Secrets the pods consume (None: none, or restart_on_rotation off). In check
    mode a Secret that an earlier task is about to write counts with the content_hash that task predicted
    (`secret_hashes`), so the roll the real run will make shows here. A missing Secret fails, naming the option
    and the keys that reference it (in check mode, an earlier task may be about to create it)."""
    predicted = p["secret_hashes"] if conv.check_mode else {}
    rolls = p["restart_on_rotation"]
    hashes, key = [], None
    for name, live in sorted(consumed.items()):
        if name in predicted:
            hashes.append(predicted[name])
        elif live is None and conv.check_mode:
            warnings.append("Secret %s does not exist yet; in check mode this is expected when an earlier task "
                            "would create it." % name)
        elif live is None:
            field, key_field, keys = uses[name]
            checks.secret(checks.Preflight(warnings), None, p["namespace"], name, keys, field=field,
                          key_field=key_field)
        elif rolls:
            key = key or hash_key(conv, p["namespace"], live=key_secret)
            hashes.append(secret_content_hash(live, key))
    return short_hash(hashes) if hashes and rolls else None


def _new_pods(plan, native):
    """checks.new_pods() for this converge's Deployment; the operator's pods: as if new."""
    if not native:
        return "all"
    dep = [o for o in plan.desired if o["kind"] == "Deployment"][0]
    return checks.new_pods(dep, plan.live(dep))


def preflight(client, p, check_mode, warnings, consumed, new_pods="all"):
    """The cluster checks before any write (checks.py, shared with the doctor): the auth Secret's key, pull
    Secrets, RuntimeClass, free GPUs (only when new pods start: checks.new_pods()), hostPath. `consumed`: the
    consumed Secrets, already read (missing ones already reported by _secrets_hash)."""
    report = checks.Preflight(warnings)
    namespace = p["namespace"]
    for name, (field, key_field, keys) in sorted(render.secrets_consumed(p).items()):
        if consumed.get(name) is not None:
            checks.secret(report, consumed[name], namespace, name, keys, field=field, key_field=key_field)
    pulls = p["image"]["pull_secrets"]
    found = dict(consumed, **checks.read(client, SECRET, namespace, [n for n in pulls if n not in consumed]))
    for name in pulls:
        if found[name] is not None or not check_mode:  # in check mode, an earlier task may create it
            checks.pull_secret(report, found[name], namespace, name)
    if p["runtime_class_name"]:
        checks.runtime_class(report, client, p["runtime_class_name"])
    if p["resources"]["gpus"] and new_pods:
        checks.gpus(report, client, p["resources"]["gpus"], {(namespace, p["name"])}, surge=new_pods == "surge")
    if p["storage"]["host_path"]:
        checks.host_path(report, client, namespace)
