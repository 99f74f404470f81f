"""``python -m gsplat_lib.compat [--cpu] SCRIPT [ARGS...]``: see gsplat_lib/compat/runner.py."""

import sys

from gsplat_lib.compat.runner import main

sys.exit(main())
