"""Validated module parameters, exactly as the modules and action plugins produce them; a loopback API stand-in."""
import http.server
import json

from ansible_collections.nimguard.k8s.plugins.module_utils import render, specs, validate
from ansible_collections.nimguard.k8s.plugins.module_utils.specs import validator_for


def params(module, **args):
    result = validator_for(module).validate(args)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


def service(**overrides):
    args = dict(name="llama", namespace="nim", auth_secret="ngc-api-secret",
                image=dict(repository="nvcr.io/nim/meta/llama-3.1-8b-instruct", tag="1.3.3"))
    args.update(overrides)
    return specs.service_options(args)


def secret(**args):
    """nim_secret options with a value, checked as nim_secret checks them before rendering."""
    p = params("nim_secret", **args)
    validate.secret(p, specs.secret_keys(p))
    return p


def rules(items, allow_wildcards=False, allow_dangerous=False):
    """RBAC rules checked, then in the API's shape, as nim_rbac renders them."""
    validate.rules(items, allow_wildcards, allow_dangerous=allow_dangerous)
    return render.role_rules(items)


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """A loopback stand-in for the API server's answers: send_json writes one JSON body; no request log."""

    def send_json(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
