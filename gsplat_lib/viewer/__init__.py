"""An interactive web viewer of trained models and of training in progress (``gsplat-view``,
``gsplat-train --view``).

The page is served by viser (an optional dependency: ``pip install 'gsplat_lib[viewer]'``,
imported only when a server starts);
frames are rendered in Python by gsplat_lib's rasterizer. Modules: ``scene`` (what is shown,
loaded from a run directory or a PLY), ``views`` (camera poses), ``render_modes`` (one frame),
``resolution`` and ``client_renderer`` (adaptive frames per browser), ``model_access`` (turns
with a training loop), ``server`` (the page), ``training`` (the trainer's viewer), ``mesh``.

::

    from gsplat_lib.viewer import ViewerServer, load_viewer_scene
    viewer = ViewerServer(load_viewer_scene("runs/demo"), port=8080)   # open viewer.url
"""

from gsplat_lib.viewer.dependency import INSTALL_HINT, import_viser
from gsplat_lib.viewer.mesh import TriangleMesh, read_mesh_ply
from gsplat_lib.viewer.model_access import ModelAccess
from gsplat_lib.viewer.render_modes import RENDER_MODES, render_view
from gsplat_lib.viewer.resolution import AdaptiveResolution
from gsplat_lib.viewer.scene import ViewerScene, load_viewer_scene
from gsplat_lib.viewer.server import MESH_MODE, ViewerServer
from gsplat_lib.viewer.training import TrainingViewer
from gsplat_lib.viewer.views import ViewCamera, camera_pose, view_from_pose

__all__ = [
    "INSTALL_HINT",
    "import_viser",
    "TriangleMesh",
    "read_mesh_ply",
    "ModelAccess",
    "RENDER_MODES",
    "render_view",
    "AdaptiveResolution",
    "ViewerScene",
    "load_viewer_scene",
    "ViewCamera",
    "camera_pose",
    "view_from_pose",
    "ViewerServer",
    "MESH_MODE",
    "TrainingViewer",
]

