"""What the collection declares it needs, installed with nothing else: the collections of galaxy.yml's dependencies
and requirements.yml, and the Python packages of the execution environment (execution-environment.yml).

Galaxy cannot be reached here, so each declared collection is taken from the `ansible` package installed in the test
venv (PyPI's `ansible` wheel vendors the collections; constraints.txt pins it), checked against the declared range,
and built into a local tarball that ansible-galaxy installs offline, resolving the collection's own dependencies
from it as it would from Galaxy. The Python side is a venv of its own with exactly what the execution environment
installs (ansible-core and ansible-runner at its pins, requirements.txt, each declared collection's
requirements.txt), through the same constraint files, kept under $NIMGUARD_CACHE by their hash."""

import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
CACHE = os.environ.get("NIMGUARD_CACHE") or os.path.expanduser("~/.cache/nimguard")


def _load(name):
    with open(os.path.join(ROOT, name)) as f:
        return yaml.safe_load(f)


def galaxy_dependencies():
    return _load("galaxy.yml").get("dependencies") or {}


def requirements_yml():
    """{name: version range} of requirements.yml's collections ({} when there is no such file)."""
    path = os.path.join(ROOT, "requirements.yml")
    if not os.path.isfile(path):
        return {}
    return dict((c["name"], str(c.get("version", "*"))) for c in _load("requirements.yml").get("collections") or [])


def declared():
    """Every collection the collection's content uses: galaxy.yml's dependencies and requirements.yml."""
    out = dict(requirements_yml())
    out.update(galaxy_dependencies())
    return out


def ee_definition():
    return _load("execution-environment.yml")


def vendored(name):
    """The copy of collection `name` that the `ansible` package installed in this interpreter's site-packages."""
    namespace, coll = name.split(".")
    for base in sys.path:
        path = os.path.join(base, "ansible_collections", namespace, coll)
        if os.path.isfile(os.path.join(path, "MANIFEST.json")):
            return path
    raise AssertionError("%s is not in the `ansible` package of %s" % (name, sys.executable))


def vendored_version(name):
    with open(os.path.join(vendored(name), "MANIFEST.json")) as f:
        return json.load(f)["collection_info"]["version"]


def meets(version, requirement):
    """ansible-galaxy's own test of a version against a requirement such as '>=6.0.0,<7.0.0'."""
    from ansible.galaxy.dependency_resolution.versioning import meets_requirements
    return meets_requirements(version, requirement)


def collection_tarball(name, requirement, out_dir):
    """A tarball of the vendored copy, as `ansible-galaxy collection build` makes it. The `ansible` package strips
    tests and CI files from its collections but keeps their MANIFEST.json and FILES.json, which then list files that
    are not there; the copy is rebuilt from a galaxy.yml holding the manifest's collection_info."""
    src = vendored(name)
    with open(os.path.join(src, "MANIFEST.json")) as f:
        info = json.load(f)["collection_info"]
    assert meets(info["version"], requirement), "%s %s does not meet the declared %s" % (
        name, info["version"], requirement)
    work = os.path.join(out_dir, "src-" + name)
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("MANIFEST.json", "FILES.json", "__pycache__"))
    with open(os.path.join(work, "galaxy.yml"), "w") as f:
        yaml.safe_dump(dict((k, v) for k, v in info.items() if v), f)
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path", out_dir, work])
    (path,) = glob.glob(os.path.join(out_dir, "%s-%s-%s.tar.gz" % (tuple(name.split(".")) + (info["version"],))))
    return path


def install_declared(our_tarball, collections_path, work_dir, env):
    """Install this collection's tarball and every declared collection into an empty collections path, offline. The
    declared ones are given as local tarballs: ansible-galaxy resolves galaxy.yml's dependencies from them (and
    fails, naming the dependency, when one is missing or outside its range)."""
    tarballs = [collection_tarball(n, r, work_dir) for n, r in sorted(declared().items())]
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", str(our_tarball)] + tarballs
        + ["--collections-path", collections_path], env=env, cwd=work_dir)
    return tarballs


def isolated_env(home, collections_path, base=None):
    """Ansible sees the given collections path only: no ~/.ansible, no collections of the test venv's `ansible`
    package (not scanned on sys.path), no ansible.cfg, and a Galaxy server that does not answer. `base`: the
    environment to start from (default: this process's)."""
    env = dict((k, v) for k, v in (base or os.environ).items() if not k.startswith("ANSIBLE_"))
    env.update(HOME=str(home), ANSIBLE_COLLECTIONS_PATH=str(collections_path), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False",
               ANSIBLE_GALAXY_SERVER="http://127.0.0.1:9/", ANSIBLE_NOCOLOR="1", PYTHONPATH="")
    return env


# ---------------------------------------------------------------------------------------------------------------------
# The execution environment's Python packages

CONSTRAINTS = ("constraints.txt", "constraints-ee.txt")


def ee_pip_requirements():
    """What the execution environment's pip installs: ansible-core and ansible-runner as execution-environment.yml
    pins them, our requirements.txt, and the requirements.txt of each collection it installs from Galaxy."""
    deps = ee_definition()["dependencies"]
    lines = [deps["ansible_core"]["package_pip"], deps["ansible_runner"]["package_pip"]]
    files = [os.path.join(ROOT, deps["python"])]
    for coll in deps["galaxy"]["collections"]:
        path = os.path.join(vendored(coll["name"]), "requirements.txt")
        if os.path.isfile(path):
            files.append(path)
    return lines, files


def ee_python():
    """Path of a venv's python holding exactly the execution environment's Python packages (made once per set)."""
    lines, files = ee_pip_requirements()
    key = hashlib.sha256()
    for text in [sys.version] + lines + [open(p).read() for p in files + [os.path.join(ROOT, c) for c in CONSTRAINTS]]:
        key.update(text.encode())
    venv = os.path.join(CACHE, "venv-ee-" + key.hexdigest()[:12])
    os.makedirs(CACHE, exist_ok=True)
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several checkouts share the cache: one builds, the others wait
        if not os.path.isfile(os.path.join(venv, ".complete")):
            shutil.rmtree(venv, ignore_errors=True)
            run([sys.executable, "-m", "venv", venv])
            cmd = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            for c in CONSTRAINTS:
                cmd += ["-c", os.path.join(ROOT, c)]
            for f in files:
                cmd += ["-r", f]
            run(cmd + lines, timeout=900)
            open(os.path.join(venv, ".complete"), "w").close()
    return os.path.join(venv, "bin", "python")


def pins():
    """{normalized name: version} of the constraint files."""
    out = {}
    for c in CONSTRAINTS:
        with open(os.path.join(ROOT, c)) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if "==" in line:
                    name, version = line.split("==", 1)
                    out[normalize(name)] = version.strip()
    return out


def normalize(name):
    return name.strip().lower().replace("_", "-").replace(".", "-")


def run(args, env=None, cwd=None, timeout=300):
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, "%s exited %s:\n%s\n%s" % (
        " ".join(args), proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout
