# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.nimguard.k8s.plugins.plugin_utils.action import NimAction


class ActionModule(NimAction):
    MODULE = "nim_image_scan"
