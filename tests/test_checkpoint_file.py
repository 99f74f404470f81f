"""Checkpoints: complete round trip, weights_only, RNG states, atomic writes, bad files."""

import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import gsplat_lib
from gsplat_lib import DefaultStrategy, GaussianModel, load_checkpoint
from gsplat_lib.checkpoint import CHECKPOINT_VERSION, _digest, capture_rng_states, restore_rng_states
from gsplat_lib.param_schema import PARAM_NAMES
from subprocess_env import python_env

# The writer process imports the gsplat_lib this test imports.


def trained_model_and_strategy(count=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    xyz = torch.rand(count, 3, generator=generator)
    rgb = torch.rand(count, 3, generator=generator)
    model = GaussianModel.from_points(xyz, rgb, scene_extent=1.5, sh_degree=2, max_steps=50)
    for step in (1, 2):
        model.update_learning_rate(step)
        loss = sum((value * value).sum() for value in model.params.values())
        loss.backward()
        model.optimizer.step()
        model.optimizer.zero_grad(set_to_none=True)
    model.maybe_increase_sh_degree(1000)
    strategy = DefaultStrategy(seed=11)
    strategy._reset_accumulators(count, model.device)
    strategy.grad_acc.uniform_(generator=generator)
    strategy.absgrad_acc.uniform_(generator=generator)
    strategy.count.fill_(3)
    strategy.max_radii2D.uniform_(0, 40, generator=generator)
    torch.randn(5, generator=strategy.generator)  # move the generator off its seed
    return model, strategy


def assert_same_model(a, b):
    for name in PARAM_NAMES:
        assert torch.equal(a.params[name], b.params[name]), name
    state_a, state_b = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert state_a["param_groups"] == state_b["param_groups"]
    assert state_a["state"].keys() == state_b["state"].keys()
    for index, entry in state_a["state"].items():
        for key, value in entry.items():
            assert torch.equal(value, state_b["state"][index][key]), (index, key)
    assert a.config() == b.config()


def test_round_trip_restores_everything_the_next_step_reads(tmp_path):
    model, strategy = trained_model_and_strategy()
    path = tmp_path / "run.ckpt"
    model.save_checkpoint(
        path, step=2, strategy=strategy, trainer_state={"camera_order": torch.arange(4), "epoch": 1},
        config={"data": "synthetic", "lambda_dssim": 0.2},
    )
    loaded = GaussianModel.load_checkpoint(path)
    assert loaded.step == 2
    assert_same_model(model, loaded.model)
    assert loaded.model.active_sh_degree == 1 and loaded.model.scene_extent == 1.5
    assert loaded.model.param_group("means")["lr"] == model.param_group("means")["lr"]
    for name in ("grad_acc", "absgrad_acc", "count", "max_radii2D"):
        assert torch.equal(getattr(loaded.strategy, name), getattr(strategy, name)), name
    assert loaded.strategy.config() == strategy.config()
    assert torch.equal(
        torch.randn(3, generator=loaded.strategy.generator), torch.randn(3, generator=strategy.generator)
    )
    assert torch.equal(loaded.trainer_state["camera_order"], torch.arange(4))
    assert loaded.trainer_state["epoch"] == 1
    assert loaded.config == {"data": "synthetic", "lambda_dssim": 0.2}


def test_file_loads_with_weights_only(tmp_path):
    model, strategy = trained_model_and_strategy()
    path = tmp_path / "run.ckpt"
    model.save_checkpoint(path, step=2, strategy=strategy)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "gsplat_lib.checkpoint" and payload["version"] == CHECKPOINT_VERSION
    assert payload["content"]["model"]["config"]["active_sh_degree"] == 1


def test_global_rng_states_are_restored(tmp_path):
    model, _ = trained_model_and_strategy()
    path = tmp_path / "run.ckpt"
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.normal()  # leaves a cached Gaussian in numpy's state
    model.save_checkpoint(path, step=0)
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)], np.random.normal())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    load_checkpoint(path)
    again = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)], np.random.normal())
    assert torch.equal(expected[0], again[0])
    np.testing.assert_array_equal(expected[1], again[1])
    assert expected[2] == again[2] and expected[3] == again[3]


def test_restore_rng_false_leaves_generators_alone(tmp_path):
    model, _ = trained_model_and_strategy()
    path = tmp_path / "run.ckpt"
    model.save_checkpoint(path, step=0)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_checkpoint(path, restore_rng=False)
    assert torch.equal(torch.rand(3), expected)


def test_rng_state_capture_round_trips():
    states = capture_rng_states()
    first = (torch.rand(2), np.random.rand(2), random.random())
    restore_rng_states(states)
    second = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_model_without_optimizer_state_or_strategy_round_trips(tmp_path):
    model = GaussianModel.from_points(torch.rand(5, 3), torch.rand(5, 3), scene_extent=1.0)
    path = tmp_path / "fresh.ckpt"
    model.save_checkpoint(path, step=0)
    loaded = load_checkpoint(path)
    assert loaded.strategy is None and loaded.trainer_state == {} and len(loaded.model.optimizer.state) == 0
    assert_same_model(model, loaded.model)


def test_unsupported_trainer_state_is_refused_before_writing(tmp_path):
    model, _ = trained_model_and_strategy()
    path = tmp_path / "run.ckpt"
    with pytest.raises(TypeError, match=r"trainer_state\['order'\].*ndarray"):
        model.save_checkpoint(path, step=1, trainer_state={"order": np.arange(3)})
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, strategy = trained_model_and_strategy()
    path = tmp_path / "run.ckpt"
    model.save_checkpoint(path, step=1, strategy=strategy)
    previous = path.read_bytes()

    def failing_save(obj, stream):
        stream.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        model.save_checkpoint(path, step=2, strategy=strategy)
    monkeypatch.undo()
    assert path.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]


# A process that saves checkpoint step 1, then starts saving step 2 and stops halfway
# (its stream flushed to disk), signalling the parent, which kills it with SIGKILL.
CRASHING_WRITER = textwrap.dedent(
    """
    import io, sys, time
    import torch
    from gsplat_lib import GaussianModel

    path = sys.argv[1]
    model = GaussianModel.from_points(torch.rand(2000, 3), torch.rand(2000, 3), scene_extent=1.0)
    model.save_checkpoint(path, step=1)
    real_save = torch.save

    def half_save(obj, stream):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        stream.write(data[: len(data) // 2])
        stream.flush()
        print("mid-write", flush=True)
        time.sleep(600)

    torch.save = half_save
    model.save_checkpoint(path, step=2)
    """
)


def test_crash_during_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "run.ckpt"
    env = python_env()
    writer = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        cwd=tmp_path,  # not the checkout: `-c` puts the working directory first on sys.path
    )
    try:
        line = writer.stdout.readline()
        assert line.strip() == b"mid-write", writer.stderr.read().decode()
        partial = [p for p in tmp_path.iterdir() if p.name != "run.ckpt"]
        assert len(partial) == 1 and partial[0].stat().st_size > 0
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
        writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL
    loaded = load_checkpoint(path)
    assert loaded.step == 1 and loaded.model.num_surfels == 2000
    with pytest.raises(ValueError, match="partial"):
        load_checkpoint(partial[0])


def saved_checkpoint(tmp_path):
    model, strategy = trained_model_and_strategy()
    path = tmp_path / "run.ckpt"
    model.save_checkpoint(path, step=2, strategy=strategy)
    return path


def test_truncated_file_is_rejected(tmp_path):
    path = saved_checkpoint(tmp_path)
    data = path.read_bytes()
    for length in (0, 10, len(data) // 2, len(data) - 1):
        truncated = tmp_path / f"truncated_{length}.ckpt"
        truncated.write_bytes(data[:length])
        with pytest.raises(ValueError, match=f"truncated_{length}.ckpt"):
            load_checkpoint(truncated)


def test_flipped_byte_inside_a_tensor_is_detected(tmp_path):
    path = saved_checkpoint(tmp_path)
    data = bytearray(path.read_bytes())
    payload = torch.load(path, weights_only=True)
    means = payload["content"]["model"]["params"]["means"]
    offset = bytes(data).find(means.numpy().tobytes())
    assert offset > 0
    data[offset + 5] ^= 0x40
    corrupted = tmp_path / "corrupted.ckpt"
    corrupted.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"corrupted\.ckpt.*digest"):
        load_checkpoint(corrupted)


def test_foreign_files_are_rejected(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.ckpt"):
        load_checkpoint(text)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"weight": torch.zeros(3)}}, foreign)
    with pytest.raises(ValueError, match=r"foreign\.ckpt.*not a gsplat_lib checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.ckpt")


def rewrite(path, destination, change):
    payload = torch.load(path, weights_only=True)
    change(payload)
    payload["digest"] = _digest(payload["content"])
    torch.save(payload, destination)


def test_newer_format_version_is_refused(tmp_path):
    path = saved_checkpoint(tmp_path)
    newer = tmp_path / "newer.ckpt"
    rewrite(path, newer, lambda payload: payload.update(version=CHECKPOINT_VERSION + 1))
    with pytest.raises(ValueError, match=r"newer\.ckpt.*newer gsplat_lib"):
        load_checkpoint(newer)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["model"]["params"].pop("quats"), "lacks"),
        (lambda c: c["model"]["optimizer"]["state"][0].update(exp_avg=torch.zeros(3, 3)), "exp_avg"),
        (lambda c: c["strategy"].update(max_radii2D=torch.zeros(7)), "max_radii2D"),
        (lambda c: c["strategy"].update(grad_acc=torch.zeros(7), absgrad_acc=torch.zeros(7),
                                        count=torch.zeros(7, dtype=torch.int32), max_radii2D=torch.zeros(7)), "7 surfels"),
        (lambda c: c.pop("rng"), "rng"),
        (lambda c: c.update(step=-1), "step"),
        # Valid digests around content no generator or model can take (found by fuzzing).
        (lambda c: c["rng"]["numpy"].update(bit_generator="PCG64"), "bit_generator"),
        (lambda c: c["rng"]["python"].__setitem__(0, 99), "state version 99"),
        (lambda c: c["rng"].update(torch_cpu=c["rng"]["torch_cpu"][:100]), "torch_cpu"),
        (lambda c: c["model"]["params"]["means"].__setitem__((0, 0), float("nan")), r"params\['means'\] holds NaN"),
        (lambda c: c["model"]["params"]["sh_dc"].__setitem__((1, 0, 2), float("inf")), r"params\['sh_dc'\] holds NaN"),
        (lambda c: c["model"]["optimizer"]["param_groups"][2].update(lr=float("nan")), "'quats': lr must be a finite"),
        (lambda c: c["model"]["optimizer"]["param_groups"][0].update(lr=-1.0), "'means': lr must be a finite"),
        (lambda c: c["model"]["optimizer"]["param_groups"][4].update(betas=(0.9, 1.5)), "betas"),
        (lambda c: c["model"]["optimizer"]["state"][1]["exp_avg_sq"].__setitem__((0, 0), float("nan")),
         "exp_avg_sq holds NaN"),
    ],
)
def test_inconsistent_content_is_rejected_before_anything_is_restored(tmp_path, change, message):
    path = saved_checkpoint(tmp_path)
    broken = tmp_path / "broken.ckpt"
    rewrite(path, broken, lambda payload: change(payload["content"]))
    before = capture_rng_states()
    with pytest.raises(ValueError, match=message) as error:
        load_checkpoint(broken)
    assert "broken.ckpt" in str(error.value)
    after = capture_rng_states()  # no global generator was touched
    assert torch.equal(after["torch_cpu"], before["torch_cpu"])
    assert torch.equal(after["numpy"]["keys"], before["numpy"]["keys"]) and after["python"] == before["python"]


def test_restoring_generators_is_all_or_nothing(monkeypatch):
    states = capture_rng_states()
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    before = capture_rng_states()

    real_set_state = np.random.set_state
    calls = []

    def failing_set_state(state):  # numpy refuses once, after torch's state was already set
        calls.append(state)
        if len(calls) == 1:
            raise ValueError("cannot set this state")
        real_set_state(state)

    monkeypatch.setattr(np.random, "set_state", failing_set_state)
    with pytest.raises(ValueError, match="cannot be restored: cannot set this state"):
        restore_rng_states(states)
    monkeypatch.undo()
    after = capture_rng_states()
    assert torch.equal(after["torch_cpu"], before["torch_cpu"])
    assert after["python"] == before["python"]


@pytest.mark.cuda
def test_cuda_checkpoint_restores_on_cuda_and_on_cpu(tmp_path):
    model, strategy = trained_model_and_strategy()
    cuda_model = GaussianModel.from_state_dict(model.state_dict(), device="cuda")
    strategy.load_state_dict(strategy.state_dict(), device="cuda")
    path = tmp_path / "cuda.ckpt"
    cuda_model.save_checkpoint(path, step=2, strategy=strategy)
    expected = torch.rand(4, device="cuda")
    on_cuda = load_checkpoint(path, device="cuda")
    assert torch.equal(torch.rand(4, device="cuda"), expected)  # CUDA generator restored
    assert on_cuda.model.device.type == "cuda" and on_cuda.strategy.grad_acc.device.type == "cuda"
    on_cpu = load_checkpoint(path, device="cpu")
    assert_same_model(model, on_cpu.model)
