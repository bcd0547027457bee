"""Security and reliability suite, part 2: bad input. Each case must fail with a message that names
the field (or the thing to change) and the fix, and the audit log must show no write."""

import datetime
import os
import uuid

import pytest
import yaml

from playbook import run_play, writes

IMAGE = {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"}
KEY = "nvapi-BADINPUT-" + uuid.uuid4().hex  # a canary, made per run: no key-shaped literal in Git


def secret(**kw):
    args = dict(name="ngc-api-secret", kind="ngc", value=KEY)
    args.update(kw)
    return "nim_secret", args


def service(**kw):
    args = dict(name="llama", auth_secret="ngc-api-secret", image=IMAGE)
    args.update(kw)
    return "nim_service", args


def rbac(**kw):
    args = dict(name="llama")
    args.update(kw)
    return "nim_rbac", args


def apply(definition, **kw):
    args = dict(definition=definition)
    args.update(kw)
    return "nim_apply", args


def deployment(**spec):
    base = {"replicas": 1, "selector": {"matchLabels": {"app": "x"}}, "template": {
        "metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "x", "image": "x"}]}}}
    base.update(spec)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": base}


# (id, (module, args), [every text the message must hold]); "Fix" is required unless the case says
# otherwise (Ansible's own argument checks word it "must be one of", "is required" and so on).
CASES = [
    # wrong types, caught by the argument spec before any request
    ("secret-kind-unknown", secret(kind="password"), ["kind", "must be one of"]),
    ("secret-data-not-a-dict", secret(kind="generic", value=None, data="oops"), ["data", "dict"]),
    ("service-replicas-not-int", service(replicas="many"), ["replicas", "int"]),
    ("service-image-missing", service(image=None), ["image"]),
    ("service-delivery-mode-unknown", service(secret_delivery={"mode": "envfile"}), ["mode", "must be one of"]),
    ("service-backend-unknown", service(backend="helm"), ["backend", "must be one of"]),
    # values that are wrong for Kubernetes or for security
    ("secret-bad-name", secret(name="Bad_Name"), ["name", "Bad_Name", "Fix"]),
    ("secret-bad-data-key", secret(kind="generic", value=None, data={"bad key!": "some-longer-value"}),
     ["bad key!", "Fix"]),
    # no value: verify-only, and the Secret is not there
    ("secret-registry-missing", secret(name="pull-absent", kind="registry", value=None,
                                       registry={"server": "nvcr.io"}), ["pull-absent", "Fix"]),
    ("secret-ngc-missing", secret(name="ngc-absent", value=None), ["ngc-absent", "Fix"]),
    ("secret-tls-not-pem", secret(kind="tls", value=None, tls={"cert": "/nonexistent/tls.crt",
                                                               "key": "/nonexistent/tls.key"}),
     ["tls.cert", "PEM", "Fix"]),
    ("service-root-user", service(user_id=0), ["user_id", "root", "Fix"]),
    ("service-root-group", service(group_id=0), ["group_id", "Fix"]),
    ("service-bad-name", service(name="Bad_Name"), ["name", "Bad_Name", "Fix"]),
    ("service-negative-gpus", service(resources={"gpus": -1}), ["resources.gpus", "Fix"]),
    ("service-env-value-and-ref", service(env=[{"name": "A", "value": "x", "value_from": {
        "secret_key_ref": {"name": "s", "key": "k"}}}]), ["env[0]", "value_from", "Fix"]),
    ("service-vault-agent-without-vault", service(secret_delivery={"mode": "vault_agent"}),
     ["secret_delivery.vault", "Fix"]),
    ("service-operator-with-file-delivery", service(backend="operator", secret_delivery={"mode": "file"}),
     ["secret_delivery.mode", "Fix"]),
    ("service-plain-http-ingress", service(expose={"ingress": {"enabled": True, "host": "plain.example.com"}}),
     ["Ingress without TLS", "allow_plain_http", "Fix"]),
    ("service-ingress-without-host", service(expose={"ingress": {"enabled": True, "tls_secret_name": "t"}}),
     ["expose.ingress", "host", "Fix"]),
    # node access, RBAC and values pasted into configuration (issue 19 items 6, 8, 9, 10)
    ("service-hostpath-root", service(storage={"host_path": "/"}), ["storage.host_path", "allowed prefix", "Fix"]),
    ("service-hostpath-climbs-out", service(storage={"host_path": "/mnt/../etc"}),
     ["storage.host_path", "normalised", "Fix"]),
    ("service-privileged-scc", service(rbac={"scc": "privileged"}), ["rbac.scc", "allow_privileged_scc", "Fix"]),
    ("rbac-hostaccess-scc", rbac(scc="hostaccess"), ["scc", "allow_privileged_scc", "Fix"]),
    ("rbac-reads-secrets", rbac(extra_rules=[{"api_groups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]),
     ["extra_rules[0]", "get/list on secrets", "allow_dangerous_rules", "Fix"]),
    ("rbac-pods-exec", rbac(extra_rules=[{"resources": ["pods/exec"], "verbs": ["create"]}]),
     ["extra_rules[0]", "pods/exec", "Fix"]),
    ("service-rbac-escalate", service(rbac={"extra_rules": [{"api_groups": ["rbac.authorization.k8s.io"],
                                                             "resources": ["roles"], "verbs": ["escalate", "bind"]}]}),
     ["rbac.extra_rules[0]", "bind/escalate", "Fix"]),
    ("service-auth-secret-key-shell", service(auth_secret_key='KEY"; wget evil #'),
     ["auth_secret_key", "not a valid Secret key", "Fix"]),
    ("service-vault-role-injects-block", service(auth_secret=None, secret_delivery={"mode": "vault_agent", "vault": {
        "address": "https://vault.example.com:8200", "secret_path": "secret/data/nim/ngc",
        "role": 'nim"\n}\ntemplate {\n  destination = "/tmp/x'}}), ["secret_delivery.vault.role", "Fix"]),
    ("service-vault-plain-http", service(auth_secret=None, secret_delivery={"mode": "vault_agent", "vault": {
        "address": "http://vault.example.com:8200", "role": "nim", "secret_path": "secret/data/nim/ngc"}}),
     ["secret_delivery.vault.address", "allow_http", "Fix"]),
    ("service-bad-cluster-cidr", service(network_policy={"cluster_cidrs": ["the-cluster"]}),
     ["network_policy.cluster_cidrs[0]", "Fix"]),
    # missing things in the cluster: the preflight
    ("service-missing-auth-secret", service(auth_secret="does-not-exist"), ["does-not-exist", "Fix"]),
    ("service-auth-secret-wrong-key", service(auth_secret_key="WRONG"), ["auth_secret", "WRONG", "Fix"]),
    ("service-missing-pull-secret", service(image=dict(IMAGE, pull_secrets=["missing-pull"])),
     ["image.pull_secrets", "missing-pull", "Fix"]),
    ("service-missing-runtime-class", service(runtime_class_name="no-such-runtime"),
     ["runtime_class_name", "no-such-runtime", "Fix"]),
    ("service-too-many-gpus", service(resources={"gpus": 64}), ["resources.gpus", "Fix"]),
    ("service-hostpath-under-restricted", service(storage={"host_path": "/mnt/nim"}),
     ["storage.host_path", "restricted", "Fix"]),
    ("service-operator-without-crd", service(backend="operator", secret_delivery={"mode": "env"}),
     ["NIMService", "Fix"]),
    # a whole service as one dict (what nim_rollout passes): typos and connection options are named
    ("service-dict-unknown-key", ("nim_service", {"service": dict(name="llama", auth_secret="ngc-api-secret",
                                                                  image=IMAGE, replica=2)}),
     ["service.replica", "not an option", "Fix"]),
    ("service-dict-connection-option", ("nim_service", {"service": dict(name="llama", auth_secret="ngc-api-secret",
                                                                        image=IMAGE, kubeconfig="/tmp/elsewhere")}),
     ["service.kubeconfig", "connection option", "Fix"]),
    # RBAC and generic objects
    ("rbac-wildcard-verbs", rbac(extra_rules=[{"api_groups": [""], "resources": ["pods"], "verbs": ["*"]}]),
     ["extra_rules", "*", "Fix"]),
    ("rbac-rule-without-verbs", rbac(extra_rules=[{"api_groups": [""], "resources": ["pods"]}]),
     ["extra_rules", "verbs", "required"]),
    ("apply-no-name", apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
     ["metadata.name", "required"]),
    ("apply-unknown-kind", apply({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
     ["Widget", "Fix"]),
    ("apply-server-rejects-field", apply(deployment(replicas=-1)), ["spec.replicas", "Fix"]),
    # connection: unreachable, wrong context, missing kubeconfig
    ("conn-unreachable", secret(host="https://127.0.0.1:1", kubeconfig=None, retry_timeout=1),
     ["127.0.0.1:1", "Fix"]),
    ("conn-wrong-context", secret(context="no-such-context"), ["context", "no-such-context", "Fix"]),
    ("conn-missing-kubeconfig", secret(kubeconfig="/nonexistent/kubeconfig"), ["/nonexistent/kubeconfig", "Fix"]),
]


@pytest.fixture(scope="module")
def secret_ready(cluster):
    """A namespace with a valid NGC key Secret, so each case fails for its own reason only."""
    import uuid
    ns = "bad-" + uuid.uuid4().hex[:6]
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    args = dict(name="ngc-api-secret", namespace=ns, kind="ngc", value=KEY)
    play = run_play(cluster, [{"nimguard.k8s.nim_secret": args}])
    assert play[0]["changed"] is True, play
    yield ns
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _clean(args, ns):
    args = dict((k, v) for k, v in args.items() if v is not None)
    if "definition" in args:
        args["definition"] = dict(args["definition"], metadata=dict(args["definition"]["metadata"], namespace=ns))
    else:
        args["namespace"] = ns
    return args


def check_fails_cleanly(cluster, ns, module, args, needles, env=None, secrets=()):
    mark = cluster.audit_mark()
    play = run_play(cluster, [{"nimguard.k8s." + module: _clean(args, ns)}], env=env)
    result = play[0]
    assert result.get("failed") is True, result
    msg = result.get("msg", "")
    for needle in needles:
        assert needle in msg, "%r not in the error: %s" % (needle, msg)
    assert "Traceback" not in play.output and KEY not in play.output
    for value in secrets:
        assert value not in play.output and value not in str(play.results)
    # a write the server refused (422, say) or a dry run changed nothing
    done = [e["requestURI"] for e in writes(cluster, mark, ns)
            if e.get("responseStatus", {}).get("code", 200) < 400 and "dryRun" not in e["requestURI"]]
    assert done == []
    return msg


@pytest.mark.parametrize("case,call,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly_and_writes_nothing(cluster, secret_ready, case, call, needles):
    module, args = call
    check_fails_cleanly(cluster, secret_ready, module, args, needles)


def _pki(cluster):
    return os.path.join(cluster.state, "pki")


def _cert(subject_cn, org, issuer_cert, issuer_key, not_after, ca=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME,
                                                                                             subject_cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert is not None else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=2)).not_valid_after(now + not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    cert = builder.sign(issuer_key if issuer_key is not None else key, hashes.SHA256())
    return cert, key


def _write_kubeconfig(cluster, tmp_path, cert, key, ca_path=None):
    from cryptography.hazmat.primitives import serialization
    cfg = yaml.safe_load(open(cluster.kubeconfig))
    crt_file, key_file = tmp_path / "client.crt", tmp_path / "client.key"
    crt_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    for user in cfg["users"]:
        user["user"] = {"client-certificate": str(crt_file), "client-key": str(key_file)}
    if ca_path:
        for c in cfg["clusters"]:
            c["cluster"].pop("certificate-authority-data", None)
            c["cluster"]["certificate-authority"] = str(ca_path)
    else:
        ca = os.path.join(_pki(cluster), "ca.crt")
        for c in cfg["clusters"]:
            if "certificate-authority" in c["cluster"]:
                c["cluster"]["certificate-authority"] = ca
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _load_ca(cluster):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    ca_cert = x509.load_pem_x509_certificate(open(os.path.join(_pki(cluster), "ca.crt"), "rb").read())
    ca_key = serialization.load_pem_private_key(open(os.path.join(_pki(cluster), "ca.key"), "rb").read(), None)
    return ca_cert, ca_key


def test_expired_client_certificate(cluster, secret_ready, tmp_path):
    ca_cert, ca_key = _load_ca(cluster)
    cert, key = _cert(cluster.user, "system:masters", ca_cert, ca_key, datetime.timedelta(days=-1))
    kubeconfig = _write_kubeconfig(cluster, tmp_path, cert, key)
    msg = check_fails_cleanly(cluster, secret_ready, "nim_secret", dict(secret()[1], kubeconfig=kubeconfig),
                              ["Fix"])
    assert "401" in msg or "Unauthorized" in msg or "expired" in msg, msg


def test_certificate_from_another_ca_is_refused_by_tls(cluster, secret_ready, tmp_path):
    other_ca, other_key = _cert("other-ca", "elsewhere", None, None, datetime.timedelta(days=1), ca=True)
    from cryptography.hazmat.primitives import serialization
    ca_path = tmp_path / "other-ca.crt"
    ca_path.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    ca_cert, ca_key = _load_ca(cluster)
    cert, key = _cert(cluster.user, "system:masters", ca_cert, ca_key, datetime.timedelta(days=1))
    kubeconfig = _write_kubeconfig(cluster, tmp_path, cert, key, ca_path=ca_path)
    msg = check_fails_cleanly(cluster, secret_ready, "nim_secret", dict(secret()[1], kubeconfig=kubeconfig),
                              ["Fix", "ca_cert"])
    assert "certificate" in msg.lower(), msg


def test_forbidden_identity_is_translated(cluster, secret_ready):
    check_fails_cleanly(cluster, secret_ready, "nim_service", dict(service()[1], kubeconfig=cluster.limited_kubeconfig),
                        ["Forbidden", "Fix"])


def _pem(cert, key):
    from cryptography.hazmat.primitives import serialization
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def test_expired_and_mismatched_tls_secrets(cluster, secret_ready):
    ca_cert, ca_key = _load_ca(cluster)
    expired_cert, expired_key = _pem(*_cert("nim.example.com", "nim", ca_cert, ca_key, datetime.timedelta(days=-1)))
    check_fails_cleanly(cluster, secret_ready, "nim_secret", dict(
        name="tls-expired", kind="tls", tls={"cert": expired_cert, "key": expired_key}), ["expired", "Fix"],
        secrets=[expired_key.splitlines()[1]])
    good_cert = _pem(*_cert("nim.example.com", "nim", ca_cert, ca_key, datetime.timedelta(days=30)))[0]
    other_key = _pem(*_cert("nim.example.com", "nim", ca_cert, ca_key, datetime.timedelta(days=30)))[1]
    check_fails_cleanly(cluster, secret_ready, "nim_secret", dict(
        name="tls-mismatch", kind="tls", tls={"cert": good_cert, "key": other_key}), ["tls.key", "Fix"],
        secrets=[other_key.splitlines()[1]])
