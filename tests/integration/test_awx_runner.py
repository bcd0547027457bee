"""The AWX path, without AWX: playbooks/site.yml run the way AWX runs a job, by ansible-runner on a private data
directory (project/, inventory/, env/envvars, env/extravars), with the collection installed from its built tarball
as in the execution environment, credentials injected as the credential types in extensions/awx/ say
(tests/awxjob.py does what AWX's inject_credential does), and the site job template's extra_vars and survey answers
from extensions/awx/job_templates.yml. The run must converge, a second run must change nothing (runner's stats and
the API server's audit log), and no secret value may reach anything runner writes."""

import base64
import glob
import os
import shutil
import subprocess
import sys
import uuid

import pytest
import yaml

import awxjob
from playbook import writes

ansible_runner = pytest.importorskip("ansible_runner")

BIN = os.path.dirname(sys.executable)
RUN = uuid.uuid4().hex[:8]
NGC = "nvapi-CANARY-awx-" + uuid.uuid4().hex
HF = "hf_CANARYawx" + uuid.uuid4().hex
SERVICES = [{"name": "awx-llm", "image": {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"},
             "resources": {"gpus": 1, "requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}}]


@pytest.fixture(scope="module")
def ee_collections(tmp_path_factory):
    """The collection as the execution environment has it: built, then installed offline from the tarball."""
    root = awxjob.ROOT
    dist, dest = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("ee-collections")
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(dist), root],
                   check=True, capture_output=True, timeout=120)
    (tarball,) = dist.glob("*.tar.gz")
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("ANSIBLE_"))
    env["ANSIBLE_COLLECTIONS_PATH"] = str(dest)
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", str(tarball),
                    "--collections-path", str(dest)], check=True, capture_output=True, env=env, timeout=120)
    return str(dest)


@pytest.fixture
def job_env(monkeypatch):
    """A job sees only what AWX gives it: nothing of this test process's cluster or Ansible settings."""
    for key in list(os.environ):
        if key.startswith(("ANSIBLE_", "K8S_AUTH_", "NGC_", "HF_")) or key in ("KUBECONFIG",):
            monkeypatch.delenv(key)


@pytest.fixture
def awx_namespace(cluster):
    name = "awx-" + RUN
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def private_data_dir(tmp_path, cluster, ee_collections, namespace):
    """What AWX prepares before it starts ansible-runner; returns (dir, envvars, extravars, secret files)."""
    pdd = tmp_path / "job"
    jobs = awxjob.load_job_templates()
    site = next(jt for jt in jobs["job_templates"] if jt["playbook"] == "playbooks/site.yml")
    # project/: the project's checkout (the playbooks; the collection itself comes from the EE).
    shutil.copytree(os.path.join(awxjob.ROOT, "playbooks"), str(pdd / "project" / "playbooks"))
    # inventory/: the inventory awx_setup.yml creates.
    inv = jobs["inventory"]
    (pdd / "inventory").mkdir()
    (pdd / "inventory" / "hosts.yml").write_text(yaml.safe_dump({inv["group"]: {"hosts": {inv["host"]: inv["host_vars"]}}}))
    # Credentials, one of each type the site template takes. The kubeconfig carries its client key inline.
    kubeconfig = cluster.kubectl("config", "view", "--raw", "--flatten").stdout
    inputs = {"kubernetes_cluster": {"kubeconfig": kubeconfig}, "ngc_api_key": {"ngc_api_key": NGC},
              "huggingface_token": {"hf_token": HF}}
    types = awxjob.load_credential_types()
    envvars, extravars = {"ANSIBLE_COLLECTIONS_PATH": ee_collections}, dict(jobs["extra_vars"])
    for name in site["credential_types"]:
        env, extra = awxjob.inject(types[name], inputs[name], str(pdd))
        envvars.update(env)
        extravars.update(extra)
    secret_files = set(glob.glob(str(pdd / "env" / "tmp*")))
    # Survey answers, then the launch-time extra variables (this test's namespace; no image scanner here).
    extravars.update({"nimguard_survey_services": yaml.safe_dump(SERVICES), "nimguard_context": ""})
    extravars.update({"nim_rollout_namespace": namespace, "nim_rollout_image_scan": {
        "enabled": False, "disabled_reason": "the local test cluster pulls no images"}})
    return pdd, envvars, extravars, secret_files, kubeconfig


def run_job(pdd, envvars, extravars, ident):
    return ansible_runner.run(private_data_dir=str(pdd), playbook="playbooks/site.yml", inventory=str(pdd / "inventory"),
                              envvars=envvars, extravars=extravars, ident=ident, fact_cache_type="jsonfile",
                              quiet=True, timeout=900)


def host_stats(result):
    stats = result.stats or {}
    return dict((k, (stats.get(k) or {}).get("cluster", 0)) for k in ("ok", "changed", "failures", "dark", "skipped"))


def job_output(result):
    return result.stdout.read()


def test_site_job_converges_is_idempotent_and_leaks_no_secret(cluster, ee_collections, job_env, awx_namespace,
                                                              tmp_path):
    pdd, envvars, extravars, secret_files, kubeconfig = private_data_dir(tmp_path, cluster, ee_collections,
                                                                         awx_namespace)
    # Secret values travel as files: the job's environment holds paths only.
    assert NGC not in repr(envvars) and HF not in repr(envvars) and "client-key-data" not in repr(envvars)

    start = cluster.audit_mark()
    first = run_job(pdd, envvars, extravars, "1")
    assert (first.status, first.rc) == ("successful", 0), job_output(first)[-6000:]
    stats = host_stats(first)
    assert stats["changed"] > 0 and stats["failures"] == stats["dark"] == 0, stats

    # What the job made: the survey's service, and Secrets holding the injected values.
    deploy = cluster.get_json("deployment", "-n", awx_namespace, "awx-llm")
    assert deploy["status"].get("availableReplicas") == 1
    secret = cluster.get_json("secret", "-n", awx_namespace, "ngc-api-secret")
    assert base64.b64decode(secret["data"]["NGC_API_KEY"]).decode() == NGC
    hf = cluster.get_json("secret", "-n", awx_namespace, "hf-token-secret")
    assert base64.b64decode(hf["data"]["HF_TOKEN"]).decode() == HF

    # The identity of the injected kubeconfig, as the audit log names it: the writer of the job's namespace (other
    # writers, such as KWOK's node heartbeats and pod status updates, do not count).
    job_users = set(e["user"]["username"] for e in writes(cluster, start)
                    if e["objectRef"].get("resource") == "namespaces" and e["objectRef"].get("name") == awx_namespace)
    assert len(job_users) == 1, job_users
    mark = cluster.audit_mark()
    second = run_job(pdd, envvars, extravars, "2")
    assert (second.status, second.rc) == ("successful", 0), job_output(second)[-6000:]
    stats = host_stats(second)
    assert stats["changed"] == 0 and stats["failures"] == 0, (stats, job_output(second)[-6000:])
    assert not [e for e in second.events if e.get("event") == "runner_on_ok" and e["event_data"]["res"].get("changed")]
    # Access reviews (the doctor's permission checks) are POSTs that store nothing.
    w = [e for e in writes(cluster, mark) if e["user"]["username"] in job_users
         and not e["objectRef"]["resource"].endswith(("accessreviews", "rulesreviews"))]
    assert w == [], [(e["user"]["username"], e["verb"], e["objectRef"]) for e in w][:10]

    # No secret value in anything runner wrote (stdout, job_events, fact_cache, command with the job's environment,
    # status, rc) nor elsewhere in the private data directory, save the credential files AWX itself writes there.
    key_data = [ln.split(":", 1)[1].strip() for ln in kubeconfig.splitlines() if "client-key-data" in ln]
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
