"""A/B of the compat layer's two semantics: upstream 2DGS's rules (its default) against gsplat_lib's.

Each case renders one 2DGS-style call (`GaussianRasterizer` with SH degree 3, `means2D` for the
statistic) both ways in the same run, timed in alternation so that a busy host slows both alike:
forward, and forward+backward of a loss on the colour (2DGS's L1 to a fixed random image) and
every allmap channel (the mean of fixed random weights times them). Reports the upstream /
gsplat_lib time ratios, the (pixel, surfel) pairs each forward evaluates, and how far the two
renders differ: colour PSNR of one against the other, largest colour and alpha difference, the
share of pixels whose colour differs by more than 1/255, visible surfels (radii > 0) and how many
pass 2DGS's densification threshold (|means2D.grad| > 0.0002 of this one loss) in each. Prints a
table and writes JSON.

    PYTHONPATH=. python benchmarks/bench_compat.py [--out bench_compat.json] [--quick] [--repeats 10]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_rasterize.py (README, "CPU threads")

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))

import gsplat_lib  # noqa: E402
import gsplat_lib.compat.diff_surfel_rasterization as dsr  # noqa: E402
from bench_rasterize import synchronize, write_results  # noqa: E402
from gsplat_lib import rasterize_surfels  # noqa: E402
from gsplat_lib.compat.upstream_camera import upstream_camera  # noqa: E402
from diff_surfel_scenes import camera_settings, orbit_viewmat, random_scene  # noqa: E402

SEMANTICS = ("upstream", "gsplat_lib")
DENSIFY_THRESHOLD = 0.0002  # 2DGS's densify_grad_threshold


def scene_for(num_surfels: int, device: torch.device):
    # Scales shrink with the count so the depth complexity stays realistic (as bench_rasterize.py).
    size = 0.6 / num_surfels ** (1 / 3)
    scene = random_scene(num_surfels, seed=0, scale_range=(0.5 * size, 2.0 * size))
    return {k: v.to(device).requires_grad_(True) for k, v in scene.items() if k != "colors"}


class Render:
    """One 2DGS-style render and backward in one semantics, keeping the last outputs."""

    def __init__(self, scene, settings, semantics, weights):
        self.scene, self.settings, self.semantics, self.weights = scene, settings, semantics, weights

    def forward(self):
        dsr.SEMANTICS = self.semantics
        # 2DGS's pattern; under no_grad the sum holds no graph to retain a gradient in.
        self.means2D = torch.zeros_like(self.scene["means3D"], requires_grad=True) + 0
        if self.means2D.requires_grad:
            self.means2D.retain_grad()
        rasterizer = dsr.GaussianRasterizer(self.settings)
        self.color, self.radii, self.allmap = rasterizer(
            self.scene["means3D"], self.means2D, self.scene["opacities"], shs=self.scene["shs"],
            scales=self.scene["scales"], rotations=self.scene["rotations"])
        return self.color

    def forward_only(self):
        with torch.no_grad():
            self.forward()

    def forward_backward(self):
        self.forward()
        loss = (self.color - self.weights["target"]).abs().mean() + (self.allmap * self.weights["allmap"]).mean()
        for leaf in self.scene.values():
            leaf.grad = None
        loss.backward()


def alternate_best_times(runs, device, repeats):
    """{name: best seconds} of each callable, run in turn ``repeats`` times after one warm-up each."""
    best = {name: math.inf for name in runs}
    for round_index in range(repeats + 1):
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            if round_index:  # the first round warms up
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def evaluated_pairs(scene, settings, semantics) -> int:
    """The (pixel, surfel) pairs the forward evaluates: the compat layer's call, made directly."""
    width, height = settings.image_width, settings.image_height
    viewmat, K, _ = upstream_camera(settings.viewmatrix, settings.projmatrix, width, height, scene["means3D"].device)
    with torch.no_grad():
        out = rasterize_surfels(scene["means3D"], scene["rotations"], scene["scales"], scene["opacities"][:, 0],
                                viewmats=viewmat[None], Ks=K[None], width=width, height=height, near=dsr.NEAR_PLANE,
                                far=dsr.FAR_PLANE, sh=scene["shs"], sh_degree=settings.sh_degree, semantics=semantics)
    return int(out.evaluated_pairs.sum())


def image_difference(a: Render, b: Render):
    color_a, color_b = a.color.detach().double(), b.color.detach().double()
    mse = float(((color_a - color_b) ** 2).mean())
    pixel_gap = (color_a - color_b).abs().amax(dim=0)
    alpha_gap = (a.allmap[1] - b.allmap[1]).detach().abs()
    return dict(color_psnr_db=math.inf if mse == 0 else -10 * math.log10(mse),
                color_max_abs=float(pixel_gap.max()), alpha_max_abs=float(alpha_gap.max()),
                pixels_over_1_255=float((pixel_gap > 1 / 255).double().mean()))


def run_case(num_surfels, width, height, device, repeats):
    scene = scene_for(num_surfels, device)
    settings = camera_settings(orbit_viewmat(5), width, height, sh_degree=3)
    settings = settings._replace(**{name: getattr(settings, name).to(device)
                                    for name in ("bg", "viewmatrix", "projmatrix", "campos")})
    g = torch.Generator().manual_seed(7)
    weights = dict(target=torch.rand(3, height, width, generator=g).to(device),
                   allmap=torch.randn(7, height, width, generator=g).to(device))
    renders = {name: Render(scene, settings, name, weights) for name in SEMANTICS}
    forward = alternate_best_times({n: r.forward_only for n, r in renders.items()}, device, repeats)
    forward_backward = alternate_best_times({n: r.forward_backward for n, r in renders.items()}, device, repeats)
    row = dict(device=str(device), surfels=num_surfels, width=width, height=height,
               threads=gsplat_lib._backend.num_threads() if device.type == "cpu" else 1,
               **{f"{n}_forward_s": forward[n] for n in SEMANTICS},
               **{f"{n}_forward_backward_s": forward_backward[n] for n in SEMANTICS},
               forward_ratio=forward["upstream"] / forward["gsplat_lib"],
               forward_backward_ratio=forward_backward["upstream"] / forward_backward["gsplat_lib"],
               **image_difference(renders["upstream"], renders["gsplat_lib"]))
    for name, render in renders.items():
        statistic = render.means2D.grad[:, :2].norm(dim=-1)
        row[f"{name}_visible"] = int((render.radii > 0).sum())
        row[f"{name}_over_threshold"] = int((statistic > DENSIFY_THRESHOLD).sum())
        row[f"{name}_forward_pairs"] = evaluated_pairs(scene, settings, name)
    row["forward_pairs_ratio"] = row["upstream_forward_pairs"] / row["gsplat_lib_forward_pairs"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_compat.json", help="where to write the JSON results")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of each semantics per case, best kept")
    parser.add_argument("--quick", action="store_true", help="only the smallest case (a smoke run)")
    args = parser.parse_args()

    sizes = [(10_000, 256, 256), (10_000, 512, 512), (100_000, 512, 512)]
    if args.quick:
        sizes = sizes[:1]
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and gsplat_lib.build_info()["cuda"]:
        devices.append(torch.device("cuda"))

    print(f"{'device':6s} {'N':>7s} {'image':>9s}  {'fwd ms up/gs':>15s} {'ratio':>6s}  {'fwd+bwd ms up/gs':>17s} "
          f"{'ratio':>6s}  {'pairs':>5s}  {'PSNR dB':>7s} {'max|dc|':>7s} {'>1/255':>7s}  {'visible up/gs':>15s} "
          f"{'densify up/gs':>13s}")
    rows = []
    for device in devices:
        for num_surfels, width, height in sizes:
            row = run_case(num_surfels, width, height, device, args.repeats)
            rows.append(row)
            print(f"{row['device']:6s} {num_surfels:7d} {width:4d}x{height:<4d}  "
                  f"{1e3 * row['upstream_forward_s']:7.1f}/{1e3 * row['gsplat_lib_forward_s']:<7.1f} "
                  f"{row['forward_ratio']:6.2f}  "
                  f"{1e3 * row['upstream_forward_backward_s']:8.1f}/{1e3 * row['gsplat_lib_forward_backward_s']:<8.1f} "
                  f"{row['forward_backward_ratio']:6.2f}  {row['forward_pairs_ratio']:5.2f}  "
                  f"{row['color_psnr_db']:7.1f} {row['color_max_abs']:7.3f} "
                  f"{100 * row['pixels_over_1_255']:6.2f}%  "
                  f"{row['upstream_visible']:7d}/{row['gsplat_lib_visible']:<7d} "
                  f"{row['upstream_over_threshold']:6d}/{row['gsplat_lib_over_threshold']:<6d}", flush=True)

    write_results(args.out, "compat", args.repeats, rows, used_cuda=len(devices) > 1)


if __name__ == "__main__":
    main()
