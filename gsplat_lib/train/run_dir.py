"""The state of a run directory: settings and fingerprint, stage markers, checkpoints.

Layout of ``OUTPUT/``::

    settings.json                 fingerprint + the settings that change results + full config
    checkpoints/step_000150.ckpt  exact-resume checkpoints (gsplat_lib.checkpoint)
    stages/<stage>.FINISHED.json  one marker per finished stage, with its results
    data/                         the built-in scene, when no --data was given

Every file here is written atomically (temporary file, fsync, rename), so a reader sees
the old file or the complete new one. A stage counts as finished only when its marker
parses, says ``"finished": true`` and carries the run's fingerprint; a checkpoint counts
only when it loads and its digest matches. So a run killed at any point (even by
``kill -9``) resumes from what is complete and never takes a half-written file for done.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from gsplat_lib.atomic_file import write_atomically
from gsplat_lib.checkpoint import Checkpoint
from gsplat_lib.model import GaussianModel

__all__ = ["RunDirectory", "SettingsMismatchError", "write_json_atomically", "read_json"]

PathLike = Union[str, os.PathLike]

SETTINGS_FORMAT = "gsplat_lib.train.settings"
MARKER_FORMAT = "gsplat_lib.train.stage"
_CHECKPOINT_NAME = re.compile(r"^step_(\d+)\.ckpt$")


class SettingsMismatchError(ValueError):
    """The output directory belongs to a run with other settings."""


def write_json_atomically(path: PathLike, value: object) -> None:
    """Writes ``value`` as indented JSON, atomically (see :func:`gsplat_lib.atomic_file.write_atomically`)."""
    text = json.dumps(value, indent=2, sort_keys=False, allow_nan=True) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda stream: stream.write(text.encode()))


def read_json(path: PathLike) -> Optional[object]:
    """The JSON value in ``path``, or None when the file is missing or does not parse."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class RunDirectory:
    """One run's output directory.

    Args:
        root: the directory (created when missing).
        fingerprint: the run's :meth:`TrainConfig.fingerprint`.
    """

    STAGES = ("train", "evaluate", "export", "mesh")

    def __init__(self, root: PathLike, fingerprint: str) -> None:
        self.root = Path(root)
        self.fingerprint = fingerprint
        self.checkpoint_dir = self.root / "checkpoints"
        self.stage_dir = self.root / "stages"
        self.settings_path = self.root / "settings.json"

    # ------------------------------------------------------------------ settings

    def claim(self, settings: Dict[str, object], config: Dict[str, object]) -> bool:
        """Records the settings in a new directory, or checks them against an existing one.

        Returns True when the directory already held this run (a resumption).
        Raises :class:`SettingsMismatchError` naming the differing settings when it holds
        another run, and ValueError when it holds files but no readable settings (not a
        run directory, or one whose settings file was damaged).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        existing = read_json(self.settings_path)
        if existing is None:
            leftovers = [p.name for p in self.root.iterdir() if p.name not in ("data",) and not p.name.startswith(".")]
            if self.settings_path.exists() or leftovers:
                raise ValueError(
                    f"{self.root} is not empty ({', '.join(sorted(leftovers)[:5])}) and holds no readable "
                    f"settings.json: not a gsplat-train output directory. Choose another --output, or "
                    f"pass --force to clear the run files in it."
                )
            write_json_atomically(
                self.settings_path,
                {"format": SETTINGS_FORMAT, "fingerprint": self.fingerprint, "settings": settings, "config": config},
            )
            return False
        if not isinstance(existing, dict) or existing.get("format") != SETTINGS_FORMAT:
            raise ValueError(f"{self.settings_path} is not a gsplat-train settings file")
        if existing.get("fingerprint") == self.fingerprint:
            return True
        differences = _differences(existing.get("settings", {}), settings)
        listed = "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in differences) or "(unknown)"
        raise SettingsMismatchError(
            f"{self.root} holds a run with different settings ({listed}). Re-run with the same "
            f"settings to resume it, choose another --output, or pass --force to discard it and start over."
        )

    def clear(self) -> None:
        """Removes every file of a run (settings, checkpoints, markers, outputs), keeping ``data/``."""
        if not self.root.exists():
            return
        for entry in self.root.iterdir():
            if entry.name == "data":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # ------------------------------------------------------------------ stage markers

    def marker_path(self, stage: str) -> Path:
        if stage not in self.STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {self.STAGES}")
        return self.stage_dir / f"{stage}.FINISHED.json"

    def finished(self, stage: str) -> Optional[Dict[str, object]]:
        """The results recorded by a finished ``stage``, or None when it has not finished."""
        marker = read_json(self.marker_path(stage))
        if (
            isinstance(marker, dict)
            and marker.get("format") == MARKER_FORMAT
            and marker.get("finished") is True
            and marker.get("fingerprint") == self.fingerprint
            and isinstance(marker.get("results"), dict)
        ):
            return marker["results"]
        return None

    def mark_finished(self, stage: str, results: Dict[str, object]) -> None:
        """Writes the marker of ``stage`` with its ``results`` (JSON values), atomically."""
        write_json_atomically(
            self.marker_path(stage),
            {
                "format": MARKER_FORMAT,
                "stage": stage,
                "finished": True,
                "fingerprint": self.fingerprint,
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "results": results,
            },
        )

    def unmark(self, stage: str) -> None:
        """Forgets that ``stage`` finished (so it runs again)."""
        self.marker_path(stage).unlink(missing_ok=True)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoint_dir / f"step_{step:06d}.ckpt"

    def checkpoints(self) -> List[Tuple[int, Path]]:
        """(step, path) of every checkpoint file, oldest first (temporary files are not listed)."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = []
        for entry in self.checkpoint_dir.iterdir():
            match = _CHECKPOINT_NAME.match(entry.name)
            if match and entry.is_file():
                found.append((int(match.group(1)), entry))
        return sorted(found)

    def latest_checkpoint(self, device="cpu") -> Optional[Tuple[Path, Checkpoint]]:
        """The newest checkpoint that loads completely (digest checked), with its content.

        A damaged file is skipped with a warning and the next older one tried. Loading
        restores the global RNG states, as an exact resume needs.
        """
        for step, path in reversed(self.checkpoints()):
            try:
                checkpoint = GaussianModel.load_checkpoint(path, device=device)
            except ValueError as error:
                warnings.warn(f"skipping damaged checkpoint {path}: {error}", RuntimeWarning, stacklevel=2)
                continue
            if checkpoint.step != step:
                warnings.warn(f"skipping {path}: it holds step {checkpoint.step}", RuntimeWarning, stacklevel=2)
                continue
            return path, checkpoint
        return None

    def prune_checkpoints(self, keep: int) -> None:
        """Deletes all but the ``keep`` newest checkpoints."""
        for _, path in self.checkpoints()[:-keep] if keep > 0 else self.checkpoints():
            path.unlink(missing_ok=True)


def _differences(old: Dict[str, object], new: Dict[str, object], prefix: str = "") -> List[Tuple[str, object, object]]:
    found = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, prefix=f"{prefix}{key}.")
        elif a != b and not (isinstance(a, list) and isinstance(b, (list, tuple)) and list(b) == a):
            found.append((prefix + key, a, b))
    return found
