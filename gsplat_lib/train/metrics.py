"""Evaluation metrics of one rendered view against its ground truth (torch, no gradient)."""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch

from gsplat_lib.train.losses import ssim

__all__ = ["mse", "psnr", "psnr_of_mse", "ssim_metric", "depth_errors", "normal_angle_errors", "fog_counts", "FOG_DEPTH_RATIO"]

#: A rendered surface is fog when it lies in front of the true one by more than this share of
#: the true depth: rendered depth < FOG_DEPTH_RATIO x true depth.
FOG_DEPTH_RATIO = 0.8


@torch.no_grad()
def mse(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of images in [0, 1] (``rendered`` is clamped first), a [] tensor on
    their device: reading it is the caller's choice (the training step does not)."""
    return ((rendered.clamp(0.0, 1.0) - target) ** 2).mean()


def psnr_of_mse(error: float) -> float:
    """PSNR in dB of a mean squared error of images in [0, 1]; ``inf`` for 0."""
    return math.inf if error == 0.0 else -10.0 * math.log10(error)


@torch.no_grad()
def psnr(rendered: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (``rendered`` is clamped first).

    Identical images give ``inf``.
    """
    return psnr_of_mse(float(mse(rendered, target)))


@torch.no_grad()
def ssim_metric(rendered: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM of ``[H, W, 3]`` or ``[C, H, W, 3]`` images, ``rendered`` clamped to [0, 1]."""
    if rendered.dim() == 3:
        rendered, target = rendered[None], target[None]
    return float(ssim(rendered.clamp(0.0, 1.0), target))


@torch.no_grad()
def depth_errors(depth: torch.Tensor, gt_depth: torch.Tensor) -> Optional[Dict[str, float]]:
    """Depth errors where the ground truth is known (``gt_depth > 0``), or None if nowhere.

    Args:
        depth: ``[H, W, 1]`` rendered camera-space depth.
        gt_depth: ``[H, W, 1]`` ground-truth camera-space depth, 0 where unknown.
    Returns ``abs_rel`` (mean |d - gt| / gt), ``rmse`` (scene units) and ``pixels`` (count).
    """
    valid = gt_depth > 0
    count = int(valid.sum())
    if count == 0:
        return None
    error = depth[valid] - gt_depth[valid]
    return {
        "abs_rel": float((error.abs() / gt_depth[valid]).mean()),
        "rmse": float(torch.sqrt((error**2).mean())),
        "pixels": count,
    }


@torch.no_grad()
def normal_angle_errors(normals: torch.Tensor, gt_normals: torch.Tensor) -> Optional[Dict[str, float]]:
    """Angular error in degrees between normals, where the ground truth exists (non-zero).

    Args:
        normals: ``[H, W, 3]`` rendered normals (any length; a zero normal counts as 90 degrees).
        gt_normals: ``[H, W, 3]`` ground-truth normals in the same frame, 0 where unknown.
    Returns ``mean_deg``, ``median_deg`` and ``pixels``, or None when no pixel has one.
    """
    valid = gt_normals.norm(dim=-1) > 0
    count = int(valid.sum())
    if count == 0:
        return None
    predicted = torch.nn.functional.normalize(normals[valid], dim=-1)
    truth = torch.nn.functional.normalize(gt_normals[valid], dim=-1)
    cosine = (predicted * truth).sum(dim=-1).clamp(-1.0, 1.0)
    angles = torch.rad2deg(torch.acos(cosine))
    return {"mean_deg": float(angles.mean()), "median_deg": float(angles.median()), "pixels": count}


@torch.no_grad()
def fog_counts(
    depth: torch.Tensor, alpha: torch.Tensor, gt_depth: torch.Tensor, sky_depth: float
) -> Dict[str, int]:
    """Pixels where the rendered surface is far in front of the true one ("fog").

    A pixel renders a surface where ``alpha`` >= 0.5; its depth is ``depth``. Where the true
    ray hits geometry (``gt_depth > 0``), the pixel is fog when the rendered surface is in
    front by more than ``1 - FOG_DEPTH_RATIO`` of the true depth (``depth < FOG_DEPTH_RATIO
    gt_depth``). Where the true ray sees nothing (sky, background at infinity), it is fog when
    a surface renders nearer than ``FOG_DEPTH_RATIO x sky_depth``, ``sky_depth`` being the
    farthest true geometry of the evaluation (so a sky modelled by surfels beyond all geometry
    is not fog, but a haze in front of the sky is). Pixels that see geometry but render no
    surface (alpha < 0.5: a hole, what an environment map behind the surfels may fill) are
    counted as ``surface_holes``.

    Args:
        depth, alpha, gt_depth: ``[H, W, 1]``.
        sky_depth: the farthest true depth of the evaluated views (> 0).
    Returns ``surface_pixels``, ``surface_fog``, ``surface_holes``, ``sky_pixels``, ``sky_fog`` (counts).
    """
    covered = alpha >= 0.5
    surface = gt_depth > 0
    sky = ~surface
    return {
        "surface_pixels": int(surface.sum()),
        "surface_fog": int((surface & covered & (depth < FOG_DEPTH_RATIO * gt_depth)).sum()),
        "surface_holes": int((surface & ~covered).sum()),
        "sky_pixels": int(sky.sum()),
        "sky_fog": int((sky & covered & (depth < FOG_DEPTH_RATIO * sky_depth)).sum()),
    }
