import base64
import copy
import json

import pytest

from ansible_collections.nimguard.k8s.plugins.module_utils import labels, render, specs
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError

from .helpers import rules, secret, service


def by_kind(objs):
    return dict((o["kind"], o) for o in objs)


def pod(objs):
    return by_kind(objs)["Deployment"]["spec"]["template"]["spec"]


def test_default_service_renders_full_hardened_set():
    objs = render.render_service(service(), "sha256:abc")
    assert [o["kind"] for o in objs] == ["ServiceAccount", "Role", "RoleBinding", "Deployment", "Service",
                                         "NetworkPolicy"]
    spec = pod(objs)
    assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 2000, "fsGroup": 2000,
                                       "seccompProfile": {"type": "RuntimeDefault"}}
    c = spec["containers"][0]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "llama"
    dep = by_kind(objs)["Deployment"]
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert dep["spec"]["template"]["metadata"]["annotations"][labels.SECRETS_HASH] == "sha256:abc"
    for o in objs:
        assert o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "nimguard"


def test_rendering_is_deterministic():
    a = json.dumps(render.render_service(service(), "h"), sort_keys=True)
    b = json.dumps(render.render_service(service(), "h"), sort_keys=True)
    assert a == b


def test_no_zero_values_rendered_that_the_server_would_drop():
    c = pod(render.render_service(service()))["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert all(v != 0 for v in c[probe].values()), c[probe]


def test_file_delivery_keeps_the_key_out_of_the_pod_spec_env():
    spec = pod(render.render_service(service()))
    c = spec["containers"][0]
    assert not any("valueFrom" in e for e in c["env"])
    vol = [v for v in spec["volumes"] if v["name"] == "nim-secrets"][0]
    assert vol["secret"]["secretName"] == "ngc-api-secret"
    mount = [m for m in c["volumeMounts"] if m["name"] == "nim-secrets"][0]
    assert mount["readOnly"] is True and mount["mountPath"] == "/var/run/secrets/nim"
    assert {"name": "NGC_API_KEY_FILE", "value": "/var/run/secrets/nim/NGC_API_KEY"} in c["env"]
    assert c["command"][:2] == ["/bin/sh", "-c"] and c["args"] == specs.DEFAULT_NIM_COMMAND


def test_file_delivery_without_export_keeps_the_image_command():
    c = pod(render.render_service(service(secret_delivery={"mode": "file", "export_env": False})))["containers"][0]
    assert "command" not in c and "args" not in c


def test_env_delivery_matches_the_operator():
    c = pod(render.render_service(service(secret_delivery={"mode": "env"})))["containers"][0]
    assert {"name": "NGC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "ngc-api-secret",
                                                                  "key": "NGC_API_KEY"}}} in c["env"]


def test_vault_agent_uses_memory_volume_and_token_only_in_the_agent():
    p = service(auth_secret=None, secret_delivery={"mode": "vault_agent", "vault": {
        "address": "https://vault.example.com:8200", "role": "nim", "secret_path": "secret/data/nim/ngc",
        "refresh": True}})
    objs = render.render_service(p)
    spec = pod(objs)
    vol = [v for v in spec["volumes"] if v["name"] == "nim-secrets"][0]
    assert vol["emptyDir"]["medium"] == "Memory"
    assert [c["name"] for c in spec["initContainers"]] == ["vault-agent-init", "vault-agent"]
    assert spec["initContainers"][1]["restartPolicy"] == "Always"
    main = spec["containers"][0]
    assert not any(m["name"] == "vault-token" for m in main["volumeMounts"])
    assert "secret/data/nim/ngc" in by_kind(objs)["ConfigMap"]["data"]["init.hcl"]


def test_proxy_sets_env_and_ca_init_container():
    p = service(outbound_proxy={"https_proxy": "http://proxy:8080", "no_proxy": ".svc", "cert_config_map": "custom-ca"})
    spec = pod(render.render_service(p))
    env = dict((e["name"], e.get("value")) for e in spec["containers"][0]["env"])
    for k in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        assert k in env
    assert env["NIM_SDK_USE_NATIVE_TLS"] == "1"
    assert env["SSL_CERT_FILE"].endswith("ca-bundle.crt")
    init = spec["initContainers"][0]
    assert init["name"] == "build-ca-bundle"
    assert init["securityContext"]["runAsNonRoot"] is True
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_gpus_and_runtime_class():
    spec = pod(render.render_service(service(resources={"gpus": 2}, runtime_class_name="nvidia")))
    res = spec["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/gpu"] == "2" and res["requests"]["nvidia.com/gpu"] == "2"
    assert spec["runtimeClassName"] == "nvidia"


def test_restart_on_rotation_false_leaves_no_hash():
    objs = render.render_service(service(restart_on_rotation=False), "sha256:abc")
    assert labels.SECRETS_HASH not in (by_kind(objs)["Deployment"]["spec"]["template"]["metadata"].get("annotations")
                                       or {})


def test_pvc_created_and_mounted():
    objs = render.render_service(service(storage={"pvc": {"create": True, "size": "50Gi", "storage_class": "fast"}}))
    pvc = by_kind(objs)["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == "llama-model-store"
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}},
                           "storageClassName": "fast"}


def test_ingress_with_cert_manager_gets_tls_secret():
    objs = render.render_service(service(expose={"ingress": {
        "enabled": True, "host": "nim.example.com", "class_name": "nginx",
        "annotations": {"cert-manager.io/cluster-issuer": "ca-issuer"}}}))
    ing = by_kind(objs)["Ingress"]
    assert ing["spec"]["tls"] == [{"hosts": ["nim.example.com"], "secretName": "llama-tls"}]
    assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "ca-issuer"


def test_network_policy_default_deny_with_dns_and_https():
    np_ = by_kind(render.render_service(service()))["NetworkPolicy"]["spec"]
    assert np_["policyTypes"] == ["Ingress", "Egress"]
    assert np_["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]
    ports = sorted((p["protocol"], p["port"]) for rule in np_["egress"] for p in rule["ports"])
    assert ports == [("TCP", 53), ("TCP", 443), ("UDP", 53)]


def test_operator_backend_renders_nimservice():
    objs = render.render_service(service(backend="operator", resources={"gpus": 1}), "h")
    assert [o["kind"] for o in objs] == ["NIMService", "NetworkPolicy"]
    spec = objs[0]["spec"]
    assert spec["authSecret"] == "ngc-api-secret" and spec["userID"] == 1000 and spec["groupID"] == 2000
    assert spec["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("overrides,field", [
    (dict(user_id=0), "user_id"),
    (dict(group_id=0), "group_id"),
    (dict(name="Llama_3"), "name"),
    (dict(name="3llama"), "name"),
    (dict(namespace="NIM"), "namespace"),
    (dict(auth_secret=None), "auth_secret"),
    (dict(expose={"ingress": {"enabled": True, "host": "nim.example.com"}}), "expose.ingress"),
    (dict(expose={"ingress": {"enabled": True}}), "expose.ingress.host"),
    (dict(storage={"pvc": {"create": True}}), "storage.pvc.size"),
    (dict(storage={"pvc": {"create": False}}), "storage.pvc.name"),
    (dict(storage={"host_path": "relative"}), "storage.host_path"),
    (dict(storage={"host_path": "/mnt", "empty_dir": {"size_limit": "1Gi"}}), "storage"),
    (dict(backend="operator", secret_delivery={"mode": "file"}), "secret_delivery.mode"),
    (dict(secret_delivery={"mode": "vault_agent", "vault": {"address": "https://v"}}), "secret_delivery.vault"),
    (dict(env=[{"name": "1BAD", "value": "x"}]), "env[0].name"),
    (dict(image={"repository": "nim", "tag": "1", "pull_secrets": ["Bad_Name"]}), "image.pull_secrets[0]"),
    (dict(rbac={"extra_rules": [{"resources": ["*"], "verbs": ["get"]}]}), "rbac.extra_rules[0]"),
])
def test_bad_input_names_the_field(overrides, field):
    with pytest.raises(NimError) as e:
        render.render_service(service(**overrides))
    assert e.value.msg.startswith(field), e.value.msg
    assert "Fix" in e.value.msg


def test_plain_http_ingress_needs_explicit_opt_out():
    objs = render.render_service(service(expose={"ingress": {"enabled": True, "host": "h.example.com",
                                                             "allow_plain_http": True}}))
    assert "tls" not in by_kind(objs)["Ingress"]["spec"]


def test_scc_choice_follows_the_operator():
    assert render.scc_for() == "nonroot"
    assert render.scc_for(host_path=True) == "hostmount-anyuid"
    assert render.scc_for(True, "custom") == "custom"
    role = by_kind(render.render_rbac("llama", "nim", openshift=True, scc="anyuid"))["Role"]
    assert role["rules"] == [{"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"],
                              "resourceNames": ["anyuid"], "verbs": ["use"]}]
    assert "rules" not in by_kind(render.render_rbac("llama", "nim"))["Role"]


def test_rules_validation():
    ok = rules([{"api_groups": [""], "resources": ["configmaps"], "verbs": ["get"]}])
    assert ok == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    with pytest.raises(NimError, match="unknown verb"):
        rules([{"resources": ["pods"], "verbs": ["read"]}])
    with pytest.raises(NimError, match="allow_dangerous_rules"):  # '*' includes escalate, secrets, pods/exec
        rules([{"resources": ["*"], "verbs": ["*"]}], allow_wildcards=True)
    assert rules([{"resources": ["*"], "verbs": ["*"]}], allow_wildcards=True, allow_dangerous=True)[0]["verbs"] == ["*"]


def test_secrets_render():
    ngc = render.render_secret(secret(name="ngc", namespace="nim", kind="ngc", value="nvapi-test"))
    assert ngc["type"] == "Opaque" and list(ngc["data"]) == ["NGC_API_KEY"]
    reg = render.render_secret(secret(name="pull", namespace="nim", kind="registry",
                                      registry={"password": "pw"}))
    doc = json.loads(base64.b64decode(reg["data"][".dockerconfigjson"]))
    assert doc["auths"]["nvcr.io"]["username"] == "$oauthtoken"
    assert base64.b64decode(doc["auths"]["nvcr.io"]["auth"]) == b"$oauthtoken:pw"
    with pytest.raises(NimError, match="^value"):
        render.render_secret(secret(name="ngc", namespace="nim", kind="ngc", value="  "))
    with pytest.raises(NimError, match="^data"):
        render.render_secret(secret(name="g", namespace="nim", data={}))


def test_secrets_consumed():
    p = service(env=[{"name": "HF_TOKEN", "value_from": {"secret_key_ref": {"name": "hf", "key": "HF_TOKEN"}}}])
    ref_ = ("env[0].value_from.secret_key_ref.name", "env[0].value_from.secret_key_ref.key", ["HF_TOKEN"])
    assert render.secrets_consumed(p) == {"hf": ref_, "ngc-api-secret": ("auth_secret", "auth_secret_key",
                                                                         ["NGC_API_KEY"])}
    p2 = copy.deepcopy(p)
    p2["secret_delivery"]["mode"] = "vault_agent"
    assert render.secrets_consumed(p2) == {"hf": ref_}


def test_hf_token_and_custom_keys_in_every_delivery_mode():
    """Issue 18 items 1 and 2: the key options select a Secret's key or a Vault field; the NIM reads NGC_API_KEY and
    HF_TOKEN (NAME_FILE for a file) whatever they are."""
    c = pod(render.render_service(service(auth_secret_key="MY_KEY", hf_secret="hf", hf_secret_key="TOK",
                                          secret_delivery={"mode": "env"})))["containers"][0]
    env = dict((e["name"], e.get("valueFrom")) for e in c["env"])
    assert env["NGC_API_KEY"] == {"secretKeyRef": {"name": "ngc-api-secret", "key": "MY_KEY"}}
    assert env["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "TOK"}} and "MY_KEY" not in env
    spec = pod(render.render_service(service(hf_secret="hf")))
    volume = [v for v in spec["volumes"] if v["name"] == "nim-secrets"][0]
    assert volume["projected"]["sources"] == [
        {"secret": {"name": "ngc-api-secret", "items": [{"key": "NGC_API_KEY", "path": "NGC_API_KEY"}]}},
        {"secret": {"name": "hf", "items": [{"key": "HF_TOKEN", "path": "HF_TOKEN"}]}}]
    assert volume["projected"]["defaultMode"] == 0o440
    p = service(auth_secret=None, secret_delivery={"mode": "vault_agent", "vault": {
        "address": "https://vault.example.com:8200", "role": "nim", "secret_path": "secret/data/nim/ngc",
        "hf_secret_path": "secret/data/nim/hf"}})
    objs = render.render_service(p)
    hcl = [o for o in objs if o["kind"] == "ConfigMap"][0]["data"]["init.hcl"]
    assert hcl.count("template {") == 2 and "/var/run/secrets/nim/HF_TOKEN" in hcl and 'index .Data.data \\"hf_token\\"' in hcl
    env = dict((e["name"], e.get("value")) for e in pod(objs)["containers"][0]["env"])
    assert env["HF_TOKEN_FILE"] == "/var/run/secrets/nim/HF_TOKEN" and env["NGC_API_KEY_FILE"].endswith("/NGC_API_KEY")
    # With vault_agent the keys come from Vault: a Secret named by hf_secret (the role sets it on every service) is
    # not read, like auth_secret.
    assert pod(render.render_service(service(hf_secret="hf", secret_delivery=p["secret_delivery"]))) == pod(objs)
    with pytest.raises(NimError, match="^auth_secret_key: the NIM Operator"):
        service(backend="operator", auth_secret_key="MY_KEY", secret_delivery={"mode": "env"})
