"""inventories/production read the way Ansible merges it (role defaults < group_vars < host_vars): every Ingress
names a ClusterIssuer that the cert_manager role makes with that inventory's settings."""

import glob
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVENTORY = os.path.join(ROOT, "inventories", "production")


def load(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def cluster_hosts():
    return sorted(load(os.path.join(INVENTORY, "hosts.yml"))["clusters"]["hosts"])


def host_vars(host):
    merged = load(os.path.join(ROOT, "roles", "cert_manager", "defaults", "main.yml"))
    for path in sorted(glob.glob(os.path.join(INVENTORY, "group_vars", "clusters", "*.yml"))):
        merged.update(load(path))
    path = os.path.join(INVENTORY, "host_vars", host + ".yml")
    if os.path.isfile(path):
        merged.update(load(path))
    return merged


def issuers_made(v):
    """The ClusterIssuers roles/cert_manager/tasks/issuers.yml applies with these variables."""
    if not v.get("nimguard_cert_manager"):
        return set()
    made = {(v["cert_manager_selfsigned_issuer"], v["cert_manager_selfsigned_issuer_name"]),
            (v["cert_manager_ca_issuer"], v["cert_manager_ca_issuer_name"]),
            (v["cert_manager_acme_issuer"], v["cert_manager_acme_issuer_name"])}
    return set(name for enabled, name in made if enabled)


@pytest.mark.parametrize("host", cluster_hosts())
def test_every_ingress_names_an_issuer_the_role_makes(host):
    v = host_vars(host)
    named = [(s["name"], s["expose"]["ingress"]["annotations"]["cert-manager.io/cluster-issuer"])
             for s in v["nim_rollout_services"]
             if s.get("expose", {}).get("ingress", {}).get("enabled")]
    assert named, "the production example exposes a service through an Ingress"
    made = issuers_made(v)
    for service, issuer in named:
        assert issuer in made, "%s: %s names ClusterIssuer %s; the cert_manager role makes %s" % (
            host, service, issuer, sorted(made))


def test_the_acme_issuer_is_production_with_a_contact():
    v = host_vars(cluster_hosts()[0])
    assert v["cert_manager_acme_server"] == "production"
    assert v["cert_manager_acme_email"], "Let's Encrypt needs a contact address (cert_manager_acme_email)"
    example = load(os.path.join(INVENTORY, "group_vars", "clusters", "vault.yml.example"))
    assert "vault_acme_email" in example
