# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_fingerprints: the primary key fingerprints of an OpenPGP key file (documented in
openpgp_fingerprints.yml). Computed here, on the controller, so that a node needs no gpg to have its
repository key checked before apt trusts it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from ansible.errors import AnsibleFilterError

PUBLIC_KEY = 6  # packet tag; subkeys (14) belong to their primary key


def _crc24(data):
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for dummy in range(8):  # pylint: disable=unused-variable
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def _dearmor(data):
    """The packets of every armored PUBLIC KEY BLOCK in the text, in order (a file may hold several)."""
    text = data.decode("ascii", "replace")
    blocks = re.findall(r"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(.*?)-----END PGP PUBLIC KEY BLOCK-----", text, re.S)
    if not blocks:
        raise AnsibleFilterError("openpgp_fingerprints: the key is armored but holds no PUBLIC KEY BLOCK")
    raw = b""
    for block in blocks:
        # Armor headers (Version: ..., Comment: ...) end at the first empty line.
        body = re.split(r"\r?\n[ \t]*\r?\n", block, maxsplit=1)
        lines = [ln.strip() for ln in (body[1] if len(body) > 1 else body[0]).splitlines() if ln.strip()]
        checksum = lines.pop() if lines and lines[-1].startswith("=") and len(lines[-1]) == 5 else None
        try:
            packets = base64.b64decode("".join(lines), validate=True)
            crc = int.from_bytes(base64.b64decode(checksum[1:]), "big") if checksum else None
        except (binascii.Error, ValueError) as e:
            raise AnsibleFilterError("openpgp_fingerprints: the armored key is not valid base64 (%s)" % e)
        if crc is not None and crc != _crc24(packets):
            raise AnsibleFilterError("openpgp_fingerprints: the armored key's checksum does not match: the file is "
                                     "damaged")
        raw += packets
    return raw


def _packets(data):
    """(tag, body) of each packet (RFC 9580 section 4.2: old and new formats)."""
    i, n = 0, len(data)
    while i < n:
        first = data[i]
        if not first & 0x80:
            raise AnsibleFilterError("openpgp_fingerprints: byte %d is not a packet header: not an OpenPGP key" % i)
        if first & 0x40:  # new format
            tag, i = first & 0x3F, i + 1
            if i >= n:
                break
            o1 = data[i]
            if o1 < 192:
                length, i = o1, i + 1
            elif o1 < 224:
                length, i = ((o1 - 192) << 8) + data[i + 1] + 192, i + 2
            elif o1 == 255:
                length, i = int.from_bytes(data[i + 1:i + 5], "big"), i + 5
            else:
                raise AnsibleFilterError("openpgp_fingerprints: partial body lengths do not occur in keys: not a key")
        else:
            tag, kind, i = (first >> 2) & 0x0F, first & 0x03, i + 1
            if kind == 3:
                length = n - i
            else:
                size = (1, 2, 4)[kind]
                length, i = int.from_bytes(data[i:i + size], "big"), i + size
        if i + length > n:
            raise AnsibleFilterError("openpgp_fingerprints: the key file is cut short")
        yield tag, data[i:i + length]
        i += length


def _fingerprint(body):
    version = body[0] if body else None
    if version == 4:
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
    if version in (5, 6):
        return hashlib.sha256(bytes([0x95 + version]) + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    raise AnsibleFilterError("openpgp_fingerprints: key version %s is not supported (4, 5 and 6 are)" % version)


def openpgp_fingerprints(content):
    """Primary key fingerprints (upper-case hex) of a key file given as base64 (what slurp returns), armored or
    binary, in file order. Subkeys are not listed: they belong to their primary key."""
    try:
        data = base64.b64decode(content or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise AnsibleFilterError("openpgp_fingerprints: pass the file as base64, for example slurp's content")
    if data.lstrip().startswith(b"-----BEGIN"):
        data = _dearmor(data)
    fingerprints = [_fingerprint(body) for tag, body in _packets(data) if tag == PUBLIC_KEY]
    if not fingerprints:
        raise AnsibleFilterError("openpgp_fingerprints: the file holds no public key")
    return fingerprints


class FilterModule(object):
    def filters(self):
        return {"openpgp_fingerprints": openpgp_fingerprints}
