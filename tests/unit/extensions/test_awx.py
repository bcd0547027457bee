"""The AWX definitions in extensions/awx/, checked the way AWX checks them when they are saved, and injected the way
AWX injects them into a job, down to the connection the collection's client makes from the injected variables.
(No controller is reachable here: what needs one is listed in docs/awx.md.)"""

import copy
import os
import re
import stat

import pytest
import yaml

import awxjob
from ansible_collections.nimguard.k8s.plugins.module_utils import client

TYPES = awxjob.load_credential_types()
JOBS = awxjob.load_job_templates()
ROLE_DEFAULTS = open(os.path.join(awxjob.ROOT, "roles", "nim_rollout", "defaults", "main.yml")).read()
KUBECONFIG = yaml.safe_dump({
    "apiVersion": "v1", "kind": "Config", "current-context": "b",
    "clusters": [{"name": "a", "cluster": {"server": "https://a.example:6443"}},
                 {"name": "b", "cluster": {"server": "https://b.example:6443"}}],
    "contexts": [{"name": "a", "context": {"cluster": "a", "user": "u"}},
                 {"name": "b", "context": {"cluster": "b", "user": "u"}}],
    "users": [{"name": "u", "user": {"token": "kubeconfig-token-canary"}}]})


def test_the_three_credential_types_exist():
    assert sorted(TYPES) == ["huggingface_token", "kubernetes_cluster", "ngc_api_key"]


@pytest.mark.parametrize("name", sorted(TYPES))
def test_credential_type_is_valid_for_awx(name):
    assert awxjob.validate(TYPES[name]) == []


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t["injectors"]["env"].update(X="{{ no_such_input }}"), "no_such_input"),
    (lambda t: t["injectors"]["env"].update(ANSIBLE_CONFIG="/tmp/x"), "ANSIBLE_CONFIG"),
    (lambda t: t["inputs"]["fields"][0].pop("secret"), "not marked secret"),
    (lambda t: t["injectors"]["env"].update(X="{{ tower.filename.nope }}"), "nope"),
    (lambda t: t["inputs"]["required"].append("nope"), "required input nope"),
])
def test_validation_catches_what_awx_refuses(mutate, message):
    ctype = copy.deepcopy(TYPES["ngc_api_key"])
    mutate(ctype)
    assert any(message in e for e in awxjob.validate(ctype)), awxjob.validate(ctype)


def test_injected_variables_are_read_by_the_collection():
    """Every injected env var is one the modules' client or nim_rollout's defaults read: no extra vars needed."""
    read_by_client = set(client.ENV_FALLBACK.values())
    read_by_role = set(re.findall(r"lookup\('ansible\.builtin\.env', '([A-Z_]+)'", ROLE_DEFAULTS))
    for name, ctype in TYPES.items():
        for var in ctype["injectors"].get("env", {}):
            assert var in read_by_client | read_by_role, (name, var)
        assert not ctype["injectors"].get("extra_vars"), "secrets as extra vars reach the job events"


@pytest.mark.parametrize("name, inputs, env_var", [
    ("ngc_api_key", {"ngc_api_key": "nvapi-CANARY-unit"}, "NGC_API_KEY_FILE"),
    ("huggingface_token", {"hf_token": "hf_CANARYunit"}, "HF_TOKEN_FILE"),
])
def test_secret_values_are_injected_as_private_files_not_env(tmp_path, name, inputs, env_var):
    env, extra_vars = awxjob.inject(TYPES[name], inputs, str(tmp_path))
    assert list(env) == [env_var] and not extra_vars
    assert os.path.dirname(env[env_var]) == str(tmp_path / "env")
    assert stat.S_IMODE(os.stat(env[env_var]).st_mode) == 0o600
    with open(env[env_var]) as f:
        assert f.read() == list(inputs.values())[0]
    assert list(inputs.values())[0] not in repr(env)


def connect(env):
    return client.resolve_config(client.connection_params({}, env=env), env=env)


def test_kubernetes_credential_with_a_kubeconfig(tmp_path):
    env = awxjob.inject(TYPES["kubernetes_cluster"], {"kubeconfig": KUBECONFIG}, str(tmp_path))[0]
    assert env["K8S_AUTH_KUBECONFIG"].startswith(str(tmp_path / "env"))
    assert env["K8S_AUTH_HOST"] == env["K8S_AUTH_API_KEY"] == env["K8S_AUTH_SSL_CA_CERT"] == ""
    cfg = connect(env)
    assert cfg.server == "https://b.example:6443" and cfg.token == "kubeconfig-token-canary"
    assert "kubeconfig-token-canary" not in repr(env)


def test_kubernetes_credential_context_and_survey_override(tmp_path):
    env = awxjob.inject(TYPES["kubernetes_cluster"], {"kubeconfig": KUBECONFIG, "context": "a"}, str(tmp_path))[0]
    assert connect(env).server == "https://a.example:6443"
    # The "Target cluster" answer is the playbooks' nimguard_context, a module option: it wins over the env.
    conn = client.connection_params({"context": "b"}, env=env)
    assert client.resolve_config(conn, env=env).server == "https://b.example:6443"


def test_kubernetes_credential_with_host_token_and_ca(tmp_path):
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    env = awxjob.inject(TYPES["kubernetes_cluster"], {"host": "https://api.example:6443", "bearer_token": "tok",
                                                      "ca_cert": ca}, str(tmp_path))[0]
    assert env["K8S_AUTH_KUBECONFIG"] == ""
    cfg = connect(dict(env, HOME=str(tmp_path)))  # no ~/.kube/config to fall back on
    assert (cfg.server, cfg.token, cfg.verify) == ("https://api.example:6443", "tok", True)
    with open(cfg.ca_file) as f:
        assert f.read() == ca


def test_job_templates_match_the_playbooks_and_credential_types():
    names = [jt["name"] for jt in JOBS["job_templates"]]
    assert sorted(jt["playbook"] for jt in JOBS["job_templates"]) == [
        "playbooks/doctor.yml", "playbooks/remove.yml", "playbooks/rotate_secrets.yml", "playbooks/site.yml"]
    assert len(set(names)) == len(names)
    for jt in JOBS["job_templates"]:
        with open(os.path.join(awxjob.ROOT, jt["playbook"])) as f:
            playbook = f.read()
        assert "nimguard_context" in playbook, jt["playbook"]  # the "Target cluster" answer is used
        assert "kubernetes_cluster" in jt["credential_types"]
        assert set(jt["credential_types"]) <= set(TYPES)
        assert set(jt["questions"]) <= set(JOBS["questions"])


@pytest.mark.parametrize("key", sorted(JOBS["questions"]))
def test_survey_questions_are_valid_awx_survey_entries(key):
    q = JOBS["questions"][key]
    assert {"question_name", "variable", "type", "required"} <= set(q)
    assert q["type"] in ("text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect")
    assert re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", q["variable"])
    if "default" in q and "max" in q:
        assert len(q["default"]) <= q["max"]


def test_services_survey_default_is_a_valid_service_list():
    services = yaml.safe_load(JOBS["questions"]["services"]["default"])
    assert isinstance(services, list) and all("name" in s and "image" in s for s in services)
