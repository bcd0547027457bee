"""The collection as users get it: a tarball from `ansible-galaxy collection build`, installed offline
into an empty collections path, seen by Ansible tools that know no other copy of it."""

import json
import os

import pytest

import declared
from declared import BIN, ROOT, run


@pytest.fixture(scope="session")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(out), ROOT])
    (path,) = out.glob("nimguard-k8s-*.tar.gz")
    return path


@pytest.fixture(scope="session")
def clean_env(tmp_path_factory):
    """Only the empty collections path: no ~/.ansible, no collections of the venv's `ansible` package, no
    ansible.cfg, and a Galaxy server that does not answer, so anything reaching for the network fails."""
    home = tmp_path_factory.mktemp("home")
    return declared.isolated_env(home, home / "collections")


@pytest.fixture(scope="session")
def installed(tarball, clean_env, tmp_path_factory):
    """Path of the installed collection, installed offline with the collections it declares (galaxy.yml,
    requirements.yml) and nothing else."""
    declared.install_declared(tarball, clean_env["ANSIBLE_COLLECTIONS_PATH"], str(tmp_path_factory.mktemp("deps")),
                              clean_env)
    path = os.path.join(clean_env["ANSIBLE_COLLECTIONS_PATH"], "ansible_collections", "nimguard", "k8s")
    assert os.path.isfile(os.path.join(path, "MANIFEST.json"))
    return path


@pytest.fixture(scope="session")
def ansible_doc(clean_env):
    def doc(*args):
        return json.loads(run([os.path.join(BIN, "ansible-doc"), "--json"] + list(args), env=clean_env,
                              cwd=clean_env["HOME"]))
    return doc
