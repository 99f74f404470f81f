"""The CPU thread pool (csrc/cpu/parallel.h): concurrent callers and forked children get the
same bits as a lone call."""

import os
import select
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from gsplat_lib import rasterize_surfels
from rasterize_scenes import random_cameras, random_surfels


def _render(threads: int = 2) -> torch.Tensor:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        width, height = 64, 48
        viewmats, Ks = random_cameras(2, width, height, seed=21)
        scene = random_surfels(3000, seed=22)
        with torch.no_grad():
            out = rasterize_surfels(scene["means"], scene["quats"], scene["scales"], scene["opacities"],
                                    scene["colors"], viewmats, Ks, width, height)
        return torch.cat([out.colors.flatten(), out.depths.flatten(), out.distortions.flatten()])
    finally:
        torch.set_num_threads(previous)


def test_concurrent_calls_match_a_lone_call():
    # The calls release the GIL, so they overlap: all but one find the pool busy and start
    # threads of their own.
    expected = _render()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: _render(), range(12)))
    for result in results:
        assert torch.equal(result, expected)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12 warns on fork with threads alive
def test_forked_child_gets_a_working_pool():
    expected = _render()  # the parent's pool threads now exist; the child has none of them
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report and leave without running the parent's cleanup
        status = 1
        try:
            status = 0 if torch.equal(_render(), expected) else 2
        finally:
            os.write(write_end, bytes([status]))
            os._exit(0)
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], 120)
    if not ready:  # a child waiting on helper threads it does not have would hang here
        os.kill(pid, signal.SIGKILL)
    reply = os.read(read_end, 1) if ready else b""
    os.close(read_end)
    os.waitpid(pid, 0)
    assert ready, "the forked child hung"
    assert reply == bytes([0]), "the child's render differed (2) or raised (1)"
