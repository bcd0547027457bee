# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each module does, as functions of (validated params, check_mode, diff) -> result.

Both entry points call run(): the module (AnsibleModule on the target host) and the action plugin
(in the controller, when the task runs there). Results and errors leave through one scrubber.
"""

from __future__ import annotations

import datetime
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.nimguard.k8s.plugins.module_utils import render
from ansible_collections.nimguard.k8s.plugins.module_utils.apply import (
    Converger, ref, rollout_status, translate, wait_rollout)
from ansible_collections.nimguard.k8s.plugins.module_utils.client import (
    COMMAND_RUNNER, ApiError, NimError, client_from_params)
from ansible_collections.nimguard.k8s.plugins.module_utils.redact import Scrubber, secret_content_hash, short_hash

NIMSERVICE = ("apps.nvidia.com/v1alpha1", "NIMService")
# Kinds without status conditions: present is ready.
STATUSLESS = ("ConfigMap", "Secret", "RuntimeClass", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
              "ClusterRoleBinding", "Namespace")


def _scrubber(params):
    s = Scrubber()
    s.add(params.get("api_key"))
    s.add(params.get("password"))
    s.add(params.get("value"))
    for v in (params.get("data") or {}).values():
        s.add(str(v))
    reg = params.get("registry") or {}
    if reg.get("password"):
        s.add(reg["password"])
        s.add("%s:%s" % (reg.get("username") or "$oauthtoken", reg["password"]))
    tls = params.get("tls") or {}
    s.add(tls.get("key"))
    return s


_REUSE = {"on": False}


def run(module, params, check_mode=False, diff=False, reuse=False):
    """Run one module's logic. Returns (ok: bool, result dict); never raises for user errors.
    reuse: the caller runs many items in this process (a loop): share the client and its LISTs."""
    _REUSE["on"] = reuse
    scrub = _scrubber(params)
    try:
        result = HANDLERS[module](params, check_mode, diff)
        return True, scrub.scrub(result)
    except NimError as e:
        out = dict(msg=e.msg, changed=False)
        out.update(e.details)
        return False, scrub.scrub(out)


def _client(params):
    return client_from_params(params, reuse=_REUSE["on"])


def _openshift(client, setting):
    if setting == "auto":
        return client.has_api_group("security.openshift.io", cached=True)
    return setting == "yes"


# ---------------------------------------------------------------------------------------------
# nim_secret


def run_secret(p, check_mode, diff):
    render.check_name(p["name"], "name", "subdomain")
    render.check_name(p["namespace"], "namespace", "dns1123")
    client = _client(p)
    conv = Converger(client, check_mode, diff, p["force_conflicts"])
    res = client.resource("v1", "Secret")
    if p["state"] == "absent":
        meta = {"name": p["name"], "namespace": p["namespace"]}
        conv.absent([{"apiVersion": "v1", "kind": "Secret", "metadata": meta}])
        return conv.result()
    if not render.secret_has_value(p):
        return _verify_secret(client, p)
    if p["kind"] == "tls":
        _check_tls(p)
    obj = render.render_secret(p)
    live = client.get_cached(res, p["namespace"], p["name"])
    if live is not None and live.get("type", "Opaque") != obj["type"]:
        raise NimError("Secret %s/%s exists with type %s, and a Secret's type cannot change to %s. Fix: delete it "
                       "first (state: absent) or use another name." % (p["namespace"], p["name"],
                                                                       live.get("type"), obj["type"]))
    conv.converge([obj], known=[live])
    return conv.result(content_hash=secret_content_hash(obj),
                       secret=dict(name=p["name"], namespace=p["namespace"], type=obj["type"],
                                   keys=sorted(obj["data"])))


def _verify_secret(client, p):
    """No value given: the Secret must exist and carry the expected keys (the seed's 'secret not found')."""
    live = client.get(client.resource("v1", "Secret"), p["namespace"], p["name"])
    keys = render.secret_expected_keys(p)
    if live is None:
        raise NimError(missing_secret_message(p["name"], p["namespace"], keys, p["kind"]), missing_secret=p["name"])
    have = set(live.get("data") or {}) | set(live.get("stringData") or {})
    missing = [k for k in keys if k not in have]
    if missing:
        raise NimError("Secret %s/%s has no key %s (it has: %s). Fix: recreate it with that key, or set `key` to the "
                       "key it uses." % (p["namespace"], p["name"], ", ".join(missing),
                                         ", ".join(sorted(have)) or "none"), missing_keys=missing)
    return dict(changed=False, objects=[dict(ref(live), action="verified")],
                content_hash=secret_content_hash(live),
                secret=dict(name=p["name"], namespace=p["namespace"], type=live.get("type"), keys=sorted(have)))


def missing_secret_message(name, namespace, keys, kind="ngc"):
    if kind == "registry":
        how = ("kubectl create secret docker-registry %s --docker-server=nvcr.io --docker-username='$oauthtoken' "
               "--docker-password=<your-ngc-api-key> -n %s" % (name, namespace))
    else:
        key = keys[0] if keys else "NGC_API_KEY"
        how = "kubectl create secret generic %s --from-literal=%s=<value> -n %s" % (name, key, namespace)
    return ('secret "%s" not found in namespace "%s". Fix: create it in that namespace with nimguard.k8s.nim_secret '
            "(pass the value from Ansible Vault or an environment variable), or: %s" % (name, namespace, how))


def _check_tls(p):
    tls = p["tls"]
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise NimError("tls: checking the certificate needs the Python package 'cryptography' where the task runs "
                       "(pip install cryptography).")
    try:
        cert = x509.load_pem_x509_certificate(tls["cert"].encode("utf-8"))
    except ValueError:
        raise NimError("tls.cert: not a PEM certificate. Fix: pass the PEM text (-----BEGIN CERTIFICATE-----...).")
    if not tls.get("key"):
        raise NimError("tls.key: a TLS secret needs the private key as well as tls.cert.")
    try:
        key = serialization.load_pem_private_key(tls["key"].encode("utf-8"), password=None)
    except (ValueError, TypeError):
        raise NimError("tls.key: not an unencrypted PEM private key. Fix: pass the PEM key without a passphrase.")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(serialization.Encoding.PEM, pub) != key.public_key().public_bytes(
            serialization.Encoding.PEM, pub):
        raise NimError("tls: tls.cert and tls.key do not belong together (their public keys differ). Fix: pass the "
                       "key that was used to request this certificate.")
    not_after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(
        tzinfo=datetime.timezone.utc)
    if not_after <= datetime.datetime.now(datetime.timezone.utc) and not tls.get("allow_expired"):
        raise NimError("tls.cert: the certificate expired on %s. Fix: renew it (or let cert-manager issue one via "
                       "the cert-manager.io/cluster-issuer annotation)." % not_after.isoformat())


# ---------------------------------------------------------------------------------------------
# nim_rbac


def run_rbac(p, check_mode, diff):
    name = render.check_name(p["name"], "name", "dns1123")
    render.check_name(p["namespace"], "namespace", "dns1123")
    rules = render.validate_rules(p["extra_rules"], p["allow_wildcards"])
    client = _client(p)
    conv = Converger(client, check_mode, diff, p["force_conflicts"])
    prune = render.prune_scope(name, ["rbac"], render.RBAC_KINDS, p["namespace"])
    if p["state"] == "absent":
        conv.absent(conv.read([], prune)[1])
        return conv.result()
    openshift = _openshift(client, p["openshift"])
    scc = render.scc_for(p["host_path"], p["proxy_ca"], p.get("scc")) if openshift else None
    objs = render.render_rbac(name, p["namespace"], openshift, scc, rules, p["automount_service_account_token"],
                              p.get("labels"), p.get("annotations"))
    conv.converge(objs, prune)
    return conv.result(service_account=name, openshift=openshift, scc=scc)


# ---------------------------------------------------------------------------------------------
# nim_service


def _service_defaults(p):
    p = dict(p)
    delivery = dict(p.get("secret_delivery") or {})
    if not delivery.get("mode"):
        delivery["mode"] = "env" if p["backend"] == "operator" else "file"
    p["secret_delivery"] = delivery
    return p


def run_service(p, check_mode, diff):
    if p.get("service"):
        raise NimError("service: expanded by the nimguard.k8s.nim_service action plugin, which did not run here. "
                       "Fix: call the module as nimguard.k8s.nim_service in a task, or pass the options at the top level.")
    p = _service_defaults(p)
    name, namespace = p["name"], p["namespace"]
    rbac = p.get("rbac") or {}
    components = ["service"] + (["rbac"] if p["backend"] == "native" and rbac.get("create", True) else [])
    if p["state"] == "present":
        render.validate_service(p)  # everything that needs no cluster, before the first request
    else:
        render.check_name(name, "name", "dns1035")
    client = _client(p)
    conv = Converger(client, check_mode, diff, p["force_conflicts"])
    kinds = list(render.SERVICE_KINDS)
    # Native backend: the operator matters only for pruning NIMService objects an earlier run made (with a
    # fresh discovery, which refreshed the cache), so a cached answer is enough.
    operator_present = (client.has_api_group("apps.nvidia.com", "v1alpha1", cached=p["backend"] == "native")
                        and _serves(client, *NIMSERVICE))
    if p["backend"] == "operator" and not operator_present:
        raise NimError("backend: operator needs the NIMService CRD (apps.nvidia.com/v1alpha1), which this cluster "
                       "does not serve. Fix: install the NIM Operator, or use backend: native.",
                       missing_kind="apps.nvidia.com/v1alpha1/NIMService")
    if operator_present:
        kinds.append(NIMSERVICE)
    anchor = ("apps/v1", "Deployment", name) if p["state"] == "present" and p["backend"] == "native" else None
    prune = render.prune_scope(name, ["service", "rbac"] if p["state"] == "absent" else components, kinds, namespace,
                               anchor)
    if p["state"] == "absent":
        conv.absent(conv.read([], prune)[1])
        return conv.result()

    warnings = []
    # The consumed secrets are an input (their hash rolls the pods); the rest of the preflight runs only
    # when something is about to change, so a rerun with nothing to do reads each object once.
    consumed = _get_all(client, [("v1", "Secret", n) for n in render.secrets_consumed(p)], namespace)
    secrets_hash = _secrets_hash(client, p, check_mode, warnings, consumed)
    openshift = p["backend"] == "native" and rbac.get("create", True) and _openshift(client, rbac.get("openshift",
                                                                                                      "auto"))
    objs = render.render_service(p, secrets_hash, openshift)
    for item in p.get("env") or []:
        if item.get("value") is not None and render_sensitive(item["name"]):
            warnings.append("env %s holds a literal value that looks secret; use value_from.secret_key_ref so it is "
                            "kept in a Secret (it is redacted from diffs)." % item["name"])
    plan = conv.plan(objs, prune)
    if p["preflight"] and plan.pending:
        _preflight(client, p, check_mode, warnings, consumed)
    conv.converge(objs, prune, plan=plan)
    conv.warnings.extend(warnings)
    extra = dict(secrets_hash=secrets_hash, secret_delivery=p["secret_delivery"]["mode"],
                 endpoint="http://%s.%s.svc:%s" % (name, namespace, (p.get("expose") or {}).get("service", {}).get(
                     "port") or 8000))
    if p["wait"] and not check_mode and p["backend"] == "native":
        dep = wait_rollout(client, namespace, name, p["wait_timeout"])
        extra["rollout"] = rollout_status(dep)
    return conv.result(**extra)


def render_sensitive(name):
    from ansible_collections.nimguard.k8s.plugins.module_utils.redact import SENSITIVE_NAME
    return bool(SENSITIVE_NAME.search(name))


def _serves(client, api_version, kind):
    try:
        client.resource(api_version, kind)
        return True
    except NimError as e:
        if e.details.get("missing_kind"):
            return False
        raise


def _secrets_hash(client, p, check_mode, warnings, secrets=None):
    names = render.secrets_consumed(p)
    if secrets is None:
        secrets = _get_all(client, [("v1", "Secret", n) for n in names], p["namespace"])
    hashes = []
    for n in names:
        live = secrets.get(("Secret", n))
        if live is None:
            if check_mode:
                warnings.append("Secret %s does not exist yet; in check mode this is expected when an earlier task "
                                "would create it." % n)
                continue
            raise NimError(missing_secret_message(n, p["namespace"], [p.get("auth_secret_key") or "NGC_API_KEY"]),
                           missing_secret=n)
        hashes.append(secret_content_hash(live))
    return short_hash(hashes) if hashes else None


def _get_all(client, items, namespace):
    def get(item):
        api_version, kind, name = item
        try:
            return client.get_cached(client.resource(api_version, kind), namespace, name)
        except ApiError as e:
            if e.status == 403:
                return e
            raise translate(e, {"kind": kind, "metadata": {"name": name, "namespace": namespace}}, verb="get")
    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        results = list(pool.map(get, items))
    out = {}
    for (api_version, kind, name), value in zip(items, results):
        if isinstance(value, ApiError):
            raise NimError("Forbidden: the identity used cannot read %s %s/%s. Fix: grant it get on %s in namespace "
                           "%s." % (kind, namespace, name, kind.lower() + "s", namespace), status=403)
        out[(kind, name)] = value
    return out


def _preflight(client, p, check_mode, warnings, found):
    """Cluster checks before any write: keys, pull secrets, RuntimeClass, GPUs, hostPath. `found`: the
    consumed secrets, already read (missing ones already reported by _secrets_hash)."""
    namespace = p["namespace"]
    found = dict(found)
    found.update(_get_all(client, [("v1", "Secret", n) for n in (p["image"].get("pull_secrets") or [])
                                   if ("Secret", n) not in found], namespace))
    auth = found.get(("Secret", p.get("auth_secret")))
    key = p.get("auth_secret_key") or "NGC_API_KEY"
    if auth is not None and key not in (auth.get("data") or {}):
        raise NimError("auth_secret: Secret %s/%s has no key %s (it has: %s). Fix: add the key, or set auth_secret_key "
                       "to the key it uses." % (namespace, p["auth_secret"], key,
                                                ", ".join(sorted(auth.get("data") or {})) or "none"))
    for n in p["image"].get("pull_secrets") or []:
        live = found.get(("Secret", n))
        if live is None and not check_mode:
            raise NimError("image.pull_secrets: " + missing_secret_message(n, namespace, [], "registry"),
                           missing_secret=n)
        if live is not None and live.get("type") != "kubernetes.io/dockerconfigjson":
            raise NimError("image.pull_secrets: Secret %s/%s has type %s, not kubernetes.io/dockerconfigjson. Fix: "
                           "create it with nimguard.k8s.nim_secret kind: registry." % (namespace, n, live.get("type")))
    if p.get("runtime_class_name"):
        rc = client.resource("node.k8s.io/v1", "RuntimeClass")
        try:
            missing = client.get(rc, None, p["runtime_class_name"]) is None
        except ApiError as e:
            if e.status != 403:
                raise
            missing = False
            warnings.append("Could not check RuntimeClass %s (forbidden)." % p["runtime_class_name"])
        if missing:
            raise NimError("runtime_class_name: RuntimeClass %r does not exist, so every pod would be rejected. Fix: "
                           "create it (the nimguard.k8s.gpu_runtime role does, handler nvidia) or remove "
                           "runtime_class_name." % p["runtime_class_name"])
    gpus = (p.get("resources") or {}).get("gpus") or 0
    if gpus:
        try:
            nodes = client.list(client.resource("v1", "Node"))
            best = max([int(n.get("status", {}).get("allocatable", {}).get("nvidia.com/gpu", "0") or 0)
                        for n in nodes] or [0])
            if best < gpus:
                raise NimError("resources.gpus: %d GPU(s) requested per pod, but no node advertises that many "
                               "allocatable nvidia.com/gpu (most on one node: %d). Fix: add GPU nodes with the NVIDIA "
                               "device plugin (GPU Operator), or lower resources.gpus." % (gpus, best))
        except ApiError as e:
            if e.status != 403:
                raise
            warnings.append("Could not list nodes to check for GPUs (forbidden); skipped.")
    if (p.get("storage") or {}).get("host_path"):
        ns = client.get(client.resource("v1", "Namespace"), None, namespace)
        level = ((ns or {}).get("metadata", {}).get("labels") or {}).get("pod-security.kubernetes.io/enforce")
        if level in ("restricted", "baseline"):
            raise NimError("storage.host_path: namespace %s enforces Pod Security '%s', which forbids hostPath "
                           "volumes, so no pod would start. Fix: use storage.pvc (or empty_dir), or run this service "
                           "in a namespace labelled pod-security.kubernetes.io/enforce=privileged." % (namespace,
                                                                                                       level))


# ---------------------------------------------------------------------------------------------
# nim_apply


def _definitions(p):
    import yaml
    docs = p.get("definition")
    if p.get("src"):
        try:
            with open(p["src"]) as f:
                docs = list(yaml.safe_load_all(f))
        except (OSError, IOError) as e:
            raise NimError("src: cannot read %s (%s)." % (p["src"], e))
    if isinstance(docs, str):
        docs = list(yaml.safe_load_all(docs))
    if isinstance(docs, dict):
        docs = docs.get("items") if docs.get("kind", "").endswith("List") else [docs]
    out = []
    for i, doc in enumerate(docs or []):
        if not doc:
            continue
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            raise NimError("definition[%d]: each object needs apiVersion, kind and metadata.name." % i)
        if not (doc.get("metadata") or {}).get("name"):
            raise NimError("definition[%d] (%s): metadata.name is required." % (i, doc["kind"]))
        out.append(doc)
    if not out:
        raise NimError("definition: no objects given. Fix: pass a dict, a list of dicts, or YAML text.")
    return out


def run_apply(p, check_mode, diff):
    objs = _definitions(p)
    client = _client(p)
    conv = Converger(client, check_mode, diff, p["force_conflicts"])
    for obj in objs:
        res = client.resource(obj["apiVersion"], obj["kind"])
        meta = obj.setdefault("metadata", {})
        if res.namespaced and not meta.get("namespace"):
            if not p.get("namespace"):
                raise NimError("namespace: %s %s is namespaced; set metadata.namespace or the namespace option."
                               % (obj["kind"], meta["name"]))
            meta["namespace"] = p["namespace"]
        elif not res.namespaced:
            meta.pop("namespace", None)
    if p["state"] == "absent":
        conv.absent(objs)
        return conv.result()
    found = conv.converge(objs)
    if p["wait"] and not check_mode:
        cond = p.get("wait_condition") or {}
        deadline = time.monotonic() + p["wait_timeout"]
        for obj in objs:
            if obj["kind"] == "Deployment":
                wait_rollout(client, obj["metadata"]["namespace"], obj["metadata"]["name"], p["wait_timeout"])
            else:
                _wait_condition(client, obj, cond.get("type") or "Ready", cond.get("status") or "True", deadline)
    return conv.result(resources=[ref(o) for o in found.values() if o])


def _wait_condition(client, obj, ctype, cstatus, deadline):
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


def run_doctor(p, check_mode, diff):
    from ansible_collections.nimguard.k8s.plugins.module_utils.doctor import doctor
    return doctor(_client(p), p)


def run_info(p, check_mode, diff):
    """Read objects; Secrets come back with their values redacted like everywhere else."""
    from ansible_collections.nimguard.k8s.plugins.module_utils.redact import clean
    client = _client(p)
    res = client.resource(p["api_version"], p["kind"])
    namespace = p.get("namespace") if res.namespaced else None
    if p.get("name") and p.get("wait_condition"):  # the same wait as nim_apply's, on an object someone else made
        cond = p["wait_condition"]
        obj = dict(apiVersion=p["api_version"], kind=p["kind"], metadata=dict(name=p["name"], namespace=namespace))
        items = [_wait_condition(client, obj, cond["type"], cond["status"], time.monotonic() + p["wait_timeout"])]
    elif p.get("name"):
        live = client.get(res, namespace, p["name"])
        items = [live] if live else []
    else:
        items = client.list(res, namespace, ",".join(p["label_selectors"]) or None)
    out = []
    for item in items:
        item.setdefault("apiVersion", res.api_version)
        item.setdefault("kind", res.kind)
        status = item.get("status")
        cleaned = clean(item)
        if status is not None:
            cleaned["status"] = status
        out.append(cleaned)
    return dict(changed=False, resources=out, exists=bool(out))


HANDLERS = dict(nim_secret=run_secret, nim_rbac=run_rbac, nim_service=run_service, nim_apply=run_apply,
                nim_doctor=run_doctor, nim_info=run_info)


def run_module(module_name):
    """Entry point of the modules (AnsibleModule on the target host)."""
    from ansible.module_utils.basic import AnsibleModule
    from ansible_collections.nimguard.k8s.plugins.module_utils.specs import spec
    module = AnsibleModule(**spec(module_name))
    COMMAND_RUNNER["run"] = lambda argv, env: module.run_command(argv, environ_update=env)[:2]
    ok, result = run(module_name, module.params, module.check_mode, module._diff)
    if ok:
        module.exit_json(**result)
    module.fail_json(**result)
