"""The web viewer: a viser server that shows a :class:`ViewerScene` rendered by our rasterizer.

Each browser that opens the page gets its own :class:`ClientRenderer`, which renders that
browser's camera with :func:`render_view` and sends the frame as the page's background image.
viser draws the rest in the browser: the dataset's cameras as frusta, the mesh (render mode
"Mesh", when the run has one), the controls.
"""

from __future__ import annotations

import threading
from typing import Dict, List, Optional

import numpy as np

from gsplat_lib.viewer.client_renderer import ClientRenderer, FrameRequest, FrameStats
from gsplat_lib.viewer.dependency import import_viser
from gsplat_lib.viewer.model_access import ModelAccess
from gsplat_lib.viewer.render_modes import RENDER_MODES, render_view
from gsplat_lib.viewer.scene import ViewerScene, scene_up_direction
from gsplat_lib.viewer.views import camera_pose, view_from_pose

__all__ = ["ViewerServer", "MESH_MODE"]

#: The render mode that hides the surfels and shows the run's mesh.
MESH_MODE = "Mesh"

_TRAIN_FRUSTUM_COLOR = (40, 110, 220)
_TEST_FRUSTUM_COLOR = (235, 120, 20)


class ViewerServer:
    """Serves ``scene`` on ``http://host:port`` until :meth:`close`.

    Args:
        scene: what to show.
        host, port: where to listen (viser takes the next free port when ``port`` is taken;
            :attr:`url` says which).
        access: the turns a training loop and the frames take on the model (default: a private
            one, for a model that nothing else changes).
        max_resolution: the initial limit on the longer side of a frame, in pixels.
    """

    def __init__(
        self,
        scene: ViewerScene,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        access: Optional[ModelAccess] = None,
        max_resolution: int = 1920,
    ) -> None:
        viser = import_viser()
        self.scene = scene
        self.access = access or ModelAccess()
        self.server = viser.ViserServer(host=host, port=port, label=scene.title, verbose=False)
        self._renderers: Dict[int, ClientRenderer] = {}
        self._renderers_lock = threading.Lock()
        self._frame_condition = threading.Condition()
        self.frames_shown = 0
        self.last_frame: Optional[FrameStats] = None
        self._closed = False

        up = scene_up_direction(scene.cameras)
        self.server.scene.set_up_direction(tuple(float(value) for value in up))
        self._set_initial_camera(up)
        self._frusta = self._add_frusta()
        self._mesh = self._add_mesh()
        self._add_controls(max_resolution)
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    # ------------------------------------------------------------------ public

    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        host = self.server.get_host()
        shown = "localhost" if host in ("0.0.0.0", "127.0.0.1", "::") else host
        return f"http://{shown}:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode.value

    @property
    def num_clients(self) -> int:
        with self._renderers_lock:
            return len(self._renderers)

    def refresh(self) -> None:
        """Renders every browser's view again at full size (the model or a setting changed)."""
        with self._renderers_lock:
            renderers = list(self._renderers.values())
        for renderer in renderers:
            renderer.refresh()

    def idle(self) -> bool:
        """True when every browser has the full-size frame of its newest camera."""
        with self._renderers_lock:
            return all(renderer.idle for renderer in self._renderers.values())

    def wait_for_frames(self, count: int, timeout: float) -> bool:
        """Waits until ``count`` frames in all have been shown; False on timeout."""
        with self._frame_condition:
            return self._frame_condition.wait_for(lambda: self.frames_shown >= count, timeout)

    def render(self, request: FrameRequest, width: int, height: int) -> Optional[np.ndarray]:
        """The frame of a camera in the current mode ([H, W, 3] uint8); None in the mesh mode."""
        mode = self.mode
        if mode == MESH_MODE:
            return None
        view = view_from_pose(request.wxyz, request.position, request.fov_y, width, height)
        scene = self.scene
        with self.access.reading():
            return render_view(
                scene.model, view, mode,
                background=scene.background, near=scene.near, far=scene.far, depth_ratio=scene.depth_ratio,
                environment=scene.environment,
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._renderers_lock:
            renderers = list(self._renderers.values())
            self._renderers.clear()
        for renderer in renderers:
            renderer.stop()
        self.server.stop()

    def __enter__(self) -> "ViewerServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ scene

    def _set_initial_camera(self, up: np.ndarray) -> None:
        """Opens on an overview: from above and behind the first dataset camera (or from the side
        without cameras), looking at the median of the surfels, so the frusta frame the scene."""
        means = self.scene.model.means.detach().cpu().numpy().astype(np.float64)
        finite = means[np.isfinite(means).all(axis=1)]
        centre = np.median(finite, axis=0) if len(finite) else np.zeros(3)
        cameras = self.scene.cameras
        if cameras:
            offset = cameras[0].camera_center.astype(np.float64) - centre
            distance = float(np.median([np.linalg.norm(camera.camera_center - centre) for camera in cameras]))
        else:
            offset = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
            distance = 2.5 * float(np.percentile(np.linalg.norm(finite - centre, axis=1), 90)) if len(finite) else 1.0
        horizontal = offset - np.dot(offset, up) * up
        if np.linalg.norm(horizontal) < 1e-9:
            horizontal = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
        horizontal /= np.linalg.norm(horizontal)
        distance = max(distance, 1e-3)
        initial = self.server.initial_camera
        initial.position = centre + distance * (1.3 * horizontal + 0.9 * up)
        initial.look_at = centre
        initial.up = up
        if cameras:
            initial.fov = camera_pose(cameras[0])[2]

    def _add_frusta(self) -> List[object]:
        """The dataset's cameras (training blue, test orange); a click moves the view to one."""
        cameras = self.scene.cameras
        if not cameras:
            return []
        centres = np.stack([camera.camera_center.astype(np.float64) for camera in cameras])
        spread = float(np.median(np.linalg.norm(centres - centres.mean(axis=0), axis=1)))
        scale = 0.04 * spread if spread > 0 else 0.1
        frusta = []
        num_train = len(self.scene.train_cameras)
        for index, camera in enumerate(cameras):
            wxyz, position, fov_y, aspect = camera_pose(camera)
            is_train = index < num_train
            handle = self.server.scene.add_camera_frustum(
                f"/cameras/{'train' if is_train else 'test'}/{index:04d}",
                fov=fov_y, aspect=aspect, scale=scale, thickness=0.03 * scale,
                color=_TRAIN_FRUSTUM_COLOR if is_train else _TEST_FRUSTUM_COLOR,
                wxyz=wxyz, position=position,
            )
            handle.on_click(self._fly_to(wxyz, position))
            frusta.append(handle)
        return frusta

    @staticmethod
    def _fly_to(wxyz: np.ndarray, position: np.ndarray):
        def clicked(event) -> None:
            with event.client.atomic():
                event.client.camera.wxyz = wxyz
                event.client.camera.position = position

        return clicked

    def _add_mesh(self):
        mesh = self.scene.mesh
        if mesh is None:
            return None
        if mesh.colors is None:
            return self.server.scene.add_mesh_simple("/mesh", mesh.vertices, mesh.faces, side="double", visible=False)
        import trimesh  # a dependency of viser

        colored = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=mesh.colors, process=False)
        return self.server.scene.add_mesh_trimesh("/mesh", colored, visible=False)

    # ------------------------------------------------------------------ controls

    def _add_controls(self, max_resolution: int) -> None:
        gui = self.server.gui
        modes = RENDER_MODES + ((MESH_MODE,) if self._mesh is not None else ())
        self._mode = gui.add_dropdown("Render mode", modes, initial_value="RGB")
        self._max_resolution = gui.add_slider(
            "Max resolution", min=128, max=4096, step=64, initial_value=int(np.clip(max_resolution, 128, 4096)),
            hint="The longer side of a frame at rest, in pixels; moving frames are smaller.",
        )
        self._show_cameras = gui.add_checkbox("Show cameras", initial_value=bool(self._frusta))
        self._stats = gui.add_markdown(self._stats_text())

        @self._mode.on_update
        def _(_) -> None:
            self._mode_changed()

        @self._max_resolution.on_update
        def _(_) -> None:
            self.refresh()

        @self._show_cameras.on_update
        def _(_) -> None:
            for handle in self._frusta:
                handle.visible = self._show_cameras.value

    def _mode_changed(self) -> None:
        mesh_shown = self.mode == MESH_MODE
        if self._mesh is not None:
            self._mesh.visible = mesh_shown
        if mesh_shown:
            for client in self.server.get_clients().values():
                client.scene.set_background_image(None)
        self.refresh()

    def _stats_text(self) -> str:
        text = f"{self.scene.model.num_surfels:,} surfels"
        frame = self.last_frame
        if frame is not None:
            text += f" · frame {frame.width}×{frame.height} in {1000 * frame.seconds:.0f} ms"
        return text

    # ------------------------------------------------------------------ browsers

    def _connect(self, client) -> None:
        def read_camera() -> Optional[FrameRequest]:
            camera = client.camera
            if camera.update_timestamp == 0.0:
                return None
            return FrameRequest(
                np.array(camera.wxyz), np.array(camera.position), float(camera.fov),
                int(camera.image_width), int(camera.image_height),
            )

        def show(image: np.ndarray, moving: bool) -> None:
            if self.mode != MESH_MODE and not self._closed:
                client.scene.set_background_image(image, format="jpeg", jpeg_quality=60 if moving else 90)

        renderer = ClientRenderer(
            read_camera, self.render, show,
            max_size=lambda: int(self._max_resolution.value),
            on_frame=self._frame_shown,
            name=f"gsplat-view-client-{client.client_id}",
        )
        with self._renderers_lock:
            if self._closed:
                renderer.stop()
                return
            self._renderers[client.client_id] = renderer

        @client.camera.on_update
        def _(_) -> None:
            renderer.camera_moved()

        renderer.camera_moved()

    def _disconnect(self, client) -> None:
        with self._renderers_lock:
            renderer = self._renderers.pop(client.client_id, None)
        if renderer is not None:
            renderer.stop()

    def _frame_shown(self, stats: FrameStats) -> None:
        with self._frame_condition:
            self.frames_shown += 1
            self.last_frame = stats
            self._frame_condition.notify_all()
        if not stats.moving:
            self._stats.content = self._stats_text()

