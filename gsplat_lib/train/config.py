"""TrainConfig: every option of a training run, its default and its help text.

The same dataclass backs the Python API (``Trainer(TrainConfig(...))``) and the command line
(``gsplat-train``): :func:`add_arguments` turns each field into a ``--flag`` whose help text
is the field's ``help`` metadata, so the two never drift apart.

Schedules scale with the run length. The 2DGS recipe is written for 30 000 steps; with
``r = iterations / 30000`` an unset (``None``) schedule option becomes:

==========================  ==================  =====================  =================
option                      2DGS (30k steps)    here                   1500 steps
==========================  ==================  =====================  =================
``densify_start``           500                 ~1.7 % of the run      25
``densify_stop``            15 000              50 % of the run        750
``densify_every``           100                 max(100 r, 100), or    100
                                                less to fit two
                                                densifications
``reset_every``             3 000               max(10 % of the run,   300
                                                3 x densify_every),
                                                a multiple of
                                                ``densify_every``
``normal_start``            7 000               ~23 % of the run       350
``distortion_start``        3 000               10 % of the run        150
``sh_degree_interval``      1 000               ~3.3 % of the run      50
==========================  ==================  =====================  =================

Two intervals keep their 2DGS length in steps instead of shrinking with the run, because
what they wait for is counted in optimiser steps: ``densify_every`` stays >= 100 (new
surfels need that long to settle before they are judged again, and after an opacity reset to
0.01 a surfel needs tens of Adam steps to climb back over the prune threshold 0.05; a
shorter interval prunes nearly everything), and ``reset_every`` stays >= 3 densification
intervals. Short runs (below ~400 steps) shorten ``densify_every`` so that two
densifications still happen before ``densify_stop``. The reset interval is a multiple of ``densify_every``, so every reset is followed
by a full densification interval, as in 2DGS (resets at 3000, 6000, ..., densifications
100 steps later). Densification and resets happen only before ``densify_stop``.
Learning rates are those of 2DGS; the position rate decays over the whole run.

Options that change results form the run's fingerprint (:meth:`TrainConfig.fingerprint`);
the others (:data:`NON_RESULT_FIELDS`: output place, ``--force``, display, checkpoint
cadence, threads, device, CUDA's determinism) may differ between an interrupted run and its
resumption.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Dict, Optional, Tuple

import torch

__all__ = ["TrainConfig", "Schedule", "NON_RESULT_FIELDS", "add_arguments", "config_from_args"]

#: The number of steps the 2DGS recipe's step numbers refer to.
RECIPE_ITERATIONS = 30_000


def _option(default, help_text: str, **extra):
    return field(default=default, metadata={"help": help_text, **extra})


def _is_bool(spec) -> bool:
    """Whether a TrainConfig field is a bool (annotations are strings under postponed evaluation)."""
    return spec.type in ("bool", bool)


# Float options: the values that mean something (a negative rate, a NaN threshold or an
# opacity cut of 1 would train garbage or prune everything without saying why). A range is
# (what the error says, its test).
_POSITIVE = ("> 0", lambda x: x > 0)
_NON_NEGATIVE = (">= 0", lambda x: x >= 0)
_UNIT = ("in [0, 1]", lambda x: 0 <= x <= 1)
_OPEN_UNIT = ("in (0, 1)", lambda x: 0 < x < 1)
_BELOW_ONE = ("in [0, 1)", lambda x: 0 <= x < 1)
_NUMBER_RANGES = {
    "init_opacity": _OPEN_UNIT,
    "lambda_dssim": _UNIT,
    "lambda_normal": _NON_NEGATIVE,
    "lambda_distortion": _NON_NEGATIVE,
    "depth_ratio": _UNIT,
    "grad_threshold": _NON_NEGATIVE,
    "percent_dense": _NON_NEGATIVE,
    "prune_opacity": _BELOW_ONE,
    "prune_world_size": _POSITIVE,
    "prune_screen_size": _POSITIVE,
    "lr_means_init": _POSITIVE,
    "lr_means_final": _POSITIVE,
    "lr_sh_dc": _NON_NEGATIVE,
    "lr_sh_rest": _NON_NEGATIVE,
    "lr_opacity": _NON_NEGATIVE,
    "lr_scales": _NON_NEGATIVE,
    "lr_quats": _NON_NEGATIVE,
    "near": _POSITIVE,
    "far": _POSITIVE,
    "lr_environment": _POSITIVE,
    "noise_lr": _NON_NEGATIVE,
    "opacity_reg": _NON_NEGATIVE,
    "scale_reg": _NON_NEGATIVE,
    "prune_faint_opacity": _NON_NEGATIVE,
    "lr_appearance": _NON_NEGATIVE,
    "lambda_appearance": _NON_NEGATIVE,
}
#: Options whose None means: chosen from the data (train/scene_defaults.py) or by the strategy.
_CHOSEN_FROM_THE_DATA = {"lambda_distortion", "depth_ratio", "opacity_reg", "scale_reg", "prune_faint_opacity"}


@dataclass
class TrainConfig:
    """The settings of one training run (see the module docstring for the schedule scaling)."""

    output: str = _option("", "Output directory: settings, checkpoints, PLY files, renders, metrics.json.")
    data: Optional[str] = _option(
        None,
        "Dataset folder: COLMAP (images/ + sparse/0) or NeRF-synthetic (transforms_*.json). "
        "Default: the built-in synthetic scene, generated once into OUTPUT/data/.",
    )
    scene: str = _option(
        "synthetic",
        "Built-in scene trained without --data: 'synthetic' (objects over black, bounded) or 'capture' (an outdoor "
        "capture: sky, distant hills and buildings, views along a path, SfM-like points).",
        choices=("synthetic", "capture"),
    )
    iterations: int = _option(
        600, "Training steps (2DGS: 30000). Every unset schedule option scales with it. The default fits "
        "the built-in scene on a CPU in a few minutes."
    )
    batch_size: int = _option(
        1, "Cameras per step, rendered in one batched rasterizer call (same image size required)."
    )
    seed: int = _option(0, "Seed of the camera order, the initial rotations and the densification sampling.")
    downscale: int = _option(1, "Integer image downscale factor applied when loading the data.")
    test_every: int = _option(8, "Every N-th view (0, N, 2N, ...) is held out for evaluation; 0: no test views.")
    white_background: bool = _option(
        False, "Composite NeRF-synthetic alpha over white (default black) and render over the same colour."
    )
    sh_degree: int = _option(3, "Maximal spherical-harmonics degree (0 to 3).")
    sh_degree_interval: Optional[int] = _option(
        None, "Steps between SH degree increases (2DGS: 1000). Default: ~3.3%% of the run."
    )
    init_opacity: float = _option(0.1, "Opacity of the initial surfels.")
    init_rotations: str = _option(
        "planes",
        "Initial surfel rotations: 'planes' (each surfel in the plane of its point's 8 nearest neighbours) or "
        "'random' (2DGS).",
        choices=("planes", "random"),
    )
    lambda_dssim: float = _option(0.2, "Weight of D-SSIM in the colour loss: (1 - w) L1 + w (1 - SSIM).")
    lambda_normal: float = _option(0.05, "Weight of the normal-consistency loss (rendered vs depth normals).")
    normal_start: Optional[int] = _option(
        None, "First step of the normal-consistency loss (2DGS: 7000). Default: ~23%% of the run."
    )
    lambda_distortion: Optional[float] = _option(
        None, "Weight of the depth-distortion loss. Default: chosen from the data (printed at start)."
    )
    distortion_start: Optional[int] = _option(
        None, "First step of the distortion loss (2DGS: 3000). Default: 10%% of the run."
    )
    depth_ratio: Optional[float] = _option(
        None, "Surface depth = (1 - r) expected + r median depth. Default: chosen from the data (printed at start)."
    )
    background: str = _option(
        "auto",
        "What pixels see behind the surfels: 'constant' (black, or white with --white-background), 'environment' "
        "(a learned cube map at infinity, for skies), 'random' (a random colour per training step, so transparency "
        "cannot pass for the data). auto: chosen from the data (printed at start).",
        choices=("auto", "constant", "environment", "random"),
    )
    lr_environment: float = _option(0.002, "Learning rate of the environment map's texels (colour units).")
    strategy: str = _option(
        "default",
        "Densification strategy: 'default' (2DGS / 3DGS clone, split, prune, opacity reset) or 'mcmc' (3DGS-MCMC: "
        "relocate dead surfels to live ones, add surfels up to --cap-max, noise on positions).",
        choices=("default", "mcmc"),
    )
    cap_max: Optional[int] = _option(
        None, "MCMC: the most surfels the run may grow to. Default: 8 x the initial points."
    )
    noise_lr: float = _option(5e5, "MCMC: scale of the position noise (times the position learning rate).")
    opacity_reg: Optional[float] = _option(
        None, "Weight of mean(opacity) in the loss (3DGS-MCMC: 0.01). Default: 0.01 with --strategy mcmc, else 0."
    )
    scale_reg: Optional[float] = _option(
        None, "Weight of mean(scale) in the loss (3DGS-MCMC: 0.01). Default: 0.01 with --strategy mcmc, else 0."
    )
    densify_start: Optional[int] = _option(None, "Densification starts after this step (2DGS: 500). Default: ~1.7%% of the run.")
    densify_stop: Optional[int] = _option(None, "No densification from this step on (2DGS: 15000). Default: 50%%.")
    densify_every: Optional[int] = _option(
        None, "Steps between densifications (2DGS: 100). Default: max(100 * iterations / 30000, 100), less in runs too short for two."
    )
    reset_every: Optional[int] = _option(
        None, "Steps between opacity resets (2DGS: 3000). Default: 10%% of the run, at least 3 x --densify-every."
    )
    grad_threshold: float = _option(0.0002, "Mean screen-space gradient (NDC units) above which surfels densify.")
    percent_dense: float = _option(
        0.01, "Surfels larger than this fraction of the scene extent are split, smaller ones cloned."
    )
    prune_opacity: float = _option(0.05, "Surfels below this opacity are pruned at each densification.")
    prune_world_size: float = _option(0.1, "Surfels larger than this fraction of the scene extent are pruned.")
    prune_screen_size: float = _option(20.0, "Surfels with a screen radius above this (pixels) are pruned.")
    prune_faint_opacity: Optional[float] = _option(
        None, "Surfels fainter than this and larger on screen than --prune-screen-size are pruned at every "
        "densification, also before the first opacity reset (haze in front of the cameras); 0: off. auto: 0.1 "
        "without opacity resets (then 2DGS's screen-size prune never comes), else 0."
    )
    opacity_reset: str = _option(
        "auto",
        "Reset opacities every --reset-every steps (2DGS: on). 'off' also leaves out the world- and screen-size "
        "prunes, which start after the first reset. auto: off under an environment map (a reset hands distant "
        "geometry to the map), else on.",
        choices=("auto", "on", "off"),
    )
    prune_world_size_by: str = _option(
        "auto",
        "What --prune-world-size is a fraction of: 'extent' (the scene extent, as 2DGS) or 'distance' (the "
        "larger of the extent and the surfel's distance from the cameras' centre: an angular bound that keeps "
        "the large surfels of a far background). auto: chosen from the data (printed at start).",
        choices=("auto", "extent", "distance"),
    )
    lr_means_init: float = _option(1.6e-4, "Initial position learning rate, times the scene extent.")
    lr_means_final: float = _option(1.6e-6, "Final position learning rate (log-linear decay), times the extent.")
    lr_sh_dc: float = _option(0.0025, "Learning rate of the SH DC coefficients.")
    lr_sh_rest: float = _option(0.0025 / 20.0, "Learning rate of the higher SH coefficients.")
    lr_opacity: float = _option(0.05, "Learning rate of the opacity logits.")
    lr_scales: float = _option(0.005, "Learning rate of the log-scales.")
    lr_quats: float = _option(0.001, "Learning rate of the rotations.")
    near: float = _option(0.01, "Near plane of the rasterizer (also the distortion's depth range).")
    far: float = _option(1000.0, "Far plane of the rasterizer.")
    max_random_points: int = _option(
        100_000, "Random initial points for data without a point cloud (NeRF-synthetic)."
    )
    # ---- per-image appearance (gsplat_lib.train.appearance)
    appearance: bool = _option(
        False, "Learn an affine colour transform per training image (photo collections: exposure, white balance); "
        "held-out views are scored NeRF-W's way, appearance fitted on the left half, PSNR/SSIM on the right half."
    )
    lr_appearance: float = _option(0.005, "Learning rate of the per-image colour transforms (--appearance).")
    lambda_appearance: float = _option(0.01, "Weight of the regulariser pulling each image's transform to the identity.")
    # ---- validation during training (gsplat_lib.train.held_out_validation)
    eval_every: int = _option(
        0, "Score up to 8 held-out views every N steps (and after the last) into OUTPUT/metrics_history.jsonl and "
        "keep checkpoints/best.ckpt of the best PSNR; 0: off. Training results do not change."
    )
    export: str = _option("last", "Which model the PLY files and the mesh are made from: last, or best (needs --eval-every).")
    # ---- options that do not change results (NON_RESULT_FIELDS)
    checkpoint_every: Optional[int] = _option(
        None, "Save a checkpoint every N steps (and on SIGINT / SIGTERM). Default: 10%% of the run."
    )
    keep_checkpoints: int = _option(2, "How many of the latest step checkpoints to keep (older ones are deleted).")
    force: bool = _option(False, "Discard everything in OUTPUT (checkpoints, markers, settings) and start over.")
    progress: bool = _option(True, "Do not show a progress bar.", negative="--no-progress")
    device: str = _option("cpu", "Torch device: cpu, cuda or cuda:N.")
    deterministic: bool = _option(
        True,
        "On CUDA, sum each surfel's gradients across tiles atomically (in no fixed order): a gradient record per "
        "surfel instead of one per (tile, surfel) pair, so less GPU memory on large images, but runs are no longer "
        "bit-for-bit repeatable. The CPU is deterministic either way.",
        negative="--nondeterministic",
    )
    num_threads: int = _option(0, "CPU threads of torch (0: torch's default). Results do not depend on it.")
    mesh: bool = _option(
        True, "Skip the mesh stage (TSDF fusion of the rendered depth into OUTPUT/mesh/mesh.ply).", negative="--no-mesh"
    )
    mesh_voxel_size: Optional[float] = _option(
        None, "Voxel size of the mesh's TSDF volume. Default: from the cameras (gsplat-mesh --help)."
    )
    mesh_unbounded: bool = _option(False, "Mesh with 2DGS's contraction of space beyond the cameras' bounding sphere.")

    def __post_init__(self) -> None:
        positive = ("iterations", "batch_size", "downscale", "keep_checkpoints")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig: {name} must be an integer >= 1, got {value!r}")
        optional_steps = (
            "sh_degree_interval", "normal_start", "distortion_start", "densify_start", "densify_stop",
            "densify_every", "reset_every", "checkpoint_every", "cap_max",
        )
        for name in optional_steps:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"TrainConfig: {name} must be an integer >= 0 or None, got {value!r}")
        for name in ("sh_degree_interval", "densify_every", "reset_every", "checkpoint_every", "cap_max"):
            if getattr(self, name) == 0:
                raise ValueError(f"TrainConfig: {name} must be >= 1")
        for spec in fields(self):
            if _is_bool(spec) and not isinstance(getattr(self, spec.name), bool):
                raise ValueError(f"TrainConfig: {spec.name} must be a bool, got {getattr(self, spec.name)!r}")
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"TrainConfig: eval_every must be an integer >= 0, got {self.eval_every!r}")
        if self.export not in ("last", "best"):
            raise ValueError(f"TrainConfig: export must be 'last' or 'best', got {self.export!r}")
        if self.export == "best" and self.eval_every == 0:
            raise ValueError("TrainConfig: export 'best' needs eval_every > 0 (the best step comes from validation)")
        if self.test_every < 0:
            raise ValueError(f"TrainConfig: test_every must be >= 0, got {self.test_every}")
        if not 0 <= self.sh_degree <= 3:
            raise ValueError(f"TrainConfig: sh_degree must be in [0, 3], got {self.sh_degree}")
        for name, (allowed, holds) in _NUMBER_RANGES.items():
            value = getattr(self, name)
            if value is None and name in _CHOSEN_FROM_THE_DATA:
                continue
            usable = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not (usable and holds(value)):
                raise ValueError(f"TrainConfig: {name} must be a finite number {allowed}, got {value!r}")
        if self.mesh_voxel_size is not None and not (math.isfinite(self.mesh_voxel_size) and self.mesh_voxel_size > 0):
            raise ValueError(f"TrainConfig: mesh_voxel_size must be a finite number > 0, got {self.mesh_voxel_size!r}")
        for spec in fields(self):
            choices = spec.metadata.get("choices")
            if choices and getattr(self, spec.name) not in choices:
                raise ValueError(f"TrainConfig: {spec.name} must be one of {list(choices)}, got {getattr(self, spec.name)!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"TrainConfig: device {self.device!r} is not a torch device (cpu, cuda, cuda:N): {error}") from None
        if not 0.0 < self.near < self.far:
            raise ValueError(f"TrainConfig: need 0 < near < far, got near={self.near}, far={self.far}")

    # ------------------------------------------------------------------ schedules

    def schedule(self) -> "Schedule":
        """The step numbers of this run, unset ones scaled from the 2DGS recipe."""
        n = self.iterations
        ratio = n / RECIPE_ITERATIONS

        def scaled(value: Optional[int], recipe_step: int) -> int:
            return value if value is not None else max(1, round(recipe_step * ratio))

        densify_start = self.densify_start if self.densify_start is not None else max(1, round(500 * ratio))
        densify_stop = self.densify_stop if self.densify_stop is not None else round(0.5 * n)
        densify_every = self.densify_every
        if densify_every is None:
            # >= 100 steps, but at least two densifications in short runs.
            densify_every = max(1, min(max(100, round(100 * ratio)), (densify_stop - densify_start - 1) // 2))
        if self.reset_every is not None:
            reset_every = self.reset_every
        else:
            wanted = max(round(3000 * ratio), 3 * densify_every)
            reset_every = densify_every * round(wanted / densify_every)
        return Schedule(
            densify_start=densify_start,
            densify_stop=densify_stop,
            densify_every=densify_every,
            reset_every=reset_every,
            normal_start=scaled(self.normal_start, 7000),
            distortion_start=scaled(self.distortion_start, 3000),
            sh_degree_interval=scaled(self.sh_degree_interval, 1000),
            checkpoint_every=self.checkpoint_every if self.checkpoint_every is not None else max(1, round(0.1 * n)),
        )

    # ------------------------------------------------------------------ fingerprint

    def result_settings(self) -> Dict[str, object]:
        """The settings that change results, with every schedule resolved."""
        settings = {k: v for k, v in asdict(self).items() if k not in NON_RESULT_FIELDS}
        schedule = asdict(self.schedule())
        schedule.pop("checkpoint_every")
        settings["resolved_schedule"] = schedule
        return settings

    def fingerprint(self) -> str:
        """A short hash of :meth:`result_settings`: equal iff two runs compute the same thing."""
        text = json.dumps(self.result_settings(), sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Schedule:
    """Resolved step numbers of a run (steps count from 1)."""

    densify_start: int
    densify_stop: int
    densify_every: int
    reset_every: int
    normal_start: int
    distortion_start: int
    sh_degree_interval: int
    checkpoint_every: int


#: Fields that do not change what a run computes: they are left out of the fingerprint.
NON_RESULT_FIELDS: Tuple[str, ...] = (
    "output", "checkpoint_every", "keep_checkpoints", "force", "progress", "device", "deterministic", "num_threads",
    "mesh", "mesh_voxel_size", "mesh_unbounded",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`TrainConfig` field, its help text from the field's metadata."""
    for spec in fields(TrainConfig):
        flag = "--" + spec.name.replace("_", "-")
        help_text = spec.metadata["help"]
        if _is_bool(spec):
            negative = spec.metadata.get("negative")
            if negative:
                parser.add_argument(negative, dest=spec.name, action="store_false", help=help_text)
            else:
                parser.add_argument(flag, dest=spec.name, action="store_true", help=help_text)
            continue
        kind = {
            "int": int, "float": float, "str": str, "Optional[int]": int, "Optional[float]": float, "Optional[str]": str,
        }[spec.type]
        default = spec.default if spec.default is not MISSING else None
        shown = "auto" if default is None and spec.type in ("Optional[int]", "Optional[float]") else default
        choices = spec.metadata.get("choices")
        metavar = "PATH" if spec.name in ("data", "output") else ("N" if kind is int else "X" if kind is float else "NAME")
        parser.add_argument(
            flag, dest=spec.name, type=kind, default=default, metavar="{" + ",".join(choices) + "}" if choices else metavar,
            choices=choices, help=help_text if spec.name in ("data", "output") else f"{help_text} (default: {shown})",
            required=spec.name == "output",
        )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed :func:`add_arguments` flags."""
    return TrainConfig(**{spec.name: getattr(args, spec.name) for spec in fields(TrainConfig)})
