"""Per-service Secrets (issue 20): nim_secret's list form (`secrets`) writes many Secrets in one task, on both paths
(the action plugin and the module), and the nim_rollout role writes its own and the per-service Secrets
(nim_rollout_service_secrets) in that one task. Against the real API server: created once, a rerun reads the
namespace's Secrets once and writes nothing, a bad element fails naming it before anything is written, check mode
predicts the roll of the one service whose Secret rotates, and no value shows anywhere, even at -vvvv."""

import base64
import uuid

import pytest

from playbook import recap, run_play, run_playbook, writes
from test_secrets_guide import site_vars

PATHS = {"action plugin": {}, "module": {"NIMGUARD_REMOTE_MODULE": "1"}}
HASH_KEY = "nimguard-hash-key"
SECRETS_HASH = "nimguard.io/secrets-hash"


def per_service(prefix, key, token):
    return [{"name": prefix + "-ngc", "kind": "ngc", "value": key},
            {"name": prefix + "-hf", "kind": "huggingface", "value": token}] + [
        {"name": "%s-pull-%d" % (prefix, i), "kind": "registry", "registry": {"password": key}} for i in range(3)]


def secret_reads(cluster, mark, namespace):
    return [e for e in cluster.audit_events(mark, verbs={"get", "list"}, user=cluster.user, namespace=namespace)
            if (e.get("objectRef") or {}).get("resource") == "secrets"]


def changes(cluster, mark):
    """Writes since `mark`, less the doctor's access reviews (a create that stores nothing)."""
    return [(e["verb"], e["requestURI"]) for e in writes(cluster, mark) if "accessreviews" not in e["requestURI"]]


def leaked(values, *texts):
    forms = [v for value in values for v in (value, base64.b64encode(value.encode()).decode())]
    return [v for v in forms if any(v in t for t in texts)]


@pytest.mark.parametrize("path", sorted(PATHS))
def test_many_secrets_in_one_task(cluster, namespace, path):
    key, token = "nvapi-list-" + uuid.uuid4().hex, "hf_list" + uuid.uuid4().hex
    items = per_service("llama", key, token) + per_service("mistral", key, token)
    task = {"nimguard.k8s.nim_secret": {"namespace": namespace, "secrets": items}}
    env = PATHS[path]

    play = run_play(cluster, [task], env=env, diff=True, verbosity=4)
    result = play[0]
    assert result.get("changed") is True and not result.get("failed"), play
    assert sorted(o["name"] for o in result["objects"] if o["action"] == "created") == sorted(
        [i["name"] for i in items] + [HASH_KEY]), result["objects"]
    assert [s["name"] for s in result["secrets"]] == [i["name"] for i in items]
    assert all(s["content_hash"].startswith("hmac-sha256:") for s in result["secrets"])
    assert cluster.get_json("secret", "llama-pull-2", "-n", namespace)["type"] == "kubernetes.io/dockerconfigjson"
    assert leaked([key, token], play.output, str(play.results)) == []

    mark = cluster.audit_mark()
    again = run_play(cluster, [task], env=env)
    assert again[0].get("changed") is False, again
    assert [s["content_hash"] for s in again[0]["secrets"]] == [s["content_hash"] for s in result["secrets"]]
    assert writes(cluster, mark, namespace) == []
    reads = secret_reads(cluster, mark, namespace)
    assert len(reads) == 1 and reads[0]["verb"] == "list", [e["requestURI"] for e in reads]  # one LIST serves all

    mark = cluster.audit_mark()
    bad = [dict(items[0], value=key + "-new")] + items[1:3] + [{"name": "Not_A_Name", "kind": "ngc", "value": key}]
    failed = run_play(cluster, [{"nimguard.k8s.nim_secret": {"namespace": namespace, "secrets": bad}}], env=env,
                      verbosity=4)
    assert failed[0].get("failed") is True and "secrets[3] (Not_A_Name)" in failed[0]["msg"], failed
    assert writes(cluster, mark, namespace) == []  # the first element's new value was not written either
    assert leaked([key, token, key + "-new"], failed.output, str(failed.results)) == []


def services(key, token):
    """Two services, each with its own NGC key, token and three pull secrets (nim_rollout_service_secrets)."""
    out, secrets = [], []
    for name in ("llama", "mistral"):
        secrets += per_service(name, key + name, token + name)
        out.append({"name": name, "image": {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3",
                                            "pull_secrets": ["%s-pull-%d" % (name, i) for i in range(3)]},
                    "auth_secret": name + "-ngc", "hf_secret": name + "-hf",
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}})
    return out, secrets


def site(ns, key, secrets, svcs, **extra):
    return site_vars(ns, key, svcs, nim_rollout_service_secrets=secrets, **extra)


def template_hash(cluster, ns, name):
    dep = cluster.get_json("deployment", name, "-n", ns)
    return (dep["spec"]["template"]["metadata"].get("annotations") or {}).get(SECRETS_HASH)


def test_role_writes_per_service_secrets_in_one_task(cluster, namespace):
    ns = namespace
    key, token = "nvapi-role-" + uuid.uuid4().hex, "hf_role" + uuid.uuid4().hex
    svcs, secrets = services(key, token)
    values = [key, token] + [s.get("value") or s["registry"]["password"] for s in secrets]

    mark = cluster.audit_mark()
    bad = secrets[:-1] + [dict(secrets[-1], name="mistral_pull_2")]
    proc = run_playbook(cluster, "site.yml", site(ns, key, bad, svcs), ["-vvvv"])
    assert proc.returncode != 0 and "nim_rollout_service_secrets[9] (mistral_pull_2)" in proc.output, proc.output[-3000:]
    assert changes(cluster, mark) == [] and leaked(values, proc.output, proc.log) == []

    proc = run_playbook(cluster, "site.yml", site(ns, key, secrets, svcs), ["-vvvv"], expect_rc=0)
    assert leaked(values, proc.output, proc.log) == []
    stored = cluster.get_json("secret", "mistral-ngc", "-n", ns)["data"]["NGC_API_KEY"]
    assert base64.b64decode(stored).decode() == key + "mistral"
    spec = cluster.get_json("deployment", "mistral", "-n", ns)["spec"]["template"]["spec"]
    assert [s["name"] for s in spec["imagePullSecrets"]] == ["mistral-pull-%d" % i for i in range(3)]  # its own list

    mark = cluster.audit_mark()
    again = run_playbook(cluster, "site.yml", site(ns, key, secrets, svcs), expect_rc=0)
    assert recap(again)["changed"] == 0, again.output[-3000:]
    assert changes(cluster, mark) == []

    # Check mode predicts the roll of the one service whose own key rotates, and writes nothing.
    rotated = [dict(s, value=key + "rotated") if s["name"] == "llama-ngc" else s for s in secrets]
    before = dict((n, template_hash(cluster, ns, n)) for n in ("llama", "mistral"))
    mark = cluster.audit_mark()
    predicted = run_playbook(cluster, "site.yml", site(ns, key, rotated, svcs), ["--check", "--diff"],
                             expect_rc=0)
    assert [c for c in changes(cluster, mark) if "dryRun=All" not in c[1]] == []
    shown = [ln.strip() for ln in predicted.output.splitlines() if SECRETS_HASH in ln and ln.strip()[:1] in "+-"]
    assert len(shown) == 2, predicted.output[-4000:]  # one Deployment's annotation: - old, + new
    run_playbook(cluster, "site.yml", site(ns, key, rotated, svcs), expect_rc=0)
    after = dict((n, template_hash(cluster, ns, n)) for n in ("llama", "mistral"))
    assert after["mistral"] == before["mistral"] and after["llama"] != before["llama"]
    assert shown[[ln[0] for ln in shown].index("+")].split(":", 1)[1].strip().strip('",') == after["llama"]


def test_the_doctor_does_not_look_for_per_service_secrets_the_role_is_about_to_write(cluster, namespace):
    """secrets_source existing makes the doctor check the services' Secrets before any write; the per-service ones
    that the role writes right after are not there yet on a first run (nim_doctor's written_secrets)."""
    ns = namespace
    key, token = "nvapi-doc-" + uuid.uuid4().hex, "hf_doc" + uuid.uuid4().hex
    svcs, secrets = services(key, token)
    cluster.kubectl("create", "secret", "generic", "ngc-api-secret", "-n", ns, "--from-literal=NGC_API_KEY=" + key)
    proc = run_playbook(cluster, "site.yml", site(ns, key, secrets, svcs, nim_rollout_secrets_source="existing",
                                                  nim_rollout_registry_secret=False), expect_rc=0)
    assert "llama-ngc" in cluster.kubectl("get", "secrets", "-n", ns, "-o", "name").stdout, proc.output[-3000:]
    # A Secret named by a service and by no one that writes it is still found missing, before any write.
    mark = cluster.audit_mark()
    missing = [dict(s, auth_secret="nobody-writes-this") if s["name"] == "llama" else s for s in svcs]
    proc = run_playbook(cluster, "site.yml", site(ns, key, secrets, missing,
                                                  nim_rollout_secrets_source="existing",
                                                  nim_rollout_registry_secret=False))
    assert proc.returncode != 0 and "nobody-writes-this" in proc.output, proc.output[-3000:]
    assert changes(cluster, mark) == []
