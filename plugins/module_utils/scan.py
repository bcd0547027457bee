# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image scanning gate: Trivy JSON in, a pass or a list of findings to fix out.

Pure functions except `scan_images`, which is given the command runner and file reader to use, so the
unit tests drive every decision (severity, allow-list expiry, report matching) without Trivy."""

from __future__ import annotations

import datetime
import json
import os
import re

from ansible_collections.nimguard.k8s.plugins.module_utils.errors import NimError
from ansible_collections.nimguard.k8s.plugins.module_utils.specs import SEVERITIES, VAULT_AGENT_IMAGE, outbound_proxy
from ansible_collections.nimguard.k8s.plugins.module_utils.validate import DIGEST, main_image

RANK = dict((s, i) for i, s in enumerate(SEVERITIES))
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# ---------------------------------------------------------------------------------------------
# Which images a service runs


def normalize_ref(ref):
    """Compare image references the way a registry resolves them: docker.io/library/ and :latest implied."""
    ref = (ref or "").strip()
    name, digest = (ref.split("@", 1) + [""])[:2]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and not digest:
        name += ":latest"
    if name.startswith("docker.io/"):
        name = name[len("docker.io/"):]
    if name.startswith("library/"):
        name = name[len("library/"):]
    return name + ("@" + digest if digest else "")


def split(ref):
    """(registry host, repository, tag or None, digest or None) of an image reference, Docker's defaults
    applied (docker.io, library/)."""
    name, digest = (ref.strip().split("@", 1) + [""])[:2]
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    first, rest = (name.split("/", 1) + [""])[:2]
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, repo = first, rest
    else:
        host, repo = "docker.io", name if "/" in name else "library/" + name
    return host, repo, tag, digest or None


def pinned(ref, digest):
    """The reference that pulls exactly `digest`: repository@digest (a tag beside it would be ignored)."""
    name = ref.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return "%s@%s" % (name, digest)


def service_images(svc):
    """Every image a service's pods run: the NIM container, the CA bundle init container, the vault agent.
    `svc`: a service as a role passes it (unchecked, defaults not applied: those are nim_service's)."""
    image = svc.get("image") or {}
    if not image.get("repository"):
        raise NimError("services: service %s has no image.repository. Fix: set image.repository and image.tag."
                       % svc.get("name"))
    main = main_image(image, "services[%s].image" % svc.get("name"))
    images = [main]
    proxy = outbound_proxy(svc)
    if proxy.get("cert_config_map"):
        images.append(proxy.get("ca_init_image") or main)
    delivery = svc.get("secret_delivery") or {}
    if delivery.get("mode") == "vault_agent":
        images.append((delivery.get("vault") or {}).get("image") or VAULT_AGENT_IMAGE)
    return images


def unique_images(images, services):
    out, seen = [], set()
    for ref in list(images or []) + [i for s in services or [] for i in service_images(s)]:
        if normalize_ref(ref) not in seen:
            seen.add(normalize_ref(ref))
            out.append(ref)
    return out


# ---------------------------------------------------------------------------------------------
# Trivy JSON (schema version 2) to findings


def severity_rank(value, field="severity"):
    sev = str(value or "UNKNOWN").upper()
    if sev not in RANK:
        raise NimError("%s: %r is not a Trivy severity. Fix: use one of %s." % (field, value, ", ".join(SEVERITIES)))
    return RANK[sev]


def findings_of(report, source="report"):
    """Flatten the three result classes Trivy reports into one list of findings. Secret matches and code
    lines are never copied: a finding names where a secret is, not what it is."""
    if not isinstance(report, dict) or "Results" not in report and "SchemaVersion" not in report:
        raise NimError("%s: not a Trivy JSON report (no SchemaVersion or Results). Fix: produce it with "
                       "`trivy image --format json --output report.json IMAGE`." % source)
    out = []
    for result in report.get("Results") or []:
        target = result.get("Target") or ""
        for v in result.get("Vulnerabilities") or []:
            pkg = v.get("PkgName") or ""
            out.append(dict(kind="vulnerability", id=v.get("VulnerabilityID") or "", target=target,
                            package=pkg, installed_version=v.get("InstalledVersion") or "",
                            fixed_version=v.get("FixedVersion") or "", severity=_sev(v.get("Severity")),
                            title=v.get("Title") or (v.get("Description") or "")[:120]))
        for m in result.get("Misconfigurations") or []:
            if (m.get("Status") or "FAIL") != "FAIL":
                continue  # PASS/EXCEPTION entries appear with --include-non-failures
            out.append(dict(kind="misconfiguration", id=m.get("ID") or m.get("AVDID") or "", aliases=[
                a for a in (m.get("AVDID"), m.get("ID")) if a], target=target, package=target,
                severity=_sev(m.get("Severity")), title=m.get("Title") or "", message=m.get("Message") or ""))
        for s in result.get("Secrets") or []:
            where = "%s:%s" % (target, s.get("StartLine")) if s.get("StartLine") else target
            out.append(dict(kind="secret", id=s.get("RuleID") or "", target=target, package=where,
                            category=s.get("Category") or "", severity=_sev(s.get("Severity")),
                            title=s.get("Title") or ""))
    return out


def _sev(value):
    sev = str(value or "UNKNOWN").upper()
    return sev if sev in RANK else "UNKNOWN"


# ---------------------------------------------------------------------------------------------
# Allow-list


def check_allow_list(entries):
    """Every entry needs an id, a reason and an expiry date: an exception nobody has to revisit is a hole."""
    out = []
    for i, e in enumerate(entries or []):
        where = "allow_list[%d]" % i
        if not isinstance(e, dict):
            raise NimError("%s: expected a dict with id, reason and expires. Fix: e.g. {id: CVE-2024-1234, "
                           "reason: 'not reachable: no TLS client', expires: 2026-12-31}." % where)
        if not e.get("id"):
            raise NimError("%s.id: missing. Fix: the finding's ID (CVE-..., a misconfiguration ID such as KSV-0014, "
                           "or a secret rule ID)." % where)
        if not str(e.get("reason") or "").strip():
            raise NimError("%s.reason: missing for %s. Fix: say why this finding is accepted (it is shown with every "
                           "run)." % (where, e["id"]))
        expires = e.get("expires")
        if isinstance(expires, datetime.datetime):
            expires = expires.date()
        if not isinstance(expires, datetime.date):
            text = str(expires or "")
            if not DATE.match(text):
                raise NimError("%s.expires: %r for %s is not a date. Fix: set expires: YYYY-MM-DD (quoted or not); "
                               "every exception gets a review date." % (where, expires, e["id"]))
            try:
                expires = datetime.date(*[int(x) for x in text.split("-")])
            except ValueError:
                raise NimError("%s.expires: %r for %s is not a valid date. Fix: use YYYY-MM-DD." % (where, text, e["id"]))
        out.append(dict(id=str(e["id"]), reason=str(e["reason"]).strip(), expires=expires,
                        package=e.get("package") or None, image=e.get("image") or None))
    return out


def _entry_matches(entry, finding, image):
    if entry["id"] != finding["id"] and entry["id"] not in (finding.get("aliases") or []):
        return False
    if entry["package"] and entry["package"] not in (finding.get("package"), finding.get("target")):
        return False
    return not entry["image"] or normalize_ref(entry["image"]) == normalize_ref(image)


def gate(findings, image, threshold, allow_list, today):
    """Split one image's findings: blocking (at or above threshold, not allowed), allowed (with the entry's
    reason), expired (an entry matched but its date passed: blocking again, said so) and below threshold."""
    limit = severity_rank(threshold)
    result = dict(blocking=[], allowed=[], below_threshold=0, used=set())
    for f in findings:
        if RANK[f["severity"]] < limit:
            result["below_threshold"] += 1
            continue
        matches = [(i, e) for i, e in enumerate(allow_list) if _entry_matches(e, f, image)]
        live = [(i, e) for i, e in matches if e["expires"] >= today]
        if live:
            i, e = live[0]
            result["used"].add(i)
            result["allowed"].append(dict(f, reason=e["reason"], expires=e["expires"].isoformat()))
            continue
        f = dict(f)
        if matches:
            i, e = matches[0]
            result["used"].add(i)
            f["expired_allow_list_entry"] = dict(reason=e["reason"], expires=e["expires"].isoformat())
        result["blocking"].append(f)
    return result


def describe(f):
    """One line naming a finding: ID, package (or file), severity, title; never a secret's text."""
    pkg = f.get("package") or f.get("target") or "-"
    if f.get("installed_version"):
        pkg += " " + f["installed_version"]
    line = "%s %s %s %s: %s" % (f["id"], f["kind"], pkg, f["severity"], f.get("title") or "")
    if f.get("fixed_version"):
        line += " (fixed in %s)" % f["fixed_version"]
    exp = f.get("expired_allow_list_entry")
    if exp:
        line += " [allow-list entry expired on %s (reason was: %s): renew it with a new date or fix the finding]" % (
            exp["expires"], exp["reason"])
    return line


# ---------------------------------------------------------------------------------------------
# Reports and the scanner


def report_for(reports, image):
    for key, path in (reports or {}).items():
        if normalize_ref(key) == normalize_ref(image):
            return path
    return None


def report_digest(report, image):
    """The manifest digest a Trivy report of a container image says it scanned for `image`'s repository
    (Metadata.RepoDigests), or None."""
    host, repo = split(image)[:2]
    for entry in (report.get("Metadata") or {}).get("RepoDigests") or []:
        if "@" in entry and split(entry)[:2] == (host, repo) and DIGEST.match(split(entry)[3] or ""):
            return split(entry)[3]
    return None


def check_report_artifact(report, image, path, warnings):
    """A report for another image (a stale tag, a copy-paste) must not let an image through. An image pinned
    by digest matches a report of a tag that scanned that digest."""
    kind, name = report.get("ArtifactType"), report.get("ArtifactName") or ""
    if kind == "container_image":
        digest = split(image)[3]
        if normalize_ref(name) != normalize_ref(image) and not (digest and report_digest(report, image) == digest):
            raise NimError("reports[%s]: %s is a report for image %s, not %s. Fix: scan the image that is deployed "
                           "(`trivy image --format json --output %s %s`) or point reports at its report."
                           % (image, path, name, image, os.path.basename(path), image))
    else:
        warnings.append("image %s: report %s scanned %s %s (not a container image): it cannot be tied to the image."
                        % (image, path, kind or "an unknown artifact", name))


def trivy_command(trivy, image, output, scanners, extra_args):
    return [trivy, "image", "--format", "json", "--quiet", "--scanners", ",".join(scanners),
            "--output", output] + list(extra_args or []) + [image]


def scan_images(p, run, read, find_binary, tmpdir, today=None, resolve=None):
    """p: validated module options. run(argv) -> (rc, out, err); read(path) -> text; find_binary(name) -> path
    or None; resolve(ref) -> the digest its tag names now (registry.resolve). Returns the module result, with
    the digest of each image (`digests`, and `service_digests` of each service's NIM image), or raises
    NimError naming each blocking finding.

    A tag moves: an image scanned here is scanned by the digest its tag names before the scan, and that digest
    is what the pods are to run. An image with a report gets the digest the report scanned."""
    today = today or datetime.date.today()
    severity = p["severity"].upper()
    severity_rank(severity)
    allow_list = check_allow_list(p["allow_list"])
    images = unique_images(p["images"], p["services"])
    if not images:
        raise NimError("images: nothing to scan. Fix: pass images or services (each with image.repository).")
    warnings, per_image, blocking_lines, digests = [], [], [], {}
    used = set()
    trivy = None
    for image in images:
        path = report_for(p["reports"], image)
        digest = split(image)[3]
        if path:
            report = _load(read, path, image)
            check_report_artifact(report, image, path, warnings)
            source, scanned = "report", image
            digest = digest or report_digest(report, image)
            if not digest:
                warnings.append("image %s: report %s names no digest (Metadata.RepoDigests), so the image cannot be "
                                "pinned to what was scanned and is deployed by tag. Fix: give Trivy's report of the "
                                "image as pulled from its registry, or pin image.digest." % (image, path))
        else:
            if trivy is None:
                trivy = find_binary(p["trivy"])
            if not trivy:
                raise NimError(
                    "image %s: no report and no scanner: %s was not found on this host. Fix (one of): install Trivy "
                    "where the images are reachable (or set trivy: /path/to/trivy); pass reports: {%s: "
                    "/path/to/trivy-report.json} made by your CI with `trivy image --format json --output "
                    "report.json %s`; or turn the gate off explicitly and say why (nim_rollout_image_scan: "
                    "{enabled: false, disabled_reason: ...})." % (image, p["trivy"], image, image))
            from_archive = any(a == "--input" or a.startswith("--input=") for a in p["trivy_args"] or [])
            if not digest and p["resolve_digests"] and not from_archive:
                digest = resolve(image)
            elif not digest and from_archive:
                warnings.append("image %s: scanned from an archive (trivy --input), not from its registry, so it is "
                                "not pinned to a digest and is deployed by tag. Fix: pin image.digest to the "
                                "archive's manifest digest." % image)
            scanned = pinned(image, digest) if digest else image
            path = os.path.join(tmpdir, "trivy-%d.json" % len(per_image))
            argv = trivy_command(trivy, scanned, path, p["scanners"], p["trivy_args"])
            rc, out, err = run(argv)
            if rc != 0:
                raise NimError("image %s: trivy exited %s: %s. Fix: check that the image can be pulled from here "
                               "(registry login: `trivy registry login`), that the vulnerability database can be "
                               "downloaded or is cached (--cache-dir, --skip-db-update), or use reports from CI."
                               % (scanned, rc, (err or out or "").strip()[-800:]))
            report = _load(read, path, image)
            source = "trivy"
        findings = findings_of(report, path)
        g = gate(findings, image, severity, allow_list, today)
        used |= g["used"]
        if digest:
            digests[image] = digest
        per_image.append(dict(image=image, digest=digest, scanned=scanned, source=source,
                              report=path if source == "report" else None,
                              created_at=report.get("CreatedAt"), findings=len(findings),
                              blocking=g["blocking"], allowed=g["allowed"], below_threshold=g["below_threshold"]))
        blocking_lines.extend("%s: %s" % (image, describe(f)) for f in g["blocking"])
        for f in g["allowed"]:
            warnings.append("image %s: %s %s (%s) allowed until %s: %s"
                            % (image, f["id"], f.get("package") or f.get("target"), f["severity"], f["expires"],
                               f["reason"]))
    for i, e in enumerate(allow_list):
        if i not in used:
            warnings.append("allow_list[%d] (%s) matched no finding at or above %s: remove it when it is no longer "
                            "needed." % (i, e["id"], severity))
    by_ref = dict((normalize_ref(k), v) for k, v in digests.items())
    service_digests = dict((s.get("name"), by_ref[normalize_ref(service_images(s)[0])]) for s in p["services"] or []
                           if normalize_ref(service_images(s)[0]) in by_ref)
    result = dict(changed=False, images=per_image, severity=severity, passed=not blocking_lines,
                  blocking=len(blocking_lines), digests=digests, service_digests=service_digests)
    if warnings:
        result["warnings"] = warnings
    if blocking_lines:
        raise NimError("Image scan: %d finding(s) at or above %s block the rollout:\n%s\nFix: update the image to "
                       "one with fixes, or add an allow_list entry {id, reason, expires} for a finding you accept."
                       % (len(blocking_lines), severity, "\n".join("- " + x for x in blocking_lines)),
                       **dict((k, v) for k, v in result.items() if k != "changed"))
    return result


def _load(read, path, image):
    try:
        text = read(path)
    except (IOError, OSError) as e:
        raise NimError("reports[%s]: cannot read %s (%s). Fix: give the path of a Trivy JSON report on the host "
                       "running the task." % (image, path, e.strerror or e))
    try:
        return json.loads(text)
    except ValueError as e:
        raise NimError("reports[%s]: %s is not JSON (%s). Fix: produce it with `trivy image --format json`."
                       % (image, path, e))
