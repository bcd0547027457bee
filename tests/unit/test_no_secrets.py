"""No secrets in Git: the pre-commit hook (.pre-commit-config.yaml) over the files it covers, on this checkout
and on a temporary copy with planted keys, plaintext (must fail, naming the file and never the value) and
Ansible-Vault encrypted (must pass)."""

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
TOOLING = (".secrets.baseline", "tools/secrets/detectors.py", "tools/secrets/filters.py")

# Fake values in the shape of each credential, assembled here so this file holds none of them whole.
FAKE = {
    "ngc": "nvapi-" + "Zq8rT2mN5vB7xK1pL4wY9sD3fG6hJ0cE" + "uI2oA8qW5eR7tY1uP3aS6dF9",
    "hf": "hf_" + "QwErTyUiOpAsDfGhJkLzXcVbNm" + "12345678",
    "aws": "AKIA" + "Z7Q4XJ2KMN3PLR5W",
    "registry": "Reg1stry" + "-Passw0rd-42",
}
PRIVATE_KEY = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7yn3bRHQ5FHMQ\n-----END RSA PRIVATE KEY-----\n"


def hook_config():
    with open(os.path.join(ROOT, ".pre-commit-config.yaml")) as f:
        hook = yaml.safe_load(f)["repos"][0]["hooks"][0]
    return hook["entry"].split(), re.compile(hook["files"])


def covered_files(root):
    """The files pre-commit would pass to the hook: tracked and untracked-not-ignored, matching `files`."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    pattern = hook_config()[1]
    return sorted(f for f in out if f and pattern.search(f) and os.path.isfile(os.path.join(root, f)))


def run_hook(root, files):
    entry = hook_config()[0]
    cmd = [os.path.join(BIN, entry[0])] + entry[1:] + list(files)
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300, check=False)


def copy_tree(dest, files):
    """Files of this checkout and the hook's tooling in a temporary tree (not a git repository)."""
    for rel in list(files) + list(TOOLING) + [".pre-commit-config.yaml"]:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), target)
    return dest


def test_the_checkout_has_no_plaintext_secret():
    files = covered_files(ROOT)
    # the directories the issue names are all covered
    for prefix in ("inventories/", "docs/", "roles/nim_rollout/defaults/", "plugins/modules/"):
        assert any(f.startswith(prefix) for f in files), prefix
    assert any("group_vars/" in f for f in files) and any(f.endswith(".example") for f in files)
    proc = run_hook(ROOT, files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


PLANTS = [
    ("inventories/production/group_vars/clusters/main.yml", "nim_rollout_ngc_api_key: %s\n" % FAKE["ngc"],
     "NVIDIA NGC API Key"),
    ("inventories/local/group_vars/clusters.yml", "nim_rollout_hf_token: \"%s\"\n" % FAKE["hf"], "Hugging Face Token"),
    ("inventories/production/group_vars/clusters/main.yml", "nim_rollout_registry_password: %s\n" % FAKE["registry"],
     "Credential assignment"),
    ("docs/planted-example.md", "```\naws_access_key_id = %s\n```\n" % FAKE["aws"], "AWS Access Key"),
    ("docs/planted-example.md", "```\n%s```\n" % PRIVATE_KEY, "Private Key"),
    ("roles/nim_rollout/defaults/main.yml", "nim_rollout_x: '{\"auths\": {\"nvcr.io\": {\"auth\": \"%s\"}}}'\n"
     % "JG9hdXRodG9rZW46bnZhcGktZmFrZQ==", "Registry auth"),
    ("inventories/production/group_vars/clusters/vault.yml.example", "vault_ngc_api_key: \"%s\"\n" % FAKE["ngc"],
     "NVIDIA NGC API Key"),
]


@pytest.mark.parametrize("rel,line,kind", PLANTS, ids=[p[2] + " in " + p[0] for p in PLANTS])
def test_a_planted_plaintext_key_fails_naming_file_and_kind_not_value(tmp_path, rel, line, kind):
    # as pre-commit runs it: on the changed file, here a copy of the checkout's with one line added
    root = copy_tree(tmp_path, [rel] if os.path.exists(os.path.join(ROOT, rel)) else [])
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = run_hook(root, [rel]) if path.exists() else None
    assert clean is None or clean.returncode == 0, clean.stdout
    with open(path, "a") as f:
        f.write(line)
    proc = run_hook(root, [rel])
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert rel in output and kind in output, output
    for value in list(FAKE.values()) + ["MIIEowIBAAKCAQEA7yn3bRHQ5FHMQ"]:
        assert value not in output


def test_the_same_keys_ansible_vault_encrypted_pass(tmp_path, tmp_path_factory):
    rel = "inventories/production/group_vars/clusters/main.yml"
    whole = "inventories/production/group_vars/clusters/vault.yml"
    root = copy_tree(tmp_path, [rel])
    secret_dir = tmp_path_factory.mktemp("vault")
    password = secret_dir / "password"
    password.write_text("test-only-vault-password\n")
    vault = [os.path.join(BIN, "ansible-vault")]
    inline = subprocess.run(vault + ["encrypt_string", "--vault-password-file", str(password), FAKE["ngc"],
                                     "--name", "nim_rollout_ngc_api_key"], capture_output=True, text=True, check=True)
    with open(root / rel, "a") as f:
        f.write(inline.stdout)
    (root / whole).write_text("vault_ngc_api_key: %s\nvault_hf_token: %s\nvault_registry_password: %s\n"
                              % (FAKE["ngc"], FAKE["hf"], FAKE["registry"]))
    plain = run_hook(root, [rel, whole])
    assert plain.returncode != 0 and whole in plain.stdout, plain.stdout  # the same file before encryption
    subprocess.run(vault + ["encrypt", "--vault-password-file", str(password), str(root / whole)],
                   capture_output=True, check=True)
    proc = run_hook(root, [rel, whole])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert FAKE["ngc"] not in (root / rel).read_text()
