"""Turns on a model between a training loop and viewers: exclusive, and a waiting reader is not starved."""

import threading
import time

from gsplat_lib.viewer.model_access import ModelAccess


def test_steps_and_frames_never_overlap_and_frames_get_turns():
    access = ModelAccess()
    inside = []  # who holds the model now
    overlaps = []
    stop = threading.Event()
    steps = [0]

    def hold(name, seconds):
        inside.append(name)
        if len(inside) > 1:
            overlaps.append(tuple(inside))
        time.sleep(seconds)
        inside.remove(name)

    def train():
        while not stop.is_set():  # a tight loop that would starve a plain lock's other user
            with access.changing():
                hold("step", 0.002)
            steps[0] += 1

    trainer = threading.Thread(target=train)
    trainer.start()
    try:
        waits = []
        for _ in range(20):
            asked = time.monotonic()
            with access.reading():
                waits.append(time.monotonic() - asked)
                hold("frame", 0.001)
    finally:
        stop.set()
        trainer.join(5)
    assert not overlaps
    assert steps[0] > 0
    # A frame waits at most for the step in progress (2 ms), not for the loop to end.
    assert max(waits) < 0.5


def test_a_waiting_reader_goes_before_the_next_step():
    access = ModelAccess()
    order = []
    step_entered = threading.Event()
    release_step = threading.Event()

    def first_step():
        with access.changing():
            step_entered.set()
            release_step.wait(5)
        order.append("step 1 done")

    def reader():
        with access.reading():
            order.append("frame")

    def second_step():
        with access.changing():
            order.append("step 2")

    threads = [threading.Thread(target=first_step)]
    threads[0].start()
    assert step_entered.wait(5)
    threads.append(threading.Thread(target=reader))
    threads[1].start()
    time.sleep(0.05)  # the reader now waits for step 1
    threads.append(threading.Thread(target=second_step))
    threads[2].start()
    time.sleep(0.05)
    release_step.set()
    for thread in threads:
        thread.join(5)
    assert order.index("frame") < order.index("step 2")


def test_an_exception_releases_the_turn():
    access = ModelAccess()
    try:
        with access.changing():
            raise RuntimeError("step failed")
    except RuntimeError:
        pass
    done = threading.Event()

    def reader():
        with access.reading():
            done.set()

    threading.Thread(target=reader).start()
    assert done.wait(5)
