"""The default densification strategy: when and how surfels are cloned, split, pruned and reset.

A strategy is called once per training step, after ``loss.backward()`` and
``optimizer.step()``::

    result = model.render(viewmats, Ks, width, height)
    loss = ...; loss.backward()
    model.optimizer.step(); model.optimizer.zero_grad(set_to_none=True)
    strategy.step_post_backward(model, result, step)

It reads the rasterizer's per-(camera, surfel) statistics (``result.screen_grad.grad``,
``result.screen_absgrad.grad``, ``result.radii``) and changes the model in place through
:meth:`GaussianModel.apply_row_plan` and :meth:`GaussianModel.reset_opacity`. Its whole
state (accumulators and random generator) round-trips through ``state_dict`` /
``load_state_dict``, which checkpoints store, so a resumed run densifies exactly as an
uninterrupted one. Other strategies (e.g. MCMC) subclass :class:`Strategy` alike.

2DGS / 3DGS apply densification before ``optimizer.step()`` and so throw that step's
gradient away on densification steps; here the step is taken first and nothing is lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, NamedTuple, Optional, Tuple

import torch

from gsplat_lib.model import GaussianModel
from gsplat_lib.ops.densify import accumulate_screen_stats, densify_plan
from gsplat_lib.strategy_base import Strategy, check_int_fields, restore_generator, strategy_config, strategy_from_state


class DensifyReport(NamedTuple):
    """What one densification step did; pruned counts overlap when several rules hit a surfel."""

    num_before: int
    num_after: int
    num_cloned: int
    num_split: int
    num_pruned: int
    pruned_by_opacity: int
    pruned_by_world_size: int
    pruned_by_screen_size: int


def _finite_pairs(grad: torch.Tensor) -> torch.Tensor:
    """``grad`` [..., 2] with every pair holding NaN or Inf set to (0, 0)."""
    return torch.where(torch.isfinite(grad).all(-1, keepdim=True), grad, torch.zeros((), dtype=grad.dtype, device=grad.device))


def in_plane_axes(quats: torch.Tensor):
    """The first two columns (t_u, t_v) [K, 3] of the rotation of unit quaternions [K, 4] (w, x, y, z)."""
    w, x, y, z = quats.unbind(dim=1)
    t_u = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)], dim=1)
    t_v = torch.stack([2 * (x * y - w * z), 1 - 2 * (x * x + z * z), 2 * (y * z + w * x)], dim=1)
    return t_u, t_v


@dataclass
class DefaultStrategy(Strategy):
    """The adaptive density control of 2DGS (and 3DGS), with its defects fixed.

    Steps count from 1 like the 2DGS trainer. While ``step < refine_stop``:

    - every step: accumulate, per surfel, the norm of the screen-space gradient in NDC
      units (``gsplat_lib.ops.densify.accumulate_screen_stats``), its absolute variant, the
      number of (step, camera) pairs where it was visible, and its largest screen radius
      ``max_radii2D`` (pixels), over all cameras of the batched render; a camera whose
      gradient holds NaN or Inf adds 0 (the surfel still counts as seen);
    - when ``step > refine_start`` and ``step % refine_every == 0``: densify and prune, then
      reset the accumulators;
    - when ``step % reset_every == 0``: opacity = min(opacity, ``reset_opacity_value``) and
      its Adam moments zeroed.

    Densification judges every surfel as it is before the step, with the mean gradient
    ``g = grad_acc / count`` (or the absolute variant when ``use_absgrad``; then raise
    ``grad_threshold``, e.g. to 0.0008) and its largest scale ``s``:

    - prune when opacity < ``prune_opacity``, or, once the first opacity reset has happened
      (``step > reset_every``), when ``s > prune_world_size * scene_extent`` or
      ``max_radii2D > prune_screen_size`` (the statistic of the steps since the last
      densification; unlike 2DGS, it is not zeroed before the test, so this rule fires).
      With a ``cameras_center``, the world-size bound grows with the distance ``d`` from it:
      ``s > prune_world_size * max(scene_extent, d)``, a bound on the angle a surfel subtends
      from the cameras, so the large surfels of a far background (hills, buildings) stay.
      Before the first reset the screen-size rule prunes only surfels fainter than
      ``prune_faint_opacity`` (0: none): large faint surfels in front of a camera, a haze;
    - a pruned surfel is neither cloned nor split;
    - clone when ``g >= grad_threshold`` and ``s <= percent_dense * scene_extent``: the copy
      is appended, its Adam moments zero;
    - split when ``g >= grad_threshold`` and ``s > percent_dense * scene_extent``: the surfel
      is replaced by ``split_children`` children with scales / ``split_scale_divisor`` and
      centres ``mean + t_u s_u n_u + t_v s_v n_v`` with ``(n_u, n_v)`` standard normal: offsets
      in the surfel's own plane from its two scales (2DGS samples with a stale third scale).
      The normals come from a CPU ``torch.Generator`` seeded with ``seed``, whose state is
      part of :meth:`state_dict`.

    ``loss_is_batch_mean``: the trainer's loss averages over the C cameras of a batch, which
    scales each camera's gradient by 1/C; the statistic is multiplied back by C so the
    threshold means the same for any batch size (as gsplat does).
    """

    refine_start: int = 500
    refine_stop: int = 15_000
    refine_every: int = 100
    grad_threshold: float = 0.0002
    use_absgrad: bool = False
    reset_every: int = 3000
    reset_opacity_value: float = 0.01
    prune_opacity: float = 0.05
    prune_world_size: float = 0.1
    prune_screen_size: float = 20.0
    prune_faint_opacity: float = 0.0
    cameras_center: Optional[Tuple[float, float, float]] = None
    percent_dense: float = 0.01
    split_children: int = 2
    split_scale_divisor: float = 1.6
    loss_is_batch_mean: bool = True
    seed: int = 0

    grad_acc: Optional[torch.Tensor] = field(default=None, init=False, repr=False)
    absgrad_acc: Optional[torch.Tensor] = field(default=None, init=False, repr=False)
    count: Optional[torch.Tensor] = field(default=None, init=False, repr=False)
    max_radii2D: Optional[torch.Tensor] = field(default=None, init=False, repr=False)
    #: [M] int64 after a densification: the old row of each surfel. Per-surfel data kept outside
    #: the model follows with ``data[strategy.last_source]``, e.g. the scene ids of a packed
    #: multi-scene model. Not part of the state: read it right after the step.
    last_source: Optional[torch.Tensor] = field(default=None, init=False, repr=False)
    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_int_fields(self, ("refine_start", "refine_stop", "refine_every", "reset_every", "split_children", "seed"))
        if self.refine_every < 1 or self.reset_every < 1 or self.split_children < 1:
            raise ValueError("DefaultStrategy: refine_every, reset_every and split_children must be >= 1")
        if not 0.0 < self.reset_opacity_value < 1.0:
            raise ValueError(
                f"DefaultStrategy: reset_opacity_value must be in (0, 1), got {self.reset_opacity_value}"
            )
        if self.cameras_center is not None:
            center = tuple(float(value) for value in self.cameras_center)
            if len(center) != 3 or not all(math.isfinite(value) for value in center):
                raise ValueError(f"DefaultStrategy: cameras_center must be 3 finite numbers, got {self.cameras_center!r}")
            self.cameras_center = center
        if self.split_scale_divisor <= 0:
            raise ValueError(f"DefaultStrategy: split_scale_divisor must be > 0, got {self.split_scale_divisor}")
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)

    # ------------------------------------------------------------------ the per-step hook

    def step_post_backward(self, model: GaussianModel, result, step: int) -> Optional[DensifyReport]:
        """Accumulates this step's statistics and densifies / resets on schedule.

        Args:
            model: the model ``result`` was rendered from (same N).
            result: the rasterizer's result, after ``loss.backward()``.
            step: the current step, counting from 1.
        Returns the :class:`DensifyReport` on densification steps, else None.
        """
        if step >= self.refine_stop:
            return None
        self._accumulate(model, result)
        report = None
        if step > self.refine_start and step % self.refine_every == 0:
            report = self.densify_and_prune(model, prune_large=step > self.reset_every)
        if step % self.reset_every == 0:
            model.reset_opacity(self.reset_opacity_value)
        return report

    def _ensure_accumulators(self, model: GaussianModel) -> None:
        count = model.num_surfels
        if self.grad_acc is None:
            self._reset_accumulators(count, model.device)
        elif self.grad_acc.shape[0] != count or self.grad_acc.device != model.device:
            raise ValueError(
                f"DefaultStrategy: its statistics cover {self.grad_acc.shape[0]} surfels on "
                f"{self.grad_acc.device}, the model has {count} on {model.device}; the model was "
                "changed outside this strategy or belongs to another run"
            )

    def _reset_accumulators(self, count: int, device: torch.device) -> None:
        self.grad_acc = torch.zeros(count, dtype=torch.float32, device=device)
        self.absgrad_acc = torch.zeros(count, dtype=torch.float32, device=device)
        self.count = torch.zeros(count, dtype=torch.int32, device=device)
        self.max_radii2D = torch.zeros(count, dtype=torch.float32, device=device)

    def _accumulate(self, model: GaussianModel, result) -> None:
        self._ensure_accumulators(model)
        screen_grad = result.screen_grad.grad
        screen_absgrad = result.screen_absgrad.grad
        if screen_grad is None or screen_absgrad is None:
            raise ValueError(
                "DefaultStrategy.step_post_backward: result.screen_grad.grad is None; call "
                "loss.backward() on a loss of this render first"
            )
        # A non-finite gradient (a blown-up step) adds nothing: the surfel's mean would stay NaN,
        # and NaN >= threshold never densifies it again.
        screen_grad, screen_absgrad = _finite_pairs(screen_grad), _finite_pairs(screen_absgrad)
        num_cameras, height, width = result.colors.shape[:3]
        if self.loss_is_batch_mean and num_cameras > 1:
            screen_grad = screen_grad * num_cameras
            screen_absgrad = screen_absgrad * num_cameras
        accumulate_screen_stats(
            self.grad_acc,
            self.absgrad_acc,
            self.count,
            self.max_radii2D,
            screen_grad.contiguous(),
            screen_absgrad.contiguous(),
            result.radii.contiguous(),
            int(width),
            int(height),
            item_surfels=getattr(result, "item_surfels", None),  # packed items of a multi-scene render
        )

    # ------------------------------------------------------------------ densification

    @torch.no_grad()
    def densify_and_prune(self, model: GaussianModel, *, prune_large: bool) -> DensifyReport:
        """One clone / split / prune step from the accumulated statistics, then an accumulator reset.

        ``prune_large`` enables the world-size and screen-size rules.
        """
        self._ensure_accumulators(model)
        num_before = model.num_surfels
        accumulated = self.absgrad_acc if self.use_absgrad else self.grad_acc
        mean_grad = accumulated / self.count.clamp_min(1).to(torch.float32)
        max_scale = model.scales.max(dim=1).values
        extent = model.scene_extent

        by_opacity = model.opacities < self.prune_opacity
        large_on_screen = self.max_radii2D > self.prune_screen_size
        if prune_large:
            bound = torch.full_like(max_scale, extent)
            if self.cameras_center is not None:
                center = torch.tensor(self.cameras_center, dtype=torch.float32, device=model.device)
                bound = torch.maximum(bound, (model.means - center).norm(dim=1))
            by_world_size = max_scale > self.prune_world_size * bound
            by_screen_size = large_on_screen
        else:
            by_world_size = torch.zeros_like(by_opacity)
            # Faint and large on screen: haze in front of a camera, pruned from the start.
            by_screen_size = large_on_screen & (model.opacities < self.prune_faint_opacity)
        keep = ~(by_opacity | by_world_size | by_screen_size)
        high_grad = mean_grad >= self.grad_threshold
        small = max_scale <= self.percent_dense * extent
        clone = high_grad & small
        split = high_grad & ~small

        plan = densify_plan(keep, clone, split, n_split_children=self.split_children)
        child_rows = slice(plan.num_survivors + plan.num_clones, plan.source.shape[0])
        parents = plan.source[child_rows]
        parent_scales = model.scales[parents]
        t_u, t_v = in_plane_axes(model.quats[parents])
        normals = torch.randn(parents.shape[0], 2, generator=self.generator, dtype=torch.float32)
        offsets_uv = parent_scales * normals.to(model.device)
        num_rows = plan.source.shape[0]
        means = torch.empty(num_rows, 3, dtype=torch.float32, device=model.device)
        means[child_rows] = model.means[parents] + t_u * offsets_uv[:, :1] + t_v * offsets_uv[:, 1:]
        log_scales = torch.empty(num_rows, 2, dtype=torch.float32, device=model.device)
        log_scales[child_rows] = torch.log(parent_scales / self.split_scale_divisor)
        model.apply_row_plan(
            plan.source,
            plan.is_new,
            overrides={"means": means, "log_scales": log_scales},
            override_rows=plan.is_split_child,
        )
        self._reset_accumulators(model.num_surfels, model.device)
        self.last_source = plan.source
        return DensifyReport(
            num_before=num_before,
            num_after=model.num_surfels,
            num_cloned=plan.num_clones,
            num_split=int((keep & split).sum()),
            num_pruned=int((~keep).sum()),
            pruned_by_opacity=int(by_opacity.sum()),
            pruned_by_world_size=int(by_world_size.sum()),
            pruned_by_screen_size=int(by_screen_size.sum()),
        )

    # ------------------------------------------------------------------ persistence

    def check_model(self, model: GaussianModel) -> None:
        """ValueError when the statistics cover another number of surfels than ``model`` has."""
        if self.grad_acc is not None and self.grad_acc.shape[0] != model.num_surfels:
            raise ValueError(
                f"strategy statistics cover {self.grad_acc.shape[0]} surfels, the model has {model.num_surfels}"
            )

    def config(self) -> Dict[str, object]:
        """The constructor arguments (weights_only-safe values)."""
        return strategy_config(self)

    def state_dict(self) -> Dict[str, object]:
        """Config, accumulators (CPU copies; None before the first step) and generator state."""

        def cpu(value: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if value is None else value.detach().cpu().clone()

        return {
            "name": type(self).__name__,
            "config": self.config(),
            "grad_acc": cpu(self.grad_acc),
            "absgrad_acc": cpu(self.absgrad_acc),
            "count": cpu(self.count),
            "max_radii2D": cpu(self.max_radii2D),
            "generator_state": self.generator.get_state(),
        }

    @classmethod
    def from_state_dict(cls, state: Dict[str, object], device="cpu") -> "DefaultStrategy":
        """A strategy with the config, accumulators and generator state of :meth:`state_dict`."""
        return strategy_from_state(cls, state, device)

    def load_state_dict(self, state: Dict[str, object], device="cpu") -> None:
        """Restores accumulators and generator state (the config stays this object's)."""
        names = ("grad_acc", "absgrad_acc", "count", "max_radii2D")
        values = [state.get(name) for name in names]
        if all(value is None for value in values):
            self.grad_acc = self.absgrad_acc = self.count = self.max_radii2D = None
        else:
            dtypes = (torch.float32, torch.float32, torch.int32, torch.float32)
            length = None
            for name, value, dtype in zip(names, values, dtypes):
                if not isinstance(value, torch.Tensor) or value.dtype != dtype or value.dim() != 1:
                    raise ValueError(f"strategy state: {name} must be a 1-D {dtype} tensor")
                if length is None:
                    length = value.shape[0]
                elif value.shape[0] != length:
                    raise ValueError(f"strategy state: {name} has {value.shape[0]} entries, grad_acc {length}")
            self.grad_acc, self.absgrad_acc, self.count, self.max_radii2D = (
                value.to(device).clone() for value in values
            )
        restore_generator(self.generator, state)
