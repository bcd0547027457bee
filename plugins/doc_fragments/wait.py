# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    # The one wait for a status condition, shared by nim_apply and nim_info (runner._wait_condition).
    DOCUMENTATION = r'''
options:
  wait_condition:
    description:
      - The status condition to wait for (for example a ClusterIssuer or an ExternalSecret becoming V(Ready), a
        Deployment V(Available), a CRD V(Established)).
      - On timeout the error quotes the condition's reason and message, the object's last Warning event (where
        controllers such as External Secrets put the cause) and the command to look further.
    type: dict
    suboptions:
      type:
        description: Condition type.
        type: str
        default: Ready
      status:
        description: Condition status.
        type: str
        default: "True"
        choices: [ "True", "False", "Unknown" ]
  wait_timeout:
    description: Seconds to wait in all.
    type: int
    default: 120
'''
