"""A fault-injecting TLS proxy in front of the real API server (like toxiproxy, for HTTPS).

Everything is forwarded to the real kube-apiserver with the test session's client certificate, except the
requests that match a rule: those get the rule's status and Kubernetes Status body instead, a given
number of times. The proxy serves a certificate for 127.0.0.1 signed by the cluster's CA, so the
collection's client talks to it exactly as it talks to the API server."""

import datetime
import http.client
import ipaddress
import json
import os
import re
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml


def _serving_cert(pki, directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    ca_cert = x509.load_pem_x509_certificate(open(os.path.join(pki, "ca.crt"), "rb").read())
    ca_key = serialization.load_pem_private_key(open(os.path.join(pki, "ca.key"), "rb").read(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fault-proxy")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    crt, pem = os.path.join(directory, "proxy.crt"), os.path.join(directory, "proxy.key")
    with open(crt, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(pem, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return crt, pem


class FaultProxy(object):
    def __init__(self, cluster):
        self.dir = tempfile.mkdtemp(prefix="nimguard-faultproxy-")
        pki = os.path.join(cluster.state, "pki")
        cfg = yaml.safe_load(open(cluster.kubeconfig))
        self.upstream = cfg["clusters"][0]["cluster"]["server"]
        self.rules = []
        self.seen = []  # (method, path, injected status or None)
        self._lock = threading.Lock()
        up = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        user = cfg["users"][0]["user"]  # the test session's identity, so the audit log names its writes
        up.load_cert_chain(user["client-certificate"], user["client-key"])
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                rule = proxy._match(self.command, self.path)
                if rule is not None:
                    data = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                       "reason": rule["reason"], "message": rule["message"],
                                       "code": rule["status"]}).encode()
                    self.send_response(rule["status"])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                host = self.server_address_upstream
                conn = http.client.HTTPSConnection(host[0], host[1], context=up, timeout=60)
                headers = dict((k, v) for k, v in self.headers.items()
                               if k.lower() in ("content-type", "accept", "user-agent"))
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.getheader("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        from urllib.parse import urlsplit
        url = urlsplit(self.upstream)
        Handler.server_address_upstream = (url.hostname, url.port)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        crt, key = _serving_cert(pki, self.dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        cfg["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:%d" % self.port
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        with open(self.kubeconfig, "w") as f:
            yaml.safe_dump(cfg, f)

    def inject(self, method, path_regex, status, reason, message, times=1):
        with self._lock:
            self.rules.append(dict(method=method, path=re.compile(path_regex), status=status, reason=reason,
                                   message=message, left=times))

    def _match(self, method, path):
        with self._lock:
            for rule in self.rules:
                if rule["left"] > 0 and rule["method"] == method and rule["path"].search(path):
                    rule["left"] -= 1
                    self.seen.append((method, path, rule["status"]))
                    return rule
            self.seen.append((method, path, None))
        return None

    def close(self):
        self.server.shutdown()
        self.server.server_close()
