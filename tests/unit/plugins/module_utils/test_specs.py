"""nim_service's `service` option: one dict per service, expanded before validation."""

import pytest

from ansible_collections.nimguard.k8s.plugins.module_utils.pod import rollout_timeout
from ansible_collections.nimguard.k8s.plugins.module_utils.specs import expand_service, validator_for

from .helpers import service

SERVICE = {"name": "llama", "namespace": "nim", "auth_secret": "ngc", "image": {"repository": "nvcr.io/nim/x"},
           "replicas": 2}


def test_without_service_the_args_are_untouched():
    args = {"name": "llama", "namespace": "nim"}
    assert expand_service(args) is args


def test_service_keys_move_to_the_top_and_validate_like_top_level_options():
    out = expand_service({"service": SERVICE, "wait": True})
    assert "service" not in out and out["replicas"] == 2 and out["wait"] is True
    result = validator_for("nim_service").validate(out)
    assert not result.error_messages, result.error_messages
    assert result.validated_parameters["image"]["tag"] is None  # no 'latest' assumed: validate.main_image refuses it


def test_top_level_options_win_but_an_explicit_none_does_not_erase():
    out = expand_service({"service": SERVICE, "replicas": 3, "namespace": None, "state": "absent"})
    assert out["replicas"] == 3 and out["namespace"] == "nim" and out["state"] == "absent"


@pytest.mark.parametrize("key, needle", [
    ("kubeconfig", "service.kubeconfig: a connection option"),
    ("host", "service.host: a connection option"),
    ("verify_ssl", "service.verify_ssl: a connection option"),  # an alias counts too
    ("replica", "service.replica: not an option of nim_service"),
])
def test_keys_that_are_not_service_options_are_refused_by_name(key, needle):
    with pytest.raises(ValueError) as err:
        expand_service({"service": dict(SERVICE, **{key: "value-never-shown"})})
    assert needle in str(err.value) and "Fix" in str(err.value)
    assert "value-never-shown" not in str(err.value)


def test_a_connection_option_is_named_before_a_typo():
    with pytest.raises(ValueError, match=r"^service\.api_key: a connection option"):
        expand_service({"service": dict(SERVICE, aaa=1, api_key="x")})


def test_service_must_be_a_dict():
    with pytest.raises(ValueError, match="service: expected a dict"):
        expand_service({"service": "llama"})


def test_default_wait_timeout_derives_from_the_probes():
    """600 s for the pull, the startup probe's delay + period x threshold, the readiness probe's, per surge round."""
    assert rollout_timeout(service()) == 600 + 10 + 10 * 180 + 5 * 3
    no_startup = service(probes={"startup": {"enabled": False}})
    assert rollout_timeout(no_startup) == 600 + 15
    assert rollout_timeout(service(replicas=3)) == 3 * 2425  # one surge pod at a time
    assert rollout_timeout(service(replicas=4, rollout={"max_surge": 2})) == 2 * 2425
    assert rollout_timeout(service(replicas=4, rollout={"max_surge": "50%"})) == 2 * 2425
    assert rollout_timeout(service(replicas=4, rollout={"max_surge": "x"})) == 4 * 2425  # the API server says why
