"""``gsplat-train``: train a 2DGS model on a COLMAP / NeRF-synthetic folder or the built-in scene.

    gsplat-train --output runs/demo                      # the built-in scene, CPU, a few minutes
    gsplat-train --data path/to/colmap --output runs/x --iterations 7000 --device cuda

Re-running the same command resumes an interrupted run and skips finished stages.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

import torch

from gsplat_lib.train.config import add_arguments, config_from_args
from gsplat_lib.train.data_parallel import DataParallel
from gsplat_lib.train.run_dir import SettingsMismatchError
from gsplat_lib.train.trainer import Trainer, TrainingFailed, TrainingInterrupted
from gsplat_lib.viewer import TrainingViewer
from gsplat_lib.viewer.cli import wait_for_interrupt

_DESCRIPTION = """\
Train a 2D Gaussian splatting (surfel) model with the 2DGS recipe: L1 + D-SSIM, normal
consistency, optional depth distortion, SH degree and densification schedules scaled to
--iterations. Without --data it trains the built-in synthetic scene (generated into
OUTPUT/data/ on first use). The output directory receives metrics.json, point_cloud.ply
(2DGS layout), point_cloud_viewer.ply (opens in 3DGS viewers), checkpoints/, renders/ and
mesh/mesh.ply with mesh/preview.png (TSDF fusion of the rendered depth; --no-mesh skips it).

Runs are resumable: re-running the same command on the same --output resumes from the
latest complete checkpoint (one every --checkpoint-every steps and on Ctrl-C / SIGTERM)
and skips finished stages (train, evaluate, export, mesh). Other settings on an existing
output directory are refused; --force starts over."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gsplat-train",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    viewer = parser.add_argument_group("viewer (needs pip install 'gsplat_lib[viewer]')")
    viewer.add_argument(
        "--view", action="store_true",
        help="Serve a web viewer of the model as it trains (pause / resume on the page); it stays open "
        "after training until Ctrl-C. Results are the same bits as without it.",
    )
    viewer.add_argument("--view-port", type=int, default=8080, metavar="P", help="Viewer port (default 8080).")
    viewer.add_argument(
        "--view-host", default="127.0.0.1", metavar="HOST", help="Viewer address (default 127.0.0.1, this machine only)."
    )
    return parser


class _Terminated(BaseException):
    """SIGTERM outside the training loop (the loop saves a checkpoint and stops on its own)."""


def _raise_terminated(number, frame) -> None:
    raise _Terminated


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command line; returns the exit status (0, 1 on an error, 128 + signal when interrupted)."""
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        status = _run(args)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun rank ends without C++ static destructors: one of torch.distributed's
        # aborted now and then after Python had finished ("terminate called without an active
        # exception"), and torchrun then killed the other ranks. Everything is written by now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"gsplat-train: error: {error}", file=sys.stderr)
        return 2
    try:
        parallel = DataParallel.from_environment(torch.device(config.device))
    except (RuntimeError, ValueError) as error:  # a bad device, a process group that cannot start
        print(f"gsplat-train: error: {error}", file=sys.stderr)
        return 1
    monitor = None
    if args.view and parallel.is_main:
        try:
            monitor = TrainingViewer(host=args.view_host, port=args.view_port)
        except (ImportError, ValueError) as error:
            print(f"gsplat-train: error: --view: {error}", file=sys.stderr)
            parallel.close()
            return 1
    try:
        metrics = Trainer(config, monitor=monitor, parallel=parallel).run()
        if not parallel.is_main:
            return 0
        if monitor is not None:
            _print_results(config, metrics)
            _keep_viewer_open(monitor, config)
            return 0
    except TrainingInterrupted as stop:
        print(
            f"\ngsplat-train: {stop}.\nRe-run the same command to resume from step {stop.step}.",
            file=sys.stderr,
        )
        return 128 + stop.signal_number
    except (SettingsMismatchError, ValueError, TrainingFailed) as error:
        print(f"gsplat-train: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, a read-only or missing folder: files are written atomically
        print(f"gsplat-train: error: {_describe_os_error(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # outside the training loop (data loading, evaluation, export)
        print("\ngsplat-train: interrupted; re-run the same command to continue.", file=sys.stderr)
        return 128 + signal.SIGINT
    except _Terminated:
        print("\ngsplat-train: terminated; re-run the same command to continue.", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if monitor is not None:
            monitor.close()
        parallel.close()
    _print_results(config, metrics)
    return 0


# Errors of writing: files are replaced atomically, so what was saved before them is intact.
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def _describe_os_error(error: OSError) -> str:
    """One line: what failed, on which file, and for a failed write that the run can resume."""
    reason = error.strerror or str(error)
    line = f"{reason}: {error.filename}" if error.filename and error.strerror else reason
    if error.errno in _WRITE_ERRORS:
        line += " (the checkpoints saved before are intact: free space or fix the folder, then re-run the same command)"
    return line


def _print_results(config, metrics) -> None:
    output = Path(config.output)
    print(f"test PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} ({metrics['num_views']} {metrics['split']} views)")
    print(f"metrics: {output / 'metrics.json'}")
    print(f"renders: {output / metrics['renders']}")
    print(f"model:   {output / 'point_cloud.ply'} (3DGS viewers: {output / 'point_cloud_viewer.ply'})")
    if "mesh" in metrics:
        print(f"mesh:    {output / metrics['mesh']['mesh']} (preview: {output / metrics['mesh']['preview']})")
        quality = metrics["mesh"].get("evaluation")
        if quality:
            print(f"mesh Chamfer distance {quality['chamfer']:.4f} to the true surface (a pixel covers {quality['pixel_footprint']:.4f})")


def _keep_viewer_open(monitor, config) -> None:
    monitor.show_run(config.output, device=config.device)  # when every step had been trained before
    wait_for_interrupt(f"gsplat-train: the viewer stays open at {monitor.viewer.url}; Ctrl-C to close it")


if __name__ == "__main__":
    sys.exit(main())
