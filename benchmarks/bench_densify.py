"""One 2DGS densification step: gsplat_lib's one-pass remap against the plain torch way.

The model is the full 2DGS set: means [N,3], scales [N,2], quats [N,4], opacities [N,1],
sh_dc [N,1,3], sh_rest [N,15,3], each with Adam's exp_avg and exp_avg_sq (18 tensors).
About 5% of the surfels are cloned, 5% split in two (means resampled, scales / 1.6) and 5%
pruned. Methods:

- ``torch (trainer)``: what 2DGS / 3DGS / gsplat trainers do, per tensor and per moment: a
  boolean index for the prune, a ``torch.cat`` for the clones, an index and a ``torch.cat``
  for the split;
- ``gsplat_lib``: :func:`densify_plan` + one :func:`remap_rows` call for all 18 tensors.

Both give bit-identical tensors (checked). Also timed: the statistics of one step from C=4
cameras, :func:`accumulate_screen_stats` against gsplat's torch code (``index_add_``).

Usage: python benchmarks/bench_densify.py [--sizes 100000 1000000] [--out bench_densify.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch

import gsplat_lib
from gsplat_lib.ops.densify import accumulate_screen_stats, densify_plan, remap_rows

PARAM_SHAPES = {
    "means": (3,),
    "scales": (2,),
    "quats": (4,),
    "opacities": (1,),
    "sh_dc": (1, 3),
    "sh_rest": (15, 3),
}
SPLIT_CHILDREN = 2
LOG_SHRINK = math.log(1.6)


def make_step(num_surfels: int, device: torch.device, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    params = {
        name: torch.randn((num_surfels, *shape), generator=generator).to(device)
        for name, shape in PARAM_SHAPES.items()
    }
    moments = {
        name: (torch.randn_like(p.cpu()).to(device), torch.rand_like(p.cpu()).to(device))
        for name, p in params.items()
    }
    keep = torch.rand(num_surfels, generator=generator) >= 0.05
    choice = torch.rand(num_surfels, generator=generator)
    clone, split = choice < 0.05, choice >= 0.95
    num_children = int((keep & split).sum()) * SPLIT_CHILDREN
    offsets = (torch.randn(num_children, 3, generator=generator) * 0.01).to(device)
    masks = tuple(m.to(device) for m in (keep, clone, split))
    return params, moments, masks, offsets


def split_children_values(params, parents, offsets):
    """New means and scales of the split children (child-major, like 3DGS's repeat)."""
    means = params["means"][parents].repeat(SPLIT_CHILDREN, 1) + offsets
    scales = params["scales"][parents].repeat(SPLIT_CHILDREN, 1) - LOG_SHRINK
    return {"means": means, "scales": scales}


def densify_torch(params, moments, masks, offsets):
    """The trainers' way: prune, clone and split each tensor and each moment separately."""
    keep, clone, split = masks
    clone_kept = clone[keep]
    split_kept = split[keep]
    num_clones = int(clone_kept.sum())
    split_after_clone = torch.cat([split_kept, torch.zeros(num_clones, dtype=torch.bool, device=keep.device)])
    parents = torch.nonzero(keep & split).squeeze(1)
    children = split_children_values(params, parents, offsets)
    new_params, new_moments = {}, {}
    for name, p in params.items():
        p = p[keep]
        p = torch.cat([p, p[clone_kept]])
        if name in children:
            kids = children[name]
        else:
            kids = p[split_after_clone].repeat(SPLIT_CHILDREN, *[1] * (p.dim() - 1))
        new_params[name] = torch.cat([p[~split_after_clone], kids])
        grown = []
        for m in moments[name]:
            m = m[keep]
            m = torch.cat([m, torch.zeros((num_clones, *m.shape[1:]), device=m.device)])
            m = torch.cat([m[~split_after_clone], torch.zeros((kids.shape[0], *m.shape[1:]), device=m.device)])
            grown.append(m)
        new_moments[name] = tuple(grown)
    return new_params, new_moments


def densify_gsplat_lib(params, moments, masks, offsets):
    plan = densify_plan(*masks, n_split_children=SPLIT_CHILDREN)
    parents = plan.source[plan.num_survivors + plan.num_clones :][: plan.num_split_children // SPLIT_CHILDREN]
    children = split_children_values(params, parents, offsets)
    names = list(params)
    tensors, zero_new, overrides = [], [], {}
    num_rows = plan.source.shape[0]
    for name in names:
        if name in children:
            # Only the split children's rows of an override are read; they are the last block.
            values = torch.empty((num_rows, *params[name].shape[1:]), device=params[name].device)
            values[num_rows - plan.num_split_children :] = children[name]
            overrides[len(tensors)] = values
        tensors += [params[name], *moments[name]]
        zero_new += [False, True, True]
    out = remap_rows(tensors, plan.source, zero_new, plan.is_new, overrides, plan.is_split_child)
    new_params = {name: out[3 * i] for i, name in enumerate(names)}
    new_moments = {name: (out[3 * i + 1], out[3 * i + 2]) for i, name in enumerate(names)}
    return new_params, new_moments


def make_stats(num_surfels: int, num_cameras: int, device: torch.device, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    screen_grad = torch.randn(num_cameras, num_surfels, 2, generator=generator) * 1e-4
    radii = torch.randint(0, 40, (num_cameras, num_surfels, 2), generator=generator, dtype=torch.int32)
    radii[torch.rand(num_cameras, num_surfels, generator=generator) < 0.3] = 0
    return screen_grad.to(device), screen_grad.abs().to(device), radii.to(device)


def fresh_accumulators(num_surfels: int, device: torch.device):
    return (
        torch.zeros(num_surfels, device=device),
        torch.zeros(num_surfels, device=device),
        torch.zeros(num_surfels, dtype=torch.int32, device=device),
        torch.zeros(num_surfels, device=device),
    )


def stats_torch(accumulators, screen_grad, screen_absgrad, radii, width, height):
    """gsplat's default strategy, in pixels, with absgrad and an int32 count."""
    grad_acc, absgrad_acc, count, max_radii = accumulators
    scale = torch.tensor([width / 2.0, height / 2.0], device=screen_grad.device)
    visible = (radii > 0).any(dim=-1)
    ids = torch.where(visible)[1]
    grad_acc.index_add_(0, ids, (screen_grad[visible] * scale).norm(dim=-1))
    absgrad_acc.index_add_(0, ids, (screen_absgrad[visible] * scale).norm(dim=-1))
    count.index_add_(0, ids, torch.ones_like(ids, dtype=torch.int32))
    max_radii.scatter_reduce_(0, ids, radii[visible].amax(dim=-1).float(), reduce="amax")


def best_ms(fn, device: torch.device, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, (time.perf_counter() - start) * 1e3)
        del result
    return best


def machine_info():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "platform": platform.platform(),
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gsplat_lib": gsplat_lib.build_info(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--out", default="bench_densify.json")
    args = parser.parse_args()

    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and gsplat_lib.build_info()["cuda"]:
        devices.append(torch.device("cuda"))
    width, height = 1920, 1080
    rows = []
    print(f"{'device':<6} {'N':>9} {'op':<10} {'method':<16} {'ms':>9} {'speedup':>8}")
    for device in devices:
        for n in args.sizes:
            step = make_step(n, device)
            ours_params, ours_moments = densify_gsplat_lib(*step)
            ref_params, ref_moments = densify_torch(*step)
            for name in ours_params:
                assert torch.equal(ours_params[name], ref_params[name]), name
                assert all(torch.equal(a, b) for a, b in zip(ours_moments[name], ref_moments[name])), name
            del ours_params, ours_moments, ref_params, ref_moments
            timings = {
                ("densify", "torch (trainer)"): best_ms(lambda s=step: densify_torch(*s), device, args.repeats),
                ("densify", "gsplat_lib"): best_ms(lambda s=step: densify_gsplat_lib(*s), device, args.repeats),
            }
            del step
            stats_inputs = make_stats(n, args.cameras, device)
            timings[("stats", "torch (gsplat)")] = best_ms(
                lambda: stats_torch(fresh_accumulators(n, device), *stats_inputs, width, height),
                device,
                args.repeats,
            )
            timings[("stats", "gsplat_lib")] = best_ms(
                lambda: accumulate_screen_stats(*fresh_accumulators(n, device), *stats_inputs, width, height),
                device,
                args.repeats,
            )
            for (op_name, method), ms in timings.items():
                baseline = next(v for (o, m), v in timings.items() if o == op_name and m.startswith("torch"))
                speedup = baseline / ms
                rows.append(
                    {"device": device.type, "N": n, "op": op_name, "method": method, "ms": ms, "speedup": speedup}
                )
                print(f"{device.type:<6} {n:>9} {op_name:<10} {method:<16} {ms:>9.2f} {speedup:>7.2f}x")
    with open(args.out, "w") as f:
        json.dump({"machine": machine_info(), "cameras": args.cameras, "results": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
