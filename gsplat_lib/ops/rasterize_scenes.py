"""Many scenes in one rasterizer call: the packed (camera, surfel) items of scene ids.

With ``scene_ids [N]`` and ``camera_scene_ids [C]`` a camera renders only its scene's surfels.
An item is then a (camera, surfel) pair of the same scene, and the items come packed: by
camera, then surfel, so camera c's items are its scene's surfels in index order, exactly the
items (and order) of a call with only that scene's surfels. What every pass needs of them is
built here once per call (docs/design.md, "Many scenes in one call").
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from gsplat_lib import _backend
from gsplat_lib.ops.host_reads import read_now

__all__ = ["SceneItems", "check_scene_ids", "plan_scene_items", "scene_items"]

# Plans of the last few id tensors: a training loop that passes the same ids each step reads
# them from the device once, not per call (docs/design.md, "Pair capacity").
_PLANS_KEPT = 4
_plans: "OrderedDict[tuple, Tuple[Tuple[torch.Tensor, torch.Tensor], SceneItems]]" = OrderedDict()


@dataclass(frozen=True)
class SceneItems:
    """The packed items of one call: I items, S scenes (int64 tensors on the call's device)."""

    num_scenes: int                   # S, scene ids lie in [0, S)
    num_items: int                    # I
    camera_items: torch.Tensor        # [C + 1] camera c's items are [camera_items[c], camera_items[c + 1])
    item_cameras: torch.Tensor        # [I] the camera of each item
    item_surfels: torch.Tensor        # [I] the surfel of each item
    scene_surfels: torch.Tensor       # [N] the surfels by scene, each scene's in index order
    scene_surfel_starts: torch.Tensor  # [S + 1] where each scene's surfels start in scene_surfels
    scene_cameras: torch.Tensor       # [C] the cameras by scene, each scene's in order
    scene_camera_starts: torch.Tensor  # [S + 1] where each scene's cameras start in scene_cameras

    def buffers(self) -> dict:
        """The lists, by the name of the compiled passes' fields."""
        return dict(camera_items=self.camera_items, item_surfels=self.item_surfels, scene_surfels=self.scene_surfels,
                    scene_surfel_starts=self.scene_surfel_starts, scene_cameras=self.scene_cameras,
                    scene_camera_starts=self.scene_camera_starts)


def _check_ids(name: str, value: object, count: int, what: str, device: torch.device) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [{count}] of int64, got {type(value).__name__}")
    if value.dtype != torch.int64:
        raise ValueError(f"{name} must have dtype torch.int64, got {value.dtype}")
    if tuple(value.shape) != (count,):
        raise ValueError(f"{name} must have shape [{count}] (one scene id per {what}), got {list(value.shape)}")
    if value.device != device:
        raise ValueError(f"{name} must be on {device} like means, got {value.device}")
    return value.contiguous()


def check_scene_ids(scene_ids: Optional[torch.Tensor], camera_scene_ids: Optional[torch.Tensor], num_surfels: int,
                    num_cameras: int, device: torch.device) -> Optional[Tuple[torch.Tensor, torch.Tensor, int]]:
    """``(scene_ids, camera_scene_ids, S)`` with the ids in [0, S), or None when neither is given.

    ValueError naming the argument for a missing partner, a wrong dtype, shape or device, or a
    negative id. Ids need not be consecutive; sparse ones (more than N + C + 1 possible values)
    are renumbered in order, so the per-scene tables stay small.
    """
    if scene_ids is None and camera_scene_ids is None:
        return None
    if scene_ids is None or camera_scene_ids is None:
        missing = "scene_ids" if scene_ids is None else "camera_scene_ids"
        raise ValueError(f"{missing} is required with {'camera_scene_ids' if scene_ids is None else 'scene_ids'}: "
                         "give both (a scene id per surfel and per camera) or neither")
    scene_ids = _check_ids("scene_ids", scene_ids, num_surfels, "surfel", device)
    camera_scene_ids = _check_ids("camera_scene_ids", camera_scene_ids, num_cameras, "camera", device)
    highest = -1
    for name, ids in (("scene_ids", scene_ids), ("camera_scene_ids", camera_scene_ids)):
        if ids.numel() == 0:
            continue
        lowest, top = read_now(torch.stack(torch.aminmax(ids)))
        if lowest < 0:
            first = int((ids < 0).nonzero()[0, 0])
            raise ValueError(f"{name} must be >= 0, got {name}[{first}] = {int(ids[first])}")
        highest = max(highest, top)
    num_scenes = highest + 1
    if num_scenes > num_surfels + num_cameras + 1:
        joined, inverse = torch.unique(torch.cat((scene_ids, camera_scene_ids)), return_inverse=True)
        scene_ids, camera_scene_ids = inverse[:num_surfels].contiguous(), inverse[num_surfels:].contiguous()
        num_scenes = joined.numel()
    return scene_ids, camera_scene_ids, max(num_scenes, 1)


def _identity(tensor: torch.Tensor) -> tuple:
    return (tensor.device, tensor.data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride(),
            tensor.dtype, tensor._version)


def scene_items(scene_ids: Optional[torch.Tensor], camera_scene_ids: Optional[torch.Tensor], num_surfels: int,
                num_cameras: int, device: torch.device) -> Optional[SceneItems]:
    """The packed items of a call's ids (checked as by :func:`check_scene_ids`), or None without.

    The plan of ids seen in one of the last few calls is reused when both tensors are the same
    memory, unchanged since (autograd's version counter; a write through ``.data`` or numpy
    bypasses it and is not seen). The cache holds the tensors, so their memory is not reused.
    """
    key = None
    if isinstance(scene_ids, torch.Tensor) and isinstance(camera_scene_ids, torch.Tensor):
        key = (_identity(scene_ids), _identity(camera_scene_ids), num_surfels, num_cameras, device)
        if key in _plans:
            _plans.move_to_end(key)
            return _plans[key][1]
    checked = check_scene_ids(scene_ids, camera_scene_ids, num_surfels, num_cameras, device)
    if checked is None:
        return None
    plan = plan_scene_items(*checked)
    if key is not None:
        _plans[key] = ((scene_ids, camera_scene_ids), plan)
        if len(_plans) > _PLANS_KEPT:
            _plans.popitem(last=False)
    return plan


def _exclusive_starts(counts: torch.Tensor) -> torch.Tensor:
    """[len + 1] int64: 0, then the running sum of counts."""
    starts = torch.zeros(counts.numel() + 1, dtype=torch.int64, device=counts.device)
    torch.cumsum(counts, dim=0, out=starts[1:])
    return starts


def plan_scene_items(scene_ids: torch.Tensor, camera_scene_ids: torch.Tensor, num_scenes: int,
                     use_torch: Optional[bool] = None) -> SceneItems:
    """The packed items of checked ids in [0, num_scenes).

    The CPU runs a compiled counting sort; CUDA (or ``use_torch=True``) builds the same lists
    with torch.sort (tested equal).
    """
    device = scene_ids.device
    i64 = dict(dtype=torch.int64, device=device)
    num_surfels, num_cameras = scene_ids.numel(), camera_scene_ids.numel()
    surfel_counts = torch.bincount(scene_ids, minlength=num_scenes)
    scene_surfel_starts = _exclusive_starts(surfel_counts)
    camera_item_counts = surfel_counts[camera_scene_ids]
    camera_items = _exclusive_starts(camera_item_counts)
    num_items = read_now(camera_items[-1])
    scene_camera_starts = _exclusive_starts(torch.bincount(camera_scene_ids, minlength=num_scenes))
    scene_cameras = torch.sort(camera_scene_ids, stable=True).indices
    if use_torch is None:
        use_torch = device.type != "cpu"
    if use_torch:
        scene_surfels = torch.sort(scene_ids, stable=True).indices
        item_cameras = torch.repeat_interleave(torch.arange(num_cameras, **i64), camera_item_counts,
                                               output_size=num_items)
        scene_offsets = (scene_surfel_starts[:-1][camera_scene_ids] - camera_items[:-1])[item_cameras]
        item_surfels = scene_surfels[torch.arange(num_items, **i64) + scene_offsets]
    else:
        scene_surfels = torch.empty(num_surfels, **i64)
        item_cameras = torch.empty(num_items, **i64)
        item_surfels = torch.empty(num_items, **i64)
        fields = dict(num_cameras=num_cameras, num_surfels=num_surfels, num_items=num_items, num_scenes=num_scenes)
        for name, tensor in dict(scene_ids=scene_ids, camera_scene_ids=camera_scene_ids,
                                 scene_surfel_starts=scene_surfel_starts, camera_items=camera_items,
                                 scene_surfels=scene_surfels, item_cameras=item_cameras,
                                 item_surfels=item_surfels).items():
            fields[name] = _backend.buffer(tensor)
        _backend.launch("rasterize_plan_scenes", device, fields)
    return SceneItems(num_scenes=num_scenes, num_items=num_items, camera_items=camera_items,
                      item_cameras=item_cameras, item_surfels=item_surfels, scene_surfels=scene_surfels,
                      scene_surfel_starts=scene_surfel_starts, scene_cameras=scene_cameras,
                      scene_camera_starts=scene_camera_starts)
