"""Benchmark: converging N NIM services with this collection against kubectl and kubernetes.core.

Prints figures; asserts nothing. Every comparison is a ratio of runs paired in the same loop
(A B A B ...), since these machines are noisy. Run it with the local cluster up:

    scripts/bench [--row ROW] [--runs 5] [--sizes 1,10,100] [--skip-slow] [--contenders a_nimguard,b_kubectl,d_ping]

(a) this collection: nim_secret + nim_service tasks for 1 service, the nim_rollout role for N > 1
(b) kubectl apply --server-side of the same rendered objects (one kubectl per service)
(c) kubernetes.core.k8s: one task per object, and one task per service holding all its objects
(d) a playbook with one ansible.builtin.ping task: Ansible's fixed cost

--per-service-secrets (instead): reruns of nim_rollout with 10 services and five per-service Secrets each (NGC key, HF
token, three pull secrets; 50 Secrets) in the role's one Secret task (nim_rollout_service_secrets), against the same
Secrets in a nim_secret loop, the role with no per-service Secrets, nim_secret's list form and loop alone, and the ping
playbook.

--start-delay S (instead): the nim_rollout role's converge and wait for 1 service, then 10, whose pods become ready S seconds
after they start (the fake NIM's FAKENIM_STARTUP_DELAY on the local cluster's real node): the role applies them all
before waiting for all together, so 10 should take little more than 1.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
IMAGE = {"repository": "nvcr.io/nim/meta/llama-3.1-8b-instruct", "tag": "1.3.3"}
KEY = "nvapi-bench-" + "0" * 40
CONTENDERS = ["a_nimguard", "b_kubectl", "c_core_per_service", "c_core_per_object", "d_ping"]
# The fake NIM image on the real node (scripts/localcluster/testimages), with probes every second.
FAKE_NIM = {"repository": "docker.io/local/fakenim", "tag": "1", "pull_policy": "Never"}
REAL_NODE = "nimguard.io/real-node"
FAST_PROBES = {"startup": {"initial_delay_seconds": 0, "period_seconds": 1, "failure_threshold": 300,
                           "timeout_seconds": 5},
               "readiness": {"period_seconds": 1, "failure_threshold": 3, "timeout_seconds": 5}}


def ansible_version():
    from ansible.release import __version__
    return __version__


def service_options(i, namespace):
    """One service with the full set of objects: SA, Role, RoleBinding, 2 Secrets, PVC, Deployment,
    Service, Ingress (TLS), NetworkPolicy = 10 objects."""
    return {"name": "nim-%03d" % i, "namespace": namespace, "auth_secret": "ngc-%03d" % i,
            "image": dict(IMAGE, pull_secrets=["pull-%03d" % i]),
            "storage": {"pvc": {"create": True, "size": "50Gi"}},
            "expose": {"ingress": {"enabled": True, "host": "nim-%03d.example.com" % i,
                                   "tls_secret_name": "tls-%03d" % i}},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}}


def render_objects(n, namespace):
    """The exact objects the collection applies, through its own rendering (for kubectl and kubernetes.core)."""
    sys.path.insert(0, os.environ["COLLECTIONS_DIR"])
    from ansible_collections.nimguard.k8s.plugins.module_utils import render, specs
    from ansible_collections.nimguard.k8s.plugins.module_utils.apply import stamp
    out = []
    for i in range(n):
        opts = service_options(i, namespace)
        p = specs.service_options(opts)
        secret_p = specs.validator_for("nim_secret").validate(
            dict(name="ngc-%03d" % i, namespace=namespace, kind="ngc", value=KEY)).validated_parameters
        pull_p = specs.validator_for("nim_secret").validate(
            dict(name="pull-%03d" % i, namespace=namespace, kind="registry",
                 registry={"password": KEY})).validated_parameters
        objs = [render.render_secret(secret_p), render.render_secret(pull_p)] + render.render_service(p, "sha256:0")
        out.append([stamp(o) for o in objs])
    return out


class Bench(object):
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="nimguard-bench-")
        self.env = dict(os.environ)
        # As on a user's machine, Python keeps bytecode caches (ansible-core's own are written by pip; the
        # collection's module_utils get theirs at the first run). Some sandboxes switch that off.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.kubectl = self.env["NIMGUARD_KUBECTL"]
        self.audit = self.env["NIMGUARD_AUDIT_LOG"]
        self.python = sys.executable
        self.playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")

    # --- helpers -----------------------------------------------------------------------------

    def namespace(self):
        name = "bench-" + uuid.uuid4().hex[:8]
        subprocess.run([self.kubectl, "create", "namespace", name], check=True, capture_output=True, env=self.env)
        return name

    def cleanup(self, names):
        for name in names:
            subprocess.run([self.kubectl, "delete", "namespace", name, "--wait=false"], capture_output=True,
                           env=self.env, check=False)

    def write(self, name, content):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return path

    def measure(self, cmds):
        """Run commands one after the other; wall time, peak RSS of the largest process, audit counts."""
        size = os.path.getsize(self.audit)
        wrapper = ("import resource, subprocess, sys, json\n"
                   "rc = 0\n"
                   "for cmd in json.loads(sys.argv[1]):\n"
                   "    rc = rc or subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode\n"
                   "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)\n")
        t0 = time.monotonic()
        out = subprocess.run([self.python, "-c", wrapper, json.dumps(cmds)], capture_output=True, text=True,
                             env=self.env, check=True)
        wall = time.monotonic() - t0
        rss_kb, rc = (int(x) for x in out.stdout.split())
        if rc:
            raise SystemExit("benchmark command failed (%s): %s" % (rc, cmds[0]))
        time.sleep(0.3)
        reads = writes = 0
        with open(self.audit, "rb") as f:
            f.seek(size)
            for line in f:
                e = json.loads(line)
                if e.get("user", {}).get("username") != "nimguard-admin":
                    continue
                if e.get("verb") in WRITE_VERBS and "dryRun" not in e.get("requestURI", ""):
                    writes += 1
                elif e.get("verb") in ("get", "list", "watch"):
                    reads += 1
        return dict(wall=wall, rss_mb=rss_kb / 1024.0, reads=reads, writes=writes)

    def play(self, tasks, name, hosts="localhost"):
        play = [{"hosts": hosts, "gather_facts": False, "connection": "local", "tasks": tasks}]
        return [self.playbook, "-i", "localhost,", "-e", "ansible_python_interpreter=%s" % self.python,
                self.write(name, json.dumps(play))]

    # --- the four contenders -------------------------------------------------------------------

    @staticmethod
    def service_secrets(n):
        """Five Secrets per service: its NGC key, Hugging Face token and three pull secrets."""
        out = []
        for i in range(n):
            out += [{"name": "ngc-%03d" % i, "kind": "ngc", "value": KEY},
                    {"name": "hf-%03d" % i, "kind": "huggingface", "value": "hf_" + KEY}]
            out += [{"name": "pull-%03d-%d" % (i, j), "kind": "registry", "registry": {"password": KEY}} for j in range(3)]
        return out

    def rollout(self, ns, n, secrets_in_role):
        """nim_rollout with n services using their own Secrets, written by the role (or, if not, by someone else)."""
        services = []
        for i in range(n):
            o = dict(service_options(i, ns), auth_secret="ngc-%03d" % i, hf_secret="hf-%03d" % i)
            o["image"] = dict(o["image"], pull_secrets=["pull-%03d-%d" % (i, j) for j in range(3)])
            o.pop("namespace")
            services.append(o)
        return {"ansible.builtin.include_role": {"name": "nimguard.k8s.nim_rollout"}, "vars": {
            "nim_rollout_namespace": ns, "nim_rollout_manage_namespace": False, "nim_rollout_secrets_source": "existing",
            "nim_rollout_registry_secret": False, "nim_rollout_doctor": False, "nim_rollout_wait": False,
            "nim_rollout_image_scan": {"enabled": False, "disabled_reason": "benchmark: KWOK nodes"},
            "nim_rollout_ngc_secret_name": "ngc-000", "nim_rollout_services": services,
            "nim_rollout_service_secrets": self.service_secrets(n) if secrets_in_role else []}}

    def run_per_service_secrets(self, n=10):
        """Reruns, paired with the ping playbook in each round."""
        ns = self.namespace()
        secrets = self.service_secrets(n)
        loop = {"nimguard.k8s.nim_secret": {
            "name": "{{ item.name }}", "namespace": ns, "kind": "{{ item.kind }}",
            "value": "{{ item.value | default(omit) }}", "registry": "{{ item.registry | default(omit) }}"},
            "loop": secrets, "loop_control": {"label": "{{ item.name }}"}}
        forms = {
            "role, Secrets in its one task": [self.play([self.rollout(ns, n, True)], "role-secrets.json")],
            "role after a nim_secret loop": [self.play([loop, self.rollout(ns, n, False)], "loop-role.json")],
            "role, no per-service Secrets": [self.play([self.rollout(ns, n, False)], "role-alone.json")],
            "nim_secret list form alone": [self.play([{"nimguard.k8s.nim_secret": {"namespace": ns, "secrets": secrets}}],
                                                     "list-alone.json")],
            "nim_secret loop alone": [self.play([loop], "loop-alone.json")],
            "d_ping": self.ping()}
        for cmds in forms.values():
            self.measure(cmds)  # the first converge (and warm caches); what follows are reruns
        runs = dict((name, []) for name in forms)
        for r in range(self.args.runs):
            for name, cmds in forms.items():
                runs[name].append(self.measure(cmds))
            sys.stderr.write("  per-service secrets round %d/%d done\n" % (r + 1, self.args.runs))
        self.cleanup([ns])
        ping = [m["wall"] for m in runs["d_ping"]]
        print("\nRerun, %d services with 5 per-service Secrets each (%d Secrets), medians of %d runs, paired with ping"
              % (n, 5 * n, self.args.runs))
        for name, ms in runs.items():
            print("  %-34s %6.2f s %6.2f x ping  reads %3d  writes %d" % (
                name, statistics.median(m["wall"] for m in ms), statistics.median(
                    m["wall"] / p for m, p in zip(ms, ping)), statistics.median(m["reads"] for m in ms),
                max(m["writes"] for m in ms)))
        extra = statistics.median((a["wall"] - b["wall"]) / p for a, b, p in zip(
            runs["role, Secrets in its one task"], runs["role, no per-service Secrets"], ping))
        print("  the %d per-service Secrets add %.2f x ping to the role's rerun (paired)" % (5 * n, extra))

    def ours(self, n, ns):
        if n == 1:
            o = service_options(0, ns)
            # The two secrets as one looped task, as the module's EXAMPLES write them: one LIST serves both.
            tasks = [
                {"nimguard.k8s.nim_secret": {"name": "{{ item.name }}", "namespace": ns, "kind": "{{ item.kind }}",
                                             "value": "{{ item.value | default(omit) }}",
                                             "registry": "{{ item.registry | default(omit) }}"},
                 "loop": [{"name": "ngc-000", "kind": "ngc", "value": KEY},
                          {"name": "pull-000", "kind": "registry", "registry": {"password": KEY}}],
                 "loop_control": {"label": "{{ item.name }}"}},
                {"nimguard.k8s.nim_service": o}]
            return [self.play(tasks, "ours-%s.json" % ns)]
        services = []
        for i in range(n):
            o = service_options(i, ns)
            o.pop("namespace")
            services.append(o)
        # Per-service Secrets (a key and a pull secret per service), written by the role in its one Secret task.
        secrets = [{"name": "ngc-%03d" % i, "kind": "ngc", "value": KEY} for i in range(n)] + [
            {"name": "pull-%03d" % i, "kind": "registry", "registry": {"password": KEY}} for i in range(n)]
        tasks = [
            {"ansible.builtin.include_role": {"name": "nimguard.k8s.nim_rollout"},
             "vars": {"nim_rollout_namespace": ns, "nim_rollout_manage_namespace": False,
                      "nim_rollout_secrets_source": "existing", "nim_rollout_registry_secret": False,
                      "nim_rollout_doctor": False, "nim_rollout_wait": False,
                      "nim_rollout_image_scan": {"enabled": False, "disabled_reason": "benchmark: KWOK nodes"},
                      "nim_rollout_ngc_secret_name": "ngc-000", "nim_rollout_service_secrets": secrets,
                      "nim_rollout_services": services}}]
        return [self.play(tasks, "ours-%s.json" % ns)]

    def kubectl_apply(self, objects_per_service, ns):
        cmds = []
        for i, objs in enumerate(objects_per_service):
            path = self.write("kubectl-%s-%d.json" % (ns, i), {"apiVersion": "v1", "kind": "List", "items": objs})
            cmds.append([self.kubectl, "apply", "--server-side", "--field-manager", "bench", "-f", path])
        return cmds

    def core_per_object(self, objects_per_service, ns):
        tasks = [{"kubernetes.core.k8s": {"state": "present", "apply": True, "server_side_apply": {
            "field_manager": "bench-core"}, "definition": o}} for objs in objects_per_service for o in objs]
        return [self.play(tasks, "core-obj-%s.json" % ns)]

    def core_per_service(self, objects_per_service, ns):
        tasks = [{"kubernetes.core.k8s": {"state": "present", "apply": True, "server_side_apply": {
            "field_manager": "bench-core"}, "definition": objs}} for objs in objects_per_service]
        return [self.play(tasks, "core-svc-%s.json" % ns)]

    def slow_starts(self, n, ns):
        """nim_rollout with n services whose pods become ready --start-delay seconds after they start."""
        services = [{"name": "slow-%02d" % i, "image": FAKE_NIM, "probes": FAST_PROBES,
                     "env": [{"name": "FAKENIM_STARTUP_DELAY", "value": "%ds" % self.args.start_delay}],
                     "secret_delivery": {"mode": "file", "export_env": False},
                     "node_selector": {REAL_NODE: "true"},
                     "tolerations": [{"key": REAL_NODE, "operator": "Equal", "value": "true", "effect": "NoSchedule"}]}
                    for i in range(n)]
        return [self.play([{"ansible.builtin.include_role": {"name": "nimguard.k8s.nim_rollout"}, "vars": {
            "nim_rollout_namespace": ns, "nim_rollout_manage_namespace": False, "nim_rollout_doctor": False,
            "nim_rollout_registry_secret": False, "nim_rollout_ngc_api_key": KEY, "nim_rollout_wait_timeout": 300,
            "nim_rollout_image_scan": {"enabled": False, "disabled_reason": "benchmark: the local fake NIM image"},
            "nim_rollout_services": services}}], "slow-%s.json" % ns)]

    def run_slow_starts(self, sizes):
        """Paired runs of each size in a fresh namespace; the medians and the ratio of the largest to the smallest."""
        if not self.env.get("NIMGUARD_REAL_NODE"):
            raise SystemExit("--start-delay needs the local cluster's real node (the `node` add-on)")
        walls = dict((n, []) for n in sizes)
        spaces = []
        for r in range(self.args.runs):
            for n in sizes:
                ns = self.namespace()
                spaces.append(ns)
                walls[n].append(self.measure(self.slow_starts(n, ns))["wall"])
            self.cleanup(spaces[-len(sizes):])
            sys.stderr.write("  slow starts round %d/%d done\n" % (r + 1, self.args.runs))
        print("\nnim_rollout, pods ready %d s after they start (fake NIM on the real node), converge + wait, "
              "medians of %d runs" % (self.args.start_delay, self.args.runs))
        for n in sizes:
            print("  %3d service(s) %9.2f s" % (n, statistics.median(walls[n])))
        ratio = statistics.median(b / a for a, b in zip(walls[sizes[0]], walls[sizes[-1]]))
        print("  %d services / %d service (paired): %.2f x (target: at most 1.3)" % (sizes[-1], sizes[0], ratio))

    def ping(self):
        return [self.play([{"ansible.builtin.ping": {}}], "ping.json")]

    # --- runs --------------------------------------------------------------------------------------

    def contenders(self, n):
        names = ["a_nimguard", "b_kubectl", "c_core_per_service"]
        if n == 1 or not self.args.skip_slow:
            if n <= 10:
                names.append("c_core_per_object")
        names.append("d_ping")
        return [name for name in names if name in self.args.contenders]

    def commands(self, name, n, ns):
        if name == "a_nimguard":
            return self.ours(n, ns)
        if name == "d_ping":
            return self.ping()
        objs = render_objects(n, ns)
        return {"b_kubectl": self.kubectl_apply, "c_core_per_object": self.core_per_object,
                "c_core_per_service": self.core_per_service}[name](objs, ns)

    def run_size(self, n):
        names = self.contenders(n)
        first = dict((k, []) for k in names)
        rerun = dict((k, []) for k in names)
        spaces = []
        for r in range(self.args.runs):
            for name in names:  # paired: each round runs every contender once, in the same order
                ns = self.namespace() if name != "d_ping" else None
                spaces.append(ns)
                cmds = self.commands(name, n, ns)
                first[name].append(self.measure(cmds))
                rerun[name].append(self.measure(cmds))
            sys.stderr.write("  N=%d round %d/%d done\n" % (n, r + 1, self.args.runs))
        self.cleanup([s for s in spaces if s])
        return first, rerun

    def report(self, n, label, data):
        objects = 10 * n
        ping = data.get("d_ping")
        print("\nN=%d services (%d objects), %s, medians of %d runs" % (n, objects, label, self.args.runs))
        header = ("work", "wall s", "Δ ping", "x ping", "x kubectl", "reads/obj", "writes/obj", "peak MB")
        print("  %-22s %9s %8s %10s %10s %12s %12s %9s" % header)
        for name, runs in data.items():
            wall = statistics.median(r["wall"] for r in runs)
            pair_ping = statistics.median(r["wall"] / p["wall"] for r, p in zip(runs, ping)) if ping else 0
            kc = data.get("b_kubectl")
            pair_kc = statistics.median(r["wall"] / k["wall"] for r, k in zip(runs, kc)) if kc else 0
            delta = wall - statistics.median(p["wall"] for p in ping) if ping and name != "b_kubectl" else None
            per = 1.0 / objects if name != "d_ping" else 0
            print("  %-22s %9.2f %8s %10.2f %10.2f %12.2f %12.2f %9.0f" % (
                name, wall, "%+.2f" % delta if delta is not None else "", pair_ping, pair_kc,
                statistics.median(r["reads"] for r in runs) * per, statistics.median(r["writes"] for r in runs) * per,
                max(r["rss_mb"] for r in runs)))
        if "a_nimguard" in data and "c_core_per_service" in data:
            pairs = zip(data["a_nimguard"], data["c_core_per_service"])
            ratio = statistics.median(a["wall"] / c["wall"] for a, c in pairs)
            print("  a / c_core_per_service (paired): %.2f" % ratio)
        if "a_nimguard" in data and "c_core_per_object" in data:
            pairs = zip(data["a_nimguard"], data["c_core_per_object"])
            ratio = statistics.median(c["wall"] / a["wall"] for a, c in pairs)
            print("  c_core_per_object / a (paired): %.2f x faster" % ratio)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes")
    parser.add_argument("--skip-slow", action="store_true", help="no kubernetes.core task-per-object above N=1")
    parser.add_argument("--per-service-secrets", action="store_true",
                        help="instead: reruns of 10 services with 5 per-service Secrets each, in the role's one task, "
                        "in a loop, and none, against ping")
    parser.add_argument("--start-delay", type=int, default=0,
                        help="instead: nim_rollout's converge and wait for --sizes services (default 1,10) whose pods "
                        "become ready this many seconds after they start")
    parser.add_argument("--contenders", type=lambda v: v.split(","), default=CONTENDERS,
                        help="comma-separated, of %s (c_* need kubernetes.core and the kubernetes package)"
                        % ",".join(CONTENDERS))
    args = parser.parse_args()
    bench = Bench(args)
    t0 = time.monotonic()
    print("ansible-core %s on Python %s" % (ansible_version(), sys.version.split()[0]))
    if any(name.startswith("c_") for name in args.contenders):
        t = time.monotonic()
        subprocess.run([sys.executable, "-c", "import kubernetes.client"], check=True)
        print("import kubernetes.client alone: %.2f s (our modules do not import it)" % (time.monotonic() - t))
    if args.per_service_secrets:
        bench.run_per_service_secrets()
        print("\ntotal benchmark time: %.0f s" % (time.monotonic() - t0))
        return
    if args.start_delay:
        bench.run_slow_starts([int(x) for x in (args.sizes or "1,10").split(",")])
        print("\ntotal benchmark time: %.0f s" % (time.monotonic() - t0))
        return
    for n in [int(x) for x in (args.sizes or "1,10,100").split(",")]:
        first, rerun = bench.run_size(n)
        bench.report(n, "first converge (empty namespace)", first)
        bench.report(n, "rerun, nothing to change", rerun)
    print("\ntotal benchmark time: %.0f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    main()
