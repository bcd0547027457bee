"""The real node's test images (scripts/localcluster/images.sh, scripts/localcluster/testimages), proven without
the cluster: the Go tests, reproducible archives, the fake NIM binary as an arbitrary non-root uid, and,
where Debian's containerd is installed, the images imported into a private containerd and run with a
read-only root filesystem, including the collection's own rendered commands (file delivery wrapper and
the non-root CA init container)."""

import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
import uuid

import pytest

from ansible_collections.nimguard.k8s.plugins.module_utils import pod
from ansible_collections.nimguard.k8s.plugins.module_utils.specs import service_options

ROOT = Path(__file__).resolve().parents[2]
IMAGES_SH = ROOT / "scripts" / "localcluster" / "images.sh"
MODULE = ROOT / "scripts" / "localcluster" / "testimages"
FAKENIM, PAUSE = "docker.io/local/fakenim:1", "docker.io/local/pause:1"
KEY, NEW_KEY = "nvapi-test-images-" + uuid.uuid4().hex, "nvapi-test-images-" + uuid.uuid4().hex


def sha12(v):
    return hashlib.sha256(v.encode()).hexdigest()[:12]


def run(cmd, timeout=120, check=True, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%s):\n%s\n%s" % (cmd, proc.returncode, proc.stdout, proc.stderr))
    return proc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    """(status, JSON body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_until(what, fn, bound=60):
    """Poll fn until it returns a true value; the bound only stops a hang."""
    deadline = time.monotonic() + bound
    while True:
        try:
            value = fn()
        except (OSError, ValueError):
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, "gave up waiting for " + what
        time.sleep(0.2)


def ready(port):
    return wait_until("fake NIM ready on %d" % port, lambda: get(port, "/v1/health/ready")[0] == 200)


@pytest.fixture(scope="module")
def images():
    """Build (cached) the binaries and archives; the paths images.sh reports."""
    out = run(["bash", str(IMAGES_SH), "build"], timeout=900).stdout
    paths = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {"bin": Path(paths["TESTIMAGES_BIN"]), "dir": Path(paths["IMAGES_DIR"])}


def test_go_tests_pass():
    proc = run(["go", "test", "-count=1", "./..."], cwd=MODULE, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok  \tnimguard.local/testimages/internal/fakenim" in proc.stdout
    assert "ok  \tnimguard.local/testimages/internal/fakegpu" in proc.stdout


def test_archives_are_reproducible(images, tmp_path):
    """A second assembly from a fresh staging folder gives the same bytes, hence the same digests."""
    script = ('source scripts/lib/common.sh; source scripts/localcluster/build.sh; source scripts/localcluster/images.sh; '
              '_images_paths; _mkimages "$1"')
    run(["bash", "-c", script, "-", str(tmp_path)], cwd=ROOT)
    for name in ("pause", "fakenim"):
        for ext in ("tar", "digest"):
            assert (tmp_path / (name + "." + ext)).read_bytes() == (images["dir"] / (name + "." + ext)).read_bytes()
    index = json.loads(run(["tar", "-xOf", str(images["dir"] / "fakenim.tar"), "index.json"]).stdout)
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == FAKENIM
    assert index["manifests"][0]["digest"] == (images["dir"] / "fakenim.digest").read_text().strip()


def test_fakenim_binary_as_arbitrary_uid(images):
    """Any non-root uid, key from a file, a rotated file seen without a restart, SIGTERM exits 0."""
    keydir = Path(tempfile.mkdtemp(prefix="fakenim-key-"))
    try:
        keydir.chmod(0o755)
        keyfile = keydir / "NGC_API_KEY"
        keyfile.write_text(KEY + "\n")
        keyfile.chmod(0o444)
        port = free_port()
        env = {"PATH": "/usr/bin:/bin", "NIM_SERVER_PORT": str(port), "NGC_API_KEY_FILE": str(keyfile)}
        proc = subprocess.Popen(["setpriv", "--reuid", "4242", "--regid", "4343", "--clear-groups",
                                 str(images["bin"] / "fakenim")], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            ready(port)
            key = get(port, "/v1/debug/key")[1]
            assert key == {"source": "file:%s" % keyfile, "sha256_12": sha12(KEY), "ready": True, "reason": ""}
            env_report = get(port, "/v1/debug/env")[1]
            assert env_report == {"sensitive_names": ["NGC_API_KEY_FILE"], "key_in_env": False}
            # Rotation as a Secret volume does it: a new file renamed over the old one.
            (keydir / "new").write_text(NEW_KEY)
            os.replace(keydir / "new", keyfile)
            wait_until("the rotated key", lambda: get(port, "/v1/debug/key")[1]["sha256_12"] == sha12(NEW_KEY))
            keyfile.unlink()
            wait_until("not ready without the key file", lambda: get(port, "/v1/health/ready")[0] == 503)
            assert "cannot read the key file" in get(port, "/v1/health/ready")[1]["reason"]
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, out
        assert KEY not in out and NEW_KEY not in out
        assert "sha256_12=%s" % sha12(NEW_KEY) in out
    finally:
        shutil.rmtree(keydir)


def test_client_subcommands(images):
    fakenim = str(images["bin"] / "fakenim")
    port = free_port()
    server = subprocess.Popen([fakenim, "serve"], env={"NIM_SERVER_PORT": str(port), "NGC_API_KEY": KEY},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready(port)
        chat = run([fakenim, "post", "http://127.0.0.1:%d/v1/chat/completions" % port,
                    '{"messages":[{"role":"user","content":"ping"}]}', "--timeout", "5s"])
        assert json.loads(chat.stdout)["choices"][0]["message"]["content"] == "fake NIM echo: ping"
        assert run([fakenim, "get", "http://127.0.0.1:%d/v1/nothing" % port], check=False).returncode == 1
        assert run([fakenim, "probe", "127.0.0.1:%d" % port]).stdout.startswith("connected")
    finally:
        server.terminate()
        server.wait(timeout=30)
    refused = run([fakenim, "probe", "--timeout", "2s", "127.0.0.1:%d" % port], check=False)
    assert refused.returncode == 1 and refused.stdout.startswith("refused"), refused.stdout
    assert run([fakenim, "probe"], check=False).returncode == 2


# ---- in a private containerd -----------------------------------------------------------------------

class Containerd(object):
    """Debian's containerd with everything (root, state, sockets) in one temp folder; no CRI."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="ngimg-", dir="/tmp"))  # short: socket paths are limited
        self.address = str(self.dir / "c.sock")
        (self.dir / "config.toml").write_text(
            'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            '[grpc]\n  address = "{d}/c.sock"\n[ttrpc]\n  address = "{d}/c.sock.ttrpc"\n'
            '[plugins."io.containerd.internal.v1.opt"]\n  path = "{d}/opt"\n'.format(d=self.dir))
        self.log = open(self.dir / "containerd.log", "w")
        self.proc = subprocess.Popen(["containerd", "--config", str(self.dir / "config.toml")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_until("containerd", lambda: self.ctr("version", check=False).returncode == 0, bound=30)

    def ctr(self, *args, check=True, timeout=120):
        return run(["ctr", "--address", self.address, "-n", "k8s.io"] + list(args), check=check, timeout=timeout)

    def stop(self):
        for cid in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("task", "delete", "--force", cid, check=False)
            self.ctr("containers", "delete", cid, check=False)
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.dir))]
        for m in reversed(mounts):
            subprocess.run(["umount", m], check=False)
        shutil.rmtree(self.dir)
        return mounts


@pytest.fixture(scope="module")
def containerd(images):
    missing = [c for c in ("containerd", "ctr", "runc") if not shutil.which(c)]
    if missing:
        pytest.skip("%s not installed (scripts/setup installs Debian's containerd and runc)" % ", ".join(missing))
    c = Containerd()
    try:
        c.first_import = run(["bash", str(IMAGES_SH), "import", c.address]).stderr
        yield c
    finally:
        left = c.stop()
    assert not left, "mounts left behind: %s" % left


def test_import_is_idempotent(images, containerd):
    first = containerd.first_import  # the fixture's: into an empty containerd
    assert first.count("importing docker.io/local/") == 4, first  # start and done lines
    second = run(["bash", str(IMAGES_SH), "import", containerd.address])
    assert "importing" not in second.stderr and second.stderr.count("already imported") == 2, second.stderr
    listed = dict((line.split()[0], line.split()[2]) for line in containerd.ctr("images", "ls").stdout.splitlines()[1:])
    for ref, name in ((FAKENIM, "fakenim"), (PAUSE, "pause")):
        assert listed[ref] == (images["dir"] / (name + ".digest")).read_text().strip()


def start(containerd, cid, port, env, mounts=(), args=(), image=FAKENIM):
    """Run the image detached with a read-only root filesystem, the image's user, host network."""
    cmd = ["run", "-d", "--read-only", "--net-host", "--seccomp", "--log-uri", "file://%s/%s.log" % (containerd.dir, cid)]
    for k, v in dict(env, NIM_SERVER_PORT=str(port)).items():
        cmd += ["--env", "%s=%s" % (k, v)]
    for src, dst, opt in mounts:
        cmd += ["--mount", "type=bind,src=%s,dst=%s,options=rbind:%s" % (src, dst, opt)]
    containerd.ctr(*(cmd + [image, cid] + list(args)))


def stop(containerd, cid):
    """SIGTERM, then the task's log. `ctr task delete` exits with the task's exit status, so check=True proves the
    fake NIM took its SIGTERM path (it exits 0 there only). Nothing is asserted on the log's last line: the log is
    the shim's copy of the task's output, and containerd's file logger drops an exiting task's last write at times
    (the final 'stopped' line was missing in 4 runs of 15 here, still after 30 s with the task not yet deleted)."""
    containerd.ctr("task", "kill", "-s", "SIGTERM", cid)
    wait_until("%s stopped" % cid, lambda: "STOPPED" in containerd.ctr("task", "ls").stdout.split(cid, 1)[1].split("\n")[0])
    try:
        containerd.ctr("task", "delete", cid)
    finally:
        containerd.ctr("containers", "delete", cid)
    return (containerd.dir / (cid + ".log")).read_text()


def test_fakenim_image_read_only_non_root(containerd):
    port = free_port()
    start(containerd, "fn-env", port, {"NGC_API_KEY": KEY})
    try:
        ready(port)
        assert get(port, "/v1/debug/key")[1]["source"] == "env:NGC_API_KEY"
        assert get(port, "/v1/debug/key")[1]["sha256_12"] == sha12(KEY)
        ids = containerd.ctr("task", "exec", "--exec-id", "id", "fn-env", "/bin/sh", "-c", "id -u; id -g").stdout
        assert ids.split() == ["1000", "2000"]
        write = containerd.ctr("task", "exec", "--exec-id", "w", "fn-env", "/bin/sh", "-c", "touch /x", check=False)
        assert write.returncode != 0 and "Read-only file system" in write.stderr + write.stdout
        assert containerd.ctr("task", "exec", "--exec-id", "t", "fn-env", "/bin/sh", "-c", "test -e /tmp",
                              check=False).returncode == 1  # no /tmp in the image: pods mount an emptyDir
    finally:
        log = stop(containerd, "fn-env")
    assert "key: source=env:NGC_API_KEY sha256_12=%s" % sha12(KEY) in log and KEY not in log


def test_pause_image_exits_zero_on_sigterm(containerd):
    proc = subprocess.Popen(["ctr", "--address", containerd.address, "-n", "k8s.io", "run", "--rm", "--null-io",
                             "--read-only", PAUSE, "pause-t"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until("pause running", lambda: "RUNNING" in containerd.ctr("task", "ls").stdout)
    containerd.ctr("task", "kill", "-s", "SIGTERM", "pause-t")
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out


def _rendered_pod():
    """The collection's own pod spec for file delivery and a custom CA, with the fake NIM image."""
    args = dict(name="fake", namespace="t", auth_secret="ngc-api", image=dict(repository="docker.io/local/fakenim", tag="1"),
                secret_delivery=dict(mode="file"),
                outbound_proxy=dict(cert_config_map="custom-ca", https_proxy="http://u:pw@proxy.invalid:3128",
                                    no_proxy="127.0.0.1,localhost"))
    template = pod.render_pod_spec(service_options(args))[0]
    return template["spec"]


def _ca_and_server_cert(d):
    """A custom CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    def ossl(*a):
        run(["openssl"] + list(a), cwd=d)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
         "-subj", "/CN=nimguard test images CA")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (Path(d) / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.crt",
         "-days", "1", "-extfile", "ext")


def test_collection_pod_spec_runs_in_the_image(containerd, tmp_path):
    """The rendered init container builds the bundle as uid 1000 on a read-only root; the rendered file
    delivery wrapper starts the fake NIM, which reads the key file and trusts the custom CA."""
    spec = _rendered_pod()
    init = [c for c in spec["initContainers"] if c["name"] == "build-ca-bundle"][0]
    main = spec["containers"][0]
    mount_of = dict((m["name"], m["mountPath"]) for m in main["volumeMounts"] + init["volumeMounts"])
    work = Path(tempfile.mkdtemp(prefix="ngimg-pod-"))
    try:
        for sub in ("ca-source", "ca-bundle", "secrets", "tmp"):
            (work / sub).mkdir()
        _ca_and_server_cert(str(tmp_path))
        shutil.copy(str(tmp_path / "ca.crt"), str(work / "ca-source" / "ca.crt"))
        (work / "secrets" / "NGC_API_KEY").write_text(KEY)
        os.chown(work / "ca-bundle", 1000, 2000)
        os.chown(work / "tmp", 1000, 2000)
        for p in [work] + [work / s for s in ("ca-source", "secrets")] + list((work / "ca-source").iterdir()) + \
                [work / "secrets" / "NGC_API_KEY"]:
            p.chmod(0o755 if p.is_dir() else 0o444)

        # The init container, as rendered: /bin/sh -c CA_INIT_SCRIPT, run to completion.
        init_run = containerd.ctr("run", "--rm", "--read-only", "--seccomp",
                                  "--mount", "type=bind,src=%s,dst=%s,options=rbind:ro" % (work / "ca-source", mount_of["ca-source"]),
                                  "--mount", "type=bind,src=%s,dst=%s,options=rbind:rw" % (work / "ca-bundle", mount_of["ca-bundle"]),
                                  init["image"], "ca-init", *init["command"], check=False)
        assert init_run.returncode == 0, init_run.stdout + init_run.stderr
        assert "CA bundle built with 1 certificates" in init_run.stdout
        assert init["image"] == FAKENIM

        # An HTTPS server on loopback whose certificate the custom CA signed.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tmp_path / "srv.crt"), str(tmp_path / "srv.key"))
        httpd = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
        httpd.RequestHandlerClass.log_message = lambda *a: None
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()

        # The main container, as rendered: command, args and plain env (valueFrom never appears: file mode).
        assert all("valueFrom" not in e for e in main["env"])
        env = dict((e["name"], e["value"]) for e in main["env"])
        assert KEY not in json.dumps(spec)
        port = free_port()
        start(containerd, "fn-file", port, env, args=main["command"] + main["args"], mounts=[
            (work / "secrets", mount_of["nim-secrets"], "ro"), (work / "ca-bundle", mount_of["ca-bundle"], "ro"),
            (work / "tmp", "/tmp", "rw")])
        try:
            ready(port)
            key = get(port, "/v1/debug/key")[1]
            assert key["source"] == "file:%s/NGC_API_KEY" % mount_of["nim-secrets"]
            assert key["sha256_12"] == sha12(KEY)
            ca = get(port, "/v1/debug/ca")[1]
            assert ca["path"] == env["SSL_CERT_FILE"] and ca["subjects"] == ["CN=nimguard test images CA"], ca
            proxy = get(port, "/v1/debug/proxy?url=https://api.ngc.nvidia.com/")[1]
            assert proxy["proxy"] == "http://u:REDACTED@proxy.invalid:3128" and "pw" not in json.dumps(proxy)
            target = "https://127.0.0.1:%d/" % httpd.server_address[1]
            fetched = get(port, "/v1/debug/fetch?url=" + urllib.request.quote(target, safe=""))[1]
            assert fetched.get("status") == 200, fetched  # trusted through the bundle; NO_PROXY keeps it direct
        finally:
            log = stop(containerd, "fn-file")
            httpd.shutdown()
        assert KEY not in log
    finally:
        shutil.rmtree(work)
