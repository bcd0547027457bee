"""The three modules against the real local control plane: idempotence proven by the audit log,
check mode, diff redaction, rotation, pruning, bad input and RBAC denials."""

import base64
import datetime
import json
import uuid

import pytest

from playbook import run_play, writes

CANARY = "nvapi-CANARY-modules-" + uuid.uuid4().hex  # canaries, made per run
CANARY2 = "nvapi-CANARY-rotated-" + uuid.uuid4().hex
IMAGE = {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"}


def secret_task(ns, value=CANARY, **kw):
    args = dict(name="ngc-api-secret", namespace=ns, kind="ngc", value=value)
    args.update(kw)
    return {"nimguard.k8s.nim_secret": args}


def service_task(ns, **kw):
    args = dict(name="llama", namespace=ns, auth_secret="ngc-api-secret", image=IMAGE)
    args.update(kw)
    return {"nimguard.k8s.nim_service": args}


def assert_no_leak(play, *values):
    for v in values:
        b64 = base64.b64encode(v.encode()).decode()
        for text in (play.output, json.dumps(play.results)):
            assert v not in text
            assert b64.rstrip("=") not in text


def actions(result):
    return dict(("%s/%s" % (o["kind"], o["name"]), o["action"]) for o in result["objects"])


# ---------------------------------------------------------------------------------------------
# nim_secret


def test_secret_create_idempotent_rotate_and_redacted(cluster, namespace):
    ns = namespace
    play = run_play(cluster, [secret_task(ns)], diff=True, verbosity=4)
    assert play[0]["changed"] is True, play
    # The namespace's key for the keyed content hashes is made with the first Secret (apply.hash_key).
    assert actions(play[0]) == {"Secret/ngc-api-secret": "created", "Secret/nimguard-hash-key": "created"}
    first_hash = play[0]["content_hash"]
    assert first_hash.startswith("hmac-sha256:")
    assert_no_leak(play, CANARY)

    mark = cluster.audit_mark()
    again = run_play(cluster, [secret_task(ns)], verbosity=4)
    assert again[0]["changed"] is False, again
    assert actions(again[0]) == {"Secret/ngc-api-secret": "unchanged"}
    assert again[0]["content_hash"] == first_hash
    assert writes(cluster, mark, ns) == []

    # check mode predicts the rotation and writes nothing
    mark = cluster.audit_mark()
    check = run_play(cluster, [secret_task(ns, value=CANARY2)], check=True, diff=True, verbosity=4)
    assert check[0]["changed"] is True and actions(check[0]) == {"Secret/ngc-api-secret": "updated"}
    assert [e for e in writes(cluster, mark, ns) if "dryRun=All" not in e.get("requestURI", "")] == []
    live = cluster.get_json("secret", "ngc-api-secret", "-n", ns)
    assert base64.b64decode(live["data"]["NGC_API_KEY"]).decode() == CANARY
    assert_no_leak(check, CANARY, CANARY2)
    diff = check[0]["diff"][0]
    assert diff["before"]["data"]["NGC_API_KEY"] != diff["after"]["data"]["NGC_API_KEY"]
    assert diff["after"]["data"]["NGC_API_KEY"].startswith("<redacted hmac-sha256:")

    rotated = run_play(cluster, [secret_task(ns, value=CANARY2)], diff=True, verbosity=4)
    assert rotated[0]["changed"] is True and rotated[0]["content_hash"] != first_hash
    assert_no_leak(rotated, CANARY, CANARY2)
    live = cluster.get_json("secret", "ngc-api-secret", "-n", ns)
    assert base64.b64decode(live["data"]["NGC_API_KEY"]).decode() == CANARY2


def test_secret_verify_only_and_missing(cluster, namespace):
    ns = namespace
    play = run_play(cluster, [
        {"nimguard.k8s.nim_secret": {"name": "ngc-api-secret", "namespace": ns, "kind": "ngc"}},
        secret_task(ns),
        {"nimguard.k8s.nim_secret": {"name": "ngc-api-secret", "namespace": ns, "kind": "ngc"}},
        {"nimguard.k8s.nim_secret": {"name": "ngc-api-secret", "namespace": ns, "kind": "ngc", "key": "OTHER"}},
    ])
    missing = play[0]
    assert missing["failed"] is True
    assert 'secret "ngc-api-secret" not found in namespace "%s"' % ns in missing["msg"]
    assert "kubectl create secret generic ngc-api-secret --from-literal=NGC_API_KEY=<value> -n %s" % ns in missing["msg"]
    assert play[2]["changed"] is False and play[2]["content_hash"] == play[1]["content_hash"]
    assert play[3]["failed"] is True and "has no key OTHER" in play[3]["msg"]


def test_registry_and_tls_secrets(cluster, namespace, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def cert(days_from, days_to, key=None):
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nim.example.com")])
        c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now + datetime.timedelta(days=days_from))
             .not_valid_after(now + datetime.timedelta(days=days_to)).sign(key, hashes.SHA256()))
        pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return c.public_bytes(serialization.Encoding.PEM).decode(), pem_key

    good_cert, good_key = cert(-1, 30)
    old_cert, old_key = cert(-30, -1)
    other_key = cert(-1, 30)[1]
    ns = namespace
    play = run_play(cluster, [
        {"nimguard.k8s.nim_secret": {"name": "ngc-secret", "namespace": ns, "kind": "registry",
                                     "registry": {"password": CANARY}}},
        {"nimguard.k8s.nim_secret": {"name": "tls", "namespace": ns, "kind": "tls",
                                     "tls": {"cert": good_cert, "key": good_key}}},
        {"nimguard.k8s.nim_secret": {"name": "tls-bad", "namespace": ns, "kind": "tls",
                                     "tls": {"cert": good_cert, "key": other_key}}},
        {"nimguard.k8s.nim_secret": {"name": "tls-old", "namespace": ns, "kind": "tls",
                                     "tls": {"cert": old_cert, "key": old_key}}},
        {"nimguard.k8s.nim_secret": {"name": "ngc-secret", "namespace": ns, "kind": "ngc", "value": "x" * 10}},
    ], diff=True, verbosity=3)
    assert play[0]["changed"] is True and play[0]["secret"]["type"] == "kubernetes.io/dockerconfigjson"
    assert play[1]["changed"] is True and play[1]["secret"]["type"] == "kubernetes.io/tls"
    assert play[2]["failed"] and "do not belong together" in play[2]["msg"]
    assert play[3]["failed"] and "expired" in play[3]["msg"]
    assert play[4]["failed"] and "type cannot change" in play[4]["msg"]
    assert_no_leak(play, CANARY, good_key.strip().splitlines()[1])
    live = cluster.get_json("secret", "ngc-secret", "-n", ns)
    auths = json.loads(base64.b64decode(live["data"][".dockerconfigjson"]))["auths"]
    assert auths["nvcr.io"]["username"] == "$oauthtoken" and auths["nvcr.io"]["password"] == CANARY
    assert cluster.kubectl("get", "secret", "tls-bad", "-n", ns, check=False).returncode != 0


# ---------------------------------------------------------------------------------------------
# nim_rbac


def test_rbac_least_privilege_openshift_and_absent(cluster, namespace):
    ns = namespace
    play = run_play(cluster, [
        {"nimguard.k8s.nim_rbac": {"name": "llama", "namespace": ns}},
        {"nimguard.k8s.nim_rbac": {"name": "llama", "namespace": ns}},
        {"nimguard.k8s.nim_rbac": {"name": "llama", "namespace": ns, "openshift": "yes", "host_path": True}},
        {"nimguard.k8s.nim_rbac": {"name": "llama", "namespace": ns,
                                   "extra_rules": [{"resources": ["*"], "verbs": ["get"]}]}},
        {"nimguard.k8s.nim_rbac": {"name": "llama", "namespace": ns,
                                   "extra_rules": [{"resources": ["pods"], "verbs": ["read"]}]}},
    ])
    assert play[0]["changed"] is True and play[0]["openshift"] is False
    assert set(actions(play[0]).values()) == {"created"} and len(play[0]["objects"]) == 3
    assert play[1]["changed"] is False
    assert play[2]["changed"] is True and play[2]["scc"] == "hostmount-anyuid"
    role = cluster.get_json("role", "llama", "-n", ns)
    assert role["rules"] == [{"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"],
                              "resourceNames": ["hostmount-anyuid"], "verbs": ["use"]}]
    sa = cluster.get_json("serviceaccount", "llama", "-n", ns)
    assert sa["automountServiceAccountToken"] is False
    assert play[3]["failed"] and play[3]["msg"].startswith("extra_rules[0]: wildcards")
    assert play[4]["failed"] and "unknown verb" in play[4]["msg"]
    gone = run_play(cluster, [{"nimguard.k8s.nim_rbac": {"name": "llama", "namespace": ns, "state": "absent"}}])
    assert set(actions(gone[0]).values()) == {"deleted"}
    assert cluster.kubectl("get", "role", "llama", "-n", ns, check=False).returncode != 0


# ---------------------------------------------------------------------------------------------
# nim_service


def test_service_lifecycle_restricted_idempotent_check_diff_prune(cluster, namespace):
    ns = namespace
    play = run_play(cluster, [secret_task(ns), service_task(ns, wait=True, wait_timeout=120)], verbosity=2)
    assert play[1]["changed"] is True, play
    assert set(actions(play[1]).values()) == {"created"}
    assert set(actions(play[1])) == {"ServiceAccount/llama", "Role/llama", "RoleBinding/llama", "Deployment/llama",
                                     "Service/llama", "NetworkPolicy/llama"}
    assert play[1]["rollout"]["availableReplicas"] == 1
    # admitted under `restricted` for real: the ReplicaSet made a pod
    pods = cluster.get_json("pods", "-n", ns, "-l", "app.kubernetes.io/instance=llama")["items"]
    assert len(pods) == 1
    spec = pods[0]["spec"]
    assert spec["securityContext"]["runAsUser"] == 1000 and spec["securityContext"]["runAsNonRoot"] is True
    assert not any(e.get("valueFrom") for e in spec["containers"][0].get("env", []))  # file delivery

    mark = cluster.audit_mark()
    again = run_play(cluster, [secret_task(ns), service_task(ns)], verbosity=4)
    assert again[1]["changed"] is False and set(actions(again[1]).values()) == {"unchanged"}, again
    assert writes(cluster, mark, ns) == []
    assert_no_leak(again, CANARY)
    # Reads: one LIST per kind the Deployment's applied-kinds annotation names (no ConfigMap list, no
    # discovery), plus the secret and the namespace's hash key, read together by each task: 6 + 4 for 7 objects.
    uris = [e["requestURI"] for e in cluster.audit_events(mark, verbs={"get", "list"}, user=cluster.user)]
    assert len(uris) <= 10, uris
    assert not [u for u in uris if u.startswith("/apis?") or u == "/apis" or "/configmaps" in u], uris

    # check mode: predicts the update through the server's dry run, writes nothing
    mark = cluster.audit_mark()
    check = run_play(cluster, [service_task(ns, replicas=2)], check=True, diff=True)
    assert check[0]["changed"] is True and actions(check[0])["Deployment/llama"] == "updated"
    real_writes = [e for e in writes(cluster, mark, ns) if "dryRun=All" not in e.get("requestURI", "")]
    assert real_writes == []
    assert cluster.get_json("deployment", "llama", "-n", ns)["spec"]["replicas"] == 1
    diff = [d for d in check[0]["diff"] if d["after_header"].startswith("Deployment")][0]
    assert diff["before"]["spec"]["replicas"] == 1 and diff["after"]["spec"]["replicas"] == 2

    # ingress on (TLS via cert-manager annotation), then off: pruned by label
    ing = {"ingress": {"enabled": True, "host": "llama.example.com",
                       "annotations": {"cert-manager.io/cluster-issuer": "ca-issuer"}}}
    on = run_play(cluster, [service_task(ns, expose=ing)])
    assert actions(on[0])["Ingress/llama"] == "created"
    off = run_play(cluster, [service_task(ns)])
    assert actions(off[0])["Ingress/llama"] == "deleted"
    assert cluster.kubectl("get", "ingress", "llama", "-n", ns, check=False).returncode != 0

    gone = run_play(cluster, [service_task(ns, state="absent")])
    assert set(actions(gone[0]).values()) == {"deleted"} and len(gone[0]["objects"]) == 6
    assert cluster.kubectl("get", "deployment", "llama", "-n", ns, check=False).returncode != 0


def _replicasets(cluster, ns):
    return cluster.get_json("replicasets", "-n", ns, "-l", "app.kubernetes.io/instance=llama")["items"]


def test_rotation_rolls_exactly_once_and_only_on_change(cluster, namespace):
    ns = namespace
    run_play(cluster, [secret_task(ns), service_task(ns, replicas=2, wait=True, wait_timeout=120)])
    assert len(_replicasets(cluster, ns)) == 1
    same = run_play(cluster, [secret_task(ns), service_task(ns, replicas=2, wait=True)])
    assert same[0]["changed"] is False and same[1]["changed"] is False
    assert len(_replicasets(cluster, ns)) == 1
    rotated = run_play(cluster, [secret_task(ns, value=CANARY2), service_task(ns, replicas=2, wait=True,
                                                                              wait_timeout=120)])
    assert rotated[0]["changed"] is True and rotated[1]["changed"] is True
    assert actions(rotated[1])["Deployment/llama"] == "updated"
    assert len(_replicasets(cluster, ns)) == 2
    again = run_play(cluster, [secret_task(ns, value=CANARY2), service_task(ns, replicas=2)])
    assert again[1]["changed"] is False and len(_replicasets(cluster, ns)) == 2
    dep = cluster.get_json("deployment", "llama", "-n", ns)
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    # no hash on the template: a rotation restarts nothing
    run_play(cluster, [service_task(ns, replicas=2, restart_on_rotation=False, wait=True, wait_timeout=120)])
    count = len(_replicasets(cluster, ns))
    quiet = run_play(cluster, [secret_task(ns, value=CANARY), service_task(ns, replicas=2, restart_on_rotation=False)])
    assert quiet[0]["changed"] is True and quiet[1]["changed"] is False
    assert len(_replicasets(cluster, ns)) == count


def test_gpu_service_lands_on_a_gpu_node(cluster, namespace):
    ns = namespace
    play = run_play(cluster, [secret_task(ns), service_task(ns, resources={"gpus": 1}, wait=True, wait_timeout=120)])
    assert play[1]["changed"] is True, play
    pods = cluster.get_json("pods", "-n", ns, "-l", "app.kubernetes.io/instance=llama")["items"]
    assert pods and all(p["spec"]["nodeName"].startswith("kwok-gpu-") for p in pods)


@pytest.mark.parametrize("overrides,needle", [
    (dict(user_id=0), "user_id: 0 is root"),
    (dict(name="Bad_Name"), "name: 'Bad_Name' is not a valid name"),
    (dict(auth_secret="does-not-exist"), 'secret "does-not-exist" not found in namespace'),
    (dict(auth_secret_key="WRONG"), "has no key WRONG"),
    (dict(storage={"host_path": "/mnt/nim"}), "forbids hostPath"),
    (dict(runtime_class_name="no-such-runtime"), "RuntimeClass 'no-such-runtime' does not exist"),
    (dict(resources={"gpus": 64}), "no node advertises that many"),
    (dict(backend="operator", secret_delivery={"mode": "env"}), "needs the NIMService CRD"),
    (dict(expose={"ingress": {"enabled": True, "host": "plain.example.com"}}), "refusing an Ingress without TLS"),
    (dict(image={"repository": "nim", "tag": "1", "pull_secrets": ["missing-pull"]}), "image.pull_secrets"),
])
def test_service_bad_input_fails_before_any_write(cluster, namespace, overrides, needle):
    ns = namespace
    run_play(cluster, [secret_task(ns)])
    mark = cluster.audit_mark()
    play = run_play(cluster, [service_task(ns, **overrides)])
    assert play[0].get("failed") is True, play
    assert needle in play[0]["msg"], play[0]["msg"]
    assert "Fix" in play[0]["msg"]
    assert writes(cluster, mark, ns) == []


def test_limited_identity_gets_a_translated_403(cluster, namespace):
    ns = namespace
    play = run_play(cluster, [secret_task(ns, kubeconfig=cluster.limited_kubeconfig)])
    assert play[0]["failed"] is True
    assert "Forbidden" in play[0]["msg"] and "Fix" in play[0]["msg"], play[0]["msg"]
    assert_no_leak(play, CANARY)


def test_unreachable_api_is_a_clear_error(cluster, namespace):
    play = run_play(cluster, [secret_task(namespace, host="https://127.0.0.1:1", retry_timeout=1,
                                          validate_certs=False)])
    assert play[0]["failed"] is True and "Cannot reach the Kubernetes API server at https://127.0.0.1:1" in play[0]["msg"]


def test_module_path_on_a_remote_style_host_gives_the_same_result(cluster, namespace):
    """NIMGUARD_REMOTE_MODULE=1 runs the real module (AnsiballZ), as on a bastion host."""
    ns = namespace
    env = {"NIMGUARD_REMOTE_MODULE": "1"}
    first = run_play(cluster, [secret_task(ns), service_task(ns)], env=env, verbosity=4)
    assert first[1]["changed"] is True, first
    second = run_play(cluster, [secret_task(ns), service_task(ns)], env=env, verbosity=4)
    assert second[0]["changed"] is False and second[1]["changed"] is False
    assert_no_leak(first, CANARY)
    assert_no_leak(second, CANARY)
