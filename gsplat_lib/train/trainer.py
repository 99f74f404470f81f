"""The 2DGS training run: stages train, evaluate, export and mesh over a resumable run directory.

::

    from gsplat_lib.train import TrainConfig, Trainer
    metrics = Trainer(TrainConfig(data="my_colmap_scene", output="runs/scene")).run()

Before the first step the data decides what the config leaves on auto
(:mod:`gsplat_lib.train.scene_defaults`: bounded or unbounded, background, prune, loss
weights); the choice is logged. One step (steps count from 1, like the 2DGS trainer):

1. position learning rate of the step; one more SH band every ``sh_degree_interval`` steps;
2. the next ``batch_size`` training cameras of a seeded permutation (a new one each epoch),
   and their backgrounds (constant, random, or black under an environment map);
3. one batched render, composited over the environment map when there is one; loss =
   (1 - l) L1 + l D-SSIM, plus ``lambda_normal`` x normal consistency from ``normal_start``,
   ``lambda_distortion`` x distortion from ``distortion_start``, and MCMC's opacity and
   scale regularisers;
4. backward, Adam steps (surfels, environment), then the strategy: :class:`DefaultStrategy`
   (densify, prune, reset opacity) or :class:`MCMCStrategy` (relocate, grow, noise).

With ``--appearance`` each image's colour transform (:mod:`gsplat_lib.train.appearance`) maps the
composited render (surfels over the background or the environment map) before the loss, and
held-out views are scored by :mod:`gsplat_lib.train.appearance_eval`; ``--eval-every``
validates during training (:mod:`gsplat_lib.train.held_out_validation`).

Resumption: a checkpoint holds the model, optimizer, strategy, environment map, appearance,
validation's best, global and background RNG states and the camera order (generator state and
the rest of the current permutation), so a run resumed
from any checkpoint ends bit-identical (CPU) to one that never stopped. SIGINT and SIGTERM
set a flag; the loop finishes its step, saves a checkpoint and raises
:class:`TrainingInterrupted`. Each finished stage leaves a marker with its results
(:class:`RunDirectory`); a re-run skips finished stages and resumes the unfinished one.
"""

from __future__ import annotations

import random
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from tqdm import tqdm

from gsplat_lib.data import Camera, SceneData, detect_format, load_scene
from gsplat_lib.data.capture_scene import make_capture_scene
from gsplat_lib.data.synthetic_scene import make_synthetic_scene
from gsplat_lib.learning_rates import LearningRates
from gsplat_lib.mesh import MeshSettings
from gsplat_lib.model import GaussianModel
from gsplat_lib.ops.host_reads import read_now
from gsplat_lib.strategy import DefaultStrategy
from gsplat_lib.strategy_base import Strategy
from gsplat_lib.strategy_mcmc import MCMCStrategy
from gsplat_lib.train import appearance_eval, images, losses, metrics
from gsplat_lib.train.appearance import ImageAppearance, appearance_of
from gsplat_lib.train.config import Schedule, TrainConfig
from gsplat_lib.train.held_out_validation import BEST_CHECKPOINT, HISTORY_FILE, HeldOutValidation, validation_views
from gsplat_lib.train.data_parallel import DataParallel
from gsplat_lib.train.environment import EnvironmentMap, environment_of, face_resolution_for, render_with_environment
from gsplat_lib.train.mesh_stage import builtin_ground_truth, run_mesh_stage
from gsplat_lib.train.monitor import TrainingMonitor
from gsplat_lib.train.point_normals import plane_rotations
from gsplat_lib.train.run_dir import RunDirectory, read_json, write_json_atomically
from gsplat_lib.train.scene_defaults import SceneDefaults, resolve_scene_defaults

__all__ = ["Trainer", "TrainingInterrupted", "CameraOrder", "BUILTIN_SCENE_DIR"]

#: Where the built-in scene is generated inside the output directory.
BUILTIN_SCENE_DIR = "data"
#: Neighbours whose plane orients an initial surfel (--init-rotations planes).
PLANE_NEIGHBOURS = 8


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; re-running resumes it."""

    def __init__(self, step: int, checkpoint: Path, signal_number: int) -> None:
        self.step = step
        self.checkpoint = checkpoint
        self.signal_number = signal_number
        name = signal.Signals(signal_number).name
        super().__init__(f"{name} received: stopped after step {step}, checkpoint saved to {checkpoint}")


class TrainingFailed(RuntimeError):
    """The run cannot go on with its settings (every surfel was pruned, say); the message names
    the setting to change."""


class CameraOrder:
    """Training cameras in seeded random permutations, one per epoch, drawn ``batch`` at a time.

    Its state (generator state and the rest of the current permutation) is part of every
    checkpoint, so a resumed run sees the same cameras in the same order.
    """

    def __init__(self, num_cameras: int, seed: int) -> None:
        if num_cameras < 1:
            raise ValueError("no training cameras")
        self.num_cameras = num_cameras
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)
        self.pending: List[int] = []

    def next(self, count: int) -> List[int]:
        """The next ``count`` camera indices (crossing into a new permutation when needed)."""
        chosen = []
        while len(chosen) < count:
            if not self.pending:
                self.pending = torch.randperm(self.num_cameras, generator=self.generator).tolist()
            chosen.append(self.pending.pop(0))
        return chosen

    def state_dict(self) -> Dict[str, object]:
        return {"generator": self.generator.get_state(), "pending": list(self.pending), "count": self.num_cameras}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        if state.get("count") != self.num_cameras:
            raise ValueError(
                f"the checkpoint's camera order covers {state.get('count')} training cameras, the data has "
                f"{self.num_cameras}: the dataset changed since the run started"
            )
        self.generator.set_state(state["generator"].clone())
        self.pending = [int(index) for index in state["pending"]]


class _StopFlag:
    """SIGINT / SIGTERM handlers that only set a flag (a second SIGINT aborts at once)."""

    def __init__(self) -> None:
        self.signal_number: Optional[int] = None
        self._previous = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        if self.signal_number is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_number = number

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


class Trainer:
    """Runs (or resumes) the stages of a training run in ``config.output``.

    Args:
        config: the run's settings.
        scene: the data, already loaded (default: loaded from ``config.data``, or the
            built-in scene generated into ``OUTPUT/data/``).
        log: where progress messages go (default ``print``).
        monitor: an observer of the training loop, e.g. ``gsplat_lib.viewer.TrainingViewer``
            (default: none). It only reads the model, so results stay bit-identical.
    """

    def __init__(
        self,
        config: TrainConfig,
        scene: Optional[SceneData] = None,
        log: Callable[[str], None] = print,
        monitor: Optional[TrainingMonitor] = None,
        parallel: Optional[DataParallel] = None,
    ):
        if not config.output:
            raise ValueError("TrainConfig.output: an output directory is required")
        self.config = config
        self.schedule: Schedule = config.schedule()
        self.parallel = parallel or DataParallel.from_environment(torch.device(config.device))
        self.parallel.check_batch_size(config.batch_size)
        self.device = self.parallel.device
        self.run_dir = RunDirectory(config.output, config.fingerprint())
        main = self.parallel.is_main  # the other ranks train silently and write nothing
        self.log = log if main else (lambda message: None)
        self._scene = scene
        self.monitor = (monitor if main else None) or TrainingMonitor()
        self._scene_defaults: Optional[SceneDefaults] = None
        self.environment: Optional[EnvironmentMap] = None
        self.appearance: Optional[ImageAppearance] = None  # per-image colour transforms (--appearance)

    # ------------------------------------------------------------------ entry point

    def run(self) -> Dict[str, object]:
        """Train, evaluate and export, skipping finished stages; returns the metrics."""
        config = self.config
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        # Rank 0 alone claims the directory (and makes the built-in scene); the others wait.
        train_results = self.parallel.run_on_main(self._claim)
        model = None
        if train_results is None:
            model, train_results = self.train()
        else:
            self.log(f"stage train: already finished ({train_results['iterations']} steps), skipped")
        main = self.parallel.is_main
        self.parallel.finish()
        if not main:
            return train_results  # rank 0 evaluates, exports and meshes
        evaluation = self.run_dir.finished("evaluate")
        if evaluation is None:
            model = model or self._load_final_model(train_results)
            evaluation = self.evaluate(model, train_results)
        else:
            self.log("stage evaluate: already finished, skipped")
        if self.run_dir.finished("export") is None:
            model = model or self._load_final_model(train_results)
            self.export(self._exported_model(model))
        else:
            self.log("stage export: already finished, skipped")
        if config.mesh:
            settings = self.mesh_settings()
            meshed = self.run_dir.finished("mesh")
            if meshed is None or meshed.get("requested") != asdict(settings):
                model = model or self._load_final_model(train_results)
                meshed = self.mesh(self._exported_model(model), settings)
            else:
                self.log("stage mesh: already finished, skipped")
            evaluation = {**evaluation, "mesh": meshed}
        return evaluation

    def _claim(self) -> Optional[Dict[str, object]]:
        """Claims the output directory; returns the train stage's results when it is finished."""
        config = self.config
        if config.data is not None and self._scene is None:
            detect_format(config.data)  # a wrong --data fails before the directory is claimed
        if config.force:
            self.run_dir.clear()
        if self.run_dir.claim(config.result_settings(), config.to_dict()):
            self.log(f"resuming the run in {self.run_dir.root}")
        train_results = self.run_dir.finished("train")
        final = None if train_results is None else Path(train_results["final_checkpoint"])
        if final is not None and not (self.run_dir.root / final).is_file():
            self.log(f"the final checkpoint {final} is missing: training again")
            self.run_dir.unmark("train")
            train_results = None
        if train_results is None and self.parallel.active:
            self.scene  # the built-in scene is generated once, before the other ranks load it
        return train_results

    # ------------------------------------------------------------------ data

    @property
    def scene(self) -> SceneData:
        if self._scene is None:
            self._scene = self._load_scene()
        return self._scene

    @property
    def scene_defaults(self) -> SceneDefaults:
        """The data-dependent settings of this run (logged once, when first resolved)."""
        if self._scene_defaults is None:
            self._scene_defaults = resolve_scene_defaults(self.config, self.scene)
            self.log(self._scene_defaults.describe())
        return self._scene_defaults

    def _load_scene(self) -> SceneData:
        config = self.config
        background = (1.0, 1.0, 1.0) if config.white_background else (0.0, 0.0, 0.0)
        if config.data is None:
            path = ensure_builtin_scene(self.run_dir.root / BUILTIN_SCENE_DIR, self.log, config.scene)
        else:
            path = Path(config.data)
        return load_scene(
            path,
            downscale=config.downscale,
            test_every=config.test_every,
            background=background,
            num_random_points=config.max_random_points,
            seed=config.seed,
        )

    def _camera_tensors(self, cameras: List[Camera]):
        viewmats = torch.from_numpy(np.stack([camera.viewmat for camera in cameras])).to(self.device)
        Ks = torch.from_numpy(np.stack([camera.K for camera in cameras])).to(self.device)
        return viewmats, Ks

    # ------------------------------------------------------------------ stage: train

    def _new_run(self):
        config, scene, defaults = self.config, self.scene, self.scene_defaults
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        random.seed(config.seed)
        if len(scene.points) == 0:
            raise ValueError("the dataset has no initial points to start from")
        learning_rates = LearningRates(
            means_init=config.lr_means_init,
            means_final=config.lr_means_final,
            sh_dc=config.lr_sh_dc,
            sh_rest=config.lr_sh_rest,
            opacity_logits=config.lr_opacity,
            log_scales=config.lr_scales,
            quats=config.lr_quats,
        )
        model = GaussianModel.from_points(
            torch.from_numpy(scene.points).to(self.device),
            torch.from_numpy(scene.point_colors).to(self.device),
            scene_extent=float(scene.scene_extent),
            sh_degree=config.sh_degree,
            seed=config.seed,
            init_opacity=config.init_opacity,
            max_steps=config.iterations,
            learning_rates=learning_rates,
            sh_degree_interval=self.schedule.sh_degree_interval,
        )
        if config.init_rotations == "planes" and len(scene.points) > PLANE_NEIGHBOURS:
            with torch.no_grad():
                model.params["quats"].copy_(plane_rotations(model.means.detach(), PLANE_NEIGHBOURS))
        if config.strategy == "mcmc":
            strategy = MCMCStrategy(
                cap_max=config.cap_max if config.cap_max is not None else 8 * len(scene.points),
                refine_start=self.schedule.densify_start,
                # 3DGS-MCMC refines until 25k of 30k steps, 2DGS densifies until 15k.
                refine_stop=self.schedule.densify_stop if config.densify_stop is not None else round(config.iterations * 5 / 6),
                refine_every=self.schedule.densify_every,
                noise_lr=config.noise_lr,
                seed=config.seed,
            )
        else:
            strategy = DefaultStrategy(
                refine_start=self.schedule.densify_start,
                refine_stop=self.schedule.densify_stop,
                refine_every=self.schedule.densify_every,
                # Without resets the step of the first one never comes (nor the size prunes).
                reset_every=self.schedule.reset_every if defaults.opacity_reset else config.iterations + 1,
                grad_threshold=config.grad_threshold,
                prune_opacity=config.prune_opacity,
                prune_world_size=config.prune_world_size,
                prune_screen_size=config.prune_screen_size,
                prune_faint_opacity=defaults.prune_faint_opacity,
                cameras_center=defaults.cameras_center if defaults.prune_world_size_by == "distance" else None,
                percent_dense=config.percent_dense,
                seed=config.seed,
            )
        environment = None
        if self.scene_defaults.background == "environment":
            environment = EnvironmentMap(face_resolution_for(scene.train), lr=config.lr_environment, device=self.device)
        return model, strategy, environment

    def train(self):
        """Trains from scratch or from the latest complete checkpoint; returns (model, results)."""
        config, schedule, parallel = self.config, self.schedule, self.parallel
        scene = self.scene
        train_cameras = scene.train
        sizes = {(camera.width, camera.height) for camera in train_cameras}
        if config.batch_size > 1 and len(sizes) > 1:
            raise ValueError(
                f"--batch-size {config.batch_size} needs training images of one size; this dataset has "
                f"{len(sizes)} sizes ({sorted(sizes)[:3]}...): use --batch-size 1"
            )
        defaults = self.scene_defaults
        order = CameraOrder(len(train_cameras), config.seed)
        validation = self._validation() if config.eval_every > 0 and parallel.is_main else None
        # Random backgrounds come from their own generator (its state is checkpointed).
        background_generator = torch.Generator(device="cpu")
        background_generator.manual_seed(config.seed + 1)
        latest = self.run_dir.latest_checkpoint(device=self.device)
        if latest is None:
            model, strategy, self.environment = self._new_run()
            if config.appearance:
                self.appearance = ImageAppearance(
                    len(train_cameras), lr=config.lr_appearance, weight=config.lambda_appearance, device=self.device
                )
            first_step, seconds_before = 1, 0.0
            if validation is not None:
                validation.resume(None, 0)
            self.log(f"stage train: {config.iterations} steps, {model.num_surfels} initial surfels")
        else:
            path, checkpoint = latest
            model, strategy = checkpoint.model, checkpoint.strategy
            self.environment = environment_of(checkpoint.trainer_state, self.device)
            self.appearance = appearance_of(checkpoint.trainer_state, self.device)
            if validation is not None:
                validation.resume(checkpoint.trainer_state.get("validation"), checkpoint.step)
            order.load_state_dict(checkpoint.trainer_state["camera_order"])
            if "background_generator" in checkpoint.trainer_state:
                background_generator.set_state(checkpoint.trainer_state["background_generator"].clone())
            first_step = checkpoint.step + 1
            seconds_before = float(checkpoint.trainer_state["train_seconds"])
            self.log(f"stage train: resuming from {path} (step {checkpoint.step} of {config.iterations})")

        viewmats, Ks = self._camera_tensors(train_cameras)
        targets = [torch.from_numpy(camera.image).to(self.device) for camera in train_cameras]
        alphas = [None if camera.alpha is None else torch.from_numpy(camera.alpha).to(self.device) for camera in train_cameras]
        background = torch.from_numpy(np.asarray(scene.background, dtype=np.float32)).to(self.device)

        def batch_targets(batch: List[int]):
            """(targets [C, H, W, 3], render backgrounds [C, 3]) of this rank's cameras of a step."""
            if defaults.background != "random":
                return torch.stack([targets[index] for index in batch]), background.expand(len(batch), 3).contiguous()
            # Every rank draws the whole step's colours (one generator stream) and takes its share.
            drawn = torch.rand(len(batch) * parallel.world_size, 3, generator=background_generator)
            colors = _to_device(torch.stack(parallel.share(drawn)), self.device)
            # Images with alpha are composited over the new colour; without, the colour only
            # shows through transparent surfels.
            recomposited = [
                targets[index] if alphas[index] is None else targets[index] + (1.0 - alphas[index]) * (color - background)
                for index, color in zip(batch, colors)
            ]
            return torch.stack(recomposited), colors

        progress = _progress_bar(config, first_step) if parallel.is_main else None
        session_start = time.perf_counter()
        session_first = first_step

        def elapsed() -> float:
            return seconds_before + time.perf_counter() - session_start

        def save(step: int, path: Optional[Path] = None) -> Path:
            path = path or self.run_dir.checkpoint_path(step)
            if not parallel.is_main:
                return path
            path.parent.mkdir(parents=True, exist_ok=True)
            model.save_checkpoint(
                path,
                step=step,
                strategy=strategy,
                trainer_state={
                    "camera_order": order.state_dict(),
                    "train_seconds": elapsed(),
                    "background_generator": background_generator.get_state(),
                    "environment": None if self.environment is None else self.environment.state_dict(),
                    "scene_defaults": defaults.to_dict(),
                    "appearance": None if self.appearance is None else self.appearance.state_dict(),
                    "validation": None if validation is None else validation.state_dict(),
                },
                config={"fingerprint": self.run_dir.fingerprint, **config.result_settings()},
            )
            self.run_dir.prune_checkpoints(config.keep_checkpoints)
            return path

        smoothed_loss = None
        # The steps' (loss, MSE) on the device since the progress bar last showed them: read
        # together every 10 steps, so a step itself never waits for the GPU (docs/design.md).
        unread_stats: List[torch.Tensor] = []
        self.monitor.started(
            model, scene, config, first_step, environment=self.environment, depth_ratio=defaults.depth_ratio
        )
        try:
            with _StopFlag() as stop:
                for step in range(first_step, config.iterations + 1):
                    paused_at = time.perf_counter()
                    self.monitor.wait_while_paused(lambda: stop.signal_number is not None)
                    session_start += time.perf_counter() - paused_at  # paused time is not training time
                    batch = parallel.share(order.next(config.batch_size))
                    rows = _to_device(torch.tensor(batch, dtype=torch.int64), self.device)
                    with self.monitor.changing_model():
                        step_stats = self.train_step(
                            model, strategy, step, viewmats.index_select(0, rows), Ks.index_select(0, rows),
                            *batch_targets(batch), images=batch,
                        )
                    self.monitor.step_finished(step, model)
                    if validation is not None and (step % config.eval_every == 0 or step == config.iterations):
                        if validation.validate(step, model, self.appearance, self.environment):
                            save(step, self.run_dir.checkpoint_dir / BEST_CHECKPOINT)
                    if progress is not None:
                        unread_stats.append(step_stats)
                        progress.update(1)
                        if step % 10 == 0 or step == config.iterations:
                            for loss, mse in read_now(torch.stack(unread_stats)):
                                smoothed_loss = loss if smoothed_loss is None else 0.9 * smoothed_loss + 0.1 * loss
                            unread_stats.clear()
                            batch_psnr = metrics.psnr_of_mse(mse)
                            shown = {} if validation is None or validation.latest is None else {
                                "val_psnr": f"{validation.latest['psnr']:.2f}"
                            }
                            progress.set_postfix(
                                loss=f"{smoothed_loss:.4f}", psnr=f"{batch_psnr:.2f}", surfels=model.num_surfels, **shown
                            )
                    signal_number = parallel.any_signal(stop.signal_number)  # every rank stops together
                    if signal_number is not None:
                        path = save(step)
                        raise TrainingInterrupted(step, path, signal_number)
                    if step % schedule.checkpoint_every == 0 and step < config.iterations:
                        save(step)
        finally:
            if progress is not None:
                progress.close()
        self.monitor.finished(model)
        final = save(config.iterations)
        train_seconds = elapsed()
        session_steps = config.iterations - session_first + 1
        session_seconds = time.perf_counter() - session_start
        results = {
            "iterations": config.iterations,
            "final_checkpoint": str(final.relative_to(self.run_dir.root)),
            "num_surfels": model.num_surfels,
            "train_seconds": train_seconds,
            "steps_per_second": session_steps / session_seconds if session_seconds > 0 else None,
        }
        if validation is not None:
            results["best"] = validation.best
            results["best_checkpoint"] = str((self.run_dir.checkpoint_dir / BEST_CHECKPOINT).relative_to(self.run_dir.root))
        if parallel.is_main:
            self.run_dir.mark_finished("train", results)
        self.log(
            f"stage train: done, {model.num_surfels} surfels, {train_seconds:.1f} s "
            f"({results['steps_per_second'] or 0:.2f} steps/s)"
        )
        return model, results

    def train_step(
        self,
        model: GaussianModel,
        strategy: Strategy,
        step: int,
        viewmats: torch.Tensor,
        Ks: torch.Tensor,
        targets: torch.Tensor,
        backgrounds: torch.Tensor,
        images: Optional[List[int]] = None,
    ):
        """One optimisation step on a batch of C cameras; returns [2] float32 on the device: the
        loss and the batch's MSE (read them when needed: reading waits for the step).

        Args:
            viewmats: [C, 4, 4]; Ks: [C, 3, 3]; targets: [C, H, W, 3]; backgrounds: [C, 3], the
                colour behind the surfels (ignored with an environment map, which is behind them).
            images: the C training-image indices (needed with ``--appearance``).
        """
        config, schedule, defaults = self.config, self.schedule, self.scene_defaults
        environment = self.environment
        if model.num_surfels == 0:
            raise TrainingFailed(f"step {step}: every surfel was pruned; lower --prune-opacity or --grad-threshold")
        model.update_learning_rate(step)
        model.maybe_increase_sh_degree(step)
        height, width = targets.shape[1:3]
        result, colors = render_with_environment(
            model, viewmats, Ks, int(width), int(height), backgrounds[: len(viewmats)], environment,
            near=config.near, far=config.far, deterministic=config.deterministic,
        )
        appearance = self.appearance
        if appearance is not None:  # each image's colour transform of the composited render (train.appearance)
            colors = appearance.apply(colors, images)
        loss = (1.0 - config.lambda_dssim) * losses.l1_loss(colors, targets)
        if config.lambda_dssim > 0:
            loss = loss + config.lambda_dssim * losses.dssim_loss(colors, targets)
        if config.lambda_normal > 0 and step >= schedule.normal_start:
            depth = losses.surface_depth(result.expected_depths, result.median_depths, defaults.depth_ratio)
            loss = loss + config.lambda_normal * losses.normal_consistency_loss(result.normals, depth, result.alphas, Ks)
        if defaults.lambda_distortion > 0 and step >= schedule.distortion_start:
            loss = loss + defaults.lambda_distortion * losses.distortion_loss(result.distortions)
        mcmc = config.strategy == "mcmc"
        opacity_reg = config.opacity_reg if config.opacity_reg is not None else (0.01 if mcmc else 0.0)
        scale_reg = config.scale_reg if config.scale_reg is not None else (0.01 if mcmc else 0.0)
        if opacity_reg > 0:
            loss = loss + opacity_reg * model.opacities.mean()
        if scale_reg > 0:
            loss = loss + scale_reg * model.scales.mean()
        if appearance is not None:
            loss = loss + appearance.regularization(images)
        parallel = self.parallel
        if parallel.active:  # this rank's share of the batch mean; the ranks' gradients are summed
            (loss * (len(viewmats) / config.batch_size)).backward()
            trained = list(model.params.values())
            trained += [environment.texels] if environment is not None else []
            trained += appearance.parameters if appearance is not None else []
            parallel.sum_gradients(trained)
        else:
            loss.backward()
        model.optimizer.step()
        model.optimizer.zero_grad(set_to_none=True)
        if environment is not None:
            environment.step()
        if appearance is not None:
            appearance.step()
        strategy.step_post_backward(model, parallel.gather_statistics(result), step)
        return torch.stack((loss.detach(), metrics.mse(colors.detach(), targets)))

    def _validation(self) -> HeldOutValidation:
        cameras, _ = validation_views(self.scene)
        return HeldOutValidation(
            cameras, self.scene.background, self.run_dir.root / HISTORY_FILE,
            near=self.config.near, far=self.config.far, device=self.device,
        )

    def _exported_model(self, last: GaussianModel) -> GaussianModel:
        """The model the PLY files and the mesh are made from (--export): the last, or the best validated one."""
        if self.config.export != "best":
            return last
        path = self.run_dir.checkpoint_dir / BEST_CHECKPOINT
        self.log(f"exporting the best validated model ({path})")
        checkpoint = GaussianModel.load_checkpoint(path, device=self.device, restore_rng=False)
        self.environment = environment_of(checkpoint.trainer_state, self.device)  # its environment.png
        return checkpoint.model

    def _load_final_model(self, train_results: Dict[str, object]) -> GaussianModel:
        path = self.run_dir.root / train_results["final_checkpoint"]
        checkpoint = GaussianModel.load_checkpoint(path, device=self.device, restore_rng=False)
        self.environment = environment_of(checkpoint.trainer_state, self.device)
        self.appearance = appearance_of(checkpoint.trainer_state, self.device)
        return checkpoint.model

    # ------------------------------------------------------------------ stage: evaluate

    @torch.no_grad()
    def evaluate(self, model: GaussianModel, train_results: Dict[str, object]) -> Dict[str, object]:
        """Metrics and PNG renders of the held-out views (the training views when there are none)."""
        scene = self.scene
        cameras, split = (scene.test, "test") if scene.test else (scene.train, "train")
        self.log(f"stage evaluate: {len(cameras)} {split} views")
        render_dir = self.run_dir.root / "renders" / split
        gt_depths = [float(camera.depth.max()) for camera in cameras if camera.depth is not None]
        sky_depth = max(gt_depths) if gt_depths else 0.0
        per_view = []
        for camera in cameras:
            rendered = render_camera(
                model, camera, scene.background, near=self.config.near, far=self.config.far,
                depth_ratio=self.scene_defaults.depth_ratio, environment=self.environment,
            )
            target = torch.from_numpy(camera.image).to(self.device)
            entry = {
                "name": camera.name,
                "psnr": metrics.psnr(rendered["rgb"], target),
                "ssim": metrics.ssim_metric(rendered["rgb"], target),
            }
            if self.appearance is not None:  # NeRF-W's half-image protocol (appearance_eval)
                scores, rendered["rgb"] = appearance_eval.score_with_appearance(rendered["rgb"], target, self.appearance)
                entry.update(scores)
            if camera.depth is not None:
                gt_depth = torch.from_numpy(camera.depth).to(self.device)
                entry["depth"] = metrics.depth_errors(rendered["depth"], gt_depth)
                entry["fog"] = metrics.fog_counts(rendered["depth"], rendered["alpha"], gt_depth, sky_depth)
            if camera.normal is not None:
                entry["normal"] = metrics.normal_angle_errors(
                    rendered["normal"], torch.from_numpy(camera.normal).to(self.device)
                )
            write_view_images(render_dir, camera.name, rendered, camera.image)
            per_view.append(entry)
        results = {
            "split": split,
            **appearance_eval.summarize(per_view, self.appearance),
            **({"best": train_results["best"], "history": HISTORY_FILE} if "best" in train_results else {}),
            "psnr": _mean(view["psnr"] for view in per_view),
            "ssim": _mean(view["ssim"] for view in per_view),
            "depth_abs_rel": _mean(view["depth"]["abs_rel"] for view in per_view if view.get("depth")),
            "depth_rmse": _mean(view["depth"]["rmse"] for view in per_view if view.get("depth")),
            "normal_error_deg": _mean(view["normal"]["mean_deg"] for view in per_view if view.get("normal")),
            **_fog_fractions([view["fog"] for view in per_view if view.get("fog")]),
            "num_views": len(per_view),
            "num_surfels": model.num_surfels,
            "iterations": train_results["iterations"],
            "train_seconds": train_results["train_seconds"],
            "steps_per_second": train_results["steps_per_second"],
            "fingerprint": self.run_dir.fingerprint,
            "scene_defaults": self.scene_defaults.to_dict(),
            "renders": str(render_dir.relative_to(self.run_dir.root)),
            "per_view": per_view,
        }
        write_json_atomically(self.run_dir.root / "metrics.json", results)
        self.run_dir.mark_finished("evaluate", results)
        fog = "" if results["fog_fraction"] is None else f", fog {100 * results['fog_fraction']:.1f}% of surface pixels"
        if results["sky_fog_fraction"] is not None:
            fog += f", {100 * results['sky_fog_fraction']:.1f}% of sky pixels"
        self.log(f"stage evaluate: PSNR {results['psnr']:.2f} dB, SSIM {results['ssim']:.4f}{fog}")
        return results

    # ------------------------------------------------------------------ stage: export

    def export(self, model: GaussianModel) -> Dict[str, object]:
        """Writes ``point_cloud.ply`` (2DGS layout) and ``point_cloud_viewer.ply`` (3-scale, for 3DGS viewers)."""
        root = self.run_dir.root
        model.save_ply(root / "point_cloud.ply")
        model.save_ply(root / "point_cloud_viewer.ply", three_scales=True)
        results = {"ply": "point_cloud.ply", "viewer_ply": "point_cloud_viewer.ply", "num_surfels": model.num_surfels}
        if self.environment is not None:
            images.write_rgb(root / "environment.png", self.environment.to_image())
            results["environment"] = "environment.png"
        self.run_dir.mark_finished("export", results)
        self.log(f"stage export: wrote {root / 'point_cloud.ply'} and {root / 'point_cloud_viewer.ply'}")
        return results


    # ------------------------------------------------------------------ stage: mesh

    def mesh_settings(self) -> MeshSettings:
        """The mesh settings this run's configuration asks for (the rest from the cameras)."""
        config = self.config
        return MeshSettings(
            voxel_size=config.mesh_voxel_size, unbounded=config.mesh_unbounded,
            depth_ratio=self.scene_defaults.depth_ratio,
        )

    def mesh(self, model: Optional[GaussianModel] = None, settings: Optional[MeshSettings] = None) -> Dict[str, object]:
        """Fuses the trained model's depth into ``mesh/mesh.ply`` (see :mod:`gsplat_lib.train.mesh_stage`),
        adds the results to ``metrics.json`` and marks the stage finished; returns the results."""
        if model is None:
            train_results = self.run_dir.finished("train")
            if train_results is None:
                raise ValueError(f"{self.run_dir.root}: training has not finished; run gsplat-train first")
            model = self._exported_model(self._load_final_model(train_results))
        settings = settings or self.mesh_settings()
        self.log(f"stage mesh: {len(self.scene.train)} training views")
        results = run_mesh_stage(
            self.run_dir.root, model, self.scene, settings, near=self.config.near, far=self.config.far,
            ground_truth=builtin_ground_truth(self.config.scene) if self.config.data is None else None, log=self.log,
        )
        results["requested"] = asdict(settings)
        metrics_path = self.run_dir.root / "metrics.json"
        metrics_json = read_json(metrics_path)
        if isinstance(metrics_json, dict):
            write_json_atomically(metrics_path, {**metrics_json, "mesh": results})
        self.run_dir.mark_finished("mesh", results)
        return results


# ---------------------------------------------------------------------- helpers shared with gsplat-render


def ensure_builtin_scene(folder: Path, log: Callable[[str], None] = print, scene: str = "synthetic") -> Path:
    """Generates a built-in scene (``"synthetic"`` or ``"capture"``, COLMAP layout) into
    ``folder`` once; returns ``folder``.

    It is written into a temporary sibling and renamed into place, so a run killed while
    writing it leaves no half scene behind.
    """
    makers = {"synthetic": make_synthetic_scene, "capture": make_capture_scene}
    if scene not in makers:
        raise ValueError(f"scene must be one of {sorted(makers)}, got {scene!r}")
    folder = Path(folder)
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    log(f"generating the built-in {scene} scene into {folder}")
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        makers[scene](temporary)
        temporary.rename(folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return folder


@torch.no_grad()
def render_camera(
    model: GaussianModel,
    camera: Camera,
    background,
    *,
    near: float = 0.01,
    far: float = 1000.0,
    depth_ratio: float = 0.0,
    environment: Optional[EnvironmentMap] = None,
) -> Dict[str, torch.Tensor]:
    """Renders one camera: ``rgb`` [H, W, 3], ``depth`` [H, W, 1] (surface depth, see
    :func:`losses.surface_depth`), ``alpha`` [H, W, 1] and world ``normal`` [H, W, 3], on the
    model's device. ``background`` is an RGB triple; an ``environment`` replaces it."""
    device = model.device
    viewmat = torch.from_numpy(camera.viewmat).to(device)[None]
    K = torch.from_numpy(camera.K).to(device)[None]
    background = torch.as_tensor(np.asarray(background, dtype=np.float32), device=device)[None]
    result, colors = render_with_environment(
        model, viewmat, K, camera.width, camera.height, background, environment, near=near, far=far
    )
    depth = losses.surface_depth(result.expected_depths, result.median_depths, depth_ratio)
    return {"rgb": colors[0], "depth": depth[0], "alpha": result.alphas[0], "normal": result.normals_world[0]}


def write_view_images(folder: Path, name: str, rendered: Dict[str, torch.Tensor], target: Optional[np.ndarray]) -> None:
    """``<stem>_rgb.png``, ``_depth.png``, ``_normal.png`` (and ``_gt.png`` when ``target`` is given)."""
    stem = Path(name).stem
    alpha = rendered["alpha"].cpu().numpy()
    images.write_rgb(folder / f"{stem}_rgb.png", rendered["rgb"].cpu().numpy())
    images.write_depth(folder / f"{stem}_depth.png", rendered["depth"].cpu().numpy(), alpha)
    images.write_normals(folder / f"{stem}_normal.png", rendered["normal"].cpu().numpy(), alpha)
    if target is not None:
        images.write_rgb(folder / f"{stem}_gt.png", target)


def _progress_bar(config: TrainConfig, first_step: int):
    if not config.progress:
        return None
    return tqdm(total=config.iterations, initial=first_step - 1, desc="train", unit="step", dynamic_ncols=True)


def _fog_fractions(counts: List[Dict[str, int]]) -> Dict[str, Optional[float]]:
    """``fog_fraction`` and ``hole_fraction`` (of the held-out pixels that see geometry) and
    ``sky_fog_fraction`` (of those that see none), pooled over views
    (:func:`metrics.fog_counts`); None without them."""

    def fraction(flagged: str, total: str) -> Optional[float]:
        pixels = sum(view[total] for view in counts)
        return sum(view[flagged] for view in counts) / pixels if pixels else None

    return {
        "fog_fraction": fraction("surface_fog", "surface_pixels"),
        "hole_fraction": fraction("surface_holes", "surface_pixels"),
        "sky_fog_fraction": fraction("sky_fog", "sky_pixels"),
    }


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor copied to ``device`` without the host waiting for the stream (pinned memory,
    asynchronous copy; a plain copy from pageable memory synchronises)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _mean(values) -> Optional[float]:
    values = [float(value) for value in values]
    return sum(values) / len(values) if values else None
