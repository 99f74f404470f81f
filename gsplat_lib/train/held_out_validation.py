"""Validation during training (``gsplat-train --eval-every N``): held-out PSNR / SSIM every N
steps, a history of them, and the best step so far.

Every N steps (and after the last) the model renders at most :data:`MAX_VALIDATION_VIEWS`
held-out views (evenly spread over the test split; the training views when there are none)
and is scored as the evaluate stage scores it (over the environment map when the run has one):
whole images, or NeRF-W's half-image protocol with ``--appearance``. Each score is a line of ``metrics_history.jsonl`` (and a TensorBoard
scalar in ``OUTPUT/tensorboard/`` when the ``tensorboard`` package is installed); the best PSNR so far
(``{"step", "psnr"}``) is part of the checkpoints, and the trainer writes
``checkpoints/best.ckpt`` whenever it improves.

Validation only reads the model and draws no random numbers: a run with it trains the same
bits as one without. On resume the history is cut back to the checkpoint's step, and the steps
after it (repeated bit for bit) write the same lines and the same best again (TensorBoard's
event files are not cut back: it shows those steps twice).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from gsplat_lib.atomic_file import write_atomically
from gsplat_lib.data import Camera, SceneData
from gsplat_lib.model import GaussianModel
from gsplat_lib.train import metrics
from gsplat_lib.train.appearance import ImageAppearance
from gsplat_lib.train.appearance_eval import half_image_scores
from gsplat_lib.train.environment import EnvironmentMap, render_with_environment

__all__ = ["BEST_CHECKPOINT", "HISTORY_FILE", "TENSORBOARD_DIR", "MAX_VALIDATION_VIEWS", "HeldOutValidation", "validation_views"]

#: At most this many views are scored at each validation.
MAX_VALIDATION_VIEWS = 8
#: One JSON line per validation, in the run directory.
HISTORY_FILE = "metrics_history.jsonl"
#: The best validation step's checkpoint, in the checkpoints folder.
BEST_CHECKPOINT = "best.ckpt"
#: TensorBoard's event files (only when the tensorboard package is installed), in the run directory.
TENSORBOARD_DIR = "tensorboard"


def validation_views(scene: SceneData) -> Tuple[List[Camera], str]:
    """(views, split): at most :data:`MAX_VALIDATION_VIEWS` test views evenly spread (training views
    when there are no test views)."""
    cameras, split = (scene.test, "test") if scene.test else (scene.train, "train")
    if len(cameras) > MAX_VALIDATION_VIEWS:
        picks = np.linspace(0, len(cameras) - 1, MAX_VALIDATION_VIEWS).round().astype(int)
        cameras = [cameras[index] for index in picks]
    return list(cameras), split


class HeldOutValidation:
    """Scores a model on held-out views, keeps the history file and the best step.

    Args:
        cameras: the views to score.
        background: the RGB colour rendered behind the surfels.
        history_path: where the JSON lines go.
        near, far: the rasterizer's planes.
    """

    def __init__(
        self, cameras: Sequence[Camera], background, history_path: Path, *, near: float, far: float, device
    ) -> None:
        if not cameras:
            raise ValueError("validation needs at least one view")
        self.cameras = list(cameras)
        self.history_path = Path(history_path)
        self.near, self.far = near, far
        self.background = torch.as_tensor(np.asarray(background, dtype=np.float32), device=device)[None]
        self.targets = [torch.from_numpy(camera.image).to(device) for camera in self.cameras]
        self.best: Optional[Dict[str, float]] = None
        self.latest: Optional[Dict[str, float]] = None
        self._tensorboard = None  # a SummaryWriter, opened at the first validation

    @torch.no_grad()
    def score(
        self,
        model: GaussianModel,
        appearance: Optional[ImageAppearance] = None,
        environment: Optional[EnvironmentMap] = None,
    ) -> Dict[str, float]:
        """Mean ``psnr`` and ``ssim`` over the views (half-image protocol when ``appearance`` is given),
        rendered over ``environment`` when given."""
        psnrs, ssims = [], []
        for camera, target in zip(self.cameras, self.targets):
            viewmat = torch.from_numpy(camera.viewmat).to(model.device)[None]
            K = torch.from_numpy(camera.K).to(model.device)[None]
            _, colors = render_with_environment(
                model, viewmat, K, camera.width, camera.height, self.background, environment, near=self.near, far=self.far
            )
            rendered = colors[0]
            if appearance is not None:
                scores = half_image_scores(rendered, target)
                psnrs.append(scores["psnr"])
                ssims.append(scores["ssim"])
            else:
                psnrs.append(metrics.psnr(rendered, target))
                ssims.append(metrics.ssim_metric(rendered, target))
        return {"psnr": sum(psnrs) / len(psnrs), "ssim": sum(ssims) / len(ssims)}

    def validate(
        self,
        step: int,
        model: GaussianModel,
        appearance: Optional[ImageAppearance] = None,
        environment: Optional[EnvironmentMap] = None,
    ) -> bool:
        """Scores the model after ``step``, appends the history line; returns whether it is the best so far."""
        entry = {"step": step, **self.score(model, appearance, environment)}
        with open(self.history_path, "a") as stream:
            stream.write(json.dumps(entry) + "\n")
        self._log_to_tensorboard(entry)
        self.latest = entry
        improved = self.best is None or entry["psnr"] > self.best["psnr"]
        if improved:
            self.best = {"step": step, "psnr": entry["psnr"]}
        return improved

    def _log_to_tensorboard(self, entry: Dict[str, float]) -> None:
        if self._tensorboard is None:
            if importlib.util.find_spec("tensorboard") is None:
                return  # optional: the history file holds the same numbers
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard, which is optional

            self._tensorboard = SummaryWriter(str(self.history_path.parent / TENSORBOARD_DIR))
        for name in ("psnr", "ssim"):
            self._tensorboard.add_scalar(f"validation/{name}", entry[name], entry["step"])
        self._tensorboard.flush()

    def history(self) -> List[Dict[str, float]]:
        """The history file's entries (lines that do not parse are left out)."""
        entries = []
        if self.history_path.is_file():
            for line in self.history_path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                if isinstance(entry, dict) and isinstance(entry.get("step"), int):
                    entries.append(entry)
        return entries

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> Dict[str, object]:
        return {"best": None if self.best is None else dict(self.best)}

    def resume(self, state: Optional[Dict[str, object]], step: int) -> None:
        """Continues after ``step`` (0: a fresh run): the best of ``state``, the history cut back to ``step``."""
        best = (state or {}).get("best")
        self.best = None if best is None else {"step": int(best["step"]), "psnr": float(best["psnr"])}
        kept = [entry for entry in self.history() if entry["step"] <= step]
        text = "".join(json.dumps(entry) + "\n" for entry in kept)
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.history_path, lambda stream: stream.write(text.encode()))
        self.latest = kept[-1] if kept else None
