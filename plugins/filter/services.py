# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nim_services: every service of a rollout checked as nim_service would check it, before anything is written
(documented in nim_services.yml). The nim_rollout role and the playbooks call it in their first task: the module
alone validates before its own writes, but a role writes a namespace and Secrets before its first service."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.specs import service_options


def nim_services(services, source="nim_rollout_services"):
    """The services unchanged, once each passes nim_service's argument spec and rules; raises AnsibleFilterError
    naming the service, the field and the fix (values are not quoted: a service may carry an env value)."""
    if not isinstance(services, list):
        raise AnsibleFilterError("%s: expected a list of services, got %s. Fix: give a list of nimguard.k8s.nim_service "
                                 "options, one mapping per service." % (source, type(services).__name__))
    for i, service in enumerate(services):
        if not isinstance(service, dict):
            raise AnsibleFilterError("%s[%d]: expected a mapping, got %s. Fix: each service is a mapping such as "
                                     "{name: llama, image: {repository: ...}}." % (source, i, type(service).__name__))
        try:
            service_options({"service": service})
        except NimError as e:
            raise AnsibleFilterError("%s[%d] (%s): %s" % (source, i, service.get("name"), e.msg))
    return services


class FilterModule(object):
    def filters(self):
        return {"nim_services": nim_services}
