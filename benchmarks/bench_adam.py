"""One Adam step of a 2DGS model: torch.optim.Adam against gsplat_lib's FusedAdam.

The model is the full 2DGS set with SH degree 3, one param group per tensor as in
GaussianModel: means [N,3], log_scales [N,2], quats [N,4], opacity_logits [N], sh_dc [N,1,3],
sh_rest [N,15,3] (59 floats per surfel), eps = 1e-15. Methods:

- ``torch``: ``torch.optim.Adam`` as GaussianModel used it (``foreach=None``: the per-tensor
  loop on CPU, the multi-tensor kernels on CUDA);
- ``torch foreach``: ``foreach=True``; on CUDA also ``torch fused`` (``fused=True``);
- ``fused``: FusedAdam (on CPU bit-identical to ``torch``: two compiled passes around
  ``torch.sqrt``; on CUDA one launch);
- ``fused one pass``: FusedAdam(match_torch=False), CPU only: one compiled pass, IEEE sqrt;
- ``fused sparse``: FusedAdam with a visibility mask (``--visible`` of the rows, random).

All optimizers step the same tensors from the same state. Each round times one step of every
method in turn (the VM's noise hits them alike); the table gives the median and best over
the rounds and each method's speed against ``torch`` in the same run (median / median).

Usage: python benchmarks/bench_adam.py [--sizes 100000 1000000 3000000] [--rounds 7]
       [--visible 0.5] [--out bench_adam.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see README, CPU threads

import torch  # noqa: E402

import gsplat_lib  # noqa: E402
from bench_densify import machine_info  # noqa: E402
from gsplat_lib import FusedAdam, GaussianModel  # noqa: E402
from gsplat_lib.param_schema import PARAM_NAMES  # noqa: E402



def model_layout():
    """Row shapes and learning rates of GaussianModel's six tensors with SH degree 3."""
    model = GaussianModel.from_points(torch.rand(4, 3), torch.rand(4, 3), scene_extent=1.0, sh_degree=3)
    return {name: (tuple(model.params[name].shape[1:]), model.param_group(name)["lr"]) for name in PARAM_NAMES}


LAYOUT = model_layout()


def make_params(num_surfels: int, device: torch.device):
    generator = torch.Generator().manual_seed(0)
    params = {}
    for name, (shape, _) in LAYOUT.items():
        param = torch.nn.Parameter(torch.randn((num_surfels, *shape), generator=generator).to(device))
        param.grad = (torch.randn(param.shape, generator=generator) * 1e-3).to(device)
        params[name] = param
    return params


def groups(params):
    return [{"params": [p], "lr": LAYOUT[name][1], "name": name} for name, p in params.items()]


def methods_for(device: torch.device, params, visible_fraction: float):
    """name -> a function doing one step; every optimizer shares the first one's state."""
    generator = torch.Generator().manual_seed(1)
    num_surfels = params["means"].shape[0]
    visible = (torch.rand(num_surfels, generator=generator) < visible_fraction).to(device)
    optimizers = {
        "torch": torch.optim.Adam(groups(params), lr=0.0, eps=1e-15),
        "torch foreach": torch.optim.Adam(groups(params), lr=0.0, eps=1e-15, foreach=True),
    }
    if device.type == "cuda":
        optimizers["torch fused"] = torch.optim.Adam(groups(params), lr=0.0, eps=1e-15, fused=True)
    optimizers["fused"] = FusedAdam(groups(params), lr=0.0, eps=1e-15)
    if device.type == "cpu":
        optimizers["fused one pass"] = FusedAdam(groups(params), lr=0.0, eps=1e-15, match_torch=False)
    first = optimizers["torch"]
    first.step()  # creates the state everyone shares
    for optimizer in optimizers.values():
        for param in params.values():
            optimizer.state[param] = first.state[param]
    steps = {name: optimizer.step for name, optimizer in optimizers.items()}
    sparse = optimizers["fused"]
    steps[f"fused sparse {visible_fraction:.0%}"] = lambda: sparse.step(visible_rows=visible)
    return steps


def time_ms(step, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 3_000_000])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--visible", type=float, default=0.5, help="fraction of rows the sparse step updates")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when built and present")
    parser.add_argument("--out", default="bench_adam.json")
    args = parser.parse_args()

    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() and gsplat_lib.build_info()["cuda"] else [])
    rows = []
    print(f"{'device':<6} {'N':>9} {'method':<18} {'median ms':>10} {'best ms':>9} {'vs torch':>9} {'ns/value':>9}")
    for device in map(torch.device, devices):
        for n in args.sizes:
            params = make_params(n, device)
            steps = methods_for(device, params, args.visible)
            for step in steps.values():  # warm-up: first-touch pages, CUDA kernels, lazy probes
                time_ms(step, device)
            timings = {name: [] for name in steps}
            for _ in range(args.rounds):
                for name, step in steps.items():
                    timings[name].append(time_ms(step, device))
            baseline = statistics.median(timings["torch"])
            values = sum(p.numel() for p in params.values())
            for name, times in timings.items():
                median = statistics.median(times)
                row = {"device": device.type, "N": n, "method": name, "median_ms": median, "best_ms": min(times),
                       "speedup_vs_torch": baseline / median, "ns_per_value": median * 1e6 / values, "all_ms": times}
                rows.append(row)
                print(f"{device.type:<6} {n:>9} {name:<18} {median:>10.2f} {min(times):>9.2f} "
                      f"{baseline / median:>8.2f}x {row['ns_per_value']:>9.3f}")
            del params, steps
    info = {**machine_info(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    with open(args.out, "w") as f:
        json.dump({"machine": info, "rounds": args.rounds, "visible": args.visible, "results": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
