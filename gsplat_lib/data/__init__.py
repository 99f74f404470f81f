"""Datasets: cameras and images from COLMAP and NeRF-synthetic folders, and
the built-in analytic synthetic scene.

Pure Python and numpy; nothing here imports the compiled extension.
"""

from .images import downscale_image, downscale_intrinsics, read_image, write_image
from .scene import Camera, SceneData, scene_extent
from .colmap import load_colmap, read_colmap_model, write_colmap, write_colmap_binary, write_colmap_text
from .loader import detect_format, load_scene
from .nerf_synthetic import load_nerf_synthetic, write_nerf_synthetic

__all__ = [
    "Camera",
    "SceneData",
    "load_scene",
    "detect_format",
    "load_colmap",
    "load_nerf_synthetic",
    "read_colmap_model",
    "write_colmap",
    "write_colmap_text",
    "write_colmap_binary",
    "write_nerf_synthetic",
    "make_synthetic_scene",
    "synthetic_scene_cameras",
    "synthetic_scene_points",
    "synthetic_scene_data",
    "read_image",
    "write_image",
    "downscale_image",
    "downscale_intrinsics",
    "scene_extent",
]

# The synthetic scene is imported on first use so that
# `python -m gsplat_lib.data.synthetic_scene` does not import the module
# twice (runpy warns when the package has already imported it).
_SYNTHETIC_SCENE_NAMES = (
    "make_synthetic_scene",
    "synthetic_scene_cameras",
    "synthetic_scene_points",
    "synthetic_scene_data",
)


def __getattr__(name):
    if name in _SYNTHETIC_SCENE_NAMES:
        from . import synthetic_scene

        return getattr(synthetic_scene, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
