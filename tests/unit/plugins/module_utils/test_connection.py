"""Connection options and kubeconfigs as users have them, the parts that need no API server (the rest is
tests/integration/test_connection.py): merging, auth-provider, strict booleans, plain HTTP, no_proxy, the key
pair loaded from memory and an encrypted key, outbound_proxy's old name."""

import datetime
import http.server
import os
import pty
import select
import sys
import threading
import time

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.nimguard.k8s.plugins.module_utils import client, kubeconfig, specs, transport
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError

from .helpers import JsonHandler


def _config(folder, context, user, current=True, extra_clusters=()):
    body = {"server": "https://%s.example.com:6443" % context, "certificate-authority": "ca.crt"}
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": "c-" + context, "cluster": body}] + list(extra_clusters),
           "contexts": [{"name": context, "context": {"cluster": "c-" + context, "user": "u-" + context}}],
           "users": [{"name": "u-" + context, "user": user}]}
    if current:
        doc["current-context"] = context
    folder.mkdir(exist_ok=True)
    (folder / "config").write_text(yaml.safe_dump(doc))
    return str(folder / "config")


def _resolve(params, env=None):
    env = {} if env is None else env
    return kubeconfig.resolve_config(kubeconfig.connection_params(params, env=env), env=env)


def test_kubeconfig_files_merged_as_kubectl_merges(tmp_path):
    a = _config(tmp_path / "a", "prod-a", {"tokenFile": "token"}, current=False)
    b = _config(tmp_path / "b", "prod-b", {"client-certificate": "u.crt", "client-key": "keys/u.key"},
                extra_clusters=[{"name": "c-prod-a", "cluster": {"server": "https://shadowed:6443"}}])
    env = {"KUBECONFIG": os.pathsep.join([a, str(tmp_path / "missing"), b])}
    cfg = _resolve({}, env)  # current-context: the first file that sets one (b)
    assert cfg.server == "https://prod-b.example.com:6443"
    assert cfg.ca_file == str(tmp_path / "b" / "ca.crt") and cfg.key_file == str(tmp_path / "b" / "keys" / "u.key")
    cfg = _resolve({"context": "prod-a"}, env)  # c-prod-a: the first file's entry wins
    assert cfg.server == "https://prod-a.example.com:6443" and cfg.token_file == str(tmp_path / "a" / "token")
    assert cfg.ca_file == str(tmp_path / "a" / "ca.crt")
    cfg = _resolve({"kubeconfig": os.pathsep.join([a, b]), "context": "prod-b"})  # the option takes a list too
    assert cfg.server == "https://prod-b.example.com:6443"
    with pytest.raises(NimError, match="cannot read"):  # but each file it names must exist
        _resolve({"kubeconfig": os.pathsep.join([a, str(tmp_path / "missing")])})


def test_auth_provider_refused_naming_the_field_and_the_exec_plugin(tmp_path):
    path = _config(tmp_path, "oidc", {"auth-provider": {"name": "oidc", "config": {"id-token": "eyJ.x.y"}}})
    with pytest.raises(NimError) as e:
        _resolve({"kubeconfig": path})
    assert "users[u-oidc].user.auth-provider (oidc)" in e.value.msg and "kubelogin" in e.value.msg
    assert "eyJ" not in e.value.msg


@pytest.mark.parametrize("value, verify", [("", True), ("y", True), ("yes", True), ("1", True), ("no", False),
                                           ("FALSE", False), ("off", False)])
def test_verify_ssl_variable_read_as_ansible_reads_booleans(tmp_path, value, verify):
    path = _config(tmp_path, "dev", {"token": "t"})
    assert _resolve({"kubeconfig": path}, {"K8S_AUTH_VERIFY_SSL": value}).verify is verify


@pytest.mark.parametrize("value", ["enabled", "ture", "2", "disable"])
def test_verify_ssl_variable_unknown_values_refused(tmp_path, value):
    path = _config(tmp_path, "dev", {"token": "t"})
    with pytest.raises(NimError) as e:
        _resolve({"kubeconfig": path}, {"K8S_AUTH_VERIFY_SSL": value})
    assert e.value.msg.startswith("K8S_AUTH_VERIFY_SSL: %r is not a boolean. Fix:" % value)


@pytest.mark.parametrize("value, verify", [("false", True), ("False", True), (False, True), (True, False),
                                           ("true", False), (None, True)])
def test_insecure_skip_tls_verify_quoted_or_not(tmp_path, value, verify):
    path = _config(tmp_path, "dev", {"token": "t"})
    doc = yaml.safe_load(open(path))
    doc["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = value
    assert _resolve({"kubeconfig": doc}).verify is verify


def _cfg(server, **kw):
    cfg = kubeconfig.Config()
    cfg.server = server
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_plain_http_credentials_need_the_explicit_option():
    with pytest.raises(NimError) as e:
        client.Client(_cfg("http://api.example.com:8080", token="secret-token"))
    assert "allow_plain_http_credentials" in e.value.msg and "secret-token" not in e.value.msg
    api = client.Client(_cfg("http://api.example.com:8080", token="secret-token", plain_http_credentials=True))
    assert any("plain HTTP" in w for w in api.warnings)
    assert any("plain HTTP" in w for w in client.Client(_cfg("http://127.0.0.1:8001")).warnings)  # kubectl proxy


def test_verification_off_warns_and_on_does_not():
    assert any("verification" in w for w in client.Client(_cfg("https://api.example.com", verify=False)).warnings)
    assert client.Client(_cfg("https://api.example.com")).warnings == []


def test_impersonated_groups_need_a_user():
    with pytest.raises(NimError, match="impersonate_user"):
        _resolve({"host": "https://api.example.com", "impersonate_groups": ["nim-deployers"]})
    cfg = _resolve({"host": "https://api.example.com"}, {"K8S_AUTH_IMPERSONATE_USER": "deployer",
                                                         "K8S_AUTH_IMPERSONATE_GROUPS": "a, b"})
    assert cfg.impersonate_user == "deployer" and cfg.impersonate_groups == ("a", "b")


@pytest.mark.parametrize("host, no_proxy, bypass", [
    ("api.example.com", "example.com", True), ("api.example.com", ".example.com", True),
    ("api.example.com", "ample.com", False), ("10.1.2.3", "10.0.0.0/8", True), ("10.1.2.3", "10.1.2.3", True),
    ("11.1.2.3", "10.0.0.0/8,localhost", False), ("anything", "*", True), ("::1", "::1/128", True),
    ("api.example.com", "", False), ("api.example.com", "other.com, api.example.com:6443", True)])
def test_no_proxy_matching(host, no_proxy, bypass):
    assert transport.bypasses_proxy(host, no_proxy) is bypass


def test_exec_expiration_timestamps():
    assert kubeconfig._expiry("2026-12-03T14:05:00Z") == datetime.datetime(
        2026, 12, 3, 14, 5, tzinfo=datetime.timezone.utc).timestamp()
    assert kubeconfig._expiry("2026-12-03T14:05:00.123456789+00:00") == kubeconfig._expiry("2026-12-03T14:05:00Z")
    assert kubeconfig._expiry(None) is None and kubeconfig._expiry("soon") is None


def _key_pair(tmp_path, passphrase=None):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deployer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
            .sign(key, hashes.SHA256()))
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode())


def test_key_data_never_lands_in_tmpdir(tmp_path, monkeypatch):
    """While ssl reads the key pair, $TMPDIR holds nothing (before: nimguard-*/k, the key itself)."""
    cert, key = _key_pair(tmp_path)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr("tempfile.tempdir", None)
    seen, load = [], transport.ssl.SSLContext.load_cert_chain

    def spy(self, *args, **kwargs):
        seen.extend(os.path.join(d, f) for d, dummy, files in os.walk(str(tmpdir)) for f in files)
        seen.append("loaded")
        return load(self, *args, **kwargs)
    monkeypatch.setattr(transport.ssl.SSLContext, "load_cert_chain", spy)
    transport.ssl_context(_cfg("https://api.example.com", cert_data=cert, key_data=key))
    assert seen == ["loaded"]


def test_encrypted_key_fails_with_a_message_instead_of_a_prompt(tmp_path):
    """On a terminal, OpenSSL's default would ask "Enter PEM pass phrase:" and wait for ever: the task hangs. A
    child on a pseudo-terminal must end at once with the message."""
    cert, key = _key_pair(tmp_path, passphrase=b"s3cret-passphrase")
    (tmp_path / "c.pem").write_text(cert)
    (tmp_path / "k.pem").write_text(key)
    code = ("from ansible_collections.nimguard.k8s.plugins.module_utils import kubeconfig, transport\n"
            "from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError\n"
            "cfg = kubeconfig.Config()\n"
            "cfg.cert_file, cfg.key_file = %r, %r\n"
            "try:\n"
            "    transport.ssl_context(cfg)\n"
            "except NimError as e:\n"
            "    print('NimError:', e.msg)\n" % (str(tmp_path / "c.pem"), str(tmp_path / "k.pem")))
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pseudo-terminal
        os.execve(sys.executable, [sys.executable, "-c", code], dict(os.environ))
    output, deadline, done = b"", time.monotonic() + 20, False
    try:
        while time.monotonic() < deadline and not done:
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child closed its terminal
                    chunk = b""
                output += chunk
            done = os.waitpid(pid, os.WNOHANG)[0] != 0
    finally:
        if not done:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    text = output.decode("utf-8", "replace")
    assert done, "the child still waits (a passphrase prompt?): %r" % text
    assert "pass phrase" not in text.lower() and "NimError: client_key: the client key is encrypted" in text, text


def test_outbound_proxy_old_name_taken_with_a_deprecation():
    args, note = specs.legacy_proxy({"name": "llama", "proxy": {"https_proxy": "http://egress:3128"}})
    assert args["outbound_proxy"] == {"https_proxy": "http://egress:3128"} and "proxy" not in args
    assert "outbound_proxy" in note and "deprecated" in note
    args, note = specs.legacy_proxy({"name": "llama", "proxy": "http://api-proxy:3128"})
    assert args["proxy"] == "http://api-proxy:3128" and note is None  # the API proxy, as in every module
    with pytest.raises(ValueError, match="keep only outbound_proxy"):
        specs.legacy_proxy({"proxy": {"https_proxy": "x"}, "outbound_proxy": {"https_proxy": "y"}})
    expanded = specs.expand_service({"service": {"name": "llama", "proxy": {"https_proxy": "http://egress:3128"}}})
    assert expanded["proxy"] == {"https_proxy": "http://egress:3128"}
    with pytest.raises(ValueError, match="service.proxy: a connection option"):
        specs.expand_service({"service": {"name": "llama", "proxy": "http://elsewhere:3128"}})


def test_nim_service_takes_the_api_proxy_as_proxy():
    result = specs.validator_for("nim_service").validate(dict(
        name="llama", namespace="nim", image=dict(repository="nvcr.io/nim/x", tag="1"), proxy="http://proxy:3128",
        no_proxy="10.0.0.0/8", impersonate_user="deployer"))
    assert not result.error_messages, result.error_messages
    assert result.validated_parameters["api_proxy"] == "http://proxy:3128"


class _TokenServer(JsonHandler):
    """Answers 200 to `Bearer <accept>` only, 401 to anything else; records the Authorization headers."""
    seen, accept = [], "new"

    def do_GET(self):  # noqa: N802  (http.server's naming)
        self.seen.append(self.headers.get("Authorization"))
        ok = self.headers.get("Authorization") == "Bearer " + self.accept
        self.send_json(200 if ok else 401,
                       {"kind": "APIGroupList"} if ok else {"kind": "Status", "reason": "Unauthorized"})


def test_a_rotated_token_file_is_read_again_on_401(tmp_path):
    """A token file rotated under a running task (the in-cluster ServiceAccount token, a tokenFile kept fresh by
    a sidecar): the 401 for the old token makes the client read the file again and send the request again, once."""
    token = tmp_path / "token"
    token.write_text("old\n")
    server = http.server.HTTPServer(("127.0.0.1", 0), _TokenServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = client.Client(_cfg("http://127.0.0.1:%d" % server.server_address[1], token_file=str(token),
                                 plain_http_credentials=True), retry_timeout=0)
        token.write_text("new\n")
        assert api.request("GET", "/apis")[0] == 200
        assert _TokenServer.seen == ["Bearer old", "Bearer new"]
        _TokenServer.accept = "newest"  # the file's next token is refused too: one fresh read, then the 401
        token.write_text("newer\n")
        del _TokenServer.seen[:]
        with pytest.raises(NimError, match="Unauthorized"):
            api.request("GET", "/apis")
        assert _TokenServer.seen == ["Bearer new", "Bearer newer"]
    finally:
        server.shutdown()
        server.server_close()
