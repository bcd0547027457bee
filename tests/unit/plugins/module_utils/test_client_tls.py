"""TLS to the API server with a cluster CA that has no keyUsage extension, as `openssl req -x509` makes one with
its default settings (older self-made clusters; the local test cluster's CA before it was reissued): a real
handshake with a local HTTPS server. kubectl accepts such a CA; Python 3.13's default context refuses it (X.509
strict checking), and the client matches kubectl (docs/security.md, "TLS to the API server"). On Python 3.13
(the ansible-core 2.20 and 2.21 rows of `scripts/test matrix`) the default context is the strict one; on older
Pythons the second case sets the strict flag the way 3.13 does."""

import datetime
import http.server
import ipaddress
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.nimguard.k8s.plugins.module_utils import client

from .helpers import JsonHandler


def _cert(subject, key, issuer, issuer_key, ca, key_usage):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if key_usage:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    if not ca:
        builder = (builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                         critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ca(name, key_usage):
    key = ec.generate_private_key(ec.SECP256R1())
    return key, _cert(name, key, name, key, ca=True, key_usage=key_usage)


class _Version(JsonHandler):
    def do_GET(self):  # noqa: N802  (http.server's naming)
        self.send_json(200, {"gitVersion": "v1.35.4"})


@pytest.fixture
def api_server(tmp_path):
    """An HTTPS server on loopback whose certificate a CA without keyUsage signed; yields (url, that CA's PEM)."""
    ca_key, ca = _ca("old-style-ca", key_usage=False)
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "server.crt").write_text(_pem(_cert("kube-apiserver", key, "old-style-ca", ca_key, ca=False,
                                                    key_usage=True)))
    (tmp_path / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tmp_path / "server.crt"), str(tmp_path / "server.key"))
    server = http.server.HTTPServer(("127.0.0.1", 0), _Version)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "https://127.0.0.1:%d" % server.server_address[1], _pem(ca)
    finally:
        server.shutdown()
        server.server_close()


def _client(tmp_path, url, ca_pem):
    (tmp_path / "ca.crt").write_text(ca_pem)
    params = client.connection_params({"host": url, "ca_cert": str(tmp_path / "ca.crt")}, env={})
    return client.Client(client.resolve_config(params, env={}), retry_timeout=0)


@pytest.fixture(params=["default context", "strict flag as on Python 3.13"])
def strictness(request, monkeypatch):
    """The Python's own default context, and one with the flags Python 3.13 adds (a no-op on 3.13)."""
    if request.param != "default context":
        default = ssl.create_default_context

        def strict_default_context(*args, **kwargs):
            ctx = default(*args, **kwargs)
            ctx.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
            return ctx
        monkeypatch.setattr(ssl, "create_default_context", strict_default_context)
    return request.param


def test_ca_without_key_usage_is_accepted_like_kubectl(tmp_path, api_server, strictness):
    url, ca_pem = api_server
    assert not [e for e in x509.load_pem_x509_certificate(ca_pem.encode()).extensions
                if isinstance(e.value, x509.KeyUsage)]
    status, body = _client(tmp_path, url, ca_pem).request("GET", "/version")
    assert (status, body) == (200, {"gitVersion": "v1.35.4"})


def test_a_ca_that_did_not_sign_the_server_is_still_refused(tmp_path, api_server, strictness):
    url = api_server[0]
    other = _pem(_ca("some-other-ca", key_usage=True)[1])
    with pytest.raises(client.NimError) as e:
        _client(tmp_path, url, other).request("GET", "/version")
    assert "TLS verification of %s failed" % url in e.value.msg and "ca_cert" in e.value.msg
