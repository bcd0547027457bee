"""Security and reliability suite, part 1: secret leak scan and the site, rotation, doctor and remove
playbooks, against the real API server.

The leak scan runs every scenario at -vvvv with --diff and canary secret values, then looks for each
canary, plain or base64-encoded at any alignment, in stdout, stderr, the Ansible log, registered
results, the audit log and every pod, Deployment, ConfigMap and Event of the namespace."""

import base64
import json
import uuid

from playbook import recap, run_play, run_playbook


def canary(prefix):
    return "%s%s" % (prefix, uuid.uuid4().hex)


def encodings(value):
    """The plain value and the stable middle of its base64 text at the three byte alignments, so a value
    embedded in a larger base64 blob (a dockerconfigjson, say) is found too."""
    out = {value}
    for pad in ("", "x", "xy"):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            text = enc((pad + value).encode()).decode().rstrip("=")
            start = (len(pad) * 4 + 2) // 3 + 1  # skip characters mixing padding bytes
            out.add(text[start:len(text) - 3])
    return out


def find_leaks(haystacks, secrets):
    found = []
    for where, text in haystacks.items():
        for secret in secrets:
            for needle in encodings(secret):
                if needle and needle in text:
                    found.append("%s contains %s" % (where, "the value" if needle == secret else "it in base64"))
    return found


def service(name, delivery, **extra):
    svc = {"name": name, "image": {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"},
           "secret_delivery": {"mode": delivery},
           "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}}
    svc.update(extra)
    return svc


def site_vars(ns, key, hf, registry_password, services):
    return {"nim_rollout_namespace": ns, "nim_rollout_ngc_api_key": key, "nim_rollout_hf_token": hf,
            "nim_rollout_registry_password": registry_password, "nim_rollout_services": services,
            "nim_rollout_wait_timeout": 120}


def cluster_texts(cluster, ns, mark):
    with open(cluster.audit_log, "rb") as f:
        f.seek(mark)
        audit = f.read().decode("utf-8", "replace")
    texts = {"audit log": audit}
    for kind in ("pods", "deployments", "replicasets", "configmaps", "events", "services", "networkpolicies"):
        texts["%s in %s" % (kind, ns)] = cluster.kubectl("get", kind, "-n", ns, "-o", "json").stdout
    return texts


def test_no_secret_value_leaks_anywhere(cluster, namespace):
    ns = namespace
    key, key2, hf, pw = (canary("nvapi-LEAK-"), canary("nvapi-LEAK2-"), canary("hf_LEAK"), canary("LEAKpw-"))
    secrets = [key, key2, hf, pw]
    services = [service("leak-file", "file"), service("leak-env", "env"),
                service("leak-vault", "vault_agent", secret_delivery={
                    "mode": "vault_agent", "vault": {"address": "https://vault.example.com:8200", "role": "nim",
                                                     "secret_path": "secret/data/nim/ngc"}})]
    mark = cluster.audit_mark()
    outputs = {}
    vvvv = ["-vvvv", "--diff"]
    first = run_playbook(cluster, "site.yml", site_vars(ns, key, hf, pw, services), vvvv, expect_rc=0)
    outputs["site run"] = first
    again = run_playbook(cluster, "site.yml", site_vars(ns, key, hf, pw, services), vvvv + ["--check"], expect_rc=0)
    outputs["site run in check mode"] = again
    assert recap(again)["changed"] == 0, again.output[-3000:]
    predicted = run_playbook(cluster, "rotate_secrets.yml", site_vars(ns, key2, hf + "x", pw, services),
                             vvvv + ["--check"], expect_rc=0)
    outputs["rotation in check mode"] = predicted
    rotated = run_playbook(cluster, "rotate_secrets.yml", site_vars(ns, key2, hf + "x", pw, services), vvvv,
                           expect_rc=0)
    outputs["rotation"] = rotated
    assert "leak-file" in rotated.stdout and recap(rotated)["changed"] > 0
    broken = run_playbook(cluster, "site.yml", site_vars(ns, key2, hf, pw, [
        service("leak-broken", "env", runtime_class_name="no-such-runtime")]), vvvv)
    outputs["failing site run"] = broken
    assert broken.returncode != 0 and "no-such-runtime" in broken.output
    outputs["doctor"] = run_playbook(cluster, "doctor.yml", site_vars(ns, key2, hf, pw, services), vvvv)
    secrets.append(hf + "x")

    # modules directly: generic and registry secrets in check, diff and real mode, and a failure
    generic = canary("LEAKgeneric-")
    secrets.append(generic)

    def generic_secret(name, value):
        return [{"nimguard.k8s.nim_secret": {"name": name, "namespace": ns, "kind": "generic",
                                             "data": {"password": value}}}]
    plays = [
        run_play(cluster, generic_secret("app", generic), check=True, diff=True, verbosity=4),
        run_play(cluster, generic_secret("app", generic), diff=True, verbosity=4),
        run_play(cluster, generic_secret("app", generic + "2"), diff=True, verbosity=4),
        run_play(cluster, generic_secret("Bad_Name", generic), verbosity=4),
    ]
    assert plays[0][0]["changed"] and plays[1][0]["changed"] and plays[2][0]["changed"]
    assert plays[3][0]["failed"]
    for i, play in enumerate(plays):
        outputs["module play %d" % i] = play.proc
        outputs["module play %d" % i].output = play.output + json.dumps(play.results)
        outputs["module play %d" % i].log = ""

    texts = {}
    for what, proc in outputs.items():
        texts[what + ": stdout and stderr"] = proc.output
        texts[what + ": Ansible log"] = proc.log
    texts.update(cluster_texts(cluster, ns, mark))
    # the Secrets themselves hold the values, as they must: prove the scan can find them there
    secret_text = cluster.kubectl("get", "secret", "app", "-n", ns, "-o", "json").stdout
    assert find_leaks({"the Secret": secret_text}, [generic + "2"]), "the scan cannot find a value it should"
    assert find_leaks(texts, secrets) == []

    # delivery: nothing secret in any container's environment with `file` and `vault_agent`
    for name in ("leak-file", "leak-vault"):
        dep = cluster.get_json("deployment", name, "-n", ns)
        for c in dep["spec"]["template"]["spec"]["containers"] + dep["spec"]["template"]["spec"].get(
                "initContainers", []):
            refs = [e for e in c.get("env", []) if (e.get("valueFrom") or {}).get("secretKeyRef")]
            assert refs == [] and not c.get("envFrom"), (name, c["name"], c.get("env"))


def test_remove_playbook_deletes_services_and_keeps_namespace_and_secrets(cluster, namespace):
    ns = namespace
    key = canary("nvapi-REMOVE-")
    group_vars = site_vars(ns, key, "", key, [service("to-remove", "file")])
    run_playbook(cluster, "site.yml", group_vars, expect_rc=0)
    assert cluster.get_json("deployment", "to-remove", "-n", ns)["spec"]["replicas"] == 1
    checked = run_playbook(cluster, "remove.yml", group_vars, ["--check"], expect_rc=0)
    assert recap(checked)["changed"] > 0
    assert cluster.kubectl("get", "deployment", "to-remove", "-n", ns, check=False).returncode == 0
    gone = run_playbook(cluster, "remove.yml", group_vars, expect_rc=0)
    assert recap(gone)["changed"] > 0
    for kind in ("deployment", "service", "networkpolicy", "serviceaccount", "role", "rolebinding"):
        assert cluster.kubectl("get", kind, "to-remove", "-n", ns, check=False).returncode != 0, kind
    assert cluster.kubectl("get", "secret", "ngc-api-secret", "-n", ns, check=False).returncode == 0
    again = run_playbook(cluster, "remove.yml", group_vars, expect_rc=0)
    assert recap(again)["changed"] == 0


def test_doctor_playbook_alone_reports_problems_with_fixes(cluster, namespace):
    ns = namespace
    group_vars = {"nim_rollout_namespace": ns, "nim_rollout_services": [
        service("needs-gpu-runtime", "file", runtime_class_name="nvidia-missing", auth_secret="absent-secret")]}
    mark = cluster.audit_mark()
    proc = run_playbook(cluster, "doctor.yml", group_vars)
    assert proc.returncode != 0, proc.output[-3000:]
    assert "absent-secret" in proc.output and "nvidia-missing" in proc.output
    assert "Fix" in proc.output or "fix" in proc.output
    ours = [e for e in cluster.audit_events(mark, verbs={"create", "update", "patch", "delete"})
            if e["user"]["username"] == cluster.user and "selfsubjectaccessreviews" not in e["requestURI"]]
    assert ours == [], "the doctor wrote to the cluster: %s" % [e["requestURI"] for e in ours]
    # with everything in place the doctor passes
    ok = run_playbook(cluster, "site.yml", site_vars(ns, canary("nvapi-DOC-"), "", "x", [service("fine", "file")]),
                      expect_rc=0)
    assert ok.returncode == 0
    fine = run_playbook(cluster, "doctor.yml", {"nim_rollout_namespace": ns,
                                                "nim_rollout_services": [service("fine", "file")]})
    assert fine.returncode == 0, fine.output[-3000:]


def test_rotate_playbook_rolls_only_services_whose_secret_changed(cluster, namespace):
    ns = namespace
    key = canary("nvapi-ROT-")
    services = [service("rot-a", "file"), service("rot-b", "env", auth_secret="other-key")]
    cluster.kubectl("create", "secret", "generic", "other-key", "-n", ns, "--from-literal=NGC_API_KEY=" + canary("x"))
    run_playbook(cluster, "site.yml", site_vars(ns, key, "", key, services), expect_rc=0)

    def template_hashes():
        return dict((n, json.dumps(cluster.get_json("deployment", n, "-n", ns)["spec"]["template"], sort_keys=True))
                    for n in ("rot-a", "rot-b"))
    before = template_hashes()
    same = run_playbook(cluster, "rotate_secrets.yml", site_vars(ns, key, "", key, services), expect_rc=0)
    assert recap(same)["changed"] == 0 and template_hashes() == before
    rolled = run_playbook(cluster, "rotate_secrets.yml", site_vars(ns, canary("nvapi-ROT2-"), "", key, services),
                          expect_rc=0)
    after = template_hashes()
    assert after["rot-a"] != before["rot-a"] and after["rot-b"] == before["rot-b"]
    assert "rot-a" in rolled.stdout
    dep = cluster.get_json("deployment", "rot-a", "-n", ns)
    assert dep["status"].get("updatedReplicas") == dep["spec"]["replicas"]  # waited for the rollout


def _exec_kubeconfig(cluster, tmp_path, script, args):
    """A copy of the session's kubeconfig whose user authenticates through an exec plugin `script`."""
    import yaml
    plugin = tmp_path / "plugin.sh"
    plugin.write_text("#!/bin/sh\n" + script + "\n")
    plugin.chmod(0o755)
    cfg = yaml.safe_load(open(cluster.kubeconfig))
    for user in cfg["users"]:
        user["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
                                 "args": args, "interactiveMode": "Never"}}
    path = tmp_path / "exec.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_exceptions_leave_through_the_scrubber_on_both_paths(cluster, namespace, tmp_path):
    """Issue 19 item 1: failures that are not NimError (bad header values, an exec plugin's bad output, YAML,
    JSON and unicode errors, an API body echoing the object) at -vvvv, on the action-plugin path and the module
    path: the exception's type and a safe message, never a canary."""
    ns = namespace
    secrets = []

    def new(prefix):
        secrets.append(canary(prefix))
        return secrets[-1]
    newline_key, inner_key = new("tokLEAKnl-") + "\n", new("tokLEAKmid-") + "\n" + new("tokLEAKtail-")
    exec_token, yaml_pw, unicode_pw, echoed = new("execLEAK-"), new("yamlLEAK-"), new("uniLEAK-"), new("echoLEAK-")
    bad_json = _exec_kubeconfig(cluster, tmp_path, "echo '{\"status\": {\"token\": \"%s\"'" % exec_token,
                                ["--oidc-client-secret=" + exec_token])
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes(b"apiVersion: v1\nkind: Secret\nmetadata: {name: u}\nstringData:\n  password: "
                      + unicode_pw.encode() + b"\xff\xfe\n")
    info = {"kind": "Namespace", "name": ns}
    tasks = [
        {"nimguard.k8s.nim_info": dict(info, api_key=newline_key)},  # stripped: a usable header
        {"nimguard.k8s.nim_info": dict(info, api_key=inner_key)},  # a line break inside: refused safely
        {"nimguard.k8s.nim_info": dict(info, kubeconfig=bad_json)},  # the plugin's output is not JSON
        {"nimguard.k8s.nim_apply": {"namespace": ns, "definition": "apiVersion: v1\nkind: Secret\nmetadata: {name: y}\n"
                                    "stringData:\n  password: %s\n  other: [unclosed\n" % yaml_pw}},
        {"nimguard.k8s.nim_apply": {"namespace": ns, "src": str(latin)}},
        {"nimguard.k8s.nim_apply": {"namespace": ns, "definition": {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "echo", "namespace": ns},
            "stringData": {"password": {"nested": echoed}}}}},
    ]
    for env in ({}, {"NIMGUARD_REMOTE_MODULE": "1"}):
        play = run_play(cluster, tasks, verbosity=4, env=env)
        where = "module path" if env else "action-plugin path"
        text = play.output + json.dumps(play.results)
        leaks = [(s_, text[max(0, text.find(s_) - 300):text.find(s_) + 80]) for s_ in secrets if s_ in text]
        assert find_leaks({where: text}, secrets) == [], (where, find_leaks({where: text}, secrets), leaks)
        assert not play[0].get("failed"), (where, play[0])
        for result in play.results[1:]:
            assert result.get("failed") and "Traceback" not in json.dumps(result), (where, result)
        assert "Unexpected ValueError" in play[1]["msg"] and "api_key" in play[1]["msg"], (where, play[1])
        assert "JSON" in play[2]["msg"] or "exec plugin" in play[2]["msg"], (where, play[2])
        assert "YAML" in play[3]["msg"] and "line 7" in play[3]["msg"], (where, play[3])
        assert "UnicodeDecodeError" in play[4]["msg"] or "UTF-8" in play[4]["msg"], (where, play[4])
        assert play[5]["msg"], (where, play[5])
