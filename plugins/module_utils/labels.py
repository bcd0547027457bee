# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every label and annotation name the collection sets or reads, said once.

The labels mark what the collection manages: prune finds an instance's objects by them, a loop's shared
LISTs and the doctor select by them. The annotations carry what apply and rotation must remember on the
objects themselves."""

from __future__ import annotations

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "nimguard"
NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "nimguard.io/component"  # service, rbac or secret: which module made the object
SECRET_KIND = "nimguard.io/secret-kind"
POD_SECURITY_ENFORCE = "pod-security.kubernetes.io/enforce"

MANAGED = {MANAGED_BY: MANAGER}
MANAGED_SELECTOR = "%s=%s" % (MANAGED_BY, MANAGER)

# The hash of what was applied (apply.stamp): an object is unchanged when its live copy carries it.
HASH_ANNOTATION = "nimguard.io/applied-hash"
# On a service's Deployment: the kinds its last apply made, so prune lists only those (apply.Converger.read).
KINDS_ANNOTATION = "nimguard.io/applied-kinds"
# On the pod template: the keyed content hash of the Secrets the pods consume, so a rotation rolls them.
SECRETS_HASH = "nimguard.io/secrets-hash"
# The Secret holding a namespace's key for those hashes (apply.hash_key), and the key it is under.
HASH_KEY_SECRET = "nimguard-hash-key"
HASH_KEY_FIELD = "hmac-key"
# kubectl's copy of the last applied object: may hold a whole Secret in clear (redact.clean drops it).
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# The Ingress annotations on which cert-manager's ingress-shim issues the TLS Secret: an issuer named, or
# kubernetes.io/tls-acme: "true" with the controller's default issuer. Other cert-manager.io/* annotations
# (issuer-kind, duration, common-name...) only qualify a request and issue nothing alone.
CERT_MANAGER_ISSUERS = ("cert-manager.io/cluster-issuer", "cert-manager.io/issuer")
TLS_ACME = "kubernetes.io/tls-acme"
# Ingress annotations that put authentication in front of the backend, by ingress controller, and
# nimguard.io/auth-in-front: <what authenticates> for anything else (an OAuth proxy, a gateway, a mesh policy).
AUTH_IN_FRONT = ("nimguard.io/auth-in-front", "nginx.ingress.kubernetes.io/auth-url",
                 "nginx.ingress.kubernetes.io/auth-type", "nginx.ingress.kubernetes.io/auth-tls-verify-client",
                 "alb.ingress.kubernetes.io/auth-type", "haproxy.org/auth-type", "haproxy.org/oauth",
                 "traefik.ingress.kubernetes.io/router.middlewares", "konghq.com/plugins",
                 "ingress.kubernetes.io/auth-type", "ingress.kubernetes.io/auth-url")
# Annotations saying TLS is terminated in front of a NodePort/LoadBalancer Service: the cloud load balancers'
# own, or nimguard.io/tls-in-front: <what terminates it> for anything else (a gateway, a service mesh).
TLS_IN_FRONT = ("nimguard.io/tls-in-front", "service.beta.kubernetes.io/aws-load-balancer-ssl-cert",
                "service.beta.kubernetes.io/oci-load-balancer-ssl-ports",
                "service.beta.kubernetes.io/do-loadbalancer-certificate-id")


def metadata(name, namespace, labels, annotations=None):
    """An object's metadata: its name, namespace (none for cluster-scoped kinds), labels and annotations."""
    meta = {"name": name, "labels": labels}
    if namespace:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def labels_for(name, component, extra=None):
    """The labels of every object of one instance (a service, its RBAC, a Secret)."""
    labels = {NAME: name, INSTANCE: name, COMPONENT: component}
    labels.update(MANAGED)
    if extra:
        labels.update(extra)
    return labels


def instance(name):
    """The labels that find every managed object of one instance, whichever module made it."""
    return {MANAGED_BY: MANAGER, INSTANCE: name}


def pod_selector(name):
    return {NAME: name, INSTANCE: name}


def selector(labels):
    """A label selector for a LIST, in a stable order."""
    return ",".join("%s=%s" % kv for kv in sorted(labels.items()))
