"""The cert_manager, external_secrets and gpu_runtime roles' helm installs for real: helm 3 built from the Go module
proxy and each project's own chart from its Go module (scripts/localcluster/build.sh build_tools), installed as local
charts (helm repo URL "", the air-gapped way) on a local cluster of their own.

Its own cluster, without add-ons: the charts' ValidatingWebhookConfigurations send every cert-manager and ESO
object to webhooks whose pods only look Ready on KWOK nodes, so on the shared cluster they would reject the other
tests' issuers, Certificates and stores. Nothing of the charts runs; the tests check the releases, the
Deployments the roles wait for (names as the charts make them, labels, version), the roles' waits (KWOK makes
the pods Ready, the Deployments Available) and reruns that install nothing."""

import json
import os
import socket
import subprocess
import uuid

import pytest

from conftest import CLUSTER, Cluster, build_tools
from playbook import recap, run_play, run_playbook, writes

ROLE = "nimguard.k8s.cert_manager"
ESO_ROLE = "nimguard.k8s.external_secrets"
# A release name without "cert-manager": the chart then names its objects RELEASE-cert-manager(-webhook, ...), which
# the role must follow to find the webhook it waits for.
RELEASE = "nimguard-cm"
NS = "t-helm-cm"
# Not containing "external-secrets": the chart names its Deployments RELEASE-external-secrets(-webhook, ...), and the
# role must follow.
ESO_RELEASE = "nimguard-eso"
ESO_NS = "t-helm-eso"
GPU_NS = "t-helm-gpu"
ESO_DEPLOYMENTS = [ESO_RELEASE + "-external-secrets" + s for s in ("", "-webhook", "-cert-controller")]
CRDS = ["certificates.cert-manager.io", "certificaterequests.cert-manager.io", "issuers.cert-manager.io",
        "clusterissuers.cert-manager.io", "orders.acme.cert-manager.io", "challenges.acme.cert-manager.io"]


@pytest.fixture(scope="module")
def helm_tools():
    """{helm, cm_chart, cm_version, eso_chart, eso_version, gpu_chart}: built or found in $CACHE/bin by the scripts'
    own step."""
    found = dict(zip(["helm", "cm_chart", "cm_version", "eso_chart", "eso_version", "gpu_chart"], build_tools(
        "HELM_BIN", "CERTMANAGER_CHART", "CERTMANAGER_VERSION", "ESO_CHART", "ESO_VERSION", "GPU_OPERATOR_CHART",
        tools=["helm"])))
    found["helm"] = os.path.join(found["helm"], "helm")
    return found


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
    """A second local cluster: its own state folder and ports, KWOK's fake nodes for the charts' pods and no other
    add-on; stopped at the end."""
    api_port, etcd_port = _free_ports()
    extra = {"NIMGUARD_STATE": str(tmp_path_factory.mktemp("helm-cluster")), "NIMGUARD_API_PORT": str(api_port),
             "NIMGUARD_ETCD_PORT": str(etcd_port), "NIMGUARD_ADDONS": "kwok"}
    env = dict(os.environ, **extra)
    try:
        up = subprocess.run([CLUSTER, "up"], env=env, capture_output=True, text=True, timeout=1800, check=False)
        assert up.returncode == 0, "scripts/cluster up (%s) failed:\n%s" % (extra, up.stderr[-4000:])
        cluster = Cluster(extra)
        cluster.env["PATH"] = os.path.dirname(helm_tools["helm"]) + os.pathsep + cluster.env["PATH"]
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


def eso_role(chart, version):
    return {"ansible.builtin.include_role": {"name": ESO_ROLE}, "vars": dict(
        external_secrets_install="helm", external_secrets_version=version.lstrip("v"),
        external_secrets_helm_chart_ref=chart, external_secrets_helm_repo_url="",
        external_secrets_helm_release=ESO_RELEASE, external_secrets_namespace=ESO_NS,
        # No stores or ExternalSecrets: the chart's webhook would be asked about them, and it does not run here.
        external_secrets_stores=[], external_secrets_external_secrets=[], external_secrets_install_timeout=120)}


def gpu_role(chart, **extra):
    settings = dict(gpu_runtime_runtime_class_name="t-helm-nvidia", gpu_runtime_gpu_operator=True,
                    gpu_runtime_gpu_operator_chart_ref=chart, gpu_runtime_gpu_operator_chart_repo_url="",
                    gpu_runtime_gpu_operator_namespace=GPU_NS, gpu_runtime_gpu_operator_wait_timeout=180)
    settings.update(extra)
    return {"ansible.builtin.include_role": {"name": "nimguard.k8s.gpu_runtime", "tasks_from": "cluster.yml"},
            "vars": settings}


def helm_releases(cluster, helm, ns=NS):
    proc = subprocess.run([helm, "list", "-n", ns, "-o", "json"], env=cluster.env, capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(proc.stdout)


def real_writes(cluster, mark):
    return ["%s %s" % (e["verb"], e["requestURI"]) for e in writes(cluster, mark)
            if "dryRun=All" not in e.get("requestURI", "")]


def check_mode_writes_nothing(cluster, helm, install, ns):
    """Check mode predicts the install (changed) and writes nothing; no release yet. Returns the play."""
    mark = cluster.audit_mark()
    check = run_play(cluster, [install], check=True)
    assert recap(check.proc)["failed"] == 0 and recap(check.proc)["changed"] >= 1, check
    assert real_writes(cluster, mark) == []
    assert helm_releases(cluster, helm, ns) == []
    return check


def rerun_changes_nothing(cluster, helm, install, ns):
    """The same install again: changed=0, no write, the release still at revision 1. Returns the play."""
    mark = cluster.audit_mark()
    again = run_play(cluster, [install])
    assert recap(again.proc)["failed"] == 0 and recap(again.proc)["changed"] == 0, again
    assert real_writes(cluster, mark) == []
    assert helm_releases(cluster, helm, ns)[0]["revision"] == "1"
    return again


def task_line(play, name):
    """The line after a task's banner: its status (ok:, changed:, skipping:)."""
    parts = play.output.split(name + "]")
    assert len(parts) > 1, "task %r did not run:\n%s" % (name, play.output[-4000:])
    return parts[1].split("\n", 2)[1]


def test_helm_install_from_a_local_chart_waits_and_is_skipped_at_that_version(own_cluster, helm_tools):
    helm, chart, version = helm_tools["helm"], helm_tools["cm_chart"], helm_tools["cm_version"]
    cluster = own_cluster
    install = role(chart, version)

    check_mode_writes_nothing(cluster, helm, install, NS)

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

    # Installed at that version: the role does not even call helm.
    again = rerun_changes_nothing(cluster, helm, install, NS)
    assert "Install cert-manager with Helm | %s]" % version not in again.output, again


def test_eso_helm_install_from_a_local_chart_waits_for_the_charts_deployments(own_cluster, helm_tools):
    helm, chart, version = helm_tools["helm"], helm_tools["eso_chart"], helm_tools["eso_version"]
    cluster = own_cluster
    install = eso_role(chart, version)

    check = check_mode_writes_nothing(cluster, helm, install, ESO_NS)
    assert "External Secrets Operator is not installed yet" in check.output, check

    play = run_play(cluster, [install])
    assert recap(play.proc)["failed"] == 0, play
    line = task_line(play, "Install External Secrets Operator with Helm | %s" % version.lstrip("v"))
    assert line.startswith("changed:"), play
    # The role waited for each of the chart's Deployments by the names the chart gave them.
    waited = play.output.split("Wait until the operator's Deployments are Available]")[1].split("TASK [")[0]
    for name in ESO_DEPLOYMENTS:
        assert "ok: [localhost] => (item=%s)" % name in waited, (name, waited)

    [release] = helm_releases(cluster, helm, ESO_NS)
    assert (release["name"], release["status"], release["chart"], release["app_version"], release["revision"]) == (
        ESO_RELEASE, "deployed", "external-secrets-" + version.lstrip("v"), version, "1"), release
    deployments = cluster.get_json("deployments", "-n", ESO_NS)["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(ESO_DEPLOYMENTS)
    for d in deployments:
        assert d["metadata"]["labels"]["app.kubernetes.io/version"] == version, d["metadata"]
        available = [c for c in d["status"].get("conditions", []) if c["type"] == "Available"]
        assert available and available[0]["status"] == "True", (d["metadata"]["name"], d["status"])
        assert d["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":" + version), d["metadata"]["name"]
    crds = [c for c in cluster.get_json("crd")["items"] if c["spec"]["group"].endswith("external-secrets.io")]
    assert len(crds) == 20, [c["metadata"]["name"] for c in crds]
    for crd in crds:
        established = [c["status"] for c in crd["status"]["conditions"] if c["type"] == "Established"]
        assert established == ["True"], crd["metadata"]["name"]
        assert crd["metadata"].get("annotations", {}).get("meta.helm.sh/release-name") == ESO_RELEASE, crd["metadata"]

    # Same chart and values: kubernetes.core.helm upgrades nothing.
    rerun_changes_nothing(cluster, helm, install, ESO_NS)


def test_gpu_operator_helm_install_carries_the_driver_and_toolkit_toggles(own_cluster, helm_tools):
    """Nodes with their own driver and this role's toolkit: the ClusterPolicy the chart makes has both off, extra
    values reach it too, and a rerun upgrades nothing."""
    helm, chart = helm_tools["helm"], helm_tools["gpu_chart"]
    cluster = own_cluster
    install = gpu_role(chart, gpu_runtime_gpu_operator_values={"devicePlugin": {"env": [
        {"name": "FAIL_ON_INIT_ERROR", "value": "false"}]}})

    check_mode_writes_nothing(cluster, helm, install, GPU_NS)

    play = run_play(cluster, [install])
    assert recap(play.proc)["failed"] == 0, play
    assert task_line(play, "Install the NVIDIA GPU Operator with Helm | v25.10.1").startswith("changed:"), play
    [release] = helm_releases(cluster, helm, GPU_NS)
    assert (release["name"], release["status"], release["revision"]) == ("gpu-operator", "deployed", "1"), release
    assert release["chart"].startswith("gpu-operator-"), release

    policy = cluster.get_json("clusterpolicies.nvidia.com", "cluster-policy")
    assert policy["spec"]["driver"]["enabled"] is False and policy["spec"]["toolkit"]["enabled"] is False, policy["spec"]
    assert {"name": "FAIL_ON_INIT_ERROR", "value": "false"} in policy["spec"]["devicePlugin"]["env"], policy["spec"]
    operator = cluster.get_json("deployment", "gpu-operator", "-n", GPU_NS)
    available = [c for c in operator["status"].get("conditions", []) if c["type"] == "Available"]
    assert available and available[0]["status"] == "True", operator["status"]
    assert cluster.get_json("runtimeclass", "t-helm-nvidia")["handler"] == "nvidia"

    rerun_changes_nothing(cluster, helm, install, GPU_NS)


def test_the_site_run_gives_helm_the_playbooks_connection(own_cluster, helm_tools):
    """No KUBECONFIG or K8S_AUTH_KUBECONFIG in the environment: helm reaches the cluster only through
    nimguard_kubeconfig, the connection the playbooks give the modules (here a rerun with nothing to change)."""
    cluster = own_cluster
    assert helm_releases(cluster, helm_tools["helm"], GPU_NS), "the GPU Operator test above installs the release"
    group_vars = dict(gpu_role(helm_tools["gpu_chart"], gpu_runtime_gpu_operator_values={"devicePlugin": {"env": [
        {"name": "FAIL_ON_INIT_ERROR", "value": "false"}]}})["vars"], nimguard_gpu_runtime=True, nimguard_nim_rollout=False)
    mark = cluster.audit_mark()
    proc = run_playbook(cluster, "site.yml", group_vars, env={"KUBECONFIG": "", "K8S_AUTH_KUBECONFIG": ""}, expect_rc=0)
    assert recap(proc)["changed"] == 0, proc.output[-4000:]
    assert "Install the NVIDIA GPU Operator with Helm" in proc.output
    assert real_writes(cluster, mark) == []


@pytest.mark.parametrize("which", ["cert_manager", "external_secrets", "gpu_runtime"])
def test_a_missing_helm_is_explained(own_cluster, helm_tools, which):
    """Without helm where the task runs, the site run stops before any write, naming the fix."""
    cluster = own_cluster
    path = os.pathsep.join(p for p in cluster.env["PATH"].split(os.pathsep)
                           if not os.path.exists(os.path.join(p, "helm")))
    if which == "cert_manager":
        group_vars = dict(role(helm_tools["cm_chart"], "v0.0.1-" + uuid.uuid4().hex[:6])["vars"],
                          nimguard_cert_manager=True, nimguard_nim_rollout=False)
        setting = "cert_manager_install_method"
    elif which == "external_secrets":
        group_vars = dict(eso_role(helm_tools["eso_chart"], "0.0.1-" + uuid.uuid4().hex[:6])["vars"],
                          nimguard_external_secrets=True, nimguard_nim_rollout=False)
        setting = "external_secrets_install"
    else:
        # A RuntimeClass that does not exist yet: the role checks helm before it applies one.
        group_vars = dict(gpu_role(helm_tools["gpu_chart"], gpu_runtime_runtime_class_name="t-" + uuid.uuid4().hex[:8])[
            "vars"], nimguard_gpu_runtime=True, nimguard_nim_rollout=False)
    mark = cluster.audit_mark()
    proc = run_playbook(cluster, "site.yml", group_vars, env={"PATH": path}, expect_rc=2)
    if which == "gpu_runtime":
        assert "gpu_runtime_gpu_operator is true but helm does not run where this task runs" in proc.output
        assert "Fix: install helm 3, or set gpu_runtime_gpu_operator: false" in proc.output
    else:
        assert "%s is helm but helm does not run where this task runs" % setting in proc.output
        assert "Fix: install helm 3, or set %s: manifest." % setting in proc.output
    assert real_writes(cluster, mark) == []
