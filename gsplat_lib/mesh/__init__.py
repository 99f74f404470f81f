"""Meshes from surfels: TSDF fusion of rendered depth, marching cubes, clean-up, evaluation.

::

    from gsplat_lib.mesh import MeshSettings, mesh_from_model, save_mesh_ply
    mesh, info = mesh_from_model(model, viewmats, Ks, sizes, MeshSettings(voxel_size=0.01))
    save_mesh_ply("mesh.ply", mesh)

or step by step: :func:`render_depth_maps`, :class:`TSDFVolume` (``integrate``,
``extract_mesh``), :func:`keep_largest_components`.
"""

from gsplat_lib.mesh.depth import DepthBatch, camera_bounding_sphere, median_pixel_footprint, render_depth_maps
from gsplat_lib.mesh.evaluate import crop_to_ball, distance_to_mesh, evaluate_mesh, sample_mesh_surface
from gsplat_lib.mesh.extract import MeshSettings, ResolvedMeshSettings, mesh_from_model, resolve_mesh_settings
from gsplat_lib.mesh.mesh import Mesh, connected_components, keep_largest_components, load_mesh_ply, save_mesh_ply
from gsplat_lib.mesh.preview import mesh_preview, rasterize_mesh, shade_mesh
from gsplat_lib.mesh.tsdf import Contraction, TSDFVolume

__all__ = [
    "Mesh",
    "MeshSettings",
    "ResolvedMeshSettings",
    "Contraction",
    "TSDFVolume",
    "DepthBatch",
    "render_depth_maps",
    "camera_bounding_sphere",
    "median_pixel_footprint",
    "resolve_mesh_settings",
    "mesh_from_model",
    "connected_components",
    "keep_largest_components",
    "save_mesh_ply",
    "load_mesh_ply",
    "sample_mesh_surface",
    "distance_to_mesh",
    "crop_to_ball",
    "evaluate_mesh",
    "rasterize_mesh",
    "shade_mesh",
    "mesh_preview",
]
