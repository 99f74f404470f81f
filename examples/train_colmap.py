"""Train 2DGS surfels on your own COLMAP reconstruction through the Python API.

    python examples/train_colmap.py path/to/scene runs/scene [--iterations 7000] [--device cuda]

``path/to/scene`` holds ``images/`` and ``sparse/0/`` (cameras, images, points3D; binary or
text; PINHOLE or SIMPLE_PINHOLE, i.e. undistorted with ``colmap image_undistorter``).
Re-running the same command resumes an interrupted run. The command-line equivalent is
``gsplat-train --data path/to/scene --output runs/scene``.
"""

import argparse

from gsplat_lib.train import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scene", help="COLMAP folder with images/ and sparse/0/")
    parser.add_argument("output", help="output directory")
    parser.add_argument("--iterations", type=int, default=7000)
    parser.add_argument("--downscale", type=int, default=2, help="image downscale factor (default 2)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    config = TrainConfig(
        data=args.scene,
        output=args.output,
        iterations=args.iterations,
        downscale=args.downscale,
        device=args.device,
    )
    metrics = Trainer(config).run()
    print(f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} on {metrics['num_views']} held-out views")
    print(f"model: {args.output}/point_cloud.ply, renders: {args.output}/{metrics['renders']}")


if __name__ == "__main__":
    main()
