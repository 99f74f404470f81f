"""Optimizers for surfel models."""

from gsplat_lib.optim.fused_adam import FusedAdam

__all__ = ["FusedAdam"]
