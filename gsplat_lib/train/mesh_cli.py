"""``gsplat-mesh``: the mesh of a trained run, with settings of your choice.

    gsplat-mesh runs/demo                         # what gsplat-train's mesh stage does
    gsplat-mesh runs/demo --voxel-size 0.01 --unbounded

It writes RUN_DIR/mesh/mesh.ply and RUN_DIR/mesh/preview.png, like the stage, and prints where.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import List, Optional

from gsplat_lib.mesh import MeshSettings
from gsplat_lib.train.config import TrainConfig
from gsplat_lib.train.run_dir import read_json
from gsplat_lib.train.trainer import Trainer

_DESCRIPTION = """\
Fuse the surface depth of a trained run (rendered for every training camera) into a TSDF
volume of sparse 8^3 voxel blocks, extract the zero level set by marching cubes, keep the
largest connected components and write RUN_DIR/mesh/mesh.ply (vertices, faces, vertex
colours) with a shaded preview RUN_DIR/mesh/preview.png. The built-in scene is also evaluated
against its true geometry (accuracy, completeness, Chamfer distance, in metrics.json).

Defaults follow 2DGS, from the cameras' bounding sphere (the point nearest to every optical
axis, and the nearest camera's distance to it, the radius): max depth 2 radii, voxels of
max depth / 1024 but not finer than half a pixel's footprint at the centre, truncation 5
voxels. --unbounded contracts space beyond the sphere (2DGS's contraction), so distant
geometry gets coarser voxels instead of being cut off."""


def build_parser() -> argparse.ArgumentParser:
    defaults = MeshSettings()
    parser = argparse.ArgumentParser(
        prog="gsplat-mesh", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="Output directory of a finished gsplat-train run.")
    parser.add_argument("--voxel-size", type=float, default=None, metavar="X", help="Voxel size (world units). Default: from the cameras.")
    parser.add_argument("--truncation", type=float, default=None, metavar="X", help="Truncation distance (world units). Default: 5 voxels.")
    parser.add_argument("--max-depth", type=float, default=None, metavar="X", help="Ignore depth beyond this. Default: 2 radii (bounded).")
    parser.add_argument("--unbounded", action="store_true", help="Contract space beyond the cameras' bounding sphere (2DGS).")
    parser.add_argument(
        "--depth-ratio", type=float, default=None, metavar="R",
        help="Surface depth = (1 - R) expected + R median depth. Default: the run's --depth-ratio.",
    )
    parser.add_argument(
        "--alpha-threshold", type=float, default=defaults.alpha_threshold, metavar="A",
        help=f"Pixels rendered with less opacity are not fused (default: {defaults.alpha_threshold}).",
    )
    parser.add_argument(
        "--num-components", type=int, default=defaults.num_components, metavar="N",
        help=f"Keep the N largest connected components (2DGS num_cluster; default: {defaults.num_components}).",
    )
    parser.add_argument(
        "--min-component-faces", type=int, default=defaults.min_component_faces, metavar="N",
        help=f"Drop components with fewer faces (default: {defaults.min_component_faces}).",
    )
    parser.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, metavar="N",
        help=f"Cameras per rasterizer call (default: {defaults.batch_size}).",
    )
    parser.add_argument(
        "--memory-budget", type=float, default=defaults.memory_budget / 2**30, metavar="GIB",
        help=f"GiB the voxel blocks may take (default: {defaults.memory_budget / 2**30:g}).",
    )
    parser.add_argument("--device", default=None, help="Torch device (default: the run's).")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command line; returns the exit status (0, 1 on an error)."""
    args = build_parser().parse_args(argv)
    settings_file = read_json(args.run_dir / "settings.json")
    if not isinstance(settings_file, dict) or not isinstance(settings_file.get("config"), dict):
        print(f"gsplat-mesh: error: {args.run_dir} holds no readable settings.json: not a gsplat-train run", file=sys.stderr)
        return 1
    known = {spec.name for spec in fields(TrainConfig)}
    stored = {key: value for key, value in settings_file["config"].items() if key in known}
    stored.update(output=str(args.run_dir), force=False, progress=False)
    if args.device is not None:
        stored["device"] = args.device
    try:
        config = TrainConfig(**stored)
        trainer = Trainer(config)
        if trainer.run_dir.finished("train") is None:
            raise ValueError(f"{args.run_dir}: training has not finished (or belongs to other settings); run gsplat-train first")
        settings = MeshSettings(
            voxel_size=args.voxel_size,
            truncation=args.truncation,
            max_depth=args.max_depth,
            unbounded=args.unbounded,
            depth_ratio=trainer.scene_defaults.depth_ratio if args.depth_ratio is None else args.depth_ratio,
            alpha_threshold=args.alpha_threshold,
            num_components=args.num_components,
            min_component_faces=args.min_component_faces,
            batch_size=args.batch_size,
            memory_budget=int(args.memory_budget * 2**30),
        )
        results = trainer.mesh(settings=settings)
    except (ValueError, OSError) as error:  # OSError: a missing input, a full disk, a read-only folder
        print(f"gsplat-mesh: error: {error}", file=sys.stderr)
        return 1
    print(f"mesh:    {args.run_dir / results['mesh']} ({results['num_vertices']} vertices, {results['num_faces']} faces)")
    print(f"preview: {args.run_dir / results['preview']}")
    quality = results.get("evaluation")
    if quality:
        print(
            f"accuracy {quality['accuracy']:.4f}, completeness {quality['completeness']:.4f}, "
            f"Chamfer {quality['chamfer']:.4f} (a pixel covers {quality['pixel_footprint']:.4f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
