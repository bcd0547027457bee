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
from ansible_collections.nimguard.k8s.plugins.filter.survey import survey_services
from ansible_collections.nimguard.k8s.plugins.module_utils import kubeconfig

TYPES = awxjob.load_credential_types()
JOBS = awxjob.load_job_templates()
ROLE_DEFAULTS = open(os.path.join(awxjob.ROOT, "roles", "nim_rollout", "defaults", "main.yml")).read()
ROLE_SPECS = yaml.safe_load(open(os.path.join(awxjob.ROOT, "roles", "nim_rollout", "meta", "argument_specs.yml")))
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
    read_by_client = set(kubeconfig.ENV_FALLBACK.values())
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
    return kubeconfig.resolve_config(kubeconfig.connection_params({}, env=env), env=env)


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
    conn = kubeconfig.connection_params({"context": "b"}, env=env)
    assert kubeconfig.resolve_config(conn, env=env).server == "https://b.example:6443"


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


def test_services_survey_default_passes_the_templates_allow_list():
    ev = JOBS["extra_vars"]
    services = survey_services(JOBS["questions"]["services"]["default"], ev["nimguard_survey_image_prefixes"],
                               max_gpus=ev["nimguard_survey_max_gpus"], max_replicas=ev["nimguard_survey_max_replicas"])
    assert services and all("name" in s and "image" in s for s in services)


def test_the_survey_reaches_the_role_only_through_the_allow_list():
    """nim_rollout_services is the filter over the survey's variable, with the template's own prefixes and limits;
    no survey variable is also a template variable (AWX lets a survey answer win over the template's value)."""
    ev = JOBS["extra_vars"]
    expr = " ".join(ev["nim_rollout_services"].split())
    assert expr == ("{{ nimguard_survey_services | default('[]', true) | nimguard.k8s.survey_services("
                    "nimguard_survey_image_prefixes, max_gpus=nimguard_survey_max_gpus, "
                    "max_replicas=nimguard_survey_max_replicas) }}"), expr
    for name in ("nimguard_survey_image_prefixes", "nimguard_survey_max_gpus", "nimguard_survey_max_replicas"):
        assert name in ev
    survey_vars = set(q["variable"] for q in JOBS["questions"].values())
    assert not survey_vars & set(ev), survey_vars & set(ev)
    assert "{{" not in yaml.safe_dump(dict((k, v) for k, v in ev.items() if k != "nim_rollout_services"))


def test_the_templates_fix_what_a_service_item_could_otherwise_set():
    """Every nim_rollout variable the template sets is one the role knows, and the service defaults pin file
    delivery, the NetworkPolicy and a ServiceAccount without a token."""
    ev = JOBS["extra_vars"]
    options = ROLE_SPECS["argument_specs"]["main"]["options"]
    for name in ev:
        if name.startswith("nim_rollout_"):
            assert name in options, name
    assert ev["nim_rollout_namespace"] and ev["nim_rollout_secrets_source"] == "values"
    defaults = ev["nim_rollout_service_defaults"]
    assert defaults["secret_delivery"] == {"mode": "file"} and defaults["network_policy"]["enabled"] is True
    assert defaults["rbac"] == {"create": True, "automount_service_account_token": False}
    scan = ev["nim_rollout_image_scan"]
    assert scan["enabled"] is True and scan["trivy"] == "trivy" and scan["severity"] == "CRITICAL"


def test_a_launcher_chooses_check_and_diff_mode_and_nothing_else():
    launch = JOBS["launch"]
    assert dict((k, v) for k, v in launch.items() if v) == {"ask_job_type_on_launch": True,
                                                            "ask_diff_mode_on_launch": True}
    assert launch["ask_credential_on_launch"] is False and launch["ask_variables_on_launch"] is False


def test_awx_setup_gives_awx_the_launch_settings_and_the_merged_extra_vars():
    with open(os.path.join(awxjob.ROOT, "playbooks", "awx_setup.yml")) as f:
        (play,) = yaml.safe_load(f)
    (task,) = [t for t in play["tasks"] if "awx.awx.job_template" in t]
    args = task["awx.awx.job_template"]
    for key in JOBS["launch"]:
        assert args[key] == "{{ nimguard_awx_jobs.launch.%s }}" % key, key
    assert sorted(k for k in args if k.startswith("ask_")) == sorted(JOBS["launch"])
    assert args["extra_vars"] == ("{{ nimguard_awx_jobs.extra_vars | ansible.builtin.combine(nimguard_awx_template_vars, "
                                  "recursive=true) }}")
    assert play["vars"]["nimguard_awx_template_vars"] == {}
    (project,) = [t for t in play["tasks"] if "awx.awx.project" in t]
    assert project["awx.awx.project"]["allow_override"] is False


def test_template_vars_merge_like_ansibles_recursive_combine():
    merged = awxjob.template_extra_vars(JOBS, {"nim_rollout_namespace": "prod", "nim_rollout_image_scan": {
        "reports": {"img:1": "/r.json"}}})
    assert merged["nim_rollout_namespace"] == "prod"
    assert merged["nim_rollout_image_scan"] == dict(JOBS["extra_vars"]["nim_rollout_image_scan"],
                                                    reports={"img:1": "/r.json"})
    assert JOBS["extra_vars"]["nim_rollout_image_scan"]["reports"] == {}


@pytest.mark.parametrize("answers, refusal", [
    ({"nim_rollout_namespace": "kube-system"}, "Variables nim_rollout_namespace provided, but not allowed on launch"),
    ({"nimguard_survey_services": ""}, "'nimguard_survey_services' value missing"),
    ({"nimguard_survey_services": "x" * 65537}, "65537 characters"),
])
def test_awx_refuses_launches_outside_the_survey(answers, refusal):
    site = awxjob.job_template(JOBS, "playbooks/site.yml")
    with pytest.raises(awxjob.LaunchRefused, match=refusal):
        awxjob.launch(JOBS, site, answers)


def test_survey_answers_reach_the_job_marked_unsafe(tmp_path):
    site = awxjob.job_template(JOBS, "playbooks/site.yml")
    answers = awxjob.launch(JOBS, site, {"nimguard_survey_services": "- {name: '{{ lookup(\"env\", \"HOME\") }}'}"})
    awxjob.write_extravars(str(tmp_path), {"a": "{{ b }}"}, answers)
    text = (tmp_path / "env" / "extravars").read_text()
    assert "nimguard_survey_services: !unsafe" in text and "nimguard_context: !unsafe" in text
    assert "a: '{{ b }}'" in text
