# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    # Cluster connection options, shared by every module (named as in kubernetes.core).
    DOCUMENTATION = r'''
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file, or the kubeconfig itself as a dict.
      - When neither this nor O(host) is set, C($KUBECONFIG) and then C(~/.kube/config) are used, then the
        in-cluster service account (an AWX container group, say).
      - Can also be set with the E(K8S_AUTH_KUBECONFIG) environment variable.
    type: raw
  context:
    description:
      - The kubeconfig context to use; defaults to the file's current-context.
      - Can also be set with E(K8S_AUTH_CONTEXT).
    type: str
  host:
    description:
      - API server URL, for example V(https://api.prod.example.com:6443). Overrides the kubeconfig's server.
      - Can also be set with E(K8S_AUTH_HOST).
    type: str
  api_key:
    description:
      - Bearer token (a ServiceAccount token, say). Never logged.
      - Can also be set with E(K8S_AUTH_API_KEY).
    type: str
  username:
    description:
      - User name for basic authentication (rarely enabled on API servers). Can also be set with E(K8S_AUTH_USERNAME).
    type: str
  password:
    description:
      - Password for basic authentication. Never logged. Can also be set with E(K8S_AUTH_PASSWORD).
    type: str
  ca_cert:
    description:
      - Path to the CA certificate that signed the API server's certificate. Can also be set with E(K8S_AUTH_SSL_CA_CERT).
    type: path
    aliases: [ ssl_ca_cert ]
  client_cert:
    description:
      - Path to a client certificate for authentication. Can also be set with E(K8S_AUTH_CERT_FILE).
    type: path
    aliases: [ cert_file ]
  client_key:
    description:
      - Path to the key of O(client_cert). Can also be set with E(K8S_AUTH_KEY_FILE).
    type: path
    aliases: [ key_file ]
  validate_certs:
    description:
      - Verify the API server's certificate. Defaults to the kubeconfig's setting (verify unless
        C(insecure-skip-tls-verify)). Switch off for throw-away test clusters only.
      - Can also be set with E(K8S_AUTH_VERIFY_SSL).
    type: bool
    aliases: [ verify_ssl ]
  request_timeout:
    description:
      - Seconds to wait for one API response.
    type: float
    default: 30
  retry_timeout:
    description:
      - Total seconds to keep retrying transient failures (connection refused or reset, HTTP 429 and 5xx, and
        optimistic-lock conflicts), with exponential backoff from 0.2 s to 2 s between tries.
    type: float
    default: 20
notes:
  - The collection talks to the API server with its own small HTTP client (Python standard library only); the
    C(kubernetes) Python package is not needed where the task runs.
  - When the task runs on the controller (C(connection=local), for example C(hosts=localhost) or
    C(delegate_to=localhost)), an action plugin runs the module's code in the controller process, which saves
    starting a Python interpreter per task. On any other host the module runs there as usual, so a bastion host
    that alone reaches the API server works.
  - Every option of the collection's modules can be set once for a play with
    C(module_defaults) and the action group C(group/nimguard.k8s.k8s).
'''

    # The API proxy is `proxy` as in kubernetes.core, except in nim_service where `proxy` is the NIM's own
    # outbound proxy (the NIMService spec): there it is only `api_proxy`.
    API_PROXY = r'''
options:
  api_proxy:
    description:
      - HTTP proxy URL to reach the API server through (HTTP CONNECT). Can also be set with E(K8S_AUTH_PROXY).
    type: str
    aliases: [ proxy ]
'''

    API_PROXY_SERVICE = r'''
options:
  api_proxy:
    description:
      - HTTP proxy URL to reach the API server through (HTTP CONNECT). Can also be set with E(K8S_AUTH_PROXY).
      - Named C(proxy) in the other modules; here O(proxy) is the NIM service's own outbound proxy.
    type: str
'''

    STATE = r'''
options:
  state:
    description:
      - V(present) creates or updates the objects; V(absent) deletes them.
    type: str
    default: present
    choices: [ present, absent ]
  namespace:
    description:
      - Namespace of the objects.
    type: str
    required: true
  force_conflicts:
    description:
      - Take over fields that another field manager (kubectl, Helm, an operator) owns, instead of failing
        with a conflict. Applies are server-side applies under the field manager C(nimguard).
    type: bool
    default: false
  labels:
    description:
      - Extra labels for every object. The collection's own labels (C(app.kubernetes.io/managed-by=nimguard),
        C(app.kubernetes.io/instance), C(nimguard.io/component)) are always set; they find the objects to prune.
    type: dict
    default: {}
  annotations:
    description:
      - Extra annotations for every object.
    type: dict
    default: {}
'''
