"""The local cluster is a real one: scheduling on GPU nodes, Pod Security and RuntimeClass admission,
RBAC denials and an audit log without bodies."""

import json
import time

GPU_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: gpu-smoke}
spec:
  replicas: 1
  selector: {matchLabels: {app: gpu-smoke}}
  template:
    metadata: {labels: {app: gpu-smoke}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: c
        image: registry.example/none:1
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        resources: {limits: {nvidia.com/gpu: 1}}
"""


def test_gpu_deployment_rolls_out_on_a_fake_gpu_node(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=GPU_DEPLOYMENT)
    cluster.kubectl("rollout", "status", "deployment/gpu-smoke", "-n", namespace, "--timeout=90s")
    dep = cluster.get_json("deployment", "gpu-smoke", "-n", namespace)
    assert dep["status"]["availableReplicas"] == 1
    pods = cluster.get_json("pods", "-n", namespace, "-l", "app=gpu-smoke")["items"]
    assert [p["spec"]["nodeName"].startswith("kwok-gpu-") for p in pods] == [True]


def test_pod_security_restricted_rejects_a_privileged_pod(cluster, namespace):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
           "spec": {"containers": [{"name": "c", "image": "x", "securityContext": {"privileged": True}}]}}
    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False)
    assert proc.returncode != 0
    assert "violates PodSecurity" in proc.stderr and "restricted" in proc.stderr


def test_unknown_runtime_class_is_rejected(cluster, namespace):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "rc"},
           "spec": {"runtimeClassName": "does-not-exist",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "c", "image": "x", "securityContext": {
                        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}}
    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False)
    assert proc.returncode != 0
    assert 'RuntimeClass "does-not-exist" not found' in proc.stderr


def test_identity_without_rights_gets_403(cluster, namespace):
    proc = cluster.kubectl("get", "secrets", "-n", namespace, kubeconfig=cluster.limited_kubeconfig, check=False)
    assert proc.returncode != 0
    assert "Forbidden" in proc.stderr and "nimguard-limited" in proc.stderr


def test_audit_log_records_writes_without_bodies(cluster, namespace):
    mark = cluster.audit_mark()
    cluster.kubectl("create", "configmap", "audit-probe", "-n", namespace, "--from-literal=token=probe-value-123")
    time.sleep(0.2)
    events = cluster.audit_events(mark, verbs={"create"}, namespace=namespace)
    assert any((e.get("objectRef") or {}).get("name") == "audit-probe" for e in events)
    with open(cluster.audit_log) as f:
        f.seek(mark)
        text = f.read()
    assert "probe-value-123" not in text
    assert all(e["level"] == "Metadata" for e in events)
    assert not any("requestObject" in e or "responseObject" in e for e in events)


def test_writes_are_this_sessions_own(cluster, namespace):
    """The tests' write checks count this session's identities only: another identity's writes on the same
    cluster (a helper's, a site run's, the cluster admin's) are not theirs, and this session's are."""
    from playbook import writes
    mark = cluster.audit_mark()
    cluster.kubectl("create", "configmap", "mine", "-n", namespace)
    cluster.kubectl("create", "configmap", "other", "-n", namespace, kubeconfig=cluster.admin_kubeconfig)
    cluster.kubectl("create", "configmap", "denied", "-n", namespace, kubeconfig=cluster.limited_kubeconfig,
                    check=False)
    seen = sorted((e["user"]["username"], e["objectRef"].get("name")) for e in writes(cluster, mark, namespace))
    # (a denied create names no object: the API server refused it before reading the body's name)
    assert seen == sorted([(cluster.user, "mine"), (cluster.limited_user, None)]), seen
