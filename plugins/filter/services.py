# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nim_services and nim_secrets: every service (every Secret) of a rollout checked as nim_service (nim_secret) would
check it, before anything is written (documented in nim_services.yml and nim_secrets.yml). The nim_rollout role and
the playbooks call them in their first task: a module alone validates before its own writes, but a role writes a
namespace and Secrets before its first service."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.redact import Scrubber
from ansible_collections.nimguard.k8s.plugins.module_utils.secrets import elements, values
from ansible_collections.nimguard.k8s.plugins.module_utils.specs import service_options, validator_for


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


def nim_secrets(secrets, namespace, source="nim_rollout_service_secrets"):
    """The Secrets unchanged, once each passes nim_secret's `secrets` element spec and checks (names, kinds, values,
    a name given twice); raises AnsibleFilterError naming the element, the field and the fix, scrubbed of every value
    in the list (a message of the argument spec validator may quote what it could not convert)."""
    if not isinstance(secrets, list):
        raise AnsibleFilterError("%s: expected a list of Secrets, got %s. Fix: give a list of nimguard.k8s.nim_secret "
                                 "`secrets` elements, such as {name: llama-ngc, kind: ngc, value: ...}."
                                 % (source, type(secrets).__name__))
    plain = _plain(secrets)
    scrub = Scrubber()
    for value in values({"secrets": plain}):
        scrub.add(value)
    result = validator_for("nim_secret").validate({"namespace": namespace, "secrets": plain})
    try:
        if result.error_messages:
            raise NimError(result.error_messages[0])
        elements(result.validated_parameters)
    except NimError as e:
        msg = source + e.msg[len("secrets"):] if e.msg.startswith("secrets[") else "%s: %s" % (source, e.msg)
        raise AnsibleFilterError(scrub.scrub(msg))
    return secrets


class FilterModule(object):
    def filters(self):
        return {"nim_services": nim_services, "nim_secrets": nim_secrets}
