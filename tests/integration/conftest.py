"""Fixtures for tests against the embedded local cluster (scripts/cluster): a real API server."""

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = str(ROOT / "scripts" / "cluster")


def pytest_configure(config):
    # Also in pytest.ini; registered here too so `-m integration` works from any rootdir/ini.
    config.addinivalue_line("markers", "integration: needs the local Kubernetes cluster (scripts/cluster up)")


# Last: the files whose tests use Trivy or kube-score, which a cold run builds while the other tests run.
LATE = ("test_static_checks.py", "test_image_scan.py")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.fspath.basename in LATE)  # stable: the order stays within each group


def _cluster_env(extra_env=None):
    """What `scripts/cluster env` exports; extra_env (NIMGUARD_STATE, ports) picks another local cluster."""
    out = subprocess.run([CLUSTER, "env"], env=dict(os.environ, **(extra_env or {})), capture_output=True, text=True,
                         check=True).stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export "):
            key, value = line[len("export "):].split("=", 1)
            env[key] = value
    env["PATH"] = env.get("PATH", "").replace("$PATH", os.environ.get("PATH", ""))
    return env


class Cluster(object):
    def __init__(self, extra_env=None):
        exported = _cluster_env(extra_env)
        self.kubeconfig = exported["KUBECONFIG"]
        self.limited_kubeconfig = exported["NIMGUARD_LIMITED_KUBECONFIG"]
        self.kubectl_path = exported["NIMGUARD_KUBECTL"]
        self.audit_log = exported["NIMGUARD_AUDIT_LOG"]
        self.state = exported["NIMGUARD_STATE"]
        self.env = dict(os.environ)
        self.env.update(extra_env or {})
        self.env.update(exported)

    def kubectl(self, *args, input=None, check=True, kubeconfig=None):
        proc = subprocess.run([self.kubectl_path, "--kubeconfig", kubeconfig or self.kubeconfig] + list(args),
                              input=input, capture_output=True, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("kubectl %s failed (%s): %s" % (" ".join(args), proc.returncode, proc.stderr))
        return proc

    def get_json(self, *args):
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def audit_mark(self):
        self._settle()
        return os.path.getsize(self.audit_log)

    def _settle(self):
        """The log backend writes each event as the request completes; wait until the size is stable."""
        last = -1
        for attempt in range(20):  # pylint: disable=unused-variable
            size = os.path.getsize(self.audit_log)
            if size == last:
                return
            last = size
            time.sleep(0.15)

    def audit_events(self, since_mark, verbs=None, user=None, namespace=None):
        self._settle()
        with open(self.audit_log, "rb") as f:
            f.seek(since_mark)
            lines = f.read().decode("utf-8", "replace").splitlines()
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if verbs and event.get("verb") not in verbs:
                continue
            if user and event.get("user", {}).get("username") != user:
                continue
            if namespace and (event.get("objectRef") or {}).get("namespace") != namespace:
                continue
            events.append(event)
        return events


def build_tools(*names, tools=()):
    """The values of scripts/localcluster/build.sh settings (tool folders, charts, versions) once its build_tools has built
    `tools` (helm, kube-score, trivy; none: only read the settings): it returns at once when they are built, builds
    them when not, and waits while another process builds them (scripts/test starts that build at its beginning)."""
    build = "build_tools %s >&2 && " % " ".join(tools) if tools else ""
    script = ("source scripts/lib/common.sh && source scripts/localcluster/build.sh && " + build + "printf '%s\\n' "
              + " ".join('"$%s"' % n for n in names))
    proc = subprocess.run(["bash", "-c", script], cwd=str(ROOT), capture_output=True, text=True, timeout=2400,
                          check=False)
    assert proc.returncode == 0, "scripts/localcluster/build.sh build_tools failed:\n" + proc.stderr[-3000:]
    return proc.stdout.splitlines()


@pytest.fixture(scope="session")
def cluster():
    started = subprocess.run([CLUSTER, "status"], capture_output=True, check=False).returncode != 0
    if started:
        subprocess.run([CLUSTER, "up"], check=True)
    try:
        yield Cluster()
    finally:
        if started:
            subprocess.run([CLUSTER, "down"], check=False)


@pytest.fixture
def namespace(cluster):
    name = "t-" + uuid.uuid4().hex[:8]
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/audit=restricted", "pod-security.kubernetes.io/warn=restricted")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
