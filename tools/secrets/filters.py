"""detect-secrets filters: Ansible Vault ciphertext is the one accepted form of a secret in the repository."""

import re

_HEX_LINE = re.compile(r"^\s*[0-9a-f]{20,}\s*$")


def is_ansible_vault_file(filename):
    """A whole file encrypted with `ansible-vault encrypt`."""
    try:
        with open(filename, "rb") as f:
            return f.read(14) == b"$ANSIBLE_VAULT"
    except (IOError, OSError):
        return False


def is_ansible_vault_line(line):
    """An inline `!vault |` value: its tag line, header and hex ciphertext lines."""
    return "!vault" in line or "$ANSIBLE_VAULT;" in line or bool(_HEX_LINE.match(line))
