"""gsplat_lib: differentiable 2D Gaussian (surfel) splatting with a CPU and a CUDA backend."""

from gsplat_lib._backend import build_info

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "build_info",
]
