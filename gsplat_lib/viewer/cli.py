"""``gsplat-view``: look at a trained model in the browser.

    gsplat-view runs/demo                     # a gsplat-train output directory
    gsplat-view model.ply --port 8081         # a surfel PLY file
    gsplat-view runs/demo --device cuda       # render on the GPU
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

import torch

from gsplat_lib.viewer.dependency import import_viser
from gsplat_lib.viewer.scene import load_viewer_scene
from gsplat_lib.viewer.server import ViewerServer

_DESCRIPTION = """\
Serve an interactive viewer of a trained 2DGS model: open the printed address in a browser
and move the camera with the mouse. The model is rendered by gsplat_lib's rasterizer on
--device (render modes RGB, depth, normals, alpha, and the run's mesh when RUN_DIR/mesh/mesh.ply
exists); frames get smaller while the camera moves and full-size when it rests. The dataset's
cameras are drawn as frusta (click one to look through it). Needs the viewer extra:
pip install 'gsplat_lib[viewer]'. Over SSH, forward the port: ssh -L 8080:localhost:8080 HOST."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gsplat-view", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path, help="A gsplat-train output directory, a .ckpt checkpoint or a .ply file.")
    parser.add_argument("--port", type=int, default=8080, help="Port to serve on (the next free one if taken; default 8080).")
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="Address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 serves the network).",
    )
    parser.add_argument("--device", default="cpu", help="Torch device that renders: cpu, cuda or cuda:N (default cpu).")
    parser.add_argument("--data", type=Path, default=None, help="Dataset whose cameras to draw (default: the run's).")
    parser.add_argument("--max-resolution", type=int, default=1920, help="Longer side of a frame at rest (default 1920).")
    return parser


def wait_for_interrupt(announcement: str = "") -> None:
    """Prints ``announcement`` (when given), then blocks until SIGINT or SIGTERM. The handlers
    are in place before it is printed: a Ctrl-C right after it stops cleanly."""
    stopped = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stopped.set()) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        if announcement:
            print(announcement, flush=True)
        while not stopped.wait(1.0):
            pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command line; returns the exit status (0 after Ctrl-C, 1 on an error)."""
    args = build_parser().parse_args(argv)
    try:
        import_viser()
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must be in [0, 65535], got {args.port}")
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: torch sees no CUDA device here; use --device cpu")
        scene = load_viewer_scene(args.model, device=device, data=args.data)
        viewer = ViewerServer(scene, host=args.host, port=args.port, max_resolution=args.max_resolution)
    except (ImportError, ValueError, OSError, RuntimeError) as error:
        print(f"gsplat-view: error: {error}", file=sys.stderr)
        return 1
    cameras = len(scene.cameras)
    print(
        f"gsplat-view: {scene.model.num_surfels:,} surfels, {cameras} cameras"
        f"{', a mesh' if scene.mesh is not None else ''}, rendering on {device}"
    )
    try:
        wait_for_interrupt(f"gsplat-view: open {viewer.url} in a browser (Ctrl-C to stop)")
    finally:
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
