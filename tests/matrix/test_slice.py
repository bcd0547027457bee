"""The integration slice that `scripts/test matrix` runs on each ansible-core version, against the local cluster:
the site playbook, a rerun that changes nothing and writes nothing (the API server's audit log), check mode that
predicts a rotation and writes nothing, and the leak scan of everything printed at -vvvv --diff, both on the
action-plugin path (the module code in Ansible's worker) and on the module path (AnsiballZ, as on a bastion)."""

import base64
import json
import re

import pytest
import yaml

from playbook import recap, run_play, run_playbook, writes
from test_security import canary, cluster_texts, find_leaks, service, site_vars

PATHS = {"action plugin": {}, "module": {"NIMGUARD_REMOTE_MODULE": "1"}}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_site_rerun_check_mode_and_no_leak(cluster, namespace, path):
    ns, env = namespace, PATHS[path]
    key, key2, hf, pw = canary("nvapi-SLICE-"), canary("nvapi-SLICE2-"), canary("hf_SLICE"), canary("SLICEpw-")
    services = [service("slice-file", "file"), service("slice-env", "env")]
    args = ["-vvvv", "--diff"]
    start = cluster.audit_mark()

    first = run_playbook(cluster, "site.yml", site_vars(ns, key, hf, pw, services), args, env=env, expect_rc=0)
    assert recap(first)["changed"] > 0, first.output[-3000:]
    # the path really taken: only the module path sends the collection's modules as AnsiballZ payloads
    assert ("AnsiballZ_nim_service.py" in first.output) == (path == "module"), first.output[-3000:]

    mark = cluster.audit_mark()
    rerun = run_playbook(cluster, "site.yml", site_vars(ns, key, hf, pw, services), args, env=env, expect_rc=0)
    assert recap(rerun)["changed"] == 0, rerun.output[-3000:]
    assert writes(cluster, mark, ns) == []

    mark = cluster.audit_mark()
    check = run_playbook(cluster, "site.yml", site_vars(ns, key2, hf, pw, services), args + ["--check"], env=env,
                         expect_rc=0)
    assert recap(check)["changed"] > 0, check.output[-3000:]  # the rotation is predicted...
    assert [e["requestURI"] for e in writes(cluster, mark, ns) if "dryRun" not in e["requestURI"]] == []
    live = cluster.get_json("secret", "ngc-api-secret", "-n", ns)["data"]["NGC_API_KEY"]
    assert base64.b64decode(live).decode() == key  # ...and not made

    for proc in (first, rerun, check):  # nothing the collection uses is deprecated or warned about on this version
        assert re.findall(r"\[(?:DEPRECATION )?WARNING\].*", proc.output) == []

    texts = cluster_texts(cluster, ns, start)
    for what, proc in (("site run", first), ("rerun", rerun), ("check mode", check)):
        texts[what + ": stdout and stderr"] = proc.output
        texts[what + ": Ansible log"] = proc.log
    secret_text = cluster.kubectl("get", "secret", "ngc-api-secret", "-n", ns, "-o", "json").stdout
    assert find_leaks({"the Secret": secret_text}, [key]), "the scan cannot find a value it should"
    assert find_leaks(texts, [key, key2, hf, pw]) == []


@pytest.mark.parametrize("path", sorted(PATHS))
def test_kubeconfig_exec_plugin(cluster, namespace, path, tmp_path):
    """A kubeconfig whose user is an exec credential plugin (as for EKS, GKE, OIDC): started by the action plugin in
    Ansible's worker, or through AnsibleModule.run_command on the module path, with the kubeconfig's env."""
    with open(cluster.kubeconfig) as f:
        config = yaml.safe_load(f)
    identity = config["users"][0]["user"]  # this test session's own (conftest.Cluster)
    with open(identity["client-certificate"]) as cert, open(identity["client-key"]) as key:
        status = {"clientCertificateData": cert.read(), "clientKeyData": key.read()}
    (tmp_path / "credential.json").write_text(json.dumps({
        "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status}))
    plugin = tmp_path / "credential-plugin"
    plugin.write_text('#!/bin/sh\n[ "$PLUGIN_SETTING" = from-kubeconfig ] && [ -n "$KUBERNETES_EXEC_INFO" ] || exit 3\n'
                      'cat "%s"\n' % (tmp_path / "credential.json"))
    plugin.chmod(0o700)
    config["users"][0]["user"] = {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin), "interactiveMode": "Never",
        "env": [{"name": "PLUGIN_SETTING", "value": "from-kubeconfig"}]}}
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    play = run_play(cluster, [{"nimguard.k8s.nim_info": {"kind": "Namespace", "name": namespace,
                                                         "kubeconfig": str(tmp_path / "kubeconfig")}}], env=PATHS[path])
    assert play[0].get("exists") is True, play
