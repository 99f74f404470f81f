"""gsplat_lib: differentiable 2D Gaussian (surfel) splatting with a CPU and a CUDA backend.

Layers, bottom to top (a module imports only from its own layer or below; docs/design.md):
backend and ops; small shared modules (cameras, param_schema, learning_rates, atomic_file,
checkpoint, strategy_base, optim); model and PLY I/O; strategy (default, MCMC); data; mesh; train.
"""

from gsplat_lib._backend import build_info
from gsplat_lib._version import __version__
from gsplat_lib.cameras import look_at
from gsplat_lib.checkpoint import Checkpoint, save_checkpoint
from gsplat_lib.io import load_ply, save_ply
from gsplat_lib.learning_rates import LearningRates
from gsplat_lib.model import GaussianModel
from gsplat_lib.ops.knn import knn, knn_dist2
from gsplat_lib.ops.rasterize import RasterResult, rasterize_surfels
from gsplat_lib.optim import FusedAdam
from gsplat_lib.strategy import DefaultStrategy, DensifyReport
from gsplat_lib.strategy_base import Strategy
from gsplat_lib.strategy_mcmc import MCMCStrategy, RelocationReport

#: Loads a checkpoint of :func:`save_checkpoint`: ``GaussianModel.load_checkpoint``.
load_checkpoint = GaussianModel.load_checkpoint

__all__ = [
    "__version__",
    "build_info",
    "knn",
    "knn_dist2",
    "look_at",
    "RasterResult",
    "rasterize_surfels",
    "GaussianModel",
    "LearningRates",
    "FusedAdam",
    "DefaultStrategy",
    "DensifyReport",
    "Strategy",
    "MCMCStrategy",
    "RelocationReport",
    "Checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "load_ply",
    "save_ply",
]
