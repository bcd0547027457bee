"""The image scan gate with the real Trivy binary (scripts/cluster build makes it).

What runs here: Trivy's secret scanner on a folder and on an OCI image archive with planted keys, and
`trivy config` on rendered manifests; their JSON reports go through nim_image_scan and through the
nim_rollout role, which must stop before any write. Trivy's vulnerability database cannot be downloaded on
these machines, so vulnerability findings are covered by the schema fixtures of
tests/unit/plugins/module_utils/test_scan.py."""

import datetime
import json
import os
import subprocess
import sys
import tarfile

import pytest
import yaml

from ansible_collections.nimguard.k8s.plugins.module_utils import render
from playbook import recap, run_play, run_playbook, writes
from test_static_checks import service_params, tool_path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3"
TODAY = datetime.date.today()


def trivy_bin():
    return tool_path("TRIVY_BIN", "/trivy", "trivy")


TRIVY_OFFLINE = ["--quiet", "--skip-db-update", "--skip-java-db-update", "--skip-check-update", "--offline-scan",
                 "--skip-version-check", "--disable-telemetry"]


def trivy(args, cache):
    offline = TRIVY_OFFLINE
    if args[0] == "config":  # no vulnerability database, no offline switch
        offline = [a for a in TRIVY_OFFLINE if "-db-" not in a and a != "--offline-scan"]
    cmd = [trivy_bin()] + args[:1] + offline + ["--cache-dir", str(cache)] + args[1:]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def planted_rootfs(path):
    """A folder like an image's root filesystem with two leaked credentials: an RSA private key (HIGH) and
    an AWS access key pair (CRITICAL)."""
    key = subprocess.run(["openssl", "genrsa", "2048"], capture_output=True, text=True, check=True).stdout
    (path / "opt" / "app").mkdir(parents=True)
    (path / "opt" / "app" / "server.key").write_text(key)
    (path / "opt" / "app" / "aws.env").write_text(
        "AWS_ACCESS_KEY_ID=AKIA" + "Z7Q4XJ2KMN3PLR5W\nAWS_SECRET_ACCESS_KEY=" + "q8Vw3kT9zX2mN7bR5yL1cJ4hF6gD0sA3eU8iO2pK" + "\n")
    return key


@pytest.fixture(scope="module")
def secret_report(tmp_path_factory):
    base = tmp_path_factory.mktemp("trivy-secret")
    rootfs = base / "rootfs"
    key = planted_rootfs(rootfs)
    out = base / "report.json"
    trivy(["fs", "--scanners", "secret", "--format", "json", "--output", str(out), str(rootfs)], base / "cache")
    return out, key


def scan_task(**args):
    return {"nimguard.k8s.nim_image_scan": dict(images=[IMAGE], **args)}


def test_trivy_secret_report_blocks_and_names_each_finding_without_the_secret(cluster, secret_report):
    report, key = secret_report
    found = json.load(open(report))
    rules = sorted(s["RuleID"] for r in found["Results"] for s in r.get("Secrets") or [])
    assert "private-key" in rules and "aws-access-key-id" in rules, rules
    play = run_play(cluster, [scan_task(reports={IMAGE: str(report)}, severity="HIGH")], verbosity=3)
    r = play[0]
    assert r.get("failed") is True and r["passed"] is False, r
    for rule in ("private-key", "aws-access-key-id"):
        assert rule in r["msg"]
    assert "server.key" in r["msg"] and "HIGH" in r["msg"] and "CRITICAL" in r["msg"]
    assert "cannot be tied to the image" in play.output  # a filesystem report, not an image's
    body = key.splitlines()[1]
    for text in (play.output, json.dumps(play.results)):
        assert body not in text and "q8Vw3kT9zX2mN7bR5yL1cJ4hF6gD0sA3eU8iO2pK" not in text


def test_default_severity_critical_and_allow_list_with_expiry(cluster, secret_report):
    report = secret_report[0]
    tomorrow, yesterday = (TODAY + datetime.timedelta(days=1)).isoformat(), (TODAY - datetime.timedelta(days=1)).isoformat()
    key_id = {"id": "aws-access-key-id", "reason": "test fixture credential, revoked", "expires": tomorrow}
    secret = {"id": "aws-secret-access-key", "reason": "the same revoked pair", "package": "opt/app/aws.env"}
    play = run_play(cluster, [
        scan_task(reports={IMAGE: str(report)}),
        scan_task(reports={IMAGE: str(report)}, allow_list=[key_id, dict(secret, expires=tomorrow)]),
        scan_task(reports={IMAGE: str(report)}, allow_list=[key_id, dict(secret, expires=yesterday)]),
        scan_task(reports={IMAGE: str(report)}, severity="HIGH", allow_list=[key_id, dict(secret, expires=tomorrow)]),
    ])
    blocked, allowed, expired, high = play.results
    assert blocked.get("failed") and "aws-access-key-id" in blocked["msg"] and "private-key" not in blocked["msg"]
    assert "aws-secret-access-key secret opt/app/aws.env:2 CRITICAL" in blocked["msg"], blocked["msg"]
    assert not allowed.get("failed"), allowed
    assert allowed["images"][0]["allowed"][0]["reason"] == "test fixture credential, revoked"
    assert any("allowed until %s" % tomorrow in w for w in allowed["warnings"])
    assert expired.get("failed") and "allow-list entry expired on %s" % yesterday in expired["msg"], expired
    assert "the same revoked pair" in expired["msg"] and "aws-access-key-id" not in expired["msg"]
    assert high.get("failed") and "private-key" in high["msg"] and "aws-access-key-id" not in high["msg"]


def test_trivy_config_report_of_a_weakened_manifest_blocks(cluster, tmp_path):
    """trivy config's Misconfigurations class through the gate: a Deployment rendered with a writable root
    filesystem (read_only_root_filesystem: false) is reported, and blocks at HIGH."""
    objs = render.render_service(service_params(read_only_root_filesystem=False))
    (tmp_path / "m").mkdir()
    with open(tmp_path / "m" / "llama.yaml", "w") as f:
        yaml.safe_dump_all(objs, f)
    out = tmp_path / "config.json"
    trivy(["config", "--format", "json", "--output", str(out), str(tmp_path / "m")], tmp_path / "cache")
    play = run_play(cluster, [scan_task(reports={IMAGE: str(out)}, severity="HIGH")])
    assert play[0].get("failed") and "KSV-0014" in play[0]["msg"], play[0]


def test_trivy_binary_run_by_the_module_on_an_image_archive(cluster, tmp_path):
    """The module's own Trivy run (no report): an OCI archive made from the planted folder, scanned with
    `trivy image --input` (an image exported for an air-gapped site)."""
    planted_rootfs(tmp_path / "rootfs")
    archive = tmp_path / "image.tar"
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "localcluster", "testimages", "mkimage.py"),
                    "--rootfs", str(tmp_path / "rootfs"), "--ref", "docker.io/local/planted:1",
                    "--out", str(archive)], check=True, capture_output=True)
    layout = tmp_path / "oci"  # Trivy reads an OCI layout as a folder, a docker-archive as a tar
    layout.mkdir()
    tarfile.open(archive).extractall(layout)
    args = TRIVY_OFFLINE + ["--cache-dir", str(tmp_path / "cache"), "--input", str(layout)]
    play = run_play(cluster, [
        {"nimguard.k8s.nim_image_scan": {"images": ["docker.io/local/planted:1"], "trivy": trivy_bin(),
                                         "trivy_args": args, "scanners": ["secret"]}},
        {"nimguard.k8s.nim_image_scan": {"images": ["docker.io/local/planted:1"], "trivy": "no-such-trivy-here"}},
    ])
    ran, missing = play.results
    assert ran.get("failed") and ran["images"][0]["source"] == "trivy", ran
    assert "aws-access-key-id" in ran["msg"]
    assert missing.get("failed") and "no report and no scanner" in missing["msg"], missing


def service(name):
    return {"name": name, "image": {"repository": IMAGE.rsplit(":", 1)[0], "tag": IMAGE.rsplit(":", 1)[1]},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}}


def site_vars(ns, scan):
    return {"nim_rollout_namespace": ns, "nim_rollout_ngc_api_key": "nvapi-scan-test-not-a-key",
            "nim_rollout_services": [service("scanned")], "nim_rollout_wait_timeout": 120,
            "nim_rollout_image_scan": scan}


def test_rollout_stops_before_any_write(cluster, namespace, secret_report):
    report = secret_report[0]
    ns = namespace
    cases = [
        ({"reports": {IMAGE: str(report)}}, "aws-access-key-id"),
        ({"trivy": "no-such-trivy-here"}, "no report and no scanner"),
        ({"enabled": False}, "disabled_reason is empty"),
    ]
    for scan, needle in cases:
        mark = cluster.audit_mark()
        proc = run_playbook(cluster, "site.yml", site_vars(ns, scan))
        assert proc.returncode != 0 and needle in proc.output, proc.output[-4000:]
        assert writes(cluster, mark) == [], "the gate let a write through (%s)" % scan


def test_rollout_with_a_clean_report_or_a_reason_proceeds(cluster, namespace, tmp_path):
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps({"SchemaVersion": 2, "ArtifactName": IMAGE, "ArtifactType": "container_image",
                                 "Results": [{"Target": IMAGE, "Class": "os-pkgs", "Vulnerabilities": []}]}))
    proc = run_playbook(cluster, "site.yml", site_vars(namespace, {"reports": {IMAGE: str(clean)}}), expect_rc=0)
    assert "Scan every image" in proc.output
    off = run_playbook(cluster, "site.yml", site_vars(namespace, {
        "enabled": False, "disabled_reason": "scanned by the release pipeline"}), expect_rc=0)
    assert "Image scan skipped: scanned by the release pipeline" in off.output


def test_rollout_runs_the_digest_the_report_scanned(cluster, namespace, tmp_path):
    """Issue 19 item 11 through the role: the report says which digest its tag named when CI scanned it
    (Metadata.RepoDigests); the pods run that digest, not the tag (which may have moved since), and a rerun
    changes nothing. deploy_by_digest: false is the way back to the tag."""
    digest = "sha256:" + "5" * 64
    repo = IMAGE.rsplit(":", 1)[0]
    report = tmp_path / "pinned.json"
    report.write_text(json.dumps({"SchemaVersion": 2, "ArtifactName": IMAGE, "ArtifactType": "container_image",
                                  "Metadata": {"RepoDigests": ["%s@%s" % (repo, digest)]},
                                  "Results": [{"Target": IMAGE, "Class": "os-pkgs", "Vulnerabilities": []}]}))
    scan = {"reports": {IMAGE: str(report)}}
    run_playbook(cluster, "site.yml", site_vars(namespace, scan), expect_rc=0)
    image = cluster.get_json("deployment", "scanned", "-n", namespace)["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == "%s@%s" % (repo, digest)
    again = run_playbook(cluster, "site.yml", site_vars(namespace, scan), expect_rc=0)
    assert recap(again)["changed"] == 0, again.output[-3000:]
    run_playbook(cluster, "site.yml", site_vars(namespace, dict(scan, deploy_by_digest=False)), expect_rc=0)
    image = cluster.get_json("deployment", "scanned", "-n", namespace)["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == IMAGE
