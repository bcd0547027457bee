"""Secrets exactly as the NIM Operator security guide asks (issue 18), against the real API server (and, for what a
running NIM process holds, the real node with the fake NIM): custom key names, the Hugging Face token, rotation
without restart, validation before the first write, check mode predicting a rotation with keyed hashes, the doctor
following cause chains, the fix naming the key referenced, and diffs that show the paths the collection sets."""

import base64
import hashlib
import json
import uuid

import pytest

from playbook import recap, run_play, run_playbook, writes
from realnode import FAST_PROBES, IMAGE as FAKENIM_IMAGE, PIN, pods, proxy_get, ready, real_node, wait_until

IMAGE = {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"}
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
SECRETS_HASH = "nimguard.io/secrets-hash"


def canary(prefix):
    return "%s%s" % (prefix, uuid.uuid4().hex)


def hash12(value):
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def service(name, **extra):
    svc = dict(name=name, image=IMAGE, resources=RESOURCES)
    svc.update(extra)
    return svc


def service_task(ns, name, **extra):
    return {"nimguard.k8s.nim_service": dict(service(name, **extra), namespace=ns)}


def container(cluster, ns, name):
    return cluster.get_json("deployment", name, "-n", ns)["spec"]["template"]["spec"]["containers"][0]


def env_of(c):
    return dict((e["name"], e.get("value", e.get("valueFrom"))) for e in c.get("env", []))


def site_vars(ns, key, services, hf="", **extra):
    out = {"nim_rollout_namespace": ns, "nim_rollout_ngc_api_key": key, "nim_rollout_hf_token": hf,
           "nim_rollout_registry_password": key, "nim_rollout_services": services, "nim_rollout_wait": False}
    out.update(extra)
    return out


def template_annotation(cluster, ns, name):
    dep = cluster.get_json("deployment", name, "-n", ns)
    return (dep["spec"]["template"]["metadata"].get("annotations") or {}).get(SECRETS_HASH)


# --- item 1: the key name selects the Secret's key; the variable the NIM reads stays NGC_API_KEY -----------------

def test_custom_key_name_selects_the_secret_key_and_the_nim_still_reads_ngc_api_key(cluster, namespace):
    ns = namespace
    cluster.kubectl("create", "secret", "generic", "custom", "-n", ns, "--from-literal=MY_KEY=" + canary("nvapi-"))
    play = run_play(cluster, [
        service_task(ns, "by-env", auth_secret="custom", auth_secret_key="MY_KEY", secret_delivery={"mode": "env"}),
        service_task(ns, "by-file", auth_secret="custom", auth_secret_key="MY_KEY", secret_delivery={"mode": "file"}),
    ])
    assert not play[0].get("failed") and not play[1].get("failed"), play
    env = env_of(container(cluster, ns, "by-env"))
    assert env["NGC_API_KEY"] == {"secretKeyRef": {"name": "custom", "key": "MY_KEY"}}
    assert "MY_KEY" not in env

    spec = cluster.get_json("deployment", "by-file", "-n", ns)["spec"]["template"]["spec"]
    c = spec["containers"][0]
    env = env_of(c)
    assert env["NGC_API_KEY_FILE"] == "/var/run/secrets/nim/NGC_API_KEY" and "MY_KEY_FILE" not in env
    volume = [v for v in spec["volumes"] if v["name"] == "nim-secrets"][0]
    assert volume["secret"]["items"] == [{"key": "MY_KEY", "path": "NGC_API_KEY"}]
    assert 'export NGC_API_KEY="$(cat "$NGC_API_KEY_FILE")"' in c["command"][2] and "MY_KEY" not in c["command"][2]


# --- item 2: the Hugging Face token gets the NGC key's treatment, wired by the role --------------------------------

def test_hf_token_delivered_like_the_ngc_key_to_every_service_and_rolls_on_rotation(cluster, namespace):
    ns = namespace
    key, hf = canary("nvapi-HF-"), canary("hf_")
    services = [service("hf-file"), service("hf-env", secret_delivery={"mode": "env"})]
    run_playbook(cluster, "site.yml", site_vars(ns, key, services, hf=hf), expect_rc=0)
    assert cluster.get_json("secret", "hf-token-secret", "-n", ns)["data"]["HF_TOKEN"] == base64.b64encode(
        hf.encode()).decode()
    spec = cluster.get_json("deployment", "hf-file", "-n", ns)["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert env_of(c)["HF_TOKEN_FILE"] == "/var/run/secrets/nim/HF_TOKEN"
    sources = [v for v in spec["volumes"] if v["name"] == "nim-secrets"][0]["projected"]["sources"]
    assert {"secret": {"name": "hf-token-secret", "items": [{"key": "HF_TOKEN", "path": "HF_TOKEN"}]}} in sources
    assert 'export HF_TOKEN="$(cat "$HF_TOKEN_FILE")"' in c["command"][2]
    assert env_of(container(cluster, ns, "hf-env"))["HF_TOKEN"] == {
        "secretKeyRef": {"name": "hf-token-secret", "key": "HF_TOKEN"}}

    before = dict((n, template_annotation(cluster, ns, n)) for n in ("hf-file", "hf-env"))
    rotated = run_playbook(cluster, "rotate_secrets.yml", site_vars(ns, key, services, hf=hf + "x"), expect_rc=0)
    after = dict((n, template_annotation(cluster, ns, n)) for n in ("hf-file", "hf-env"))
    assert all(after[n] != before[n] for n in after), (before, after, rotated.output[-3000:])


# --- items 1, 2 and 3 on the real node: what the NIM process holds ------------------------------------------------

def _environ(cluster, ns, pod):
    text = cluster.kubectl("exec", "-n", ns, pod["metadata"]["name"], "-c", "nim", "--", "cat", "/proc/1/environ").stdout
    return dict(item.split("=", 1) for item in text.split("\0") if "=" in item)


def _file(cluster, ns, pod, path):
    return cluster.kubectl("exec", "-n", ns, pod["metadata"]["name"], "-c", "nim", "--", "cat", path).stdout


def test_real_node_custom_key_hf_token_and_rotation_without_restart_warns(cluster, namespace):
    """A custom key name and the HF token reach a running (fake) NIM under NGC_API_KEY and HF_TOKEN; without a
    restart a rotated key reaches the file while PID 1 keeps the exported one, and the task says so."""
    node = real_node(cluster)
    ns = namespace
    key, hf = canary("nvapi-RN-"), canary("hf_RN")

    def deploy(value):
        return run_play(cluster, [
            {"nimguard.k8s.nim_secret": dict(name="custom", namespace=ns, kind="generic",
                                             data={"MY_KEY": value, "TOKEN": hf})},
            service_task(ns, "nim", auth_secret="custom", auth_secret_key="MY_KEY", hf_secret="custom",
                         hf_secret_key="TOKEN", image=FAKENIM_IMAGE, probes=FAST_PROBES, restart_on_rotation=False,
                         resources={}, wait=True, wait_timeout=240,
                         network_policy={"ingress_namespace_selector": {"kubernetes.io/metadata.name": ns}}, **PIN)])
    play = deploy(key)
    assert not play[0].get("failed") and not play[1].get("failed"), play
    warning = [w for w in play[1].get("warnings", []) if "export_env" in w]
    assert warning and "restart_on_rotation: true" in warning[0], play[1].get("warnings")
    (pod,) = [p for p in pods(cluster, ns, "nim") if not p["metadata"].get("deletionTimestamp")]
    assert pod["spec"]["nodeName"] == node and ready(pod)
    reported = proxy_get(cluster, ns, pod["metadata"]["name"], 8000, "/v1/debug/key")
    assert reported["source"] == "file:/var/run/secrets/nim/NGC_API_KEY" and reported["sha256_12"] == hash12(key)
    environ = _environ(cluster, ns, pod)
    assert hash12(environ["NGC_API_KEY"]) == hash12(key) and hash12(environ["HF_TOKEN"]) == hash12(hf)
    assert environ["HF_TOKEN_FILE"] == "/var/run/secrets/nim/HF_TOKEN" and "MY_KEY" not in environ

    rotated = canary("nvapi-RN2-")
    play = deploy(rotated)
    assert [o["action"] for o in play[1]["objects"] if o["kind"] == "Deployment"] == ["unchanged"], play
    wait_until("the rotated key in the file", lambda: hash12(
        _file(cluster, ns, pod, "/var/run/secrets/nim/NGC_API_KEY").strip()) == hash12(rotated), timeout=150)
    # What the warning says: PID 1 (the fake NIM, exec'd by the export wrapper) still holds the old key.
    assert hash12(_environ(cluster, ns, pod)["NGC_API_KEY"]) == hash12(key)


# --- item 4: every input checked before the first write -------------------------------------------------------------

def test_role_and_playbooks_validate_every_service_before_any_write(cluster, namespace):
    ns = namespace
    key = canary("nvapi-VAL-")
    mark = cluster.audit_mark()
    bad = [service("good"), service("root", user_id=0)]
    for doctor in (True, False):
        proc = run_playbook(cluster, "site.yml", site_vars(ns, key, bad, nim_rollout_doctor=doctor))
        assert proc.returncode != 0 and "user_id" in proc.output and "nim_rollout_services[1] (root)" in proc.output
    proc = run_playbook(cluster, "rotate_secrets.yml", site_vars(ns, key, bad))
    assert proc.returncode != 0 and "user_id" in proc.output
    # An AWX survey answer the allow-list refuses: refused before the role (or any other) writes.
    survey = {"nimguard_survey_services": "- {name: x, namespace: kube-system, image: {repository: nvcr.io/nim/a, "
                                          "tag: '1'}}",
              "nim_rollout_services": "{{ nimguard_survey_services | nimguard.k8s.survey_services(['nvcr.io/nim/']) }}"}
    proc = run_playbook(cluster, "site.yml", dict(site_vars(ns, key, []), **survey))
    assert proc.returncode != 0 and "namespace" in proc.output
    assert writes(cluster, mark) == [], [(e["verb"], e["requestURI"]) for e in writes(cluster, mark)]
    assert cluster.kubectl("get", "secret", "ngc-api-secret", "-n", ns, check=False).returncode != 0


# --- item 5 (and issue 19 item 3): check mode predicts the roll; keyed, stable hashes ------------------------------

def test_check_mode_predicts_the_rotation_with_keyed_stable_hashes(cluster, namespace):
    ns = namespace
    key, new = canary("nvapi-CHK-"), canary("nvapi-CHK2-")
    services = [service("chk")]
    run_playbook(cluster, "site.yml", site_vars(ns, key, services), expect_rc=0)
    first = template_annotation(cluster, ns, "chk")
    again = run_playbook(cluster, "site.yml", site_vars(ns, key, services), expect_rc=0)
    assert recap(again)["changed"] == 0 and template_annotation(cluster, ns, "chk") == first  # stable across runs
    # Keyed: neither the annotation nor nim_secret's content hash is a plain hash of the Secret's content.
    secret = cluster.get_json("secret", "ngc-api-secret", "-n", ns)
    plain = hashlib.sha256(json.dumps({"type": secret["type"], "data": secret["data"]}, sort_keys=True,
                                      separators=(",", ":")).encode()).hexdigest()
    assert plain[:16] not in json.dumps(cluster.get_json("deployment", "chk", "-n", ns))

    mark = cluster.audit_mark()
    predicted = run_playbook(cluster, "rotate_secrets.yml", site_vars(ns, new, services), ["--check", "--diff"],
                             expect_rc=0)
    assert "chk" in predicted.output and recap(predicted)["changed"] >= 2, predicted.output[-4000:]
    assert [e for e in writes(cluster, mark) if "dryRun=All" not in e["requestURI"]] == []
    assert template_annotation(cluster, ns, "chk") == first
    shown = [line.strip() for line in predicted.output.splitlines() if SECRETS_HASH in line]
    assert any(line.startswith("+") for line in shown) and any(line.startswith("-") for line in shown), shown
    new_value = [line for line in shown if line.startswith("+")][0].split(":", 1)[1].strip().strip('",')

    run_playbook(cluster, "rotate_secrets.yml", site_vars(ns, new, services), expect_rc=0)
    assert template_annotation(cluster, ns, "chk") == new_value != first  # the prediction was exact


# --- item 6: the doctor follows cause chains ------------------------------------------------------------------------

def _wait_not_ready(cluster, kind, name, ns=None, timeout=90):
    def cond():
        obj = cluster.get_json(kind, name, *(["-n", ns] if ns else []))
        ready_ = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        return ready_ and ready_[0]["status"] == "False"
    wait_until("%s %s to be not Ready" % (kind, name), cond, timeout=timeout)


def _doctor(cluster, ns, checks):
    play = run_play(cluster, [{"nimguard.k8s.nim_doctor": {"namespace": ns, "checks": checks, "fail_on": "never"}}])
    return play[0]["findings"]


def test_doctor_follows_certificate_to_issuer_to_its_missing_ca_secret(cluster, namespace):
    if not cluster.env.get("NIMGUARD_PEBBLE_URL"):
        pytest.skip("the certmanager add-on is not running")
    ns, issuer, ca_secret = namespace, "t-broken-ca-" + uuid.uuid4().hex[:6], "t-gone-" + uuid.uuid4().hex[:6]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": issuer},
        "spec": {"ca": {"secretName": ca_secret}}}))
    try:
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "api-tls"},
            "spec": {"secretName": "api-tls", "dnsNames": ["nim.example.com"],
                     "issuerRef": {"kind": "ClusterIssuer", "name": issuer}}}))
        _wait_not_ready(cluster, "clusterissuer", issuer)
        _wait_not_ready(cluster, "certificate", "api-tls", ns)
        findings = [f for f in _doctor(cluster, ns, ["certificates"]) if f["check"] == "certificates"]
        assert len(findings) == 1, findings
        assert "Certificate %s/api-tls is not ready" % ns in findings[0]["message"]
        assert "ClusterIssuer %s" % issuer in findings[0]["message"]
        assert "Secret cert-manager/%s, which does not exist" % ca_secret in findings[0]["message"], findings[0]
        assert "recreate that Secret" in findings[0]["fix"]
    finally:
        cluster.kubectl("delete", "clusterissuer", issuer, "--ignore-not-found", "--wait=false", check=False)


def test_doctor_follows_external_secret_to_its_missing_store(cluster, namespace):
    if not cluster.env.get("NIMGUARD_ESO_METRICS"):
        pytest.skip("the External Secrets add-on is not running")
    ns = namespace
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "ngc"},
        "spec": {"secretStoreRef": {"kind": "SecretStore", "name": "no-such-store"}, "refreshInterval": "1h",
                 "target": {"name": "ngc-api-secret"},
                 "data": [{"secretKey": "NGC_API_KEY", "remoteRef": {"key": "ngc"}}]}}))
    _wait_not_ready(cluster, "externalsecret", "ngc", ns)
    findings = [f for f in _doctor(cluster, ns, ["external_secrets"]) if f["check"] == "external_secrets"]
    assert len(findings) == 1, findings
    assert "cause: its SecretStore no-such-store does not exist" in findings[0]["message"], findings[0]
    assert "spec.secretStoreRef" in findings[0]["fix"]


# --- item 7: the fix names the key actually referenced ---------------------------------------------------------------

def test_missing_secret_fix_names_the_key_referenced(cluster, namespace):
    ns = namespace
    cluster.kubectl("create", "secret", "generic", "ngc-api-secret", "-n", ns, "--from-literal=NGC_API_KEY=x1234")
    play = run_play(cluster, [
        service_task(ns, "hf-ref", auth_secret="ngc-api-secret", env=[{"name": "HF_TOKEN", "value_from": {
            "secret_key_ref": {"name": "hf-token-secret", "key": "HF_TOKEN"}}}]),
        service_task(ns, "hf-opt", auth_secret="ngc-api-secret", hf_secret="hf-token-secret"),
    ])
    for result in play.results:
        assert result.get("failed"), result
        assert "--from-literal=HF_TOKEN=<value>" in result["msg"] and "NGC_API_KEY=<value>" not in result["msg"]
    assert "env[0].value_from.secret_key_ref.name" in play[0]["msg"] and play[1]["msg"].startswith("hf_secret")


# --- item 8: a path the collection sets is not redacted; secret-looking literals are --------------------------------

def test_diff_shows_the_key_file_path_and_hides_secret_literals(cluster, namespace):
    ns = namespace
    literal = canary("pw-")
    cluster.kubectl("create", "secret", "generic", "ngc-api-secret", "-n", ns, "--from-literal=NGC_API_KEY=x1234")
    play = run_play(cluster, [service_task(ns, "diffed", auth_secret="ngc-api-secret", env=[
        {"name": "DB_PASS", "value": literal}, {"name": "HTTPS_PROXY", "value": "http://u:%s@proxy:3128" % literal}])],
        diff=True)
    after = [d["after"] for d in play[0]["diff"] if d["after"].get("kind") == "Deployment"][0]
    env = env_of(after["spec"]["template"]["spec"]["containers"][0])
    assert env["NGC_API_KEY_FILE"] == "/var/run/secrets/nim/NGC_API_KEY"
    assert env["DB_PASS"].startswith("<redacted hmac-sha256:") and literal not in play.output
    assert env["HTTPS_PROXY"] == "http://********@proxy:3128"
