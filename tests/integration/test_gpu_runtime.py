"""gpu_runtime: cluster side against the real API server; node side against config files in a temp
folder (the real-containerd and real-GPU checks live in test_real_node.py and tests/gpu/)."""

import json
import os
import subprocess
import sys
import tomllib

from playbook import run_play, writes

ROLE = "nimguard.k8s.gpu_runtime"


def node_task(tmp_path, **overrides):
    variables = dict(
        gpu_runtime_toolkit_install="skip",
        gpu_runtime_containerd_config=str(tmp_path / "config.toml"),
        gpu_runtime_containerd_dropin_dir=str(tmp_path / "conf.d"),
        gpu_runtime_toolkit_config=str(tmp_path / "nvidia-container-runtime" / "config.toml"),
        gpu_runtime_ctk_binary=str(tmp_path / "no-nvidia-ctk"),
        gpu_runtime_restart_command="sh -c 'echo restart >> %s'" % (tmp_path / "restarts.log"),
    )
    variables.update(overrides)
    return {"ansible.builtin.include_role": {"name": ROLE, "tasks_from": "node.yml"}, "vars": variables}


def restarts(tmp_path):
    log = tmp_path / "restarts.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_node_side_containerd_v2_and_idempotent(cluster, tmp_path):
    (tmp_path / "config.toml").write_text(
        'version = 2\n\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.9"\n'
        '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n    SystemdCgroup = true\n')
    first = run_play(cluster, [node_task(tmp_path)])
    assert not first[0].get("failed"), first
    # containerd replaces the whole CRI section with the drop-in's: it carries the main config's.
    cri = tomllib.loads((tmp_path / "conf.d" / "99-nvidia.toml").read_text())["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.9"
    assert cri["containerd"]["runtimes"]["runc"] == {"options": {"SystemdCgroup": True}}
    runtime = cri["containerd"]["runtimes"]["nvidia"]
    assert runtime["runtime_type"] == "io.containerd.runc.v2"
    assert runtime["options"] == {"BinaryName": "/usr/bin/nvidia-container-runtime", "SystemdCgroup": True}
    main = tomllib.loads((tmp_path / "config.toml").read_text())
    assert main["imports"] == [str(tmp_path / "conf.d" / "*.toml")]
    assert main["version"] == 2 and main["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"]
    mode = tomllib.loads((tmp_path / "nvidia-container-runtime" / "config.toml").read_text())
    assert mode["nvidia-container-runtime"]["mode"] == "cdi"
    assert restarts(tmp_path) == 1

    again = run_play(cluster, [node_task(tmp_path)])
    assert not again[0].get("failed"), again
    assert "changed=0" in again.output.split("PLAY RECAP")[1]
    assert restarts(tmp_path) == 1

    # A change to the main config's CRI section reaches the drop-in on the next run, with one restart.
    main_text = (tmp_path / "config.toml").read_text().replace("pause:3.9", "pause:3.10")
    (tmp_path / "config.toml").write_text(main_text)
    synced = run_play(cluster, [node_task(tmp_path)])
    assert not synced[0].get("failed"), synced
    cri = tomllib.loads((tmp_path / "conf.d" / "99-nvidia.toml").read_text())["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10"
    assert restarts(tmp_path) == 2


def test_node_side_containerd_invalid_main_config_fails_naming_it(cluster, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri"\n')
    # Not run_play: the role's failure ends the play before it collects results.
    play = tmp_path / "play.yml"
    play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "connection": "local",
                                 "tasks": [node_task(tmp_path)]}]))
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                           str(play), "-e", "ansible_python_interpreter=%s" % sys.executable],
                          env=dict(cluster.env, ANSIBLE_NOCOLOR="1"), capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 2 and "%s is not valid TOML" % config in proc.stdout, proc.stdout[-4000:]
    assert not (tmp_path / "conf.d" / "99-nvidia.toml").exists() and restarts(tmp_path) == 0


def test_node_side_containerd_v3_keeps_existing_imports_and_default_runtime(cluster, tmp_path):
    (tmp_path / "config.toml").write_text('version = 3\nimports = ["/etc/containerd/other/*.toml"]\n'
                                          "[plugins.'io.containerd.cri.v1.runtime']\n  enable_cdi = true\n")
    play = run_play(cluster, [node_task(tmp_path, gpu_runtime_default_runtime=True)])
    assert not play[0].get("failed"), play
    dropin = tomllib.loads((tmp_path / "conf.d" / "99-nvidia.toml").read_text())
    assert dropin["plugins"]["io.containerd.cri.v1.runtime"]["enable_cdi"] is True
    containerd = dropin["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]
    assert containerd["default_runtime_name"] == "nvidia"
    assert containerd["runtimes"]["nvidia"]["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    main = tomllib.loads((tmp_path / "config.toml").read_text())
    assert main["imports"] == ["/etc/containerd/other/*.toml", str(tmp_path / "conf.d" / "*.toml")]
    assert restarts(tmp_path) == 1
    again = run_play(cluster, [node_task(tmp_path, gpu_runtime_default_runtime=True)])
    assert "changed=0" in again.output.split("PLAY RECAP")[1], again
    assert restarts(tmp_path) == 1


def test_node_side_crio(cluster, tmp_path):
    play = run_play(cluster, [node_task(tmp_path, gpu_runtime_container_runtime="crio",
                                        gpu_runtime_crio_dropin=str(tmp_path / "crio" / "99-nvidia.conf"))])
    assert not play[0].get("failed"), play
    conf = tomllib.loads((tmp_path / "crio" / "99-nvidia.conf").read_text())
    assert conf["crio"]["runtime"]["runtimes"]["nvidia"]["runtime_path"] == "/usr/bin/nvidia-container-runtime"
    assert restarts(tmp_path) == 1


def _pod(name):
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "runtimeClassName": "nvidia", "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                                          "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "x", "securityContext": {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}})


def test_cluster_side_runtime_class(cluster, namespace):
    cluster.kubectl("delete", "runtimeclass", "nvidia", "--ignore-not-found")
    task = {"ansible.builtin.include_role": {"name": ROLE, "tasks_from": "cluster.yml"}}
    mark = cluster.audit_mark()
    check = run_play(cluster, [task], check=True)
    assert not check[0].get("failed"), check
    assert [e for e in writes(cluster, mark) if "dryRun=All" not in e.get("requestURI", "")] == []
    assert cluster.kubectl("get", "runtimeclass", "nvidia", check=False).returncode != 0

    first = run_play(cluster, [task])
    assert "changed=1" in first.output.split("PLAY RECAP")[1], first
    assert cluster.get_json("runtimeclass", "nvidia")["handler"] == "nvidia"
    mark = cluster.audit_mark()
    again = run_play(cluster, [task])
    assert "changed=0" in again.output.split("PLAY RECAP")[1], again
    assert writes(cluster, mark) == []
    # admission now accepts pods that name the RuntimeClass
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_pod("uses-nvidia"))
