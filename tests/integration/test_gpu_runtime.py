"""gpu_runtime: the cluster side against the real API server; the node side against config files in a temp folder
(validated by this machine's own `containerd config dump`, restarts by a stand-in command), and on the local
cluster's real node: the toolkit installed from a local signed apt repository, the node's containerd configured
and restarted, pods on the default runtime and on the nvidia runtime running, a failed restart rolled back.
The GPU itself is proven by tests/gpu/ on a GPU machine."""

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
import uuid

import pytest

from conftest import ROOT
from playbook import run_play, writes
from realnode import CLUSTER, create, pod_manifest, real_node, wait_until

ROLE = "nimguard.k8s.gpu_runtime"
CANARY = "canary-" + uuid.uuid4().hex  # made per run: no credential-shaped literal in Git
V2_MAIN = ('version = 2\n\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.9"\n'
           '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n    SystemdCgroup = true\n')


def node_task(tmp_path, **overrides):
    """The node side against files under tmp_path; restarts are logged by a stand-in command and the health
    check is `true` unless a test says otherwise."""
    variables = dict(
        gpu_runtime_toolkit_install="skip",
        gpu_runtime_toolkit_min_version="",
        gpu_runtime_containerd_config=str(tmp_path / "config.toml"),
        gpu_runtime_containerd_dropin_dir=str(tmp_path / "conf.d"),
        gpu_runtime_toolkit_config=str(tmp_path / "nvidia-container-runtime" / "config.toml"),
        gpu_runtime_ctk_binary=str(tmp_path / "no-nvidia-ctk"),
        gpu_runtime_restart_command="sh -c 'echo restart >> %s'" % (tmp_path / "restarts.log"),
        gpu_runtime_health_command="true",
    )
    variables.update(overrides)
    return {"ansible.builtin.include_role": {"name": ROLE, "tasks_from": "node.yml"}, "vars": variables}


def restarts(tmp_path):
    log = tmp_path / "restarts.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def recap(play):
    return play.output.split("PLAY RECAP")[-1]


def run_failing(cluster, tmp_path, task, *args):
    """A play whose role fails: run_play cannot collect results then, so ansible-playbook runs directly."""
    play = tmp_path / ("play-%s.yml" % uuid.uuid4().hex[:6])
    play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "connection": "local",
                                 "tasks": [task]}]))
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                           str(play), "-e", "ansible_python_interpreter=%s" % sys.executable] + list(args),
                          env=dict(cluster.env, ANSIBLE_NOCOLOR="1"), capture_output=True, text=True, timeout=600,
                          check=False)
    proc.output = proc.stdout + proc.stderr
    return proc


def dropin(tmp_path):
    return tomllib.loads((tmp_path / "conf.d" / "99-nvidia.toml").read_text())


def test_node_side_containerd_v2_and_idempotent(cluster, tmp_path):
    (tmp_path / "config.toml").write_text(V2_MAIN)
    first = run_play(cluster, [node_task(tmp_path)])
    assert not first[0].get("failed"), first
    # containerd 1.x replaces the whole CRI section with the drop-in's: it carries the main config's.
    cri = dropin(tmp_path)["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.9"
    assert cri["containerd"]["runtimes"]["runc"] == {"options": {"SystemdCgroup": True}}
    runtime = cri["containerd"]["runtimes"]["nvidia"]
    assert runtime["runtime_type"] == "io.containerd.runc.v2"
    assert runtime["options"] == {"BinaryName": "/usr/bin/nvidia-container-runtime", "SystemdCgroup": True}
    main = tomllib.loads((tmp_path / "config.toml").read_text())
    assert main["imports"] == [str(tmp_path / "conf.d" / "*.toml")]
    assert main["version"] == 2 and main["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"]
    toolkit = tomllib.loads((tmp_path / "nvidia-container-runtime" / "config.toml").read_text())
    assert toolkit["nvidia-container-runtime"]["mode"] == "cdi"
    # Issue 19 item 15: a pod cannot ask for every GPU through NVIDIA_VISIBLE_DEVICES.
    assert toolkit["accept-nvidia-visible-devices-envvar-when-unprivileged"] is False
    assert toolkit["accept-nvidia-visible-devices-as-volume-mounts"] is True
    assert restarts(tmp_path) == 1
    # The summary names files and runtimes, and says containerd validated the result.
    assert "containerd would run with runtimes nvidia, runc" in first.output

    again = run_play(cluster, [node_task(tmp_path)])
    assert not again[0].get("failed"), again
    assert "changed=0" in recap(again)
    assert restarts(tmp_path) == 1

    # A change to the main config's CRI section reaches the drop-in on the next run, with one restart.
    main_text = (tmp_path / "config.toml").read_text().replace("pause:3.9", "pause:3.10")
    (tmp_path / "config.toml").write_text(main_text)
    synced = run_play(cluster, [node_task(tmp_path)])
    assert not synced[0].get("failed"), synced
    assert dropin(tmp_path)["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == "registry.k8s.io/pause:3.10"
    assert restarts(tmp_path) == 2


def test_check_mode_writes_nothing_and_predicts(cluster, tmp_path):
    (tmp_path / "config.toml").write_text(V2_MAIN)
    check = run_play(cluster, [node_task(tmp_path)], check=True, diff=True)
    assert not check[0].get("failed"), check
    assert check[0].get("changed") is True or "changed=0" not in recap(check), check
    assert (tmp_path / "config.toml").read_text() == V2_MAIN
    assert not (tmp_path / "conf.d" / "99-nvidia.toml").exists() and restarts(tmp_path) == 0
    run_play(cluster, [node_task(tmp_path)])
    again = run_play(cluster, [node_task(tmp_path)], check=True)
    assert "changed=0" in recap(again) and restarts(tmp_path) == 1


def test_main_config_without_version_line_gets_its_imports_at_the_top(cluster, tmp_path):
    """Issue 19 item 7: with no version line, `imports =` was appended to the file, inside its last table, where
    containerd does not read it: the drop-in was never loaded."""
    text = ('root = "/var/lib/containerd"\n[grpc]\n  address = "/run/containerd/containerd.sock"\n'
            '[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.9"\n')
    (tmp_path / "config.toml").write_text(text)
    play = run_play(cluster, [node_task(tmp_path)])
    assert not play[0].get("failed"), play
    main = tomllib.loads((tmp_path / "config.toml").read_text())
    assert main["imports"] == [str(tmp_path / "conf.d" / "*.toml")] and main["version"] == 2
    assert "imports" not in main["plugins"]["io.containerd.grpc.v1.cri"]
    assert (tmp_path / "config.toml").read_text().endswith(text)  # the rest byte for byte
    # containerd itself sees the runtime.
    dump = subprocess.run(["containerd", "--config", str(tmp_path / "config.toml"), "config", "dump"],
                          capture_output=True, text=True, check=True).stdout
    assert "nvidia" in tomllib.loads(dump)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]


def test_cri_section_in_an_imported_file_is_carried(cluster, tmp_path):
    """Issue 19 item 7: only the main file was read, so a CRI section kept in an imported file was replaced by
    the drop-in's and the node lost its sandbox image and CNI settings."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "10-cri.toml").write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n'
                                       '  sandbox_image = "local/pause:7"\n'
                                       '  [plugins."io.containerd.grpc.v1.cri".cni]\n    conf_dir = "/etc/cni/mine"\n')
    (tmp_path / "config.toml").write_text('version = 2\nimports = ["%s/*.toml"]\n' % other)
    play = run_play(cluster, [node_task(tmp_path)])
    assert not play[0].get("failed"), play
    cri = dropin(tmp_path)["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "local/pause:7" and cri["cni"] == {"conf_dir": "/etc/cni/mine"}
    dump = subprocess.run(["containerd", "--config", str(tmp_path / "config.toml"), "config", "dump"],
                          capture_output=True, text=True, check=True).stdout
    effective = tomllib.loads(dump)["plugins"]["io.containerd.grpc.v1.cri"]
    assert effective["sandbox_image"] == "local/pause:7" and "nvidia" in effective["containerd"]["runtimes"]


def test_registry_credentials_are_refused_and_never_printed(cluster, tmp_path):
    """Issue 19 item 7: the registry `auth` section was copied into a 0644 drop-in and printed at -v and in
    --diff. Now refused (nothing written) unless allowed; allowed, the drop-in is 0600 and nothing prints it."""
    text = V2_MAIN + ('[plugins."io.containerd.grpc.v1.cri".registry.configs."reg.example".auth]\n'
                      '  username = "robot"\n  password = "%s"\n' % CANARY)
    (tmp_path / "config.toml").write_text(text)
    (tmp_path / "config.toml").chmod(0o600)
    refused = run_failing(cluster, tmp_path, node_task(tmp_path), "-vvv", "--diff")
    assert refused.returncode == 2, refused.output[-3000:]
    assert 'registry.configs."reg.example".auth' in refused.output
    assert "gpu_runtime_containerd_allow_registry_auth" in refused.output
    assert CANARY not in refused.output
    assert not (tmp_path / "conf.d" / "99-nvidia.toml").exists() and (tmp_path / "config.toml").read_text() == text
    assert restarts(tmp_path) == 0

    allowed = run_failing(cluster, tmp_path, node_task(tmp_path, gpu_runtime_containerd_allow_registry_auth=True),
                          "-vvv", "--diff")
    assert allowed.returncode == 0, allowed.output[-3000:]
    assert CANARY not in allowed.output
    assert stat.S_IMODE((tmp_path / "conf.d" / "99-nvidia.toml").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "config.toml").stat().st_mode) == 0o600
    assert dropin(tmp_path)["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["configs"]["reg.example"]["auth"][
        "password"] == CANARY


def test_file_modes_are_kept(cluster, tmp_path):
    """Issue 19 item 7: both files were written 0644 whatever the node's config had."""
    (tmp_path / "config.toml").write_text(V2_MAIN)
    (tmp_path / "config.toml").chmod(0o640)
    play = run_play(cluster, [node_task(tmp_path)])
    assert not play[0].get("failed"), play
    assert stat.S_IMODE((tmp_path / "config.toml").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "conf.d" / "99-nvidia.toml").stat().st_mode) == 0o640


def test_invalid_config_is_rolled_back_before_any_restart(cluster, tmp_path):
    """Issue 19 item 7 (validate before the restart): a file imported after the drop-in replaces the CRI
    section, so containerd would run without the nvidia runtime; the dump shows it, the old files come back,
    and nothing restarts."""
    (tmp_path / "config.toml").write_text(V2_MAIN)
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "zz-later.toml").write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n'
                                                       '  sandbox_image = "later/pause:1"\n')
    proc = run_failing(cluster, tmp_path, node_task(tmp_path))
    assert proc.returncode == 2, proc.output[-3000:]
    assert "did not validate: containerd would run without the nvidia runtime" in proc.output, proc.output[-3000:]
    assert "gpu_runtime_containerd_dropin_name" in proc.output
    assert (tmp_path / "config.toml").read_text() == V2_MAIN
    assert sorted(p.name for p in (tmp_path / "conf.d").iterdir()) == ["zz-later.toml"]
    assert restarts(tmp_path) == 0


def test_failed_restart_is_rolled_back(cluster, tmp_path):
    """Issue 19 item 7 (health check and way back): the runtime does not come back healthy, so the previous
    files are put back byte for byte, the runtime restarted with them, and the node fails with the reason."""
    (tmp_path / "config.toml").write_text(V2_MAIN)
    health = tmp_path / "health"
    # Healthy only without the drop-in: a stand-in for a runtime that fails on the new config.
    health.write_text("#!/bin/sh\n! test -e %s\n" % (tmp_path / "conf.d" / "99-nvidia.toml"))
    health.chmod(0o755)
    proc = run_failing(cluster, tmp_path, node_task(tmp_path, gpu_runtime_health_command=str(health),
                                                    gpu_runtime_health_timeout=4))
    assert proc.returncode == 2, proc.output[-3000:]
    assert "did not come back healthy after the nvidia runtime was added" in proc.output
    assert "The previous files were put back and containerd runs with them again" in proc.output
    assert (tmp_path / "config.toml").read_text() == V2_MAIN
    assert not (tmp_path / "conf.d" / "99-nvidia.toml").exists()
    assert restarts(tmp_path) == 2  # with the new files, then with the old ones


def stand_in_runtime(tmp_path, version):
    (tmp_path / "bin").mkdir(exist_ok=True)
    path = tmp_path / "bin" / "nvidia-container-runtime"
    path.write_text("#!/bin/sh\necho 'NVIDIA Container Runtime version %s'\n" % version)
    path.chmod(0o755)
    return str(path)


def test_toolkit_older_than_the_minimum_is_refused(cluster, tmp_path):
    """Issue 19 item 15: toolkits before 1.17.8 let a container escape (CVE-2025-23266, CVE-2024-0132)."""
    (tmp_path / "config.toml").write_text(V2_MAIN)
    old = run_failing(cluster, tmp_path, node_task(tmp_path, gpu_runtime_toolkit_min_version="1.17.8",
                                                   gpu_runtime_runtime_binary=stand_in_runtime(tmp_path, "1.17.7")))
    assert old.returncode == 2 and "reports version 1.17.7" in old.output and "CVE-2025-23266" in old.output, \
        old.output[-3000:]
    assert not (tmp_path / "conf.d").exists() and not (tmp_path / "nvidia-container-runtime").exists()
    # A pin older than the minimum is refused before anything runs on the node.
    pinned = run_failing(cluster, tmp_path, node_task(tmp_path, gpu_runtime_toolkit_min_version="1.17.8",
                                                      gpu_runtime_toolkit_version="1.16.1-1"))
    assert pinned.returncode == 2 and "gpu_runtime_toolkit_version 1.16.1-1 is older" in pinned.output
    ok = run_play(cluster, [node_task(tmp_path, gpu_runtime_toolkit_min_version="1.17.8",
                                      gpu_runtime_runtime_binary=stand_in_runtime(tmp_path, "1.17.8"))])
    assert not ok[0].get("failed"), ok


def toolkit_build(build, setting):
    """scripts/localcluster/toolkit.sh's BUILD function run (it returns at once when built), then SETTING's value."""
    script = ("source scripts/lib/common.sh && source scripts/localcluster/build.sh && "
              "source scripts/localcluster/toolkit.sh && %s >&2 && echo \"$%s\"" % (build, setting))
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def toolkit_repo():
    """The local signed apt repository of the toolkit: its folder and its key's fingerprint."""
    repo = toolkit_build("build_toolkit_repo", "TOOLKIT_REPO")
    with open(os.path.join(repo, "fingerprint")) as f:
        return repo, f.read().strip()


def test_repository_key_with_another_fingerprint_is_not_installed(cluster, tmp_path):
    """Issue 19 item 15: the apt key was fetched and trusted as it came. Now a key whose fingerprint is not the
    configured one (or a file with an extra key) is refused before it is installed or the repository added."""
    repo, fingerprint = toolkit_repo()
    keyring = tmp_path / "keyring.asc"
    two_keys = tmp_path / "two.asc"
    with open(os.path.join(repo, "key.asc")) as f:
        key = f.read()
    two_keys.write_text(key + key)  # apt trusts every key of a signed-by file: one too many is refused
    for url, wanted, found in (("file://%s/key.asc" % repo, "C95B321B61E88C1809C4F759DDCAE044F796ECB0", fingerprint),
                               ("file://%s" % two_keys, fingerprint, "%s, %s" % (fingerprint, fingerprint))):
        proc = run_failing(cluster, tmp_path, node_task(
            tmp_path, gpu_runtime_toolkit_install="package", gpu_runtime_toolkit_apt_key_url=url,
            gpu_runtime_toolkit_apt_keyring=str(keyring), gpu_runtime_toolkit_key_fingerprint=wanted,
            gpu_runtime_toolkit_apt_repo="deb [signed-by=%s] file://%s ./" % (keyring, repo)))
        assert proc.returncode == 2, proc.output[-3000:]
        assert "has the fingerprint(s) %s, not gpu_runtime_toolkit_key_fingerprint %s" % (found, wanted) in proc.output
        assert not keyring.exists()
        sources = "/etc/apt/sources.list.d"
        assert not [n for n in os.listdir(sources) if str(keyring) in open(os.path.join(sources, n)).read()]


def test_node_side_containerd_invalid_main_config_fails_naming_it(cluster, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri"\n')
    proc = run_failing(cluster, tmp_path, node_task(tmp_path))
    assert proc.returncode == 2 and "%s is not valid TOML" % config in proc.stdout, proc.stdout[-4000:]
    assert not (tmp_path / "conf.d" / "99-nvidia.toml").exists() and restarts(tmp_path) == 0


def test_node_side_containerd_v3_keeps_existing_imports_and_default_runtime(cluster, tmp_path):
    """Config version 3 (containerd 2.x, built here: Debian's is 1.6), validated by its config dump."""
    containerd2 = os.path.join(toolkit_build("build_containerd2", "CONTAINERD2_BIN"), "containerd")
    other = tmp_path / "other"
    other.mkdir()
    # containerd 2.x merges an imported file's plugin section key by key: its settings stay, ours are added.
    (other / "10-cdi.toml").write_text("version = 3\n[plugins.'io.containerd.cri.v1.runtime']\n"
                                       "  cdi_spec_dirs = ['/etc/cdi']\n")
    (tmp_path / "config.toml").write_text('version = 3\nimports = ["%s/*.toml"]\n' % other +
                                          "[plugins.'io.containerd.cri.v1.runtime']\n  enable_cdi = true\n")
    task = node_task(tmp_path, gpu_runtime_default_runtime=True, gpu_runtime_containerd_binary=containerd2)
    play = run_play(cluster, [task])
    assert not play[0].get("failed"), play
    doc = dropin(tmp_path)
    assert doc["plugins"]["io.containerd.cri.v1.runtime"]["enable_cdi"] is True
    containerd = doc["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]
    assert containerd["default_runtime_name"] == "nvidia"
    assert containerd["runtimes"]["nvidia"]["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    assert doc["plugins"]["io.containerd.cri.v1.runtime"]["cdi_spec_dirs"] == ["/etc/cdi"]
    main = tomllib.loads((tmp_path / "config.toml").read_text())
    assert main["imports"] == ["%s/*.toml" % other, str(tmp_path / "conf.d" / "*.toml")]
    assert restarts(tmp_path) == 1
    dump = subprocess.run([containerd2, "--config", str(tmp_path / "config.toml"), "config", "dump"],
                          capture_output=True, text=True, check=True).stdout
    effective = tomllib.loads(dump)["plugins"]["io.containerd.cri.v1.runtime"]
    assert effective["enable_cdi"] is True and effective["cdi_spec_dirs"] == ["/etc/cdi"]
    assert effective["containerd"]["default_runtime_name"] == "nvidia"
    assert effective["containerd"]["runtimes"]["nvidia"]["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    # Debian's containerd 1.x cannot read version 3: the role says so before writing anything.
    (tmp_path / "v1.toml").write_text("version = 3\n")
    proc = run_failing(cluster, tmp_path, node_task(tmp_path, gpu_runtime_containerd_config=str(tmp_path / "v1.toml")))
    assert proc.returncode == 2 and "only containerd 2.x reads, and this node runs containerd 1.x" in proc.output
    again = run_play(cluster, [task])
    assert "changed=0" in recap(again), again
    assert restarts(tmp_path) == 1


def crio_task(tmp_path, **overrides):
    return node_task(tmp_path, gpu_runtime_container_runtime="crio",
                     gpu_runtime_crio_dropin=str(tmp_path / "crio" / "99-nvidia.conf"), **overrides)


def test_node_side_crio(cluster, tmp_path):
    odd = str(tmp_path / 'tool "kit"' / "nvidia-container-runtime")
    play = run_play(cluster, [crio_task(tmp_path, gpu_runtime_runtime_binary=odd)])
    assert not play[0].get("failed"), play
    conf = tomllib.loads((tmp_path / "crio" / "99-nvidia.conf").read_text())
    assert conf["crio"]["runtime"]["runtimes"]["nvidia"]["runtime_path"] == odd
    assert restarts(tmp_path) == 1


def test_crio_handler_cannot_inject_settings(cluster, tmp_path):
    """Issue 19 item 10: the handler went into the CRI-O drop-in unquoted, so a crafted value added settings."""
    handler = 'nvidia]\nruntime_path = "/tmp/evil"\n[crio.runtime.runtimes.x'
    proc = run_failing(cluster, tmp_path, crio_task(tmp_path, gpu_runtime_handler=handler))
    assert proc.returncode == 2 and "is not a valid RuntimeClass handler" in proc.output, proc.output[-3000:]
    assert not (tmp_path / "crio").exists() and not (tmp_path / "nvidia-container-runtime").exists()


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
    assert "changed=1" in recap(first), first
    assert cluster.get_json("runtimeclass", "nvidia")["handler"] == "nvidia"
    mark = cluster.audit_mark()
    again = run_play(cluster, [task])
    assert "changed=0" in recap(again), again
    assert writes(cluster, mark) == []
    # admission now accepts pods that name the RuntimeClass
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_pod("uses-nvidia"))


# ---- on the real node ---------------------------------------------------------------------------------------------

APT_SOURCE = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"


@pytest.fixture
def node(cluster):
    return real_node(cluster)


@pytest.fixture
def node_config(cluster):
    """The node's containerd main config and drop-in folder, put back as they were (and containerd restarted on
    them) after the test."""
    config, dropin_dir = cluster.env["NIMGUARD_CONTAINERD_CONFIG"], cluster.env["NIMGUARD_CONTAINERD_DROPIN_DIR"]
    with open(config) as f:
        original = f.read()
    before = set(os.listdir(dropin_dir))
    yield config, dropin_dir
    changed = False
    for name in set(os.listdir(dropin_dir)) - before:
        os.remove(os.path.join(dropin_dir, name))
        changed = True
    with open(config) as f:
        if f.read() != original:
            with open(config, "w") as out:
                out.write(original)
            changed = True
    for name in os.listdir(os.path.dirname(config)):  # the role's backups
        if name.startswith(os.path.basename(config) + ".") and name.endswith("~"):
            os.remove(os.path.join(os.path.dirname(config), name))
    if changed:
        subprocess.run([CLUSTER, "addon", "node", "restart-containerd"], env=cluster.env, check=False, timeout=60)
        wait_until("the kubelet to see containerd again", lambda: real_node(cluster), timeout=60)


@pytest.fixture
def served_repo():
    """The local apt repository where apt's unprivileged downloader (_apt) can read it (the build cache is under
    /root): a world-readable copy, and its key's fingerprint. Everything the install path puts on this machine is
    undone afterwards: the package, the apt source, the key, apt's lists."""
    repo, fingerprint = toolkit_repo()
    served = tempfile.mkdtemp(prefix="nimguard-toolkit-repo-", dir="/tmp")
    os.chmod(served, 0o755)
    for name in os.listdir(repo):
        if not name.startswith("."):
            shutil.copy(os.path.join(repo, name), served)
            os.chmod(os.path.join(served, name), 0o644)
    yield served, fingerprint
    subprocess.run(["apt-get", "purge", "-y", "-q", "nvidia-container-toolkit"], capture_output=True, check=False,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), timeout=300)
    for path in (APT_SOURCE, "/etc/apt/keyrings/nvidia-container-toolkit.asc", "/var/log/nvidia-container-runtime.log"):
        if os.path.exists(path):
            os.remove(path)
    for lists in ("/var/lib/apt/lists", "/var/lib/apt/lists/partial"):
        for name in os.listdir(lists):
            if "nimguard-toolkit-repo" in name:
                os.remove(os.path.join(lists, name))
    shutil.rmtree(served)


def containerd_pid(cluster):
    with open(os.path.join(cluster.state, "pids", "containerd.pid")) as f:
        return f.read().strip()


def node_role(cluster, config, dropin_dir, tmp_path, **overrides):
    log = tmp_path / "restarts.log"
    restart = "sh -c 'echo restart >> %s && exec %s addon node restart-containerd'" % (log, CLUSTER)
    variables = dict(gpu_runtime_containerd_config=config, gpu_runtime_containerd_dropin_dir=dropin_dir,
                     gpu_runtime_containerd_address=cluster.env["NIMGUARD_CONTAINERD_ADDRESS"],
                     gpu_runtime_cdi_spec=str(tmp_path / "cdi" / "nvidia.yaml"), gpu_runtime_restart_command=restart,
                     gpu_runtime_health_node_name=cluster.env["NIMGUARD_REAL_NODE"],
                     gpu_runtime_health_kubeconfig=cluster.kubeconfig, gpu_runtime_health_timeout=90)
    variables.update(overrides)
    return {"ansible.builtin.include_role": {"name": ROLE, "tasks_from": "node.yml"}, "vars": variables}


def runtime_options(cluster, terminated):
    """The runc options containerd keeps for a pod's container (protobuf bytes: BinaryName is a plain string)."""
    info = subprocess.run(["ctr", "--address", cluster.env["NIMGUARD_CONTAINERD_ADDRESS"], "-n", "k8s.io", "containers",
                           "info", terminated["containerID"].split("://")[1]], capture_output=True, text=True, check=True)
    return base64.b64decode((json.loads(info.stdout)["Runtime"].get("Options") or {}).get("value", ""))


def run_pod(cluster, namespace, name, **spec):
    """A restricted pod (uid 1000) on the real node that prints and exits 0: its terminated state."""
    create(cluster, namespace, pod_manifest(name, ["-c", "echo started"], command=["/bin/sh"], extra_spec=spec))
    return wait_until("pod %s to finish" % name, lambda: (cluster.get_json("pod", name, "-n", namespace)["status"]
                      .get("containerStatuses") or [{}])[0].get("state", {}).get("terminated"), timeout=120)


def test_install_path_on_the_real_node(cluster, node, node_config, served_repo, namespace, tmp_path):
    """Issue 20: the role installs the toolkit from a repository (here a local signed file:// repository of the
    binaries built from the Go module proxy), checks the key's fingerprint and the version, configures the
    node's containerd, restarts it once with a health check (CRI plugin, node Ready), and the node still runs
    pods: one on the default runtime, one with runtimeClassName nvidia through the real nvidia-container-runtime
    (CDI mode, no GPU requested: no GPU here). A second run changes nothing and does not restart containerd."""
    config, dropin_dir = node_config
    repo, fingerprint = served_repo
    # No GPU: `nvidia-ctk cdi generate` finds no NVML here, so a fixed spec stands in for its output.
    (tmp_path / "cdi").mkdir()
    (tmp_path / "cdi" / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: []\n")
    task = node_role(cluster, config, dropin_dir, tmp_path, gpu_runtime_toolkit_apt_key_url="file://%s/key.asc" % repo,
                     gpu_runtime_toolkit_key_fingerprint=fingerprint,
                     gpu_runtime_toolkit_apt_repo="deb [signed-by=/etc/apt/keyrings/nvidia-container-toolkit.asc] "
                                                  "file://%s ./" % repo)
    pid0 = containerd_pid(cluster)
    first = run_play(cluster, [task])
    assert "failed=0" in recap(first), first
    version = subprocess.run(["/usr/bin/nvidia-container-runtime", "--version"], capture_output=True, text=True,
                             check=True).stdout
    assert "version %s" % toolkit_version() in version, version
    with open("/etc/nvidia-container-runtime/config.toml") as f:  # the package's config, set by the role
        toolkit = tomllib.loads(f.read())
    assert toolkit["nvidia-container-runtime"]["mode"] == "cdi"
    assert toolkit["accept-nvidia-visible-devices-envvar-when-unprivileged"] is False
    pid1 = containerd_pid(cluster)
    assert pid1 != pid0 and (tmp_path / "restarts.log").read_text().count("restart") == 1
    assert "Wait for the node to report Ready after the restart" in first.output

    again = run_play(cluster, [task])
    assert "changed=0" in recap(again), again
    assert containerd_pid(cluster) == pid1

    cluster.kubectl("apply", "--server-side", "--field-manager", "nimguard-tests", "-f", "-", input=json.dumps(
        {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"}, "handler": "nvidia"}))
    plain = run_pod(cluster, namespace, "via-runc")
    via_nvidia = run_pod(cluster, namespace, "via-nvidia", runtimeClassName="nvidia")
    for done in (plain, via_nvidia):
        assert done["exitCode"] == 0 and done["reason"] == "Completed", done
    # containerd ran the nvidia pod's container with the toolkit's runtime as runc binary, the other one without.
    assert b"/usr/bin/nvidia-container-runtime" in runtime_options(cluster, via_nvidia)
    assert b"nvidia" not in runtime_options(cluster, plain)


def test_failed_restart_on_the_real_node_is_rolled_back(cluster, node, node_config, namespace, tmp_path):
    """The way back on the node's real containerd: containerd fails with the new config (a stand-in start
    command refuses to start it while the drop-in is there), so the health check fails, the old files come
    back, containerd runs with them and the node is Ready, pods start; the run fails naming the reason."""
    config, dropin_dir = node_config
    with open(config) as f:
        original = f.read()
    restart = tmp_path / "restart"
    restart.write_text("#!/bin/sh\necho restart >> %s\nif [ -e %s/99-nvidia.toml ]; then\n"
                       "  kill $(cat %s) 2>/dev/null; exit 0  # containerd stays down with the new config\nfi\n"
                       "exec %s addon node restart-containerd\n"
                       % (tmp_path / "restarts.log", dropin_dir, os.path.join(cluster.state, "pids", "containerd.pid"),
                          CLUSTER))
    restart.chmod(0o755)
    runtime = tmp_path / "nvidia-container-runtime"
    runtime.write_text('#!/bin/sh\nexec runc "$@"\n')
    runtime.chmod(0o755)
    task = node_role(cluster, config, dropin_dir, tmp_path, gpu_runtime_toolkit_install="skip",
                     gpu_runtime_toolkit_min_version="", gpu_runtime_runtime_binary=str(runtime),
                     gpu_runtime_toolkit_config=str(tmp_path / "toolkit.toml"), gpu_runtime_restart_command=str(restart),
                     gpu_runtime_health_timeout=10)
    proc = run_failing(cluster, tmp_path, task)
    assert proc.returncode == 2, proc.output[-3000:]
    assert "The previous files were put back and containerd runs with them again" in proc.output
    with open(config) as f:
        assert f.read() == original
    assert "99-nvidia.toml" not in os.listdir(dropin_dir)
    assert (tmp_path / "restarts.log").read_text().count("restart") == 2
    wait_until("the node to be Ready again", lambda: real_node(cluster), timeout=60)
    done = run_pod(cluster, namespace, "after-rollback")
    assert done["exitCode"] == 0, done


def toolkit_version():
    with open(os.path.join(ROOT, "scripts", "localcluster", "toolkit.sh")) as f:
        return re.search(r"^TOOLKIT_VERSION=v(\S+)", f.read(), re.M).group(1)
