"""execution-environment.yml: `ansible-builder create` makes a build context that installs this collection's tarball
after its declared collections, its Python requirements and system packages, Helm and Trivy, everything pinned. No
image is built (no container engine, no registry on CI machines); the galaxy stage's install commands, ansible-builder's
own dependency introspection and the image's pip set run here instead, on the same files the image build would use."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

import declared
from declared import BIN, ROOT, run

EE_FILES = ("execution-environment.yml", "requirements.txt", "bindep.txt") + declared.CONSTRAINTS
EE = declared.ee_definition()


def common_setting(name):
    """A version setting of scripts/lib/common.sh: the Helm and Trivy the local cluster's tests build and run."""
    with open(os.path.join(ROOT, "scripts", "lib", "common.sh")) as f:
        (value,) = re.findall(r"^%s=(\S+)" % name, f.read(), re.M)
    return value


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


@pytest.fixture(scope="module")
def containerfile(context):
    return (context / "Containerfile").read_text()


def stages(containerfile):
    """{stage name: its lines} of the Containerfile."""
    out, name = {}, None
    for line in containerfile.splitlines():
        m = re.match(r"^FROM \S+ AS (\w+)$", line)
        if m:
            name = m.group(1)
        if name:
            out.setdefault(name, []).append(line)
    return out


def test_definition_is_schema_version_3():
    assert EE["version"] == 3
    deps = EE["dependencies"]
    assert deps["python"] == "requirements.txt" and deps["system"] == "bindep.txt"


def test_base_image_is_pinned_by_digest():
    assert re.match(r"^quay\.io/centos/centos:stream9@sha256:[0-9a-f]{64}$", EE["images"]["base_image"]["name"])


def test_ansible_core_runner_and_collections_are_exact_pins_of_what_the_tests_run():
    deps, pins = EE["dependencies"], declared.pins()
    for key, package in (("ansible_core", "ansible-core"), ("ansible_runner", "ansible-runner")):
        assert deps[key]["package_pip"] == "%s==%s" % (package, pins[package]), deps[key]
    collections = dict((c["name"], c["version"]) for c in deps["galaxy"]["collections"])
    # Every collection galaxy.yml depends on, exactly at the version the declared-dependencies tests install.
    assert sorted(collections) == sorted(declared.galaxy_dependencies())
    for name, version in collections.items():
        assert version == "==" + declared.vendored_version(name), (name, version)
        assert declared.meets(version[2:], declared.galaxy_dependencies()[name]), (name, version)


def test_context_carries_our_files(context, containerfile, tarball):
    build = context / "_build"
    for name in ("requirements.txt", "bindep.txt"):
        with open(os.path.join(ROOT, name)) as ours:
            assert (build / name).read_text() == ours.read()
    for name in declared.CONSTRAINTS:
        with open(os.path.join(ROOT, name)) as ours:
            assert (build / "constraints" / name).read_text() == ours.read()
    assert (build / "collections" / tarball.name).read_bytes() == tarball.read_bytes()
    assert yaml.safe_load((build / "requirements.yml").read_text()) == {"collections": EE["dependencies"]["galaxy"][
        "collections"]}
    for line in ("COPY _build/requirements.txt requirements.txt", "COPY _build/bindep.txt bindep.txt",
                 "RUN ansible-galaxy collection install --offline collections/nimguard-k8s-*.tar.gz",
                 "--user-pip=requirements.txt --user-bindep=bindep.txt"):
        assert line in containerfile, line
    assert 'ARG EE_BASE_IMAGE="%s"' % EE["images"]["base_image"]["name"] in containerfile
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core==%s ansible-runner==%s"' % (
        declared.pins()["ansible-core"], declared.pins()["ansible-runner"]) in containerfile


def test_every_pip_run_is_constrained(containerfile):
    """PIP_CONSTRAINT is set in the base stage before its first pip run; the galaxy, builder and final stages are
    built FROM base and inherit it."""
    base = stages(containerfile)["base"]
    env = [i for i, ln in enumerate(base) if ln.startswith("ENV PIP_CONSTRAINT=")]
    pip = [i for i, ln in enumerate(base) if "pip_install" in ln or "-m pip" in ln]
    assert env and pip and env[0] < pip[0], base
    assert base[env[0]] == 'ENV PIP_CONSTRAINT="%s"' % " ".join("/etc/nimguard/" + c for c in declared.CONSTRAINTS)
    assert "COPY _build/constraints/ /etc/nimguard/" in base
    for name in ("galaxy", "builder", "final"):
        assert stages(containerfile)[name][0] == "FROM base AS %s" % name


@pytest.mark.parametrize("tool, version, url, sha256", [
    ("helm", "HELM_VERSION", "https://get.helm.sh/helm-{v}-linux-amd64.tar.gz",
     "a0a5e8c592ed3f376ac110715eff214730c7422f9a44d96cf98117d2b8b0e6c0"),
    ("trivy", "TRIVY_VERSION", "https://github.com/aquasecurity/trivy/releases/download/{v}/trivy_{n}_Linux-64bit.tar.gz",
     "2ae6fe3ee734b7fdf11335663e18c75ea12dccc76062f09f164a3b0f8be4371a"),
])
def test_helm_and_trivy_are_the_tested_versions_checked_against_published_sums(
        containerfile, tool, version, url, sha256):
    """The version the local cluster's tests build (scripts/lib/common.sh), downloaded in the builder stage, its
    SHA-256 checked before it is unpacked, and only the binary copied into the final image."""
    v = common_setting(version)
    builder = "\n".join(stages(containerfile)["builder"])
    (line,) = [ln for ln in builder.splitlines() if "/tmp/%s.tar.gz" % tool in ln]
    download = url.format(v=v, n=v.lstrip("v"))
    assert "curl -fsSLo /tmp/%s.tar.gz %s &&" % (tool, download) in line, line
    assert line.index("sha256sum -c -") < line.index("tar -xz"), line
    assert 'echo "%s  /tmp/%s.tar.gz" | sha256sum -c -' % (sha256, tool) in line
    final = stages(containerfile)["final"]
    assert "COPY --from=builder /usr/local/bin/helm /usr/local/bin/trivy /usr/local/bin/" in final
    assert final.index("RUN helm version --short && trivy --version") < final.index("USER 1000")


def test_galaxy_stage_installs_the_tarball_after_its_dependencies(context, containerfile, tmp_path, clean_env):
    """The galaxy stage, run in the context's _build folder (its WORKDIR): kubernetes.core as the stage's
    `ansible-galaxy collection install -r requirements.yml` would get it from Galaxy (here from a local tarball of
    that version), then the Containerfile's offline install of our tarball, which needs the dependency there and
    fails without it. Then ansible-builder's introspect script on the result: the image gets our requirements,
    kubernetes.core's and our bindep lines."""
    (line,) = [ln for ln in containerfile.splitlines() if "collections/nimguard-k8s-" in ln]
    dest = tmp_path / "share"
    cmd = line[len("RUN "):].replace("/usr/share/ansible/collections", str(dest))
    # As in the image: the only collections path is the one installed into (an earlier install elsewhere
    # would make ansible-galaxy skip this one as "already installed").
    env = dict(clean_env, PATH=BIN + os.pathsep + clean_env.get("PATH", ""), ANSIBLE_COLLECTIONS_PATH=str(dest))

    def install_ours():
        return subprocess.run(cmd, shell=True, cwd=str(context / "_build"), env=env, capture_output=True, text=True,
                              timeout=120, check=False)

    alone = install_ours()
    assert alone.returncode != 0 and "kubernetes.core" in alone.stdout + alone.stderr, alone
    for coll in yaml.safe_load((context / "_build" / "requirements.yml").read_text())["collections"]:
        local = declared.collection_tarball(coll["name"], coll["version"], str(tmp_path))
        run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", local, "--collections-path",
             str(dest)], env=env, cwd=str(tmp_path))
    proc = install_ours()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (dest / "ansible_collections" / "nimguard" / "k8s" / "MANIFEST.json").is_file()
    pip_out, bindep_out = tmp_path / "pip.txt", tmp_path / "bindep.txt"
    run([os.path.join(BIN, "python"), str(context / "_build" / "scripts" / "introspect.py"), "introspect", str(dest),
         "--write-pip", str(pip_out), "--write-bindep", str(bindep_out)])
    pip_lines = pip_out.read_text()
    # PyYAML is left out on purpose by ansible-builder: ansible-core, installed in the image, requires it.
    for req in ("cryptography>=3.4", "jmespath>=1.0"):
        assert "%s  # from collection nimguard.k8s" % req in pip_lines, pip_lines
    assert "kubernetes>=24.2.0  # from collection kubernetes.core" in pip_lines, pip_lines
    assert "ca-certificates [platform:rpm platform:dpkg]" in bindep_out.read_text()


def test_every_python_package_of_the_image_is_pinned():
    """The image's pip set (ansible-core, ansible-runner, our requirements.txt, kubernetes.core's), installed into a
    venv through the same constraint files: each package it ends up with is pinned there at that version."""
    python = declared.ee_python()
    frozen = run([python, "-m", "pip", "freeze", "--disable-pip-version-check"])
    pins = declared.pins()
    got = dict(ln.split("==", 1) for ln in frozen.splitlines() if "==" in ln)
    assert "kubernetes" in got and "ansible-core" in got, frozen
    unpinned = sorted("%s==%s (pinned: %s)" % (n, v, pins.get(declared.normalize(n)))
                      for n, v in got.items() if pins.get(declared.normalize(n)) != v)
    assert not unpinned, "pin these in constraints-ee.txt: %s" % unpinned
