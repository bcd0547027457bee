"""Helpers for the end-to-end tests on the local cluster's real node (scripts/localcluster/addons/node.sh):
pods pinned to it, one-shot client pods running the fake NIM image's client, waits bounded in time."""

import json
import os
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER = os.path.join(ROOT, "scripts", "cluster")

NODE_LABEL = "nimguard.io/real-node"
FAKENIM = "docker.io/local/fakenim:1"
IMAGE = {"repository": "docker.io/local/fakenim", "tag": "1", "pull_policy": "Never"}
# The real node is tainted so that pods meant for KWOK never land on it: these pods tolerate and select it.
PIN = dict(node_selector={NODE_LABEL: "true"},
           tolerations=[{"key": NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}])
# Readiness is real here: probe every second so that a rollout of three replicas takes seconds.
# Timeouts stay generous: on a loaded 2-core CI machine a 1 s probe timeout fails now and then.
FAST_PROBES = {"startup": {"period_seconds": 1, "failure_threshold": 120, "timeout_seconds": 5},
               "readiness": {"period_seconds": 1, "failure_threshold": 3, "timeout_seconds": 5},
               "liveness": {"timeout_seconds": 5}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"}}


def real_node(cluster):
    """The node's name; skips (with the reason) only when the node add-on is not part of this cluster."""
    name = cluster.env.get("NIMGUARD_REAL_NODE")
    if not name:
        pytest.skip("the local cluster runs without its real node: the `node` add-on is not in NIMGUARD_ADDONS "
                    "(scripts/localcluster/addons/node.sh; CI runs with it)")
    ready = cluster.kubectl("get", "node", name, "-o",
                            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}").stdout
    assert ready == "True", "the real node %s is not Ready" % name
    return name


def wait_until(what, fn, timeout=120, interval=0.5):
    """Poll fn until it returns something truthy; a bound, not a timing assertion."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("%s did not happen within %ss (last: %r)" % (what, timeout, last))


def pod_manifest(name, args, user=1000, command=None, labels=None, extra_spec=None):
    spec = {"restartPolicy": "Never", "automountServiceAccountToken": False,
            "nodeSelector": PIN["node_selector"], "tolerations": PIN["tolerations"],
            "securityContext": {"runAsNonRoot": user != 0, "runAsUser": user, "runAsGroup": user or 0,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": FAKENIM, "imagePullPolicy": "Never",
                            "command": command or ["/usr/local/bin/fakenim"], "args": list(args),
                            "securityContext": dict(RESTRICTED_CONTAINER, runAsNonRoot=user != 0)}]}
    spec.update(extra_spec or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def create(cluster, namespace, obj):
    cluster.kubectl("apply", "--server-side", "--field-manager", "nimguard-tests", "-n", namespace, "-f", "-",
                    input=json.dumps(obj))


def run_client(cluster, namespace, *args, timeout=90, retries=1):
    """Run `fakenim ARGS...` in a restricted pod on the real node, up to `retries` times a second apart
    until it succeeds: (exit code, output)."""
    name = "client-" + uuid.uuid4().hex[:6]
    if retries > 1:
        loop = 'for i in $(seq %d); do /usr/local/bin/fakenim "$@" && exit 0; sleep 1; done; exit 1' % retries
        create(cluster, namespace, pod_manifest(name, ("--",) + args, command=["/bin/sh", "-c", loop]))
    else:
        create(cluster, namespace, pod_manifest(name, args))

    def finished():
        state = cluster.get_json("pod", name, "-n", namespace)["status"].get("containerStatuses") or [{}]
        return state[0].get("state", {}).get("terminated")
    done = wait_until("client pod %s/%s to finish" % (namespace, name), finished, timeout)
    out = cluster.kubectl("logs", name, "-n", namespace).stdout
    cluster.kubectl("delete", "pod", name, "-n", namespace, "--wait=false")
    return done["exitCode"], out


def service_url(cluster, namespace, name, path, port=8000):
    ip = cluster.get_json("service", name, "-n", namespace)["spec"]["clusterIP"]
    return "http://%s:%d%s" % (ip, port, path)


def get_json_via(cluster, namespace, url):
    """GET url from a client pod in namespace; the parsed JSON body."""
    code, out = run_client(cluster, namespace, "get", url)
    assert code == 0, out
    return json.loads(out)


def pods(cluster, namespace, name):
    return cluster.get_json("pods", "-n", namespace, "-l", "app.kubernetes.io/instance=%s" % name)["items"]


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def proxy_get(cluster, namespace, pod, port, path):
    """GET through the API server's pod proxy (the API server reaches pods on the node's bridge)."""
    out = cluster.kubectl("get", "--raw", "/api/v1/namespaces/%s/pods/%s:%s/proxy%s" % (namespace, pod, port, path))
    return json.loads(out.stdout)
