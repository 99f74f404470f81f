"""File formats: PLY files of surfels in the INRIA 2DGS / 3DGS layout."""

from gsplat_lib.io.ply import FLAT_SCALE, load_ply, save_ply

__all__ = ["FLAT_SCALE", "load_ply", "save_ply"]
