"""execution-environment.yml: `ansible-builder create` makes a build context that installs this
collection's tarball, its Python requirements and its system packages. No image is built (no container
engine on CI machines); the galaxy stage's install command and ansible-builder's own dependency
introspection run here instead, on the same files the image build would use."""

import os
import shutil
import subprocess

import pytest
import yaml

from buildtools import BIN, ROOT, run

EE_FILES = ("execution-environment.yml", "requirements.txt", "bindep.txt")


@pytest.fixture(scope="module")
def context(tarball, tmp_path_factory):
    """A copy of the EE definition beside dist/<tarball>, as its header says to lay it out, and the context."""
    src = tmp_path_factory.mktemp("ee")
    for name in EE_FILES:
        shutil.copy(os.path.join(ROOT, name), str(src / name))
    (src / "dist").mkdir()
    shutil.copy(str(tarball), str(src / "dist" / tarball.name))
    ctx = src / "context"
    run([os.path.join(BIN, "ansible-builder"), "create", "--file", "execution-environment.yml", "--context",
         str(ctx), "--output-filename", "Containerfile"], cwd=str(src))
    return ctx


def test_definition_is_schema_version_3():
    with open(os.path.join(ROOT, "execution-environment.yml")) as f:
        ee = yaml.safe_load(f)
    assert ee["version"] == 3
    deps = ee["dependencies"]
    assert deps["python"] == "requirements.txt" and deps["system"] == "bindep.txt"


def test_context_carries_our_files(context, tarball):
    build = context / "_build"
    for name in ("requirements.txt", "bindep.txt"):
        with open(os.path.join(ROOT, name)) as ours:
            assert (build / name).read_text() == ours.read()
    assert (build / "collections" / tarball.name).read_bytes() == tarball.read_bytes()
    containerfile = (context / "Containerfile").read_text()
    for line in ("COPY _build/requirements.txt requirements.txt", "COPY _build/bindep.txt bindep.txt",
                 "RUN ansible-galaxy collection install --offline collections/nimguard-k8s-*.tar.gz",
                 "--user-pip=requirements.txt --user-bindep=bindep.txt"):
        assert line in containerfile, line
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.19,<2.20 ansible-runner==2.4.3"' in containerfile


def test_galaxy_stage_installs_the_tarball_and_introspection_finds_its_requirements(context, tmp_path, clean_env):
    """The Containerfile's install line, run in the context's _build folder (the galaxy stage's WORKDIR), then
    ansible-builder's introspect script on the result: the image would get our requirements and bindep lines."""
    (line,) = [ln for ln in (context / "Containerfile").read_text().splitlines() if "collections/nimguard-k8s-" in ln]
    dest = tmp_path / "share"
    cmd = line[len("RUN "):].replace("/usr/share/ansible/collections", str(dest))
    # As in the image: the only collections path is the one installed into (an earlier install elsewhere
    # would make ansible-galaxy skip this one as "already installed").
    env = dict(clean_env, PATH=BIN + os.pathsep + clean_env.get("PATH", ""), ANSIBLE_COLLECTIONS_PATH=str(dest))
    proc = subprocess.run(cmd, shell=True, cwd=str(context / "_build"), env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (dest / "ansible_collections" / "nimguard" / "k8s" / "MANIFEST.json").is_file()
    pip_out, bindep_out = tmp_path / "pip.txt", tmp_path / "bindep.txt"
    run([os.path.join(BIN, "python"), str(context / "_build" / "scripts" / "introspect.py"), "introspect", str(dest),
         "--write-pip", str(pip_out), "--write-bindep", str(bindep_out)])
    pip_lines = pip_out.read_text()
    # PyYAML is left out on purpose by ansible-builder: ansible-core, installed in the image, requires it.
    for req in ("cryptography>=3.4", "jmespath>=1.0"):
        assert "%s  # from collection nimguard.k8s" % req in pip_lines, pip_lines
    assert "ca-certificates [platform:rpm platform:dpkg]" in bindep_out.read_text()
