"""``python -m gsplat_lib.train``: the same as ``gsplat-train``."""

import sys

from gsplat_lib.train.cli import main

sys.exit(main())
