# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure rendering: validated options in, Kubernetes objects out. No I/O, no client.

What the collection deploys is defined here once; the modules, the benchmark and the security suite
all render through these functions, and the unit tests call them directly.
"""

from __future__ import annotations

import base64
import json
import re

from ansible_collections.nimguard.k8s.plugins.module_utils.client import NimError

COMPONENT = "nimguard.io/component"
KINDS_ANNOTATION = "nimguard.io/applied-kinds"  # on the Deployment: what prune must look at (see apply.read)
SECRETS_HASH = "nimguard.io/secrets-hash"
MANAGED = {"app.kubernetes.io/managed-by": "nimguard"}
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
RBAC_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "use", "bind",
              "escalate", "impersonate", "approve", "sign", "proxy"}
API_PORT_NAME = "api"
DEFAULT_NIM_COMMAND = ["/opt/nvidia/nvidia_entrypoint.sh", "/opt/nim/start_server.sh"]
VAULT_AGENT_IMAGE = "hashicorp/vault:1.21.4"


# ---------------------------------------------------------------------------------------------
# Validation helpers


def check_name(value, field, kind="dns1123"):
    pattern, limit, rule = {
        "dns1035": (DNS1035, 63, "lower-case letters, digits and '-', starting with a letter"),
        "dns1123": (DNS1123_LABEL, 63, "lower-case letters, digits and '-', starting and ending alphanumeric"),
        "subdomain": (DNS1123_SUBDOMAIN, 253, "lower-case letters, digits, '-' and '.'"),
    }[kind]
    if not isinstance(value, str) or not value or len(value) > limit or not pattern.match(value):
        raise NimError("%s: %r is not a valid name. Fix: use at most %d %s (for example 'llama3-8b')."
                       % (field, value, limit, rule))
    return value


def labels_for(name, component, extra=None):
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name, COMPONENT: component}
    labels.update(MANAGED)
    if extra:
        labels.update(extra)
    return labels


def prune_scope(name, components, kinds, namespace, anchor=None):
    """Which live objects belong to one instance: the kinds to look at and the labels that mark them;
    `anchor` (apiVersion, kind, name): the object whose KINDS_ANNOTATION lists the kinds last applied."""
    return dict(kinds=kinds, namespace=namespace, components=sorted(components), anchor=anchor,
                labels={"app.kubernetes.io/managed-by": "nimguard", "app.kubernetes.io/instance": name})


def _meta(name, namespace, labels, annotations=None):
    meta = {"name": name, "labels": labels}
    if namespace:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _b64(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return base64.b64encode(str(value).encode("utf-8")).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Secrets

SECRET_DEFAULT_KEY = {"ngc": "NGC_API_KEY", "huggingface": "HF_TOKEN"}


def secret_expected_keys(p):
    """The keys a Secret of this kind must carry (used for presence checks and rendering)."""
    kind = p["kind"]
    if kind in SECRET_DEFAULT_KEY:
        return [p.get("key") or SECRET_DEFAULT_KEY[kind]]
    if kind == "registry":
        return [".dockerconfigjson"]
    if kind == "tls":
        return ["tls.crt", "tls.key"]
    return sorted((p.get("data") or {}).keys()) or list(p.get("keys") or [])


def secret_has_value(p):
    kind = p["kind"]
    if kind in SECRET_DEFAULT_KEY:
        return p.get("value") is not None
    if kind == "registry":
        return bool((p.get("registry") or {}).get("password"))
    if kind == "tls":
        return bool((p.get("tls") or {}).get("cert"))
    return p.get("data") is not None


def render_secret(p):
    """A Secret from nim_secret options (which carry a value)."""
    name = check_name(p["name"], "name", "subdomain")
    kind = p["kind"]
    stype, data = "Opaque", {}
    if kind in SECRET_DEFAULT_KEY:
        key = secret_expected_keys(p)[0]
        _check_key(key, "key")
        value = p["value"]
        if not isinstance(value, str) or not value.strip():
            raise NimError("value: the %s secret value is empty. Fix: pass the key, e.g. value: \"{{ "
                           "lookup('ansible.builtin.env', '%s') }}\" or an Ansible Vault variable." % (kind, key))
        data[key] = _b64(value.strip())
    elif kind == "registry":
        reg = p.get("registry") or {}
        server, user = reg.get("server") or "nvcr.io", reg.get("username") or "$oauthtoken"
        auth = {"username": user, "password": reg["password"], "auth": _b64("%s:%s" % (user, reg["password"]))}
        if reg.get("email"):
            auth["email"] = reg["email"]
        stype = "kubernetes.io/dockerconfigjson"
        data[".dockerconfigjson"] = _b64(json.dumps({"auths": {server: auth}}, sort_keys=True, separators=(",", ":")))
    elif kind == "tls":
        tls = p.get("tls") or {}
        if not tls.get("key"):
            raise NimError("tls.key: a TLS secret needs the private key as well as tls.cert. Fix: set tls.key "
                           "(e.g. \"{{ lookup('ansible.builtin.file', 'tls.key') }}\" from a vaulted file).")
        stype = "kubernetes.io/tls"
        data["tls.crt"], data["tls.key"] = _b64(tls["cert"].strip() + "\n"), _b64(tls["key"].strip() + "\n")
        if tls.get("ca"):
            data["ca.crt"] = _b64(tls["ca"].strip() + "\n")
    else:
        items = p.get("data") or {}
        if not isinstance(items, dict) or not items:
            raise NimError("data: a generic secret needs a non-empty dict of key: value. Fix: data: {API_KEY: ...}.")
        for key, value in items.items():
            _check_key(key, "data")
            data[key] = _b64(value)
    labels = labels_for(name, "secret", p.get("labels"))
    labels["nimguard.io/secret-kind"] = kind
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name, p["namespace"], labels, p.get("annotations")),
            "type": stype, "data": data}


def _check_key(key, field):
    if not isinstance(key, str) or not SECRET_KEY.match(key) or len(key) > 253:
        raise NimError("%s: %r is not a valid Secret key. Fix: use letters, digits, '-', '_', '.'." % (field, key))


# ---------------------------------------------------------------------------------------------
# RBAC


def scc_for(host_path=False, proxy_ca=False, override=None):
    """The one OpenShift SCC a NIM service may use, as the NIM Operator chooses it."""
    if override:
        return override
    if host_path:
        return "hostmount-anyuid"
    if proxy_ca:
        return "anyuid"
    return "nonroot"


def validate_rules(rules, allow_wildcards=False, field="extra_rules"):
    out = []
    for i, rule in enumerate(rules or []):
        where = "%s[%d]" % (field, i)
        verbs, resources = rule.get("verbs") or [], rule.get("resources") or []
        if not verbs or not resources:
            raise NimError("%s: a rule needs `verbs` and `resources`. Fix: e.g. {api_groups: [''], resources: "
                           "[configmaps], verbs: [get, list]}." % where)
        unknown = sorted(set(verbs) - RBAC_VERBS - {"*"})
        if unknown:
            raise NimError("%s.verbs: unknown verb(s) %s. Fix: use some of %s."
                           % (where, ", ".join(unknown), ", ".join(sorted(RBAC_VERBS))))
        groups = rule.get("api_groups")
        if groups is None:
            groups = [""]
        if not allow_wildcards and ("*" in verbs or "*" in resources or "*" in groups):
            raise NimError("%s: wildcards ('*') grant far more than a NIM service needs. Fix: list the verbs, "
                           "resources and api_groups, or set allow_wildcards: true if you really mean it." % where)
        out_rule = {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}
        if rule.get("resource_names"):
            out_rule["resourceNames"] = list(rule["resource_names"])
        out.append(out_rule)
    return out


def render_rbac(name, namespace, openshift=False, scc=None, extra_rules=None, automount=False, labels=None,
                annotations=None):
    """ServiceAccount, Role and RoleBinding named after the service (the NIM Operator's convention)."""
    labels = labels_for(name, "rbac", labels)
    rules = []
    if openshift:
        rules.append({"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"],
                      "resourceNames": [scc or "nonroot"], "verbs": ["use"]})
    rules.extend(extra_rules or [])
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": _meta(name, namespace, labels, annotations)}
    if rules:
        role["rules"] = rules
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace, labels, annotations),
         "automountServiceAccountToken": bool(automount)},
        role,
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(name, namespace, labels, annotations),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]


# ---------------------------------------------------------------------------------------------
# NIM service


def _camel(key):
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _env(items, field="env"):
    out = []
    for i, item in enumerate(items or []):
        name = item.get("name")
        if not name or not ENV_NAME.match(name):
            raise NimError("%s[%d].name: %r is not a valid environment variable name. Fix: use letters, digits, '_', '-', '.' "
                           "and do not start with a digit." % (field, i, name))
        entry = {"name": name}
        vf = item.get("value_from")
        if vf:
            if item.get("value") is not None:
                raise NimError("%s[%d]: both value and value_from are set. Fix: keep one." % (field, i))
            ref_kind = [k for k in ("secret_key_ref", "config_map_key_ref", "field_ref") if vf.get(k)]
            if len(ref_kind) != 1:
                raise NimError("%s[%d].value_from: Fix: set exactly one of secret_key_ref, config_map_key_ref, "
                               "field_ref." % (field, i))
            src = vf[ref_kind[0]]
            if ref_kind[0] == "field_ref":
                entry["valueFrom"] = {"fieldRef": {"fieldPath": src["field_path"]}}
            else:
                if not src.get("name") or not src.get("key"):
                    raise NimError("%s[%d].value_from.%s: Fix: set both name and key." % (field, i, ref_kind[0]))
                sel = {"name": src["name"], "key": src["key"]}
                if src.get("optional") is not None:
                    sel["optional"] = bool(src["optional"])
                entry["valueFrom"] = {_camel(ref_kind[0]): sel}
        else:
            entry["value"] = "" if item.get("value") is None else str(item["value"])
        out.append(entry)
    return out


def secrets_consumed(p):
    """Secret names whose bytes the pods see: the content hash of these rolls the Deployment."""
    names = []
    delivery = p["secret_delivery"]["mode"]
    if p.get("auth_secret") and delivery != "vault_agent":
        names.append(p["auth_secret"])
    for item in p.get("env") or []:
        ref_ = ((item.get("value_from") or {}).get("secret_key_ref") or {}).get("name")
        if ref_:
            names.append(ref_)
    return sorted(set(names))


def validate_service(p):
    """Checks that need no cluster. Raise NimError naming the field and the fix."""
    check_name(p["name"], "name", "dns1035")
    check_name(p["namespace"], "namespace", "dns1123")
    if p["user_id"] == 0:
        raise NimError("user_id: 0 is root, and NIM services must run as a non-root user. Fix: use a non-zero "
                       "user_id (the default is 1000).")
    if p["group_id"] == 0:
        raise NimError("group_id: 0 is the root group. Fix: use a non-zero group_id (the default is 2000).")
    if p["user_id"] < 0 or p["group_id"] < 0:
        raise NimError("user_id/group_id: negative. Fix: use positive integers.")
    mode = p["secret_delivery"]["mode"]
    if not p.get("auth_secret") and mode != "vault_agent":
        raise NimError("auth_secret: a NIM service needs the name of the Secret holding its NGC API key. Fix: create "
                       "it with nimguard.k8s.nim_secret (kind: ngc) and set auth_secret to its name.")
    if p.get("auth_secret"):
        check_name(p["auth_secret"], "auth_secret", "subdomain")
    if p["backend"] == "operator" and mode != "env":
        raise NimError("secret_delivery.mode: the NIM Operator injects the key as an env var only. Fix: set "
                       "secret_delivery.mode: env with backend: operator, or use backend: native for %s." % mode)
    if mode == "vault_agent":
        vault = p["secret_delivery"].get("vault") or {}
        missing = [k for k in ("address", "role", "secret_path") if not vault.get(k)]
        if missing:
            raise NimError("secret_delivery.vault: %s required for mode vault_agent. Fix: set them (e.g. address: "
                           "https://vault.example.com:8200, role: nim, secret_path: secret/data/nim/ngc)."
                           % ", ".join(missing))
    image = p["image"]
    if not image.get("repository"):
        raise NimError("image.repository: missing. Fix: set it, e.g. nvcr.io/nim/meta/llama-3.1-8b-instruct.")
    for i, ps in enumerate(image.get("pull_secrets") or []):
        check_name(ps, "image.pull_secrets[%d]" % i, "subdomain")
    storage = p.get("storage") or {}
    kinds = [k for k in ("pvc", "host_path", "empty_dir") if storage.get(k)]
    if len(kinds) > 1:
        raise NimError("storage: several storage kinds given (%s). Fix: choose one of pvc, host_path, empty_dir." % ", ".join(kinds))
    pvc = storage.get("pvc")
    if pvc:
        if pvc.get("create") and not pvc.get("size"):
            raise NimError("storage.pvc.size: required when storage.pvc.create is true. Fix: set storage.pvc.size (e.g. 50Gi).")
        if not pvc.get("create") and not pvc.get("name"):
            raise NimError("storage.pvc.name: missing. Fix: name the existing claim, or set storage.pvc.create: true.")
    if storage.get("host_path") and not str(storage["host_path"]).startswith("/"):
        raise NimError("storage.host_path: must be absolute. Fix: use a path such as /mnt/nim-cache.")
    ingress = (p.get("expose") or {}).get("ingress") or {}
    if ingress.get("enabled"):
        annotations = ingress.get("annotations") or {}
        issuer = any(k.startswith("cert-manager.io/") for k in annotations)
        if not ingress.get("host"):
            raise NimError("expose.ingress.host: an Ingress needs a host name. Fix: set expose.ingress.host (e.g. nim.example.com).")
        if not ingress.get("tls_secret_name") and not issuer and not ingress.get("allow_plain_http"):
            raise NimError(
                "expose.ingress: refusing an Ingress without TLS for %s. Fix (either): set "
                "expose.ingress.tls_secret_name to a TLS Secret (nimguard.k8s.nim_secret kind: tls), or add the "
                "annotation cert-manager.io/cluster-issuer: <issuer> to expose.ingress.annotations. To serve plain "
                "HTTP anyway, set expose.ingress.allow_plain_http: true." % ingress["host"])
    gpus = (p.get("resources") or {}).get("gpus") or 0
    if gpus < 0:
        raise NimError("resources.gpus: negative. Fix: use 0 or more.")
    if p["replicas"] < 0:
        raise NimError("replicas: negative. Fix: use 0 or more.")
    _env(p.get("env"))


def _probe(spec, default_path, port, defaults):
    spec = spec or {}
    if spec.get("enabled") is False:
        return None
    probe = {"httpGet": {"path": spec.get("path") or default_path, "port": port, "scheme": "HTTP"}}
    for key, default in defaults.items():
        value = default if spec.get(key) is None else spec[key]
        if value:  # the server omits zeros: rendering them would look like drift
            probe[_camel(key)] = value
    return probe


def _proxy_env(proxy):
    env = []
    for opt, names in (("http_proxy", ("HTTP_PROXY", "http_proxy")), ("https_proxy", ("HTTPS_PROXY", "https_proxy")),
                       ("no_proxy", ("NO_PROXY", "no_proxy"))):
        if proxy.get(opt):
            env.extend({"name": n, "value": proxy[opt]} for n in names)
    if env or proxy.get("cert_config_map"):
        env.append({"name": "NIM_SDK_USE_NATIVE_TLS", "value": "1"})
    return env


def container_security(read_only_root=True):
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": bool(read_only_root), "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"}}


CA_BUNDLE_DIR = "/etc/nimguard/ca"
CA_SOURCE_DIR = "/etc/nimguard/ca-source"
# Non-root, no package manager: concatenate the image's bundle (first one found) and the custom CA.
CA_INIT_SCRIPT = (
    "set -e; out=%s/ca-bundle.crt; : > \"$out\"; "
    "for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do "
    "if [ -f \"$f\" ]; then cat \"$f\" >> \"$out\"; break; fi; done; "
    "for f in %s/*; do [ -f \"$f\" ] && { cat \"$f\"; echo; } >> \"$out\"; done; "
    "echo \"nimguard: CA bundle built with $(grep -c 'BEGIN CERTIFICATE' \"$out\") certificates\""
) % (CA_BUNDLE_DIR, CA_SOURCE_DIR)


def render_pod_spec(p, secrets_hash=None):
    """The hardened pod template of a NIM service (native backend). Returns (template, extra objects)."""
    name, namespace = p["name"], p["namespace"]
    port = (p.get("expose") or {}).get("service", {}).get("port") or 8000
    image = p["image"]
    image_ref = "%s:%s" % (image["repository"], image.get("tag") or "latest")
    delivery = p["secret_delivery"]
    mode = delivery["mode"]
    mount = delivery.get("mount_path") or "/var/run/secrets/nim"
    key_name = p.get("auth_secret_key") or "NGC_API_KEY"
    storage = p.get("storage") or {}
    read_only_root = p.get("read_only_root_filesystem", True)
    extra = []

    env = [{"name": "NIM_SERVER_PORT", "value": str(port)},
           {"name": "NIM_CACHE_PATH", "value": storage.get("mount_path") or "/model-store"}]
    volumes, mounts = [], []
    init_containers, command, args = [], None, None

    # model store
    store_mount = {"name": "model-store", "mountPath": storage.get("mount_path") or "/model-store"}
    if storage.get("pvc"):
        pvc = storage["pvc"]
        claim = pvc.get("name") or "%s-model-store" % name
        volumes.append({"name": "model-store", "persistentVolumeClaim": {"claimName": claim}})
        if pvc.get("sub_path"):
            store_mount["subPath"] = pvc["sub_path"]
        if pvc.get("create"):
            spec = {"accessModes": [pvc.get("access_mode") or "ReadWriteOnce"],
                    "resources": {"requests": {"storage": str(pvc["size"])}}}
            if pvc.get("storage_class"):
                spec["storageClassName"] = pvc["storage_class"]
            extra.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                          "metadata": _meta(claim, namespace, labels_for(name, "service", p.get("labels")),
                                            p.get("annotations")), "spec": spec})
    elif storage.get("host_path"):
        volumes.append({"name": "model-store", "hostPath": {"path": storage["host_path"], "type": "DirectoryOrCreate"}})
    else:
        empty = {}
        ed = storage.get("empty_dir") or {}
        if ed.get("size_limit"):
            empty["sizeLimit"] = str(ed["size_limit"])
        if ed.get("medium"):
            empty["medium"] = ed["medium"]
        volumes.append({"name": "model-store", "emptyDir": empty})
    mounts.append(store_mount)
    if read_only_root:
        volumes.append({"name": "tmp", "emptyDir": {}})
        mounts.append({"name": "tmp", "mountPath": "/tmp"})

    # secrets
    if mode == "env":
        env.append({"name": key_name, "valueFrom": {"secretKeyRef": {"name": p["auth_secret"], "key": key_name}}})
    elif mode == "file":
        # A Secret volume is tmpfs (memory-backed) on every kubelet; read-only, owner-only readable.
        volumes.append({"name": "nim-secrets", "secret": {"secretName": p["auth_secret"], "defaultMode": 0o440,
                                                          "items": [{"key": key_name, "path": key_name}]}})
        mounts.append({"name": "nim-secrets", "mountPath": mount, "readOnly": True})
        env.append({"name": key_name + "_FILE", "value": "%s/%s" % (mount, key_name)})
    else:
        vault = delivery["vault"]
        volumes.append({"name": "nim-secrets", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
        mounts.append({"name": "nim-secrets", "mountPath": mount, "readOnly": True})
        env.append({"name": key_name + "_FILE", "value": "%s/%s" % (mount, key_name)})
        init_containers.extend(_vault_agent(p, vault, mount, key_name, extra))
        volumes.extend([
            {"name": "vault-token", "projected": {"sources": [{"serviceAccountToken": {
                "audience": vault.get("audience") or "vault", "expirationSeconds": 3600, "path": "token"}}]}},
            {"name": "vault-agent-config", "configMap": {"name": "%s-vault-agent" % name}},
            {"name": "vault-agent-tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        ])
        if vault.get("ca_config_map"):
            volumes.append({"name": "vault-ca", "configMap": {"name": vault["ca_config_map"]}})
    if mode in ("file", "vault_agent") and delivery.get("export_env", True):
        # NIM reads its key from the environment: export it from the in-memory file inside the container's
        # own process only, so it never appears in the pod spec (kubectl describe, the API, etcd).
        start = list(delivery.get("command") or DEFAULT_NIM_COMMAND)
        command = ["/bin/sh", "-c", 'export %s="$(cat "$%s_FILE")"; exec "$@"' % (key_name, key_name), "--"]
        args = start

    # proxy and custom CA
    proxy = p.get("proxy") or {}
    env.extend(_proxy_env(proxy))
    if proxy.get("cert_config_map"):
        volumes.extend([{"name": "ca-source", "configMap": {"name": proxy["cert_config_map"]}},
                        {"name": "ca-bundle", "emptyDir": {"medium": "Memory", "sizeLimit": "4Mi"}}])
        init_containers.insert(0, {
            "name": "build-ca-bundle", "image": proxy.get("ca_init_image") or image_ref,
            "imagePullPolicy": image.get("pull_policy") or "IfNotPresent",
            "command": ["/bin/sh", "-c", CA_INIT_SCRIPT],
            "securityContext": container_security(True),
            "resources": _init_resources(),
            "volumeMounts": [{"name": "ca-source", "mountPath": CA_SOURCE_DIR, "readOnly": True},
                             {"name": "ca-bundle", "mountPath": CA_BUNDLE_DIR}]})
        mounts.append({"name": "ca-bundle", "mountPath": CA_BUNDLE_DIR, "readOnly": True})
        bundle = CA_BUNDLE_DIR + "/ca-bundle.crt"
        env.extend({"name": n, "value": bundle} for n in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"))

    env.extend(_env(p.get("env")))

    res = p.get("resources") or {}
    resources = {}
    for section in ("requests", "limits"):
        if res.get(section):
            resources[section] = dict((k, str(v)) for k, v in res[section].items())
    if res.get("gpus"):
        for section in ("requests", "limits"):
            resources.setdefault(section, {})["nvidia.com/gpu"] = str(res["gpus"])

    probes = p.get("probes") or {}
    container = {
        "name": "nim", "image": image_ref, "imagePullPolicy": image.get("pull_policy") or "IfNotPresent",
        "ports": [{"name": API_PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "env": env, "securityContext": container_security(read_only_root), "volumeMounts": mounts,
    }
    if command:
        container["command"], container["args"] = command, args
    if resources:
        container["resources"] = resources
    for key, path, defaults in (
            ("startup", "/v1/health/ready", {"initial_delay_seconds": 10, "period_seconds": 10,
                                             "timeout_seconds": 1, "failure_threshold": 180}),
            ("liveness", "/v1/health/live", {"initial_delay_seconds": 0, "period_seconds": 10,
                                             "timeout_seconds": 1, "failure_threshold": 3}),
            ("readiness", "/v1/health/ready", {"initial_delay_seconds": 0, "period_seconds": 5,
                                               "timeout_seconds": 1, "failure_threshold": 3})):
        probe = _probe(probes.get(key), path, API_PORT_NAME, defaults)
        if probe:
            container[key + "Probe"] = probe

    pod_labels = labels_for(name, "service", p.get("labels"))
    pod_annotations = dict(p.get("pod_annotations") or {})
    if secrets_hash and p.get("restart_on_rotation", True):
        pod_annotations[SECRETS_HASH] = secrets_hash
    spec = {
        "serviceAccountName": name,
        "automountServiceAccountToken": bool((p.get("rbac") or {}).get("automount_service_account_token")),
        "securityContext": {"runAsNonRoot": True, "runAsUser": p["user_id"], "runAsGroup": p["group_id"],
                            "fsGroup": p["group_id"], "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }
    if init_containers:
        spec["initContainers"] = init_containers
    if p.get("runtime_class_name"):
        spec["runtimeClassName"] = p["runtime_class_name"]
    if image.get("pull_secrets"):
        spec["imagePullSecrets"] = [{"name": s} for s in image["pull_secrets"]]
    if p.get("node_selector"):
        spec["nodeSelector"] = dict((k, str(v)) for k, v in p["node_selector"].items())
    if p.get("tolerations"):
        spec["tolerations"] = p["tolerations"]
    template = {"metadata": {"labels": pod_labels}, "spec": spec}
    if pod_annotations:
        template["metadata"]["annotations"] = pod_annotations
    return template, extra


def _init_resources():
    return {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}


def _vault_agent(p, vault, mount, key_name, extra):
    """Vault agent init container (and optional native sidecar) writing the key to an in-memory volume."""
    field = vault.get("secret_field") or "ngc_api_key"
    template = '{{ with secret "%s" }}{{ .Data.data.%s }}{{ end }}' % (vault["secret_path"], field)
    ca = '\n  ca_cert = "/vault/ca/ca.crt"' if vault.get("ca_config_map") else ""

    def hcl(exit_after_auth):
        return (
            'exit_after_auth = %s\npid_file = "/vault/tmp/agent.pid"\n'
            'vault {\n  address = "%s"%s\n}\n'
            'auto_auth {\n  method "kubernetes" {\n    mount_path = "auth/%s"\n    config = {\n'
            '      role = "%s"\n      token_path = "/vault/token/token"\n    }\n  }\n'
            '  sink "file" {\n    config = {\n      path = "/vault/tmp/vault-token"\n    }\n  }\n}\n'
            'template {\n  destination = "%s/%s"\n  perms = "0440"\n  contents = %s\n}\n'
        ) % ("true" if exit_after_auth else "false", vault["address"], ca, vault.get("auth_mount_path") or "kubernetes",
             vault["role"], mount, key_name, json.dumps(template))

    extra.append({"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": _meta("%s-vault-agent" % p["name"], p["namespace"],
                                    labels_for(p["name"], "service", p.get("labels"))),
                  "data": {"init.hcl": hcl(True), "sidecar.hcl": hcl(False)}})
    mounts = [{"name": "nim-secrets", "mountPath": mount},
              {"name": "vault-token", "mountPath": "/vault/token", "readOnly": True},
              {"name": "vault-agent-config", "mountPath": "/vault/config", "readOnly": True},
              {"name": "vault-agent-tmp", "mountPath": "/vault/tmp"}]
    if vault.get("ca_config_map"):
        mounts.append({"name": "vault-ca", "mountPath": "/vault/ca", "readOnly": True})
    image = vault.get("image") or VAULT_AGENT_IMAGE

    def agent(name, config, sidecar=False):
        c = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
             "command": ["vault", "agent", "-config=/vault/config/%s" % config],
             "env": [{"name": "HOME", "value": "/vault/tmp"}],
             "securityContext": container_security(True), "resources": _init_resources(), "volumeMounts": mounts}
        if sidecar:
            c["restartPolicy"] = "Always"  # a native sidecar: keeps refreshing the file, stops with the pod
        return c
    out = [agent("vault-agent-init", "init.hcl")]
    if vault.get("refresh"):
        out.append(agent("vault-agent", "sidecar.hcl", sidecar=True))
    return out


def render_network_policy(p, labels):
    np_opts = p.get("network_policy") or {}
    port = (p.get("expose") or {}).get("service", {}).get("port") or 8000
    peer = {"namespaceSelector": {"matchLabels": dict(np_opts.get("ingress_namespace_selector") or
                                                      {"kubernetes.io/metadata.name": "ingress-nginx"})}}
    if np_opts.get("ingress_pod_selector"):
        peer["podSelector"] = {"matchLabels": dict(np_opts["ingress_pod_selector"])}
    ingress = [{"from": [peer], "ports": [{"protocol": "TCP", "port": port}]}]
    ingress.extend(np_opts.get("extra_ingress") or [])
    egress = []
    if np_opts.get("allow_dns", True):
        egress.append({"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]})
    if np_opts.get("allow_https", True):
        egress.append({"ports": [{"protocol": "TCP", "port": 443}]})
    egress.extend(np_opts.get("extra_egress") or [])
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(p["name"], p["namespace"], labels, p.get("annotations")),
            "spec": {"podSelector": {"matchLabels": pod_selector(p["name"])},
                     "policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": egress}}


def pod_selector(name):
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}


def render_service(p, secrets_hash=None, openshift=False):
    """Every object of a NIM service, in apply order. p is validated nim_service options."""
    validate_service(p)
    name, namespace = p["name"], p["namespace"]
    labels = labels_for(name, "service", p.get("labels"))
    annotations = p.get("annotations")
    objs = []
    rbac = p.get("rbac") or {}
    if p["backend"] == "native" and rbac.get("create", True):
        storage = p.get("storage") or {}
        scc = scc_for(bool(storage.get("host_path")), bool((p.get("proxy") or {}).get("cert_config_map")),
                      rbac.get("scc"))
        objs.extend(render_rbac(name, namespace, openshift, scc,
                                validate_rules(rbac.get("extra_rules"), rbac.get("allow_wildcards"),
                                               "rbac.extra_rules"),
                                rbac.get("automount_service_account_token"), p.get("labels"), annotations))
    expose = p.get("expose") or {}
    svc_opts = expose.get("service") or {}
    port = svc_opts.get("port") or 8000
    if p["backend"] == "operator":
        objs.append(render_nimservice(p, secrets_hash))
    else:
        template, extra = render_pod_spec(p, secrets_hash)
        objs.extend(extra)
        max_surge = (p.get("rollout") or {}).get("max_surge")
        objs.append({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, namespace, labels, annotations),
            "spec": {"replicas": p["replicas"], "selector": {"matchLabels": pod_selector(name)},
                     # maxUnavailable 0: a rotation or upgrade never takes serving capacity away
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1 if max_surge is None
                                                    else max_surge}},
                     "template": template}})
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": _meta(name, namespace, labels, dict(annotations or {}, **(svc_opts.get("annotations") or {}))),
               "spec": {"type": svc_opts.get("type") or "ClusterIP", "selector": pod_selector(name),
                        "ports": [{"name": API_PORT_NAME, "port": port, "targetPort": API_PORT_NAME,
                                   "protocol": "TCP"}]}}
        if not svc["metadata"].get("annotations"):
            svc["metadata"].pop("annotations", None)
        objs.append(svc)
        ingress = expose.get("ingress") or {}
        if ingress.get("enabled"):
            objs.append(render_ingress(p, labels, ingress, port))
    if (p.get("network_policy") or {}).get("enabled", True):
        objs.append(render_network_policy(p, labels))
    for obj in objs:
        if obj["kind"] == "Deployment":
            obj["metadata"].setdefault("annotations", {})[KINDS_ANNOTATION] = ",".join(
                sorted(set("%s/%s" % (o["apiVersion"], o["kind"]) for o in objs)))
    return objs


def ingress_tls_secret(ingress, name):
    if ingress.get("tls_secret_name"):
        return ingress["tls_secret_name"]
    if any(k.startswith("cert-manager.io/") for k in ingress.get("annotations") or {}):
        return "%s-tls" % name  # cert-manager's ingress-shim fills this Secret
    return None


def render_ingress(p, labels, ingress, port):
    name = p["name"]
    annotations = dict(p.get("annotations") or {})
    annotations.update(ingress.get("annotations") or {})
    spec = {"rules": [{"host": ingress["host"], "http": {"paths": [{
        "path": ingress.get("path") or "/", "pathType": ingress.get("path_type") or "Prefix",
        "backend": {"service": {"name": name, "port": {"number": port}}}}]}}]}
    if ingress.get("class_name"):
        spec["ingressClassName"] = ingress["class_name"]
    tls_secret = ingress_tls_secret(ingress, name)
    if tls_secret:
        spec["tls"] = [{"hosts": [ingress["host"]], "secretName": tls_secret}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": _meta(name, p["namespace"], labels, annotations), "spec": spec}


def render_nimservice(p, secrets_hash=None):
    """The NIM Operator's NIMService (apps.nvidia.com/v1alpha1) with the same spec."""
    image = p["image"]
    spec = {"image": {"repository": image["repository"], "tag": str(image.get("tag") or "latest"),
                      "pullPolicy": image.get("pull_policy") or "IfNotPresent"},
            "authSecret": p["auth_secret"], "userID": p["user_id"], "groupID": p["group_id"],
            "replicas": p["replicas"]}
    if image.get("pull_secrets"):
        spec["image"]["pullSecrets"] = list(image["pull_secrets"])
    if p.get("runtime_class_name"):
        spec["runtimeClassName"] = p["runtime_class_name"]
    env = _env(p.get("env"))
    if env:
        spec["env"] = env
    storage = p.get("storage") or {}
    if storage.get("pvc"):
        pvc = storage["pvc"]
        s = {"create": bool(pvc.get("create"))}
        for opt, key in (("name", "name"), ("size", "size"), ("storage_class", "storageClass"),
                         ("access_mode", "volumeAccessMode"), ("sub_path", "subPath")):
            if pvc.get(opt):
                s[key] = str(pvc[opt])
        spec["storage"] = {"pvc": s}
    elif storage.get("host_path"):
        spec["storage"] = {"hostPath": storage["host_path"]}
    elif storage.get("empty_dir"):
        spec["storage"] = {"emptyDir": dict((_camel(k), v) for k, v in storage["empty_dir"].items() if v)}
    res = p.get("resources") or {}
    resources = dict((s, dict((k, str(v)) for k, v in res[s].items())) for s in ("requests", "limits") if res.get(s))
    if res.get("gpus"):
        resources.setdefault("limits", {})["nvidia.com/gpu"] = str(res["gpus"])
    if resources:
        spec["resources"] = resources
    expose = p.get("expose") or {}
    svc = expose.get("service") or {}
    spec["expose"] = {"service": {"type": svc.get("type") or "ClusterIP", "port": svc.get("port") or 8000}}
    ingress = expose.get("ingress") or {}
    if ingress.get("enabled"):
        ing = render_ingress(p, {}, ingress, svc.get("port") or 8000)
        spec["expose"]["ingress"] = {"enabled": True, "spec": ing["spec"]}
        if ing["metadata"].get("annotations"):
            spec["expose"]["ingress"]["annotations"] = ing["metadata"]["annotations"]
    proxy = p.get("proxy") or {}
    if any(proxy.get(k) for k in ("http_proxy", "https_proxy", "no_proxy", "cert_config_map")):
        keys = ("http_proxy", "https_proxy", "no_proxy", "cert_config_map")
        spec["proxy"] = dict((_camel(k), proxy[k]) for k in keys if proxy.get(k))
    if p.get("node_selector"):
        spec["nodeSelector"] = dict(p["node_selector"])
    if p.get("tolerations"):
        spec["tolerations"] = p["tolerations"]
    annotations = dict(p.get("pod_annotations") or {})
    if secrets_hash and p.get("restart_on_rotation", True):
        annotations[SECRETS_HASH] = secrets_hash
    if annotations:
        spec["annotations"] = annotations
    return {"apiVersion": "apps.nvidia.com/v1alpha1", "kind": "NIMService",
            "metadata": _meta(p["name"], p["namespace"], labels_for(p["name"], "service", p.get("labels")),
                              p.get("annotations")), "spec": spec}


SERVICE_KINDS = [("v1", "ServiceAccount"), ("rbac.authorization.k8s.io/v1", "Role"),
                 ("rbac.authorization.k8s.io/v1", "RoleBinding"), ("v1", "ConfigMap"),
                 ("v1", "PersistentVolumeClaim"), ("apps/v1", "Deployment"), ("v1", "Service"),
                 ("networking.k8s.io/v1", "Ingress"), ("networking.k8s.io/v1", "NetworkPolicy")]
RBAC_KINDS = SERVICE_KINDS[:3]
