"""cert-manager against the real controller (the `certmanager` add-on of scripts/cluster: cert-manager v1.11.5
built from the Go module proxy, and pebble, a real ACME server): the role's ClusterIssuers, a CA-signed
Certificate, the ingress-shim on an Ingress rendered by nim_service, an ACME account and certificate, and
the doctor's finding for a Certificate that is not Ready."""

import base64
import json
import ssl
import time
import urllib.request
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from playbook import recap, run_play, run_playbook, writes

ROLE = "nimguard.k8s.cert_manager"
CM_NS = "cert-manager"  # the controller's --cluster-resource-namespace in the local cluster
IMAGE = {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"}


@pytest.fixture(scope="module")
def cm(cluster):
    if not cluster.env.get("NIMGUARD_PEBBLE_URL"):
        pytest.skip("the certmanager add-on is not running (scripts/cluster up with NIMGUARD_ADDONS including "
                    "certmanager)")
    return cluster


@pytest.fixture(scope="module")
def issuers(cm):
    """The role's self-signed and CA ClusterIssuers, named for this module and removed after it."""
    sfx = uuid.uuid4().hex[:6]
    names = dict(cert_manager_selfsigned_issuer_name="t-selfsigned-" + sfx, cert_manager_ca_issuer_name="t-ca-" + sfx,
                 cert_manager_ca_secret_name="t-ca-" + sfx, cert_manager_ca_common_name="nimguard test CA " + sfx)
    yield names
    cm.kubectl("delete", "clusterissuer", names["cert_manager_selfsigned_issuer_name"],
               names["cert_manager_ca_issuer_name"], "--ignore-not-found", "--wait=false", check=False)
    cm.kubectl("delete", "certificate,secret", names["cert_manager_ca_secret_name"], "-n", CM_NS,
               "--ignore-not-found", "--wait=false", check=False)


def role(**variables):
    base = dict(cert_manager_install_method="none", cert_manager_wait_timeout=90)
    base.update(variables)
    return {"ansible.builtin.include_role": {"name": ROLE}, "vars": base}


def real_writes(cluster, mark):
    """Writes by the test's identity that were not dry runs, as "VERB URI" lines (readable in a failure)."""
    return ["%s %s" % (e["verb"], e["requestURI"]) for e in writes(cluster, mark)
            if "dryRun=All" not in e.get("requestURI", "") and e["user"]["username"] != "kwok"]  # KWOK: node heartbeats


def ready(cluster, kind, name, ns=None):
    obj = cluster.get_json(kind, name, *(["-n", ns] if ns else []))
    return [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"]


def wait_ready(cluster, kind, name, ns=None, timeout=90):
    """Bounded wait for the controller (asynchronous by nature); fails with the last condition seen."""
    deadline = time.monotonic() + timeout
    while True:
        found = cluster.kubectl("get", kind, name, *(["-n", ns] if ns else []), check=False).returncode == 0
        conds = ready(cluster, kind, name, ns) if found else []
        if conds and conds[0]["status"] == "True":
            return
        assert time.monotonic() < deadline, "%s %s not Ready: %s" % (kind, name, conds or "not found")
        time.sleep(0.5)


def make_certificate(cluster, ns, name, issuer):
    """A Certificate made by someone else (kubectl): Secret NAME-tls for NAME.nim.test."""
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": name},
        "spec": {"secretName": name + "-tls", "dnsNames": [name + ".nim.test"],
                 "issuerRef": {"kind": "ClusterIssuer", "name": issuer}}}))


def tls_secret(cluster, ns, name):
    data = cluster.get_json("secret", name, "-n", ns)["data"]
    return dict((k, base64.b64decode(v)) for k, v in data.items())


def verify_signed_by(cert, issuer):
    """Raises unless issuer's key signed cert (the cryptography package checks the signature)."""
    assert cert.issuer == issuer.subject
    key = issuer.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    else:
        key.verify(cert.signature, cert.tbs_certificate_bytes)


def ca_cert(cluster, issuers):
    return x509.load_pem_x509_certificate(tls_secret(cluster, CM_NS, issuers["cert_manager_ca_secret_name"])["tls.crt"])


def dns_names(cert):
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


# ---------------------------------------------------------------------------------------------


def test_role_check_mode_then_issuers_ready_then_idempotent(cm, issuers):
    # Check mode first, on a cluster without these issuers: it predicts and writes nothing.
    mark = cm.audit_mark()
    check = run_play(cm, [role(**issuers)], check=True)
    assert recap(check.proc)["failed"] == 0, check
    assert real_writes(cm, mark) == []
    assert cm.kubectl("get", "clusterissuer", issuers["cert_manager_ca_issuer_name"], check=False).returncode != 0
    assert "changed=" in check.output and recap(check.proc)["changed"] >= 3, check  # 2 issuers + CA certificate

    play = run_play(cm, [role(**issuers)])
    assert recap(play.proc)["failed"] == 0, play
    for name in (issuers["cert_manager_selfsigned_issuer_name"], issuers["cert_manager_ca_issuer_name"]):
        assert ready(cm, "clusterissuer", name)[0]["status"] == "True"
    ca = ca_cert(cm, issuers)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.subject == ca.issuer  # self-signed: the root of the CA issuer's chain

    mark = cm.audit_mark()
    again = run_play(cm, [role(**issuers)])
    assert recap(again.proc)["failed"] == 0 and recap(again.proc)["changed"] == 0, again
    assert real_writes(cm, mark) == []


def test_a_change_that_breaks_an_issuer_fails_the_run(cm, issuers):
    """The Ready the issuer had before the change must not pass the wait: the run waits for the controller's
    verdict on the new generation and fails with its reason."""
    name = "t-ca-broken-" + uuid.uuid4().hex[:6]
    task = {"nimguard.k8s.nim_apply": {"definition": {
        "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": name},
        "spec": {"ca": {"secretName": issuers["cert_manager_ca_secret_name"]}}}, "wait": True, "wait_timeout": 15}}
    try:
        assert recap(run_play(cm, [role(**issuers)]).proc)["failed"] == 0  # the CA's Secret
        ok = run_play(cm, [task])
        assert not ok[0].get("failed"), ok
        task["nimguard.k8s.nim_apply"]["definition"]["spec"]["ca"]["secretName"] = "no-such-secret"
        broken = run_play(cm, [task])
        assert broken[0].get("failed"), broken
        assert "did not reach Ready=True" in broken[0]["msg"] and "no-such-secret" in broken[0]["msg"], broken
    finally:
        cm.kubectl("delete", "clusterissuer", name, "--ignore-not-found", "--wait=false", check=False)


def test_certificate_from_ca_issuer_signed_by_the_ca(cm, issuers, namespace):
    run = run_play(cm, [role(**issuers)])
    assert recap(run.proc)["failed"] == 0, run
    play = run_play(cm, [{"nimguard.k8s.nim_apply": {"definition": {
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "api", "namespace": namespace},
        "spec": {"secretName": "api-tls", "dnsNames": ["api.nim.test"],
                 "issuerRef": {"kind": "ClusterIssuer", "name": issuers["cert_manager_ca_issuer_name"]}}},
        "wait": True, "wait_timeout": 90}}])
    assert not play[0].get("failed"), play
    secret = tls_secret(cm, namespace, "api-tls")
    leaf = x509.load_pem_x509_certificate(secret["tls.crt"])
    verify_signed_by(leaf, ca_cert(cm, issuers))
    assert dns_names(leaf) == ["api.nim.test"]
    assert secret["ca.crt"] == tls_secret(cm, CM_NS, issuers["cert_manager_ca_secret_name"])["tls.crt"]


def test_nim_service_ingress_gets_certificate_through_ingress_shim(cm, issuers, namespace):
    run = run_play(cm, [role(**issuers)])
    assert recap(run.proc)["failed"] == 0, run
    cm.kubectl("create", "secret", "generic", "ngc-api-secret", "-n", namespace, "--from-literal=NGC_API_KEY=unused")
    ingress = {"enabled": True, "host": "llama.nim.test", "class_name": "nginx",
               "annotations": {"cert-manager.io/cluster-issuer": issuers["cert_manager_ca_issuer_name"]}}
    play = run_play(cm, [{"nimguard.k8s.nim_service": {
        "name": "llama", "namespace": namespace, "auth_secret": "ngc-api-secret", "image": IMAGE,
        "expose": {"ingress": ingress}}}])
    assert not play[0].get("failed"), play
    tls = cm.get_json("ingress", "llama", "-n", namespace)["spec"]["tls"]
    assert tls == [{"hosts": ["llama.nim.test"], "secretName": "llama-tls"}]
    # The ingress-shim (not the collection) makes the Certificate, owned by the Ingress.
    wait_ready(cm, "certificate", "llama-tls", namespace)
    owners = cm.get_json("certificate", "llama-tls", "-n", namespace)["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"]) for o in owners] == [("Ingress", "llama")]
    leaf = x509.load_pem_x509_certificate(tls_secret(cm, namespace, "llama-tls")["tls.crt"])
    verify_signed_by(leaf, ca_cert(cm, issuers))
    assert dns_names(leaf) == ["llama.nim.test"]


def test_site_playbook_issuers_and_annotated_service(cm, issuers):
    """The site run as the local inventory does it: cert-manager `none`, the CA issuer, a service naming it."""
    ns = "t-site-" + uuid.uuid4().hex[:6]
    ingress = {"enabled": True, "host": "demo.nim.test", "class_name": "nginx",
               "annotations": {"cert-manager.io/cluster-issuer": issuers["cert_manager_ca_issuer_name"]}}
    group_vars = dict(issuers, nimguard_cert_manager=True, cert_manager_install_method="none",
                      nim_rollout_namespace=ns, nim_rollout_ngc_api_key="nvapi-test-" + uuid.uuid4().hex,
                      nim_rollout_services=[{"name": "demo", "image": IMAGE, "expose": {"ingress": ingress}}])
    try:
        run_playbook(cm, "site.yml", group_vars, expect_rc=0)
        wait_ready(cm, "certificate", "demo-tls", ns)
        verify_signed_by(x509.load_pem_x509_certificate(tls_secret(cm, ns, "demo-tls")["tls.crt"]), ca_cert(cm, issuers))
        again = run_playbook(cm, "site.yml", group_vars, expect_rc=0)
        assert recap(again)["changed"] == 0, again.output[-3000:]
    finally:
        cm.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _pebble_root(cluster):
    ctx = ssl.create_default_context(cafile=cluster.env["NIMGUARD_PEBBLE_CA"])
    url = cluster.env["NIMGUARD_PEBBLE_MANAGEMENT_URL"] + "/roots/0"
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
        return x509.load_pem_x509_certificate(resp.read())


def test_acme_issuer_gets_account_and_certificate_from_pebble(cm, namespace):
    name = "t-acme-" + uuid.uuid4().hex[:6]
    with open(cm.env["NIMGUARD_PEBBLE_CA"]) as f:
        ca_bundle = f.read()
    acme = dict(cert_manager_selfsigned_issuer=False, cert_manager_ca_issuer=False, cert_manager_acme_issuer=True,
                cert_manager_acme_issuer_name=name, cert_manager_acme_server=cm.env["NIMGUARD_PEBBLE_URL"],
                cert_manager_acme_email="nim-admin@nimguard.test", cert_manager_acme_ca_bundle=ca_bundle,
                # cert-manager v1.11 has no ingressClassName in the http01 solver yet
                cert_manager_acme_ingress_class_field="class")
    try:
        play = run_play(cm, [role(**acme)])
        assert recap(play.proc)["failed"] == 0, play
        issuer = cm.get_json("clusterissuer", name)
        assert issuer["status"]["acme"]["uri"].startswith(cm.env["NIMGUARD_PEBBLE_URL"].rsplit("/", 1)[0])
        assert issuer["spec"]["acme"]["solvers"] == [{"http01": {"ingress": {"class": "nginx"}}}]
        assert cm.kubectl("get", "secret", name + "-account-key", "-n", CM_NS, check=False).returncode == 0

        # A certificate through the http01 solver: pebble validates nothing (PEBBLE_VA_ALWAYS_VALID) and the
        # add-on's proxy answers cert-manager's self-check, standing in for an ingress controller.
        mark = cm.audit_mark()
        make_certificate(cm, namespace, "acme", name)
        wait_ready(cm, "certificate", "acme", namespace, timeout=120)
        chain = x509.load_pem_x509_certificates(tls_secret(cm, namespace, "acme-tls")["tls.crt"])
        assert dns_names(chain[0]) == ["acme.nim.test"]
        verify_signed_by(chain[0], chain[1])
        verify_signed_by(chain[-1], _pebble_root(cm))
        # It went the http01 way: the controller made the solver's Pod and Ingress (of the issuer's class).
        events = cm.audit_events(mark, verbs={"create"}, namespace=namespace, user="system:cert-manager")
        made = set(e["objectRef"]["resource"] for e in events)
        assert {"challenges", "pods", "ingresses"} <= made, made

        again = run_play(cm, [role(**acme)])
        assert recap(again.proc)["changed"] == 0 and recap(again.proc)["failed"] == 0, again
    finally:
        cm.kubectl("delete", "clusterissuer", name, "--ignore-not-found", "--wait=false", check=False)
        cm.kubectl("delete", "secret", name + "-account-key", "-n", CM_NS, "--ignore-not-found", check=False)


def test_acme_issuer_needs_an_email(cm):
    group_vars = dict(nimguard_cert_manager=True, nimguard_nim_rollout=False, cert_manager_install_method="none",
                      cert_manager_selfsigned_issuer=False, cert_manager_ca_issuer=False, cert_manager_acme_issuer=True)
    mark = cm.audit_mark()
    proc = run_playbook(cm, "site.yml", group_vars, expect_rc=2)
    assert "The ACME issuer needs cert_manager_acme_email" in proc.output
    assert real_writes(cm, mark) == []


def _stub_release(ns, version):
    """What the role reads of a release: the chart's controller and webhook Deployments (the pods only look
    Running on KWOK nodes; the real controller is the add-on's)."""
    def deployment(name, app, component):
        labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/component": component,
                  "app.kubernetes.io/version": version}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns,
                                                                            "labels": labels},
                "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": app}},
                         "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                             {"name": component, "image": "quay.io/jetstack/cert-manager-%s:%s" % (component, version)}]}}}}
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            deployment("cert-manager", "cert-manager", "controller"),
            deployment("cert-manager-webhook", "webhook", "webhook")]


def test_manifest_install_waits_for_webhook_and_is_skipped_at_that_version(cm, tmp_path):
    import yaml
    ns = "t-cmi-" + uuid.uuid4().hex[:6]
    src = tmp_path / "cert-manager.yaml"
    src.write_text(yaml.safe_dump_all(_stub_release(ns, "v9.9.1")))
    install = role(cert_manager_install_method="manifest", cert_manager_manifest_src=str(src),
                   cert_manager_namespace=ns, cert_manager_version="v9.9.1", cert_manager_selfsigned_issuer=False,
                   cert_manager_ca_issuer=False)
    try:
        mark = cm.audit_mark()
        check = run_play(cm, [install], check=True)
        assert recap(check.proc)["failed"] == 0 and recap(check.proc)["changed"] == 1, check
        assert real_writes(cm, mark) == []

        play = run_play(cm, [install])
        assert recap(play.proc)["failed"] == 0 and recap(play.proc)["changed"] == 1, play
        # The role waited for the webhook (nim_info returns only once it is Available).
        waited = play.output.split("Wait for the cert-manager webhook Deployment to be available]")[1]
        assert waited.split("\n", 2)[1].startswith("ok: [localhost]"), play

        # Installed at that version: the manifest is not even read (a missing file would fail otherwise).
        mark = cm.audit_mark()
        skipped = run_play(cm, [dict(install, vars=dict(install["vars"], cert_manager_manifest_src="/nonexistent"))])
        assert recap(skipped.proc)["failed"] == 0 and recap(skipped.proc)["changed"] == 0, skipped
        assert real_writes(cm, mark) == []

        # A new version is applied again (check mode predicts it).
        src.write_text(yaml.safe_dump_all(_stub_release(ns, "v9.9.2")))
        upgrade = run_play(cm, [dict(install, vars=dict(install["vars"], cert_manager_version="v9.9.2"))], check=True)
        assert recap(upgrade.proc)["changed"] == 1, upgrade
    finally:
        cm.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_doctor_reports_a_certificate_that_is_not_ready(cm, namespace):
    make_certificate(cm, namespace, "broken", "no-such-issuer")
    # The controller marks it not Ready (it cannot issue without the issuer).
    deadline = time.monotonic() + 60
    while not ready(cm, "certificate", "broken", namespace):
        assert time.monotonic() < deadline, "cert-manager never set a Ready condition"
        time.sleep(0.5)
    play = run_play(cm, [{"nimguard.k8s.nim_doctor": {"namespace": namespace, "checks": ["certificates"],
                                                      "fail_on": "never"}}])
    findings = [f for f in play[0]["findings"] if f["check"] == "certificates"]
    assert len(findings) == 1, play
    cond = ready(cm, "certificate", "broken", namespace)[0]
    assert cond["status"] == "False"
    assert "Certificate %s/broken is not ready" % namespace in findings[0]["message"]
    assert cond["reason"] in findings[0]["message"] and cond["message"] in findings[0]["message"]
    # The first broken link of its cause chain, and that link's fix (issue 18 item 6).
    assert "cause: its ClusterIssuer no-such-issuer does not exist" in findings[0]["message"], findings[0]
    assert "spec.issuerRef" in findings[0]["fix"]
