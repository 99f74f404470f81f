"""What the training-run tests compare: a run's final checkpoint content, bit for bit."""

import torch


def final_content(output, step):
    """The content of ``output/checkpoints/step_<step>.ckpt``."""
    path = output / "checkpoints" / f"step_{step:06d}.ckpt"
    return torch.load(path, map_location="cpu", weights_only=True)["content"]


def assert_identical(a, b, where="content"):
    """Tensors equal bit for bit (and dtype), containers recursively, other values ==; the
    wall time ``train_seconds`` is not state and is skipped."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            if key == "train_seconds":
                continue
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{index}]")
    else:
        assert a == b, where
