"""The collection with only what it declares: ansible-core and the execution environment's Python packages in a venv
of their own (not the `ansible` package that the test venv carries, which brings kubernetes.core along and hid a
missing dependency), and a collections path holding this collection's tarball and the collections of galaxy.yml and
requirements.yml, installed offline (tests/declared.py). In it: ansible-doc of every plugin and role, and the site
playbook's Helm paths (cert_manager, external_secrets, gpu_runtime call kubernetes.core.helm) against the local
cluster, in check mode (the real Helm installs run on a cluster of their own: test_helm_install.py)."""

import json
import os
import subprocess
import uuid

import pytest

import declared
from conftest import build_tools
from playbook import recap, run_playbook, writes

RUN = uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def only_declared(cluster, tmp_path_factory):
    """(python, env): the execution environment's Python and an environment whose Ansible sees the installed
    collection and its declared dependencies only."""
    python = declared.ee_python()
    work = tmp_path_factory.mktemp("declared")
    declared.run([os.path.join(os.path.dirname(python), "ansible-galaxy"), "collection", "build", "--output-path",
                  str(work), declared.ROOT])
    (tarball,) = work.glob("nimguard-k8s-*.tar.gz")
    env = declared.isolated_env(work / "home", work / "collections", base=cluster.env)
    declared.install_declared(tarball, env["ANSIBLE_COLLECTIONS_PATH"], str(work), env)
    return python, env


@pytest.fixture(scope="module")
def charts():
    found = build_tools("HELM_BIN", "CERTMANAGER_CHART", "CERTMANAGER_VERSION", "ESO_CHART", "ESO_VERSION",
                        "GPU_OPERATOR_CHART", tools=["helm"])
    return dict(zip(["helm_dir", "cm_chart", "cm_version", "eso_chart", "eso_version", "gpu_chart"], found))


def ansible_doc(only, *args):
    python, env = only
    out = declared.run([os.path.join(os.path.dirname(python), "ansible-doc"), "--json"] + list(args), env=env,
                       cwd=env["HOME"])
    return json.loads(out)


def test_the_environment_holds_only_what_is_declared(only_declared):
    python, env = only_declared
    listed = declared.run([os.path.join(os.path.dirname(python), "ansible-galaxy"), "collection", "list",
                           "--format", "json"], env=env, cwd=env["HOME"])
    # ansible-core's own (ansible._protomatter) aside.
    found = set(name for path in json.loads(listed).values() for name in path if not name.startswith("ansible."))
    assert found == {"nimguard.k8s"} | set(declared.declared()), found
    pip = declared.run([python, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"])
    assert "ansible" not in set(p["name"].lower() for p in json.loads(pip)), "the `ansible` package is installed"


@pytest.mark.parametrize("plugin_type", ["module", "filter", "role"])
def test_ansible_doc_renders_every_plugin(only_declared, plugin_type):
    names = sorted(ansible_doc(only_declared, "-t", plugin_type, "-l", "nimguard.k8s"))
    assert names, plugin_type
    docs = ansible_doc(only_declared, "-t", plugin_type, *names)
    assert sorted(docs) == names
    installed = os.path.join(only_declared[1]["ANSIBLE_COLLECTIONS_PATH"], "ansible_collections", "nimguard", "k8s")
    for name, doc in docs.items():
        path = doc.get("path") or doc["doc"]["filename"]
        assert (path + os.sep).startswith(installed + os.sep), (name, path)


def test_kubernetes_core_helm_is_the_declared_one(only_declared):
    doc = ansible_doc(only_declared, "kubernetes.core.helm")["kubernetes.core.helm"]["doc"]
    assert doc["filename"].startswith(only_declared[1]["ANSIBLE_COLLECTIONS_PATH"]), doc["filename"]


def site_vars(charts, **extra):
    """The site playbook with the three roles that call kubernetes.core.helm, each installing from its local chart
    into a namespace of this test (nothing of it exists yet, so each role goes to its Helm install)."""
    group_vars = dict(
        nimguard_cert_manager=True, nimguard_external_secrets=True, nimguard_gpu_runtime=True,
        nimguard_nim_rollout=False,
        cert_manager_install_method="helm", cert_manager_version=charts["cm_version"],
        cert_manager_helm_chart_ref=charts["cm_chart"], cert_manager_helm_repo_url="",
        cert_manager_helm_release_name="deps-cm", cert_manager_namespace="t-deps-cm-" + RUN,
        cert_manager_helm_values={"installCRDs": True}, cert_manager_selfsigned_issuer=False,
        cert_manager_ca_issuer=False,
        external_secrets_install="helm", external_secrets_version=charts["eso_version"].lstrip("v"),
        external_secrets_helm_chart_ref=charts["eso_chart"], external_secrets_helm_repo_url="",
        external_secrets_helm_release="deps-eso", external_secrets_namespace="t-deps-eso-" + RUN,
        external_secrets_stores=[], external_secrets_external_secrets=[],
        gpu_runtime_runtime_class_name="t-deps-" + RUN, gpu_runtime_gpu_operator=True,
        gpu_runtime_gpu_operator_chart_ref=charts["gpu_chart"], gpu_runtime_gpu_operator_chart_repo_url="",
        gpu_runtime_gpu_operator_namespace="t-deps-gpu-" + RUN)
    group_vars.update(extra)
    return group_vars


def real_writes(cluster, mark):
    return ["%s %s" % (e["verb"], e["requestURI"]) for e in writes(cluster, mark)
            if "dryRun=All" not in e.get("requestURI", "")]


def test_site_helm_paths_run_with_the_declared_collections(cluster, only_declared, charts):
    """Check mode: each role reaches kubernetes.core.helm, which runs helm against the cluster and predicts the
    install; nothing is written."""
    python, env = only_declared
    env = dict(env, PATH=charts["helm_dir"] + os.pathsep + env["PATH"])
    mark = cluster.audit_mark()
    proc = run_playbook(cluster, "site.yml", site_vars(charts), args=["--check"], env=env, python=python)
    assert proc.returncode == 0, proc.output[-6000:]
    for task in ("Install cert-manager with Helm | %s" % charts["cm_version"],
                 "Install External Secrets Operator with Helm | %s" % charts["eso_version"].lstrip("v"),
                 "Install the NVIDIA GPU Operator with Helm"):
        after = proc.output.split(task, 1)
        assert len(after) == 2 and after[1].split("\n", 2)[1].startswith("changed:"), (task, proc.output[-6000:])
    assert recap(proc)["failed"] == 0
    assert real_writes(cluster, mark) == []


def test_without_helm_the_roles_own_check_speaks(cluster, only_declared, charts):
    """No helm binary: the role's "Require helm" message, naming the fix, and no write (with kubernetes.core
    missing, the run stopped earlier with "couldn't resolve module/action 'kubernetes.core.helm'")."""
    python, env = only_declared
    path = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not os.path.exists(os.path.join(p, "helm")))
    assert subprocess.run(["which", "helm"], env=dict(env, PATH=path), capture_output=True, check=False).returncode != 0
    mark = cluster.audit_mark()
    proc = run_playbook(cluster, "site.yml", site_vars(charts, nimguard_external_secrets=False,
                                                       nimguard_gpu_runtime=False),
                        env=dict(env, PATH=path), python=python, expect_rc=2)
    assert "couldn't resolve module/action" not in proc.output, proc.output[-4000:]
    assert "cert_manager_install_method is helm but helm does not run where this task runs" in proc.output
    assert "Fix: install helm 3, or set cert_manager_install_method: manifest." in proc.output
    assert real_writes(cluster, mark) == []
