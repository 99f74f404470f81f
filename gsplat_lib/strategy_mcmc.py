"""MCMCStrategy: 3DGS-MCMC's density control (Kheradmand et al., "3D Gaussian Splatting as
Markov Chain Monte Carlo", NeurIPS 2024), for surfels.

Instead of cloning and splitting where gradients are large and pruning what is faint, the
surfels are treated as samples of a distribution that training moves around:

- every ``refine_every`` steps in ``(refine_start, refine_stop)``: each *dead* surfel
  (opacity <= ``min_opacity``) is *relocated* onto a live one drawn with probability
  proportional to opacity; then ``5%`` more surfels are added the same way, up to ``cap_max``.
  A surfel drawn ``k`` times shares its place with its ``k`` copies: each gets opacity
  ``1 - (1 - o)^(1 / (k + 1))`` and its scales multiplied by the paper's factor (eq. 9), so
  the rendered result stays about the same. The drawn surfels and their copies restart their
  Adam moments;
- every step (until ``noise_stop``): noise on the positions, ``lr_means * noise_lr *
  Sigma * eps`` with ``Sigma`` the surfel's covariance (in its plane: a surfel has no extent
  along its normal) and ``eps`` standard normal, weighted by ``sigmoid(100 (0.005 - o))`` so
  that only nearly dead surfels wander (the paper's stochastic-gradient Langevin step).

The paper also regularises opacity and scale (L1, 0.01 each); the trainer adds those losses
when this strategy is chosen. Randomness comes from a CPU ``torch.Generator`` whose state is
part of :meth:`state_dict`, so checkpoints resume exactly. Same interface as
:class:`gsplat_lib.strategy.DefaultStrategy`: call :meth:`step_post_backward` after the
optimizer step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, NamedTuple, Optional

import torch

from gsplat_lib.model import GaussianModel
from gsplat_lib.strategy import in_plane_axes
from gsplat_lib.strategy_base import Strategy, check_int_fields, restore_generator, strategy_config, strategy_from_state

__all__ = ["MCMCStrategy", "RelocationReport", "relocated_opacity_and_scale"]

#: A surfel drawn more often than this shares its place with this many copies at most
#: (gsplat's ``n_max``; the factors barely change beyond).
MAX_SHARES = 51


class RelocationReport(NamedTuple):
    """What one relocation step did."""

    num_before: int
    num_after: int
    num_relocated: int
    num_added: int


def relocated_opacity_and_scale(opacities: torch.Tensor, shares: torch.Tensor):
    """(new opacities [M], scale factors [M]) of surfels of opacity ``opacities`` [M] that each
    share their place with ``shares - 1`` copies (``shares`` [M] int >= 1).

    ``o' = 1 - (1 - o)^(1/n)`` keeps the opacity of n stacked copies; the scale factor
    ``o / sum_{j=1..n} (-1)^(j-1) C(n, j) o'^j / sqrt(j)`` is 3DGS-MCMC's eq. 9 (the double sum
    of the paper collapsed by the hockey-stick identity), computed in float64.
    """
    n = shares.clamp(1, MAX_SHARES).to(torch.float64)
    o = opacities.to(torch.float64)
    new_o = 1.0 - torch.pow(1.0 - o, 1.0 / n)
    denominator = torch.zeros_like(o)
    binomial = torch.ones_like(o)  # C(n, 0)
    for j in range(1, MAX_SHARES + 1):
        binomial = binomial * (n - (j - 1)) / j  # C(n, j); 0 once j > n
        term = binomial * new_o.pow(j) / math.sqrt(j)
        denominator = denominator + (term if j % 2 == 1 else -term)
    factor = o / denominator.clamp_min(1e-300)
    return new_o.to(opacities.dtype), factor.to(opacities.dtype)


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p) - torch.log1p(-p)


def _in_plane_covariance(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] ``s_u^2 t_u t_u^T + s_v^2 t_v t_v^T`` of unit quaternions [N, 4] (w, x, y, z)
    and scales [N, 2]."""
    t_u, t_v = in_plane_axes(quats)
    u = t_u * scales[:, :1]
    v = t_v * scales[:, 1:]
    return u[:, :, None] * u[:, None, :] + v[:, :, None] * v[:, None, :]


@dataclass
class MCMCStrategy(Strategy):
    """3DGS-MCMC's relocation, growth and position noise (see the module docstring).

    Steps count from 1. ``noise_stop`` < 0: noise every step of the run.
    """

    cap_max: int = 1_000_000
    refine_start: int = 500
    refine_stop: int = 25_000
    refine_every: int = 100
    min_opacity: float = 0.005
    growth: float = 0.05
    noise_lr: float = 5e5
    noise_stop: int = -1
    seed: int = 0

    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_int_fields(self, ("cap_max", "refine_start", "refine_stop", "refine_every", "noise_stop", "seed"))
        if self.refine_every < 1 or self.cap_max < 1:
            raise ValueError("MCMCStrategy: refine_every and cap_max must be >= 1")
        if not 0.0 < self.min_opacity < 1.0:
            raise ValueError(f"MCMCStrategy: min_opacity must be in (0, 1), got {self.min_opacity}")
        if not (self.growth >= 0.0 and math.isfinite(self.growth)):
            raise ValueError(f"MCMCStrategy: growth must be a finite number >= 0, got {self.growth}")
        if not (self.noise_lr >= 0.0 and math.isfinite(self.noise_lr)):
            raise ValueError(f"MCMCStrategy: noise_lr must be a finite number >= 0, got {self.noise_lr}")
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)

    # ------------------------------------------------------------------ the per-step hook

    def step_post_backward(self, model: GaussianModel, result, step: int) -> Optional[RelocationReport]:
        """Relocates and grows on schedule, then moves nearly dead surfels by noise.

        ``result`` (the step's render) is not read: relocation looks at opacities only.
        Returns the :class:`RelocationReport` on relocation steps, else None.
        """
        report = None
        if self.refine_start < step < self.refine_stop and step % self.refine_every == 0:
            report = self.relocate_and_grow(model)
        if self.noise_stop < 0 or step < self.noise_stop:
            self.inject_noise(model)
        return report

    @torch.no_grad()
    def relocate_and_grow(self, model: GaussianModel) -> RelocationReport:
        num_before = model.num_surfels
        opacities = model.opacities
        dead = opacities <= self.min_opacity
        alive_rows = torch.nonzero(~dead).flatten()
        dead_rows = torch.nonzero(dead).flatten()
        num_relocated = 0
        if len(dead_rows) and len(alive_rows):
            drawn = alive_rows[self._draw(opacities[alive_rows], len(dead_rows))]
            self._place_copies(model, drawn, dead_rows)
            num_relocated = len(dead_rows)
        target = min(self.cap_max, int(math.floor((1.0 + self.growth) * model.num_surfels)))
        num_added = max(0, target - model.num_surfels)
        if num_added:
            drawn = self._draw(model.opacities, num_added)
            self._place_copies(model, drawn, None)
        return RelocationReport(num_before, model.num_surfels, num_relocated, num_added)

    def _draw(self, weights: torch.Tensor, count: int) -> torch.Tensor:
        """``count`` row indices drawn with replacement, probability proportional to ``weights``."""
        drawn = torch.multinomial(weights.detach().cpu().to(torch.float64), count, replacement=True, generator=self.generator)
        return drawn.to(weights.device)

    def _place_copies(self, model: GaussianModel, drawn: torch.Tensor, destinations: Optional[torch.Tensor]) -> None:
        """Copies of the ``drawn`` rows [K] go to ``destinations`` [K] (rows replaced), or are
        appended when None; every drawn row and its copies get the shared opacity and scales
        and fresh Adam moments."""
        count = model.num_surfels
        shares = torch.bincount(drawn, minlength=count) + 1  # a drawn row plus its copies
        new_opacity, factor = relocated_opacity_and_scale(model.opacities[drawn], shares[drawn])
        new_logits = _logit(new_opacity.clamp(self.min_opacity, 1.0 - torch.finfo(torch.float32).eps))
        new_log_scales = model.params["log_scales"][drawn] + torch.log(factor)[:, None]

        source = torch.arange(count, device=model.device)
        if destinations is None:
            destinations = torch.arange(count, count + len(drawn), device=model.device)
            source = torch.cat([source, drawn])
        else:
            source = source.clone()
            source[destinations] = drawn
        rows = len(source)
        changed = torch.zeros(rows, dtype=torch.bool, device=model.device)
        changed[drawn] = True
        changed[destinations] = True
        logits = torch.empty(rows, dtype=torch.float32, device=model.device)
        log_scales = torch.empty(rows, 2, dtype=torch.float32, device=model.device)
        # A row drawn several times gets the same values from each draw.
        logits[drawn] = new_logits
        logits[destinations] = new_logits
        log_scales[drawn] = new_log_scales
        log_scales[destinations] = new_log_scales
        model.apply_row_plan(
            source, changed, overrides={"opacity_logits": logits, "log_scales": log_scales}, override_rows=changed
        )

    @torch.no_grad()
    def inject_noise(self, model: GaussianModel) -> None:
        """means += lr_means * noise_lr * Sigma eps * sigmoid(100 (min_opacity - o)), in place."""
        if self.noise_lr == 0.0:
            return
        lr = float(model.param_group("means")["lr"])
        opacities = model.opacities
        covariance = _in_plane_covariance(model.quats, model.scales)
        eps = torch.randn(model.num_surfels, 3, generator=self.generator, dtype=torch.float32).to(model.device)
        gate = torch.sigmoid(100.0 * (self.min_opacity - opacities))
        noise = torch.einsum("nij,nj->ni", covariance, eps) * (gate * lr * self.noise_lr)[:, None]
        model.params["means"].add_(noise)

    # ------------------------------------------------------------------ persistence

    def config(self) -> Dict[str, object]:
        """The constructor arguments (weights_only-safe values)."""
        return strategy_config(self)

    def state_dict(self) -> Dict[str, object]:
        return {"name": type(self).__name__, "config": self.config(), "generator_state": self.generator.get_state()}

    @classmethod
    def from_state_dict(cls, state: Dict[str, object], device="cpu") -> "MCMCStrategy":
        return strategy_from_state(cls, state, device)

    def load_state_dict(self, state: Dict[str, object], device="cpu") -> None:
        """Restores the generator state (the only state besides the config)."""
        restore_generator(self.generator, state)
