"""Admission and static checks of every pod template the collection renders, in each option combination.

(a) The real API server admits every object (server-side dry run) into a namespace that enforces Pod Security
`restricted`, and a Pod made from each Deployment's template (enforce applies to Pods; for Deployments only
warnings are given), with no Warning at all.
(b) checkov (PyPI), kube-score and `trivy config` (both from the Go module proxy) find nothing, except the checks
listed in EXCEPTIONS, each justified in docs/security.md ("Static checks and exceptions")."""

import json
import os
import re
import subprocess

import pytest
import yaml

from ansible_collections.nimguard.k8s.plugins.module_utils import render
from ansible_collections.nimguard.k8s.plugins.module_utils.specs import service_options
from conftest import build_tools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNTIME_CLASS = "nimguard-static-nvidia"

# What a user sets per the README: a pinned image, a pull secret, CPU and memory requests, a memory limit.
BASE = dict(namespace="nim", auth_secret="ngc-api-secret",
            image=dict(repository="nvcr.io/nim/meta/llama-3.1-8b-instruct", tag="1.3.3", pull_secrets=["ngc-secret"]),
            resources=dict(requests={"cpu": "2", "memory": "16Gi"}, limits={"memory": "24Gi"}))
VAULT = dict(address="https://vault.example.com:8200", role="nim", secret_path="secret/data/nim/ngc")
COMBINATIONS = {
    "file-delivery": dict(secret_delivery={"mode": "file"}),
    "env-delivery": dict(secret_delivery={"mode": "env"}),
    "vault-agent": dict(secret_delivery={"mode": "vault_agent", "vault": dict(VAULT, refresh=True,
                                                                              ca_config_map="vault-ca")}),
    "proxy-ca": dict(secret_delivery={"mode": "file"},
                     outbound_proxy={"http_proxy": "http://proxy.example.com:3128",
                                     "https_proxy": "http://proxy.example.com:3128",
                                     "no_proxy": "localhost,.svc", "cert_config_map": "proxy-ca"}),
    "pvc": dict(storage={"pvc": {"create": True, "size": "50Gi", "storage_class": "fast-ssd"}}),
    "empty-dir-memory": dict(storage={"empty_dir": {"medium": "Memory", "size_limit": "8Gi"}}),
    "gpu": dict(resources=dict(BASE["resources"], gpus=1), runtime_class_name=RUNTIME_CLASS,
                node_selector={"nvidia.com/gpu.present": "true"},
                tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
    "ingress-tls-secret": dict(expose={"ingress": {"enabled": True, "host": "nim.example.com", "class_name": "nginx",
                                                   "tls_secret_name": "nim-tls"}}),
    "ingress-cert-manager": dict(expose={"ingress": {"enabled": True, "host": "nim.example.com", "annotations": {
        "cert-manager.io/cluster-issuer": "letsencrypt-prod"}}}),
    "replicas-2": dict(replicas=2),
}

# Check ID -> the docs' one-line reason; every one must be explained in docs/security.md and found by a run.
EXCEPTIONS = {
    "kube-score": {
        "container-resources": "no CPU limit: CFS throttling stalls token generation; CPU requests are set",
        "container-ephemeral-storage-request-and-limit": "writes go to emptyDir volumes with their own sizeLimit",
        "container-image-pull-policy": "IfNotPresent with pinned tags: multi-GB NIM images, offline nodes",
        "container-security-context-user-group-id": "UID 1000 / GID 2000 are the NIM images' documented user",
        "deployment-replicas": "one replica by default: each replica holds whole GPUs",
        "deployment-has-poddisruptionbudget": "no PodDisruptionBudget rendered (maxUnavailable 0 on rollouts)",
        "deployment-has-host-podantiaffinity": "GPU requests spread replicas; no affinity option yet",
    },
    "checkov": {
        "CKV_K8S_11": "no CPU limit (as kube-score container-resources)",
        "CKV_K8S_15": "pull policy IfNotPresent (as kube-score container-image-pull-policy)",
        "CKV_K8S_35": "secret as env var: only with secret_delivery.mode env, the user's choice",
        "CKV_K8S_40": "UID 1000 (as kube-score container-security-context-user-group-id)",
        "CKV_K8S_43": "tags pinned; a digest can be given in image.tag",
    },
    "trivy": {
        "KSV-0011": "no CPU limit (as kube-score container-resources)",
        "KSV-0020": "UID 1000, the NIM images' user",
        "KSV-0021": "GID 2000, the NIM images' group",
        "KSV-0125": "nvcr.io (NIM) and docker.io/hashicorp (vault agent) are not on Trivy's built-in list",
    },
}


def service_params(name="llama", **overrides):
    args = dict(BASE, name=name)
    args.update(overrides)
    return service_options(args)


def rendered(namespace="nim"):
    return dict((combo, render.render_service(service_params("c-" + combo, namespace=namespace, **opts),
                                              "sha256:0123456789abcdef"))
                for combo, opts in COMBINATIONS.items())


def pod_from(deployment):
    template = deployment["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": deployment["metadata"]["name"] + "-template",
                         "namespace": deployment["metadata"]["namespace"], "labels": template["metadata"]["labels"]},
            "spec": template["spec"]}


def kubectl_apply(cluster, objs, dry_run):
    args = ["apply", "--server-side", "--field-manager", "static-checks", "-o", "name", "-f", "-"]
    if dry_run:
        args.append("--dry-run=server")
    return cluster.kubectl(*args, input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}), check=False)


# ---------------------------------------------------------------------------------------------
# (a) admission by the real API server


@pytest.fixture(scope="module")
def runtime_class(cluster):
    cluster.kubectl("apply", "--server-side", "--field-manager", "static-checks", "-f", "-", input=json.dumps({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": RUNTIME_CLASS},
        "handler": "nvidia"}))
    yield RUNTIME_CLASS
    cluster.kubectl("delete", "runtimeclass", RUNTIME_CLASS, "--wait=false", check=False)


def test_every_combination_is_admitted_under_restricted_without_warnings(cluster, namespace, runtime_class):
    labels = cluster.get_json("namespace", namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    problems = []
    for combo, objs in rendered(namespace).items():
        # the ServiceAccount for real: Pod admission looks it up
        sas = [o for o in objs if o["kind"] == "ServiceAccount"]
        created = kubectl_apply(cluster, sas, dry_run=False)
        assert created.returncode == 0, created.stderr
        deployment = [o for o in objs if o["kind"] == "Deployment"][0]
        proc = kubectl_apply(cluster, objs + [pod_from(deployment)], dry_run=True)
        warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("Warning:")]
        if proc.returncode != 0 or warnings:
            problems.append("%s: rc=%s %s" % (combo, proc.returncode, proc.stderr.strip()))
        else:
            names = proc.stdout.split()
            assert "pod/%s-template" % deployment["metadata"]["name"] in names, proc.stdout
            assert len(names) == len(objs) + 1, proc.stdout
    assert not problems, "\n".join(problems)


def test_restricted_admission_really_refuses(cluster, namespace):
    """The same check catches a template Pod Security refuses: hostPath storage (the collection's preflight
    refuses it in such a namespace too) and a writable, privilege-escalating container."""
    objs = render.render_service(service_params("c-host-path", namespace=namespace, storage={"host_path": "/mnt/nim"}))
    kubectl_apply(cluster, [o for o in objs if o["kind"] == "ServiceAccount"], dry_run=False)
    deployment = [o for o in objs if o["kind"] == "Deployment"][0]
    pod = pod_from(deployment)
    proc = kubectl_apply(cluster, [deployment, pod], dry_run=True)
    assert proc.returncode != 0 and "hostPath" in proc.stderr, proc.stderr
    assert "Warning: would violate PodSecurity" in proc.stderr
    pod = pod_from([o for o in render.render_service(service_params("c-host-path", namespace=namespace))
                    if o["kind"] == "Deployment"][0])
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    proc = kubectl_apply(cluster, [pod], dry_run=True)
    assert proc.returncode != 0 and "allowPrivilegeEscalation" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------
# (b) static checkers


def tool_path(var, suffix="", tool=None):
    out = build_tools(var, tools=[tool] if tool else [])[0] + suffix
    assert os.access(out, os.X_OK), "%s missing after build_tools" % out
    return out


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    folder = tmp_path_factory.mktemp("manifests")
    for combo, objs in rendered().items():
        with open(folder / ("%s.yaml" % combo), "w") as f:
            yaml.safe_dump_all(objs, f, sort_keys=False)
    return folder


def kube_score(folder):
    files = sorted(str(p) for p in folder.iterdir())
    proc = subprocess.run([tool_path("KUBE_SCORE_BIN", "/kube-score", "kube-score"), "score", "--output-format", "json"]
                          + files, capture_output=True, text=True, timeout=300, check=False)
    assert proc.stdout.strip().startswith("["), proc.stderr
    found = []
    for obj in json.loads(proc.stdout):
        for check in obj.get("checks") or []:
            if not check.get("skipped") and check.get("grade", 10) < 10:
                found.append((check["check"]["id"], "%s/%s in %s" % (
                    obj["type_meta"]["kind"], obj["object_meta"]["name"], os.path.basename(obj["file_name"]))))
    return found


def checkov(folder):
    proc = subprocess.run([tool_path("CHECKOV_VENV", "/bin/checkov"), "--directory", str(folder), "--framework",
                           "kubernetes", "--output", "json", "--quiet", "--compact", "--skip-download"],
                          capture_output=True, text=True, timeout=600, check=False,
                          env=dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false"))
    data = json.loads(proc.stdout) if proc.stdout.strip() else {}
    assert data or proc.returncode == 0, proc.stderr[-3000:]
    reports = data if isinstance(data, list) else [data]
    return [(c["check_id"], "%s in %s" % (c["resource"], os.path.basename(c["file_path"])))
            for r in reports if r for c in (r.get("results") or {}).get("failed_checks") or []]


def trivy_config(folder, tmp_path):
    out = tmp_path / "trivy.json"
    proc = subprocess.run([tool_path("TRIVY_BIN", "/trivy", "trivy"), "config", "--quiet", "--skip-check-update",
                           "--cache-dir", str(tmp_path / "cache"), "--format", "json", "--output", str(out),
                           str(folder)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [(m["ID"], "%s: %s" % (os.path.basename(r["Target"]), m.get("Message", "")[:100]))
            for r in json.load(open(out)).get("Results") or [] for m in r.get("Misconfigurations") or []
            if m.get("Status", "FAIL") == "FAIL"]


def check(tool, found):
    allowed = EXCEPTIONS[tool]
    unexpected = sorted(set("%s: %s" % f for f in found if f[0] not in allowed))
    assert not unexpected, "%s findings without a documented exception:\n%s" % (tool, "\n".join(unexpected))
    unused = sorted(set(allowed) - set(f[0] for f in found))
    assert not unused, "%s exceptions no longer needed (remove them here and in the docs): %s" % (tool, unused)


def test_kube_score(manifests):
    check("kube-score", kube_score(manifests))


def test_checkov(manifests):
    check("checkov", checkov(manifests))


def test_trivy_config(manifests, tmp_path):
    check("trivy", trivy_config(manifests, tmp_path))


def test_every_exception_is_justified_in_the_docs():
    with open(os.path.join(ROOT, "docs", "security.md")) as f:
        docs = f.read()
    section = docs.split("## Static checks and exceptions", 1)[1].split("\n## ", 1)[0]
    for tool, allowed in EXCEPTIONS.items():
        for check_id in allowed:
            assert re.search(r"\|\s*%s\s*\|\s*`?%s`?\s*\|" % (re.escape(tool), re.escape(check_id)), section), (
                "docs/security.md has no row '| %s | %s | why |'" % (tool, check_id))
