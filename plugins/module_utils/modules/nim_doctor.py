# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nim_doctor: the troubleshooting cases of a NIM deployment, read-only, each finding with its fix.

A service's own needs (Secrets, RuntimeClass, GPUs, CA) are checked by checks.py, the same code as
nim_service's preflight; the checks of the whole namespace (the caller's permissions, CRDs, services
exposed without TLS, Certificates and ExternalSecrets not ready) are here."""

from __future__ import annotations

from ansible_collections.nimguard.k8s.plugins.module_utils import checks, specs
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import ApiError, NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.labels import AUTH_IN_FRONT, MANAGED_SELECTOR, TLS_IN_FRONT
from ansible_collections.nimguard.k8s.plugins.module_utils.validate import ingress_tls_secret
from ansible_collections.nimguard.k8s.plugins.module_utils.wait import last_warning

NAME = "nim_doctor"
ALL_CHECKS = ("secrets", "runtime", "gpu", "ca", "crds", "permissions", "tls", "auth", "certificates",
              "external_secrets")

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
    """Every finding kept, in the order found (checks.py reports to it as to nim_service's Preflight)."""

    def __init__(self, service=None, items=None):
        self.service = service
        self.items = [] if items is None else items

    def add(self, check, status, message, fix=None, field=None, service=None, **details):
        """details (missing_secret, ...) go into nim_service's error result; a finding's message says it all."""
        text = "%s: %s" % (field, message) if field else message
        if self.service:
            text = "service %s: %s" % (self.service, text)
        item = dict(check=check, status=status, message=text)
        if fix:
            item["fix"] = fix
        if service or self.service:
            item["service"] = service or self.service
        self.items.append(item)

    def of(self, service):
        """The same findings, about one service: its name leads each message."""
        return Findings(service, self.items)


def _service_view(svc, default_ns):
    """A service as the nim_rollout role passes it to nim_service (unchecked, possibly partial: defaults are
    nim_service's, from specs.py)."""
    image = svc.get("image") or {}
    expose = svc.get("expose") or {}
    return dict(name=svc.get("name"), namespace=svc.get("namespace") or default_ns,
                auth_secret=svc.get("auth_secret"), auth_secret_key=svc.get("auth_secret_key") or specs.NGC_KEY,
                hf_secret=svc.get("hf_secret"), hf_secret_key=svc.get("hf_secret_key") or specs.HF_KEY,
                pull_secrets=image.get("pull_secrets") or [], runtime_class_name=svc.get("runtime_class_name"),
                gpus=int((svc.get("resources") or {}).get("gpus") or 0),
                cert_config_map=specs.outbound_proxy(svc).get("cert_config_map"),
                vault=((svc.get("secret_delivery") or {}).get("mode") == "vault_agent"),
                ingress=expose.get("ingress") or {}, service=expose.get("service") or {})


def run(p, task):
    wanted = set(ALL_CHECKS if "all" in p["checks"] else p["checks"])
    unknown = wanted - set(ALL_CHECKS)
    if unknown:
        raise NimError("checks: unknown check(s) %s. Fix: use some of %s, or all." % (
            ", ".join(sorted(unknown)), ", ".join(ALL_CHECKS)))
    f = Findings()
    namespace = p["namespace"]
    services = [_service_view(s, namespace) for s in p["services"]]
    namespaces = sorted(set([namespace] + [s["namespace"] for s in services]))
    try:
        _run_checks(task.client(p), p, wanted, f, services, namespaces)
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


def _run_checks(client, p, wanted, f, services, namespaces):
    exposed = set()  # (namespace, kind, name) already warned about: from the options or found live
    if "permissions" in wanted:
        for ns in namespaces:
            for group, resource, verbs in NEEDED:
                denied = [v for v in verbs if not client.can_i(v, resource, ns, group)]
                if denied:
                    f.add("permissions", "fail", "the identity used cannot %s %s in namespace %s"
                          % ("/".join(denied), resource, ns),
                          "bind a Role granting %s on %s%s in %s to it, or use a kubeconfig/context that has them."
                          % (", ".join(denied), resource, " (" + group + ")" if group else "", ns))
    for svc in services:
        ns, name, report = svc["namespace"], svc["name"], f.of(svc["name"])
        if "secrets" in wanted:
            secrets = client.resource("v1", "Secret")  # an API error becomes the `api` finding (see run())
            written = set(p["written_secrets"])  # the caller writes these after the doctor: not there yet
            for field in ("auth_secret", "hf_secret"):
                if svc[field] and not svc["vault"] and svc[field] not in written:
                    live = client.get(secrets, ns, svc[field])
                    checks.secret(report, live, ns, svc[field], [svc[field + "_key"]], field=field,
                                  key_field=field + "_key")
            for ps in (ps for ps in svc["pull_secrets"] if ps not in written):
                checks.pull_secret(report, client.get(secrets, ns, ps), ns, ps)
        if "runtime" in wanted and svc["runtime_class_name"]:
            checks.runtime_class(report, client, svc["runtime_class_name"])
        if "ca" in wanted and svc["cert_config_map"]:
            checks.ca_config_map(report, client, ns, svc["cert_config_map"])
        if "tls" in wanted:
            if svc["ingress"].get("enabled") and not ingress_tls_secret(svc["ingress"], name):
                _warn_exposed(f, exposed, ns, "Ingress", name, service=name)
            _warn_exposed(f, exposed, ns, "Service", name, svc["service"].get("type"),
                          svc["service"].get("annotations"), service=name)
        if "auth" in wanted and svc["ingress"].get("enabled"):
            _warn_unauthenticated(f, exposed, ns, name, svc["ingress"].get("annotations"), service=name)
    if "gpu" in wanted:
        need = max([s["gpus"] for s in services] or [0])
        if need:
            checks.gpus(f, client, need, set((s["namespace"], s["name"]) for s in services))
    if "crds" in wanted:
        for used, group, what in ((p["uses_cert_manager"], "cert-manager.io", "cert-manager"),
                                  (p["uses_external_secrets"], "external-secrets.io", "External Secrets Operator")):
            if used and not client.has_api_group(group):
                f.add("crds", "fail", "%s is used but its CRDs (%s) are not installed" % (what, group),
                      "run the nimguard.k8s.%s role first." % ("cert_manager" if group == "cert-manager.io"
                                                               else "external_secrets"))
    if "tls" in wanted or "auth" in wanted:
        _check_exposed(client, f, namespaces, exposed, wanted)
    if "certificates" in wanted and client.has_api_group("cert-manager.io"):
        _check_conditions(client, f, namespaces, "cert-manager.io/v1", "Certificate", "certificates",
                          "kubectl describe certificate %(name)s -n %(ns)s; "
                          "kubectl get certificaterequest,order,challenge -n %(ns)s; "
                          "kubectl logs -n cert-manager deploy/cert-manager", _certificate_cause)
    if "external_secrets" in wanted and client.has_api_group("external-secrets.io"):
        _check_conditions(client, f, namespaces, "external-secrets.io/v1", "ExternalSecret", "external_secrets",
                          "kubectl describe externalsecret %(name)s -n %(ns)s, and check its SecretStore's status",
                          _external_secret_cause)


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


def _warn_unauthenticated(f, seen, ns, name, annotations, **extra):
    """One warning per Ingress that lets anyone who reaches it use the inference API: NIM has no authentication
    of its own."""
    if ("auth", ns, name) in seen or set(annotations or {}) & set(AUTH_IN_FRONT):
        return
    seen.add(("auth", ns, name))
    f.add("auth", "warn", "Ingress %s/%s puts the NIM inference API on the network with no authentication in front: "
          "anyone who reaches it can use the model" % (ns, name),
          "add authentication at the ingress controller (ingress-nginx: nginx.ingress.kubernetes.io/auth-url to an "
          "OAuth2 proxy such as oauth2-proxy, auth-type: basic, or auth-tls-verify-client for client certificates; "
          "Traefik: a forwardAuth/basicAuth middleware; AWS ALB: alb.ingress.kubernetes.io/auth-type: cognito|oidc), "
          "or an API gateway or service mesh policy in front, and say so with the annotation "
          "nimguard.io/auth-in-front: <what authenticates> in expose.ingress.annotations.", **extra)


def _check_exposed(client, f, namespaces, exposed, wanted):
    for ns in namespaces:
        for ing in client.list(client.resource("networking.k8s.io/v1", "Ingress"), ns, MANAGED_SELECTOR):
            if "tls" in wanted and not ing.get("spec", {}).get("tls"):
                _warn_exposed(f, exposed, ns, "Ingress", ing["metadata"]["name"])
            if "auth" in wanted:
                _warn_unauthenticated(f, exposed, ns, ing["metadata"]["name"], ing["metadata"].get("annotations"))
        if "tls" not in wanted:
            continue
        for svc in client.list(client.resource("v1", "Service"), ns, MANAGED_SELECTOR):
            _warn_exposed(f, exposed, ns, "Service", svc["metadata"]["name"], svc.get("spec", {}).get("type"),
                          svc["metadata"].get("annotations"))


# cert-manager's --cluster-resource-namespace (its default): where a ClusterIssuer's Secrets live.
CERT_MANAGER_NAMESPACE = "cert-manager"


def _ready(obj):
    """(ready, its Ready condition or {})."""
    conds = [c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
    return bool(conds) and conds[0].get("status") == "True", (conds[0] if conds else {})


def _why(cond):
    return "%s: %s" % (cond.get("reason"), cond.get("message")) if cond else "no Ready condition yet"


def _certificate_cause(client, cert):
    """(message, fix) of the broken link nearest the root below a Certificate that is not ready (its issuer's CA
    Secret, its Issuer or ClusterIssuer, its latest CertificateRequest), or None when they all look fine."""
    ns, name = cert["metadata"]["namespace"], cert["metadata"]["name"]
    ref = (cert.get("spec") or {}).get("issuerRef") or {}
    kind, issuer_name = ref.get("kind") or "Issuer", ref.get("name")
    if (ref.get("group") or "cert-manager.io") != "cert-manager.io" or kind not in ("Issuer", "ClusterIssuer"):
        return None  # an external issuer: its shape is its own
    issuer = client.get(client.resource("cert-manager.io/v1", kind), ns if kind == "Issuer" else None, issuer_name)
    what = "%s %s" % (kind, issuer_name)
    if issuer is None:
        return ("its %s does not exist" % what,
                "create it (the nimguard.k8s.cert_manager role makes the ClusterIssuers), or set the Certificate's "
                "spec.issuerRef to an existing one.")
    secret = ((issuer.get("spec") or {}).get("ca") or {}).get("secretName")
    if secret:
        secret_ns = ns if kind == "Issuer" else CERT_MANAGER_NAMESPACE
        if client.get(client.resource("v1", "Secret"), secret_ns, secret) is None:
            return ("its %s signs with the CA key pair in Secret %s/%s, which does not exist" % (what, secret_ns, secret),
                    "recreate that Secret (tls.crt and tls.key of the CA: rerun the nimguard.k8s.cert_manager role, "
                    "which makes it), or point the issuer's spec.ca.secretName at an existing one; cert-manager then "
                    "retries the issuance.")
    ok, cond = _ready(issuer)
    if not ok:
        return ("its %s is not Ready: %s" % (what, _why(cond)),
                "kubectl describe %s %s%s" % (kind.lower(), issuer_name, " -n " + ns if kind == "Issuer" else ""))
    requests = [r for r in client.list(client.resource("cert-manager.io/v1", "CertificateRequest"), ns)
                if ((r["metadata"].get("annotations") or {}).get("cert-manager.io/certificate-name")) == name]
    if requests:
        latest = max(requests, key=lambda r: r["metadata"].get("creationTimestamp") or "")
        ok, cond = _ready(latest)
        if not ok and cond:
            return ("its CertificateRequest %s is not ready: %s" % (latest["metadata"]["name"], _why(cond)),
                    "kubectl describe certificaterequest %s -n %s" % (latest["metadata"]["name"], ns))
    return None


def _external_secret_cause(client, es):
    """(message, fix) of a broken SecretStore or ClusterSecretStore below an ExternalSecret, or None."""
    ns = es["metadata"]["namespace"]
    ref = (es.get("spec") or {}).get("secretStoreRef") or {}
    kind, name = ref.get("kind") or "SecretStore", ref.get("name")
    if not name or kind not in ("SecretStore", "ClusterSecretStore"):
        return None
    store = client.get(client.resource(es["apiVersion"], kind), ns if kind == "SecretStore" else None, name)
    if store is None:
        return ("its %s %s does not exist" % (kind, name),
                "create it (the nimguard.k8s.external_secrets role makes stores), or set the ExternalSecret's "
                "spec.secretStoreRef to an existing one.")
    ok, cond = _ready(store)
    if not ok:
        return ("its %s %s is not Ready: %s" % (kind, name, _why(cond)),
                "fix the store's provider settings and the Secret holding its credentials (kubectl describe %s %s%s)."
                % (kind.lower(), name, " -n " + ns if kind == "SecretStore" else ""))
    return None


def _check_conditions(client, f, namespaces, api_version, kind, check, look, cause=None):
    """A finding for each object of a kind that is not Ready, with the first broken link of its cause chain
    (`cause(client, obj)`) and that link's fix when one is found, else where to look further."""
    for ns in namespaces:
        try:
            items = client.list(client.resource(api_version, kind), ns)
        except NimError:
            return
        for item in items:
            ok, c = _ready(item)
            if ok:
                continue
            name = item["metadata"]["name"]
            item.setdefault("metadata", {}).setdefault("namespace", ns)
            found = cause(client, item) if cause else None
            if found:
                f.add(check, "fail", "%s %s/%s is not ready: %s; cause: %s" % (kind, ns, name, _why(c), found[0]),
                      found[1])
                continue
            # The condition is often a summary ("could not get secret data from provider"); the event says why.
            event = last_warning(client, item)
            f.add(check, "fail", "%s %s/%s is not ready: %s%s" % (
                kind, ns, name, _why(c), "; last warning event: %s" % event if event else ""),
                "look further: " + look % dict(name=name, ns=ns))
