"""gsplat-view --device cuda: every render mode on the GPU shows what the CPU shows."""

import numpy as np
import pytest
import torch

import gsplat_lib
from gsplat_lib import GaussianModel
from gsplat_lib.viewer import RENDER_MODES, render_view
from gsplat_lib.viewer.views import view_from_pose

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(not gsplat_lib.build_info()["cuda"], reason="gsplat_lib was built without CUDA"),
]


def test_render_modes_match_the_cpu(tmp_path):
    generator = torch.Generator().manual_seed(0)
    means = torch.rand(2000, 3, generator=generator) * 2 - 1
    colors = torch.rand(2000, 3, generator=generator)
    GaussianModel.from_points(means, colors, scene_extent=1.0, init_opacity=0.8).save_ply(tmp_path / "model.ply")
    on_cpu = GaussianModel.from_ply(tmp_path / "model.ply", scene_extent=1.0)
    on_cuda = GaussianModel.from_ply(tmp_path / "model.ply", scene_extent=1.0, device="cuda")
    view = view_from_pose([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -3.0], 0.9, 160, 120)
    for mode in RENDER_MODES:
        cpu = render_view(on_cpu, view, mode).astype(int)
        cuda = render_view(on_cuda, view, mode).astype(int)
        assert cpu.std() > 3, mode
        # The same math on both; an 8-bit level may differ where a value sits on a rounding edge.
        assert np.abs(cpu - cuda).max() <= 2, mode
