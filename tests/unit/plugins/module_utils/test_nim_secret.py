"""nim_secret's list form (`secrets`): the elements checked before any read or write, each error naming the element,
and the scrubber knowing every element's values. The cluster side (one LIST, no write on a rerun, both paths) is in
tests/integration/test_secret_list.py."""

import uuid

import pytest

from ansible_collections.nimguard.k8s.plugins.filter.services import nim_secrets
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.secrets import elements, has_value
from ansible_collections.nimguard.k8s.plugins.module_utils.runner import scrubber
from ansible_collections.nimguard.k8s.plugins.module_utils.specs import validator_for

from ansible.errors import AnsibleFilterError

from .helpers import params

KEY = "nvapi-unit-" + uuid.uuid4().hex


def listed(*items, **task):
    return params("nim_secret", namespace="nim", secrets=list(items), **task)


def test_each_element_takes_the_tasks_namespace_state_and_labels():
    p = listed({"name": "llama-ngc", "kind": "ngc", "value": KEY}, {"name": "llama-pull", "kind": "registry"},
               labels={"team": "a"})
    out = elements(p)
    assert [(e["name"], e["namespace"], e["labels"], e["secrets"]) for e in out] == [
        ("llama-ngc", "nim", {"team": "a"}, None), ("llama-pull", "nim", {"team": "a"}, None)]
    assert [has_value(e) for e in out] == [True, False]  # the second is only checked


@pytest.mark.parametrize("item, words", [
    ({"name": "Not_A_Name", "kind": "ngc", "value": KEY}, ["secrets[1] (Not_A_Name)", "name:"]),
    ({"name": "mistral-ngc", "kind": "ngc", "value": "  "}, ["secrets[1] (mistral-ngc)", "value:", "Fix:"]),
    ({"name": "nimguard-hash-key", "kind": "ngc", "value": KEY}, ["secrets[1] (nimguard-hash-key)", "another name"]),
    ({"name": "llama-ngc", "kind": "huggingface", "value": KEY}, ["secrets[1] (llama-ngc)", "given twice"]),
    ({"name": "data-only", "kind": "generic", "data": {"bad key!": KEY}}, ["secrets[1] (data-only)", "data:"]),
])
def test_a_bad_element_is_named_with_its_field(item, words):
    with pytest.raises(NimError) as e:
        elements(listed({"name": "llama-ngc", "kind": "ngc", "value": KEY}, item))
    assert all(w in e.value.msg for w in words), e.value.msg
    assert KEY not in e.value.msg


def test_name_and_secrets_exclude_each_other_and_one_is_needed():
    spec = validator_for("nim_secret")
    both = spec.validate({"namespace": "nim", "name": "x", "secrets": [{"name": "y"}]}).error_messages
    neither = spec.validate({"namespace": "nim"}).error_messages
    assert both and "mutually exclusive" in both[0] and "secrets" in both[0]
    assert neither and "one of the following is required: name, secrets" in neither[0]
    assert "name" in spec.validate({"namespace": "nim", "secrets": [{"kind": "ngc"}]}).error_messages[0]


def test_the_scrubber_learns_every_elements_values():
    pull, data, pasted = "pull-" + KEY, "data-" + KEY, "pasted-" + KEY
    scrub = scrubber({"namespace": "nim", "secrets": [
        {"name": "a", "kind": "ngc", "value": KEY},
        {"name": "b", "kind": "registry", "registry": {"password": pull}},
        {"name": "c", "kind": "generic", "data": {"K": data}},
        pasted]})
    text = scrub.scrub("%s %s %s %s $oauthtoken:%s" % (KEY, pull, data, pasted, pull))
    assert all(v not in text for v in (KEY, pull, data, pasted)), text


def test_the_filter_names_the_list_and_element_and_quotes_no_value():
    good = [{"name": "llama-ngc", "kind": "ngc", "value": KEY}]
    assert nim_secrets(good, "nim") is good
    for bad, words in (
            (good + [{"name": "llama-ngc", "kind": "ngc", "value": KEY}],
             ["nim_rollout_service_secrets[1] (llama-ngc)", "given twice"]),
            (good + [KEY], ["nim_rollout_service_secrets", "dict"]),
            (good + [{"name": "x", "kind": "ngc", "value": KEY, "vaule": KEY}], ["nim_rollout_service_secrets", "vaule"]),
            ({"name": "x"}, ["expected a list"])):
        with pytest.raises(AnsibleFilterError) as e:
            nim_secrets(bad, "nim")
        assert all(w in str(e.value) for w in words), str(e.value)
        assert KEY not in str(e.value)
