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
      - Path to a kubeconfig file, for example V(~/.kube/prod.yaml), or the kubeconfig itself as a dict.
      - Several files joined with C(:) (V(~/.kube/prod-a.yaml:~/.kube/prod-b.yaml)) are merged as C(kubectl) merges
        C($KUBECONFIG). The first file to name a cluster, context or user wins, C(current-context) comes from the
        first file that sets it, and a relative path in a file (C(certificate-authority), C(client-key),
        C(tokenFile)) is relative to that file's folder.
      - When neither this nor O(host) is set, the files of C($KUBECONFIG) that exist (merged the same way), then
        C(~/.kube/config), then the in-cluster service account (an AWX container group, say) are used.
      - Users may authenticate with a token, C(tokenFile), client certificates, or an C(exec) credential plugin
        (C(aws eks get-token), C(gke-gcloud-auth-plugin), C(kubelogin)). The plugin runs again when its credential
        reaches its C(expirationTimestamp) and when the API server refuses it (HTTP 401), so a long wait outlives a
        15-minute EKS token. A user with C(auth-provider) (the old OIDC, gcp and azure providers) is refused with
        the exec plugin to use instead.
      - C(tls-server-name) of a cluster is the name the server's certificate is checked against (and sent as SNI),
        for a server reached by an address its certificate does not name.
      - Can also be set with the E(K8S_AUTH_KUBECONFIG) environment variable.
    type: raw
  context:
    description:
      - The kubeconfig context to use, for example V(prod-eu-west); defaults to the file's current-context.
      - Can also be set with E(K8S_AUTH_CONTEXT).
    type: str
  host:
    description:
      - API server URL, for example V(https://api.prod.example.com:6443). Overrides the kubeconfig's server.
      - An V(http://) server gets a warning on every task; credentials are not sent to one unless
        O(allow_plain_http_credentials) is set.
      - Can also be set with E(K8S_AUTH_HOST).
    type: str
  api_key:
    description:
      - Bearer token, for example a ServiceAccount token from C(kubectl create token nim-deployer --duration 1h).
        Never logged.
      - Can also be set with E(K8S_AUTH_API_KEY).
    type: str
  username:
    description:
      - User name for basic authentication (rarely enabled on API servers), for example V(admin). Can also be set
        with E(K8S_AUTH_USERNAME).
    type: str
  password:
    description:
      - Password for basic authentication. Never logged. Can also be set with E(K8S_AUTH_PASSWORD).
    type: str
  ca_cert:
    description:
      - Path to the CA certificate that signed the API server's certificate, for example
        V(/etc/kubernetes/pki/ca.crt). Can also be set with E(K8S_AUTH_SSL_CA_CERT).
    type: path
    aliases: [ ssl_ca_cert ]
  client_cert:
    description:
      - Path to a client certificate for authentication, for example V(~/.kube/certs/deployer.crt). Can also be set
        with E(K8S_AUTH_CERT_FILE).
    type: path
    aliases: [ cert_file ]
  client_key:
    description:
      - Path to the key of O(client_cert), for example V(~/.kube/certs/deployer.key). Can also be set with
        E(K8S_AUTH_KEY_FILE).
      - A key given as data (the kubeconfig's C(client-key-data), an exec plugin's certificate) is loaded from an
        in-memory file on Linux (memfd), never written to disk.
      - An encrypted key (with a passphrase) is refused with a message; decrypt it first, as for C(kubectl).
    type: path
    aliases: [ key_file ]
  validate_certs:
    description:
      - Verify the API server's certificate. Defaults to the kubeconfig's setting (verify unless
        C(insecure-skip-tls-verify) is true). Switch off for throw-away test clusters only; every task then
        warns.
      - Can also be set with E(K8S_AUTH_VERIFY_SSL), read as Ansible reads booleans (V(true)/V(false),
        V(yes)/V(no), V(1)/V(0)); an empty value is unset, anything else fails the task. C(insecure-skip-tls-verify)
        in a kubeconfig is read the same way, so a quoted V("false") keeps verification on.
    type: bool
    aliases: [ verify_ssl ]
  allow_plain_http_credentials:
    description:
      - Send the token, password or exec credential to an V(http://) API server, where they travel in clear.
        Without it such a task fails before any request; only for a trusted local tunnel (an SSH port forward, say).
    type: bool
    default: false
  impersonate_user:
    description:
      - Act as this user (C(Impersonate-User)), as C(kubectl --as), for example V(system:serviceaccount:nim:deployer)
        to check what a less privileged identity may do. The identity of the kubeconfig needs the C(impersonate)
        verb on users (and on groups for O(impersonate_groups)).
      - Overrides the kubeconfig user's C(as). Can also be set with E(K8S_AUTH_IMPERSONATE_USER).
    type: str
  impersonate_groups:
    description:
      - Groups to act as (C(Impersonate-Group), one header each), as C(kubectl --as-group), for example
        V([nim-deployers]). Needs O(impersonate_user).
      - Can also be set with E(K8S_AUTH_IMPERSONATE_GROUPS), comma separated.
    type: list
    elements: str
  request_timeout:
    description:
      - Seconds to wait for one API response, for example V(60) for a slow API server far away.
    type: float
    default: 30
  retry_timeout:
    description:
      - Total seconds to keep retrying transient failures (connection refused or reset, HTTP 429 and 5xx, and
        optimistic-lock conflicts), with exponential backoff from 0.2 s to 2 s between tries, for example V(60)
        across a control-plane upgrade.
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
    C(module_defaults) and the action group C(group/nimguard.k8s.k8s), under the names C(kubernetes.core) uses
    (C(proxy), C(no_proxy), C(proxy_headers), C(impersonate_user), C(impersonate_groups) included).
'''

    # The API proxy: `proxy` as in kubernetes.core (in nim_service too; the NIM's own proxy is outbound_proxy).
    API_PROXY = r'''
options:
  api_proxy:
    description:
      - HTTP proxy to reach the API server through (HTTP CONNECT for an https:// server), for example
        V(http://proxy.example.com:3128). Overrides the kubeconfig's C(proxy-url).
      - Credentials for the proxy go in the URL (V(http://user:password@proxy.example.com:3128), percent-encoded)
        or in O(proxy_headers.proxy_basic_auth); they are sent as C(Proxy-Authorization) and never printed.
      - Can also be set with E(K8S_AUTH_PROXY).
    type: str
    aliases: [ proxy ]
  no_proxy:
    description:
      - API servers to reach directly although O(api_proxy) is set, comma separated, as curl reads C(NO_PROXY),
        host names (a name also matches its subdomains), IP addresses, CIDR ranges, or V(*).
      - For example V(localhost,127.0.0.1,10.0.0.0/8,.internal.example.com).
      - Can also be set with E(K8S_AUTH_NO_PROXY).
    type: str
  proxy_headers:
    description:
      - Headers for the proxy, as in C(kubernetes.core).
    type: dict
    suboptions:
      proxy_basic_auth:
        description:
          - V(user:password) for the proxy (C(Proxy-Authorization)); wins over credentials in the O(api_proxy) URL.
            Never logged.
        type: str
      basic_auth:
        description:
          - V(user:password) sent to the proxy as C(Authorization) on C(CONNECT) (proxies that expect it there).
            Never logged.
        type: str
      user_agent:
        description:
          - C(User-Agent) sent to the proxy.
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
