"""One site.yml run across several clusters (issue 20): two local control planes of the test's own (no add-ons,
no nodes: nothing here needs a pod to run), two inventory hosts, forks 2. Both converge; with one API server
stopped the other still converges and the stopped one fails with a clear error; a rerun changes nothing on either
(the API servers' audit logs); and the canary order of docs/playbooks.md stops at a failing first cluster before
the second is touched. The pair's ports come from NIMGUARD_PAIR_PORTS (two API ports; etcd on each + 100)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest
import yaml

from conftest import CLUSTER, ROOT, Cluster
from playbook import WRITES, recap

PORTS = [int(p) for p in os.environ.get("NIMGUARD_PAIR_PORTS", "23443,24443").split(",")]
HOSTS = ("canary", "fleet")  # inventory order: the canary is first
IMAGE = {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"}
KEY = "nvapi-pair-" + uuid.uuid4().hex  # one per test session: a rerun writes the same Secrets
CANARY = {"nimguard_clusters_serial": [1, "100%"], "nimguard_clusters_max_fail_percentage": 0}


def pair_env(port, state):
    return {"NIMGUARD_STATE": state, "NIMGUARD_API_PORT": str(port), "NIMGUARD_ETCD_PORT": str(port + 100),
            "NIMGUARD_ADDONS": ""}


def cluster_cmd(env, *args):
    subprocess.run([CLUSTER] + list(args), env=dict(os.environ, **env), check=True, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def pair():
    """{host: (Cluster, its env)}: two private control planes, stopped again at the end."""
    base = tempfile.mkdtemp(prefix="nimguard-pair-")
    out = {}
    try:
        for host, port in zip(HOSTS, PORTS):
            env = pair_env(port, os.path.join(base, host))
            cluster_cmd(env, "up")
            out[host] = (Cluster(env), env)
        yield out
    finally:
        for host, port in zip(HOSTS, PORTS):
            cluster_cmd(pair_env(port, os.path.join(base, host)), "down")
        shutil.rmtree(base, ignore_errors=True)


def site(pair, services, extra_vars=None):
    tmp = tempfile.mkdtemp(prefix="nimguard-pair-site-")
    hosts = dict((host, {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                         "nimguard_kubeconfig": c.kubeconfig}) for host, (c, env) in pair.items())
    inventory = {"clusters": {"hosts": hosts, "vars": {
        "nim_rollout_namespace": "nim-pair", "nim_rollout_ngc_api_key": KEY,
        "nim_rollout_services": services, "nim_rollout_wait": False,  # no nodes: nothing would become ready
        "nim_rollout_image_scan": {"enabled": False, "disabled_reason": "test clusters without nodes"}}},
        "gpu_nodes": {"hosts": {}}}
    path = os.path.join(tmp, "hosts.yml")
    with open(path, "w") as f:
        yaml.safe_dump(inventory, f)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", path,
           os.path.join(str(ROOT), "playbooks", "site.yml"), "--forks", "2"]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    for var in ("KUBECONFIG", "K8S_AUTH_KUBECONFIG"):  # each host's own kubeconfig, nothing else
        env.pop(var, None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    proc.output = proc.stdout + proc.stderr
    shutil.rmtree(tmp, ignore_errors=True)
    return proc


def host_recap(proc, host):
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(host + " ") and "ok=" in ln]
    assert lines, proc.output[-4000:]
    return recap(type("P", (), {"stdout": lines[-1], "output": proc.output})())


def deployments(cluster):
    return sorted(d["metadata"]["name"] for d in cluster.get_json("deployments", "-n", "nim-pair")["items"])


def writes(cluster, mark):
    """What the run wrote; the doctor's access reviews are questions (a create that stores nothing)."""
    return [e["requestURI"] for e in cluster.audit_events(mark, verbs=WRITES, user=cluster.user)
            if (e.get("objectRef") or {}).get("resource") != "selfsubjectaccessreviews"]


def svc(name):
    return {"name": name, "image": IMAGE, "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}


def test_one_run_converges_both_a_stopped_one_fails_alone_and_a_rerun_changes_nothing(pair):
    (canary, canary_env), (fleet, fleet_env) = pair["canary"][:2], pair["fleet"][:2]
    proc = site(pair, [svc("one")])
    assert proc.returncode == 0, proc.output[-6000:]
    for host, (c, env) in pair.items():
        assert host_recap(proc, host)["changed"] > 0 and deployments(c) == ["one"], host

    marks = dict((host, c.audit_mark()) for host, (c, env) in pair.items())
    proc = site(pair, [svc("one")])
    assert proc.returncode == 0, proc.output[-6000:]
    for host, (c, env) in pair.items():
        assert host_recap(proc, host)["changed"] == 0, (host, proc.output[-4000:])
        assert writes(c, marks[host]) == [], host

    # the fleet's API server stopped: the canary still converges a second service, the fleet fails clearly
    cluster_cmd(fleet_env, "apiserver", "stop")
    try:
        proc = site(pair, [svc("one"), svc("two")])
    finally:
        cluster_cmd(fleet_env, "apiserver", "start")
    assert proc.returncode != 0, proc.output[-6000:]
    assert host_recap(proc, "canary")["failed"] == 0 and deployments(canary) == ["one", "two"], proc.output[-6000:]
    assert host_recap(proc, "fleet")["failed"] == 1, proc.output[-6000:]
    fatal = [ln for ln in proc.stdout.splitlines() if ln.startswith("fatal: [fleet]")]
    assert fatal and "127.0.0.1:%d" % PORTS[1] in proc.output and "Fix" in proc.output, proc.output[-6000:]
    assert "Traceback" not in proc.output

    # once it answers again, a run converges the fleet and changes nothing on the canary
    marks = dict((host, c.audit_mark()) for host, (c, env) in pair.items())
    proc = site(pair, [svc("one"), svc("two")])
    assert proc.returncode == 0, proc.output[-6000:]
    assert host_recap(proc, "canary")["changed"] == 0 and writes(canary, marks["canary"]) == []
    assert host_recap(proc, "fleet")["changed"] > 0 and deployments(fleet) == ["one", "two"]


def test_canary_order_stops_before_the_fleet_when_the_canary_fails(pair):
    (canary, canary_env), (fleet, fleet_env) = pair["canary"][:2], pair["fleet"][:2]
    proc = site(pair, [svc("one")], CANARY)
    assert proc.returncode == 0, proc.output[-6000:]
    mark = fleet.audit_mark()

    cluster_cmd(canary_env, "apiserver", "stop")
    try:
        proc = site(pair, [svc("one"), svc("three")], CANARY)
    finally:
        cluster_cmd(canary_env, "apiserver", "start")
    assert proc.returncode != 0 and "NO MORE HOSTS LEFT" in proc.output, proc.output[-6000:]
    assert host_recap(proc, "canary")["failed"] == 1, proc.output[-6000:]
    # the fleet ran only the read-only input checks that precede every write (site.yml's first play)
    assert host_recap(proc, "fleet")["changed"] == 0 and host_recap(proc, "fleet")["failed"] == 0, proc.output[-4000:]
    assert writes(fleet, mark) == [] and "three" not in deployments(fleet)

    # the canary back: the same run goes through both, one batch after the other
    proc = site(pair, [svc("one"), svc("three")], CANARY)
    assert proc.returncode == 0, proc.output[-6000:]
    assert "three" in deployments(canary) and "three" in deployments(fleet)
