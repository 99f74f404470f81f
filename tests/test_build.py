"""What the build promises (docs/design.md, decisions 1 and 3)."""

import shutil
import subprocess
from pathlib import Path

import pytest

import gsplat_lib
from gsplat_lib import _backend


def test_build_info_describes_the_build():
    info = gsplat_lib.build_info()
    assert info["version"] == gsplat_lib.__version__
    assert isinstance(info["cuda"], bool)
    assert info["cxx_compiler"]
    if info["cuda"]:
        assert info["cuda_archs"] and info["cuda_compiler"].startswith("NVIDIA")
        assert info["cuda_runtime_version"] > 0
    else:
        assert info["cuda_archs"] == "" and info["cuda_runtime_version"] == 0


@pytest.mark.skipif(shutil.which("ldd") is None, reason="needs ldd")
def test_compiled_core_links_no_torch_and_no_shared_cuda_runtime():
    """The wheel works with any torch: _C links neither libtorch nor a shared libcudart."""
    libraries = subprocess.run(["ldd", _backend.core().__file__], capture_output=True, text=True,
                               check=True).stdout
    for forbidden in ("libtorch", "libc10", "libcudart.so"):
        assert forbidden not in libraries, libraries


def test_compiled_sources_include_no_torch_header():
    csrc = Path(__file__).resolve().parents[1] / "csrc"
    if not csrc.is_dir():
        pytest.skip("needs the source tree")
    for source in csrc.rglob("*"):
        if source.suffix in (".h", ".cpp", ".cu", ".cuh"):
            for line in source.read_text().splitlines():
                if line.lstrip().startswith("#include"):
                    assert not any(name in line for name in ("torch", "ATen", "c10")), f"{source}: {line}"


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm")
def test_no_8_lane_code_is_compiled_out_of_line():
    """8-lane (AVX2) math is only fast inlined into the *_avx2 schedules, which carry the
    target: a function left out of line (a lambda, say) is compiled for baseline SSE2 and
    runs each 8-lane vector as two halves (docs/design.md, "Lanes")."""
    symbols = subprocess.run(["nm", "-C", "--defined-only", _backend.core().__file__], capture_output=True,
                             text=True).stdout
    if not symbols.strip():
        pytest.skip("the compiled core has no symbol table (stripped)")
    out_of_line = [line for line in symbols.splitlines() if "__vector(8)" in line]
    assert not out_of_line, "\n".join(out_of_line)
