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


def _plain(value):
    """The value as plain dicts, lists and scalars. From ansible-core 2.19 on a filter gets lazy containers that carry
    the templar; the argument spec validator deep-copies its input, and on 2.21 copying the templar's plugin loaders
    prints a deprecation warning in every run (tests/matrix/test_slice.py checks there is none)."""
    if isinstance(value, dict):
        return dict((k, _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


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
            service_options({"service": _plain(service)})
        except NimError as e:
            raise AnsibleFilterError("%s[%d] (%s): %s" % (source, i, service.get("name"), e.msg))
    return services


class FilterModule(object):
    def filters(self):
        return {"nim_services": nim_services}
