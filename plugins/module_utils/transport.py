# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the client reaches the API server: the TLS context (the cluster CA, the client certificate loaded from
memory, tls-server-name), the proxy (no_proxy, its credentials), and what is refused or warned about on the way
(plain HTTP, certificate checks off). client.py sends the requests; which server and credentials, kubeconfig.py."""

from __future__ import annotations

import base64
import http.client
import ipaddress
import os
import shutil
import ssl
import tempfile
from urllib.parse import unquote, urlsplit

from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError


def vet(cfg, scheme):
    """Warnings about a connection that anyone on the path could read or take over; refuses to send credentials
    in clear unless the task says so (allow_plain_http_credentials)."""
    if scheme == "http":
        if (cfg.token or cfg.token_file or cfg.exec_spec or cfg.username) and not cfg.plain_http_credentials:
            raise NimError("host %s is plain HTTP: the credentials (token or password) would travel in clear, to "
                           "the server and any proxy on the way. Fix: use the API server's https:// address, or "
                           "set `allow_plain_http_credentials: true` to send them anyway (a trusted local tunnel "
                           "only)." % cfg.server)
        return ["The API server %s is plain HTTP: requests and answers (Secrets included) travel unencrypted and "
                "unauthenticated. Use its https:// address." % cfg.server]
    if not cfg.verify:
        return ["Certificate verification of the API server %s is off (validate_certs: false, K8S_AUTH_VERIFY_SSL "
                "or the kubeconfig's insecure-skip-tls-verify): anyone on the path can pose as the server and take "
                "the credentials. Set `ca_cert` to the cluster CA instead." % cfg.server]
    return []


def _refuse_passphrase():
    raise NimError("client_key: the client key is encrypted with a passphrase, and no one can type it in here "
                   "(kubectl cannot use such a key either). Fix: decrypt it once (`openssl pkey -in KEY -out "
                   "KEY.plain`, mode 0600) and point `client_key` (or the kubeconfig's client-key / client-key-data) "
                   "at it.")


class _KeyPair(object):
    """The client certificate and key as file names ssl can load, for as long as the `with` lasts. PEM data (a
    kubeconfig's *-data, an exec plugin's certificate) goes into an anonymous in-memory file (memfd, Linux):
    nothing on disk, and nothing left behind when the process is killed. Where there is no memfd, a private
    folder (0700) on the RAM-backed /dev/shm if there is one, else in $TMPDIR, removed as soon as ssl read it."""

    def __init__(self, cert_file, key_file, cert_data, key_data):
        self._items = ((cert_file, cert_data, "c"), (key_file, key_data, "k"))
        self._fds, self._tmp = [], None

    def __enter__(self):
        return [self._place(path, data, name) for path, data, name in self._items]

    def _place(self, path, data, name):
        if not data:
            return path
        raw = data.encode("utf-8")
        memfd = getattr(os, "memfd_create", None)
        if memfd is not None and os.path.isdir("/proc/self/fd"):
            fd = memfd("nimguard-" + name, getattr(os, "MFD_CLOEXEC", 0))
            self._fds.append(fd)
            os.write(fd, raw)
            return "/proc/self/fd/%d" % fd
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="nimguard-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        target = os.path.join(self._tmp, name)
        with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(raw)
        return target

    def __exit__(self, *exc):
        for fd in self._fds:
            os.close(fd)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def ssl_context(cfg):
    """The TLS context for the API server: its CA, certificate checks, and the client certificate."""
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca_file or None, cadata=cfg.ca_data or None)
    except (OSError, ssl.SSLError) as e:
        raise NimError("ca_cert: cannot load the CA certificate (%s). Fix: point `ca_cert` at a PEM file, or "
                       "fix certificate-authority in the kubeconfig." % e)
    # Python 3.13 adds X.509 strict checking to the default context: RFC 5280 conformance of each
    # certificate in the chain, so a CA without keyUsage (openssl's defaults leave it out; common in older
    # self-made clusters) is refused. kubectl and every Kubernetes component (Go) accept such a CA, so the
    # client checks what kubectl checks: the chain must still end at the configured CA and the name must
    # match, which is where the trust lies; a refusal would only push users to `validate_certs: false`.
    # (docs/security.md, "TLS to the API server")
    ctx.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    if not cfg.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cfg.cert_data or cfg.cert_file:
        try:
            with _KeyPair(cfg.cert_file, cfg.key_file, cfg.cert_data, cfg.key_data) as (cert, key):
                # An encrypted key would make OpenSSL ask for its passphrase on the terminal, and the task hang.
                ctx.load_cert_chain(cert, key or None, password=_refuse_passphrase)
        except (OSError, ssl.SSLError) as e:
            raise NimError("client_cert/client_key: cannot load the client certificate (%s). Fix: check that "
                           "the certificate and key files exist and belong together." % getattr(e, "strerror", e))
    return ctx


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPSConnection that checks the server's certificate against `server_name` (the kubeconfig's
    tls-server-name) and sends it as SNI, where the address to connect to carries another name."""

    server_name = None

    def connect(self):
        http.client.HTTPConnection.connect(self)  # TCP, and the CONNECT tunnel through a proxy
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_name or self._tunnel_host
                                              or self.host)


def bypasses_proxy(host, no_proxy):
    """Whether `host` is in a no_proxy list as curl and kubectl read it: `*`, a host name (also matching its
    subdomains; a leading dot is optional), an IP address or a CIDR range, comma separated."""
    host = (host or "").strip("[]").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (no_proxy or "").lower().split(","):
        entry = entry.strip()
        if entry == "*":
            return True
        if not entry:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.split(":")[0].lstrip(".")
        if host == entry or host.endswith("." + entry):
            return True
    return False


def _basic(credentials):
    return "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")


class Route(object):
    """Connections to one API server, straight or through the proxy (api_proxy, the kubeconfig's proxy-url)
    unless no_proxy lists the server."""

    def __init__(self, cfg, scheme, host, port, timeout):
        self.cfg, self.scheme, self.host, self.port, self.timeout = cfg, scheme, host, port, timeout
        self.proxy = None if not cfg.proxy or bypasses_proxy(host, cfg.no_proxy) else urlsplit(cfg.proxy)

    def connect(self, ssl_ctx):
        proxy = self.proxy
        if proxy and self.scheme == "https":
            conn = _HTTPSConnection(proxy.hostname, proxy.port or 3128, timeout=self.timeout, context=ssl_ctx)
            conn.set_tunnel(self.host, self.port, headers=dict(self.proxy_headers()))
        elif proxy:
            conn = http.client.HTTPConnection(proxy.hostname, proxy.port or 3128, timeout=self.timeout)
        elif self.scheme == "https":
            conn = _HTTPSConnection(self.host, self.port, timeout=self.timeout, context=ssl_ctx)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        if self.scheme == "https":
            conn.server_name = self.cfg.tls_server_name
        return conn

    def url(self, path):
        """The request target: a plain-HTTP request through a proxy names the whole URL."""
        return "http://%s:%s%s" % (self.host, self.port, path) if self.proxy and self.scheme == "http" else path

    def request_headers(self):
        """Headers each request carries for the proxy (plain HTTP through a proxy: no tunnel to carry them)."""
        if self.proxy and self.scheme == "http":
            return [(k, v) for k, v in self.proxy_headers() if k != "User-Agent"]
        return []

    def proxy_headers(self):
        """What the proxy gets: its credentials, from the proxy URL's user:password or proxy_headers (never
        printed), and proxy_headers' other entries as kubernetes.core sends them."""
        proxy, extra = self.proxy, self.cfg.proxy_headers or {}
        out = []
        if extra.get("proxy_basic_auth"):
            out.append(("Proxy-Authorization", _basic(extra["proxy_basic_auth"])))
        elif proxy.username is not None:
            out.append(("Proxy-Authorization", _basic("%s:%s" % (unquote(proxy.username),
                                                                 unquote(proxy.password or "")))))
        if extra.get("basic_auth"):
            out.append(("Authorization", _basic(extra["basic_auth"])))
        if extra.get("user_agent"):
            out.append(("User-Agent", extra["user_agent"]))
        return out
