"""Fuzzing every entry point with random bad input, each case in a subprocess.

A case is a (family, seed) pair: the family's builder makes the input from the seed, calls the
entry point and says what happened (docs/design.md, decision 6):

- ``ok``: it returned, and everything it returned (outputs, gradients, loaded values) is finite;
- ``refused``: it raised ValueError, TypeError or FileNotFoundError whose message names the
  argument or the file at fault;
- ``failure``: anything else: another exception, a message that names nothing, a NaN that
  leaked, corrupt data loaded without a word, global state changed by a refused call;

and the harness adds ``crash`` (the worker died: a signal, an abort) and ``hang`` (past the
timeout). Workers run cases in batches and report each one as it ends, so a crash or hang is
pinned on the case that started and never finished; the rest of its batch runs again.

``tests/test_fuzz.py`` runs a fixed sample in CI; ``tools/fuzz.py`` runs long campaigns.
Run one case by hand with ``python tests/fuzzing.py --case FAMILY SEED``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ALLOWED_ERRORS = (ValueError, TypeError, FileNotFoundError)
SPECIAL_FLOATS = (
    float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-45, -1e-45, 1e-30, 1e20, -1e20, 3e38, -3e38,
)


class Outcome(Exception):
    """Raised by a case to report a failure it detected itself."""


@dataclass
class Result:
    family: str
    seed: int
    status: str  # ok | refused | failure | crash | hang
    detail: str = ""

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


# ---------------------------------------------------------------------- checks shared by families


def _finite(name: str, value) -> None:
    import torch

    if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise Outcome(f"{name} holds NaN or Inf")


def _names_one_of(error: BaseException, names: Sequence[str]) -> bool:
    text = str(error)
    return any(name in text for name in names)


def _call(entry: Callable[[], object], names: Sequence[str], check: Callable[[object], None]) -> str:
    """Runs ``entry``: 'refused' when it raises an allowed error naming one of ``names``,
    'ok' when it returns and ``check`` accepts the value; Outcome otherwise."""
    try:
        value = entry()
    except ALLOWED_ERRORS as error:
        if not _names_one_of(error, names):
            raise Outcome(f"{type(error).__name__} names none of {list(names)[:6]}: {error}") from None
        return "refused"
    check(value)
    return "ok"


# ---------------------------------------------------------------------- family: rasterize

RASTER_ARGUMENTS = (
    "means", "quats", "scales", "opacities", "colors", "sh", "sh_degree", "viewmats", "Ks", "width", "height",
    "near", "far", "backgrounds", "scale_modifier", "deterministic",
)


def case_rasterize(rng: random.Random, workdir: Path) -> str:
    import torch

    import gsplat_lib

    generator = torch.Generator().manual_seed(rng.randrange(2**31))
    num_surfels, num_cameras = rng.choice((0, 1, 2, 5, 20)), rng.choice((1, 2))
    width, height = rng.randint(1, 40), rng.randint(1, 40)
    args: Dict[str, object] = {
        "means": torch.randn(num_surfels, 3, generator=generator) * 0.5,
        "quats": torch.randn(num_surfels, 4, generator=generator),
        "scales": torch.rand(num_surfels, 2, generator=generator) * 0.3 + 0.01,
        "opacities": torch.rand(num_surfels, generator=generator),
    }
    if rng.random() < 0.5:
        degree = rng.randint(0, 3)
        args["sh"] = torch.randn(num_surfels, (degree + 1) ** 2, 3, generator=generator) * 0.5
        args["sh_degree"] = degree
        channels = 3
    else:
        channels = rng.choice((1, 3, 4))
        args["colors"] = torch.rand(num_surfels, channels, generator=generator)
    eyes = [(rng.uniform(-1, 1), rng.uniform(-1, 1), -3.0 + rng.uniform(-0.5, 0.5)) for _ in range(num_cameras)]
    args["viewmats"] = torch.stack([gsplat_lib.look_at(eye) for eye in eyes])
    focal = rng.uniform(10, 60)
    args["Ks"] = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]]).repeat(
        num_cameras, 1, 1)
    args.update(width=width, height=height, near=0.01, far=100.0)
    if rng.random() < 0.3:
        args["backgrounds"] = torch.rand(num_cameras, channels, generator=generator)
    for _ in range(rng.randint(1, 3)):
        _mutate_raster_argument(rng, args, generator)
    leaves = {}
    for name, value in args.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and name not in ("viewmats", "Ks"):
            leaves[name] = value.detach().clone().requires_grad_(True)
            args[name] = leaves[name]

    def render():
        result = gsplat_lib.rasterize_surfels(**args)
        images = (result.colors, result.alphas, result.depths, result.median_depths, result.normals,
                  result.distortions)
        for name, image in zip(("colors", "alphas", "depths", "median_depths", "normals", "distortions"), images):
            _finite(f"output {name}", image)
        if leaves and any(image.requires_grad for image in images):
            loss = sum((image * torch.randn(image.shape, generator=generator)).sum() for image in images)
            loss.backward()
        return result

    def check(_result) -> None:
        for name, leaf in leaves.items():
            if leaf.grad is not None:
                _finite(f"gradient of {name}", leaf.grad)

    return _call(render, RASTER_ARGUMENTS, check)


def _cameras_intact(args: Dict[str, object]) -> bool:
    """Whether an earlier mutation left float [C, 4, 4] view matrices and [C, 3, 3] intrinsics, C >= 1."""
    import torch

    viewmats, Ks = args["viewmats"], args["Ks"]
    return (isinstance(viewmats, torch.Tensor) and isinstance(Ks, torch.Tensor)
            and viewmats.is_floating_point() and Ks.is_floating_point()
            and viewmats.dim() == 3 and tuple(viewmats.shape[1:]) == (4, 4) and viewmats.shape[0] > 0
            and Ks.dim() == 3 and tuple(Ks.shape[1:]) == (3, 3) and Ks.shape[0] == viewmats.shape[0])


def _mutate_raster_argument(rng: random.Random, args: Dict[str, object], generator) -> None:
    import torch

    kind = rng.choice(("value", "value", "value", "camera", "size", "planes", "type", "shape", "sh_degree"))
    tensors = [name for name, value in args.items() if isinstance(value, torch.Tensor) and value.numel() > 0]
    floating = [name for name in tensors if args[name].is_floating_point()]
    if kind == "value" and floating:
        name = rng.choice(floating)
        value = args[name].clone()
        flat = value.view(-1)
        for _ in range(rng.randint(1, 3)):
            flat[rng.randrange(flat.numel())] = rng.choice(SPECIAL_FLOATS)
        args[name] = value
    elif kind == "camera" and _cameras_intact(args):
        viewmats, Ks = args["viewmats"].clone(), args["Ks"].clone()
        camera = rng.randrange(viewmats.shape[0])
        change = rng.choice(("singular", "scaled", "far", "focal", "principal", "last_row", "nan_view"))
        if change == "singular":
            viewmats[camera, :3, :3] = 0.0
        elif change == "scaled":
            viewmats[camera, :3, :3] *= rng.choice((1e-20, 1e20, -1.0))
        elif change == "far":
            viewmats[camera, :3, 3] = rng.choice((1e20, 3e38, -3e38))
        elif change == "focal":
            Ks[camera, rng.choice((0, 1)), rng.choice((0, 1))] = rng.choice((0.0, -30.0, 1e-30, 1e30, 3e38))
        elif change == "principal":
            Ks[camera, rng.choice((0, 1)), 2] = rng.choice((-1e30, 1e30, 3e38))
        elif change == "last_row":
            Ks[camera, 2, rng.randrange(3)] = rng.choice((0.0, 2.0, float("nan")))
        else:
            viewmats[camera, rng.randrange(3), rng.randrange(4)] = rng.choice((float("nan"), float("inf")))
        args["viewmats"], args["Ks"] = viewmats, Ks
    elif kind == "size":
        args[rng.choice(("width", "height"))] = rng.choice((0, -1, 1, 2, 1.5, True, None, "8", 3000))
    elif kind == "planes":
        name = rng.choice(("near", "far", "scale_modifier"))
        args[name] = rng.choice((0.0, -1.0, float("nan"), float("inf"), 1e-30, 1e30, "1", None))
    elif kind == "type" and tensors:
        name = rng.choice(tensors)
        args[name] = args[name].to(rng.choice((torch.float64, torch.int32, torch.float16, torch.bool)))
    elif kind == "shape" and tensors:
        name = rng.choice(tensors)
        value = args[name]
        args[name] = rng.choice((value[..., :-1], value.unsqueeze(0), value.reshape(-1), value[:0]))
    elif kind == "sh_degree":
        args["sh_degree"] = rng.choice((-1, 4, 9, 1.0, True, None))


# ---------------------------------------------------------------------- family: knn


def case_knn(rng: random.Random, workdir: Path) -> str:
    import torch

    import gsplat_lib

    count = rng.choice((0, 1, 2, 3, 4, 7, 50))
    points = torch.randn(count, 3, generator=torch.Generator().manual_seed(rng.randrange(2**31)))
    if count and rng.random() < 0.4:
        points[rng.randrange(count)] = points[rng.randrange(count)]  # duplicates
    if count and rng.random() < 0.3:
        points.view(-1)[rng.randrange(points.numel())] = rng.choice(SPECIAL_FLOATS)
    if rng.random() < 0.2:
        points = rng.choice((points.double(), points[:, :2], points.reshape(-1), points.int()))
    k = rng.choice((1, 3, count, count + 1, 0, -1, 2**31 - 1, 2**31, 2**62, 1.5, True, "3"))
    if rng.random() < 0.5:
        def check(result) -> None:
            indices, sq_dists = result
            if indices.shape != (points.shape[0], k):
                raise Outcome(f"indices have shape {tuple(indices.shape)}")
            if bool(torch.isnan(sq_dists).any()) or bool(((indices < -1) | (indices >= points.shape[0])).any()):
                raise Outcome("knn returned NaN distances or out-of-range indices")

        return _call(lambda: gsplat_lib.knn(points, k), ("points", "k"), check)

    def check_dist2(result) -> None:
        if bool(torch.isnan(result).any()) or bool((result <= 0).any()):
            raise Outcome("knn_dist2 returned NaN or a non-positive value")

    return _call(lambda: gsplat_lib.knn_dist2(points, k), ("points", "k"), check_dist2)


# ---------------------------------------------------------------------- family: ply


def _random_params(rng: random.Random, count: int, degree: int):
    from random_params import random_params

    return random_params(count, degree, rng.randrange(2**31))


def case_ply(rng: random.Random, workdir: Path) -> str:
    import gsplat_lib

    path = workdir / "surfels.ply"
    params = _random_params(rng, rng.choice((0, 1, 3, 10)), rng.randint(0, 3))
    gsplat_lib.save_ply(path, params, three_scales=rng.random() < 0.3)
    must_refuse = _mutate_ply(rng, path, params)

    def check(loaded) -> None:
        if must_refuse:
            raise Outcome(f"a corrupt file ({must_refuse}) was loaded without an error")
        for name, value in loaded.items():
            _finite(f"loaded {name}", value)
        rows = {value.shape[0] for value in loaded.values()}
        if len(rows) != 1:
            raise Outcome(f"loaded parameters disagree on the row count: {rows}")

    return _call(lambda: gsplat_lib.load_ply(path), (str(path),), check)


def _mutate_ply(rng: random.Random, path: Path, params) -> str:
    """Changes the file; returns why the result is corrupt (must be refused), or '' if it may load."""
    data = path.read_bytes()
    header_end = data.index(b"end_header\n") + len(b"end_header\n")
    header, body = data[:header_end].decode("ascii"), data[header_end:]
    kind = rng.choice(("truncate", "flip", "count", "type", "list", "rename", "garbage", "ascii", "random", "empty"))
    if kind == "truncate" and len(data) > 1:
        path.write_bytes(data[: rng.randrange(1, len(data))])
        return "truncated"
    if kind == "flip":
        mutable = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutable[rng.randrange(len(mutable))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(mutable))
        return ""  # a flipped bit in a value may still be a valid file
    if kind == "count":
        count = params["means"].shape[0]
        new_count = rng.choice((0, count - 1, count + 1, 2**40)) if count else rng.choice((1, 2**40))
        if new_count < 0 or new_count == count:
            new_count = count + 1
        header = header.replace(f"element vertex {count}\n", f"element vertex {new_count}\n")
        path.write_bytes(header.encode("ascii") + body)
        return "vertex count disagrees with the data"
    if kind == "type":
        header = header.replace("property float x", f"property {rng.choice(('double', 'uchar', 'short'))} x")
        path.write_bytes(header.encode("ascii") + body)
        return "the rows no longer match the data" if params["means"].shape[0] else ""
    if kind == "list":
        header = header.replace("property float opacity", "property list uchar float opacity")
        path.write_bytes(header.encode("ascii") + body)
        return "a list-typed property"
    if kind == "rename":
        header = header.replace("property float rot_0", "property float rot_9")
        path.write_bytes(header.encode("ascii") + body)
        return "missing property rot_0"
    if kind == "garbage":
        path.write_bytes(data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))))
        return "trailing bytes after the data"
    if kind == "ascii":
        from plyfile import PlyData

        ply = PlyData.read(str(path))
        ply.text = True
        buffer = io.BytesIO()
        ply.write(buffer)
        text = buffer.getvalue()
        count = params["means"].shape[0]
        if count and rng.random() < 0.5:
            text = text.replace(b"end_header\n", b"end_header\n" + text.splitlines()[-1] + b"\n", 1)
            path.write_bytes(text)
            return "an extra ASCII row"
        path.write_bytes(text + b"1 2 3\n")
        return "an extra ASCII row"
    if kind == "random":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))))
        return "not a PLY file"
    path.write_bytes(b"")
    return "an empty file"


# ---------------------------------------------------------------------- family: checkpoint


def _small_training_state(rng: random.Random):
    import torch

    import gsplat_lib

    count = rng.choice((1, 4, 12))
    generator = torch.Generator().manual_seed(rng.randrange(2**31))
    model = gsplat_lib.GaussianModel.from_points(
        torch.randn(count, 3, generator=generator), torch.rand(count, 3, generator=generator),
        scene_extent=1.0, sh_degree=rng.randint(0, 3), seed=rng.randrange(1000),
    )
    for param in model.params.values():
        param.grad = torch.randn(param.shape, generator=generator)
    model.optimizer.step()
    strategy = gsplat_lib.DefaultStrategy(seed=rng.randrange(1000)) if rng.random() < 0.7 else None
    return model, strategy


def case_checkpoint(rng: random.Random, workdir: Path) -> str:
    import torch

    import gsplat_lib
    from gsplat_lib import checkpoint as checkpoint_module

    path = workdir / "step.ckpt"
    model, strategy = _small_training_state(rng)
    gsplat_lib.save_checkpoint(path, model, step=rng.randint(0, 100), strategy=strategy, config={"seed": 1})
    must_refuse = _mutate_checkpoint(rng, path, checkpoint_module)
    before = checkpoint_module.capture_rng_states()

    def same_rng() -> bool:
        after = checkpoint_module.capture_rng_states()
        return (torch.equal(before["torch_cpu"], after["torch_cpu"])
                and torch.equal(before["numpy"]["keys"], after["numpy"]["keys"])
                and before["numpy"]["pos"] == after["numpy"]["pos"] and before["python"] == after["python"])

    def load():
        try:
            return gsplat_lib.load_checkpoint(path)
        except ALLOWED_ERRORS:
            if not same_rng():
                raise Outcome("a refused checkpoint changed the global RNG states") from None
            raise

    def check(loaded) -> None:
        if must_refuse:
            raise Outcome(f"a corrupt checkpoint ({must_refuse}) was loaded without an error")
        for name, value in loaded.model.params.items():
            _finite(f"parameter {name}", value)
        for group in loaded.model.optimizer.param_groups:
            if not (math.isfinite(group["lr"]) and group["lr"] >= 0):
                raise Outcome(f"learning rate {group['lr']} of {group['name']} was loaded")

    return _call(load, (str(path),), check)


def _mutate_checkpoint(rng: random.Random, path: Path, checkpoint_module) -> str:
    import torch

    kind = rng.choice(("flip", "truncate", "content", "content", "content"))
    data = path.read_bytes()
    if kind == "flip":
        mutable = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            mutable[rng.randrange(len(mutable))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(mutable))
        return ""  # a flip in zip padding may change nothing: either outcome is fine when finite
    if kind == "truncate":
        path.write_bytes(data[: rng.randrange(len(data))])
        return "truncated"
    payload = torch.load(path, weights_only=True)
    content = payload["content"]
    change = rng.choice((
        "numpy_generator", "python_version", "torch_short", "nan_param", "nan_lr", "negative_lr", "step",
        "moment_shape", "strategy_name", "missing",
    ))
    model_state = content["model"]
    if change == "numpy_generator":
        content["rng"]["numpy"]["bit_generator"] = "PCG64"
    elif change == "python_version":
        content["rng"]["python"][0] = 99
    elif change == "torch_short":
        content["rng"]["torch_cpu"] = content["rng"]["torch_cpu"][:100]
    elif change == "nan_param":
        params = model_state["params"]
        name = rng.choice(sorted(params))
        if params[name].numel() == 0:
            return ""
        params[name].view(-1)[0] = rng.choice((float("nan"), float("inf")))
    elif change == "nan_lr":
        model_state["optimizer"]["param_groups"][rng.randrange(6)]["lr"] = float("nan")
    elif change == "negative_lr":
        model_state["optimizer"]["param_groups"][rng.randrange(6)]["lr"] = -1.0
    elif change == "step":
        content["step"] = rng.choice((-1, 1.5, "7"))
    elif change == "moment_shape":
        states = model_state["optimizer"]["state"]
        key = rng.choice(sorted(states))
        states[key]["exp_avg"] = states[key]["exp_avg"][:0]
    elif change == "strategy_name":
        if content["strategy"] is None:
            return ""
        content["strategy"]["name"] = "NoSuchStrategy"
    else:
        del content[rng.choice(("rng", "model", "step", "config"))]
    payload["digest"] = checkpoint_module._digest(content)
    torch.save(payload, path)
    return change


# ---------------------------------------------------------------------- family: dataset


def _tiny_cameras(rng: random.Random, count: int):
    import numpy as np

    import gsplat_lib
    from gsplat_lib.data import Camera

    cameras = []
    for index in range(count):
        angle = 2 * math.pi * index / count
        eye = (3 * math.cos(angle), 3 * math.sin(angle), 1.0)
        viewmat = gsplat_lib.look_at(eye, up=(0.0, 0.0, 1.0)).numpy()
        K = np.array([[12.0, 0, 6], [0, 12.0, 4], [0, 0, 1]], np.float32)
        image = np.full((8, 12, 3), rng.random(), np.float32)
        cameras.append(Camera(f"v{index:02d}.png", viewmat, K, 12, 8, image))
    return cameras


def case_dataset(rng: random.Random, workdir: Path) -> str:
    import numpy as np

    from gsplat_lib import data

    folder = workdir / "scene"
    cameras = _tiny_cameras(rng, rng.randint(1, 5))
    points = np.random.default_rng(rng.randrange(2**31)).normal(size=(rng.choice((0, 5)), 3))
    layout = rng.choice(("colmap_binary", "colmap_text", "nerf"))
    if layout == "nerf":
        data.write_nerf_synthetic(folder, cameras[:-1] or cameras, cameras[-1:] if len(cameras) > 1 else [])
        targets = sorted(folder.glob("transforms_*.json"))
    else:
        writer = data.write_colmap_binary if layout == "colmap_binary" else data.write_colmap_text
        writer(folder, cameras, points, np.full_like(points, 0.5))
        targets = sorted((folder / "sparse" / "0").iterdir())
    target = rng.choice(targets)
    if target.suffix == ".json" and rng.random() < 0.7:
        meta = json.loads(target.read_text())
        _mutate_json(rng, meta)
        target.write_text(json.dumps(meta))
    else:
        raw = bytearray(target.read_bytes())
        if rng.random() < 0.5 and len(raw) > 1:
            del raw[rng.randrange(1, len(raw)):]
        else:
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        target.write_bytes(bytes(raw))

    def check(scene) -> None:
        for camera in scene.train + scene.test:
            viewmat, K = camera.viewmat.astype(np.float64), camera.K.astype(np.float64)
            if not (np.all(np.isfinite(viewmat)) and np.all(np.isfinite(K))):
                raise Outcome(f"camera {camera.name} was loaded with a non-finite pose or K")
            if abs(np.linalg.det(viewmat[:3, :3]) - 1.0) > 0.05 or not (K[0, 0] > 0 and K[1, 1] > 0):
                raise Outcome(f"camera {camera.name} was loaded with a degenerate pose or focal length")
            if not np.all(np.isfinite(camera.image)):
                raise Outcome(f"camera {camera.name} has a non-finite image")
        if not np.all(np.isfinite(scene.points)):
            raise Outcome("non-finite points were loaded")

    return _call(lambda: data.load_scene(folder, num_random_points=10), (str(folder),), check)


_JSON_JUNK = (float("nan"), float("inf"), 0, -1, 1e308, "text", [], {}, None, [[1, 2], [3]], True, 2**70)


def _mutate_json(rng: random.Random, value) -> None:
    """Replaces one random leaf or container somewhere in a JSON tree with junk."""
    path = []
    node = value
    while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
        key = rng.choice(sorted(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append((node, key))
        node = node[key]
    if path:
        container, key = path[-1]
        container[key] = rng.choice(_JSON_JUNK)


# ---------------------------------------------------------------------- family: densify


def case_densify(rng: random.Random, workdir: Path) -> str:
    import torch

    import gsplat_lib

    model, _ = _small_training_state(rng)
    strategy = gsplat_lib.DefaultStrategy(refine_start=0, refine_every=1, reset_every=1000, seed=1)
    count, cameras = model.num_surfels, rng.choice((1, 2))

    class FakeResult:  # what step_post_backward reads of a RasterResult
        pass

    result = FakeResult()
    grad = torch.randn(cameras, count, 2) * 1e-3
    for _ in range(rng.randint(1, 3)):
        grad.view(-1)[rng.randrange(grad.numel())] = rng.choice(SPECIAL_FLOATS)
    result.screen_grad = torch.zeros(cameras, count, 2, requires_grad=True)
    result.screen_grad.grad = grad
    result.screen_absgrad = torch.zeros(cameras, count, 2, requires_grad=True)
    result.screen_absgrad.grad = grad.abs()
    result.radii = torch.randint(0, 30, (cameras, count, 2), dtype=torch.int32)
    result.colors = torch.zeros(cameras, 8, 8, 3)

    def step():
        strategy.step_post_backward(model, result, 2)
        return model

    def check(model_after) -> None:
        for name, value in model_after.params.items():
            _finite(f"parameter {name} after densification", value)

    return _call(step, ("screen_grad", "radii", "DefaultStrategy"), check)


# ---------------------------------------------------------------------- family: cli


def case_cli(rng: random.Random, workdir: Path) -> str:
    import numpy as np

    from gsplat_lib import data

    folder = workdir / "scene"
    cameras = _tiny_cameras(rng, 4)
    data.write_colmap_binary(folder, cameras, np.random.default_rng(0).normal(size=(30, 3)) * 0.3,
                             np.full((30, 3), 0.5))
    flags = ["--data", str(folder), "--output", str(workdir / "run"), "--iterations", "4", "--no-progress",
             "--test-every", "0"]
    bad = rng.choice((
        ["--sh-degree", rng.choice(("4", "-1", "x"))], ["--prune-opacity", rng.choice(("0.99", "-1", "nan", "2"))],
        ["--iterations", rng.choice(("0", "-3", "1e9x"))], ["--batch-size", rng.choice(("0", "9"))],
        ["--downscale", rng.choice(("0", "-2", "100"))], ["--data", rng.choice(("/nonexistent", str(workdir)))],
        ["--lr-means-init", rng.choice(("nan", "-1", "inf"))], ["--near", rng.choice(("0", "-1", "1e9"))],
        ["--device", rng.choice(("tpu", "cuda:99", ""))], ["--grad-threshold", rng.choice(("nan", "-1"))],
    ))
    command = [sys.executable, "-m", "gsplat_lib.train", *flags, *bad]
    process = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=workdir,
                             env=_worker_env())
    if "Traceback" in process.stderr:
        raise Outcome(f"{' '.join(bad)} ended in a traceback: {process.stderr.strip().splitlines()[-1]}")
    if process.returncode == 0:
        return "ok"
    last = process.stderr.strip().splitlines()[-1] if process.stderr.strip() else ""
    if not last:
        raise Outcome(f"{' '.join(bad)} exited with {process.returncode} and no message")
    return "refused"


FAMILIES: Dict[str, Callable[[random.Random, Path], str]] = {
    "rasterize": case_rasterize,
    "knn": case_knn,
    "ply": case_ply,
    "checkpoint": case_checkpoint,
    "dataset": case_dataset,
    "densify": case_densify,
    "cli": case_cli,
}


# ---------------------------------------------------------------------- running cases


def run_case(family: str, seed: int) -> Result:
    """Runs one case in this process (the worker's body)."""
    rng = random.Random(f"{family}:{seed}")
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{family}-") as workdir:
        try:
            status = FAMILIES[family](rng, Path(workdir))
            return Result(family, seed, status)
        except Outcome as outcome:
            return Result(family, seed, "failure", str(outcome))
        except Exception as error:  # an exception the contract does not allow
            where = traceback.extract_tb(error.__traceback__)[-1]
            return Result(family, seed, "failure",
                          f"{type(error).__name__}: {str(error)[:300]} (at {Path(where.filename).name}:{where.lineno})")


def _worker_env() -> dict:
    import gsplat_lib

    package_parent = str(Path(gsplat_lib.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": package_parent, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONFAULTHANDLER": "1"}


def _worker_main() -> None:
    import warnings

    warnings.simplefilter("ignore")
    for line in sys.stdin:
        family, seed = json.loads(line)
        print(json.dumps({"start": [family, seed]}), flush=True)
        print(run_case(family, seed).to_json(), flush=True)


def _run_batch(cases: List[Tuple[str, int]], timeout: float) -> Tuple[List[Result], List[Tuple[str, int]]]:
    """Runs cases in one worker; returns the results and the cases it never started."""
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=_worker_env(), cwd=tempfile.gettempdir(),
    )
    process.stdin.write("".join(json.dumps(list(case)) + "\n" for case in cases))
    process.stdin.close()
    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def read() -> None:
        with process.stdout:
            for line in process.stdout:
                lines.put(line)
        lines.put(None)

    stderr_chunks: List[str] = []

    def read_stderr() -> None:
        with process.stderr:
            stderr_chunks.append(process.stderr.read())

    readers = [threading.Thread(target=read, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    results: List[Result] = []
    started: Optional[Tuple[str, int]] = None
    deadline = time.monotonic() + timeout + 30.0  # the first case also pays the imports
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            process.wait()
            for reader in readers:
                reader.join()
            if started is None:
                return results, cases[len(results):]
            results.append(Result(started[0], started[1], "hang", f"no result within {timeout:.0f} s"))
            return results, cases[len(results):]
        if line is None:
            break
        message = json.loads(line)
        if "start" in message:
            started = tuple(message["start"])
            deadline = time.monotonic() + timeout
        else:
            results.append(Result(**message))
            started = None
    code = process.wait()
    for reader in readers:
        reader.join()
    if started is not None:
        stderr = "".join(stderr_chunks)[-400:]
        reason = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        results.append(Result(started[0], started[1], "crash", f"{reason}: {stderr}"))
    return results, cases[len(results):]


def run_cases(cases: Sequence[Tuple[str, int]], *, timeout: float = 60.0, jobs: int = 2, batch: int = 12,
              progress: Optional[Callable[[Result], None]] = None) -> List[Result]:
    """Runs cases in ``jobs`` workers, ``batch`` cases per worker process."""
    pending: "queue.Queue[List[Tuple[str, int]]]" = queue.Queue()
    for start in range(0, len(cases), batch):
        pending.put(list(cases[start:start + batch]))
    results: List[Result] = []
    lock = threading.Lock()

    def drive() -> None:
        while True:
            try:
                chunk = pending.get_nowait()
            except queue.Empty:
                return
            done, rest = _run_batch(chunk, timeout)
            if rest:
                pending.put(rest)
            with lock:
                results.extend(done)
                for result in done:
                    if progress:
                        progress(result)

    threads = [threading.Thread(target=drive) for _ in range(max(1, jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    order = {case: index for index, case in enumerate(cases)}
    return sorted(results, key=lambda result: order[(result.family, result.seed)])


def sample_cases(counts: Dict[str, int], first_seed: int = 0) -> List[Tuple[str, int]]:
    return [(family, first_seed + index) for family, count in counts.items() for index in range(count)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", nargs=2, metavar=("FAMILY", "SEED"), help="run one case here and print it")
    args = parser.parse_args(argv)
    if args.worker:
        _worker_main()
        return 0
    if args.case:
        result = run_case(args.case[0], int(args.case[1]))
        print(result.to_json())
        return 0 if result.status in ("ok", "refused") else 1
    parser.error("give --case FAMILY SEED (tools/fuzz.py runs campaigns)")
    return 2


if __name__ == "__main__":
    sys.exit(main())
