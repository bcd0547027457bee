"""Fixtures for tests against the embedded local cluster (scripts/cluster): a real API server."""

import atexit
import datetime
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

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


def _identity(pki, cn, org, base_kubeconfig, directory):
    """A client certificate of the cluster CA for user `cn` in group `org`, and a copy of `base_kubeconfig` that
    uses it. Each test session acts under identities of its own, so the audit log tells its writes from those of
    anyone else using the same cluster (another session, a helper, a site run)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    ca_cert = x509.load_pem_x509_certificate(open(os.path.join(pki, "ca.crt"), "rb").read())
    ca_key = serialization.load_pem_private_key(open(os.path.join(pki, "ca.key"), "rb").read(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                                     x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    crt, pem = os.path.join(directory, cn + ".crt"), os.path.join(directory, cn + ".key")
    with open(crt, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    cfg = yaml.safe_load(open(base_kubeconfig))
    for user in cfg["users"]:
        user["user"] = {"client-certificate": crt, "client-key": pem}
    path = os.path.join(directory, cn + ".kubeconfig")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


class Cluster(object):
    def __init__(self, extra_env=None):
        exported = _cluster_env(extra_env)
        self.state = exported["NIMGUARD_STATE"]
        self.admin_kubeconfig = exported["KUBECONFIG"]
        # This session's identities: an admin (system:masters, like the cluster's own admin) and a user with no
        # rights at all (group nimguard:limited has no binding, like the cluster's `limited` user).
        session = uuid.uuid4().hex[:8]
        self.user, self.limited_user = "nimguard-test-" + session, "nimguard-limited-" + session
        self._identity_dir = tempfile.mkdtemp(prefix="nimguard-identity-")
        atexit.register(shutil.rmtree, self._identity_dir, True)
        pki = os.path.join(self.state, "pki")
        self.kubeconfig = _identity(pki, self.user, "system:masters", self.admin_kubeconfig, self._identity_dir)
        self.limited_kubeconfig = _identity(pki, self.limited_user, "nimguard:limited",
                                            exported["NIMGUARD_LIMITED_KUBECONFIG"], self._identity_dir)
        exported.update(KUBECONFIG=self.kubeconfig, K8S_AUTH_KUBECONFIG=self.kubeconfig,
                        NIMGUARD_LIMITED_KUBECONFIG=self.limited_kubeconfig)
        self.kubectl_path = exported["NIMGUARD_KUBECTL"]
        self.audit_log = exported["NIMGUARD_AUDIT_LOG"]
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
    # Only a cluster this session started is stopped at its end. One that runs in part (status 4: another
    # session restarts a component of it) is waited for by `up`, never restarted: that would wipe it for all.
    status = subprocess.run([CLUSTER, "status"], capture_output=True, check=False).returncode
    started = status == 1
    if status != 0:
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
