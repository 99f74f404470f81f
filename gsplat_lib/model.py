"""GaussianModel: the trainable surfels, their activations and their Adam optimizer.

Pure Python over torch. The model owns the raw parameters (:mod:`gsplat_lib.param_schema`)
and the optimizer, renders through :func:`gsplat_lib.rasterize_surfels`, applies row plans
(densification) to the parameters and their Adam moments in one compiled pass, and saves /
loads exact-resume checkpoints (:mod:`gsplat_lib.checkpoint`) and PLY files
(:mod:`gsplat_lib.io.ply`).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from typing import Dict, Mapping, Optional, Union

import torch

from gsplat_lib import checkpoint
from gsplat_lib.cameras import radius_around_mean
from gsplat_lib.io.ply import load_ply, save_ply
from gsplat_lib.learning_rates import LearningRates, LogLinearSchedule
from gsplat_lib.ops.densify import remap_rows
from gsplat_lib.ops.knn import knn_dist2
from gsplat_lib.ops.rasterize import rasterize_surfels
from gsplat_lib.ops.sh import SH_C0
from gsplat_lib.optim.fused_adam import FusedAdam
from gsplat_lib.param_schema import PARAM_NAMES, check_params, sh_degree_of
from gsplat_lib.strategy_base import Strategy

PathLike = Union[str, os.PathLike]


def random_unit_quaternions(count: int, generator: torch.Generator) -> torch.Tensor:
    """[count, 4] (w, x, y, z) rotations uniform over SO(3): normalised 4D Gaussians.

    (2DGS draws ``torch.rand(N, 4)``, which only covers one orthant of the quaternions.)
    """
    quats = torch.randn(count, 4, generator=generator, dtype=torch.float32)
    return quats / quats.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _logit(probability: float) -> float:
    return math.log(probability / (1.0 - probability))


def fused_adam_by_default(device: torch.device) -> bool:
    """Whether a model on ``device`` steps with FusedAdam unless told otherwise: on the CPU,
    where it gives torch.optim.Adam's bits faster; not yet on CUDA, whose kernel has not run
    on a GPU (docs/design.md, "Optimizer decisions")."""
    return device.type == "cpu"


class GaussianModel:
    """Trainable surfels and their optimizer.

    Raw parameters (``model.params[name]``, each a ``torch.nn.Parameter``, float32):

    - ``means`` [N, 3]: centres in world space.
    - ``log_scales`` [N, 2]: natural logs of the two in-plane scales (activation: exp).
    - ``quats`` [N, 4]: rotations (w, x, y, z), unnormalised (activation: normalise).
    - ``opacity_logits`` [N]: a flat vector, like the rasterizer's ``opacities`` [N]
      (activation: sigmoid).
    - ``sh_dc`` [N, 1, 3] and ``sh_rest`` [N, K - 1, 3]: SH coefficients, K = (d + 1)^2 for
      the maximal degree d; colour = SH_C0 * dc + 0.5 for the zeroth order.

    The optimizer is Adam with one param group per parameter (its ``name`` key is the
    parameter's name) and ``eps`` = 1e-15: :class:`gsplat_lib.optim.FusedAdam` (one compiled
    call for all six tensors, bit-identical to ``torch.optim.Adam`` on CPU, the same state
    layout) when ``fused_adam`` is True, ``torch.optim.Adam`` when it is False; None (the
    default) picks FusedAdam on CPU and ``torch.optim.Adam`` on CUDA
    (:func:`fused_adam_by_default`). Call :meth:`update_learning_rate` once per step (the
    position rate follows a log-linear schedule times ``scene_extent``) and
    :meth:`maybe_increase_sh_degree` once per step (one more SH band every
    ``sh_degree_interval`` steps, up to the maximal degree).
    """

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        *,
        scene_extent: float,
        max_steps: int = 30_000,
        learning_rates: Optional[LearningRates] = None,
        active_sh_degree: int = 0,
        sh_degree_interval: int = 1000,
        fused_adam: Optional[bool] = None,
    ) -> None:
        if not (isinstance(scene_extent, (int, float)) and math.isfinite(scene_extent) and scene_extent > 0):
            raise ValueError(f"GaussianModel: scene_extent must be a finite number > 0, got {scene_extent!r}")
        if sh_degree_interval < 1:
            raise ValueError(f"GaussianModel: sh_degree_interval must be >= 1, got {sh_degree_interval}")
        if fused_adam is not None and not isinstance(fused_adam, bool):
            raise TypeError(
                f"GaussianModel: fused_adam must be True, False or None (the device's default), got {fused_adam!r}"
            )
        self.check_params(params)
        self.max_sh_degree = sh_degree_of(params["sh_rest"].shape[1] + 1)
        if not 0 <= active_sh_degree <= self.max_sh_degree:
            raise ValueError(
                f"GaussianModel: active_sh_degree must be in [0, {self.max_sh_degree}], "
                f"got {active_sh_degree}"
            )
        self.scene_extent = float(scene_extent)
        self.max_steps = int(max_steps)
        self.learning_rates = learning_rates if learning_rates is not None else LearningRates()
        self.active_sh_degree = int(active_sh_degree)
        self.sh_degree_interval = int(sh_degree_interval)
        self.fused_adam = fused_adam  # as asked (config() saves it): None resolves on each load's device
        self.means_schedule = LogLinearSchedule(
            self.learning_rates.means_init * self.scene_extent,
            self.learning_rates.means_final * self.scene_extent,
            self.max_steps,
        )
        self.params: Dict[str, torch.nn.Parameter] = {
            name: torch.nn.Parameter(params[name].detach().clone().contiguous()) for name in PARAM_NAMES
        }
        use_fused = fused_adam_by_default(self.device) if fused_adam is None else fused_adam
        adam = FusedAdam if use_fused else torch.optim.Adam
        self.optimizer = adam(
            [
                {"params": [self.params[name]], "lr": self._initial_lr(name), "name": name}
                for name in PARAM_NAMES
            ],
            lr=0.0,
            eps=1e-15,
        )

    #: Checks a dict of raw parameters (names, float32, shapes, one row count, one device).
    check_params = staticmethod(check_params)

    def _initial_lr(self, name: str) -> float:
        if name == "means":
            return self.means_schedule(0)
        return getattr(self.learning_rates, name)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_points(
        cls,
        xyz: torch.Tensor,
        rgb: torch.Tensor,
        *,
        scene_extent: float,
        sh_degree: int = 3,
        seed: int = 0,
        init_opacity: float = 0.1,
        max_steps: int = 30_000,
        learning_rates: Optional[LearningRates] = None,
        sh_degree_interval: int = 1000,
        fused_adam: Optional[bool] = None,
    ) -> "GaussianModel":
        """Surfels initialised from a point cloud, as 2DGS does.

        Args:
            xyz: [N, 3] float32 points (N >= 1); the model lives on their device.
            rgb: [N, 3] float32 colours in [0, 1]; they become the SH DC term
                ((rgb - 0.5) / SH_C0), higher bands start at zero.
            scene_extent: scene radius; scales the position learning rate and the
                densification thresholds.
            sh_degree: maximal SH degree; the active degree starts at 0.
            seed: seeds the torch.Generator that draws the random rotations.
            init_opacity: initial opacity of every surfel, in (0, 1).
        Both scales start at sqrt(mean squared distance to the 3 nearest other points)
        (``gsplat_lib.knn_dist2``).
        """
        if not isinstance(xyz, torch.Tensor) or xyz.dtype != torch.float32 or xyz.dim() != 2 or xyz.shape[1] != 3:
            raise ValueError(f"from_points: xyz must be a float32 tensor [N, 3], got {_describe(xyz)}")
        if xyz.shape[0] < 1:
            raise ValueError("from_points: xyz has no points")
        if not isinstance(rgb, torch.Tensor) or rgb.dtype != torch.float32 or tuple(rgb.shape) != tuple(xyz.shape):
            raise ValueError(f"from_points: rgb must be a float32 tensor [{xyz.shape[0]}, 3], got {_describe(rgb)}")
        if rgb.device != xyz.device:
            raise ValueError(f"from_points: rgb is on {rgb.device}, xyz on {xyz.device}")
        if not bool(torch.isfinite(xyz).all()) or not bool(torch.isfinite(rgb).all()):
            raise ValueError("from_points: xyz and rgb must be finite")
        if not 0.0 < init_opacity < 1.0:
            raise ValueError(f"from_points: init_opacity must be in (0, 1), got {init_opacity}")
        if not 0 <= sh_degree <= 4:
            raise ValueError(f"from_points: sh_degree must be in [0, 4], got {sh_degree}")
        count = xyz.shape[0]
        device = xyz.device
        generator = torch.Generator(device="cpu")
        generator.manual_seed(int(seed))
        log_scale = 0.5 * torch.log(knn_dist2(xyz.contiguous()))
        params = {
            "means": xyz.clone(),
            "log_scales": log_scale[:, None].repeat(1, 2),
            "quats": random_unit_quaternions(count, generator).to(device),
            "opacity_logits": torch.full((count,), _logit(init_opacity), dtype=torch.float32, device=device),
            "sh_dc": ((rgb - 0.5) / SH_C0)[:, None, :].contiguous(),
            "sh_rest": torch.zeros(count, (sh_degree + 1) ** 2 - 1, 3, dtype=torch.float32, device=device),
        }
        return cls(
            params,
            scene_extent=scene_extent,
            max_steps=max_steps,
            learning_rates=learning_rates,
            sh_degree_interval=sh_degree_interval,
            fused_adam=fused_adam,
        )

    @classmethod
    def from_ply(
        cls,
        path: PathLike,
        *,
        scene_extent: Optional[float] = None,
        device: Union[str, torch.device] = "cpu",
        max_steps: int = 30_000,
        learning_rates: Optional[LearningRates] = None,
        sh_degree_interval: int = 1000,
        active_sh_degree: Optional[int] = None,
        fused_adam: Optional[bool] = None,
    ) -> "GaussianModel":
        """A warm start from a PLY file (INRIA 2DGS or 3DGS layout, :func:`gsplat_lib.io.load_ply`).

        This is NOT a resume: a PLY holds only the surfels, so the optimizer starts fresh
        (zero moments, step 0), the densification statistics are empty and the RNG states
        are untouched. Use :meth:`load_checkpoint` to continue a run exactly.

        Args:
            path: the PLY file.
            scene_extent: scales the position learning rate and the densification
                thresholds; default: 1.1 times the largest distance of a surfel centre from
                their mean (what 3DGS computes from camera centres), enough to render.
            device: where the model lives.
            max_steps: length of the position learning-rate schedule.
            learning_rates: Adam learning rates (default: the 2DGS recipe's).
            sh_degree_interval: steps between SH band increases.
            active_sh_degree: defaults to the file's full degree.
            fused_adam: the optimizer (see the class); None: the device's default.
        """
        loaded = load_ply(path)
        if scene_extent is None:
            scene_extent = radius_around_mean(loaded["means"].double().numpy())
        params = {name: value.to(device) for name, value in loaded.items()}
        degree = sh_degree_of(params["sh_rest"].shape[1] + 1)
        return cls(
            params,
            scene_extent=scene_extent,
            max_steps=max_steps,
            learning_rates=learning_rates,
            active_sh_degree=degree if active_sh_degree is None else active_sh_degree,
            sh_degree_interval=sh_degree_interval,
            fused_adam=fused_adam,
        )

    # ------------------------------------------------------------------ activations

    @property
    def num_surfels(self) -> int:
        return self.params["means"].shape[0]

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    @property
    def means(self) -> torch.Tensor:
        """[N, 3]"""
        return self.params["means"]

    @property
    def scales(self) -> torch.Tensor:
        """[N, 2], positive: exp of the log-scales."""
        return torch.exp(self.params["log_scales"])

    @property
    def quats(self) -> torch.Tensor:
        """[N, 4] unit quaternions (w, x, y, z)."""
        return torch.nn.functional.normalize(self.params["quats"], dim=-1)

    @property
    def opacities(self) -> torch.Tensor:
        """[N] in (0, 1): sigmoid of the logits."""
        return torch.sigmoid(self.params["opacity_logits"])

    @property
    def sh(self) -> torch.Tensor:
        """[N, K, 3] all SH coefficients, DC first."""
        return torch.cat([self.params["sh_dc"], self.params["sh_rest"]], dim=1)

    # ------------------------------------------------------------------ schedules

    def update_learning_rate(self, step: int) -> float:
        """Sets the position learning rate of ``step`` (log-linear, times the extent); returns it."""
        lr = self.means_schedule(step)
        self.param_group("means")["lr"] = lr
        return lr

    def maybe_increase_sh_degree(self, step: int) -> bool:
        """One more SH band every ``sh_degree_interval`` steps (step > 0); True when it changed."""
        if step > 0 and step % self.sh_degree_interval == 0 and self.active_sh_degree < self.max_sh_degree:
            self.active_sh_degree += 1
            return True
        return False

    def param_group(self, name: str) -> dict:
        for group in self.optimizer.param_groups:
            if group["name"] == name:
                return group
        raise KeyError(f"no optimizer param group named {name!r}")

    # ------------------------------------------------------------------ rendering

    def render(
        self,
        viewmats: torch.Tensor,
        Ks: torch.Tensor,
        width: int,
        height: int,
        backgrounds: Optional[torch.Tensor] = None,
        **options,
    ):
        """Renders C cameras through :func:`gsplat_lib.rasterize_surfels` with the active SH degree.

        Args:
            viewmats: [C, 4, 4] world-to-camera (OpenCV).
            Ks: [C, 3, 3] intrinsics in pixels.
            width: image width in pixels.
            height: image height in pixels.
            backgrounds: [C, 3] optional.
            options: passed on (``near``, ``far``, ``scale_modifier``, ``deterministic``).
        Returns the rasterizer's result (``colors`` [C, H, W, 3], ``radii`` [C, N, 2],
        the ``screen_grad`` / ``screen_absgrad`` leaves the strategy reads, ...).
        """
        return rasterize_surfels(
            self.means,
            self.quats,
            self.scales,
            self.opacities,
            viewmats=viewmats,
            Ks=Ks,
            width=width,
            height=height,
            sh=self.sh,
            sh_degree=self.active_sh_degree,
            backgrounds=backgrounds,
            **options,
        )

    # ------------------------------------------------------------------ densification support

    def apply_row_plan(
        self,
        source: torch.Tensor,
        is_new: torch.Tensor,
        overrides: Optional[Mapping[str, torch.Tensor]] = None,
        override_rows: Optional[torch.Tensor] = None,
    ) -> None:
        """Rebuilds every parameter and its Adam moments from a row plan, in one compiled pass.

        Row r of every new tensor is row ``source[r]`` of the old one, except that the Adam
        moments (``exp_avg``, ``exp_avg_sq``) of rows with ``is_new[r]`` start at zero, and
        that for a parameter named in ``overrides`` the rows of ``override_rows`` take the
        given values (``overrides[name]`` has the new tensor's full shape [M, ...]; only those
        rows are read).

        Adam's ``step`` is one count per tensor in torch, so new rows share their tensor's
        count, as in 3DGS / 2DGS. With zero moments and a bias correction near 1, a new row's
        first update is about 3.2 lr sign(g) (a fresh Adam's is lr sign(g)). Gradients are
        dropped (the parameters are new tensors), so call this after ``optimizer.step()``.

        Args:
            source: [M] int64 row indices into the current N rows.
            is_new: [M] bool, rows whose moments start at zero.
            overrides: name -> [M, ...] float32 values.
            override_rows: [M] bool, the rows the overrides replace (default: ``is_new``).
        """
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(PARAM_NAMES))
        if unknown:
            raise ValueError(f"apply_row_plan: unknown parameters in overrides: {unknown}")
        tensors = []
        zero_new = []
        override_by_index = {}
        layout = []  # (name, index of the parameter, index of exp_avg or None, index of exp_avg_sq or None)
        for name in PARAM_NAMES:
            param = self.params[name]
            state = self.optimizer.state.get(param, {})
            if name in overrides:
                override_by_index[len(tensors)] = overrides[name]
            param_index = len(tensors)
            tensors.append(param.detach())
            zero_new.append(False)
            if "exp_avg" in state:
                tensors += [state["exp_avg"], state["exp_avg_sq"]]
                zero_new += [True, True]
                layout.append((name, param_index, param_index + 1, param_index + 2))
            else:
                layout.append((name, param_index, None, None))
        remapped = remap_rows(
            tensors,
            source,
            zero_new=zero_new,
            is_new=is_new,
            overrides=override_by_index,
            override_rows=override_rows,
        )
        for name, param_index, avg_index, avg_sq_index in layout:
            old_param = self.params[name]
            new_param = torch.nn.Parameter(remapped[param_index])
            state = self.optimizer.state.pop(old_param, {})
            if avg_index is not None:
                state = {**state, "exp_avg": remapped[avg_index], "exp_avg_sq": remapped[avg_sq_index]}
            group = self.param_group(name)
            group["params"][0] = new_param
            if state:
                self.optimizer.state[new_param] = state
            self.params[name] = new_param

    @torch.no_grad()
    def reset_opacity(self, max_opacity: float = 0.01) -> None:
        """opacity = min(opacity, max_opacity) (in logit space) and zero its Adam moments, as 2DGS does."""
        logits = self.params["opacity_logits"]
        logits.clamp_(max=_logit(max_opacity))
        state = self.optimizer.state.get(logits, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].zero_()

    # ------------------------------------------------------------------ persistence

    def config(self) -> Dict[str, object]:
        """The hyper-parameters that rebuild this model (weights_only-safe values)."""
        return {
            "scene_extent": self.scene_extent,
            "max_steps": self.max_steps,
            "learning_rates": asdict(self.learning_rates),
            "active_sh_degree": self.active_sh_degree,
            "sh_degree_interval": self.sh_degree_interval,
            "fused_adam": self.fused_adam,
        }

    def state_dict(self) -> Dict[str, object]:
        """Parameters (detached CPU copies), optimizer state and config."""
        return {
            "params": {name: self.params[name].detach().cpu().clone() for name in PARAM_NAMES},
            "optimizer": _optimizer_state_to_cpu(self.optimizer.state_dict()),
            "config": self.config(),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, object], device: Union[str, torch.device] = "cpu") -> "GaussianModel":
        """Inverse of :meth:`state_dict`: the model with its optimizer state, on ``device``.

        A saved state is what was trained: a non-finite parameter, moment or learning rate in
        it is corruption, refused with a ValueError naming it (a model made in memory may hold
        NaN surfels, which the rasterizer culls)."""
        config = dict(state["config"])
        for name, value in state["params"].items():
            if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
                raise ValueError(f"params[{name!r}] holds NaN or Inf")
        fused_adam = config.get("fused_adam")  # absent from checkpoints before FusedAdam: the default
        if fused_adam is not None and not isinstance(fused_adam, bool):
            raise ValueError(f"model config: fused_adam must be a bool or None, got {fused_adam!r}")
        model = cls(
            {name: value.to(device) for name, value in state["params"].items()},
            scene_extent=config["scene_extent"],
            max_steps=config["max_steps"],
            learning_rates=LearningRates.from_dict(config["learning_rates"]),
            active_sh_degree=config["active_sh_degree"],
            sh_degree_interval=config["sh_degree_interval"],
            fused_adam=fused_adam,
        )
        _check_optimizer_state(state["optimizer"], model)
        model.optimizer.load_state_dict(state["optimizer"])
        return model

    def save_checkpoint(
        self,
        path: PathLike,
        *,
        step: int,
        strategy: Optional[Strategy] = None,
        trainer_state: Optional[Mapping[str, object]] = None,
        config: Optional[Mapping[str, object]] = None,
    ) -> None:
        """Writes an exact-resume checkpoint atomically; see :func:`gsplat_lib.checkpoint.save_checkpoint`."""
        checkpoint.save_checkpoint(path, self, step=step, strategy=strategy, trainer_state=trainer_state,
                                   config=config)

    @classmethod
    def load_checkpoint(
        cls,
        path: PathLike,
        *,
        device: Union[str, torch.device] = "cpu",
        restore_rng: bool = True,
    ) -> checkpoint.Checkpoint:
        """Loads a checkpoint: the model, its strategy and the caller's state; see
        :func:`gsplat_lib.checkpoint.restore_checkpoint`."""
        return checkpoint.restore_checkpoint(path, cls, device=device, restore_rng=restore_rng)

    def save_ply(self, path: PathLike, *, three_scales: bool = False) -> None:
        """Writes the surfels as an INRIA-layout PLY; see :func:`gsplat_lib.io.save_ply`."""
        save_ply(path, {name: self.params[name].detach() for name in PARAM_NAMES}, three_scales=three_scales)


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} {list(value.shape)}"
    return type(value).__name__


def _optimizer_state_to_cpu(state_dict: dict) -> dict:
    return {
        "state": {
            index: {key: value.detach().cpu().clone() if isinstance(value, torch.Tensor) else value
                    for key, value in entry.items()}
            for index, entry in state_dict["state"].items()
        },
        "param_groups": state_dict["param_groups"],
    }


def _check_optimizer_state(state_dict: Mapping[str, object], model: GaussianModel) -> None:
    """Checks a saved Adam state against the model before torch copies it in (it checks little)."""
    groups = state_dict["param_groups"]
    names = [group.get("name") for group in groups]
    if names != list(PARAM_NAMES):
        raise ValueError(f"optimizer param groups are {names}, expected {list(PARAM_NAMES)}")
    for index, name in enumerate(PARAM_NAMES):
        group = groups[index]
        if group["params"] != [index]:
            raise ValueError(f"optimizer param group {name!r} refers to params {group['params']}")
        for key, low in (("lr", 0.0), ("eps", 0.0)):
            value = group.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= low):
                raise ValueError(f"optimizer param group {name!r}: {key} must be a finite number >= {low}, got {value!r}")
        betas = group.get("betas")
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)):
            raise ValueError(f"optimizer param group {name!r}: betas must be two numbers in [0, 1), got {betas!r}")
        entry = state_dict["state"].get(index)
        if entry is None:
            continue
        shape = model.params[name].shape
        for key in ("exp_avg", "exp_avg_sq"):
            moment = entry.get(key)
            if not isinstance(moment, torch.Tensor) or moment.shape != shape or moment.dtype != torch.float32:
                raise ValueError(
                    f"optimizer state of {name!r}: {key} must be float32 {list(shape)}, got {_describe(moment)}"
                )
            if not bool(torch.isfinite(moment).all()):
                raise ValueError(f"optimizer state of {name!r}: {key} holds NaN or Inf")
        if not isinstance(entry.get("step"), torch.Tensor):
            raise ValueError(f"optimizer state of {name!r}: step must be a tensor")
