"""Training: the 2DGS recipe over resumable run directories, and the ``gsplat-train`` /
``gsplat-render`` command lines.

::

    from gsplat_lib.train import TrainConfig, Trainer
    metrics = Trainer(TrainConfig(data="path/to/colmap", output="runs/scene", iterations=7000)).run()
    print(metrics["psnr"], metrics["ssim"])
"""

from gsplat_lib.train.config import Schedule, TrainConfig
from gsplat_lib.train.run_dir import RunDirectory, SettingsMismatchError
from gsplat_lib.train.trainer import CameraOrder, Trainer, TrainingFailed, TrainingInterrupted

__all__ = [
    "CameraOrder",
    "RunDirectory",
    "Schedule",
    "SettingsMismatchError",
    "TrainConfig",
    "Trainer",
    "TrainingFailed",
    "TrainingInterrupted",
]
