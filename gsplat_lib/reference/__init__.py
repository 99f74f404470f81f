"""Pure-PyTorch implementations of the compiled ops: readable math and test oracles."""

from gsplat_lib.reference.rasterize import distortion_running_sums, rasterize_surfels_reference

__all__ = ["rasterize_surfels_reference", "distortion_running_sums"]
