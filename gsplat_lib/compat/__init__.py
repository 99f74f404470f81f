"""Drop-in replacements for the CUDA extensions that 2DGS-based code imports.

- ``gsplat_lib.compat.diff_surfel_rasterization``: hbb1/diff-surfel-rasterization's Python API
  on gsplat_lib's rasterizer (CPU and CUDA).
- ``gsplat_lib.compat.simple_knn._C.distCUDA2``: simple-knn's scale initialisation on gsplat_lib's KNN.
- ``install()`` makes ``diff_surfel_rasterization``, ``simple_knn`` and ``simple_knn._C``
  importable under those names; ``gsplat-compat [--cpu] SCRIPT [ARGS...]`` (or
  ``python -m gsplat_lib.compat``) runs an unmodified script with them, ``--cpu`` sending its
  CUDA requests to the CPU (``cuda_on_cpu``).
"""

from gsplat_lib.compat.aliases import UpstreamShadowedWarning, install
from gsplat_lib.compat.cpu_redirect import cuda_on_cpu

__all__ = ["install", "cuda_on_cpu", "UpstreamShadowedWarning"]
