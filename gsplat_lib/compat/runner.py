"""``gsplat-compat [--cpu] [--semantics NAME] SCRIPT [ARGS...]`` (also ``python -m gsplat_lib.compat``):
runs SCRIPT as ``python SCRIPT ARGS`` would (``sys.argv``, ``sys.path[0]`` = the script's directory,
run as ``__main__``) with gsplat_lib's replacements for ``diff_surfel_rasterization`` and
``simple_knn`` installed, with ``--cpu`` its CUDA requests sent to the CPU, and with
``--semantics`` the rasterizer's rules chosen (``diff_surfel_rasterization.SEMANTICS``)."""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
from typing import List, Optional

from gsplat_lib.compat import diff_surfel_rasterization
from gsplat_lib.compat.aliases import install
from gsplat_lib.compat.cpu_redirect import cuda_on_cpu

__all__ = ["main", "run_script"]

USAGE = """usage: gsplat-compat [--cpu] SCRIPT [ARGS...]

Runs SCRIPT as `python SCRIPT ARGS` would, with gsplat_lib's drop-in replacements importable as
diff_surfel_rasterization, simple_knn and simple_knn._C.

options (before SCRIPT):
  --cpu       send the script's CUDA requests (.cuda(), device="cuda", torch.cuda basics) to
              the CPU, for CUDA-only code on a machine without a GPU
  --semantics upstream|gsplat_lib
              the rasterizer's rules: upstream's (the default) or gsplat_lib's own; also the
              environment variable GSPLAT_COMPAT_SEMANTICS (this option sets it for SCRIPT)
  -h, --help  show this message
"""


def run_script(path: str, args: List[str], cpu: bool = False, semantics: Optional[str] = None) -> None:
    """Runs the script at ``path`` with ``args`` as its command line; restores ``sys.argv`` and
    ``sys.path`` afterwards. ``semantics`` (when given) becomes ``diff_surfel_rasterization.SEMANTICS``
    and ``GSPLAT_COMPAT_SEMANTICS`` (for the script's child processes) for good."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"gsplat-compat: no such script: {path}")
    if semantics is not None:
        if semantics not in diff_surfel_rasterization.SEMANTICS_CHOICES:
            raise ValueError(f"gsplat-compat: --semantics must be one of "
                             f"{', '.join(diff_surfel_rasterization.SEMANTICS_CHOICES)}, got {semantics!r}")
        diff_surfel_rasterization.SEMANTICS = semantics
        os.environ["GSPLAT_COMPAT_SEMANTICS"] = semantics
    install()
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [path] + list(args)
    sys.path[:1] = [os.path.dirname(os.path.realpath(path))]
    try:
        with cuda_on_cpu() if cpu else contextlib.nullcontext():
            runpy.run_path(path, run_name="__main__")
    finally:  # for callers in the same process (a command-line run exits next)
        sys.argv = saved_argv
        sys.path[:] = saved_path


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cpu, semantics = False, None
    while argv and argv[0].startswith("-"):
        option = argv.pop(0)
        if option == "--cpu":
            cpu = True
        elif option == "--semantics" or option.startswith("--semantics="):
            semantics = option.partition("=")[2] if "=" in option else (argv.pop(0) if argv else "")
        elif option in ("-h", "--help"):
            print(USAGE, end="")
            return 0
        else:
            print(f"gsplat-compat: unknown option {option} (options go before SCRIPT)\n\n{USAGE}", end="",
                  file=sys.stderr)
            return 2
    if not argv:
        print(USAGE, end="", file=sys.stderr)
        return 2
    try:
        run_script(argv[0], argv[1:], cpu=cpu, semantics=semantics)
    except (FileNotFoundError, ValueError) as error:
        if str(error).startswith("gsplat-compat:"):
            print(error, file=sys.stderr)
            return 2
        raise
    return 0
