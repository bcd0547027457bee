"""TLS everywhere, rendering side: an Ingress without TLS is refused with both fixes in the message, unless
the user opts out explicitly; either fix gives the Ingress a tls section."""

import pytest

from ansible_collections.nimguard.k8s.plugins.module_utils import render
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError

from .helpers import service


def ingress(objs):
    return [o for o in objs if o["kind"] == "Ingress"][0]


def test_plain_ingress_is_refused_naming_both_fixes_and_the_way_out():
    with pytest.raises(NimError) as e:
        render.render_service(service(expose={"ingress": {"enabled": True, "host": "nim.example.com"}}))
    msg = e.value.msg
    assert msg.startswith("expose.ingress") and "nim.example.com" in msg
    assert "expose.ingress.tls_secret_name" in msg and "nimguard.k8s.nim_secret kind: tls" in msg
    assert "cert-manager.io/cluster-issuer" in msg
    assert "allow_plain_http: true" in msg


@pytest.mark.parametrize("opts,secret", [
    ({"tls_secret_name": "nim-tls"}, "nim-tls"),
    ({"annotations": {"cert-manager.io/cluster-issuer": "letsencrypt-prod"}}, "llama-tls"),
    ({"annotations": {"cert-manager.io/issuer": "ca-issuer"}}, "llama-tls"),
])
def test_either_fix_renders_tls(opts, secret):
    expose = {"ingress": dict(enabled=True, host="nim.example.com", **opts)}
    ing = ingress(render.render_service(service(expose=expose)))
    assert ing["spec"]["tls"] == [{"hosts": ["nim.example.com"], "secretName": secret}]
