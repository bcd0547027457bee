"""The action plugin (in the controller's worker) and the module (AnsiballZ, NIMGUARD_REMOTE_MODULE=1) say the same
things about the task's arguments: ansible-core's "Unsupported parameters for (module)" error, type errors, and the
warning for an option set together with its alias."""

import os

import pytest

from playbook import run_play

PATHS = {"action plugin": {}, "module": {"NIMGUARD_REMOTE_MODULE": "1"}}


def both(cluster, task):
    """{path: (result, output)} of the same task on both paths."""
    out = {}
    for path, env in PATHS.items():
        play = run_play(cluster, [task], env=env)
        out[path] = (play[0], play.output)
    return out


def test_unsupported_parameter_and_type_error_read_the_same(cluster, namespace):
    runs = both(cluster, {"nimguard.k8s.nim_info": {"kind": "ConfigMap", "namespace": namespace, "nmae": "x"}})
    msgs = dict((path, r[0].get("msg")) for path, r in runs.items())
    assert msgs["module"].startswith("Unsupported parameters for (nimguard.k8s.nim_info) module: nmae."), msgs
    assert msgs["action plugin"] == msgs["module"], msgs

    runs = both(cluster, {"nimguard.k8s.nim_info": {"kind": "ConfigMap", "namespace": namespace, "wait_timeout": "x"}})
    msgs = dict((path, r[0].get("msg")) for path, r in runs.items())
    assert "wait_timeout" in msgs["module"] and msgs["action plugin"] == msgs["module"], msgs


def test_option_and_alias_warning_reads_the_same(cluster, namespace):
    ca = os.path.join(cluster.state, "pki", "ca.crt")
    if not os.path.exists(ca):
        pytest.skip("no CA file in the cluster's state folder")
    task = {"kind": "ConfigMap", "namespace": namespace, "ca_cert": ca, "ssl_ca_cert": ca}
    runs = both(cluster, {"nimguard.k8s.nim_info": task})
    warnings = dict((path, r[0].get("warnings")) for path, r in runs.items())
    assert warnings["module"] == ["Both option ca_cert and its alias ssl_ca_cert are set."], warnings
    assert warnings["action plugin"] == warnings["module"], warnings
    for path, (result, output) in runs.items():
        assert not result.get("failed"), (path, result)
        assert "[WARNING]: Both option ca_cert and its alias ssl_ca_cert are set." in output, (path, output[-3000:])
