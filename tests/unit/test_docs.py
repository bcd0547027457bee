"""The documentation pages generated from the sources are current, and the playbooks page names every
variable a playbook reads with a default (its inputs); role defaults and argument specs agree."""

import glob
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_generated_pages_are_current():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "docs.py"), "--check"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_every_role_variable_is_on_its_page():
    for spec_path in glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml")):
        role = spec_path.split(os.sep)[-3]
        with open(os.path.join(ROOT, "docs", "roles", role + ".md")) as f:
            page = f.read()
        with open(spec_path) as f:
            for ep in yaml.safe_load(f)["argument_specs"].values():
                for var in ep.get("options") or {}:
                    assert "| `%s` |" % var in page, (role, var)


def test_role_defaults_match_their_argument_specs():
    """Each role default is a documented option of some entry point, and a documented default is the
    default's value (a templated default, resolved at run time, is described in words instead)."""
    for spec_path in glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml")):
        role_dir = os.path.dirname(os.path.dirname(spec_path))
        with open(spec_path) as f:
            entry_points = yaml.safe_load(f)["argument_specs"].values()
        with open(os.path.join(role_dir, "defaults", "main.yml")) as f:
            defaults = yaml.safe_load(f) or {}
        options = {}
        for ep in entry_points:
            for name, spec in (ep.get("options") or {}).items():
                assert options.setdefault(name, spec) == spec, (role_dir, name, "documented twice, differently")
        assert sorted(set(defaults) - set(options)) == [], (role_dir, "defaults missing from argument_specs")
        for name, value in defaults.items():
            if not (isinstance(value, str) and "{{" in value):
                assert options[name].get("default") == value, (role_dir, name)


def sections(page):
    """{playbook file name: its section's text}."""
    parts = re.split(r"^## ", page, flags=re.M)
    return dict((p.split("\n", 1)[0].strip(), p) for p in parts[1:])


def test_playbooks_page_lists_every_playbook_input():
    with open(os.path.join(ROOT, "docs", "playbooks.md")) as f:
        page = f.read()
    docs = sections(page)
    connection = docs["Connection variables (all playbooks but awx_setup)"]
    for path in sorted(glob.glob(os.path.join(ROOT, "playbooks", "*.yml"))):
        name = os.path.basename(path)
        assert name in docs, "docs/playbooks.md has no section for %s" % name
        with open(path) as f:
            text = f.read()
        inputs = set(re.findall(r"\b((?:nimguard|nim_rollout)_\w+) *\| *(?:ansible\.builtin\.)?default\b", text))
        for play in yaml.safe_load(text):
            inputs.update(k for k in play.get("vars") or {} if k != "nimguard_awx_jobs")
        for var in sorted(inputs):
            assert "`%s`" % var in docs[name] + connection, (name, var)
