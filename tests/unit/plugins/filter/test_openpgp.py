import base64

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.nimguard.k8s.plugins.filter.openpgp import FilterModule, openpgp_fingerprints

# A throwaway ed25519 public key made for this test; gpg --show-keys prints the fingerprint below for it.
ARMORED = """-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEaxEv3BYJKwYBBAHaRw8BAQdACKrmjdz8NR/ekpZ7YfMz0ZgguYWkFSDgkRpx
LSeOqUi0KW5pbWd1YXJkIHRlc3Qga2V5IDx0ZXN0QG5pbWd1YXJkLmludmFsaWQ+
iJAEExYIADgWIQQfX1dqxzLQJT/5xxccLRT2g462JwUCaxEv3AIbAwULCQgHAgYV
CgkICwIEFgIDAQIeAQIXgAAKCRAcLRT2g462J7f/AQDvjjJuKrYuHm451zzFzjKT
7h6M6cZ6AtNRguIKZVC08AD/cWbqFe7kGQVUzL+HcuetLWRhQfk5JvbZPPgyREVS
pAw=
=F4ov
-----END PGP PUBLIC KEY BLOCK-----
"""
FPR = "1F5F576AC732D0253FF9C7171C2D14F6838EB627"
BINARY = base64.b64decode("".join(ARMORED.splitlines()[2:-2]))


def b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def test_armored_and_binary_keys():
    assert openpgp_fingerprints(b64(ARMORED)) == [FPR]
    assert openpgp_fingerprints(b64(BINARY)) == [FPR]
    # Armor headers and CRLF line ends are allowed.
    crlf = ARMORED.replace("\n\n", "\nComment: test\n\n", 1).replace("\n", "\r\n")
    assert openpgp_fingerprints(b64(crlf)) == [FPR]


def test_every_primary_key_of_a_keyring_is_listed():
    # A keyring with two keys: apt would trust both, so the role compares the whole list with the one it wants.
    assert openpgp_fingerprints(b64(BINARY + BINARY)) == [FPR, FPR]
    assert openpgp_fingerprints(b64(ARMORED + ARMORED)) == [FPR, FPR]


def test_old_format_packet_header():
    # The same key with its public-key packet in the old format (tag 6, two-octet length), as older gpg wrote.
    body = BINARY[2:2 + BINARY[1]]
    old = bytes([0x80 | (6 << 2) | 1]) + len(body).to_bytes(2, "big") + body + BINARY[2 + BINARY[1]:]
    assert openpgp_fingerprints(b64(old)) == [FPR]


@pytest.mark.parametrize("content, message", [
    (b64(ARMORED.replace("=F4ov", "=AAAA")), "checksum does not match"),
    (b64("not a key at all"), "not a packet header"),
    (b64(BINARY[:20]), "cut short"),
    (b64(ARMORED.replace("PUBLIC KEY", "PRIVATE KEY")), "holds no PUBLIC KEY BLOCK"),
    ("%%%", "pass the file as base64"),
])
def test_damaged_input_is_refused(content, message):
    with pytest.raises(AnsibleFilterError, match=message):
        openpgp_fingerprints(content)


def test_registered_as_filter():
    assert FilterModule().filters()["openpgp_fingerprints"] is openpgp_fingerprints
