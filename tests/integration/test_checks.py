"""The cluster checks nim_service's preflight and nim_doctor share (plugins/module_utils/checks.py), against the
real API server: a node's free GPUs are its allocatable ones minus what other pods request, and the pods of the
services being checked are not other pods (a rollout replaces them).

The test brings its own KWOK node (8 x nvidia.com/gpu, tainted so that no other test's pod lands there) and holds
GPUs on it with a pod bound to it, so the figures do not depend on what other tests run on the shared cluster:
they can only take GPUs away from the other nodes, which have 4 each."""

import json
import uuid

import pytest

from playbook import run_play, writes

IMAGE = {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"}
GPU = "nvidia.com/gpu"


@pytest.fixture
def gpu_node(cluster):
    name = "t-gpu-" + uuid.uuid4().hex[:8]
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110", GPU: "8"}
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": name, "type": "kwok"}},
            "spec": {"taints": [{"key": "nimguard.io/test-only", "value": name, "effect": "NoSchedule"}]},
            "status": {"allocatable": resources, "capacity": resources}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(node))
    yield name
    cluster.kubectl("delete", "node", name, "--wait=false", check=False)


def gpu_pod(cluster, namespace, node, gpus):
    """A pod holding `gpus` GPUs on `node` (bound to it, no scheduler; KWOK runs it)."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hold-gpus", "namespace": namespace},
           "spec": {"nodeName": node,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "c", "image": "x", "resources": {"limits": {GPU: str(gpus)}},
                                    "securityContext": {"allowPrivilegeEscalation": False,
                                                        "capabilities": {"drop": ["ALL"]}}}]}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(pod))


def test_free_gpus_are_allocatable_minus_what_other_pods_request(cluster, namespace, gpu_node):
    ns = namespace
    gpu_pod(cluster, ns, gpu_node, 2)
    secret = {"nimguard.k8s.nim_secret": {"name": "ngc-api-secret", "namespace": ns, "kind": "ngc",
                                          "value": "nvapi-checks-" + uuid.uuid4().hex}}
    service = dict(name="llama", namespace=ns, auth_secret="ngc-api-secret", image=IMAGE, node_selector={
        "kubernetes.io/hostname": gpu_node}, tolerations=[{"key": "nimguard.io/test-only", "operator": "Exists"}])
    run_play(cluster, [secret])

    # 7 per pod: the new node has 8, but the other pod holds 2 of them, so no node has 7 free
    mark = cluster.audit_mark()
    play = run_play(cluster, [{"nimguard.k8s.nim_service": dict(service, resources={"gpus": 7})}])
    assert play[0].get("failed") is True, play
    msg = play[0]["msg"]
    assert msg.startswith("resources.gpus: 7 GPU(s) requested per pod, but no node advertises that many free "
                          "nvidia.com/gpu") and "most free on one node: 6" in msg and "Fix" in msg, msg
    assert writes(cluster, mark, ns) == []

    # 4 fit; then, for a service that is about to grow to 5, its own pod's 4 count as free (it is replaced)
    grown = dict(service, resources={"gpus": 4}, wait=True, wait_timeout=120)
    play = run_play(cluster, [{"nimguard.k8s.nim_service": grown}])
    assert play[0].get("changed") is True and not play[0].get("failed"), play
    doctor = run_play(cluster, [{"nimguard.k8s.nim_doctor": {
        "namespace": ns, "checks": ["gpu"], "services": [dict(service, resources={"gpus": 5})]}}])
    assert not doctor[0].get("failed") and [f for f in doctor[0]["findings"] if f["check"] == "gpu"] == [], doctor


def test_every_gpu_in_use_a_rerun_passes_a_roll_or_a_new_service_names_the_shortage(cluster, namespace, gpu_node):
    """All 8 GPUs of the node taken (7 by the service's pod, 1 by another pod): a rerun and a change that starts no
    pod need no free GPU; a change to the pods does (its new pod starts beside the old one, maxUnavailable 0), and
    so does a new service. 7 per pod: no other node of the shared cluster has that many."""
    ns = namespace
    run_play(cluster, [{"nimguard.k8s.nim_secret": {"name": "ngc-api-secret", "namespace": ns, "kind": "ngc",
                                                    "value": "nvapi-checks-" + uuid.uuid4().hex}}])
    service = dict(name="llama", namespace=ns, auth_secret="ngc-api-secret", image=IMAGE, resources={"gpus": 7},
                   node_selector={"kubernetes.io/hostname": gpu_node},
                   tolerations=[{"key": "nimguard.io/test-only", "operator": "Exists"}])
    play = run_play(cluster, [{"nimguard.k8s.nim_service": dict(service, wait=True, wait_timeout=120)}])
    assert play[0].get("changed") is True and not play[0].get("failed"), play
    gpu_pod(cluster, ns, gpu_node, 1)

    mark = cluster.audit_mark()
    play = run_play(cluster, [
        {"nimguard.k8s.nim_service": service},
        {"nimguard.k8s.nim_doctor": {"namespace": ns, "checks": ["gpu"], "services": [service]}}])
    assert play[0].get("changed") is False and not play[0].get("failed"), play
    assert not play[1].get("failed") and [f for f in play[1]["findings"] if f["check"] == "gpu"] == [], play
    assert writes(cluster, mark, ns) == []

    # a change to the Service only: no pod starts, no GPU needed
    annotated = dict(service, expose={"service": {"annotations": {"example.com/owner": "h8"}}})
    play = run_play(cluster, [{"nimguard.k8s.nim_service": annotated}])
    assert play[0].get("changed") is True and not play[0].get("failed"), play

    # a change to the pods: the new pod needs 7 free beside the old one's 7; nothing written
    mark = cluster.audit_mark()
    rolled = dict(annotated, env=[{"name": "NIM_LOG_LEVEL", "value": "DEBUG"}])
    new = dict(service, name="other")
    play = run_play(cluster, [{"nimguard.k8s.nim_service": rolled}, {"nimguard.k8s.nim_service": new}])
    assert play[0].get("failed") is True, play
    assert play[0]["msg"].startswith("resources.gpus: 7 GPU(s) requested per pod, but no node has that many free "
                                     "nvidia.com/gpu for the rolling update's new pod") and "Fix" in play[0]["msg"], play
    assert play[1].get("failed") is True, play
    assert "no node advertises that many free nvidia.com/gpu" in play[1]["msg"], play
    assert writes(cluster, mark, ns) == []
