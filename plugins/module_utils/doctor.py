# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight checks: the troubleshooting cases of a NIM deployment, each with the fix in its message."""

from __future__ import annotations

from ansible_collections.nimguard.k8s.plugins.module_utils import render
from ansible_collections.nimguard.k8s.plugins.module_utils.client import ApiError, NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.runner import last_warning, missing_secret_message

ALL_CHECKS = ("secrets", "runtime", "gpu", "ca", "crds", "permissions", "tls", "certificates", "external_secrets")

# What the collection writes in a NIM namespace: (group, resource, verbs)
NEEDED = [("", "secrets", ("get", "create", "patch")), ("", "serviceaccounts", ("get", "create", "patch")),
          ("", "services", ("list", "create", "patch", "delete")), ("", "configmaps", ("list", "create", "patch")),
          ("", "persistentvolumeclaims", ("list", "create", "patch")),
          ("apps", "deployments", ("list", "create", "patch", "delete")),
          ("rbac.authorization.k8s.io", "roles", ("list", "create", "patch")),
          ("rbac.authorization.k8s.io", "rolebindings", ("list", "create", "patch")),
          ("networking.k8s.io", "networkpolicies", ("list", "create", "patch")),
          ("networking.k8s.io", "ingresses", ("list", "create", "patch", "delete"))]


class Findings(object):
    def __init__(self):
        self.items = []

    def add(self, check, status, message, fix=None, **extra):
        item = dict(check=check, status=status, message=message)
        if fix:
            item["fix"] = fix
        item.update(extra)
        self.items.append(item)


def _get(client, api_version, kind, namespace, name):
    return client.get(client.resource(api_version, kind), namespace, name)


def _service_view(svc, default_ns):
    """Accept the same dicts the nim_rollout role passes to nim_service (snake_case)."""
    image = svc.get("image") or {}
    expose = svc.get("expose") or {}
    return dict(name=svc.get("name"), namespace=svc.get("namespace") or default_ns,
                auth_secret=svc.get("auth_secret"), auth_secret_key=svc.get("auth_secret_key") or "NGC_API_KEY",
                pull_secrets=image.get("pull_secrets") or [], runtime_class_name=svc.get("runtime_class_name"),
                gpus=int((svc.get("resources") or {}).get("gpus") or 0),
                cert_config_map=(svc.get("proxy") or {}).get("cert_config_map"),
                vault=((svc.get("secret_delivery") or {}).get("mode") == "vault_agent"),
                ingress=expose.get("ingress") or {}, service=expose.get("service") or {})


def doctor(client, p):
    checks = set(ALL_CHECKS if "all" in p["checks"] else p["checks"])
    unknown = checks - set(ALL_CHECKS)
    if unknown:
        raise NimError("checks: unknown check(s) %s. Fix: use some of %s, or all." % (
            ", ".join(sorted(unknown)), ", ".join(ALL_CHECKS)))
    f = Findings()
    namespace = p["namespace"]
    services = [_service_view(s, namespace) for s in p["services"]]
    namespaces = sorted(set([namespace] + [s["namespace"] for s in services]))
    try:
        _run_checks(client, p, checks, f, services, namespaces)
    except ApiError as e:
        f.add("api", "fail", "The API server answered HTTP %s to %s %s: %s"
              % (e.status, e.method, e.path, e.api_message),
              "Check the connection options and the identity's rights.")
    failed = [i for i in f.items if i["status"] == "fail"]
    warned = [i for i in f.items if i["status"] == "warn"]
    result = dict(changed=False, findings=f.items, ok=not failed, failed_checks=len(failed), warnings_count=len(warned))
    if warned:
        result["warnings"] = ["%s: %s%s" % (i["check"], i["message"], (" Fix: " + i["fix"]) if i.get("fix") else "")
                              for i in warned]
    if (failed and p["fail_on"] in ("fail", "warn")) or (warned and p["fail_on"] == "warn"):
        lines = ["- %s: %s%s" % (i["check"], i["message"], (" Fix: " + i["fix"]) if i.get("fix") else "")
                 for i in failed + (warned if p["fail_on"] == "warn" else [])]
        raise NimError("The doctor found %d problem(s) to fix before deploying:\n%s" % (len(lines), "\n".join(lines)),
                       findings=f.items, ok=False)
    return result


def _run_checks(client, p, checks, f, services, namespaces):
    exposed = set()  # (namespace, kind, name) already warned about: from the options or found live
    if "permissions" in checks:
        for ns in namespaces:
            for group, resource, verbs in NEEDED:
                denied = [v for v in verbs if not client.can_i(v, resource, ns, group)]
                if denied:
                    f.add("permissions", "fail", "the identity used cannot %s %s in namespace %s"
                          % ("/".join(denied), resource, ns),
                          "bind a Role granting %s on %s%s in %s to it, or use a kubeconfig/context that has them."
                          % (", ".join(denied), resource, " (" + group + ")" if group else "", ns))
    for svc in services:
        ns, name = svc["namespace"], svc["name"]
        if "secrets" in checks:
            if svc["auth_secret"] and not svc["vault"]:
                live = _get(client, "v1", "Secret", ns, svc["auth_secret"])
                if live is None:
                    f.add("secrets", "fail", "service %s: auth secret %s not found in namespace %s"
                          % (name, svc["auth_secret"], ns),
                          missing_secret_message(svc["auth_secret"], ns, [svc["auth_secret_key"]]), service=name)
                elif svc["auth_secret_key"] not in (live.get("data") or {}):
                    f.add("secrets", "fail", "service %s: secret %s has no key %s"
                          % (name, svc["auth_secret"], svc["auth_secret_key"]),
                          "recreate it with key %s, or set auth_secret_key to the key it has (%s)."
                          % (svc["auth_secret_key"], ", ".join(sorted(live.get("data") or {})) or "none"), service=name)
            for ps in svc["pull_secrets"]:
                live = _get(client, "v1", "Secret", ns, ps)
                if live is None:
                    f.add("secrets", "fail", "service %s: image pull secret %s not found in namespace %s"
                          % (name, ps, ns), missing_secret_message(ps, ns, [], "registry"), service=name)
                elif live.get("type") != "kubernetes.io/dockerconfigjson":
                    f.add("secrets", "fail", "service %s: pull secret %s has type %s" % (name, ps, live.get("type")),
                          "recreate it with nimguard.k8s.nim_secret kind: registry.", service=name)
        if "runtime" in checks and svc["runtime_class_name"]:
            if _get(client, "node.k8s.io/v1", "RuntimeClass", None, svc["runtime_class_name"]) is None:
                f.add("runtime", "fail", "service %s: RuntimeClass %s does not exist"
                      % (name, svc["runtime_class_name"]),
                      "run the nimguard.k8s.gpu_runtime role (it creates RuntimeClass nvidia), or drop "
                      "runtime_class_name.", service=name)
        if "ca" in checks and svc["cert_config_map"]:
            cm = _get(client, "v1", "ConfigMap", ns, svc["cert_config_map"])
            if cm is None or "ca.crt" not in (cm.get("data") or {}):
                f.add("ca", "fail", "service %s: CA ConfigMap %s %s" % (
                    name, svc["cert_config_map"], "not found" if cm is None else "has no key ca.crt"),
                    "kubectl create configmap %s --from-file=ca.crt=/path/to/ca.crt -n %s"
                    % (svc["cert_config_map"], ns), service=name)
        if "tls" in checks:
            if svc["ingress"].get("enabled") and not render.ingress_tls_secret(svc["ingress"], name):
                _warn_exposed(f, exposed, ns, "Ingress", name, service=name)
            _warn_exposed(f, exposed, ns, "Service", name, svc["service"].get("type"),
                          svc["service"].get("annotations"), service=name)
    if "gpu" in checks:
        need = max([s["gpus"] for s in services] or [0])
        if need:
            _check_gpus(client, f, need)
    if "crds" in checks:
        for wanted, group, what in ((p["uses_cert_manager"], "cert-manager.io", "cert-manager"),
                                    (p["uses_external_secrets"], "external-secrets.io", "External Secrets Operator")):
            if wanted and not client.has_api_group(group):
                f.add("crds", "fail", "%s is used but its CRDs (%s) are not installed" % (what, group),
                      "run the nimguard.k8s.%s role first." % ("cert_manager" if group == "cert-manager.io"
                                                               else "external_secrets"))
    if "tls" in checks:
        _check_exposed(client, f, namespaces, exposed)
    if "certificates" in checks and client.has_api_group("cert-manager.io"):
        _check_conditions(client, f, namespaces, "cert-manager.io/v1", "Certificate", "certificates",
                          "kubectl describe certificate %(name)s -n %(ns)s; "
                          "kubectl get certificaterequest,order,challenge -n %(ns)s; "
                          "kubectl logs -n cert-manager deploy/cert-manager")
    if "external_secrets" in checks and client.has_api_group("external-secrets.io"):
        _check_conditions(client, f, namespaces, "external-secrets.io/v1", "ExternalSecret", "external_secrets",
                          "kubectl describe externalsecret %(name)s -n %(ns)s, and check its SecretStore's status")


def _check_gpus(client, f, need):
    try:
        nodes = client.list(client.resource("v1", "Node"))
    except ApiError as e:
        if e.status == 403:
            f.add("gpu", "warn", "cannot list nodes to look for free GPUs (forbidden)")
            return
        raise
    best = 0
    for node in nodes:
        alloc = int((node.get("status", {}).get("allocatable") or {}).get("nvidia.com/gpu", "0") or 0)
        if not alloc:
            continue
        pods = client.request("GET", "/api/v1/pods", query={
            "fieldSelector": "spec.nodeName=%s,status.phase!=Succeeded,status.phase!=Failed" % node["metadata"]["name"]
        })[1].get("items", [])
        used = sum(int(((c.get("resources") or {}).get("requests") or {}).get("nvidia.com/gpu", 0) or 0)
                   for pod in pods for c in pod["spec"].get("containers", []))
        best = max(best, alloc - used)
    if best < need:
        f.add("gpu", "fail", "no node has %d free nvidia.com/gpu (most free on one node: %d)" % (need, best),
              "add GPU nodes with the NVIDIA device plugin (GPU Operator), free GPUs, or lower resources.gpus.")


# Annotations saying TLS is terminated in front of a NodePort/LoadBalancer Service: the cloud load balancers'
# own, or nimguard.io/tls-in-front: <what terminates it> for anything else (a gateway, a service mesh).
TLS_IN_FRONT = ("nimguard.io/tls-in-front", "service.beta.kubernetes.io/aws-load-balancer-ssl-cert",
                "service.beta.kubernetes.io/oci-load-balancer-ssl-ports",
                "service.beta.kubernetes.io/do-loadbalancer-certificate-id")


def _warn_exposed(f, exposed, ns, kind, name, stype=None, annotations=None, **extra):
    """One warning per object exposing a NIM API without TLS, whether it is about to be deployed or live."""
    if (ns, kind, name) in exposed:
        return
    if kind == "Ingress":
        message, fix = "Ingress %s/%s serves plain HTTP" % (ns, name), (
            "set expose.ingress.tls_secret_name or a cert-manager.io/cluster-issuer annotation (allow_plain_http "
            "turns the refusal off, not this warning).")
    elif stype in ("NodePort", "LoadBalancer") and not set(annotations or {}) & set(TLS_IN_FRONT):
        message, fix = "Service %s/%s is a %s: it exposes the NIM API without TLS in front" % (ns, name, stype), (
            "use a ClusterIP Service behind a TLS Ingress (expose.ingress with TLS), or terminate TLS at the load "
            "balancer and say so with the annotation nimguard.io/tls-in-front: <what terminates it>.")
    else:
        return
    exposed.add((ns, kind, name))
    f.add("tls", "warn", message, fix, **extra)


def _check_exposed(client, f, namespaces, exposed):
    sel = "app.kubernetes.io/managed-by=nimguard"
    for ns in namespaces:
        for ing in client.list(client.resource("networking.k8s.io/v1", "Ingress"), ns, sel):
            if not ing.get("spec", {}).get("tls"):
                _warn_exposed(f, exposed, ns, "Ingress", ing["metadata"]["name"])
        for svc in client.list(client.resource("v1", "Service"), ns, sel):
            _warn_exposed(f, exposed, ns, "Service", svc["metadata"]["name"], svc.get("spec", {}).get("type"),
                          svc["metadata"].get("annotations"))


def _check_conditions(client, f, namespaces, api_version, kind, check, look):
    ctype = "Ready"
    for ns in namespaces:
        try:
            items = client.list(client.resource(api_version, kind), ns)
        except NimError:
            return
        for item in items:
            conds = item.get("status", {}).get("conditions") or []
            ready = [c for c in conds if c.get("type") == ctype]
            if not ready or ready[0].get("status") != "True":
                c = ready[0] if ready else {}
                name = item["metadata"]["name"]
                # The condition is often a summary ("could not get secret data from provider"); the event says why.
                event = last_warning(client, item)
                f.add(check, "fail", "%s %s/%s is not ready: %s%s" % (
                    kind, ns, name, "%s: %s" % (c.get("reason"), c.get("message")) if c else "no Ready condition yet",
                    "; last warning event: %s" % event if event else ""),
                    "look further: " + look % dict(name=name, ns=ns))
