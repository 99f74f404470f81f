"""gsplat_lib: differentiable 2D Gaussian (surfel) splatting with a CPU and a CUDA backend."""

from gsplat_lib._backend import build_info
from gsplat_lib.ops.knn import knn, knn_dist2
from gsplat_lib.ops.rasterize import RasterResult, rasterize_surfels
from gsplat_lib.model import GaussianModel, LearningRates
from gsplat_lib.strategy import DefaultStrategy, DensifyReport
from gsplat_lib.strategy_mcmc import MCMCStrategy, RelocationReport
from gsplat_lib.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from gsplat_lib.io import load_ply, save_ply

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "build_info",
    "knn",
    "knn_dist2",
    "RasterResult",
    "rasterize_surfels",
    "GaussianModel",
    "LearningRates",
    "DefaultStrategy",
    "DensifyReport",
    "MCMCStrategy",
    "RelocationReport",
    "Checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "load_ply",
    "save_ply",
]
