"""Drop-in replacements for the CUDA extensions that 2DGS-based code imports.

- ``gsplat_lib.compat.diff_surfel_rasterization``: hbb1/diff-surfel-rasterization's Python API
  on gsplat_lib's rasterizer (CPU and CUDA).
"""
