"""NeRF-W's evaluation of held-out views under per-image appearance: fit, then score elsewhere.

A held-out photo has no appearance of its own, and scoring it with some fixed appearance
measures how far its exposure is from that one, not the model. NeRF-W fits the test image's
appearance on the left half of the image and scores the right half (half-image protocol);
the fitted part is never scored.

The appearance here is an affine colour transform (:mod:`gsplat_lib.train.appearance`), and
with the model fixed, the L2 fit of ``M c + b`` to the left half is a linear least-squares
problem: it is solved in closed form (float64), not by gradient steps, so it is exact,
deterministic and instant. A small ridge term toward the identity keeps a degenerate half
(one flat colour, all black) solvable: it then stays close to the identity.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from gsplat_lib.train import metrics
from gsplat_lib.train.appearance import ImageAppearance, apply_affine

__all__ = [
    "FULL_IMAGE_PROTOCOL",
    "HALF_IMAGE_PROTOCOL",
    "RIDGE",
    "fit_affine",
    "half_image_scores",
    "score_with_appearance",
    "summarize",
    "transform_image",
]

#: The protocol name metrics.json records.
HALF_IMAGE_PROTOCOL = "nerf-w half image: appearance fitted on the left half, scored on the right half"
#: Ridge weight per fitted pixel, toward the identity transform.
RIDGE = 1e-4


def fit_affine(rendered: torch.Tensor, target: torch.Tensor, ridge: float = RIDGE) -> Tuple[torch.Tensor, torch.Tensor]:
    """(matrix [3, 3], bias [3]) minimising ``|M c + b - t|^2 + ridge * n * |(M, b) - (I, 0)|^2`` over the
    ``n`` pixels of ``rendered`` and ``target`` (each [..., 3], same shape), in float32 on their device."""
    if rendered.shape != target.shape or rendered.shape[-1] != 3 or rendered.numel() == 0:
        raise ValueError(
            f"fit_affine: rendered and target must be non-empty [..., 3] of one shape, got "
            f"{tuple(rendered.shape)} and {tuple(target.shape)}"
        )
    colors = rendered.detach().reshape(-1, 3).double()
    wanted = target.detach().reshape(-1, 3).double()
    design = torch.cat([colors, torch.ones_like(colors[:, :1])], dim=1)  # [n, 4]
    identity = torch.cat([torch.eye(3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)]).to(colors.device)
    strength = ridge * len(colors)
    normal = design.T @ design + strength * torch.eye(4, dtype=torch.float64, device=colors.device)
    solution = torch.linalg.solve(normal, design.T @ wanted + strength * identity)  # [4, 3]: rows M^T, then b
    return solution[:3].T.float(), solution[3].float()


def transform_image(image: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``M c + b`` of every pixel of an [H, W, 3] image."""
    return apply_affine(image[None], matrix[None], bias[None])[0]


def half_image_scores(rendered: torch.Tensor, target: torch.Tensor) -> Dict[str, object]:
    """The half-image protocol on one view: fits on the left ``W // 2`` columns, scores the rest.

    Returns ``{"psnr", "ssim"}`` of the right half, the fitted ``matrix`` [3, 3] and ``bias`` [3], and
    ``image``: the whole rendered view under the fitted appearance [H, W, 3].
    """
    if rendered.ndim != 3 or rendered.shape != target.shape or rendered.shape[1] < 2:
        raise ValueError(
            f"half_image_scores: rendered and target must be [H, W >= 2, 3] of one shape, got "
            f"{tuple(rendered.shape)} and {tuple(target.shape)}"
        )
    half = rendered.shape[1] // 2
    matrix, bias = fit_affine(rendered[:, :half], target[:, :half])
    image = transform_image(rendered, matrix, bias)
    return {
        "psnr": metrics.psnr(image[:, half:], target[:, half:]),
        "ssim": metrics.ssim_metric(image[:, half:], target[:, half:]),
        "matrix": matrix,
        "bias": bias,
        "image": image,
    }


#: The protocol of runs without per-image appearance.
FULL_IMAGE_PROTOCOL = "full image"


def score_with_appearance(
    rendered: torch.Tensor, target: torch.Tensor, appearance: ImageAppearance
) -> Tuple[Dict[str, object], torch.Tensor]:
    """(scores, image to write) of one held-out view of a model trained with ``appearance``.

    The scores: ``psnr`` and ``ssim`` under the half-image protocol, ``mean_appearance``
    (``psnr``, ``ssim`` of the whole view under the training images' mean transform) and the
    ``fitted`` transform; the image is the whole view under the fitted transform.
    """
    half = half_image_scores(rendered, target)
    matrix, bias = appearance.mean_transform()
    mean_image = transform_image(rendered, matrix, bias)
    scores = {
        "psnr": half["psnr"],
        "ssim": half["ssim"],
        "mean_appearance": {"psnr": metrics.psnr(mean_image, target), "ssim": metrics.ssim_metric(mean_image, target)},
        "fitted": {"matrix": half["matrix"].tolist(), "bias": half["bias"].tolist()},
    }
    return scores, half["image"]


def summarize(per_view: List[Dict[str, object]], appearance: Optional[ImageAppearance]) -> Dict[str, object]:
    """metrics.json's ``protocol`` and, with appearance, the views' mean ``mean_appearance`` scores."""
    if appearance is None:
        return {"protocol": FULL_IMAGE_PROTOCOL}
    scores = [view["mean_appearance"] for view in per_view]
    return {
        "protocol": HALF_IMAGE_PROTOCOL,
        "mean_appearance": {
            name: sum(float(score[name]) for score in scores) / len(scores) if scores else None
            for name in ("psnr", "ssim")
        },
    }
