"""The README's first deployment, run as a user runs it: its playbook text exactly as printed, against a cluster
reached through the default kubeconfig variables, with the NGC key from the environment and a clean Trivy report
from "CI". Only the namespace is given on the command line (each test gets its own)."""

import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from playbook import writes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_playbook():
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```yaml\n(# deploy-nim\.yml.*?)```", f.read(), re.S)
    assert len(blocks) == 1, "README.md has no ```yaml block starting with '# deploy-nim.yml'"
    return blocks[0]


@pytest.fixture
def user_dir(tmp_path):
    """The playbook and the scan report of the image it deploys, side by side as the README puts them."""
    (tmp_path / "deploy-nim.yml").write_text(readme_playbook())
    image = "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3"
    (tmp_path / "llama-3.1-8b-instruct.trivy.json").write_text(json.dumps({
        "SchemaVersion": 2, "ArtifactName": image, "ArtifactType": "container_image",
        "Results": [{"Target": image, "Class": "os-pkgs", "Vulnerabilities": []}]}))
    return tmp_path


def run(cluster, user_dir, namespace, key, *args):
    env = {k: v for k, v in cluster.env.items() if not k.startswith("NGC_")}
    env.update(K8S_AUTH_KUBECONFIG=cluster.kubeconfig, NGC_API_KEY=key, ANSIBLE_NOCOLOR="1")
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "deploy-nim.yml",
           "-e", "nim_rollout_namespace=%s" % namespace, "-e", "ansible_python_interpreter=%s" % sys.executable]
    return subprocess.run(cmd + list(args), cwd=str(user_dir), env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def recap_changed(proc):
    return int(re.search(r"localhost\s+:.*changed=(\d+)", proc.stdout).group(1))


def test_readme_first_deployment(cluster, namespace, user_dir):
    key = "nvapi-readme-" + uuid.uuid4().hex
    checked = run(cluster, user_dir, namespace, key, "--check", "--diff")
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-2000:]
    assert cluster.get_json("deployments", "-n", namespace)["items"] == []

    first = run(cluster, user_dir, namespace, key)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    deployment = cluster.get_json("deployment", "llama-3-1-8b", "-n", namespace)
    assert deployment["status"].get("availableReplicas") == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    (nim,) = [c for c in pod["containers"] if c["image"] == "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3"]
    assert nim["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    assert nim["securityContext"]["readOnlyRootFilesystem"] is True
    assert cluster.get_json("networkpolicies", "-n", namespace)["items"]
    for proc in (checked, first):
        assert key not in proc.stdout + proc.stderr

    mark = cluster.audit_mark()
    again = run(cluster, user_dir, namespace, key)
    assert again.returncode == 0 and recap_changed(again) == 0, again.stdout[-4000:]
    assert writes(cluster, mark, namespace) == []
