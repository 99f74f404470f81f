"""Per-image appearance: an affine colour transform of the rendered image for each training image.

Photo collections change exposure and white balance from shot to shot. Without a model of it
the surfels bake every image's colour cast into view-dependent colour and floaters. Here each
training image ``i`` has its own ``3 x 3`` matrix ``M_i`` and bias ``b_i``, and the loss compares
``M_i c + b_i`` (``c`` the rendered colour of a pixel) with the photo::

    appearance = ImageAppearance(num_images, lr=1e-3, weight=1e-2)
    colors = appearance.apply(result.colors, image_indices)   # [C, H, W, 3]
    loss = photometric(colors, targets) + appearance.regularization(image_indices)
    loss.backward(); model.optimizer.step(); appearance.step()

Every transform starts at the identity (bit-exactly the input: ``x * 1 + 0 = x``). The
regulariser ``weight * mean_i (|M_i - I|^2 + |b_i|^2)`` over the batch's images keeps them near it,
which also pins down the ambiguity of scaling every image one way and the surfels' colours the
other. The transforms have their own Adam (own learning rate); its state and the transforms are
:meth:`state_dict`, which the trainer's checkpoints carry for an exact resume.
"""

from __future__ import annotations

import copy
import math
from typing import Dict, Optional, Sequence, Union

import torch

__all__ = ["ImageAppearance", "apply_affine", "appearance_of"]


def apply_affine(colors: torch.Tensor, matrices: torch.Tensor, biases: torch.Tensor) -> torch.Tensor:
    """``M c + b`` for every pixel colour ``c``.

    Args:
        colors: [C, H, W, 3]; matrices: [C, 3, 3]; biases: [C, 3].
    """
    transformed = torch.einsum("chwk,cjk->chwj", colors, matrices)
    return transformed + biases[:, None, None, :]


def _finite_non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"ImageAppearance: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


class ImageAppearance:
    """One affine colour transform per training image, identity at the start.

    Args:
        num_images: the number of training images (one transform each).
        lr: Adam learning rate of the transforms (0 keeps them at the identity).
        weight: weight of the regulariser toward the identity.
        device: where the transforms live.
    """

    def __init__(self, num_images: int, *, lr: float, weight: float, device: Union[str, torch.device] = "cpu") -> None:
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"ImageAppearance: num_images must be an integer >= 1, got {num_images!r}")
        self.lr = _finite_non_negative("lr", lr)
        self.weight = _finite_non_negative("weight", weight)
        eye = torch.eye(3, dtype=torch.float32, device=device)
        self.matrices = eye.repeat(num_images, 1, 1).requires_grad_(True)
        self.biases = torch.zeros(num_images, 3, dtype=torch.float32, device=device, requires_grad=True)
        # foreach=False: the plain per-tensor loop, the same bits on every run.
        self.optimizer = torch.optim.Adam([self.matrices, self.biases], lr=self.lr, eps=1e-15, foreach=False)

    @property
    def num_images(self) -> int:
        return self.matrices.shape[0]

    @property
    def parameters(self):
        return [self.matrices, self.biases]

    def _indices(self, images: Sequence[int]) -> torch.Tensor:
        indices = torch.as_tensor(list(images), dtype=torch.long, device=self.matrices.device)
        if indices.ndim != 1 or bool(((indices < 0) | (indices >= self.num_images)).any()):
            raise ValueError(f"ImageAppearance: image indices must lie in [0, {self.num_images}), got {list(images)}")
        return indices

    def apply(self, colors: torch.Tensor, images: Sequence[int]) -> torch.Tensor:
        """The rendered ``colors`` [C, H, W, 3] of training images ``images`` (C indices) as their photos'
        appearance would show them."""
        indices = self._indices(images)
        if colors.ndim != 4 or colors.shape[-1] != 3 or colors.shape[0] != len(indices):
            raise ValueError(f"ImageAppearance.apply: colors must be [{len(indices)}, H, W, 3], got {tuple(colors.shape)}")
        return apply_affine(colors, self.matrices[indices], self.biases[indices])

    def regularization(self, images: Sequence[int]) -> torch.Tensor:
        """``weight`` x the mean over ``images`` of the squared distance of their transforms to the identity."""
        indices = self._indices(images)
        eye = torch.eye(3, dtype=self.matrices.dtype, device=self.matrices.device)
        offset = (self.matrices[indices] - eye).square().sum(dim=(1, 2)) + self.biases[indices].square().sum(dim=1)
        return self.weight * offset.mean()

    def step(self) -> None:
        """One Adam step of the transforms (after ``backward``), then their gradients cleared."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def mean_transform(self):
        """(matrix [3, 3], bias [3]): the mean over the training images, for views without a photo of their own."""
        return self.matrices.detach().mean(dim=0), self.biases.detach().mean(dim=0)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> Dict[str, object]:
        return {
            "matrices": self.matrices.detach().clone(),
            "biases": self.biases.detach().clone(),
            "lr": self.lr,
            "weight": self.weight,
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),  # not views of the live moments
        }

    @classmethod
    def from_state_dict(cls, state: Dict[str, object], device: Union[str, torch.device] = "cpu") -> "ImageAppearance":
        """Rebuilds the transforms and their Adam state; ValueError on an inconsistent state."""
        if not isinstance(state, dict) or not {"matrices", "biases", "lr", "weight", "optimizer"} <= set(state):
            raise ValueError("appearance state: expected a dict with matrices, biases, lr, weight and optimizer")
        matrices, biases = state["matrices"], state["biases"]
        if not (isinstance(matrices, torch.Tensor) and isinstance(biases, torch.Tensor)):
            raise ValueError("appearance state: matrices and biases must be tensors")
        count = matrices.shape[0] if matrices.ndim == 3 else -1
        if count < 1 or tuple(matrices.shape) != (count, 3, 3) or tuple(biases.shape) != (count, 3):
            raise ValueError(
                f"appearance state: matrices [N, 3, 3] and biases [N, 3] expected, got {tuple(matrices.shape)} "
                f"and {tuple(biases.shape)}"
            )
        if not (bool(torch.isfinite(matrices).all()) and bool(torch.isfinite(biases).all())):
            raise ValueError("appearance state: non-finite transforms")
        appearance = cls(count, lr=state["lr"], weight=state["weight"], device=device)
        with torch.no_grad():
            appearance.matrices.copy_(matrices.to(device=device, dtype=torch.float32))
            appearance.biases.copy_(biases.to(device=device, dtype=torch.float32))
        try:
            appearance.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"appearance state: its optimizer state does not fit: {error}") from error
        return appearance


def appearance_of(trainer_state: Dict[str, object], device: Union[str, torch.device] = "cpu") -> Optional[ImageAppearance]:
    """The transforms a checkpoint's ``trainer_state`` carries (None for runs without ``--appearance``)."""
    state = trainer_state.get("appearance")
    return None if state is None else ImageAppearance.from_state_dict(state, device=device)
