# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image references and their digests: a tag asked of its registry (the OCI distribution API) once, before
the scan, so that the scan and the pods read the same bytes however the tag moves afterwards.

Anonymous, or with the credentials of the Docker config file (`$DOCKER_CONFIG/config.json`, what `docker
login`, `trivy registry login` and `podman login --authfile` write), through the registry's token service
when it asks for one. A registry on the loopback interface is spoken to in plain HTTP, as containerd and
Docker do; every other one over verified HTTPS. Nothing a registry sends back is put in a message."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse

from ansible.module_utils.urls import open_url

from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.scan import split
from ansible_collections.nimguard.k8s.plugins.module_utils.validate import DIGEST

MANIFESTS = ", ".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                       "application/vnd.docker.distribution.manifest.list.v2+json",
                       "application/vnd.docker.distribution.manifest.v2+json"])
DOCKER_HUB = "registry-1.docker.io"


def _loopback(host):
    return host.rsplit(":", 1)[0] in ("localhost", "127.0.0.1") or host.startswith("[::1]")


def _credentials(host):
    path = os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")
    try:
        with open(path) as f:
            auths = json.load(f).get("auths") or {}
    except (OSError, ValueError):
        return None
    for key in (host, "https://" + host, "https://index.docker.io/v1/" if host == DOCKER_HUB else None):
        entry = auths.get(key) if key else None
        if entry and entry.get("auth"):
            return entry["auth"]
    return None


def _open(url, headers, method="GET", timeout=30):
    return open_url(url, headers=headers, method=method, timeout=timeout, validate_certs=True, follow_redirects="safe")


def _token(challenge, host, repo, timeout):
    """A bearer token from the registry's token service (the WWW-Authenticate challenge's realm)."""
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if not params.get("realm", "").startswith("https://") and not _loopback(host):
        raise NimError("registry %s: its token service is not HTTPS. Fix: use a registry that serves tokens over "
                       "HTTPS, or pin image.digest." % host)
    query = {"scope": params.get("scope") or "repository:%s:pull" % repo}
    if params.get("service"):
        query["service"] = params["service"]
    headers = {}
    auth = _credentials(host)
    if auth:
        headers["Authorization"] = "Basic " + auth
    with _open(params["realm"] + "?" + urllib.parse.urlencode(query), headers, timeout=timeout) as resp:
        body = json.loads(resp.read().decode("utf-8"))
    return body.get("token") or body.get("access_token")


def resolve(ref, timeout=30):
    """The manifest digest `ref`'s tag names now (a digest in `ref` is returned as it is). Raises NimError
    naming the image and the fixes."""
    host, repo, tag, digest = split(ref)
    if digest:
        return digest
    if not tag:
        raise NimError("image %s: no tag. Fix: name the release, e.g. %s:1.3.3 (no 'latest' is assumed)." % (ref, ref))
    api = DOCKER_HUB if host == "docker.io" else host
    scheme = "http" if _loopback(api) else "https"
    url = "%s://%s/v2/%s/manifests/%s" % (scheme, api, repo, urllib.parse.quote(tag, safe=""))
    headers = {"Accept": MANIFESTS}
    try:
        try:
            resp = _open(url, headers, "HEAD", timeout)
        except urllib.error.HTTPError as e:
            if e.code != 401 or "bearer" not in (e.headers.get("WWW-Authenticate") or "").lower():
                raise
            token = _token(e.headers["WWW-Authenticate"], api, repo, timeout)
            headers["Authorization"] = "Bearer %s" % token
            resp = _open(url, headers, "HEAD", timeout)
        with resp:
            found = resp.headers.get("Docker-Content-Digest") or ""
    except urllib.error.HTTPError as e:
        raise NimError("image %s: the registry answered HTTP %s for tag %s. Fix: check that the tag exists and that "
                       "this host may pull it (docker login / trivy registry login %s), or pin image.digest."
                       % (ref, e.code, tag, api))
    except (OSError, ValueError) as e:
        raise NimError("image %s: cannot ask %s for the digest of tag %s (%s). Fix: let this host reach the "
                       "registry, or pin image.digest (e.g. from `crane digest %s`)."
                       % (ref, api, tag, type(e).__name__, ref))
    if not DIGEST.match(found):
        raise NimError("image %s: the registry sent no sha256 manifest digest for tag %s. Fix: pin image.digest."
                       % (ref, tag))
    return found
