"""End to end on the local cluster's real node (kubelet, containerd, runc, bridge CNI, kube-proxy and
kube-router's NetworkPolicy firewall; scripts/localcluster/addons/node.sh) with the fake NIM image
(scripts/localcluster/testimages): what the hardened pod spec promises, proven by running it. The fake
NIM reports the key's source and a short hash (never the key), the secret-looking variable names of
its own environment, and the CA bundle's subjects. Skipped, with the reason, when the cluster runs
without the node add-on. There is no GPU here: the node's device plugin advertises stand-ins."""

import base64
import json
import os
import re
import subprocess
import sys
import threading
import uuid

import pytest

from playbook import run_play
from realnode import (FAKENIM, ROOT, FAST_PROBES, IMAGE, PIN, create, pod_manifest, pods, proxy_get, ready,
                      real_node, run_client, service_url, wait_until)


def hash12(value):
    import hashlib
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def new_key():
    return "nvapi-e2e-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def node(cluster):
    return real_node(cluster)


@pytest.fixture
def restricted_ns(cluster):
    """Factory of extra namespaces enforcing `restricted` (client namespaces), deleted afterwards."""
    made = []

    def make(prefix="c"):
        name = "%s-%s" % (prefix, uuid.uuid4().hex[:8])
        cluster.kubectl("create", "namespace", name)
        cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
        made.append(name)
        return name
    yield make
    for name in made:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def secret_task(ns, value):
    return {"nimguard.k8s.nim_secret": dict(name="ngc-api-secret", namespace=ns, kind="ngc", value=value)}


def service_task(ns, name="nim", allow_from=None, **kw):
    args = dict(name=name, namespace=ns, auth_secret="ngc-api-secret", image=IMAGE, probes=FAST_PROBES,
                secret_delivery={"mode": "file", "export_env": False},
                network_policy={"ingress_namespace_selector": {"kubernetes.io/metadata.name": allow_from or ns}},
                wait=True, wait_timeout=240)
    args.update(PIN)
    args.update(kw)
    return {"nimguard.k8s.nim_service": args}


def deploy(cluster, ns, key, *services):
    play = run_play(cluster, [secret_task(ns, key)] + [service_task(ns, **s) for s in services])
    for result in play.results:
        assert not result.get("failed"), play
    assert key not in play.output and base64.b64encode(key.encode()).decode() not in play.output
    return play


def running_on_node(cluster, ns, name, node, count=1):
    items = pods(cluster, ns, name)
    live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == count, [p["metadata"]["name"] for p in items]
    for pod in live:
        assert pod["spec"]["nodeName"] == node and pod["status"]["phase"] == "Running" and ready(pod)
        assert pod["status"]["podIP"].startswith(cluster.env["NIMGUARD_REAL_NODE_IP"].rsplit(".", 1)[0] + ".")
    return live


def debug(cluster, ns, pod, what):
    return proxy_get(cluster, ns, pod["metadata"]["name"], 8000, "/v1/debug/" + what)


def test_env_delivery_restricted_chat_through_service(cluster, node, namespace, restricted_ns):
    """`env` delivery (as the NIM Operator does) with a stand-in GPU: Running and Ready on the real node,
    and a client pod gets a chat completion through the Service's cluster IP (kube-proxy)."""
    key, client_ns = new_key(), restricted_ns()
    deploy(cluster, namespace, key, dict(secret_delivery={"mode": "env"}, allow_from=client_ns,
                                         resources={"gpus": 1}))
    (pod,) = running_on_node(cluster, namespace, "nim", node)
    env = pod["spec"]["containers"][0]["env"]
    assert {"name": "NGC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "ngc-api-secret",
                                                                  "key": "NGC_API_KEY"}}} in env
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    reported = debug(cluster, namespace, pod, "key")
    assert reported["source"] == "env:NGC_API_KEY" and reported["sha256_12"] == hash12(key)

    body = json.dumps({"model": "nimguard/fake-nim", "messages": [{"role": "user", "content": "hello real node"}]})
    code, out = run_client(cluster, client_ns, "post", service_url(cluster, namespace, "nim", "/v1/chat/completions"),
                           body, retries=20)  # until kube-router has synced the new client pod's IP
    assert code == 0, out
    answer = json.loads(out[out.index("{"):])
    assert answer["choices"][0]["message"]["content"] == "fake NIM echo: hello real node"


def test_file_delivery_nothing_in_spec_or_env_and_rotation_without_restart(cluster, node, namespace):
    """`file` delivery: the key is only in a memory-backed read-only file, neither in the pod spec nor in the
    container's environment; with restart_on_rotation false a rotated key reaches the running pod."""
    key = new_key()
    deploy(cluster, namespace, key, dict(restart_on_rotation=False))
    (pod,) = running_on_node(cluster, namespace, "nim", node)
    spec_text = json.dumps(pod)
    leaked = key in spec_text or base64.b64encode(key.encode()).decode() in spec_text
    assert not leaked
    assert not [e for e in pod["spec"]["containers"][0]["env"] if "valueFrom" in e]
    assert debug(cluster, namespace, pod, "key") == {"source": "file:/var/run/secrets/nim/NGC_API_KEY",
                                                     "sha256_12": hash12(key), "ready": True, "reason": ""}
    env = debug(cluster, namespace, pod, "env")
    assert env["key_in_env"] is False and "NGC_API_KEY" not in env["sensitive_names"], env
    # The process's own environment, as the kernel has it, and the mount behind the key file.
    environ = cluster.kubectl("exec", "-n", namespace, pod["metadata"]["name"], "-c", "nim", "--",
                              "cat", "/proc/1/environ").stdout
    in_environ = key in environ
    assert not in_environ and "NGC_API_KEY_FILE=/var/run/secrets/nim/NGC_API_KEY" in environ.split("\0")
    mounts = cluster.kubectl("exec", "-n", namespace, pod["metadata"]["name"], "-c", "nim", "--",
                             "cat", "/proc/mounts").stdout.splitlines()
    secret_mount = [m.split() for m in mounts if m.split()[1] == "/var/run/secrets/nim"]
    assert secret_mount and secret_mount[0][2] == "tmpfs" and secret_mount[0][3].startswith("ro"), mounts
    root = [m.split() for m in mounts if m.split()[1] == "/"]
    assert root[0][3].startswith("ro")  # readOnlyRootFilesystem for real

    rotated = new_key()
    play = deploy(cluster, namespace, rotated, dict(restart_on_rotation=False))
    assert play[0]["changed"] is True
    deployment = [o for o in play[1]["objects"] if o["kind"] == "Deployment"][0]
    assert deployment["action"] == "unchanged"
    # The kubelet refreshes the Secret volume (syncFrequency 10s on this node); the fake NIM re-reads it.
    wait_until("the running pod to report the rotated key",
               lambda: debug(cluster, namespace, pod, "key")["sha256_12"] == hash12(rotated), timeout=150)
    (after,) = running_on_node(cluster, namespace, "nim", node)
    assert after["metadata"]["uid"] == pod["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0


def test_vault_agent_file_contract(cluster, node, namespace):
    """vault_agent: Vault cannot be built from the Go module proxy (its api/sdk submodules are unpublished
    at the versions it needs), so the rendered pod runs with the agent's init container swapped for a
    stand-in that writes the key where the agent's template would (same volume, path and mode). The rest
    of the pod spec is the collection's: the NIM reads the key from the in-memory file only."""
    key = new_key()
    vault = {"address": "https://vault.invalid:8200", "role": "nim", "secret_path": "secret/data/nim/ngc",
             "image": FAKENIM}
    cluster.kubectl("create", "secret", "generic", "vault-standin-source", "-n", namespace,
                    "--from-literal=NGC_API_KEY=" + key)
    play = run_play(cluster, [service_task(namespace, auth_secret=None, wait=False,
                                           secret_delivery={"mode": "vault_agent", "export_env": False,
                                                            "vault": vault})])
    assert not play[0].get("failed"), play
    deployment = cluster.get_json("deployment", "nim", "-n", namespace)
    template = deployment["spec"]["template"]["spec"]
    init = template["initContainers"][0]
    assert init["name"] == "vault-agent-init" and init["command"][:2] == ["vault", "agent"]
    target = [m for m in init["volumeMounts"] if m["name"] == "nim-secrets"][0]["mountPath"]
    # The stand-in: same container, same mounts, plus the test Secret it copies from.
    patch = [{"op": "replace", "path": "/spec/template/spec/initContainers/0/command", "value": [
        "/bin/sh", "-c", "cp /standin/NGC_API_KEY %s/NGC_API_KEY && chmod 0440 %s/NGC_API_KEY" % (target, target)]},
        {"op": "add", "path": "/spec/template/spec/initContainers/0/volumeMounts/-",
         "value": {"name": "standin", "mountPath": "/standin", "readOnly": True}},
        {"op": "add", "path": "/spec/template/spec/volumes/-",
         "value": {"name": "standin", "secret": {"secretName": "vault-standin-source"}}}]
    cluster.kubectl("patch", "deployment", "nim", "-n", namespace, "--type", "json", "-p", json.dumps(patch))
    cluster.kubectl("rollout", "status", "deployment/nim", "-n", namespace, "--timeout", "240s")
    (pod,) = running_on_node(cluster, namespace, "nim", node)
    nim_volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert nim_volumes["nim-secrets"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}
    assert "standin" not in [m["name"] for m in pod["spec"]["containers"][0]["volumeMounts"]]
    assert debug(cluster, namespace, pod, "key")["source"] == "file:/var/run/secrets/nim/NGC_API_KEY"
    assert debug(cluster, namespace, pod, "key")["sha256_12"] == hash12(key)
    env = debug(cluster, namespace, pod, "env")
    assert env["key_in_env"] is False


def test_custom_ca_bundle_built_by_non_root_init_and_trusted(cluster, node, namespace):
    """proxy.cert_config_map: the non-root init container builds the bundle; the fake NIM trusts the custom
    CA for real (TLS to the kubelet, whose serving certificate that CA signed); without it, it does not."""
    with open(os.path.join(cluster.state, "pki", "ca.crt")) as f:
        ca = f.read()
    cluster.kubectl("create", "configmap", "corp-ca", "-n", namespace, "--from-literal=corp-ca.crt=" + ca)
    node_ip = cluster.env["NIMGUARD_REAL_NODE_IP"]
    kubelet = [{"ports": [{"protocol": "TCP", "port": 10250}]}]
    deploy(cluster, namespace, new_key(),
           dict(name="nim-ca", outbound_proxy={"cert_config_map": "corp-ca"},
                network_policy={"ingress_namespace_selector": {"kubernetes.io/metadata.name": namespace},
                                "extra_egress": kubelet}),
           dict(name="nim-plain", network_policy={"ingress_namespace_selector": {
               "kubernetes.io/metadata.name": namespace}, "extra_egress": kubelet}))
    (pod,) = running_on_node(cluster, namespace, "nim-ca", node)
    init = pod["status"]["initContainerStatuses"][0]
    assert init["name"] == "build-ca-bundle" and init["state"]["terminated"]["exitCode"] == 0
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000
    assert "runAsUser" not in pod["spec"]["initContainers"][0]["securityContext"]
    log = cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"], "-c", "build-ca-bundle").stdout
    assert "CA bundle built with" in log
    reported = debug(cluster, namespace, pod, "ca")
    assert reported["path"] == "/etc/nimguard/ca/ca-bundle.crt" and "CN=nimguard-local-ca" in reported["subjects"]

    url = "/v1/debug/fetch?url=https://%s:10250/healthz" % node_ip
    trusted = proxy_get(cluster, namespace, pod["metadata"]["name"], 8000, url)
    assert trusted.get("status") == 401, trusted  # TLS verified; the kubelet wants a client certificate
    (plain,) = running_on_node(cluster, namespace, "nim-plain", node)
    untrusted = proxy_get(cluster, namespace, plain["metadata"]["name"], 8000, url)
    assert "status" not in untrusted and "certificate" in untrusted["error"], untrusted


WATCHED = ("generation", "observed", "replicas", "updated", "ready", "available", "unavailable")


def _watch_deployment(cluster, ns, name, events, stop):
    # One line per watch event; "|" keeps absent fields (the API omits zeros) in their column.
    paths = dict(generation=".metadata.generation", observed=".status.observedGeneration", replicas=".status.replicas")
    fields = "|".join("{%s}" % paths.get(f, ".status.%sReplicas" % f) for f in WATCHED) + "{\"\\n\"}"
    proc = subprocess.Popen([cluster.kubectl_path, "--kubeconfig", cluster.kubeconfig, "get", "deployment", name,
                             "-n", ns, "--watch", "-o", "jsonpath=" + fields], stdout=subprocess.PIPE, text=True)
    stop.append(proc)
    for line in proc.stdout:
        events.append(dict(zip(WATCHED, (int(v or 0) for v in line.strip().split("|")))))


def test_rotation_one_rolling_restart_zero_unavailable(cluster, node, namespace):
    """restart_on_rotation (the default): the rotated key rolls the 3 replicas once, gated by the fake
    NIM's real readiness, and the Deployment never reports an unavailable replica (watched via the API)."""
    key = new_key()
    deploy(cluster, namespace, key, dict(replicas=3))
    before = running_on_node(cluster, namespace, "nim", node, count=3)
    generation = cluster.get_json("deployment", "nim", "-n", namespace)["metadata"]["generation"]

    lines, stop = [], []
    watcher = threading.Thread(target=_watch_deployment, args=(cluster, namespace, "nim", lines, stop))
    watcher.start()
    wait_until("the watch to start", lambda: lines, timeout=30, interval=0.1)
    rotated = new_key()
    play = deploy(cluster, namespace, rotated, dict(replicas=3))
    stop[0].terminate()
    watcher.join(timeout=10)
    assert [o["action"] for o in play[1]["objects"] if o["kind"] == "Deployment"] == ["updated"]

    assert [e for e in lines if e["generation"] == generation + 1 and e["updated"] == 3], lines  # saw the rollout
    # status.unavailableReplicas counts the surge pod while it starts (total - available), so the capacity
    # promise is read from availableReplicas: never below the 3 desired replicas, at any event.
    for event in lines:
        assert event["available"] >= 3 and event["ready"] >= 3, " ".join(str(tuple(e.values())) for e in lines)
    deployment = cluster.get_json("deployment", "nim", "-n", namespace)
    assert deployment["metadata"]["generation"] == generation + 1  # one rolling restart
    rs = cluster.get_json("replicasets", "-n", namespace, "-l", "app.kubernetes.io/instance=nim")["items"]
    assert sorted(r["spec"]["replicas"] for r in rs) == [0, 3]
    after = running_on_node(cluster, namespace, "nim", node, count=3)
    assert not {p["metadata"]["uid"] for p in before} & {p["metadata"]["uid"] for p in after}
    for pod in after:
        assert debug(cluster, namespace, pod, "key")["sha256_12"] == hash12(rotated)


def test_network_policy_enforced_by_kube_router(cluster, node, namespace, restricted_ns):
    """The service port answers the allowed namespace's client and refuses any other."""
    allowed, other = restricted_ns("allowed"), restricted_ns("other")
    deploy(cluster, namespace, new_key(), dict(allow_from=allowed))
    (pod,) = running_on_node(cluster, namespace, "nim", node)
    pod_ip = pod["status"]["podIP"]
    url = service_url(cluster, namespace, "nim", "/v1/models")

    # kube-router admits a new client pod once it has synced the pod's IP: retried for a few seconds.
    code, out = run_client(cluster, allowed, "get", url, "--timeout", "5s", retries=20)
    assert code == 0 and '"id": "nimguard/fake-nim"' in out, out
    code, out = run_client(cluster, other, "get", url, "--timeout", "5s")
    assert code == 1, out
    code, out = run_client(cluster, other, "probe", "%s:8000" % pod_ip, "--timeout", "3s")
    assert code == 1, out


def _listener_pod(cluster, ns, name, ports, labels=None):
    """A root pod (to bind low ports) answering TCP on each of `ports`; its IP once every port listens."""
    pod_ = pod_manifest(name, ["serve", "--listen", ":%d" % ports[0]], user=0, labels=labels,
                        extra_spec={"restartPolicy": "Always"})
    container = pod_["spec"]["containers"][0]
    container["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    for port in ports[1:]:
        pod_["spec"]["containers"].append(dict(container, name="c%d" % port, args=["serve", "--listen", ":%d" % port]))
    create(cluster, ns, pod_)

    def started():
        status = cluster.get_json("pod", name, "-n", ns).get("status", {})
        flags = [c.get("started") for c in status.get("containerStatuses", [])]
        return status.get("podIP") if len(flags) == len(ports) and all(flags) else None
    return wait_until("pod %s/%s to listen" % (ns, name), started)


def _host_listeners(addresses, port):
    """TCP listeners on this host (the node's host) at `addresses`; returns the sockets to close."""
    import socket
    socks = []
    for addr in addresses:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr, port))
        sock.listen(16)
        socks.append(sock)

        def accept(s=sock):
            while True:
                try:
                    conn = s.accept()[0]
                except OSError:
                    return
                conn.close()
        threading.Thread(target=accept, daemon=True).start()
    return socks


def _outside_address(node_ip):
    """An IPv4 address of this host outside the node's pod subnet: where "the internet" is on a machine
    without one (traffic from a pod to it leaves the pod network through the node, as to any address)."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "scope", "global"], capture_output=True, text=True,
                         check=True).stdout
    prefix = node_ip.rsplit(".", 1)[0] + "."
    found = [m.split("/")[0] for m in re.findall(r"inet (\S+)", out) if not m.startswith(prefix)]
    assert found, "no address of this host outside the pod subnet:\n" + out
    return found[0]


LINK_LOCAL_TEST_IP = "169.254.123.1"  # stands for the metadata endpoint, added to the node's bridge for the test


def test_network_policy_egress_dns_https_and_proxy_enforced(cluster, node, namespace):
    """Issue 19 item 9, enforced by kube-router: the NIM pod reaches DNS only on the cluster's DNS pods (a
    stand-in labelled as CoreDNS is: the local cluster runs none), HTTPS on an address outside the cluster
    but not on a link-local one (a stand-in metadata endpoint) nor, once network_policy.cluster_cidrs names
    the pod range, on a pod; with a proxy set, only the proxy. Each "no" has its control: the same address
    answers a pod that no policy covers."""
    node_ip = cluster.env["NIMGUARD_REAL_NODE_IP"]
    pod_subnet = node_ip.rsplit(".", 1)[0] + ".0/24"
    suffix = uuid.uuid4().hex[:8]
    target_ns, dns_ns = "target-" + suffix, "dns-" + suffix
    bridge = subprocess.run(["ip", "-o", "-4", "addr", "show", "to", node_ip], capture_output=True, text=True,
                            check=True).stdout.split()[1]
    outside = _outside_address(node_ip)
    subprocess.run(["ip", "addr", "add", LINK_LOCAL_TEST_IP + "/32", "dev", bridge], check=True)
    socks = []
    try:
        socks = _host_listeners([LINK_LOCAL_TEST_IP, outside], 443)
        for ns in (target_ns, dns_ns):
            cluster.kubectl("create", "namespace", ns)
        target_ip = _listener_pod(cluster, target_ns, "target", [53, 443, 8443])
        dns_ip = _listener_pod(cluster, dns_ns, "coredns", [53], labels={"k8s-app": "kube-dns"})
        addrs = dict(dns="%s:53" % dns_ip, pod53="%s:53" % target_ip, pod443="%s:443" % target_ip,
                     pod8443="%s:8443" % target_ip, metadata="%s:443" % LINK_LOCAL_TEST_IP, outside="%s:443" % outside)
        # Controls: from a pod no policy covers, every address answers.
        for what, addr in sorted(addrs.items()):
            code, out = run_client(cluster, target_ns, "probe", addr, "--timeout", "3s")
            assert code == 0, (what, out)

        policy = {"ingress_namespace_selector": {"kubernetes.io/metadata.name": namespace},
                  "dns_namespace_selector": {"kubernetes.io/metadata.name": dns_ns}}

        def reach(pod_, what):
            probe = "/v1/debug/probe?addr=%s&timeout=3s" % addrs[what]
            return proxy_get(cluster, namespace, pod_["metadata"]["name"], 8000, probe)["connected"]

        def expect(pod_, sync, wanted):
            # kube-router applies a new or changed policy within seconds: wait for `sync`, an answer only the
            # new policy gives, then read every answer.
            wait_until("policy applied (%s: %s)" % (sync, wanted[sync]), lambda: reach(pod_, sync) is wanted[sync],
                       timeout=60)
            got = dict((what, reach(pod_, what)) for what in wanted)
            assert got == wanted

        key = new_key()  # the same key each time: a new one would roll the pods
        deploy(cluster, namespace, key, dict(network_policy=policy))
        (pod,) = running_on_node(cluster, namespace, "nim", node)
        expect(pod, "pod8443", dict(pod8443=False, dns=True, pod53=False, metadata=False, outside=True, pod443=True))

        deploy(cluster, namespace, key, dict(network_policy=dict(policy, cluster_cidrs=[pod_subnet])))
        expect(pod, "pod443", dict(pod443=False, outside=True, dns=True, metadata=False))

        deploy(cluster, namespace, key, dict(network_policy=policy,
                                             outbound_proxy={"https_proxy": "http://%s:8443" % target_ip}))
        (pod,) = running_on_node(cluster, namespace, "nim", node)
        expect(pod, "pod443", dict(pod443=False, pod8443=True, outside=False, metadata=False, dns=True))
    finally:
        for sock in socks:
            sock.close()
        subprocess.run(["ip", "addr", "del", LINK_LOCAL_TEST_IP + "/32", "dev", bridge], check=False)
        for ns in (target_ns, dns_ns):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


class Registry(object):
    """The distribution project's registry (scripts/localcluster/build.sh build_tools registry) on a free
    loopback port, its storage and log in `folder`; images pushed over its HTTP API (the OCI distribution spec)."""

    def __init__(self, binary, folder):
        import socket
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.host = "127.0.0.1:%d" % self.port
        config = folder / "config.yml"
        config.write_text(json.dumps({"version": 0.1, "log": {"level": "info", "accesslog": {"disabled": False}},
                                      "storage": {"filesystem": {"rootdirectory": str(folder / "data")}},
                                      "http": {"addr": self.host}}))
        self.log = folder / "registry.log"
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT)
        wait_until("the registry to listen", lambda: self._get("/v2/") == 200, timeout=60)

    def _get(self, path):
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen("http://%s%s" % (self.host, path), timeout=5) as resp:
                return resp.status
        except (urllib.error.URLError, OSError) as e:
            return getattr(e, "code", None)

    def _send(self, method, url, body=b"", headers=None):
        import urllib.request
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.headers

    def push(self, layout_tar, repo, tag, label):
        """Push the OCI layout archive's image as repo:tag with one label added to its config, so that each push
        is an image of its own (a digest containerd has never seen); returns its manifest digest."""
        import hashlib
        import tarfile
        import urllib.parse
        with tarfile.open(layout_tar) as tar:
            def blob(digest):
                return tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1]).read()
            index = json.loads(tar.extractfile("index.json").read())
            manifest = json.loads(blob(index["manifests"][0]["digest"]))
            config = json.loads(blob(manifest["config"]["digest"]))
            config.setdefault("config", {}).setdefault("Labels", {})["io.nimguard.test"] = label
            blobs = [blob(layer["digest"]) for layer in manifest["layers"]]
        config_bytes = json.dumps(config, sort_keys=True).encode()
        manifest["config"] = dict(manifest["config"], digest="sha256:" + hashlib.sha256(config_bytes).hexdigest(),
                                  size=len(config_bytes))
        base = "http://%s/v2/%s" % (self.host, repo)
        for data in blobs + [config_bytes]:
            location = self._send("POST", base + "/blobs/uploads/")["Location"]
            location = urllib.parse.urljoin(base, location)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            self._send("PUT", location + ("&" if "?" in location else "?") + "digest=" + digest, data,
                       {"Content-Type": "application/octet-stream"})
        body = json.dumps(manifest, sort_keys=True).encode()
        self._send("PUT", "%s/manifests/%s" % (base, tag), body, {"Content-Type": manifest["mediaType"]})
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def test_images_run_by_the_digest_scanned_from_a_loopback_registry(cluster, node, namespace, tmp_path):
    """Issue 19 item 11, end to end: the fake NIM image pushed to a local OCI registry; nim_image_scan resolves
    the tag to its digest before the scan and Trivy reads that digest (from the registry: --image-src remote);
    the tag is then moved to another image; nim_service runs the digest the scan returned, and the real node's
    containerd pulls it by digest from the registry (plain HTTP on loopback, no configuration)."""
    from test_static_checks import tool_path
    registry_bin = tool_path("REGISTRY_BIN", "/registry", "registry")
    trivy_bin = tool_path("TRIVY_BIN", "/trivy", "trivy")
    paths = subprocess.run(["bash", os.path.join(ROOT, "scripts", "localcluster", "images.sh"), "build"],
                           capture_output=True, text=True, check=True, timeout=900).stdout
    layout = dict(line.split("=", 1) for line in paths.splitlines() if "=" in line)["IMAGES_DIR"] + "/fakenim.tar"
    registry = Registry(registry_bin, tmp_path)
    try:
        repo = "%s/nim/fakenim" % registry.host
        scanned = registry.push(layout, "nim/fakenim", "1", "scanned-" + uuid.uuid4().hex)
        cache = tmp_path / "trivy-cache"
        offline = ["--skip-db-update", "--skip-java-db-update", "--skip-check-update", "--skip-version-check",
                   "--disable-telemetry", "--offline-scan", "--image-src", "remote", "--cache-dir", str(cache)]
        svc = {"name": "nim", "image": {"repository": repo, "tag": "1"}}
        play = run_play(cluster, [{"nimguard.k8s.nim_image_scan": {
            "services": [svc], "trivy": trivy_bin, "trivy_args": offline, "scanners": ["secret"]}}])
        result = play[0]
        assert not result.get("failed"), play
        (image,) = result["images"]
        assert image["digest"] == scanned and image["scanned"] == "%s@%s" % (repo, scanned), image
        assert result["service_digests"] == {"nim": scanned}, result

        moved = registry.push(layout, "nim/fakenim", "1", "moved-" + uuid.uuid4().hex)  # the tag moves on
        assert moved != scanned

        deploy(cluster, namespace, new_key(), dict(image={"repository": repo, "tag": "1", "digest": scanned,
                                                          "pull_policy": "Always"}))
        (pod,) = running_on_node(cluster, namespace, "nim", node)
        assert pod["spec"]["containers"][0]["image"] == "%s@%s" % (repo, scanned)
        assert pod["status"]["containerStatuses"][0]["imageID"].endswith("@" + scanned), pod["status"]
        # The registry's log: Trivy and the node's containerd asked for the scanned digest, never for the tag.
        log = [line for line in registry.log.read_text().splitlines() if "http.request.useragent=" in line]
        for agent in ("trivy/", "containerd/"):
            mine = [line for line in log if "/v2/nim/fakenim/manifests/" in line and agent in line]
            assert mine and all("/manifests/" + scanned in line for line in mine), (agent, mine or log[-20:])
    finally:
        registry.stop()


def test_site_run_answers_through_the_service(cluster, node):
    """The README's main command on the local inventory: the demo service runs the fake NIM on the real
    node and the run ends with a chat completion answered through its Service; a rerun changes nothing."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
           "-i", os.path.join(ROOT, "inventories", "local"), os.path.join(ROOT, "playbooks", "site.yml")]
    env = dict(cluster.env, ANSIBLE_NOCOLOR="1")
    # The local inventory's fixed namespace: start from none (a previous run may still be deleting it).
    cluster.kubectl("delete", "namespace", "nim-demo", "--ignore-not-found", "--timeout", "180s")
    try:
        check = subprocess.run(cmd + ["--check"], env=env, capture_output=True, text=True, timeout=600, check=False)
        assert check.returncode == 0 and "answered through its Service" not in check.stdout, check.stdout[-4000:]
        for run in ("first", "again"):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
            assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
            assert "llama-demo answered through its Service: fake NIM echo: Hello from the nimguard site run" \
                in proc.stdout, proc.stdout[-4000:]
            if run == "again":
                assert re.search(r"\bchanged=0\b", proc.stdout.split("PLAY RECAP")[-1]), proc.stdout[-4000:]
        (pod,) = running_on_node(cluster, "nim-demo", "llama-demo", node)
        assert pod["spec"]["containers"][0]["image"] == FAKENIM
    finally:
        cluster.kubectl("delete", "namespace", "nim-demo", "--wait=false", check=False)
