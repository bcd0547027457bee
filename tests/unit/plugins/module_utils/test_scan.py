"""The image scanning gate's decisions, without Trivy: severity threshold, allow-list reasons and expiry,
report matching, the three result classes, and what happens with no scanner at all.

The vulnerability reports here are fixtures written to Trivy's JSON schema (version 2): Trivy's
vulnerability database cannot be downloaded on the machines these tests run on. Reports that Trivy itself
produced (secret and misconfiguration scans) are fed to the gate in tests/integration/test_image_scan.py."""

import datetime
import json

import pytest

from ansible_collections.nimguard.k8s.plugins.module_utils import scan
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError

IMAGE = "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3"
TODAY = datetime.date(2026, 11, 24)


def vuln(vid, pkg, severity, fixed="", title="t"):
    return {"VulnerabilityID": vid, "PkgName": pkg, "InstalledVersion": "1.0", "FixedVersion": fixed,
            "Severity": severity, "Title": title}


def report(vulns=(), misconfigs=(), secrets=(), name=IMAGE, kind="container_image"):
    return {"SchemaVersion": 2, "CreatedAt": "2026-11-24T10:00:00Z", "ArtifactName": name, "ArtifactType": kind,
            "Results": [
                {"Target": "%s (ubuntu 22.04)" % name, "Class": "os-pkgs", "Type": "ubuntu",
                 "Vulnerabilities": list(vulns)},
                {"Target": "deploy.yaml", "Class": "config", "Type": "kubernetes", "Misconfigurations": list(misconfigs)},
                {"Target": "/opt/app/key.pem", "Class": "secret", "Secrets": list(secrets)}]}


SECRET_FINDING = {"RuleID": "private-key", "Category": "AsymmetricPrivateKey", "Severity": "HIGH",
                  "Title": "Asymmetric Private Key", "StartLine": 1, "EndLine": 1,
                  "Match": "-----BEGIN RSA PRIVATE KEY-----*****PLANTEDSECRET*****",
                  "Code": {"Lines": [{"Content": "PLANTEDSECRET"}]}}
MISCONFIG_FAIL = {"ID": "KSV-0014", "AVDID": "AVD-KSV-0014", "Title": "Root file system is not read-only",
                  "Severity": "HIGH", "Status": "FAIL", "Message": "should set readOnlyRootFilesystem"}
MISCONFIG_PASS = dict(MISCONFIG_FAIL, ID="KSV-0012", AVDID="AVD-KSV-0012", Status="PASS")


def params(**kw):
    p = dict(images=[IMAGE], services=[], reports={}, trivy="trivy", trivy_args=[], scanners=["vuln", "secret"],
             severity="CRITICAL", allow_list=[], resolve_digests=True)
    p.update(kw)
    return p


def run_gate(rep, today=TODAY, **kw):
    files = {"/r.json": json.dumps(rep)}
    p = params(reports={IMAGE: "/r.json"}, **kw)
    return scan.scan_images(p, run=None, read=files.__getitem__, find_binary=lambda n: None, tmpdir="/tmp",
                            today=today)


def test_three_result_classes_become_findings_without_secret_text():
    found = scan.findings_of(report([vuln("CVE-1", "openssl", "CRITICAL")], [MISCONFIG_FAIL, MISCONFIG_PASS],
                                    [SECRET_FINDING]))
    assert [(f["kind"], f["id"], f["severity"]) for f in found] == [
        ("vulnerability", "CVE-1", "CRITICAL"), ("misconfiguration", "KSV-0014", "HIGH"),
        ("secret", "private-key", "HIGH")]
    assert found[2]["package"] == "/opt/app/key.pem:1"
    assert "PLANTEDSECRET" not in json.dumps(found)


def test_severity_threshold_blocks_at_and_above_only():
    rep = report([vuln("CVE-C", "a", "CRITICAL"), vuln("CVE-H", "b", "HIGH"), vuln("CVE-M", "c", "MEDIUM"),
                  vuln("CVE-U", "d", "weird")])
    with pytest.raises(NimError) as e:
        run_gate(rep)
    assert e.value.details["blocking"] == 1
    assert "CVE-C vulnerability a 1.0 CRITICAL" in e.value.msg and "CVE-H" not in e.value.msg
    with pytest.raises(NimError) as e:
        run_gate(rep, severity="HIGH")
    assert e.value.details["blocking"] == 2 and e.value.details["images"][0]["below_threshold"] == 2
    assert "CVE-M" not in e.value.msg
    assert run_gate(report([vuln("CVE-M", "c", "MEDIUM")]))["passed"] is True


def test_failure_names_id_package_severity_title_and_fix():
    with pytest.raises(NimError) as e:
        run_gate(report([vuln("CVE-2024-1", "openssl", "CRITICAL", fixed="3.0.9", title="Heap overflow")]))
    assert "CVE-2024-1 vulnerability openssl 1.0 CRITICAL: Heap overflow (fixed in 3.0.9)" in e.value.msg
    assert "Fix:" in e.value.msg and IMAGE in e.value.msg


def test_allow_list_entry_applies_until_its_date_inclusive_then_fails_again_saying_so():
    rep = report([vuln("CVE-1", "openssl", "CRITICAL")])
    entry = {"id": "CVE-1", "reason": "no TLS client in the server", "expires": "2026-11-24"}
    ok = run_gate(rep, allow_list=[entry])
    assert ok["passed"] and ok["images"][0]["allowed"][0]["reason"] == "no TLS client in the server"
    assert any("allowed until 2026-11-24" in w for w in ok["warnings"])
    with pytest.raises(NimError) as e:
        run_gate(rep, allow_list=[entry], today=TODAY + datetime.timedelta(days=1))
    assert "allow-list entry expired on 2026-11-24" in e.value.msg
    assert "no TLS client in the server" in e.value.msg


def test_allow_list_entry_scoped_to_package_and_image_and_date_objects():
    rep = report([vuln("CVE-1", "openssl", "CRITICAL"), vuln("CVE-1", "libssl", "CRITICAL")])
    entry = {"id": "CVE-1", "reason": "r", "expires": datetime.date(2027, 1, 1), "package": "openssl"}
    with pytest.raises(NimError) as e:
        run_gate(rep, allow_list=[entry])
    assert "libssl" in e.value.msg and "openssl" not in e.value.msg
    other_image = dict(entry, package=None, image="nvcr.io/other:1")
    with pytest.raises(NimError):
        run_gate(rep, allow_list=[other_image])
    assert run_gate(rep, allow_list=[dict(entry, package=None, image=IMAGE)])["passed"]


def test_misconfiguration_allowed_by_avd_alias_and_unused_entries_warned():
    rep = report(misconfigs=[MISCONFIG_FAIL])
    ok = run_gate(rep, severity="HIGH", allow_list=[
        {"id": "AVD-KSV-0014", "reason": "r", "expires": "2027-01-01"},
        {"id": "CVE-gone", "reason": "r", "expires": "2027-01-01"}])
    assert ok["passed"]
    assert any("allow_list[1] (CVE-gone) matched no finding" in w for w in ok["warnings"])


@pytest.mark.parametrize("entry,field", [
    ({"reason": "r", "expires": "2027-01-01"}, "allow_list[0].id"),
    ({"id": "CVE-1", "reason": " ", "expires": "2027-01-01"}, "allow_list[0].reason"),
    ({"id": "CVE-1", "reason": "r"}, "allow_list[0].expires"),
    ({"id": "CVE-1", "reason": "r", "expires": "next year"}, "allow_list[0].expires"),
    ({"id": "CVE-1", "reason": "r", "expires": "2027-02-30"}, "allow_list[0].expires"),
])
def test_allow_list_entries_need_id_reason_and_a_real_date(entry, field):
    with pytest.raises(NimError) as e:
        scan.check_allow_list([entry])
    assert e.value.msg.startswith(field) and "Fix" in e.value.msg


def test_report_of_another_image_is_refused():
    with pytest.raises(NimError) as e:
        run_gate(report(name="nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.2"))
    assert "not %s" % IMAGE in e.value.msg and "Fix" in e.value.msg


def test_report_of_a_filesystem_is_accepted_with_a_warning():
    ok = run_gate(report(name="/srv/rootfs", kind="filesystem"))
    assert ok["passed"] and any("cannot be tied to the image" in w for w in ok["warnings"])


def test_not_a_trivy_report():
    with pytest.raises(NimError) as e:
        run_gate({"foo": 1})
    assert "not a Trivy JSON report" in e.value.msg


def test_no_report_and_no_scanner_fails_with_every_way_out():
    with pytest.raises(NimError) as e:
        scan.scan_images(params(), run=None, read=None, find_binary=lambda n: None, tmpdir="/tmp")
    for fix in ("install Trivy", "reports:", "enabled: false", "disabled_reason"):
        assert fix in e.value.msg


def test_trivy_is_run_per_image_without_a_report():
    calls, files = [], {}

    def run(argv):
        calls.append(argv)
        out = argv[argv.index("--output") + 1]
        files[out] = json.dumps(report([vuln("CVE-9", "zlib", "LOW")], name=argv[-1]))
        return 0, "", ""
    resolved = {"nvcr.io/x:1": "sha256:" + "1" * 64, scan.VAULT_AGENT_IMAGE: "sha256:" + "2" * 64}
    ok = scan.scan_images(params(images=[], services=[{"name": "a", "image": {"repository": "nvcr.io/x", "tag": "1"},
                                                       "secret_delivery": {"mode": "vault_agent"}}],
                                 trivy_args=["--skip-db-update"]),
                          run=run, read=files.__getitem__, find_binary=lambda n: "/usr/bin/trivy", tmpdir="/t",
                          resolve=resolved.__getitem__)
    # each tag resolved first, then its digest scanned: a tag moved afterwards changes nothing that runs
    scanned = ["nvcr.io/x@sha256:" + "1" * 64, scan.VAULT_AGENT_IMAGE.split(":", maxsplit=1)[0] + "@sha256:" + "2" * 64]
    assert ok["passed"] and [c[-1] for c in calls] == scanned
    assert calls[0][:2] == ["/usr/bin/trivy", "image"] and "--skip-db-update" in calls[0]
    assert ok["digests"] == resolved and ok["service_digests"] == {"a": "sha256:" + "1" * 64}


def test_trivy_failure_is_reported_with_the_fix():
    with pytest.raises(NimError) as e:
        scan.scan_images(params(), run=lambda argv: (1, "", "FATAL unable to pull"), read=None,
                         find_binary=lambda n: "/bin/trivy", tmpdir="/t", resolve=lambda ref: "sha256:" + "3" * 64)
    assert "trivy exited 1: FATAL unable to pull" in e.value.msg and "Fix" in e.value.msg


def test_service_images_and_reference_normalization():
    svc = {"name": "a", "image": {"repository": "nvcr.io/x", "tag": "2"},
           "proxy": {"cert_config_map": "ca", "ca_init_image": "busybox"}}
    assert scan.service_images(svc) == ["nvcr.io/x:2", "busybox"]
    assert scan.normalize_ref("busybox") == scan.normalize_ref("docker.io/library/busybox:latest")
    assert scan.normalize_ref("r:5000/a@sha256:ab") == "r:5000/a@sha256:ab"
    assert scan.normalize_ref("r:5000/a") == "r:5000/a:latest"
    assert scan.unique_images(["busybox:latest"], [svc]) == ["busybox:latest", "nvcr.io/x:2"]
