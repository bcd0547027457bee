# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.nimguard.k8s.plugins.plugin_utils.action import NimAction, module_utils


class ActionModule(NimAction):
    MODULE = "nim_service"

    def module_args(self, args):
        """`service` (a whole service as one dict, a role's loop item) expanded into the options, and `proxy` as a
        dict (outbound_proxy's old name) renamed, here on the controller, before either path: the module on
        another host gets plain options."""
        specs = module_utils("specs")
        args, deprecation = specs.legacy_proxy(specs.expand_service(args))
        if deprecation:
            self._display.deprecated(deprecation, version="2.0.0", collection_name="nimguard.k8s")
        return args
