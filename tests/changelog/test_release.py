"""The changelog is built from the fragments with antsibull-changelog: a release of the current version, made in a
copy of the files git would commit (the real fragments are left alone), writes CHANGELOG.rst with every fragment's
entries and every module. `scripts/test changelog` runs this after `antsibull-changelog lint`."""

import glob
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def words(text):
    return " ".join(text.split())


def test_release_builds_changelog_rst_from_every_fragment(tmp_path):
    dest = tmp_path / "ansible_collections" / "nimguard" / "k8s"
    dest.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout
    subprocess.run(["rsync", "-a", "--from0", "--files-from=-", "./", str(dest) + "/"], cwd=ROOT, input=files,
                   check=True)
    with open(os.path.join(ROOT, "galaxy.yml")) as f:
        version = yaml.safe_load(f)["version"]
    proc = subprocess.run([os.path.join(BIN, "antsibull-changelog"), "release", "--version", version], cwd=str(dest),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rst = words((dest / "CHANGELOG.rst").read_text())
    assert "v%s" % version in rst
    fragments = sorted(glob.glob(os.path.join(ROOT, "changelogs", "fragments", "*.yml")))
    assert fragments
    for path in fragments:
        with open(path) as f:
            for section, entries in (yaml.safe_load(f) or {}).items():
                if section == "trivial":
                    continue
                for entry in [entries] if isinstance(entries, str) else entries:
                    assert words(entry)[:60] in rst, (os.path.basename(path), entry[:80])
    for module in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")):
        name = os.path.basename(module)[:-3]
        if name != "__init__":
            assert re.search(r"nimguard\.k8s\.%s - " % name, rst), name
