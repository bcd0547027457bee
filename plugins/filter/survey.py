# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""survey_services: the allow-list between an AWX survey answer and nim_rollout_services (documented in
survey_services.yml).

Whoever may launch a job template may answer its survey, and nothing more: a survey item's keys would win over the
role's (namespace, secrets, commands, env, storage, RBAC, network policy), so only keys that cannot reach another
namespace, another Secret, the node or the network pass, each checked for its form; everything else is refused,
naming the key. Every value that passes is rebuilt from checked parts, so no text of the answer reaches a template."""

from __future__ import annotations

import re

import yaml

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.nimguard.k8s.plugins.module_utils.validate import DNS1035
from ansible_collections.nimguard.k8s.plugins.module_utils.specs import SERVICE

# What an item may hold: the service's name, its image (repository under an approved prefix, and a tag), how many
# replicas and GPUs, and CPU and memory requests and limits.
ALLOWED = ("name", "image.repository", "image.tag", "replicas", "resources.gpus", "resources.requests.cpu",
           "resources.requests.memory", "resources.limits.cpu", "resources.limits.memory")
# A repository as the distribution spec names one: an optional registry host[:port], then path components (so no
# '..', no tag or digest, no template characters).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
REPOSITORY = re.compile(r"^(?:%s/)?%s(?:/%s)*$" % (_DOMAIN, _COMPONENT, _COMPONENT))
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# A Kubernetes quantity (resource.Quantity's regular expression).
QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$")
SOURCE = "nimguard_survey_services"


def _show(value):
    """A refused value as the message shows it: the launcher's own text, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def survey_services(value, image_prefixes, max_gpus=8, max_replicas=4):
    """The survey's services (YAML text or a list) as nim_rollout_services items holding the allowed keys only;
    raises AnsibleFilterError listing every refused key and value."""
    prefixes = _prefixes(image_prefixes)
    for name, limit in (("max_gpus", max_gpus), ("max_replicas", max_replicas)):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise AnsibleFilterError("survey_services: %s must be a whole number of 0 or more, not %r. Fix: set it in "
                                     "the job template's extra variables." % (name, limit))
    items = _parse(value)
    errors, out, names = [], [], set()
    for i, item in enumerate(items):
        where = "%s[%d]" % (SOURCE, i)
        if not isinstance(item, dict):
            errors.append("%s: expected a mapping, got %s. Fix: each service is a mapping such as {name: llama, image: "
                          "{repository: ..., tag: ...}}." % (where, type(item).__name__))
            continue
        clean = _item(item, where, prefixes, max_gpus, max_replicas, errors)
        if clean.get("name") in names:
            errors.append("%s.name: %s is given twice. Fix: one item per service." % (where, clean["name"]))
        names.add(clean.get("name"))
        out.append(clean)
    if errors:
        raise AnsibleFilterError(
            "The survey's services are refused:\n%s\nThe survey accepts only these keys per service: %s; the job "
            "template fixes everything else (namespace, secrets, commands, environment, storage, RBAC, network policy)."
            % ("\n".join("- " + e for e in errors), ", ".join(ALLOWED)))
    return out


def _prefixes(image_prefixes):
    if isinstance(image_prefixes, str) or not isinstance(image_prefixes, (list, tuple)) or not image_prefixes:
        raise AnsibleFilterError("survey_services: image_prefixes must be a non-empty list of repository prefixes such "
                                 "as [nvcr.io/nim/], not %r. Fix: set it in the job template's extra variables."
                                 % (image_prefixes,))
    out = []
    for p in image_prefixes:
        p = to_text(p)
        # A prefix ends at a path boundary: nvcr.io/nim would also approve nvcr.io/nimble/...
        if not p.endswith("/") or not REPOSITORY.match(p[:-1]):
            raise AnsibleFilterError("survey_services: image prefix %r must be a registry and path ending in '/', such "
                                     "as nvcr.io/nim/. Fix: correct it in the job template's extra variables." % p)
        out.append(p)
    return out


def _parse(value):
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = " at line %d, column %d" % (mark.line + 1, mark.column + 1) if mark else ""
            # The problem only: a YAML error's snippet would echo the answer.
            raise AnsibleFilterError("%s: not valid YAML%s (%s). Fix: give a YAML list of services, e.g. "
                                     "- {name: llama, image: {repository: nvcr.io/nim/meta/llama-3.1-8b-instruct, "
                                     "tag: '1.3.3'}}." % (SOURCE, where, getattr(e, "problem", None) or "syntax"))
        if value is None:
            return []
    if not isinstance(value, (list, tuple)):
        raise AnsibleFilterError("%s: expected a YAML list of services, got %s. Fix: start each service with '- '."
                                 % (SOURCE, type(value).__name__))
    return list(value)


def _item(item, where, prefixes, max_gpus, max_replicas, errors):
    refused = list(_refused(item, ""))
    if refused:
        errors.append("%s: not allowed in the survey: %s. Fix: remove %s; the job template sets what is not on the "
                      "allow-list (ask its owner to change the template)." % (
                          where, ", ".join(refused), "it" if len(refused) == 1 else "them"))
    clean = {}
    name = item.get("name")
    if not isinstance(name, str) or len(name) > 63 or not DNS1035.match(name):
        errors.append("%s.name: %s is not a service name. Fix: up to 63 lower-case letters, digits and '-', starting "
                      "with a letter." % (where, _show(name)))
    else:
        clean["name"] = name
    image = item.get("image")
    if "image" in item and not isinstance(image, dict):
        errors.append("%s.image: expected a mapping, got %s. Fix: image: {repository: nvcr.io/nim/..., tag: '1.3.3'}."
                      % (where, type(image).__name__))
    elif image is not None:
        clean_image = _image(image, where, prefixes, errors)
        if clean_image:
            clean["image"] = clean_image
    if "replicas" in item:
        replicas = _count(item["replicas"], "%s.replicas" % where, 1, max_replicas, errors)
        if replicas is not None:
            clean["replicas"] = replicas
    resources = item.get("resources")
    if "resources" in item and not isinstance(resources, dict):
        errors.append("%s.resources: expected a mapping, got %s. Fix: resources: {gpus: 1, requests: {cpu: 4, memory: "
                      "16Gi}, limits: {memory: 32Gi}}." % (where, type(resources).__name__))
    elif resources:
        clean_resources = {}
        if "gpus" in resources:
            gpus = _count(resources["gpus"], "%s.resources.gpus" % where, 0, max_gpus, errors)
            if gpus is not None:
                clean_resources["gpus"] = gpus
        for part in ("requests", "limits"):
            given = resources.get(part)
            if part in resources and not isinstance(given, dict):
                errors.append("%s.resources.%s: expected a mapping, got %s. Fix: %s: {cpu: 4, memory: 16Gi}." % (
                    where, part, type(given).__name__, part))
            elif given:
                clean_resources[part] = dict((k, _quantity(given[k], "%s.resources.%s.%s" % (where, part, k), errors))
                                             for k in ("cpu", "memory") if k in given)
        clean["resources"] = clean_resources
    return clean


def _refused(value, prefix, options=None):
    """Paths of every key not on the allow-list. Inside a refused option that has suboptions (nim_service's argument
    spec), each key given is named (secret_delivery.command, not only secret_delivery); free-form mappings such as
    node_selector are named whole."""
    options = SERVICE if options is None else options
    for key in value:
        path = prefix + to_text(key)
        if path in ALLOWED:
            continue
        has_allowed = any(a.startswith(path + ".") for a in ALLOWED)
        sub = (options.get(key) or {}).get("options")
        if isinstance(value[key], dict) and value[key] and (sub or has_allowed):
            yield from _refused(value[key], path + ".", sub or {})
        elif not has_allowed:  # a mapping given in another shape is reported by the checks of its keys
            yield path


def _image(image, where, prefixes, errors):
    repository, tag, clean = image.get("repository"), image.get("tag"), {}
    if not isinstance(repository, str) or len(repository) > 255 or not REPOSITORY.match(repository):
        errors.append("%s.image.repository: %s is not an image repository. Fix: a repository under %s (no tag or "
                      "digest in it)." % (where, _show(repository), ", ".join(prefixes)))
    elif not any(repository.startswith(p) for p in prefixes):
        errors.append("%s.image.repository: %s is not under an approved prefix (%s). Fix: use an image from an "
                      "approved registry path, or ask the template's owner to approve its prefix." % (
                          where, repository, ", ".join(prefixes)))
    else:
        clean["repository"] = repository
    if not isinstance(tag, str) or not TAG.match(tag):
        errors.append("%s.image.tag: %s is not an image tag. Fix: give the tag as text (quote numbers: tag: '1.3.3'), "
                      "letters, digits, '_', '.' and '-', up to 128." % (where, _show(tag)))
    else:
        clean["tag"] = tag
    return clean


def _count(value, where, low, high, errors):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.append("%s: %s is not a whole number from %d to %d. Fix: give a number in that range (the job "
                      "template sets the most)." % (where, _show(value), low, high))
        return None
    return value


def _quantity(value, where, errors):
    text = to_text(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not QUANTITY.match(text):
        errors.append("%s: %s is not a Kubernetes quantity. Fix: e.g. cpu: '500m' or 4, memory: 16Gi." % (where, _show(value)))
        return None
    return text


class FilterModule(object):
    def filters(self):
        return {"survey_services": survey_services}
