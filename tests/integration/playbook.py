"""Run tasks through a real `ansible-playbook` and get every task's registered result back."""

import json
import os
import subprocess
import sys
import tempfile

import yaml

WRITES = {"create", "update", "patch", "delete", "deletecollection"}


class PlayResult(object):
    def __init__(self, proc, results):
        self.proc = proc
        self.results = results
        self.output = proc.stdout + proc.stderr

    def __getitem__(self, i):
        return self.results[i]

    def __repr__(self):
        return "PlayResult(rc=%s, results=%s)\n%s" % (self.proc.returncode, self.results, self.output[-4000:])


def run_play(cluster, tasks, check=False, diff=False, verbosity=0, env=None, extra_vars=None, module_defaults=None,
             timeout=600):
    """Each task gets `register` and `ignore_errors`, so a failure is data for the test, not a crash."""
    tmp = tempfile.mkdtemp(prefix="nimguard-play-")
    out_file = os.path.join(tmp, "results.json")
    play_tasks = []
    for i, task in enumerate(tasks):
        task = dict(task)
        task.setdefault("name", "task %d" % i)
        task["register"] = "r%d" % i
        task["ignore_errors"] = True
        play_tasks.append(task)
    collect = "[%s]" % ", ".join("r%d | default({})" % i for i in range(len(tasks)))
    play_tasks.append({"name": "collect results", "ansible.builtin.copy": {
        "content": "{{ %s | to_json }}" % collect, "dest": out_file, "mode": "0600"},
        "check_mode": False, "diff": False, "changed_when": False})
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": play_tasks}]
    if module_defaults:
        play[0]["module_defaults"] = module_defaults
    path = os.path.join(tmp, "play.yml")
    with open(path, "w") as f:
        yaml.safe_dump(play, f)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", path,
           "-e", "ansible_python_interpreter=%s" % sys.executable]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if verbosity:
        cmd.append("-" + "v" * verbosity)
    run_env = dict(cluster.env)
    run_env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    run_env["ANSIBLE_NOCOLOR"] = "1"
    run_env.update(env or {})
    proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=timeout, check=False)
    results = []
    if os.path.exists(out_file):
        with open(out_file) as f:
            results = json.load(f)
    assert results, "playbook produced no results:\n%s\n%s" % (proc.stdout[-5000:], proc.stderr[-3000:])
    return PlayResult(proc, results)


def writes(cluster, mark, namespace=None):
    """Mutating requests of this test session's identities recorded by the audit log since `mark` (optionally in
    one namespace). The cluster's own components write too (controllers, the kubelet, KWOK's pod and node status),
    and so may other sessions sharing the cluster: each acts under identities of its own (conftest.Cluster)."""
    events = cluster.audit_events(mark, verbs=WRITES, namespace=namespace)
    return [e for e in events if e.get("user", {}).get("username") in (cluster.user, cluster.limited_user)]


def run_playbook(cluster, playbook, group_vars, args=(), env=None, timeout=600, expect_rc=None, python=None):
    """Run one of the collection's playbooks (playbooks/NAME.yml) on a one-cluster inventory like
    inventories/local, with `group_vars` for the `clusters` group; returns the CompletedProcess with a
    `.output` (stdout + stderr) and the text of the Ansible log file. `python`: the interpreter of another
    environment, whose ansible-playbook runs it (default: this one)."""
    python = python or sys.executable
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tmp = tempfile.mkdtemp(prefix="nimguard-site-")
    os.makedirs(os.path.join(tmp, "group_vars"))
    with open(os.path.join(tmp, "hosts.yml"), "w") as f:
        yaml.safe_dump({"clusters": {"hosts": {"local": {
            "ansible_connection": "local", "ansible_python_interpreter": python}}},
            "gpu_nodes": {"hosts": {}}}, f)
    # The local inventory's image scan setting (off, with its reason) unless the test sets its own.
    with open(os.path.join(root, "inventories", "local", "group_vars", "clusters.yml")) as f:
        local = {"nim_rollout_image_scan": yaml.safe_load(f)["nim_rollout_image_scan"]}
    with open(os.path.join(tmp, "group_vars", "clusters.yml"), "w") as f:
        yaml.safe_dump(dict(dict(local, nimguard_kubeconfig=cluster.kubeconfig), **group_vars), f)
    log_path = os.path.join(tmp, "ansible.log")
    # The inventory file, not its folder: Ansible would also read the log file there as an inventory (and warn).
    cmd = [os.path.join(os.path.dirname(python), "ansible-playbook"), "-i", os.path.join(tmp, "hosts.yml"),
           os.path.join(root, "playbooks", playbook)] + list(args)
    run_env = dict(cluster.env, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOG_PATH=log_path)
    run_env.update(env or {})
    proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=timeout, check=False)
    proc.output = proc.stdout + proc.stderr
    proc.log = open(log_path).read() if os.path.exists(log_path) else ""
    if expect_rc is not None:
        assert proc.returncode == expect_rc, "%s exited %s:\n%s" % (playbook, proc.returncode, proc.output[-6000:])
    return proc


def recap(proc):
    """{'ok': n, 'changed': n, 'failed': n, ...} of the last PLAY RECAP line."""
    import re
    lines = [ln for ln in proc.stdout.splitlines() if re.match(r"^\S+\s+:\s+ok=", ln)]
    assert lines, proc.output[-4000:]
    return dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1]))
