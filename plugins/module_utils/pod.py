# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hardened pod template of a NIM service (native backend), pure like render.py, which puts it into
the Deployment: non-root, no capabilities, read-only root, the key delivered as an in-memory file (or env,
or by a Vault agent), a custom CA bundle built by a non-root init container, the NIM probes."""

from __future__ import annotations

import json

from ansible_collections.nimguard.k8s.plugins.module_utils.labels import SECRETS_HASH, labels_for, metadata
from ansible_collections.nimguard.k8s.plugins.module_utils.specs import HF_KEY, NGC_KEY
from ansible_collections.nimguard.k8s.plugins.module_utils.validate import main_image

API_PORT_NAME = "api"


def camel(key):
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def env_vars(items):
    """Environment variables from the options' shape (checked by validate.env()) to the API's."""
    out = []
    for item in items or []:
        entry = {"name": item["name"]}
        vf = item.get("value_from")
        if vf:
            ref_kind = [k for k in ("secret_key_ref", "config_map_key_ref", "field_ref") if vf.get(k)][0]
            src = vf[ref_kind]
            if ref_kind == "field_ref":
                entry["valueFrom"] = {"fieldRef": {"fieldPath": src["field_path"]}}
            else:
                sel = {"name": src["name"], "key": src["key"]}
                if src.get("optional") is not None:
                    sel["optional"] = bool(src["optional"])
                entry["valueFrom"] = {camel(ref_kind): sel}
        else:
            entry["value"] = "" if item.get("value") is None else str(item["value"])
        out.append(entry)
    return out


def _probe(spec, port):
    if not spec["enabled"]:
        return None
    probe = {"httpGet": {"path": spec["path"], "port": port, "scheme": "HTTP"}}
    for key in ("initial_delay_seconds", "period_seconds", "timeout_seconds", "failure_threshold"):
        if spec[key]:  # the server omits zeros: rendering them would look like drift
            probe[camel(key)] = spec[key]
    return probe


def _proxy_env(proxy):
    env = []
    for opt, names in (("http_proxy", ("HTTP_PROXY", "http_proxy")), ("https_proxy", ("HTTPS_PROXY", "https_proxy")),
                       ("no_proxy", ("NO_PROXY", "no_proxy"))):
        if proxy[opt]:
            env.extend({"name": n, "value": proxy[opt]} for n in names)
    if env or proxy["cert_config_map"]:
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


def _resources(res):
    """Requests and limits as strings; GPUs go into both (an extended resource cannot be overcommitted)."""
    out = {}
    for section in ("requests", "limits"):
        if res[section]:
            out[section] = dict((k, str(v)) for k, v in res[section].items())
    if res["gpus"]:
        for section in ("requests", "limits"):
            out.setdefault(section, {})["nvidia.com/gpu"] = str(res["gpus"])
    return out


def _model_store(p, extra):
    """The model cache volume and its mount; a claim to create goes into `extra`."""
    storage = p["storage"]
    mount = {"name": "model-store", "mountPath": storage["mount_path"]}
    pvc = storage["pvc"]
    if pvc:
        volume = {"name": "model-store", "persistentVolumeClaim": {"claimName": pvc["name"]}}
        if pvc["sub_path"]:
            mount["subPath"] = pvc["sub_path"]
        if pvc["create"]:
            spec = {"accessModes": [pvc["access_mode"]], "resources": {"requests": {"storage": str(pvc["size"])}}}
            if pvc["storage_class"]:
                spec["storageClassName"] = pvc["storage_class"]
            labels = labels_for(p["name"], "service", p["labels"])
            extra.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "spec": spec,
                          "metadata": metadata(pvc["name"], p["namespace"], labels, p["annotations"])})
    elif storage["host_path"]:
        # Read-only on a directory that must exist: the node's files are not the pod's to create or change
        # unless the user says so (host_path_writable: a cache the NIM fills itself).
        writable = storage["host_path_writable"]
        volume = {"name": "model-store", "hostPath": {"path": storage["host_path"],
                                                      "type": "DirectoryOrCreate" if writable else "Directory"}}
        if not writable:
            mount["readOnly"] = True
    else:
        empty = {}
        ed = storage["empty_dir"] or {}
        if ed.get("size_limit"):
            empty["sizeLimit"] = str(ed["size_limit"])
        if ed.get("medium"):
            empty["medium"] = ed["medium"]
        volume = {"name": "model-store", "emptyDir": empty}
    return volume, mount


def secrets_delivered(p):
    """[(variable, Secret, key)]: what the NIM reads and where it comes from. With vault_agent the Secret and key
    are the Vault secret path and field the agent renders into the file named after the variable."""
    if p["secret_delivery"]["mode"] == "vault_agent":
        vault = p["secret_delivery"]["vault"]
        out = [(NGC_KEY, vault["secret_path"], vault["secret_field"])]
        if vault["hf_secret_path"]:
            out.append((HF_KEY, vault["hf_secret_path"], vault["hf_secret_field"]))
        return out
    out = [(NGC_KEY, p["auth_secret"], p["auth_secret_key"])]
    if p["hf_secret"]:
        out.append((HF_KEY, p["hf_secret"], p["hf_secret_key"]))
    return out


def render_pod_spec(p, secrets_hash=None):
    """The hardened pod template of a NIM service (native backend). Returns (template, extra objects)."""
    name = p["name"]
    port = p["expose"]["service"]["port"]
    image = p["image"]
    image_ref = main_image(image)
    delivery = p["secret_delivery"]
    mode, mount = delivery["mode"], delivery["mount_path"]
    read_only_root = p["read_only_root_filesystem"]
    extra = []

    env = [{"name": "NIM_SERVER_PORT", "value": str(port)},
           {"name": "NIM_CACHE_PATH", "value": p["storage"]["mount_path"]}]
    init_containers, command, args = [], None, None
    store_volume, store_mount = _model_store(p, extra)
    volumes, mounts = [store_volume], [store_mount]
    if read_only_root:
        volumes.append({"name": "tmp", "emptyDir": {}})
        mounts.append({"name": "tmp", "mountPath": "/tmp"})

    # secrets: the key options select a Secret's key (or a Vault field); the variables the NIM reads keep their
    # names (NGC_API_KEY, HF_TOKEN, or NAME_FILE for a file), as the NIM Operator injects them.
    delivered = secrets_delivered(p)
    if mode == "env":
        env.extend({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
                   for var, secret, key in delivered)
    elif mode == "file":
        # A Secret (or projected) volume is tmpfs (memory-backed) on every kubelet; read-only, owner-only readable.
        if len(delivered) == 1:
            var, secret, key = delivered[0]
            volumes.append({"name": "nim-secrets", "secret": {"secretName": secret, "defaultMode": 0o440,
                                                              "items": [{"key": key, "path": var}]}})
        else:
            volumes.append({"name": "nim-secrets", "projected": {"defaultMode": 0o440, "sources": [
                {"secret": {"name": secret, "items": [{"key": key, "path": var}]}} for var, secret, key in delivered]}})
        mounts.append({"name": "nim-secrets", "mountPath": mount, "readOnly": True})
    else:
        vault = delivery["vault"]
        volumes.append({"name": "nim-secrets", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
        mounts.append({"name": "nim-secrets", "mountPath": mount, "readOnly": True})
        init_containers.extend(_vault_agent(p, vault, mount, extra))
        volumes.extend([
            {"name": "vault-token", "projected": {"sources": [{"serviceAccountToken": {
                "audience": vault["audience"], "expirationSeconds": 3600, "path": "token"}}]}},
            {"name": "vault-agent-config", "configMap": {"name": "%s-vault-agent" % name}},
            {"name": "vault-agent-tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        ])
        if vault["ca_config_map"]:
            volumes.append({"name": "vault-ca", "configMap": {"name": vault["ca_config_map"]}})
    if mode in ("file", "vault_agent"):
        env.extend({"name": var + "_FILE", "value": "%s/%s" % (mount, var)} for var, dummy, dummy in delivered)
        if delivery["export_env"]:
            # NIM reads its key from the environment: export it from the in-memory file inside the container's
            # own process only, so it never appears in the pod spec (kubectl describe, the API, etcd).
            exports = "".join('export %s="$(cat "$%s_FILE")"; ' % (var, var) for var, dummy, dummy in delivered)
            command = ["/bin/sh", "-c", exports + 'exec "$@"', "--"]
            args = list(delivery["command"])

    # proxy and custom CA
    proxy = p["outbound_proxy"]
    env.extend(_proxy_env(proxy))
    if proxy["cert_config_map"]:
        volumes.extend([{"name": "ca-source", "configMap": {"name": proxy["cert_config_map"]}},
                        {"name": "ca-bundle", "emptyDir": {"medium": "Memory", "sizeLimit": "4Mi"}}])
        init_containers.insert(0, {
            "name": "build-ca-bundle", "image": proxy["ca_init_image"], "imagePullPolicy": image["pull_policy"],
            "command": ["/bin/sh", "-c", CA_INIT_SCRIPT],
            "securityContext": container_security(True),
            "resources": _init_resources(),
            "volumeMounts": [{"name": "ca-source", "mountPath": CA_SOURCE_DIR, "readOnly": True},
                             {"name": "ca-bundle", "mountPath": CA_BUNDLE_DIR}]})
        mounts.append({"name": "ca-bundle", "mountPath": CA_BUNDLE_DIR, "readOnly": True})
        bundle = CA_BUNDLE_DIR + "/ca-bundle.crt"
        env.extend({"name": n, "value": bundle} for n in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"))

    env.extend(env_vars(p["env"]))

    container = {
        "name": "nim", "image": image_ref, "imagePullPolicy": image["pull_policy"],
        "ports": [{"name": API_PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "env": env, "securityContext": container_security(read_only_root), "volumeMounts": mounts,
    }
    if command:
        container["command"], container["args"] = command, args
    resources = _resources(p["resources"])
    if resources:
        container["resources"] = resources
    for key in ("startup", "liveness", "readiness"):
        probe = _probe(p["probes"][key], API_PORT_NAME)
        if probe:
            container[key + "Probe"] = probe

    pod_annotations = dict(p["pod_annotations"])
    if secrets_hash and p["restart_on_rotation"]:
        pod_annotations[SECRETS_HASH] = secrets_hash
    spec = {
        "serviceAccountName": name,
        "automountServiceAccountToken": bool(p["rbac"]["automount_service_account_token"]),
        "securityContext": {"runAsNonRoot": True, "runAsUser": p["user_id"], "runAsGroup": p["group_id"],
                            "fsGroup": p["group_id"], "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }
    if init_containers:
        spec["initContainers"] = init_containers
    if p["runtime_class_name"]:
        spec["runtimeClassName"] = p["runtime_class_name"]
    if image["pull_secrets"]:
        spec["imagePullSecrets"] = [{"name": s} for s in image["pull_secrets"]]
    if p["node_selector"]:
        spec["nodeSelector"] = dict((k, str(v)) for k, v in p["node_selector"].items())
    if p["tolerations"]:
        spec["tolerations"] = p["tolerations"]
    template = {"metadata": {"labels": labels_for(name, "service", p["labels"])}, "spec": spec}
    if pod_annotations:
        template["metadata"]["annotations"] = pod_annotations
    return template, extra


def _init_resources():
    return {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}


def _vault_agent(p, vault, mount, extra):
    """Vault agent init container (and optional native sidecar) writing the keys to an in-memory volume."""
    # Every value is a quoted string literal (JSON's quoting is valid in HCL and in Go templates), on top of
    # validate._vault() keeping quotes, braces and '$' out: a value cannot end its string and add a block.
    templates = "".join(
        'template {\n  destination = %s\n  perms = "0440"\n  contents = %s\n}\n'
        % (json.dumps("%s/%s" % (mount, var)),
           json.dumps("{{ with secret %s }}{{ index .Data.data %s }}{{ end }}" % (json.dumps(path), json.dumps(field))))
        for var, path, field in secrets_delivered(p))
    ca = '\n  ca_cert = "/vault/ca/ca.crt"' if vault["ca_config_map"] else ""

    def hcl(exit_after_auth):
        return (
            'exit_after_auth = %s\npid_file = "/vault/tmp/agent.pid"\n'
            'vault {\n  address = %s%s\n}\n'
            'auto_auth {\n  method "kubernetes" {\n    mount_path = %s\n    config = {\n'
            '      role = %s\n      token_path = "/vault/token/token"\n    }\n  }\n'
            '  sink "file" {\n    config = {\n      path = "/vault/tmp/vault-token"\n    }\n  }\n}\n%s'
        ) % ("true" if exit_after_auth else "false", json.dumps(vault["address"]), ca,
             json.dumps("auth/" + vault["auth_mount_path"]), json.dumps(vault["role"]), templates)

    extra.append({"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": metadata("%s-vault-agent" % p["name"], p["namespace"],
                                       labels_for(p["name"], "service", p["labels"])),
                  "data": {"init.hcl": hcl(True), "sidecar.hcl": hcl(False)}})
    mounts = [{"name": "nim-secrets", "mountPath": mount},
              {"name": "vault-token", "mountPath": "/vault/token", "readOnly": True},
              {"name": "vault-agent-config", "mountPath": "/vault/config", "readOnly": True},
              {"name": "vault-agent-tmp", "mountPath": "/vault/tmp"}]
    if vault["ca_config_map"]:
        mounts.append({"name": "vault-ca", "mountPath": "/vault/ca", "readOnly": True})

    def agent(name, config, sidecar=False):
        c = {"name": name, "image": vault["image"], "imagePullPolicy": "IfNotPresent",
             "command": ["vault", "agent", "-config=/vault/config/%s" % config],
             "env": [{"name": "HOME", "value": "/vault/tmp"}],
             "securityContext": container_security(True), "resources": _init_resources(), "volumeMounts": mounts}
        if sidecar:
            c["restartPolicy"] = "Always"  # a native sidecar: keeps refreshing the file, stops with the pod
        return c
    out = [agent("vault-agent-init", "init.hcl")]
    if vault["refresh"]:
        out.append(agent("vault-agent", "sidecar.hcl", sidecar=True))
    return out


# What a first start may take before the startup probe counts: scheduling and pulling a NIM image (many GB).
PULL_SECONDS = 600


def rollout_timeout(p):
    """nim_service's default wait_timeout: PULL_SECONDS, then what the service's own probes allow a pod to become
    ready (startup: initial delay + period x failure threshold; then readiness alike), for each round of a
    rolling update (max_surge new pods at a time, maxUnavailable being 0)."""
    seconds = PULL_SECONDS
    for key in ("startup", "readiness"):
        probe = p["probes"][key]
        if probe["enabled"]:
            seconds += probe["initial_delay_seconds"] + probe["period_seconds"] * probe["failure_threshold"]
    surge, replicas = str(p["rollout"]["max_surge"]), max(p["replicas"], 1)
    try:
        per_round = -(-replicas * int(surge[:-1]) // 100) if surge.endswith("%") else int(surge)
    except ValueError:  # the API server names what is wrong with it
        per_round = 1
    return seconds * -(-replicas // max(per_round, 1))
