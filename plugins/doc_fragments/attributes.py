# -*- coding: utf-8 -*-
# Copyright: nimguard.k8s contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):

    # The modules that converge objects: check and diff mode work the same way in each (module_utils/apply.py).
    DOCUMENTATION = r'''
attributes:
  check_mode:
    support: full
    description:
      - Predicts through the API server's dry run (C(dryRun=All)), so validation and admission (Pod Security,
        RuntimeClass) are part of the prediction; nothing is written.
  diff_mode:
    support: full
    description:
      - Before and after of each changed object; Secret data and secret-looking literal env values are shown as
        short content hashes.
'''

    # The modules that only read (or, nim_image_scan, look at images).
    READ_ONLY = r'''
attributes:
  check_mode:
    support: full
    description: Changes nothing, so it runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing to diff.
'''
