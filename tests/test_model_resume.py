"""Exact resume (docs/design.md, decision 5): train k steps, save, load in a new process,
continue to 2k; everything equals an uninterrupted 2k-step run bit for bit on CPU.

The run (tests/resume_worker.py) densifies every 4 steps from step 4 (clone, split and
all three prune rules fire), resets opacity at steps 10, 20 and 30, raises the SH degree
every 7 steps and draws from the global torch, numpy and Python RNGs every step.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gsplat_lib.checkpoint import capture_rng_states, restore_rng_states
from subprocess_env import python_env

WORKER = Path(__file__).resolve().with_name("resume_worker.py")
HALF, FULL = 18, 36


def load_worker():
    spec = importlib.util.spec_from_file_location("resume_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resume_in_new_process(checkpoint, out, until):
    """Runs the worker in a fresh interpreter that imports the gsplat_lib this test imports."""
    completed = subprocess.run(
        [sys.executable, str(WORKER), str(checkpoint), str(out), "--until", str(until)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=python_env(OMP_NUM_THREADS="1"), timeout=300,
        cwd=out.parent,
    )
    assert completed.returncode == 0, completed.stdout.decode()


def assert_identical(a, b, where="content"):
    """Exact equality of nested checkpoint content; tensors by torch.equal (dtype and shape too)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{index}]")
    else:
        assert a == b and type(a) is type(b), where


@pytest.mark.parametrize("fused_adam", [True, False], ids=["FusedAdam", "torch.optim.Adam"])
def test_resume_in_a_new_process_is_bit_exact(tmp_path, fused_adam):
    half, full, resumed = tmp_path / "half.ckpt", tmp_path / "full.ckpt", tmp_path / "resumed.ckpt"
    worker = load_worker()
    rng_states = capture_rng_states()  # the runs seed the global generators; give them back
    try:
        worker.run(FULL, full, fused_adam=fused_adam)
        worker.run(HALF, half, fused_adam=fused_adam)
    finally:
        restore_rng_states(rng_states)
    resume_in_new_process(half, resumed, FULL)

    saved = torch.load(half, weights_only=True)["content"]
    # The checkpoint is taken with statistics in flight and after an opacity reset.
    assert saved["strategy"]["count"].any() and saved["strategy"]["max_radii2D"].any()
    assert saved["strategy"]["config"]["reset_every"] < HALF
    reports_before = json.loads((tmp_path / "half.ckpt.json").read_text())
    reports_after = json.loads((tmp_path / "resumed.ckpt.json").read_text())
    reports_full = json.loads((tmp_path / "full.ckpt.json").read_text())
    assert [r["step"] for r in reports_before] == [4, 8, 12, 16]
    assert reports_before + reports_after == reports_full
    for key in ("num_cloned", "num_split", "pruned_by_opacity", "pruned_by_world_size", "pruned_by_screen_size"):
        assert sum(r[key] for r in reports_before) > 0, key

    expected = torch.load(full, weights_only=True)["content"]
    actual = torch.load(resumed, weights_only=True)["content"]
    assert actual["step"] == expected["step"] == FULL
    # CUDA's generators are captured only where CUDA was initialised: on a machine with a GPU,
    # earlier CUDA tests initialise it in this process, never in the fresh worker's. This CPU
    # run draws nothing from them.
    for content in (expected, actual):
        content["rng"].pop("torch_cuda")
    for part in ("model", "strategy", "rng"):
        assert_identical(actual[part], expected[part], part)
    assert expected["model"]["config"]["active_sh_degree"] == 3
    assert actual["model"]["config"]["fused_adam"] is fused_adam
    assert expected["model"]["params"]["means"].shape[0] != saved["model"]["params"]["means"].shape[0]
