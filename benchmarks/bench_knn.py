"""Benchmark of gsplat_lib.knn against scipy's cKDTree on 1M points, k=3.

Times, best of ``--repeats`` runs: gsplat_lib on the CPU (torch's thread count), on
CUDA when available (synchronised), and ``cKDTree(points).query(points, k=k+1,
workers=-1)`` (build + query; k+1 because cKDTree returns each point as its own
neighbour). Two clouds: uniform in the unit cube, and tight Gaussian clusters plus a
few far outliers. Prints a table and writes JSON (``--out``, default ./bench_knn.json).

    PYTHONPATH=. python benchmarks/bench_knn.py --points 1000000 --k 3 --out bench_knn.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Callable, Dict, List

import torch

import gsplat_lib


def uniform_points(num_points: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(num_points, 3, generator=generator)


def clustered_points(num_points: int, seed: int, num_clusters: int = 50, num_outliers: int = 5) -> torch.Tensor:
    """Clusters of std 0.01 at random centres in [0, 10]^3, plus outliers 1000 away."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(num_clusters, 3, generator=generator) * 10.0
    labels = torch.randint(0, num_clusters, (num_points,), generator=generator)
    points = centres[labels] + 0.01 * torch.randn(num_points, 3, generator=generator)
    outliers = (torch.rand(num_outliers, 3, generator=generator) - 0.5) * 2000.0
    points[:num_outliers] = outliers
    return points


def best_time(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_knn.json")
    args = parser.parse_args()

    try:
        from scipy.spatial import cKDTree
    except ImportError:  # pragma: no cover - scipy is a test dependency
        cKDTree = None

    use_cuda = torch.cuda.is_available() and bool(gsplat_lib.build_info()["cuda"])
    clouds = {
        "uniform": uniform_points(args.points, args.seed),
        "clustered": clustered_points(args.points, args.seed),
    }
    rows: List[Dict[str, object]] = []
    for distribution, points in clouds.items():
        timings: Dict[str, float] = {}
        if cKDTree is not None:
            array = points.numpy()
            timings["scipy cKDTree"] = best_time(
                lambda: cKDTree(array).query(array, k=args.k + 1, workers=-1), args.repeats
            )
        timings["gsplat_lib cpu"] = best_time(lambda: gsplat_lib.knn(points, args.k), args.repeats)
        if use_cuda:
            on_device = points.cuda()

            def run_cuda() -> None:
                gsplat_lib.knn(on_device, args.k)
                torch.cuda.synchronize()

            run_cuda()  # warm-up: context, allocator, kernels
            timings["gsplat_lib cuda"] = best_time(run_cuda, args.repeats)
        reference = timings.get("scipy cKDTree")
        for method, seconds in timings.items():
            rows.append(
                {
                    "method": method,
                    "distribution": distribution,
                    "seconds": seconds,
                    "speedup_vs_ckdtree": (reference / seconds) if reference else None,
                }
            )

    print(f"{'method':<18} {'distribution':<12} {'seconds':>9} {'cKDTree/this':>13}")
    for row in rows:
        ratio = row["speedup_vs_ckdtree"]
        ratio_text = f"{ratio:13.2f}" if ratio is not None else f"{'-':>13}"
        print(f"{row['method']:<18} {row['distribution']:<12} {row['seconds']:9.3f} {ratio_text}")

    report = {
        "benchmark": "knn",
        "points": args.points,
        "k": args.k,
        "repeats": args.repeats,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "cuda_device": torch.cuda.get_device_name() if use_cuda else None,
            "build_info": gsplat_lib.build_info(),
        },
        "results": rows,
    }
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
