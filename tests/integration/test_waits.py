"""nim_service's and nim_rollout's waits on the real API server: the default limit derives from the probes, a
timeout names the phase the pods are stuck in (each held there for real: no node to go to, an image that is not
there, the fake NIM's start delay under a startup probe, a readiness probe on a path it does not serve, a pod
that admission refuses), and nim_rollout applies every service before waiting for all of them together, with
progress lines. The phases that need running containers use the shared cluster's real node (skipped, with the
reason, without it)."""

import uuid

import pytest

from playbook import run_play
from realnode import FAST_PROBES, IMAGE, PIN, real_node


@pytest.fixture(scope="module")
def node(cluster):
    return real_node(cluster)


def secret(ns):
    return {"nimguard.k8s.nim_secret": {"name": "ngc-api-secret", "namespace": ns, "kind": "ngc",
                                        "value": "nvapi-waits-" + uuid.uuid4().hex}}


def service(ns, name, timeout, **kw):
    args = dict(name=name, namespace=ns, auth_secret="ngc-api-secret", image=IMAGE, probes=FAST_PROBES,
                secret_delivery={"mode": "file", "export_env": False}, wait=True, wait_timeout=timeout)
    args.update(PIN)
    args.update(kw)
    return {"nimguard.k8s.nim_service": args}


def test_default_wait_derives_from_the_probes(cluster, namespace):
    play = run_play(cluster, [secret(namespace), {"nimguard.k8s.nim_service": {
        "name": "derived", "namespace": namespace, "auth_secret": "ngc-api-secret", "image": IMAGE}},
        {"nimguard.k8s.nim_service": {"name": "two", "namespace": namespace, "auth_secret": "ngc-api-secret",
                                      "image": IMAGE, "replicas": 2, "probes": {"startup": {"failure_threshold": 30}}}}])
    # 600 (scheduling, image pull) + startup 10 + 10 x 180 + readiness 0 + 5 x 3; two rounds of one surge pod
    assert play[1]["wait_timeout"] == 2425 and play[1]["wait_for"] == {"name": "derived", "namespace": namespace}, play
    assert play[2]["wait_timeout"] == 2 * (600 + 310 + 15), play


def test_timeout_names_the_phase(cluster, node, namespace):
    play = run_play(cluster, [
        secret(namespace),
        service(namespace, "nowhere", 8, node_selector={"nimguard.io/nowhere": "true"}),
        service(namespace, "nopull", 15, image={"repository": "docker.io/local/absent", "tag": "1",
                                                "pull_policy": "Never"}),
        service(namespace, "starting", 20, env=[{"name": "FAKENIM_STARTUP_DELAY", "value": "600s"}],
                probes=dict(FAST_PROBES, startup={"period_seconds": 1, "failure_threshold": 900, "timeout_seconds": 5})),
        service(namespace, "unready", 25, probes=dict(FAST_PROBES, readiness={
            "path": "/v1/health/absent", "period_seconds": 1, "failure_threshold": 3, "timeout_seconds": 5}))])
    msgs = [r.get("msg", "") for r in play.results[1:]]
    assert all(r.get("failed") for r in play.results[1:]), play
    assert "did not finish its rollout within 8s: unschedulable: pod nowhere-" in msgs[0], msgs[0]
    assert "within 15s: image pull: pod nopull-" in msgs[1] and "Fix" in msgs[1], msgs[1]
    assert "within 20s: startup probe: pod starting-" in msgs[2] and "allows 910 s" in msgs[2], msgs[2]
    assert "readiness probe" not in msgs[2], msgs[2]
    assert "within 25s: readiness probe: pod unready-" in msgs[3], msgs[3]


def test_timeout_names_admission(cluster, namespace):
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    play = run_play(cluster, [secret(namespace), {"nimguard.k8s.nim_service": dict(
        name="refused", namespace=namespace, auth_secret="ngc-api-secret", image=IMAGE, preflight=False,
        storage={"host_path": "/var/lib/nim"}, wait=True, wait_timeout=60)}])
    assert play[1].get("failed") and ": admission: pods cannot be created: " in play[1]["msg"], play


def test_rollout_applies_all_then_waits_for_all_together(cluster, node, namespace):
    """Two services whose fake NIM takes 25 s to start: one wait for both, progress lines in the output."""
    slow = dict(env=[{"name": "FAKENIM_STARTUP_DELAY", "value": "25s"}], probes=FAST_PROBES,
                secret_delivery={"mode": "file", "export_env": False}, **PIN)
    services = [dict(slow, name="first", image=IMAGE), dict(slow, name="second", image=IMAGE)]
    play = run_play(cluster, [{"ansible.builtin.include_role": {"name": "nimguard.k8s.nim_rollout"},
                               "vars": {"nim_rollout_namespace": namespace, "nim_rollout_manage_namespace": False,
                                        "nim_rollout_doctor": False, "nim_rollout_image_scan": {
                                            "enabled": False, "disabled_reason": "the fake NIM image is local"},
                                        "nim_rollout_ngc_api_key": "nvapi-waits-" + uuid.uuid4().hex,
                                        "nim_rollout_registry_secret": False, "nim_rollout_services": services}}])
    assert "failed=0" in play.output, play
    assert "2 of 2 rollout(s) not finished: %s/first (0 of 1 ready), %s/second (0 of 1 ready)" % (
        namespace, namespace) in play.output, play
    for name in ("first", "second"):
        dep = cluster.get_json("deployment", name, "-n", namespace)
        assert dep["status"].get("readyReplicas") == 1, dep["status"]
