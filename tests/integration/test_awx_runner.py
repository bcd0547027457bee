"""The AWX path, without AWX: jobs launched from the job templates of extensions/awx/job_templates.yml the way AWX runs
them, by ansible-runner on a private data directory (project/, inventory/, env/envvars, env/extravars), with the
collection installed from its built tarball as in the execution environment, credentials injected as the credential
types in extensions/awx/ say, and extra variables exactly as AWX writes them for a launch (tests/awxjob.py): the
template's own, as playbooks/awx_setup.yml makes them, and the survey answers over them, marked !unsafe. A launch
passes survey answers only: AWX refuses any other variable, since the templates do not ask for variables on launch.

The site job converges and a second run changes nothing (runner's stats and the API server's audit log), no secret
value reaches anything runner writes, and a hostile survey answer is refused before anything is written. The job's
cluster credential holds the test session's own identity (conftest.Cluster: a client certificate in
system:masters), so the audit log tells its requests from those of anyone else using the cluster."""

import base64
import glob
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest
import yaml

import awxjob
import declared
from playbook import writes

ansible_runner = pytest.importorskip("ansible_runner")

BIN = os.path.dirname(sys.executable)
RUN = uuid.uuid4().hex[:8]
NGC = "nvapi-CANARY-awx-" + uuid.uuid4().hex
HF = "hf_CANARYawx" + uuid.uuid4().hex
IMAGE = {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"}
SERVICES = [{"name": "awx-llm", "image": IMAGE,
             "resources": {"gpus": 1, "requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}}]
JOBS = awxjob.load_job_templates()
SITE = awxjob.job_template(JOBS, "playbooks/site.yml")


@pytest.fixture(scope="module")
def ee_collections(tmp_path_factory):
    """The collection as the execution environment has it: built, then installed offline from the tarball after the
    collections it declares."""
    dist, dest = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("ee-collections")
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(dist),
                    awxjob.ROOT], check=True, capture_output=True, timeout=120)
    (tarball,) = dist.glob("*.tar.gz")
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("ANSIBLE_"))
    env["ANSIBLE_COLLECTIONS_PATH"] = str(dest)
    declared.install_declared(tarball, str(dest), str(dist), env)
    return str(dest)


@pytest.fixture(scope="module")
def job_kubeconfig(cluster):
    """The Kubernetes credential's kubeconfig: the test session's own identity (conftest.Cluster), with its client
    certificate and key inline, as a kubeconfig pasted into the credential holds them."""
    return cluster.kubectl("config", "view", "--raw", "--flatten").stdout


@pytest.fixture
def job_env(monkeypatch):
    """A job sees only what AWX gives it: nothing of this test process's cluster or Ansible settings."""
    for key in list(os.environ):
        if key.startswith(("ANSIBLE_", "K8S_AUTH_", "NGC_", "HF_")) or key in ("KUBECONFIG",):
            monkeypatch.delenv(key)


@pytest.fixture
def awx_namespace(cluster):
    name = "awx-" + uuid.uuid4().hex[:8]
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def private_data_dir(tmp_path, ee_collections, kubeconfig, template_vars, answers):
    """What AWX prepares before it starts ansible-runner for a launch of the site template with these survey answers,
    the template made by awx_setup.yml with these nimguard_awx_template_vars; returns (dir, envvars, secret files)."""
    pdd = tmp_path / "job"
    # project/: the project's checkout (the playbooks; the collection itself comes from the EE).
    shutil.copytree(os.path.join(awxjob.ROOT, "playbooks"), str(pdd / "project" / "playbooks"))
    # inventory/: the inventory awx_setup.yml creates.
    inv = JOBS["inventory"]
    (pdd / "inventory").mkdir()
    (pdd / "inventory" / "hosts.yml").write_text(yaml.safe_dump({inv["group"]: {"hosts": {inv["host"]: inv["host_vars"]}}}))
    # Credentials, one of each type the site template takes. The kubeconfig carries its client key inline.
    inputs = {"kubernetes_cluster": {"kubeconfig": kubeconfig}, "ngc_api_key": {"ngc_api_key": NGC},
              "huggingface_token": {"hf_token": HF}}
    types = awxjob.load_credential_types()
    envvars = {"ANSIBLE_COLLECTIONS_PATH": ee_collections}
    for name in SITE["credential_types"]:
        env, extra = awxjob.inject(types[name], inputs[name], str(pdd))
        assert not extra  # the credential types inject no extra variables
        envvars.update(env)
    secret_files = set(glob.glob(str(pdd / "env" / "tmp*")))
    awxjob.write_extravars(str(pdd), awxjob.template_extra_vars(JOBS, template_vars), awxjob.launch(JOBS, SITE, answers))
    return pdd, envvars, secret_files


def run_job(pdd, envvars, ident):
    # No extravars here: runner passes env/extravars, as AWX wrote it, with -e @.
    return ansible_runner.run(private_data_dir=str(pdd), playbook="playbooks/site.yml", inventory=str(pdd / "inventory"),
                              envvars=envvars, ident=ident, fact_cache_type="jsonfile", quiet=True, timeout=900)


def host_stats(result):
    stats = result.stats or {}
    return dict((k, (stats.get(k) or {}).get("cluster", 0)) for k in ("ok", "changed", "failures", "dark", "skipped"))


def job_output(result):
    return result.stdout.read()


def job_writes(cluster, mark):
    """Every write the job's identity (this session's) made since `mark`, anywhere in the cluster. Access reviews
    (the doctor's permission checks) are POSTs that store nothing."""
    reviews = ("accessreviews", "rulesreviews")
    return [e for e in writes(cluster, mark) if not e["objectRef"]["resource"].endswith(reviews)]


def clean_report():
    """A Trivy JSON report (schema 2) of the image with no findings, standing in for the one the administrator's CI
    makes with `trivy image --format json`: Trivy cannot pull nvcr.io images or its database on this machine."""
    ref = "%s:%s" % (IMAGE["repository"], IMAGE["tag"])
    return {"SchemaVersion": 2, "ArtifactName": ref, "ArtifactType": "container_image",
            "Results": [{"Target": ref + " (ubuntu 22.04)", "Class": "os-pkgs", "Type": "ubuntu", "Vulnerabilities": []}]}


def test_a_launch_takes_survey_answers_only():
    """What the earlier version of this test did, switching the scan off and choosing the namespace at launch, is
    refused by AWX: the templates do not ask for variables on launch."""
    with pytest.raises(awxjob.LaunchRefused, match="nim_rollout_image_scan, nim_rollout_namespace"):
        awxjob.launch(JOBS, SITE, {"nimguard_survey_services": "[]", "nim_rollout_namespace": "x",
                                   "nim_rollout_image_scan": {"enabled": False}})
    assert set(awxjob.launch(JOBS, SITE, {})) == {"nimguard_survey_services", "nimguard_context"}


def test_site_job_converges_is_idempotent_and_leaks_no_secret(cluster, ee_collections, job_env, job_kubeconfig,
                                                              awx_namespace, tmp_path):
    # The administrator's settings for the template (awx_setup.yml's nimguard_awx_template_vars): this test's
    # namespace, and the scan report their CI made, kept in the project; `{{ playbook_dir }}` is evaluated in the job.
    ref = "%s:%s" % (IMAGE["repository"], IMAGE["tag"])
    template_vars = {"nim_rollout_namespace": awx_namespace, "nim_rollout_image_scan": {
        "reports": {ref: "{{ playbook_dir }}/../scans/llama-3.1-8b-instruct-1.3.3.json"}}}
    answers = {"nimguard_survey_services": yaml.safe_dump(SERVICES), "nimguard_context": ""}
    pdd, envvars, secret_files = private_data_dir(tmp_path, ee_collections, job_kubeconfig, template_vars, answers)
    (pdd / "project" / "scans").mkdir()
    (pdd / "project" / "scans" / "llama-3.1-8b-instruct-1.3.3.json").write_text(json.dumps(clean_report()))
    # Secret values travel as files: the job's environment holds paths only.
    assert NGC not in repr(envvars) and HF not in repr(envvars) and "client-key-data" not in repr(envvars)

    start = cluster.audit_mark()
    first = run_job(pdd, envvars, "1")
    out = job_output(first)
    assert (first.status, first.rc) == ("successful", 0), out[-6000:]
    stats = host_stats(first)
    assert stats["changed"] > 0 and stats["failures"] == stats["dark"] == 0, stats
    # The gate ran, on the administrator's report.
    scans = [e["event_data"]["res"] for e in first.events if e.get("event") == "runner_on_ok"
             and e["event_data"].get("task_action") == "nimguard.k8s.nim_image_scan"]
    assert [(i["image"], i["source"]) for s in scans for i in s["images"]] == [(ref, "report")], scans

    # What the job made: the survey's service, and Secrets holding the injected values.
    deploy = cluster.get_json("deployment", "-n", awx_namespace, "awx-llm")
    assert deploy["status"].get("availableReplicas") == 1
    secret = cluster.get_json("secret", "-n", awx_namespace, "ngc-api-secret")
    assert base64.b64decode(secret["data"]["NGC_API_KEY"]).decode() == NGC
    hf = cluster.get_json("secret", "-n", awx_namespace, "hf-token-secret")
    assert base64.b64decode(hf["data"]["HF_TOKEN"]).decode() == HF
    # Made by the job's identity, only in the template's namespace.
    made = job_writes(cluster, start)
    assert made and set(e["objectRef"].get("namespace") for e in made) == {awx_namespace}, [
        (e["verb"], e["objectRef"]) for e in made][:10]

    mark = cluster.audit_mark()
    second = run_job(pdd, envvars, "2")
    assert (second.status, second.rc) == ("successful", 0), job_output(second)[-6000:]
    stats = host_stats(second)
    assert stats["changed"] == 0 and stats["failures"] == 0, (stats, job_output(second)[-6000:])
    assert not [e for e in second.events if e.get("event") == "runner_on_ok" and e["event_data"]["res"].get("changed")]
    w = job_writes(cluster, mark)
    assert w == [], [(e["verb"], e["objectRef"]) for e in w][:10]

    # No secret value in anything runner wrote (stdout, job_events, fact_cache, command with the job's environment,
    # status, rc) nor elsewhere in the private data directory, save the credential files AWX itself writes there.
    key_data = [ln.split(":", 1)[1].strip() for ln in job_kubeconfig.splitlines() if "client-key-data" in ln]
    canaries = [NGC, HF, base64.b64encode(NGC.encode()).decode(), base64.b64encode(HF.encode()).decode()] + key_data
    assert key_data and len(key_data[0]) > 100
    scanned, leaks = 0, []
    for entry in os.walk(str(pdd)):
        dirpath, files = entry[0], entry[2]
        for f in files:
            path = os.path.join(dirpath, f)
            if path in secret_files:
                continue
            with open(path, "rb") as fh:
                text = fh.read().decode("utf-8", "replace")
            scanned += 1
            leaks += ["%s: canary %d" % (os.path.relpath(path, str(pdd)), i) for i, c in enumerate(canaries) if c in text]
    artifacts = set(os.listdir(str(pdd / "artifacts" / "2")))
    assert {"stdout", "job_events", "command", "fact_cache"} <= artifacts, artifacts
    assert len(os.listdir(str(pdd / "artifacts" / "2" / "job_events"))) > 10
    assert scanned > 20 and not leaks, leaks


# Issue 19's hostile survey answer: each item tries one way out of what the template fixes.
HOSTILE = [
    ({"name": "h-namespace", "image": IMAGE, "namespace": "kube-system"}, "[0]: not allowed in the survey: namespace."),
    ({"name": "h-secret", "image": IMAGE, "auth_secret": "other-teams-key"},
     "[1]: not allowed in the survey: auth_secret."),
    ({"name": "h-command", "image": IMAGE, "secret_delivery": {"command": ["sh", "-c", "cat /var/run/secrets/nim/*"]}},
     "[2]: not allowed in the survey: secret_delivery.command."),
    ({"name": "h-env", "image": IMAGE, "env": [{"name": "T", "value_from": {"secret_key_ref": {"name": "x", "key": "k"}}}]},
     "[3]: not allowed in the survey: env."),
    ({"name": "h-hostpath", "image": IMAGE, "storage": {"host_path": "/"}},
     "[4]: not allowed in the survey: storage.host_path."),
    ({"name": "h-rbac", "image": IMAGE, "rbac": {"scc": "privileged"}}, "[5]: not allowed in the survey: rbac.scc."),
    ({"name": "h-egress", "image": IMAGE, "network_policy": {"enabled": False}},
     "[6]: not allowed in the survey: network_policy.enabled."),
    ({"name": "h-image", "image": {"repository": "docker.io/attacker/exfil", "tag": "1"}},
     "[7].image.repository: docker.io/attacker/exfil is not under an approved prefix (nvcr.io/nim/)"),
]


def test_a_hostile_survey_answer_is_refused_before_anything_is_written(cluster, ee_collections, job_env,
                                                                       job_kubeconfig, awx_namespace, tmp_path):
    """The template as shipped (only the namespace set by the administrator), launched with a survey answer holding
    every key issue 19 names: the job fails naming each one, and its identity writes nothing anywhere."""
    answers = {"nimguard_survey_services": yaml.safe_dump([h[0] for h in HOSTILE], sort_keys=False)}
    pdd, envvars = private_data_dir(tmp_path, ee_collections, job_kubeconfig, {"nim_rollout_namespace": awx_namespace},
                                    answers)[:2]
    mark = cluster.audit_mark()
    job = run_job(pdd, envvars, "hostile")
    out = job_output(job)
    assert (job.status, job.rc) == ("failed", 2), out[-6000:]
    assert "The survey's services are refused" in out, out[-6000:]
    for refusal in (h[1] for h in HOSTILE):
        assert "nimguard_survey_services" + refusal in out, (refusal, out[-6000:])
    assert host_stats(job)["changed"] == 0
    w = job_writes(cluster, mark)
    assert w == [], [(e["verb"], e["objectRef"]) for e in w][:10]
    assert cluster.kubectl("get", "namespace", awx_namespace, check=False).returncode != 0
