"""detect-secrets plugins for the credentials a NIM deployment handles, beside detect-secrets' built-ins
(private keys, AWS keys, passwords and tokens in key: value pairs, basic auth in URLs, JWTs).

Used by .pre-commit-config.yaml and tests/unit/test_no_secrets.py through .secrets.baseline."""

import re

from detect_secrets.plugins.base import RegexBasedDetector


class NGCApiKeyDetector(RegexBasedDetector):
    """NVIDIA NGC personal and service API keys: nvapi- and a long URL-safe base64 tail."""
    secret_type = "NVIDIA NGC API Key"
    denylist = [re.compile(r"\bnvapi-[A-Za-z0-9_-]{32,}")]


class HuggingFaceTokenDetector(RegexBasedDetector):
    """Hugging Face user access and organization tokens (hf_ / api_org_ and 34 or more letters and digits)."""
    secret_type = "Hugging Face Token"
    denylist = [re.compile(r"\b(?:hf|api_org)_[A-Za-z0-9]{30,}\b")]


class DockerConfigAuthDetector(RegexBasedDetector):
    """The base64 user:password pair in a .dockerconfigjson ("auth": "..."), written out by hand or by a
    copy of a live pull Secret."""
    secret_type = "Registry auth (dockerconfigjson)"
    # quotes may come escaped: detect-secrets reads YAML through a transformer that re-quotes values
    denylist = [re.compile(r"\\?[\"']auth\\?[\"']\s*:\s*\\?[\"']([A-Za-z0-9+/]{16,}={0,2})\\?[\"']")]


class CredentialAssignmentDetector(RegexBasedDetector):
    """A literal value given to a key that names a credential (registry_password: ..., hf_token = ...). Used
    instead of detect-secrets' KeywordDetector, which flags every key containing "secret" (secret names,
    secret_key mappings) in Ansible YAML. Templated values ({{ ... }}), placeholders (<...>) and empty ones are
    not credentials; the built-in heuristic filters drop them."""
    secret_type = "Credential assignment"
    denylist = [re.compile(
        r"(?i)[\w.-]*(?:password|passwd|token|api_key|apikey|access_key|client_secret)[\"']?\s*[:=]\s*"
        r"[\"']?([^\s\"'{}<>,#]{8,})")]
