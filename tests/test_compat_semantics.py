"""Choosing the compat layer's semantics: diff_surfel_rasterization.SEMANTICS (upstream's by
default), the environment variable GSPLAT_COMPAT_SEMANTICS and gsplat-compat --semantics."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

import gsplat_lib.compat.diff_surfel_rasterization as dsr
from diff_surfel_cases import build_case
from gsplat_lib.compat.runner import main
from subprocess_env import python_env

REPORT_SCRIPT = """
import json, os, sys
import diff_surfel_rasterization
with open(sys.argv[1], "w") as out:
    json.dump({"semantics": diff_surfel_rasterization.SEMANTICS,
               "environment": os.environ.get("GSPLAT_COMPAT_SEMANTICS")}, out)
"""


def imported_semantics(environment):
    """SEMANTICS of a fresh import under ``environment`` (None: unset)."""
    env = python_env()
    env.pop("GSPLAT_COMPAT_SEMANTICS", None)
    if environment is not None:
        env["GSPLAT_COMPAT_SEMANTICS"] = environment
    code = "import gsplat_lib.compat.diff_surfel_rasterization as d; print(d.SEMANTICS)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_upstream_by_default_and_the_environment_variable_chooses():
    assert imported_semantics(None) == "upstream"
    assert imported_semantics("gsplat_lib") == "gsplat_lib"
    assert dsr.SEMANTICS_CHOICES == ("gsplat_lib", "upstream")


def render(case_name="colors", seed=40):
    scene, settings, _ = build_case(case_name, seed)
    with torch.no_grad():
        return dsr.GaussianRasterizer(settings)(
            scene["means3D"], torch.zeros(40, 3), scene["opacities"], colors_precomp=scene["colors"],
            scales=scene["scales"], rotations=scene["rotations"])


def test_the_module_setting_is_read_at_each_render(monkeypatch):
    monkeypatch.setattr(dsr, "SEMANTICS", "gsplat_lib")
    ours = render()
    monkeypatch.setattr(dsr, "SEMANTICS", "upstream")
    upstream = render()
    assert not torch.equal(ours[1], upstream[1]), "the radii differ between the semantics"
    assert float((ours[0] - upstream[0]).abs().max()) > 1e-3
    monkeypatch.setattr(dsr, "SEMANTICS", "2dgs")
    with pytest.raises(ValueError, match="GSPLAT_COMPAT_SEMANTICS.*'2dgs'"):
        render()


@pytest.mark.parametrize("options,expected", [(["--semantics", "gsplat_lib"], "gsplat_lib"),
                                              (["--semantics=upstream"], "upstream")])
def test_runner_option_sets_the_module_and_the_environment(options, expected, tmp_path, monkeypatch):
    monkeypatch.setattr(dsr, "SEMANTICS", dsr.SEMANTICS)
    monkeypatch.delenv("GSPLAT_COMPAT_SEMANTICS", raising=False)
    script = tmp_path / "report.py"
    script.write_text(textwrap.dedent(REPORT_SCRIPT))
    argv, path = list(sys.argv), list(sys.path)
    try:
        assert main([*options, str(script), str(tmp_path / "out.json")]) == 0
    finally:
        sys.argv, sys.path[:] = argv, path
    assert json.loads((tmp_path / "out.json").read_text()) == {"semantics": expected, "environment": expected}


def test_runner_rejects_an_unknown_semantics(tmp_path, capsys):
    script = tmp_path / "report.py"
    script.write_text(textwrap.dedent(REPORT_SCRIPT))
    assert main(["--semantics", "2dgs", str(script), str(tmp_path / "out.json")]) == 2
    assert "--semantics must be one of gsplat_lib, upstream, got '2dgs'" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()
