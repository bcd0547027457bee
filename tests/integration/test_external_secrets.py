"""External Secrets against the real operator (the `eso` add-on of scripts/cluster: ESO v0.16.2 built from
the Go module proxy): the role's Vault and AWS stores, the fake-provider path to the NGC key Secret,
nim_rollout waiting for it, rotation from the source, and the doctor's finding."""

import json
import os
import socket
import subprocess
import time
import uuid

import pytest
import yaml

from playbook import recap, run_play, run_playbook, writes

ROLE = "nimguard.k8s.external_secrets"
API = "external-secrets.io/v1"
IMAGE = {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"}


@pytest.fixture(scope="module")
def eso(cluster):
    metrics = cluster.env.get("NIMGUARD_ESO_METRICS")
    if not metrics:
        pytest.skip("the External Secrets add-on is not running (scripts/cluster up with NIMGUARD_ADDONS including eso)")
    ok = subprocess.run(["curl", "-sf", "-o", "/dev/null", metrics], check=False, timeout=10).returncode == 0
    if not ok:
        pytest.skip("the External Secrets add-on is not answering at %s (see $NIMGUARD_STATE/logs/external-secrets.log)"
                    % metrics)
    return cluster


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_role(cluster, tmp_path, args=(), **variables):
    """The role in a play of its own on a one-cluster inventory, as a user runs it."""
    play = tmp_path / "external-secrets.yml"
    play.write_text(yaml.safe_dump([{"hosts": "clusters", "gather_facts": False,
                                     "tasks": [{"ansible.builtin.include_role": {"name": ROLE}}]}]))
    base = dict(external_secrets_install="none", external_secrets_external_secrets=[])
    base.update(variables)
    return run_playbook(cluster, str(play), base, args)


def fake_store(name, key):
    return {"name": name, "provider": "fake",
            "fake": {"data": [{"key": "nim/ngc", "value": json.dumps({"api_key": key})}]}}


def ngc_external_secrets(store, refresh="2s"):
    data = [{"secret_key": "NGC_API_KEY", "remote_key": "nim/ngc", "property": "api_key"}]
    return [{"name": "ngc-api-secret", "store": store, "refresh_interval": refresh, "data": data},
            {"name": "ngc-secret", "store": store, "refresh_interval": refresh, "type": "registry",
             "data": [{"secret_key": "password", "remote_key": "nim/ngc", "property": "api_key"}]}]


def secret_value(cluster, ns, name, key):
    import base64
    data = cluster.get_json("secret", name, "-n", ns).get("data") or {}
    return base64.b64decode(data[key]).decode() if key in data else None


def wait_until(what, check, timeout=60):
    """Bounded wait for the operator (a controller, asynchronous by nature); fails naming what it waited for."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.5)


def our_writes(cluster, mark, ns):
    """Real writes by the collection's identity (the operator has its own: CN=external-secrets); check
    mode's dry runs (dryRun=All) are predictions, not writes."""
    return [e for e in writes(cluster, mark, ns)
            if e["user"]["username"] != "external-secrets" and "dryRun=All" not in e.get("requestURI", "")]


def site_vars(ns, key, services, **extra):
    out = {"nimguard_external_secrets": True, "external_secrets_install": "none",
           "external_secrets_target_namespace": ns, "external_secrets_stores": [fake_store("nim-fake", key)],
           "external_secrets_external_secrets": ngc_external_secrets("nim-fake"),
           "nim_rollout_namespace": ns, "nim_rollout_secrets_source": "external_secrets",
           "nim_rollout_external_secret_names": ["ngc-api-secret", "ngc-secret"],
           "nim_rollout_services": services, "nim_rollout_wait_timeout": 120}
    out.update(extra)
    return out


def service(name):
    return {"name": name, "image": IMAGE, "secret_delivery": {"mode": "file"},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}}


def test_vault_and_aws_stores_are_accepted_and_unreachable_backends_explained(eso, namespace, tmp_path):
    ns = namespace
    eso.kubectl("create", "serviceaccount", "nim-eso", "-n", ns)
    # IRSA: the IAM role the ServiceAccount's token is exchanged for (ESO refuses a JWT store without it).
    eso.kubectl("annotate", "serviceaccount", "nim-eso", "-n", ns,
                "eks.amazonaws.com/role-arn=arn:aws:iam::123456789012:role/nim-eso")
    eso.kubectl("create", "secret", "generic", "aws-keys", "-n", ns, "--from-literal=access-key-id=AKIAEXAMPLE",
                "--from-literal=secret-access-key=example-not-a-key")
    with open(os.path.join(eso.state, "pki", "ca.crt")) as f:
        ca = f.read()
    vault = {"name": "vault", "provider": "vault", "vault": {
        "server": "https://127.0.0.1:%d" % closed_port(), "role": "nim", "service_account": "nim-eso",
        "ca_bundle": ca}}
    aws_irsa = {"name": "aws-irsa", "provider": "aws", "aws": {"region": "eu-west-1", "service_account": "nim-eso"}}
    aws_keys = {"name": "aws-keys", "provider": "aws", "aws": {"region": "eu-west-1",
                                                               "access_key_secret": {"name": "aws-keys"}}}
    common = dict(external_secrets_target_namespace=ns, external_secrets_store_wait_timeout=10)

    # Default: stop on a store that is not Ready, with ESO's reason, its event and the fix.
    failed = run_role(eso, tmp_path, external_secrets_stores=[vault], **common)
    assert failed.returncode != 0, failed.output[-3000:]
    msg = failed.output.split("Stop on a store that is not Ready")[1]
    assert "SecretStore vault did not reach Ready=True" in msg, msg
    assert "InvalidProviderConfig" in msg and "connection refused" in msg, msg
    assert "kubectl describe secretstore vault -n %s" % ns in msg and "Fix: make sure the operator reaches" in msg
    store = eso.get_json("secretstore.external-secrets.io", "vault", "-n", ns)
    assert store["apiVersion"] == API
    kube = store["spec"]["provider"]["vault"]["auth"]["kubernetes"]
    assert kube == {"role": "nim", "mountPath": "kubernetes", "serviceAccountRef": {"name": "nim-eso"}}
    assert store["spec"]["provider"]["vault"]["version"] == "v2" and store["spec"]["provider"]["vault"]["caBundle"]

    # warn: every store is applied and reported; the run goes on.
    warned = run_role(eso, tmp_path, external_secrets_stores=[vault, aws_irsa, aws_keys],
                      external_secrets_store_unready="warn", **common)
    assert warned.returncode == 0 and recap(warned)["rescued"] == 1, warned.output[-3000:]
    report = warned.output.split("Report a store that is not Ready")[1]
    assert "SecretStore vault did not reach Ready=True" in report, report
    assert "SecretStore aws-keys" not in report, report
    irsa_msg = report.split("SecretStore aws-irsa did not reach Ready=True")[1]
    assert "ValidationFailed" in irsa_msg and "WebIdentityErr" in irsa_msg and "connection refused" in irsa_msg
    assert "Fix: make sure the region is right" in irsa_msg
    irsa = eso.get_json("secretstore.external-secrets.io", "aws-irsa", "-n", ns)["spec"]["provider"]["aws"]
    assert irsa["auth"] == {"jwt": {"serviceAccountRef": {"name": "nim-eso"}}} and irsa["region"] == "eu-west-1"
    # Static keys are checked without a call to AWS, so that store is Ready; the backend is reached (and
    # fails) only when an ExternalSecret reads through it.
    keys = eso.get_json("secretstore.external-secrets.io", "aws-keys", "-n", ns)
    assert [c["status"] for c in keys["status"]["conditions"] if c["type"] == "Ready"] == ["True"]


def test_fake_store_writes_owned_ngc_secret_idempotent_and_check_mode(eso, namespace, tmp_path):
    ns = namespace
    key = "nvapi-ESO-" + uuid.uuid4().hex
    settings = dict(external_secrets_target_namespace=ns, external_secrets_stores=[fake_store("nim-fake", key)],
                    external_secrets_external_secrets=ngc_external_secrets("nim-fake"))
    first = run_role(eso, tmp_path, **settings)
    assert first.returncode == 0, first.output[-3000:]
    assert secret_value(eso, ns, "ngc-api-secret", "NGC_API_KEY") == key
    secret = eso.get_json("secret", "ngc-api-secret", "-n", ns)
    owners = secret["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o.get("controller")) for o in owners] == [("ExternalSecret", "ngc-api-secret", True)]
    pull = eso.get_json("secret", "ngc-secret", "-n", ns)
    assert pull["type"] == "kubernetes.io/dockerconfigjson"
    auths = json.loads(secret_value(eso, ns, "ngc-secret", ".dockerconfigjson"))["auths"]
    assert auths == {"nvcr.io": {"username": "$oauthtoken", "password": key}}
    assert key not in first.output + first.log  # the fake store's values are not logged

    mark = eso.audit_mark()
    again = run_role(eso, tmp_path, **settings)
    assert again.returncode == 0 and recap(again)["changed"] == 0, again.output[-3000:]
    check = run_role(eso, tmp_path, ["--check"], **settings)
    assert check.returncode == 0 and recap(check)["changed"] == 0, check.output[-3000:]
    assert our_writes(eso, mark, ns) == []

    # A changed store is predicted in check mode and nothing is written.
    moved = dict(settings)
    moved["external_secrets_stores"] = [fake_store("nim-fake", key + "x")]
    mark = eso.audit_mark()
    predicted = run_role(eso, tmp_path, ["--check"], **moved)
    assert predicted.returncode == 0 and recap(predicted)["changed"] == 1, predicted.output[-3000:]
    assert our_writes(eso, mark, ns) == []
    assert secret_value(eso, ns, "ngc-api-secret", "NGC_API_KEY") == key


def test_manifest_install_applies_the_operator_bundle_server_side_idempotent(eso, tmp_path):
    """install: manifest with the operator's own CRD bundle (20 CRDs, too large for client-side apply);
    the Deployments are the add-on's process here, so none are waited for."""
    settings = dict(external_secrets_install="manifest", external_secrets_manifest=eso.env["NIMGUARD_ESO_CRDS"],
                    external_secrets_deployments=[])
    first = run_role(eso, tmp_path, **settings)
    assert first.returncode == 0, first.output[-3000:]
    crd = eso.get_json("crd", "externalsecrets.external-secrets.io")
    assert "nimguard.io/applied-hash" in crd["metadata"]["annotations"]  # applied by nim_apply (server-side)
    mark = eso.audit_mark()
    again = run_role(eso, tmp_path, **settings)
    assert again.returncode == 0 and recap(again)["changed"] == 0, again.output[-3000:]
    check = run_role(eso, tmp_path, ["--check"], **settings)
    assert check.returncode == 0 and recap(check)["changed"] == 0, check.output[-3000:]
    assert [e for e in writes(eso, mark) if e["user"]["username"] == eso.user
            and "dryRun=All" not in e.get("requestURI", "")] == []


def replicasets(cluster, ns, name):
    dep = cluster.get_json("deployment", name, "-n", ns)
    selector = ",".join("%s=%s" % kv for kv in sorted(dep["spec"]["selector"]["matchLabels"].items()))
    return sorted(rs["metadata"]["name"] for rs in cluster.get_json("rs", "-n", ns, "-l", selector)["items"])


def test_rollout_waits_for_the_external_secret_and_rotation_from_the_source(eso, namespace, tmp_path):
    ns = namespace
    key, key2 = "nvapi-SRC-" + uuid.uuid4().hex, "nvapi-SRC2-" + uuid.uuid4().hex
    # An ExternalSecret that cannot sync: nim_rollout stops before any service, with ESO's reason.
    broken = site_vars(ns, key, [service("es-a")], nim_rollout_external_secret_timeout=10,
                       external_secrets_wait=False, external_secrets_external_secrets=[
                           {"name": "ngc-api-secret", "store": "nim-fake", "refresh_interval": "2s",
                            "data": [{"secret_key": "NGC_API_KEY", "remote_key": "nim/absent"}]}],
                       nim_rollout_external_secret_names=["ngc-api-secret"])
    proc = run_playbook(eso, "site.yml", broken)
    assert proc.returncode != 0, proc.output[-4000:]
    assert "ExternalSecret ngc-api-secret did not reach Ready=True" in proc.output, proc.output[-4000:]
    assert "SecretSyncedError" in proc.output and "kubectl describe externalsecret ngc-api-secret" in proc.output
    assert eso.kubectl("get", "deployment", "es-a", "-n", ns, check=False).returncode != 0

    # The doctor reports it too, with the reason and where to look.
    doctor = run_play(eso, [{"nimguard.k8s.nim_doctor": {"namespace": ns, "checks": ["external_secrets"],
                                                         "fail_on": "never"}}])
    findings = [f for f in doctor[0]["findings"] if f["check"] == "external_secrets"]
    assert len(findings) == 1 and findings[0]["status"] == "fail", doctor[0]
    assert "ngc-api-secret" in findings[0]["message"] and "SecretSyncedError" in findings[0]["message"]
    assert "last warning event" in findings[0]["message"] and "nim/absent" in findings[0]["message"], findings[0]
    assert "kubectl describe externalsecret ngc-api-secret -n %s" % ns in findings[0]["fix"]

    # Fixed: the site run syncs the Secrets, then deploys; a rerun changes nothing.
    good = site_vars(ns, key, [service("es-a")])
    run_playbook(eso, "site.yml", good, expect_rc=0)
    assert secret_value(eso, ns, "ngc-api-secret", "NGC_API_KEY") == key
    before = replicasets(eso, ns, "es-a")
    assert len(before) == 1
    again = run_playbook(eso, "site.yml", good, expect_rc=0)
    assert recap(again)["changed"] == 0, again.output[-4000:]

    # Rotation from the source: new value in the backend, ESO refreshes, one roll; a rerun rolls nothing.
    rotated = site_vars(ns, key2, [service("es-a")])
    source = run_role(eso, tmp_path, external_secrets_target_namespace=ns,
                      external_secrets_stores=[fake_store("nim-fake", key2)])
    assert source.returncode == 0, source.output[-3000:]
    # Both Secrets come from the same source value; the rotation run must see both refreshed (else the
    # next run would roll again for the second one).
    wait_until("ESO to refresh ngc-api-secret and ngc-secret from the source",
               lambda: secret_value(eso, ns, "ngc-api-secret", "NGC_API_KEY") == key2
               and key2 in secret_value(eso, ns, "ngc-secret", ".dockerconfigjson"))
    roll = run_playbook(eso, "rotate_secrets.yml", rotated, expect_rc=0)
    assert "es-a" in roll.stdout
    after = replicasets(eso, ns, "es-a")
    assert len(after) == 2 and before[0] in after, after
    rerun = run_playbook(eso, "rotate_secrets.yml", rotated, expect_rc=0)
    assert recap(rerun)["changed"] == 0, rerun.output[-4000:]
    assert replicasets(eso, ns, "es-a") == after
    assert key2 not in roll.output + rerun.output
