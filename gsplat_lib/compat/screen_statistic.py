"""Upstream's densification statistic in the caller's ``means2D.grad``.

2DGS passes a zero tensor ``means2D`` that the rasterizer never reads and reads its ``.grad``
after backward. Here ``means2D`` joins the graph through the opacities given to
``rasterize_surfels`` (the values pass unchanged); when the rasterizer's backward has run, a hook
on its node has the screen statistics (``RasterResult.screen_grad`` / ``screen_absgrad``, and in
upstream semantics ``center_grad``, in pixels), and the join's backward returns them, in NDC
units, as the gradient of ``means2D``: columns 0:2 the signed statistic, 2:4 (GenFusion's [N, 4]
layout) the absolute one.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from gsplat_lib.ops.rasterize import RasterResult

__all__ = ["ScreenStatisticLink"]


class ScreenStatisticLink:
    """Carries one render's screen statistics from the rasterizer's backward to ``means2D``."""

    def __init__(self, means2D: Optional[torch.Tensor], signed_scale: Tuple[float, float],
                 absolute_scale: Tuple[float, float], center_chain: Optional[torch.Tensor] = None):
        """``signed_scale`` / ``absolute_scale``: (x, y) factors from pixels to NDC units of the two
        statistics. ``center_chain`` [N]: where given, ``center_grad`` times it is added to the
        signed statistic (in pixels) first (upstream's ``cov3D_precomp`` path)."""
        if means2D is not None and not isinstance(means2D, torch.Tensor):
            raise TypeError(f"means2D must be a torch.Tensor, got {type(means2D).__name__}")
        if means2D is not None and (means2D.dim() != 2 or means2D.shape[1] < 2):
            raise ValueError(f"means2D must have shape [N, 2], [N, 3] or [N, 4], got {list(means2D.shape)}")
        self.means2D = means2D
        self.scales = {"signed": signed_scale, "absolute": absolute_scale}
        self.center_chain = center_chain
        self.active = means2D is not None and means2D.requires_grad and torch.is_grad_enabled()
        self.statistics = None

    def join(self, opacities: torch.Tensor) -> torch.Tensor:
        """``opacities`` unchanged, with ``means2D`` behind it in the graph when it wants a gradient."""
        if not self.active:
            return opacities
        if self.means2D.shape[0] != opacities.shape[0]:
            raise ValueError(f"means2D has {self.means2D.shape[0]} rows but there are {opacities.shape[0]} surfels")
        return _JoinMeans2D.apply(opacities, self.means2D, self)

    def watch(self, result: RasterResult) -> None:
        """Hooks the rasterizer's backward node of ``result`` to keep its screen statistics."""
        if not self.active:
            return
        node = result.colors.grad_fn
        leaves = {"signed": result.screen_grad, "absolute": result.screen_absgrad}
        if self.center_chain is not None:
            leaves["center"] = result.center_grad
        slots = {}
        for index, (function, _) in enumerate(node.next_functions if node is not None else ()):
            variable = getattr(function, "variable", None)
            for name, leaf in leaves.items():
                if variable is leaf and leaf is not None:
                    slots[name] = index
        if len(slots) != len(leaves):
            raise RuntimeError("gsplat_lib.compat: the rasterizer's screen statistics are not inputs of its backward "
                               "node; this gsplat_lib build and its compat layer do not match")

        def keep(grad_inputs, grad_outputs):
            self.statistics = {name: grad_inputs[index] for name, index in slots.items()}

        node.register_hook(keep)

    def means2d_gradient(self) -> torch.Tensor:
        if self.statistics is None:
            raise RuntimeError("gsplat_lib.compat: means2D's gradient was needed before the rasterizer's backward ran")
        statistics, self.statistics = self.statistics, None
        signed = statistics["signed"]
        if signed is not None and statistics.get("center") is not None:
            signed = signed + statistics["center"] * self.center_chain.to(signed)[None, :, None]
        gradient = torch.zeros_like(self.means2D)
        for start, name, statistic in ((0, "signed", signed), (2, "absolute", statistics["absolute"])):
            if statistic is not None and gradient.shape[1] >= start + 2:
                scale = torch.tensor(self.scales[name], dtype=gradient.dtype, device=gradient.device)
                gradient[:, start:start + 2] = statistic.reshape(-1, 2).to(gradient.dtype) * scale
        return gradient


class _JoinMeans2D(torch.autograd.Function):
    @staticmethod
    def forward(ctx, opacities, means2D, link):
        ctx.link = link
        return opacities.clone()

    @staticmethod
    def backward(ctx, v_opacities):
        return v_opacities, ctx.link.means2d_gradient(), None
