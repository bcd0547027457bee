import base64

from ansible_collections.nimguard.k8s.plugins.module_utils import apply, labels, redact, wait


def test_subset_ignores_server_defaults_and_canonical_quantities():
    want = {"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}}}]}}
    have = {"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                                     "terminationMessagePath": "/dev/termination-log"}], "dnsPolicy": "ClusterFirst"}}
    assert apply.is_subset(want, have)


def test_subset_treats_dropped_empty_values_as_equal_but_not_false():
    assert apply.is_subset({"rules": [], "x": {}, "n": 0}, {})
    assert not apply.is_subset({"automountServiceAccountToken": False}, {})


def test_subset_detects_drift():
    assert not apply.is_subset({"spec": {"replicas": 2}}, {"spec": {"replicas": 3}})
    assert not apply.is_subset({"a": [1, 2]}, {"a": [1]})
    assert not apply.is_subset({"a": {"b": 1}}, {"a": {}})
    assert not apply.is_subset({"cpu": "1"}, {"cpu": "2"})
    assert not apply.is_subset({"flag": True}, {"flag": 1})
    assert not apply.is_subset({"flag": True}, {"flag": "1"})


def test_stamp_is_stable_and_excludes_itself():
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}}
    a = apply.stamp(obj)
    assert a == apply.stamp(a)
    changed = apply.stamp(dict(obj, data={"a": "2"}))
    assert changed["metadata"]["annotations"][labels.HASH_ANNOTATION] != a["metadata"]["annotations"][
        labels.HASH_ANNOTATION]


def test_clean_redacts_secret_data_and_secret_env():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "s", "managedFields": [{}], "resourceVersion": "1",
        "annotations": {redact.LAST_APPLIED: '{"data":{"k":"c2VjcmV0"}}'}},
        "data": {"k": base64.b64encode(b"secret").decode()}}
    out = redact.clean(secret)
    assert "secret" not in str(out["data"]) and base64.b64encode(b"secret").decode() not in str(out)
    assert out["data"]["k"].startswith("<redacted hmac-sha256:")
    assert "managedFields" not in out["metadata"] and "annotations" not in out["metadata"]
    dep = {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"env": [
        {"name": "NGC_API_KEY", "value": "nvapi-x"}, {"name": "PORT", "value": "8000"}]}]}}}}
    env = redact.clean(dep)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["value"].startswith("<redacted") and env[1]["value"] == "8000"


def test_scrubber_masks_plain_and_base64():
    s = redact.Scrubber()
    s.add("nvapi-canary-123")
    b64 = base64.b64encode(b"nvapi-canary-123").decode()
    out = s.scrub({"msg": "value nvapi-canary-123 and %s" % b64, "list": [b64]})
    assert "nvapi-canary-123" not in str(out) and b64 not in str(out)
    assert out["list"] == [redact.MASK]


def test_content_hash_depends_on_bytes_only():
    a = {"type": "Opaque", "data": {"K": base64.b64encode(b"v").decode()}}
    b = {"type": "Opaque", "stringData": {"K": "v"}}
    key = b"k" * 32
    assert redact.secret_content_hash(a, key) == redact.secret_content_hash(b, key)
    assert redact.secret_content_hash(a, key) != redact.secret_content_hash({"type": "Opaque", "data": {"K": "dw=="}}, key)


def test_hashes_of_secret_values_are_keyed():
    """Issue 19 item 3: a guess list cannot test a published hash without the key (never output)."""
    import hashlib
    password = "Summer2024!"
    secret = {"type": "Opaque", "data": {"password": base64.b64encode(password.encode()).decode()}}
    shown = redact.clean(dict(secret, kind="Secret", metadata={"name": "s"}))["data"]["password"]
    content = redact.secret_content_hash(secret, b"namespace-key-" * 3)
    for guess in ("Winter2023!", "password", password):
        for text in (guess, base64.b64encode(guess.encode()).decode()):
            plain = hashlib.sha256(text.encode()).hexdigest()
            assert plain[:8] not in shown and plain[:12] not in content
    assert redact.secret_content_hash(secret, b"a" * 32) != redact.secret_content_hash(secret, b"b" * 32)
    stamped = apply.stamp(dict(secret, apiVersion="v1", kind="Secret", metadata={"name": "s"}))
    annotation = stamped["metadata"]["annotations"][labels.HASH_ANNOTATION]
    assert annotation == apply.stamp(dict(secret, apiVersion="v1", kind="Secret", metadata={"name": "s"}, data={
        "password": "b3RoZXI="}))["metadata"]["annotations"][labels.HASH_ANNOTATION]  # values are not in it
    assert labels.HASH_ANNOTATION not in str(redact.clean(stamped))


def test_env_redaction_by_what_a_value_is():
    """Issue 18 item 8 and issue 19 item 4: a path the collection sets is shown; secret-looking names and URL
    credentials are not."""
    dep = {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"env": [
        {"name": "NGC_API_KEY_FILE", "value": "/var/run/secrets/nim/NGC_API_KEY"},
        {"name": "DB_PASS", "value": "hunter22"}, {"name": "MY_PWD", "value": "pw-1"},
        {"name": "PRIVATE_THING", "value": "p-1"}, {"name": "SENTRY_DSN", "value": "d-1"},
        {"name": "HTTPS_PROXY", "value": "http://user:s3cret@proxy:3128"},
        {"name": "NO_PROXY", "value": "localhost"}]}]}}}}
    env = dict((e["name"], e["value"]) for e in
               redact.clean(dep)["spec"]["template"]["spec"]["containers"][0]["env"])
    assert env["NGC_API_KEY_FILE"] == "/var/run/secrets/nim/NGC_API_KEY"
    for name in ("DB_PASS", "MY_PWD", "PRIVATE_THING", "SENTRY_DSN"):
        assert env[name].startswith("<redacted hmac-sha256:"), (name, env[name])
    assert env["HTTPS_PROXY"] == "http://%s@proxy:3128" % redact.MASK and env["NO_PROXY"] == "localhost"


def test_rollout_complete():
    dep = {"metadata": {"generation": 2}, "spec": {"replicas": 3},
           "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}}
    assert wait.rollout_complete(dep)
    dep["status"]["updatedReplicas"] = 2
    assert not wait.rollout_complete(dep)


class _ListingClient(object):
    """Pure-logic fake: answers list_labelled from a dict and records which kinds were listed."""

    def __init__(self, live):
        self.live, self.listed = live, []

    def resource(self, api_version, kind):
        return (api_version, kind)

    def list_labelled(self, res, namespace, labels):
        self.listed.append(res[1])
        return self.live.get(res[1], [])


def _obj(kind, name="svc", api_version="v1", annotations=None):
    meta = {"name": name, "namespace": "ns", "labels": {labels.COMPONENT: "service"}}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


SCOPE_KINDS = [("v1", "ConfigMap"), ("apps/v1", "Deployment"), ("v1", "Service"), ("networking.k8s.io/v1", "Ingress")]


def _scope(anchor=("apps/v1", "Deployment", "svc")):
    return dict(kinds=SCOPE_KINDS, namespace="ns", components=["service"], labels={}, anchor=anchor)


def test_read_lists_only_the_kinds_the_anchor_recorded_and_still_prunes_them():
    recorded = {labels.KINDS_ANNOTATION: "apps/v1/Deployment,networking.k8s.io/v1/Ingress,v1/Service"}
    client = _ListingClient({"Deployment": [_obj("Deployment", api_version="apps/v1", annotations=recorded)],
                             "Ingress": [_obj("Ingress", api_version="networking.k8s.io/v1")]})
    desired = [_obj("Deployment", api_version="apps/v1"), _obj("Service")]
    found, extra = apply.Converger(client).read(desired, _scope())
    assert client.listed[0] == "Deployment" and sorted(client.listed) == ["Deployment", "Ingress", "Service"]
    assert [o["kind"] for o in extra] == ["Ingress"]  # no longer desired: pruned
    assert found[("Service", "ns", "svc")] is None and found[("Deployment", "ns", "svc")] is not None


def test_read_lists_every_kind_without_a_recorded_anchor():
    client = _ListingClient({"ConfigMap": [_obj("ConfigMap")]})  # an older release's object, no annotation
    desired = [_obj("Deployment", api_version="apps/v1")]
    found, extra = apply.Converger(client).read(desired, _scope())
    assert sorted(client.listed) == ["ConfigMap", "Deployment", "Ingress", "Service"]
    assert [o["kind"] for o in extra] == ["ConfigMap"]
    client = _ListingClient({})
    apply.Converger(client).read(desired, _scope(anchor=None))
    assert sorted(client.listed) == ["ConfigMap", "Deployment", "Ingress", "Service"]


def test_plan_is_pending_only_when_something_would_change():
    desired = [_obj("Service")]
    stamped = apply.stamp(_obj("Service"))
    client = _ListingClient({"Service": [stamped]})
    scope = dict(_scope(anchor=None), kinds=[("v1", "Service")])
    assert apply.Converger(client).plan(desired, scope).pending is False
    assert apply.Converger(_ListingClient({})).plan(desired, scope).pending is True  # to create
    client = _ListingClient({"Service": [stamped, _obj("Service", name="old")]})
    assert apply.Converger(client).plan(desired, scope).pending is True  # to prune
