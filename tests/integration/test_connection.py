"""Kubeconfigs as users have them, against the real API server (its TLS, client certificates, tokens and RBAC):
KUBECONFIG=a:b merged as kubectl merges, tls-server-name, exec credentials refreshed at their expiry and on a 401,
the API proxy from module_defaults for the whole group (credentials, no_proxy) with nim_service in it,
impersonation, strict booleans for certificate checks, and client keys held in memory (issues 19 and 20)."""

import base64
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import uuid
import urllib.error
import urllib.request

import pytest
import yaml

from playbook import run_play

from ansible_collections.nimguard.k8s.plugins.module_utils import client, kubeconfig
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError

IMAGE = {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"}
KEY = "nvapi-CONNECTION-" + uuid.uuid4().hex  # a canary, made per run (no key-shaped literal in the tree)


@pytest.fixture
def tmp(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    return tmp_path


def _session(cluster):
    """The session identity's kubeconfig: server, CA path, client certificate and key paths."""
    doc = yaml.safe_load(open(cluster.kubeconfig))
    return doc["clusters"][0]["cluster"], doc["users"][0]["user"]


def _write(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    os.chmod(str(path), 0o600)
    return str(path)


def _kubeconfig(server, ca, user, context="main", cluster_extra=None):
    body = dict({"server": server, "certificate-authority": ca}, **(cluster_extra or {}))
    return {"apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "c-" + context, "cluster": body}],
            "contexts": [{"name": context, "context": {"cluster": "c-" + context, "user": "u-" + context}}],
            "users": [{"name": "u-" + context, "user": user}]}


def _info(**conn):
    """A nim_info task listing Namespaces (allowed for the session admin): it only reads."""
    return {"nimguard.k8s.nim_info": dict(kind="Namespace", **conn)}


class _Splice(object):
    """Loopback TCP relay: copies bytes both ways between an accepted socket and the API server."""

    def __init__(self, listen_host, upstream, handshake=None):
        self.upstream, self.handshake = upstream, handshake
        self.sock = socket.socket()
        self.sock.bind((listen_host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connects, self.auth_seen = 0, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, dummy = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            if self.handshake and not self.handshake(self, conn):
                conn.close()
                return
            up = socket.create_connection(self.upstream)
        except OSError:
            conn.close()
            return
        self.connects += 1
        for a, b in ((conn, up), (up, conn)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def _connect_proxy(credentials):
    """The handshake of an HTTP CONNECT proxy that wants `user:password` in Proxy-Authorization."""
    wanted = "Basic " + base64.b64encode(credentials.encode()).decode()

    def handshake(relay, conn):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return False
            head += chunk
        lines = head.decode("latin-1").split("\r\n")
        headers = dict((k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line))
        relay.auth_seen.append(headers.get("proxy-authorization"))
        if not lines[0].startswith("CONNECT ") or headers.get("proxy-authorization") != wanted:
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n"
                         b"Content-Length: 0\r\n\r\n")
            return False
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return True
    return handshake


# --- KUBECONFIG=a:b ------------------------------------------------------------------------------------------

def test_kubeconfig_list_merged_as_kubectl_merges(cluster, tmp):
    """Two files, each with its own context and relative paths to its own copies of the credentials: the
    second file's context works (before: "no context named 'prod-b'"), current-context comes from the first
    file that sets it, and a name in both files means the first file's entry."""
    server, user = _session(cluster)
    for folder in ("a", "b"):
        (tmp / folder).mkdir()
        for name, src in (("ca.crt", server["certificate-authority"]), ("user.crt", user["client-certificate"]),
                          ("user.key", user["client-key"])):
            shutil.copy(src, str(tmp / folder / name))
    relative = {"client-certificate": "user.crt", "client-key": "user.key"}
    a = _kubeconfig(server["server"], "ca.crt", relative, context="prod-a")
    a.pop("current-context")
    b = _kubeconfig(server["server"], "ca.crt", relative, context="prod-b")
    # the same cluster name in b points at a dead port: a's entry must win for context prod-a
    b["clusters"].append({"name": "c-prod-a", "cluster": {"server": "https://127.0.0.1:9", "certificate-authority": "x"}})
    paths = ":".join([_write(tmp / "a" / "config", a), _write(tmp / "b" / "config", b)])
    env = {"KUBECONFIG": paths, "K8S_AUTH_KUBECONFIG": ""}
    tasks = [_info(), _info(context="prod-b"), _info(context="prod-a"), _info(kubeconfig=paths, context="prod-b")]
    play = run_play(cluster, tasks, env=env)
    for result in play.results:
        assert not result.get("failed") and result["resources"], play


# --- tls-server-name -----------------------------------------------------------------------------------------

def test_tls_server_name_is_the_name_checked_and_sent(cluster, tmp):
    """The API server reached at 127.0.0.2 (a TCP relay), an address its certificate does not name: with
    tls-server-name `kubernetes` (in the certificate) the connection is verified and works; with a name the
    certificate lacks it fails verification; without tls-server-name it fails (the old behaviour with it set)."""
    server, user = _session(cluster)
    host, port = server["server"].split("//")[1].split(":")
    relay = _Splice("127.0.0.2", (host, int(port)))
    try:
        url = "https://127.0.0.2:%d" % relay.port
        configs = [_write(tmp / ("%s.kubeconfig" % name),
                          _kubeconfig(url, server["certificate-authority"], user, cluster_extra=extra))
                   for name, extra in (("named", {"tls-server-name": "kubernetes"}),
                                       ("wrong", {"tls-server-name": "api.example.com"}), ("plain", {}))]
        play = run_play(cluster, [_info(kubeconfig=path, retry_timeout=0) for path in configs])
        named, wrong, plain = play.results
        assert not named.get("failed") and named["resources"], named
        assert wrong.get("failed") and "TLS verification" in wrong["msg"] and "api.example.com" in wrong["msg"], wrong
        assert plain.get("failed") and "TLS verification" in plain["msg"] and "tls-server-name" in plain["msg"], plain
    finally:
        relay.close()


# --- exec credentials refreshed ------------------------------------------------------------------------------

PLUGIN = r'''#!%(python)s
"""Stand-in exec credential plugin: call N hands out a ServiceAccount token bound to Secret tok-N (deleting that
Secret revokes the token), valid for EXPIRES_IN seconds as expirationTimestamp says when that is set."""
import datetime, json, os, subprocess
state = os.environ["STATE"]
count = len(os.listdir(state)) + 1
token = subprocess.run([os.environ["KUBECTL"], "--kubeconfig", os.environ["ADMIN"], "-n", os.environ["NS"], "create",
                        "token", "probe", "--bound-object-kind", "Secret", "--bound-object-name", "tok-%%d" %% count,
                        "--duration", "10m"], capture_output=True, text=True, check=True).stdout.strip()
with open(os.path.join(state, str(count)), "w") as f:
    f.write(token)
status = {"token": token}
if os.environ.get("EXPIRES_IN"):
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=int(os.environ["EXPIRES_IN"]))
    status["expirationTimestamp"] = when.strftime("%%Y-%%m-%%dT%%H:%%M:%%SZ")
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status}))
'''


def _run(argv, env_update=None, timeout=None):
    proc = subprocess.run(argv, env=dict(os.environ, **(env_update or {})), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def exec_user(cluster, namespace, tmp, monkeypatch):
    """(make a Client for a kubeconfig whose user is the stand-in plugin, the plugin's state folder, revoke(n))."""
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "probe")
    for n in (1, 2, 3):
        cluster.kubectl("-n", namespace, "create", "secret", "generic", "tok-%d" % n)
    plugin, state = tmp / "plugin", tmp / "state"
    state.mkdir()
    plugin.write_text(PLUGIN % {"python": sys.executable})
    plugin.chmod(stat.S_IRWXU)
    server, dummy = _session(cluster)
    monkeypatch.setitem(kubeconfig.COMMAND_RUNNER, "run", _run)

    def make(expires_in=None):
        env = {"STATE": str(state), "KUBECTL": cluster.kubectl_path, "ADMIN": cluster.kubeconfig, "NS": namespace}
        if expires_in:
            env["EXPIRES_IN"] = str(expires_in)
        user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
                         "env": [{"name": k, "value": v} for k, v in env.items()], "interactiveMode": "Never"}}
        path = _write(tmp / "exec.kubeconfig", _kubeconfig(server["server"], server["certificate-authority"], user))
        conn = kubeconfig.connection_params({"kubeconfig": path}, env={})
        return client.Client(kubeconfig.resolve_config(conn, env={}), retry_timeout=0)

    def revoke(n):
        """Delete Secret tok-n and wait until the API server refuses the token bound to it (its token
        cache keeps a valid answer for about 10 s)."""
        token = (state / str(n)).read_text()
        cluster.kubectl("-n", namespace, "delete", "secret", "tok-%d" % n)
        ctx = ssl.create_default_context(cafile=server["certificate-authority"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            request = urllib.request.Request(server["server"] + "/apis", headers={"Authorization": "Bearer " + token})
            try:
                urllib.request.urlopen(request, context=ctx, timeout=10).read()
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    return
            time.sleep(1)
        raise AssertionError("the token bound to tok-%d was still accepted after 60 s" % n)

    return make, state, revoke


def test_exec_credential_refreshed_when_the_api_server_refuses_it(exec_user):
    make, state, revoke = exec_user
    api = make()
    assert api.request("GET", "/apis")[0] == 200 and len(os.listdir(str(state))) == 1
    revoke(1)
    assert api.request("GET", "/apis")[0] == 200  # a 401, the plugin run again, the request sent again
    assert sorted(os.listdir(str(state))) == ["1", "2"]


def test_exec_credential_refreshed_at_its_expiration_timestamp(exec_user):
    """The credential says it runs out in 15 s; the client renews it (10 s ahead, as client-go does) before
    sending with it, so the API server never sees the revoked token: one request each, no 401 retried."""
    make, state, revoke = exec_user
    api, start = make(expires_in=15), time.monotonic()
    assert api.request("GET", "/apis")[0] == 200 and len(os.listdir(str(state))) == 1
    revoke(1)
    time.sleep(max(0, start + 6 - time.monotonic()))  # past the expiry minus the 10 s renewed ahead
    assert api.request("GET", "/apis")[0] == 200
    assert sorted(os.listdir(str(state))) == ["1", "2"] and api.requests == 2


def test_a_credential_the_plugin_cannot_renew_fails_as_unauthorized(exec_user):
    make, state, revoke = exec_user
    api = make()
    api.request("GET", "/apis")
    revoke(1)
    api.cfg.exec_spec["env"].append({"name": "KUBECTL", "value": "/bin/false"})  # the plugin now fails
    with pytest.raises(NimError) as e:
        api.request("GET", "/apis")
    assert "exec plugin" in e.value.msg and "failed with exit code 1" in e.value.msg


# --- the API proxy from module_defaults, with nim_service in the group ----------------------------------------

def test_group_proxy_with_credentials_reaches_nim_service_and_never_shows(cluster, namespace):
    """`proxy` in module_defaults for group/nimguard.k8s.k8s (kubernetes.core's name for the API proxy): every
    module, nim_service included (before: "argument 'proxy' is of type str"), goes through a CONNECT proxy that
    wants credentials, which travel as Proxy-Authorization and appear nowhere in the output at -vvv."""
    server, dummy = _session(cluster)
    host, port = server["server"].split("//")[1].split(":")
    password = "pr0xy-Pa55-%d" % os.getpid()
    relay = _Splice("127.0.0.1", (host, int(port)), _connect_proxy("deployer:" + password))
    try:
        defaults = {"group/nimguard.k8s.k8s": {"proxy": "http://deployer:%s@127.0.0.1:%d" % (password, relay.port)}}
        tasks = [{"nimguard.k8s.nim_secret": {"name": "ngc-api-secret", "namespace": namespace, "kind": "ngc",
                                              "value": KEY}},
                 {"nimguard.k8s.nim_service": {"name": "via-proxy", "namespace": namespace,
                                               "auth_secret": "ngc-api-secret", "image": IMAGE,
                                               "outbound_proxy": {"https_proxy": "http://egress.example.com:3128"}}}]
        play = run_play(cluster, tasks, module_defaults=defaults, verbosity=3)
        assert all(not r.get("failed") for r in play.results), play
        assert relay.connects >= 2 and password not in play.output
        deployment = cluster.get_json("-n", namespace, "deployment", "via-proxy")
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "HTTPS_PROXY", "value": "http://egress.example.com:3128"} in env
        # a wrong password: the proxy refuses, the message names the proxy, not the password
        bad = {"group/nimguard.k8s.k8s": {"proxy": "http://deployer:wrong-%s@127.0.0.1:%d" % (password, relay.port),
                                          "retry_timeout": 0}}
        play = run_play(cluster, [_info()], module_defaults=bad)
        assert play[0].get("failed") and "407" in play[0]["msg"] and password not in play.output, play
    finally:
        relay.close()


def test_old_proxy_dict_of_nim_service_is_taken_with_a_deprecation(cluster, namespace):
    play = run_play(cluster, [
        {"nimguard.k8s.nim_secret": {"name": "ngc-api-secret", "namespace": namespace, "kind": "ngc",
                                     "value": KEY}},
        {"nimguard.k8s.nim_service": {"name": "old-proxy", "namespace": namespace, "auth_secret": "ngc-api-secret",
                                      "image": IMAGE, "proxy": {"https_proxy": "http://egress.example.com:3128"}}}])
    assert all(not r.get("failed") for r in play.results), play
    assert "outbound_proxy" in play.output and "DEPRECATION" in play.output, play.output
    env = cluster.get_json("-n", namespace, "deployment", "old-proxy")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "HTTPS_PROXY", "value": "http://egress.example.com:3128"} in env


def test_no_proxy_bypasses_the_api_proxy(cluster):
    dead = "http://127.0.0.1:9"  # nothing listens: through it, nothing works
    play = run_play(cluster, [_info(api_proxy=dead, retry_timeout=0),
                              _info(api_proxy=dead, no_proxy="localhost,127.0.0.0/8", retry_timeout=0)])
    through, bypassed = play.results
    assert through.get("failed") and "Cannot reach" in through["msg"], through
    assert not bypassed.get("failed") and bypassed["resources"], bypassed


# --- impersonation -------------------------------------------------------------------------------------------

def test_impersonation_acts_under_the_rbac_of_the_impersonated_user(cluster, namespace):
    """The session admin impersonating the limited user (no rights) is refused what the admin may do; impersonating
    a user in group system:masters may; the limited user may not impersonate at all. Before: unsupported options."""
    secret = {"name": "ngc-api-secret", "namespace": namespace, "kind": "ngc", "value": KEY}
    mark = cluster.audit_mark()
    play = run_play(cluster, [
        {"nimguard.k8s.nim_secret": dict(secret, impersonate_user=cluster.limited_user)},
        {"nimguard.k8s.nim_secret": dict(secret, impersonate_user="nimguard-impersonated",
                                         impersonate_groups=["system:masters"])},
        {"nimguard.k8s.nim_info": {"kind": "Secret", "namespace": namespace, "impersonate_user": cluster.user,
                                   "kubeconfig": cluster.limited_kubeconfig}},
    ])
    as_limited, as_master, limited_impersonating = play.results
    assert as_limited.get("failed") and "Forbidden" in as_limited["msg"], as_limited
    assert not as_master.get("failed") and as_master["changed"], as_master
    assert limited_impersonating.get("failed") and "Forbidden" in limited_impersonating["msg"], limited_impersonating
    creates = [e for e in cluster.audit_events(mark, verbs={"create", "patch"}, namespace=namespace)
               if (e.get("objectRef") or {}).get("resource") == "secrets" and e.get("responseStatus", {}).get("code", 0) < 300]
    assert creates and all(e["user"]["username"] == cluster.user
                           and e.get("impersonatedUser", {}).get("username") == "nimguard-impersonated" for e in creates)


# --- certificate checks (issue 19 item 5) --------------------------------------------------------------------

@pytest.fixture
def other_ca(tmp):
    """A CA that did not sign the API server's certificate."""
    path = tmp / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp / "other-ca.key"), "-out", str(path), "-subj", "/CN=other-ca", "-days", "1"],
                   check=True, capture_output=True)
    return str(path)


def test_quoted_false_keeps_certificate_checks_on(cluster, tmp, other_ca):
    """insecure-skip-tls-verify: "false" (a string) with a CA that did not sign the server: refused (before: the
    string turned verification off and the task passed); a typo is refused naming the field; a real true works
    and warns."""
    server, user = _session(cluster)
    quoted = _kubeconfig(server["server"], other_ca, user, cluster_extra={"insecure-skip-tls-verify": "false"})
    typo = _kubeconfig(server["server"], other_ca, user, cluster_extra={"insecure-skip-tls-verify": "flase"})
    skip = _kubeconfig(server["server"], other_ca, user, cluster_extra={"insecure-skip-tls-verify": True})
    play = run_play(cluster, [_info(kubeconfig=_write(tmp / "quoted", quoted), retry_timeout=0),
                              _info(kubeconfig=_write(tmp / "typo", typo)),
                              _info(kubeconfig=_write(tmp / "skip", skip))])
    refused, typo_result, insecure = play.results
    assert refused.get("failed") and "TLS verification" in refused["msg"], refused
    assert typo_result.get("failed") and "insecure-skip-tls-verify" in typo_result["msg"], typo_result
    assert "'flase' is not a boolean" in typo_result["msg"], typo_result
    assert not insecure.get("failed") and any("verification" in w for w in insecure.get("warnings", [])), insecure
    assert "[WARNING]: Certificate verification of the API server" in play.output, play.output


@pytest.mark.parametrize("value", ["", "y", "enabled"])
def test_verify_ssl_variable_parsed_strictly(cluster, tmp, other_ca, value):
    """K8S_AUTH_VERIFY_SSL with a kubeconfig whose CA did not sign the server: empty is unset and "y" is yes, so
    verification stays on and refuses the server; "enabled" is refused naming the variable. Before, all three
    turned verification off and the task passed."""
    server, user = _session(cluster)
    path = _write(tmp / "other-ca.kubeconfig", _kubeconfig(server["server"], other_ca, user))
    result = run_play(cluster, [_info(kubeconfig=path, retry_timeout=0)], env={"K8S_AUTH_VERIFY_SSL": value})[0]
    assert result.get("failed"), result
    if value == "enabled":
        assert "K8S_AUTH_VERIFY_SSL: 'enabled' is not a boolean" in result["msg"], result
    else:
        assert "TLS verification" in result["msg"], result


# --- client keys in memory (issue 19 item 13) ----------------------------------------------------------------

def test_client_key_data_is_loaded_without_a_file(cluster, tmp):
    """A kubeconfig with client-certificate-data and client-key-data (as kubeadm and most installers write them)
    works against the real API server, and the key is never a file in $TMPDIR: it goes to an in-memory file."""
    server, user = _session(cluster)
    data = {"client-certificate-data": base64.b64encode(open(user["client-certificate"], "rb").read()).decode(),
            "client-key-data": base64.b64encode(open(user["client-key"], "rb").read()).decode()}
    path = _write(tmp / "data.kubeconfig", _kubeconfig(server["server"], server["certificate-authority"], data))
    locked = tmp / "tmpdir"
    locked.mkdir()
    try:
        # The child records what $TMPDIR holds while ssl loads the key pair (before: nimguard-*/k, the key).
        code = ("import os, ssl\n"
                "from ansible_collections.nimguard.k8s.plugins.module_utils import client, kubeconfig\n"
                "seen, load = [], ssl.SSLContext.load_cert_chain\n"
                "def spy(self, *a, **kw):\n"
                "    seen.extend(os.path.join(d, f) for d, _, fs in os.walk(os.environ['TMPDIR']) for f in fs)\n"
                "    return load(self, *a, **kw)\n"
                "ssl.SSLContext.load_cert_chain = spy\n"
                "c = client.Client(kubeconfig.resolve_config(kubeconfig.connection_params({'kubeconfig': %r}, env={}), "
                "env={}), retry_timeout=0)\n"
                "print(c.request('GET', '/api/v1/namespaces/default')[1]['metadata']['name'], seen)\n" % path)
        proc = subprocess.run([sys.executable, "-c", code], env=dict(cluster.env, TMPDIR=str(locked)),
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0 and proc.stdout.strip() == "default []", proc.stdout + proc.stderr
        assert os.listdir(str(locked)) == []
    finally:
        shutil.rmtree(str(locked), ignore_errors=True)
