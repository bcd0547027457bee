"""Validated module parameters, exactly as the modules and action plugins produce them."""
from ansible_collections.nimguard.k8s.plugins.module_utils.runner import _service_defaults
from ansible_collections.nimguard.k8s.plugins.module_utils.specs import validator_for


def params(module, **args):
    result = validator_for(module).validate(args)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


def service(**overrides):
    args = dict(name="llama", namespace="nim", auth_secret="ngc-api-secret",
                image=dict(repository="nvcr.io/nim/meta/llama-3.1-8b-instruct", tag="1.3.3"))
    args.update(overrides)
    return _service_defaults(params("nim_service", **args))
