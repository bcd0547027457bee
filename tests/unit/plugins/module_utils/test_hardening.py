"""Issue 19, items 6, 8, 9, 10, 11 and 12: node access, RBAC rules, egress, values pasted into configuration,
images by digest, and what counts as TLS and authentication in front of an Ingress. Pure logic: options in,
objects or errors out (the enforcement on a real node is tests/integration/test_real_node.py's)."""

import json

import pytest

from ansible_collections.nimguard.k8s.plugins.module_utils import render, scan, validate
from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.modules import nim_doctor

from .helpers import service


def by_kind(objs):
    return dict((o["kind"], o) for o in objs)


def refused(field, *needles, **overrides):
    with pytest.raises(NimError) as e:
        render.render_service(service(**overrides))
    assert e.value.msg.startswith(field), e.value.msg
    for needle in ("Fix",) + needles:
        assert needle in e.value.msg, e.value.msg
    return e.value.msg


# ---------------------------------------------------------------------------------------------
# 6: host paths and SCCs


@pytest.mark.parametrize("path", ["/", "/etc", "/var/lib/kubelet", "/mnt/../etc", "/mntx/models", "//mnt/x",
                                  "/var/lib/nim/./x"])
def test_host_path_outside_the_prefixes_is_refused(path):
    refused("storage.host_path", repr(path), storage={"host_path": path})


def test_host_path_is_read_only_directory_by_default():
    spec = by_kind(render.render_service(service(storage={"host_path": "/mnt/nim"})))["Deployment"]
    spec = spec["spec"]["template"]["spec"]
    vol = [v for v in spec["volumes"] if v["name"] == "model-store"][0]
    assert vol["hostPath"] == {"path": "/mnt/nim", "type": "Directory"}
    mount = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "model-store"][0]
    assert mount["readOnly"] is True


def test_host_path_writable_and_own_prefix_are_opt_ins():
    p = service(storage={"host_path": "/data/models", "host_path_prefixes": ["/data/"], "host_path_writable": True})
    spec = by_kind(render.render_service(p))["Deployment"]["spec"]["template"]["spec"]
    vol = [v for v in spec["volumes"] if v["name"] == "model-store"][0]
    assert vol["hostPath"] == {"path": "/data/models", "type": "DirectoryOrCreate"}
    assert "readOnly" not in [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "model-store"][0]


@pytest.mark.parametrize("scc", ["privileged", "hostaccess", "hostnetwork", "hostnetwork-v2"])
def test_node_opening_scc_needs_an_opt_in(scc):
    refused("rbac.scc", scc, "allow_privileged_scc", rbac={"scc": scc})
    objs = render.render_service(service(rbac={"scc": scc, "allow_privileged_scc": True}), openshift=True)
    assert by_kind(objs)["Role"]["rules"][0]["resourceNames"] == [scc]


def test_proxy_ca_gets_no_anyuid():
    objs = render.render_service(service(outbound_proxy={"cert_config_map": "custom-ca"}), openshift=True)
    assert by_kind(objs)["Role"]["rules"][0]["resourceNames"] == ["nonroot"]
    init = by_kind(objs)["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]
    assert init["name"] == "build-ca-bundle" and init["securityContext"]["runAsNonRoot"] is True
    assert "runAsUser" not in init["securityContext"]  # the pod's uid 1000: nonroot is enough


# ---------------------------------------------------------------------------------------------
# 8: dangerous RBAC rules


@pytest.mark.parametrize("rule,needle", [
    ({"api_groups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}, "escalate"),
    ({"api_groups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"]}, "bind"),
    ({"api_groups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}, "impersonate"),
    ({"api_groups": [""], "resources": ["secrets"], "verbs": ["get"]}, "get on secrets"),
    ({"resources": ["secrets"], "verbs": ["list", "watch"]}, "list/watch on secrets"),
    ({"api_groups": [""], "resources": ["pods/exec"], "verbs": ["create"]}, "create on pods/exec"),
    ({"api_groups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]}, "patch on */scale"),
    ({"api_groups": ["*"], "resources": ["*"], "verbs": ["get"]}, "get on secrets"),
])
def test_dangerous_rules_are_refused_naming_the_rule(rule, needle):
    for module_field, call in (("rbac.extra_rules[0]", lambda r, **kw: render.render_service(service(rbac=dict(
            extra_rules=[r], allow_wildcards=True, **kw)))),
            ("extra_rules[0]", lambda r, **kw: validate.rules([r], True, allow_dangerous=bool(kw)))):
        with pytest.raises(NimError) as e:
            call(rule)
        assert e.value.msg.startswith(module_field) and needle in e.value.msg, e.value.msg
        assert "allow_dangerous_rules" in e.value.msg
        call(rule, allow_dangerous_rules=True)  # the explicit opt-in


def test_harmless_rules_pass():
    validate.rules([{"resources": ["configmaps"], "verbs": ["get", "list"], "resource_names": ["x"]},
                    {"api_groups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
                    {"resources": ["pods"], "verbs": ["get"]}])


# ---------------------------------------------------------------------------------------------
# 9: egress


def egress(**np_opts):
    overrides = dict(np_opts.pop("overrides", {}))
    return by_kind(render.render_service(service(network_policy=np_opts, **overrides)))["NetworkPolicy"][
        "spec"]["egress"]


def test_dns_only_to_the_cluster_dns_pods():
    dns = egress()[0]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                          "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert sorted((p["protocol"], p["port"]) for p in dns["ports"]) == [("TCP", 53), ("UDP", 53)]


def test_https_out_of_the_cluster_but_not_link_local_or_cluster_ranges():
    https = egress()[1]
    assert https == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}],
                     "ports": [{"protocol": "TCP", "port": 443}]}
    https = egress(cluster_cidrs=["10.244.0.0/16", "10.96.0.1/12"])[1]
    assert https["to"][0]["ipBlock"]["except"] == ["169.254.0.0/16", "10.244.0.0/16", "10.96.0.0/12"]


def test_only_the_proxy_when_one_is_set():
    assert egress(overrides={"outbound_proxy": {"https_proxy": "http://user:pw@10.1.2.3:3128"}})[1] == {
        "to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"protocol": "TCP", "port": 3128}]}
    assert egress(overrides={"outbound_proxy": {"http_proxy": "http://proxy.corp:8080"}})[1] == {
        "ports": [{"protocol": "TCP", "port": 8080}]}


def test_bad_cluster_cidr_is_refused():
    refused("network_policy.cluster_cidrs[0]", "IPv4", network_policy={"cluster_cidrs": ["10.0.0.0/33"]})


# ---------------------------------------------------------------------------------------------
# 10: values pasted into a shell command, HCL and a Go template


def vault(**vault_opts):
    opts = {"address": "https://vault.example.com:8200", "role": "nim", "secret_path": "secret/data/nim/ngc"}
    opts.update(vault_opts)
    return dict(auth_secret=None, secret_delivery={"mode": "vault_agent", "vault": opts})


INJECTED_BLOCK = 'x"\n}\ntemplate {\n  destination = "/tmp/x"\n  contents = "{{ with secret \\"other\\" }}'


@pytest.mark.parametrize("key,value", [
    ("role", INJECTED_BLOCK), ("role", 'nim" }'), ("auth_mount_path", "k8s\"\n}"),
    ("secret_path", 'secret/data/x" }}{{ with secret "secret/data/other'), ("secret_path", "secret/${env}"),
    ("secret_field", "key }}{{ .Data"), ("address", 'https://vault:8200"\n  tls_skip_verify = true'),
    ("address", "https://user:pw@vault:8200"),
])
def test_vault_values_that_would_escape_their_string_are_refused(key, value):
    refused("secret_delivery.vault.%s" % key, **vault(**{key: value}))


def test_http_vault_needs_an_opt_in():
    refused("secret_delivery.vault.address", "allow_http", **vault(address="http://vault.local:8200"))
    objs = render.render_service(service(**vault(address="http://vault.local:8200", allow_http=True)))
    assert 'address = "http://vault.local:8200"' in by_kind(objs)["ConfigMap"]["data"]["init.hcl"]


def test_vault_values_are_quoted_literals_in_hcl_and_template():
    hcl = by_kind(render.render_service(service(**vault(secret_field="ngc-key"))))["ConfigMap"]["data"]["init.hcl"]
    assert 'role = "nim"' in hcl and 'mount_path = "auth/kubernetes"' in hcl
    contents = json.loads(hcl.split("contents = ", 1)[1].split("\n", 1)[0])
    assert contents == '{{ with secret "secret/data/nim/ngc" }}{{ index .Data.data "ngc-key" }}{{ end }}'
    assert hcl.count("template {") == 1


@pytest.mark.parametrize("key", ['NGC"; id; echo "', "NGC_KEY$(id)", "A B", "K`id`"])
def test_auth_secret_key_that_could_reach_a_shell_is_refused(key):
    refused("auth_secret_key", repr(key), auth_secret_key=key)


def test_auth_secret_key_never_reaches_the_shell():
    c = by_kind(render.render_service(service(auth_secret_key="ngc-key.v2")))["Deployment"]
    c = c["spec"]["template"]["spec"]["containers"][0]
    assert "ngc-key" not in c["command"][2] and c["command"][2].startswith('export NGC_API_KEY="$(cat ')


# ---------------------------------------------------------------------------------------------
# 12: what counts as TLS, and authentication in front of an Ingress


@pytest.mark.parametrize("annotations", [{"cert-manager.io/duration": "2160h"}, {"cert-manager.io/common-name": "x"},
                                         {"cert-manager.io/issuer-kind": "ClusterIssuer"},
                                         {"cert-manager.io/cluster-issuer": ""}, {"kubernetes.io/tls-acme": "false"}])
def test_only_issuer_annotations_count_as_tls(annotations):
    assert validate.ingress_tls_secret({"annotations": annotations}, "llama") is None
    refused("expose.ingress", "without TLS", expose={"ingress": {"enabled": True, "host": "h.example.com",
                                                                 "annotations": annotations}})


@pytest.mark.parametrize("annotations", [{"cert-manager.io/cluster-issuer": "ca"}, {"cert-manager.io/issuer": "ca"},
                                         {"kubernetes.io/tls-acme": "true"}])
def test_issuer_annotations_count_as_tls(annotations):
    assert validate.ingress_tls_secret({"annotations": annotations}, "llama") == "llama-tls"


class FakeTask(object):
    """nim_doctor with an empty cluster: only the options' view of the services is checked."""

    class Client(object):
        def resource(self, *a):
            return a

        def list(self, *a, **kw):
            return []

        def has_api_group(self, *a, **kw):
            return False

    def client(self, p):
        return self.Client()


def doctor(annotations):
    svc = {"name": "llama", "expose": {"ingress": {"enabled": True, "host": "h.example.com",
                                                   "tls_secret_name": "t", "annotations": annotations}}}
    p = dict(namespace="nim", services=[svc], checks=["auth", "tls"], fail_on="never", uses_cert_manager=False,
             uses_external_secrets=False)
    return [f for f in nim_doctor.run(p, FakeTask())["findings"] if f["check"] == "auth"]


def test_doctor_warns_about_an_ingress_without_authentication():
    found = doctor({})
    assert len(found) == 1 and found[0]["status"] == "warn", found
    for needle in ("no authentication", "auth-url", "oauth2-proxy", "nimguard.io/auth-in-front"):
        assert needle in found[0]["message"] + found[0]["fix"], found


@pytest.mark.parametrize("annotations", [{"nginx.ingress.kubernetes.io/auth-url": "https://oauth2/auth"},
                                         {"nimguard.io/auth-in-front": "istio RequestAuthentication"}])
def test_doctor_accepts_authentication_in_front(annotations):
    assert doctor(annotations) == []


# ---------------------------------------------------------------------------------------------
# 11: images by digest

DIGEST_A, DIGEST_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_no_tag_is_assumed():
    refused("image.tag", "latest", image={"repository": "nvcr.io/nim/x"})
    with pytest.raises(NimError, match="tag"):
        scan.service_images({"name": "a", "image": {"repository": "nvcr.io/nim/x"}})


def test_pods_run_the_pinned_digest():
    p = service(image={"repository": "nvcr.io/nim/x", "tag": "1.3.3", "digest": DIGEST_A},
                proxy={"cert_config_map": "ca"})
    spec = by_kind(render.render_service(p))["Deployment"]["spec"]["template"]["spec"]
    assert spec["containers"][0]["image"] == "nvcr.io/nim/x@" + DIGEST_A
    assert spec["initContainers"][0]["image"] == "nvcr.io/nim/x@" + DIGEST_A  # the CA init container too
    refused("image.digest", "sha256", image={"repository": "nvcr.io/nim/x", "tag": "1", "digest": "sha256:abc"})


def test_references_split_and_pin():
    assert scan.split("nvcr.io/nim/x:1.3.3") == ("nvcr.io", "nim/x", "1.3.3", None)
    assert scan.split("127.0.0.1:5000/nim/x@" + DIGEST_A) == ("127.0.0.1:5000", "nim/x", None, DIGEST_A)
    assert scan.split("busybox:1") == ("docker.io", "library/busybox", "1", None)
    assert scan.pinned("localhost:5000/x:1", DIGEST_A) == "localhost:5000/x@" + DIGEST_A


def gate_params(**kw):
    p = dict(images=[], services=[{"name": "llama", "image": {"repository": "nvcr.io/nim/x", "tag": "1"}}],
             reports={}, trivy="trivy", trivy_args=[], scanners=["secret"], severity="CRITICAL", allow_list=[],
             resolve_digests=True)
    p.update(kw)
    return p


def trivy_report(name, digest=None):
    meta = {"RepoDigests": ["nvcr.io/nim/x@" + digest]} if digest else {}
    return json.dumps({"SchemaVersion": 2, "ArtifactName": name, "ArtifactType": "container_image",
                       "Metadata": meta, "Results": []})


def test_the_tag_is_resolved_before_the_scan_and_the_digest_scanned():
    seen = []

    def run(argv):
        seen.append(argv[-1])
        files[argv[argv.index("--output") + 1]] = trivy_report(argv[-1])
        return 0, "", ""
    files = {}
    out = scan.scan_images(gate_params(), run, files.__getitem__, lambda n: "/bin/trivy", "/t",
                           resolve={"nvcr.io/nim/x:1": DIGEST_A}.__getitem__)
    assert seen == ["nvcr.io/nim/x@" + DIGEST_A]
    assert out["service_digests"] == {"llama": DIGEST_A} and out["images"][0]["digest"] == DIGEST_A


def test_a_report_pins_the_digest_it_scanned_and_a_moved_tag_is_refused():
    files = {"/r.json": trivy_report("nvcr.io/nim/x:1", DIGEST_A)}
    out = scan.scan_images(gate_params(reports={"nvcr.io/nim/x:1": "/r.json"}), None, files.__getitem__,
                           lambda n: None, "/t", resolve=None)
    assert out["service_digests"] == {"llama": DIGEST_A}
    # the service pinned to another digest: the report (of DIGEST_A) does not cover it
    pinned_b = [{"name": "llama", "image": {"repository": "nvcr.io/nim/x", "digest": DIGEST_B}}]
    with pytest.raises(NimError, match="is a report for image"):
        scan.scan_images(gate_params(services=pinned_b, reports={"nvcr.io/nim/x@" + DIGEST_B: "/r.json"}), None,
                         files.__getitem__, lambda n: None, "/t")
    files["/old.json"] = trivy_report("nvcr.io/nim/x:1")  # a report without RepoDigests: said, not pinned
    out = scan.scan_images(gate_params(reports={"nvcr.io/nim/x:1": "/old.json"}), None, files.__getitem__,
                           lambda n: None, "/t")
    assert out["service_digests"] == {} and "names no digest" in " ".join(out["warnings"])


def test_resolve_digests_false_scans_the_tag():
    seen, files = [], {}

    def run(argv):
        seen.append(argv[-1])
        files[argv[argv.index("--output") + 1]] = trivy_report(argv[-1])
        return 0, "", ""
    scan.scan_images(gate_params(resolve_digests=False), run, files.__getitem__, lambda n: "/bin/trivy", "/t")
    assert seen == ["nvcr.io/nim/x:1"]


def test_an_archive_scan_is_not_resolved_and_said_so():
    files = {}

    def run(argv):
        files[argv[argv.index("--output") + 1]] = trivy_report(argv[-1])
        return 0, "", ""
    out = scan.scan_images(gate_params(trivy_args=["--input", "/images/x"]), run, files.__getitem__,
                           lambda n: "/bin/trivy", "/t", resolve=None)
    assert out["digests"] == {} and "trivy --input" in " ".join(out["warnings"])
