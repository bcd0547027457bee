import pytest
import yaml

from ansible_collections.nimguard.k8s.plugins.module_utils import client, errors, kubeconfig


def write_kubeconfig(tmp_path, **user):
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "dev",
           "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority": "ca.crt"}}],
           "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u"}},
                        {"name": "prod", "context": {"cluster": "c", "user": "u2"}}],
           "users": [{"name": "u", "user": user or {"token": "t1"}}, {"name": "u2", "user": {"token": "t2"}}]}
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_kubeconfig_context_and_relative_paths(tmp_path):
    path = write_kubeconfig(tmp_path)
    cfg = kubeconfig.resolve_config(kubeconfig.connection_params({"kubeconfig": path}, env={}), env={})
    assert cfg.server == "https://127.0.0.1:6443" and cfg.token == "t1"
    assert cfg.ca_file == str(tmp_path / "ca.crt")
    cfg = kubeconfig.resolve_config(kubeconfig.connection_params({"kubeconfig": path, "context": "prod"}, env={}), env={})
    assert cfg.token == "t2"


def test_unknown_context_names_the_known_ones(tmp_path):
    path = write_kubeconfig(tmp_path)
    with pytest.raises(errors.NimError) as e:
        kubeconfig.resolve_config(kubeconfig.connection_params({"kubeconfig": path, "context": "nope"}, env={}), env={})
    assert "'nope'" in e.value.msg and "dev, prod" in e.value.msg


def test_env_fallback_and_explicit_override(tmp_path):
    path = write_kubeconfig(tmp_path)
    env = {"K8S_AUTH_KUBECONFIG": path, "K8S_AUTH_CONTEXT": "prod", "K8S_AUTH_VERIFY_SSL": "no"}
    conn = kubeconfig.connection_params({"host": "https://10.0.0.1:6443"}, env=env)
    cfg = kubeconfig.resolve_config(conn, env=env)
    assert cfg.server == "https://10.0.0.1:6443" and cfg.token == "t2" and cfg.verify is False


def test_no_cluster_at_all_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(errors.NimError, match="No cluster to talk to"):
        kubeconfig.resolve_config(kubeconfig.connection_params({}, env={}), env={})


def test_resource_paths():
    dep = client.Resource("apps/v1", "Deployment", "deployments", True)
    assert dep.path("nim", "llama") == "/apis/apps/v1/namespaces/nim/deployments/llama"
    ns = client.Resource("v1", "Namespace", "namespaces", False)
    assert ns.path("ignored", "nim") == "/api/v1/namespaces/nim"


def test_concurrent_reads_of_a_loop_share_one_list():
    """With shared_lists, the reads checks.read starts in parallel wait for the first one's namespace-wide LIST
    instead of each sending its own (the list form of nim_secret reads 50 Secrets this way)."""
    import http.server
    import threading
    import time

    from .helpers import JsonHandler

    lists = []

    class Api(JsonHandler):
        def do_GET(self):
            if "labelSelector" in self.path:
                lists.append(self.path)
                time.sleep(0.3)  # every reader has asked before the first LIST answers
                self.send_json(200, {"items": [{"metadata": {"name": "ngc", "labels": {}}}]})
            else:
                self.send_json(404, {"kind": "Status", "code": 404})

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = kubeconfig.resolve_config(kubeconfig.connection_params(
            {"host": "http://127.0.0.1:%d" % server.server_port}, env={}), env={})
        c = client.Client(cfg)
        c.shared_lists = True
        res = client.Resource("v1", "Secret", "secrets", True)
        names = ["ngc", "hf-1", "hf-2", "pull-1", "pull-2", "pull-3"]
        found = dict(zip(names, client.parallel(lambda n: c.get_cached(res, "nim", n), names)))
    finally:
        server.shutdown()
        server.server_close()
    assert len(lists) == 1, lists
    assert found["ngc"]["metadata"]["name"] == "ngc" and found["hf-1"] is None
