"""The local cluster's build recipes (scripts/localcluster), checked without compiling anything: every recipe works
on a new machine (empty caches), the site run builds only what its demo uses, and every add-on is complete.
Test infrastructure, not the collection: it is here because the `build` step is the one every change runs."""

import os
import re
import subprocess

import pytest

from declared import ROOT

CLUSTER = os.path.join(ROOT, "scripts", "cluster")
ADDONS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "scripts", "localcluster", "addons")) if f.endswith(".sh"))
# Parts only the tests use: each costs minutes of Go builds on a new machine, where the site run is measured
# against 15 minutes.
TESTS_ONLY = ("kwok", "cert-manager", "pebble", "external-secrets", "helm", "gpu-operator", "kube-score", "trivy")
# Made from another part's compiled binaries and local files: nothing of it is read from a module.
NOT_CHECKED = {"test images (pause, fakenim)"}


def cluster_env(tmp_path, addons=None):
    """An empty NIMGUARD_CACHE (nothing counts as built), temporary files under tmp_path, and NIMGUARD_ADDONS
    (None: every add-on, what the tests use)."""
    env = {k: v for k, v in os.environ.items() if k != "NIMGUARD_ADDONS"}
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    env.update(NIMGUARD_CACHE=str(cache), TMPDIR=str(tmp_path))
    if addons is not None:
        env["NIMGUARD_ADDONS"] = addons
    return env


def cluster(args, env, timeout=120):
    return subprocess.run([CLUSTER] + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)


def parts(env, *what):
    proc = cluster(["build", "--list"] + list(what), env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = proc.stdout.splitlines()
    assert names
    return names


def site_addons():
    return subprocess.run(["bash", "-c", "source scripts/lib/common.sh && echo $SITE_ADDONS"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.split()


def test_every_recipe_works_on_empty_caches(tmp_path):
    """Each part's recipe runs as on a new machine: a module cache and build cache of its own, empty, and `go -n`
    (modules downloaded, nothing compiled). A recipe that reads what it did not download (the External Secrets
    recipe once asked `go list -m` for a module folder: empty on a cold cache) fails here."""
    env = cluster_env(tmp_path)
    listed = parts(env)
    proc = cluster(["build", "--check"], env, timeout=1800)
    checked = re.findall(r"\] checked (.+) cold in (\d+)s \((\d+) MB of modules\)", proc.stderr)
    skipped = re.findall(r"\] not checked: (.+?): ", proc.stderr)
    for name, seconds, mb in checked:
        print("%5s s %6s MB  %s" % (seconds, mb, name))
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert set(skipped) <= NOT_CHECKED
    assert sorted([entry[0] for entry in checked] + skipped) == sorted(listed)


def test_site_builds_only_what_its_demo_uses(tmp_path):
    """scripts/site starts the cluster with SITE_ADDONS, and `up` builds the cluster's parts (no test tools)."""
    addons = site_addons()
    assert "node" in addons, "the site's demo runs on the real node"
    site = parts(cluster_env(tmp_path, " ".join(addons)), "cluster")
    assert not [p for p in site if p.startswith(TESTS_ONLY)], site
    assert [p for p in site if p.startswith(("kubernetes", "etcd", "kube-router"))]
    # The tests' set does have them: the names above are the parts' real names.
    every = parts(cluster_env(tmp_path))
    assert {p.split()[0] for p in every if p.startswith(TESTS_ONLY)} >= {"kwok", "cert-manager", "external-secrets",
                                                                         "pebble", "helm", "kube-score", "trivy"}


@pytest.mark.parametrize("addon", ADDONS)
def test_addon_defines_its_hooks_and_processes(addon):
    """scripts/cluster calls NAME_build and NAME_up, and checks and stops the processes in NAME_COMPONENTS (a list
    under another name was never checked by `status`)."""
    script = ("set -eu; source scripts/lib/common.sh; source scripts/localcluster/build.sh; "
              "source scripts/localcluster/addons/{0}.sh; declare -F {0}_build {0}_up >/dev/null; "
              "v={0}_COMPONENTS[@]; printf '%s\\n' \"${{!v}}\"").format(addon)
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split(), "%s.sh lists no processes in %s_COMPONENTS" % (addon, addon)


def test_unknown_addon_is_refused_naming_the_variable(tmp_path):
    proc = cluster(["status"], cluster_env(tmp_path, "node esos"))
    assert proc.returncode != 0
    assert "NIMGUARD_ADDONS: no add-on 'esos'" in proc.stderr and "eso" in proc.stderr, proc.stderr
