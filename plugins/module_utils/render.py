# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure rendering: options in, Kubernetes objects out. No I/O, no client, no checks, no defaults.

What the collection deploys is defined here once; the modules, the benchmark and the security suite
all render through these functions, and the unit tests call them directly. The options come complete
and checked (specs.service_options() for a service): every default is said in specs.py, every rule on
a value in validate.py, so nothing here falls back to a value of its own."""

from __future__ import annotations

import base64
import ipaddress
import json

from ansible_collections.nimguard.k8s.plugins.module_utils.labels import (
    KINDS_ANNOTATION, SECRET_KIND, SECRETS_HASH, labels_for, metadata, pod_selector)
from ansible_collections.nimguard.k8s.plugins.module_utils.pod import API_PORT_NAME, camel, env_vars, render_pod_spec
from ansible_collections.nimguard.k8s.plugins.module_utils.specs import HF_KEY, secret_keys
from ansible_collections.nimguard.k8s.plugins.module_utils.validate import cidrs, ingress_tls_secret, proxy_endpoint

# Never reachable by the service's HTTPS egress: the cloud metadata endpoints (169.254.169.254) and every other
# link-local address.
LINK_LOCAL = "169.254.0.0/16"


def _b64(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return base64.b64encode(str(value).encode("utf-8")).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Secrets


def render_secret(p):
    """A Secret from nim_secret options that carry a value (checked by validate.secret())."""
    name, kind = p["name"], p["kind"]
    stype, data = "Opaque", {}
    if kind in ("ngc", "huggingface"):
        data[secret_keys(p)[0]] = _b64(p["value"].strip())
    elif kind == "registry":
        reg = p["registry"]
        server, user = reg["server"], reg["username"]
        auth = {"username": user, "password": reg["password"], "auth": _b64("%s:%s" % (user, reg["password"]))}
        if reg["email"]:
            auth["email"] = reg["email"]
        stype = "kubernetes.io/dockerconfigjson"
        data[".dockerconfigjson"] = _b64(json.dumps({"auths": {server: auth}}, sort_keys=True, separators=(",", ":")))
    elif kind == "tls":
        tls = p["tls"]
        stype = "kubernetes.io/tls"
        data["tls.crt"], data["tls.key"] = _b64(tls["cert"].strip() + "\n"), _b64(tls["key"].strip() + "\n")
        if tls["ca"]:
            data["ca.crt"] = _b64(tls["ca"].strip() + "\n")
    else:
        for key, value in p["data"].items():
            data[key] = _b64(value)
    labels = labels_for(name, "secret", p["labels"])
    labels[SECRET_KIND] = kind
    return {"apiVersion": "v1", "kind": "Secret", "type": stype, "data": data,
            "metadata": metadata(name, p["namespace"], labels, p["annotations"])}


# ---------------------------------------------------------------------------------------------
# RBAC


def scc_for(host_path=False, override=None):
    """The one OpenShift SCC a NIM service may use: hostmount-anyuid only for a hostPath model store (nonroot
    allows no hostPath volume). A proxy CA needs nothing more: its init container runs as the service's uid."""
    if override:
        return override
    return "hostmount-anyuid" if host_path else "nonroot"


def role_rules(rules):
    """RBAC rules from the options' shape (checked by validate.rules()) to the API's."""
    out = []
    for rule in rules or []:
        groups = rule.get("api_groups")
        out_rule = {"apiGroups": [""] if groups is None else list(groups), "resources": list(rule["resources"]),
                    "verbs": list(rule["verbs"])}
        if rule.get("resource_names"):
            out_rule["resourceNames"] = list(rule["resource_names"])
        out.append(out_rule)
    return out


def render_rbac(name, namespace, openshift=False, scc=None, extra_rules=None, automount=False, labels=None,
                annotations=None):
    """ServiceAccount, Role and RoleBinding named after the service (the NIM Operator's convention).
    extra_rules: in the API's shape (role_rules())."""
    labels = labels_for(name, "rbac", labels)
    rules = []
    if openshift:
        rules.append({"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"],
                      "resourceNames": [scc or scc_for()], "verbs": ["use"]})
    rules.extend(extra_rules or [])
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": metadata(name, namespace, labels, annotations)}
    if rules:
        role["rules"] = rules
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(name, namespace, labels, annotations),
         "automountServiceAccountToken": bool(automount)},
        role,
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": metadata(name, namespace, labels, annotations),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]


# ---------------------------------------------------------------------------------------------
# NIM service


def secrets_consumed(p):
    """{Secret name: (option naming it, option naming its key, [keys read])} of the Secrets whose bytes the pods
    see: their content hash rolls the Deployment, and a missing one is reported with the keys really referenced."""
    out = {}

    def use(name, field, key_field, key):
        if name:
            keys = out.setdefault(name, (field, key_field, []))[2]
            if key not in keys:
                keys.append(key)
    if p["secret_delivery"]["mode"] != "vault_agent":
        use(p["auth_secret"], "auth_secret", "auth_secret_key", p["auth_secret_key"])
        use(p["hf_secret"], "hf_secret", "hf_secret_key", p["hf_secret_key"])
    for i, item in enumerate(p["env"]):
        ref_ = (item.get("value_from") or {}).get("secret_key_ref") or {}
        where = "env[%d].value_from.secret_key_ref" % i
        use(ref_.get("name"), where + ".name", where + ".key", ref_.get("key"))
    return out


def render_network_policy(p, labels):
    np_opts = p["network_policy"]
    peer = {"namespaceSelector": {"matchLabels": dict(np_opts["ingress_namespace_selector"])}}
    if np_opts["ingress_pod_selector"]:
        peer["podSelector"] = {"matchLabels": dict(np_opts["ingress_pod_selector"])}
    ingress = [{"from": [peer], "ports": [{"protocol": "TCP", "port": p["expose"]["service"]["port"]}]}]
    ingress.extend(np_opts["extra_ingress"])
    egress = []
    if np_opts["allow_dns"]:
        # DNS to the cluster's DNS pods only: port 53 anywhere else is a way out (DNS tunnels, other resolvers).
        dns = {"namespaceSelector": {"matchLabels": dict(np_opts["dns_namespace_selector"])},
               "podSelector": {"matchLabels": dict(np_opts["dns_pod_selector"])}}
        egress.append({"to": [dns], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]})
    if np_opts["allow_https"]:
        egress.append(_outbound_rule(p["outbound_proxy"], np_opts["cluster_cidrs"]))
    egress.extend(np_opts["extra_egress"])
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata(p["name"], p["namespace"], labels, p["annotations"]),
            "spec": {"podSelector": {"matchLabels": pod_selector(p["name"])},
                     "policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": egress}}


def _outbound_rule(proxy, cluster_cidrs):
    """The one way out of the pods: the proxy when one is set (its address only when it is an IP), else HTTPS
    to any address but link-local ones and the cluster's own ranges (its Services and pods are not the NIM's
    to call)."""
    endpoint = proxy_endpoint(proxy)
    if endpoint:
        host, port = endpoint
        rule = {"ports": [{"protocol": "TCP", "port": port}]}
        try:
            rule["to"] = [{"ipBlock": {"cidr": str(ipaddress.ip_network(host))}}]
        except ValueError:
            pass  # a host name: a NetworkPolicy cannot name it, so the port alone narrows the rule
        return rule
    excluded = [LINK_LOCAL] + [c for c in cidrs(cluster_cidrs, "network_policy.cluster_cidrs") if c != LINK_LOCAL]
    return {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": excluded}}],
            "ports": [{"protocol": "TCP", "port": 443}]}


def render_service(p, secrets_hash=None, openshift=False):
    """Every object of a NIM service, in apply order. p: complete options (specs.service_options())."""
    name, namespace = p["name"], p["namespace"]
    labels = labels_for(name, "service", p["labels"])
    annotations = p["annotations"]
    objs = []
    rbac = p["rbac"]
    if p["backend"] == "native" and rbac["create"]:
        scc = scc_for(bool(p["storage"]["host_path"]), rbac["scc"])
        objs.extend(render_rbac(name, namespace, openshift, scc, role_rules(rbac["extra_rules"]),
                                rbac["automount_service_account_token"], p["labels"], annotations))
    svc_opts = p["expose"]["service"]
    if p["backend"] == "operator":
        objs.append(render_nimservice(p, secrets_hash))
    else:
        template, extra = render_pod_spec(p, secrets_hash)
        objs.extend(extra)
        objs.append({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(name, namespace, labels, annotations),
            "spec": {"replicas": p["replicas"], "selector": {"matchLabels": pod_selector(name)},
                     # maxUnavailable 0: a rotation or upgrade never takes serving capacity away
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxUnavailable": 0, "maxSurge": p["rollout"]["max_surge"]}},
                     "template": template}})
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": metadata(name, namespace, labels, dict(annotations, **svc_opts["annotations"])),
               "spec": {"type": svc_opts["type"], "selector": pod_selector(name),
                        "ports": [{"name": API_PORT_NAME, "port": svc_opts["port"], "targetPort": API_PORT_NAME,
                                   "protocol": "TCP"}]}}
        if not svc["metadata"].get("annotations"):
            svc["metadata"].pop("annotations", None)
        objs.append(svc)
        if p["expose"]["ingress"]["enabled"]:
            objs.append(render_ingress(p, labels))
    if p["network_policy"]["enabled"]:
        objs.append(render_network_policy(p, labels))
    for obj in objs:
        if obj["kind"] == "Deployment":
            obj["metadata"].setdefault("annotations", {})[KINDS_ANNOTATION] = ",".join(
                sorted(set("%s/%s" % (o["apiVersion"], o["kind"]) for o in objs)))
    return objs


def render_ingress(p, labels):
    name, ingress = p["name"], p["expose"]["ingress"]
    annotations = dict(p["annotations"])
    annotations.update(ingress["annotations"])
    spec = {"rules": [{"host": ingress["host"], "http": {"paths": [{
        "path": ingress["path"], "pathType": ingress["path_type"],
        "backend": {"service": {"name": name, "port": {"number": p["expose"]["service"]["port"]}}}}]}}]}
    if ingress["class_name"]:
        spec["ingressClassName"] = ingress["class_name"]
    tls_secret = ingress_tls_secret(ingress, name)
    if tls_secret:
        spec["tls"] = [{"hosts": [ingress["host"]], "secretName": tls_secret}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": metadata(name, p["namespace"], labels, annotations), "spec": spec}


def render_nimservice(p, secrets_hash=None):
    """The NIM Operator's NIMService (apps.nvidia.com/v1alpha1) with the same spec."""
    image = p["image"]
    spec = {"image": {"repository": image["repository"], "tag": str(image["tag"]), "pullPolicy": image["pull_policy"]},
            "authSecret": p["auth_secret"], "userID": p["user_id"], "groupID": p["group_id"],
            "replicas": p["replicas"]}
    if image["pull_secrets"]:
        spec["image"]["pullSecrets"] = list(image["pull_secrets"])
    if p["runtime_class_name"]:
        spec["runtimeClassName"] = p["runtime_class_name"]
    env = env_vars(p["env"])
    if p["hf_secret"]:  # the operator injects NGC_API_KEY from authSecret; the token is ours to add
        env.insert(0, {"name": HF_KEY, "valueFrom": {"secretKeyRef": {"name": p["hf_secret"], "key": p["hf_secret_key"]}}})
    if env:
        spec["env"] = env
    storage = p["storage"]
    if storage["pvc"]:
        pvc = storage["pvc"]
        s = {"create": bool(pvc["create"])}
        for opt, key in (("name", "name"), ("size", "size"), ("storage_class", "storageClass"),
                         ("access_mode", "volumeAccessMode"), ("sub_path", "subPath")):
            if pvc[opt]:
                s[key] = str(pvc[opt])
        spec["storage"] = {"pvc": s}
    elif storage["host_path"]:
        spec["storage"] = {"hostPath": storage["host_path"]}
    elif storage["empty_dir"]:
        spec["storage"] = {"emptyDir": dict((camel(k), v) for k, v in storage["empty_dir"].items() if v)}
    res = p["resources"]
    resources = dict((s, dict((k, str(v)) for k, v in res[s].items())) for s in ("requests", "limits") if res[s])
    if res["gpus"]:
        resources.setdefault("limits", {})["nvidia.com/gpu"] = str(res["gpus"])
    if resources:
        spec["resources"] = resources
    svc = p["expose"]["service"]
    spec["expose"] = {"service": {"type": svc["type"], "port": svc["port"]}}
    if p["expose"]["ingress"]["enabled"]:
        ing = render_ingress(p, {})
        spec["expose"]["ingress"] = {"enabled": True, "spec": ing["spec"]}
        if ing["metadata"].get("annotations"):
            spec["expose"]["ingress"]["annotations"] = ing["metadata"]["annotations"]
    proxy = p["outbound_proxy"]
    keys = ("http_proxy", "https_proxy", "no_proxy", "cert_config_map")
    if any(proxy[k] for k in keys):
        spec["proxy"] = dict((camel(k), proxy[k]) for k in keys if proxy[k])
    if p["node_selector"]:
        spec["nodeSelector"] = dict(p["node_selector"])
    if p["tolerations"]:
        spec["tolerations"] = p["tolerations"]
    annotations = dict(p["pod_annotations"])
    if secrets_hash and p["restart_on_rotation"]:
        annotations[SECRETS_HASH] = secrets_hash
    if annotations:
        spec["annotations"] = annotations
    return {"apiVersion": "apps.nvidia.com/v1alpha1", "kind": "NIMService",
            "metadata": metadata(p["name"], p["namespace"], labels_for(p["name"], "service", p["labels"]),
                                 p["annotations"]), "spec": spec}


SERVICE_KINDS = [("v1", "ServiceAccount"), ("rbac.authorization.k8s.io/v1", "Role"),
                 ("rbac.authorization.k8s.io/v1", "RoleBinding"), ("v1", "ConfigMap"),
                 ("v1", "PersistentVolumeClaim"), ("apps/v1", "Deployment"), ("v1", "Service"),
                 ("networking.k8s.io/v1", "Ingress"), ("networking.k8s.io/v1", "NetworkPolicy")]
RBAC_KINDS = SERVICE_KINDS[:3]
