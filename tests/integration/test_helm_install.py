"""The cert_manager role's helm install (cert_manager_install_method: helm) for real: helm 3 built from the Go
module proxy and cert-manager's own chart from its Go module (scripts/lib/build.sh build_helm), installed as a
local chart (cert_manager_helm_repo_url "", the air-gapped way) on a local cluster of its own.

Its own cluster, without add-ons: the chart's ValidatingWebhookConfiguration sends every cert-manager object to a
webhook whose pods only look Ready on KWOK nodes, so on the shared cluster it would reject the other tests'
issuers and Certificates. Nothing of the chart runs; the test checks the release, the Deployments the role reads
(labels, version), the role's wait (KWOK makes the pods Ready, the Deployments Available) and a rerun that
installs nothing."""

import json
import os
import socket
import subprocess
import uuid

import pytest

from conftest import CLUSTER, ROOT, Cluster
from playbook import recap, run_play, run_playbook, writes

ROLE = "nimguard.k8s.cert_manager"
# A release name without "cert-manager": the chart then names its objects RELEASE-cert-manager(-webhook, ...), which
# the role must follow to find the webhook it waits for.
RELEASE = "nimguard-cm"
NS = "t-helm-cm"
CRDS = ["certificates.cert-manager.io", "certificaterequests.cert-manager.io", "issuers.cert-manager.io",
        "clusterissuers.cert-manager.io", "orders.acme.cert-manager.io", "challenges.acme.cert-manager.io"]


@pytest.fixture(scope="module")
def helm_tools():
    """(helm binary, chart folder, chart version), built or found in $CACHE/bin by the scripts' own step."""
    script = ('source scripts/lib/common.sh && source scripts/lib/build.sh && build_helm >&2 && '
              'echo "$HELM_BIN/helm" && echo "$CERTMANAGER_CHART" && echo "$CERTMANAGER_VERSION"')
    try:
        proc = subprocess.run(["bash", "-c", script], cwd=str(ROOT), capture_output=True, text=True, timeout=1200,
                              check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("helm or the cert-manager chart could not be prepared: scripts/lib/build.sh build_helm ran for "
                    "more than 20 minutes")
    if proc.returncode != 0:
        pytest.skip("helm or the cert-manager chart could not be prepared (scripts/lib/build.sh build_helm):\n"
                    + proc.stderr[-2000:])
    helm, chart, version = proc.stdout.split()
    return helm, chart, version


def _bindable(*ports):
    socks = []
    try:
        for port in ports:
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def _free_ports():
    """An API server port and an etcd port with the next two free as well (etcd's peer and metrics ports)."""
    found = []
    while len(found) < 2:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port + 2 < 65536 and port not in found and _bindable(port, port + 1, port + 2):
            found.append(port)
    return found


@pytest.fixture(scope="module")
def own_cluster(helm_tools, tmp_path_factory):
    """A second local cluster: its own state folder and ports, no add-ons; stopped at the end."""
    api_port, etcd_port = _free_ports()
    extra = {"NIMGUARD_STATE": str(tmp_path_factory.mktemp("helm-cluster")), "NIMGUARD_API_PORT": str(api_port),
             "NIMGUARD_ETCD_PORT": str(etcd_port), "NIMGUARD_ADDONS": ""}
    env = dict(os.environ, **extra)
    try:
        up = subprocess.run([CLUSTER, "up"], env=env, capture_output=True, text=True, timeout=1800, check=False)
        assert up.returncode == 0, "scripts/cluster up (%s) failed:\n%s" % (extra, up.stderr[-4000:])
        cluster = Cluster(extra)
        cluster.env["PATH"] = os.path.dirname(helm_tools[0]) + os.pathsep + cluster.env["PATH"]
        yield cluster
    finally:
        down = subprocess.run([CLUSTER, "down"], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert down.returncode == 0, "scripts/cluster down (%s) failed:\n%s" % (extra, down.stderr[-2000:])


def role(chart, version):
    return {"ansible.builtin.include_role": {"name": ROLE}, "vars": dict(
        cert_manager_install_method="helm", cert_manager_version=version,
        cert_manager_helm_chart_ref=chart, cert_manager_helm_repo_url="",
        cert_manager_helm_release_name=RELEASE, cert_manager_namespace=NS,
        # v1.11 charts install the CRDs with installCRDs (crds.enabled, the role's default value, came in v1.15).
        cert_manager_helm_values={"installCRDs": True},
        # No issuers: no cert-manager controller runs here to make them Ready (and the webhook would refuse them).
        cert_manager_selfsigned_issuer=False, cert_manager_ca_issuer=False,
        cert_manager_wait_timeout=120)}


def helm_releases(cluster, helm):
    proc = subprocess.run([helm, "list", "-n", NS, "-o", "json"], env=cluster.env, capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(proc.stdout)


def real_writes(cluster, mark):
    return ["%s %s" % (e["verb"], e["requestURI"]) for e in writes(cluster, mark)
            if "dryRun=All" not in e.get("requestURI", "")]


def task_line(play, name):
    """The line after a task's banner: its status (ok:, changed:, skipping:)."""
    parts = play.output.split(name + "]")
    assert len(parts) > 1, "task %r did not run:\n%s" % (name, play.output[-4000:])
    return parts[1].split("\n", 2)[1]


def test_helm_install_from_a_local_chart_waits_and_is_skipped_at_that_version(own_cluster, helm_tools):
    helm, chart, version = helm_tools
    cluster = own_cluster
    install = role(chart, version)

    # Check mode predicts the install and writes nothing.
    mark = cluster.audit_mark()
    check = run_play(cluster, [install], check=True)
    assert recap(check.proc)["failed"] == 0 and recap(check.proc)["changed"] >= 1, check
    assert real_writes(cluster, mark) == []
    assert helm_releases(cluster, helm) == []

    play = run_play(cluster, [install])
    assert recap(play.proc)["failed"] == 0, play
    assert task_line(play, "Install cert-manager with Helm | %s" % version).startswith("changed:"), play
    # The role's wait passed: nim_info returns once the webhook Deployment is Available.
    assert task_line(play, "Wait for the cert-manager webhook Deployment to be available").startswith("ok:"), play

    [release] = helm_releases(cluster, helm)
    assert (release["name"], release["status"], release["chart"], release["app_version"], release["revision"]) == (
        RELEASE, "deployed", "cert-manager-" + version, version, "1"), release

    deployments = cluster.get_json("deployments", "-n", NS, "-l", "app.kubernetes.io/instance=" + RELEASE)["items"]
    by_name = dict((d["metadata"]["name"], d) for d in deployments)
    assert sorted(by_name) == sorted(RELEASE + "-cert-manager" + s for s in ("", "-cainjector", "-webhook")), by_name
    for name, d in by_name.items():
        labels = d["metadata"]["labels"]
        assert labels["app.kubernetes.io/version"] == version, (name, labels)
        assert labels["app.kubernetes.io/managed-by"] == "Helm" and labels["helm.sh/chart"] == "cert-manager-" + version
        available = [c for c in d["status"].get("conditions", []) if c["type"] == "Available"]
        assert available and available[0]["status"] == "True", (name, d["status"])
        assert d["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":" + version), name
    assert by_name[RELEASE + "-cert-manager"]["metadata"]["labels"]["app.kubernetes.io/component"] == "controller"
    for crd in CRDS:
        conds = cluster.get_json("crd", crd)["status"]["conditions"]
        assert [c["status"] for c in conds if c["type"] == "Established"] == ["True"], crd

    # Installed at that version: nothing is installed again, nothing is written, the release stays at revision 1.
    mark = cluster.audit_mark()
    again = run_play(cluster, [install])
    assert recap(again.proc)["failed"] == 0 and recap(again.proc)["changed"] == 0, again
    assert "Install cert-manager with Helm | %s]" % version not in again.output, again
    assert real_writes(cluster, mark) == []
    assert helm_releases(cluster, helm)[0]["revision"] == "1"


def test_a_missing_helm_is_explained(own_cluster, helm_tools):
    """Without helm where the task runs, the site run stops before any write, naming the fix."""
    cluster = own_cluster
    path = os.pathsep.join(p for p in cluster.env["PATH"].split(os.pathsep)
                           if not os.path.exists(os.path.join(p, "helm")))
    group_vars = dict(role(helm_tools[1], "v0.0.1-" + uuid.uuid4().hex[:6])["vars"], nimguard_cert_manager=True,
                      nimguard_nim_rollout=False)
    mark = cluster.audit_mark()
    proc = run_playbook(cluster, "site.yml", group_vars, env={"PATH": path}, expect_rc=2)
    assert "cert_manager_install_method is helm but helm does not run where this task runs" in proc.output
    assert "Fix: install helm 3, or set cert_manager_install_method: manifest." in proc.output
    assert real_writes(cluster, mark) == []
