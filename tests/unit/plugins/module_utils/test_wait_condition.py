"""The condition wait of nim_apply and nim_info: a condition counts only for the object's current generation."""
import time

import pytest

from ansible_collections.nimguard.k8s.plugins.module_utils import wait
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError


class _SequenceClient(object):
    """Answers each GET with the next live copy (the last one repeats)."""

    def __init__(self, *lives):
        self.lives, self.gets = list(lives), 0

    def resource(self, api_version, kind):
        return (api_version, kind)

    def get(self, res, namespace, name):
        self.gets += 1
        return self.lives[min(self.gets, len(self.lives)) - 1]

    def request(self, method, path, query=None):
        return 200, {"items": []}


def issuer(generation, observed, status="True", reason="KeyPairVerified"):
    return {"metadata": {"name": "ca", "generation": generation, "uid": "u"},
            "status": {"conditions": [{"type": "Ready", "status": status, "reason": reason, "message": reason,
                                       "observedGeneration": observed}]}}


OBJ = {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "ca"}}


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(wait.time, "sleep", lambda s: None)


def test_ready_of_the_previous_generation_is_not_the_answer():
    client = _SequenceClient(issuer(2, 1), issuer(2, 2))
    assert wait.condition(client, OBJ, "Ready", "True", time.monotonic() + 30) is client.lives[1]
    assert client.gets == 2


def test_the_new_generations_verdict_is_reported():
    client = _SequenceClient(issuer(2, 1), issuer(2, 2, "False", "ErrGetKeyPair"))
    with pytest.raises(NimError) as e:
        wait.condition(client, OBJ, "Ready", "True", time.monotonic() + 0.05)
    assert "Ready=False (reason ErrGetKeyPair" in str(e.value)


def test_deployment_status_observed_generation_counts_without_one_per_condition():
    stale = {"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "conditions": [
        {"type": "Available", "status": "True"}]}}
    fresh = {"metadata": {"generation": 3}, "status": {"observedGeneration": 3, "conditions": [
        {"type": "Available", "status": "True"}]}}
    client = _SequenceClient(stale, fresh)
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"}}
    assert wait.condition(client, obj, "Available", "True", time.monotonic() + 30) is fresh


def test_conditions_without_generations_count_as_before():
    live = {"metadata": {"generation": 5}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert wait.condition(_SequenceClient(live), OBJ, "Ready", "True", time.monotonic() + 30) is live
