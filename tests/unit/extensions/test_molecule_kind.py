"""The molecule `kind` scenario cannot run here (no Docker engine): what can be checked without one. Its service, as
the site playbook gives it to nim_service (the role's defaults under the item), renders a pod that a laptop's kind
runs without a GPU, an NGC account or a scanner, and whose start command makes the files the collection's probes
ask for; the stand-in command itself is run with BusyBox's httpd in test_the_stand_in_answers_the_probes."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest
import yaml

from ansible_collections.nimguard.k8s.plugins.module_utils import render

from ..plugins.module_utils.helpers import service

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCENARIO = os.path.join(ROOT, "extensions", "molecule", "kind")
with open(os.path.join(SCENARIO, "inventory", "group_vars", "clusters.yml")) as _f:
    KIND = yaml.safe_load(_f)
with open(os.path.join(ROOT, "roles", "nim_rollout", "defaults", "main.yml")) as _f:
    ROLE = yaml.safe_load(_f)


def deployment():
    (item,) = KIND["nim_rollout_services"]
    base = ROLE["nim_rollout_service_defaults"]
    args = dict(item, secret_delivery=dict(base["secret_delivery"], **item["secret_delivery"]),
                network_policy=base["network_policy"], namespace=KIND["nim_rollout_namespace"],
                auth_secret=ROLE["nim_rollout_ngc_secret_name"])
    (dep,) = [o for o in render.render_service(service(**args)) if o["kind"] == "Deployment"]
    return dep


def test_no_gpu_no_registry_login_and_a_stated_scan_reason():
    (item,) = KIND["nim_rollout_services"]
    assert not item["image"]["repository"].startswith("nvcr.io/")
    assert not item.get("resources", {}).get("gpus") and not item.get("runtime_class_name")
    assert KIND["nim_rollout_registry_secret"] is False
    scan = KIND["nim_rollout_image_scan"]
    assert scan["enabled"] is False and "stand-in" in scan["disabled_reason"]
    assert "NGC_API_KEY" in KIND["nim_rollout_ngc_api_key"] and "MOLECULE_EPHEMERAL_DIRECTORY" in KIND[
        "nim_rollout_ngc_api_key"]


def test_the_pod_runs_the_stand_in_behind_the_key_wrapper_in_the_restricted_pod():
    pod = deployment()["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    (item,) = KIND["nim_rollout_services"]
    assert c["image"] == "%s:%s" % (item["image"]["repository"], item["image"]["tag"])
    assert c["command"][:2] == ["/bin/sh", "-c"] and c["args"] == item["secret_delivery"]["command"]
    assert pod["securityContext"]["runAsUser"] == 1000 and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]  # where the start command writes
    assert "nvidia.com/gpu" not in str(c.get("resources"))
    start = item["secret_delivery"]["command"][2]
    port = c["ports"][0]["containerPort"]
    assert "httpd -f -p %d -h /tmp/www" % port in start
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = c[probe]["httpGet"]["path"]
        assert "/tmp/www" + path in start, (probe, path)


@pytest.mark.skipif(not shutil.which("busybox"), reason="needs busybox (scripts/setup installs busybox-static)")
def test_the_stand_in_answers_the_probes():
    """The start command as the pod runs it, with the folder and port moved to free ones on this host."""
    (item,) = KIND["nim_rollout_services"]
    pod = deployment()["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    work = tempfile.mkdtemp()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    start = item["secret_delivery"]["command"][2].replace("/tmp/www", work + "/www").replace(
        "-p %d" % c["ports"][0]["containerPort"], "-p 127.0.0.1:%d" % port).replace("exec httpd", "exec busybox httpd")
    proc = subprocess.Popen(["busybox", "sh", "-c", start])
    try:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            url = "http://127.0.0.1:%d%s" % (port, c[probe]["httpGet"]["path"])
            for attempt in range(50):
                try:
                    assert urllib.request.urlopen(url, timeout=2).status == 200
                    break
                except OSError:
                    if attempt == 49:
                        raise
                    time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(work)
