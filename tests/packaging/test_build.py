"""The built tarball: what it carries, that it installs offline, and that ansible-doc renders every module
and role entry point from the installed copy. Modules and roles are read from the source tree, so a new
one is covered without touching this file."""

import glob
import json
import os
import re
import subprocess
import tarfile

import pytest
import yaml

from declared import BIN, ROOT, run

# Test infrastructure: the local cluster and its scripts, CI, caches, test outputs, test-only
# requirements, and what needs the local cluster to run.
FORBIDDEN = re.compile(r"""^(
    scripts/ | tools/ | inventories/local/ | \.ci/ | \.git/ | \.ansible/ | \.cache/ | \.pytest_cache/ | \.venv/ | dist/ | context/
  | tests/ | extensions/molecule/default/
  | .*/__pycache__/ | .*\.pyc$ | .*\.tar\.gz$
  | constraints\.txt$ | requirements-test\.txt$ | pytest\.ini$ | execution-environment\.yml$
  | extensions/molecule/shared/(create|destroy)_local\.yml$ | changelogs/\.plugin-cache\.yaml$
)""", re.X)
# Secret material, in names or in contents (the test suites, with their canaries, are not shipped).
SECRET_NAMES = re.compile(r"(^|/)(vault\.ya?ml|.*\.(key|pem|p12|kubeconfig)|kubeconfig|\.env)$")
SECRET_CONTENT = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|nvapi-[A-Za-z0-9_-]{20,}|\bhf_[A-Za-z0-9]{30,}"
                            r"|(client-key-data|token):\s*[A-Za-z0-9+/=._-]{40,}")


def members(tarball):
    with tarfile.open(str(tarball)) as tar:
        return {m.name[2:] if m.name.startswith("./") else m.name: m for m in tar.getmembers()}


def test_tarball_carries_no_test_infrastructure(tarball):
    bad = sorted(n for n, m in members(tarball).items() if FORBIDDEN.match(n + ("/" if m.isdir() else "")))
    assert not bad, "add these to build_ignore in galaxy.yml: %s" % bad


def test_tarball_ships_only_what_git_would_commit(tarball):
    """A git-ignored file in the tree (a local vault.yml, a kubeconfig, a build output) is shipped unless
    build_ignore names it: catch it before it is published."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    committed = set(out.splitlines())
    files = [n for n, m in members(tarball).items() if m.isfile() and n not in ("MANIFEST.json", "FILES.json")]
    assert files
    extra = sorted(set(files) - committed)
    assert not extra, "shipped but not in git (ignored or stray): %s; add them to build_ignore" % extra


def test_tarball_has_no_secret_material(tarball):
    found = []
    with tarfile.open(str(tarball)) as tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue
            if SECRET_NAMES.search(m.name):
                found.append(m.name)
            elif SECRET_CONTENT.search(tar.extractfile(m).read().decode("utf-8", "replace")):
                found.append(m.name)
    assert not found, found


def test_manifest_dependencies_and_requirement_files(tarball):
    with tarfile.open(str(tarball)) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    with open(os.path.join(ROOT, "galaxy.yml")) as f:
        galaxy = yaml.safe_load(f)
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("nimguard", "k8s", galaxy["version"])
    assert info["dependencies"] == (galaxy.get("dependencies") or {})
    # What ansible-builder reads from an installed collection to build an execution environment.
    names = members(tarball)
    assert "requirements.txt" in names and "bindep.txt" in names


def tree_modules():
    return sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py"))
                  if not p.endswith("__init__.py"))


def tree_roles():
    """{role: [entry points]} from each role's meta/argument_specs.yml."""
    roles = {}
    for d in sorted(glob.glob(os.path.join(ROOT, "roles", "*", ""))):
        spec = os.path.join(d, "meta", "argument_specs.yml")
        assert os.path.isfile(spec), "role %s has no meta/argument_specs.yml" % d
        with open(spec) as f:
            roles[os.path.basename(d.rstrip("/"))] = sorted(yaml.safe_load(f)["argument_specs"])
    return roles


def test_installed_modules_are_listed_and_documented(installed, ansible_doc, clean_env):
    names = ["nimguard.k8s.%s" % m for m in tree_modules()]
    assert names
    assert sorted(ansible_doc("-l", "nimguard.k8s")) == names
    docs = ansible_doc(*names)
    assert sorted(docs) == names
    for name, doc in docs.items():
        d = doc["doc"]
        assert d["filename"].startswith(installed + os.sep), (name, d["filename"])
        assert d["short_description"] and d["options"], name
        assert doc["examples"] and doc["return"], name
    # The text rendering (what users read) works for each of them too.
    text = run([os.path.join(BIN, "ansible-doc")] + names, env=clean_env, cwd=clean_env["HOME"])
    for name in names:
        assert name in text


def test_installed_roles_are_listed_and_every_entry_point_renders(installed, ansible_doc, clean_env):
    roles = tree_roles()
    names = ["nimguard.k8s.%s" % r for r in roles]
    assert names
    listed = ansible_doc("-t", "role", "-l", "nimguard.k8s")
    assert sorted(listed) == names
    docs = ansible_doc("-t", "role", *names)
    for role, entry_points in roles.items():
        doc = docs["nimguard.k8s.%s" % role]
        assert (doc["path"] + os.sep).startswith(installed + os.sep), doc["path"]
        assert sorted(doc["entry_points"]) == entry_points
        for ep, spec in doc["entry_points"].items():
            assert spec.get("short_description"), (role, ep)
    for role, entry_points in roles.items():
        for ep in entry_points:
            text = run([os.path.join(BIN, "ansible-doc"), "-t", "role", "-e", ep, "nimguard.k8s.%s" % role],
                       env=clean_env, cwd=clean_env["HOME"])
            assert re.search(r"ENTRY POINT: \*?%s\*? - " % ep, text), text[:2000]


@pytest.mark.parametrize("playbook", sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "playbooks",
                                                                                                "*.yml"))))
def test_installed_playbooks_parse(installed, clean_env, playbook):
    """The shipped playbooks load with only the installed collection and those it declares (awx_setup.yml's awx.awx
    comes from requirements.yml)."""
    run([os.path.join(BIN, "ansible-playbook"), "--syntax-check", "-i", "localhost,",
         os.path.join(installed, "playbooks", playbook)], env=clean_env, cwd=clean_env["HOME"])
