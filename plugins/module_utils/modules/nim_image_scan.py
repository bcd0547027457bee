# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nim_image_scan: the image gate (scan.py) with the host's Trivy, or the reports CI made. No cluster."""

from __future__ import annotations

from ansible_collections.nimguard.k8s.plugins.module_utils.registry import resolve
from ansible_collections.nimguard.k8s.plugins.module_utils.scan import scan_images

NAME = "nim_image_scan"


def _read(path):
    with open(path) as f:
        return f.read()


def run(p, task):
    return scan_images(p, task.run_command, _read, task.find_binary, task.tmpdir, resolve=resolve)
