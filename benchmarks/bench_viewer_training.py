"""Training speed with the viewer: ``gsplat-train --view`` against ``gsplat-train``, same process, same run.

    python benchmarks/bench_viewer_training.py [--steps 300] [--rounds 3] [--out bench_viewer_training.json]

Each round trains the built-in scene from scratch (the default recipe scaled to ``--steps``) three
ways, in turn: without a viewer; with the viewer serving but no page open; with a page open in
headless Chromium and left alone (the viewer then re-renders the view as training goes on, within
its refresh share). Chromium runs on the same CPU as the training here; on a laptop watching a
remote run it would not. Reports, median over rounds, each against the plain run: steps/s (wall
time), and the training process's CPU seconds per step (all its threads, the viewer's included),
which other load on a shared machine disturbs less; and the CPU time Chromium took. Prints a
table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (README: CPU threads)

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
CASES = ("no viewer", "viewer, no page", "viewer, idle page")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cpu_seconds_of_processes(marker: str) -> float:
    """CPU seconds (user + system) of the processes whose command line contains ``marker``."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


class _IdlePage:
    """Opens the viewer's page in headless Chromium once the server is up, and leaves it alone."""

    def __init__(self, monitor) -> None:
        self.monitor = monitor
        self.browser_cpu_seconds = 0.0
        self.opened = threading.Event()
        self.done = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            from playwright.sync_api import sync_playwright

            while self.monitor.viewer is None and not self.done.is_set():
                time.sleep(0.005)
            profile = tempfile.mkdtemp(prefix="bench-viewer-chromium-")
            with sync_playwright() as playwright:
                context = playwright.chromium.launch_persistent_context(
                    profile, executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_FLAGS,
                    viewport={"width": 960, "height": 600},
                )
                page = context.new_page()
                page.goto(self.monitor.viewer.url)
                self.opened.set()
                self.done.wait()
                self.browser_cpu_seconds = _cpu_seconds_of_processes(profile)
                context.close()
            shutil.rmtree(profile, ignore_errors=True)
        except Exception as error:  # reported by the caller
            self.error = error
            self.opened.set()

    def close(self) -> None:
        self.done.set()
        self.thread.join(60)


def _train(scene, steps: int, case: str) -> dict:
    from gsplat_lib.train import TrainConfig, Trainer
    from gsplat_lib.viewer import TrainingViewer

    monitor = None if case == "no viewer" else TrainingViewer(port=_free_port(), log=lambda message: None)
    page = _IdlePage(monitor) if case == "viewer, idle page" else None
    try:
        with tempfile.TemporaryDirectory() as output:
            config = TrainConfig(output=output, iterations=steps, progress=False)
            trainer = Trainer(config, scene=scene, log=lambda message: None, monitor=monitor)
            trainer.run_dir.claim(config.result_settings(), config.to_dict())
            cpu_start = time.process_time()
            _, results = trainer.train()
            cpu_seconds = time.process_time() - cpu_start
    finally:
        if page is not None:
            page.close()
        if monitor is not None:
            frames = monitor.viewer.frames_shown if monitor.viewer is not None else 0
            monitor.close()
    if page is not None and page.error is not None:
        raise RuntimeError(f"the page could not be opened: {page.error}")
    return {
        "steps_per_second": results["steps_per_second"],
        "cpu_ms_per_step": 1000 * cpu_seconds / steps,
        "browser_cpu_seconds": page.browser_cpu_seconds if page is not None else 0.0,
        "frames": frames if monitor is not None else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench_viewer_training.json"))
    args = parser.parse_args()

    import torch

    from gsplat_lib.data import synthetic_scene_data

    cases = CASES if shutil.which("chromium") else CASES[:2]
    if len(cases) < len(CASES):
        print("no chromium on PATH: the idle-page case is skipped")
    scene = synthetic_scene_data()
    runs = {case: [] for case in cases}
    for round_index in range(args.rounds):
        for case in cases:
            result = _train(scene, args.steps, case)
            runs[case].append(result)
            print(f"round {round_index + 1}: {case:<18} {result['steps_per_second']:6.2f} steps/s, "
                  f"{result['cpu_ms_per_step']:6.1f} CPU ms/step, {result['frames']} frames, "
                  f"browser {result['browser_cpu_seconds']:.1f} CPU s", flush=True)

    def median_of(case, key):
        return statistics.median(run[key] for run in runs[case])

    plain_rate, plain_cpu = median_of("no viewer", "steps_per_second"), median_of("no viewer", "cpu_ms_per_step")
    summary = {}
    print(f"\n{'case':<18} {'steps/s':>8} {'range':>13} {'ratio':>6} {'CPU ms/step':>12} {'ratio':>6} {'browser CPU s':>14}")
    for case in cases:
        rates = [run["steps_per_second"] for run in runs[case]]
        rate, cpu = median_of(case, "steps_per_second"), median_of(case, "cpu_ms_per_step")
        summary[case] = {
            "steps_per_second": rates, "median": rate, "ratio": rate / plain_rate,
            "cpu_ms_per_step": [run["cpu_ms_per_step"] for run in runs[case]], "cpu_median": cpu,
            "cpu_ratio": cpu / plain_cpu, "frames": [run["frames"] for run in runs[case]],
            "browser_cpu_seconds": [run["browser_cpu_seconds"] for run in runs[case]],
        }
        print(f"{case:<18} {rate:8.2f} {min(rates):6.2f}-{max(rates):<6.2f} {rate / plain_rate:6.3f} {cpu:12.1f} "
              f"{cpu / plain_cpu:6.3f} {median_of(case, 'browser_cpu_seconds'):14.1f}")
    result = {
        "benchmark": "viewer_training",
        "steps": args.steps,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "machine": platform.processor() or platform.machine(),
        "cases": summary,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
