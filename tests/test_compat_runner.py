"""install(), the gsplat-compat runner and --cpu (the command-line runs in fresh processes)."""

import importlib
import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from gsplat_lib.compat import UpstreamShadowedWarning, install
from gsplat_lib.compat.aliases import ALIASES
from gsplat_lib.compat.runner import main
from subprocess_env import python_env

REPORT_SCRIPT = """
import json, sys
import diff_surfel_rasterization, simple_knn, simple_knn._C
from simple_knn._C import distCUDA2
from diff_surfel_rasterization import GaussianRasterizationSettings, GaussianRasterizer
with open(sys.argv[1], "w") as out:
    json.dump({"argv": sys.argv, "name": __name__, "path0": sys.path[0], "file": __file__,
               "modules": [diff_surfel_rasterization.__name__, simple_knn._C.__name__]}, out)
if "--exit" in sys.argv:
    sys.exit(int(sys.argv[sys.argv.index("--exit") + 1]))
if "--raise" in sys.argv:
    raise RuntimeError("from the script")
"""


@pytest.fixture
def clean_aliases():
    """install() registers module names in this process: take them out again afterwards."""
    saved = {name: sys.modules.get(name) for name in ALIASES}
    for name in ALIASES:
        sys.modules.pop(name, None)
    yield
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


def run(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=python_env(), capture_output=True, text=True,
                          timeout=300)


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_install_makes_the_upstream_names_importable(clean_aliases):
    assert install() == [] and install() == []
    import diff_surfel_rasterization
    import simple_knn._C
    from simple_knn._C import distCUDA2

    assert diff_surfel_rasterization.__name__ == "gsplat_lib.compat.diff_surfel_rasterization"
    assert simple_knn._C.__name__ == "gsplat_lib.compat.simple_knn._C" and callable(distCUDA2)


def test_installed_upstream_packages_are_named_and_lose(clean_aliases, tmp_path, monkeypatch):
    for package in ("diff_surfel_rasterization", "simple_knn"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("UPSTREAM = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with pytest.warns(UpstreamShadowedWarning) as caught:
        notes = install()
    assert len(notes) == 2 and len(caught) == 2
    assert f"diff_surfel_rasterization is also installed ({tmp_path / 'diff_surfel_rasterization'}" in notes[0]
    assert "this process uses gsplat_lib's replacement" in notes[0]
    import diff_surfel_rasterization

    assert not hasattr(diff_surfel_rasterization, "UPSTREAM")


def test_already_imported_upstream_module_is_replaced_and_named(clean_aliases):
    sys.modules["simple_knn"] = type(sys)("simple_knn")
    with pytest.warns(UpstreamShadowedWarning, match="simple_knn was already imported"):
        install()
    assert sys.modules["simple_knn"].__name__ == "gsplat_lib.compat.simple_knn"


def test_runner_runs_a_script_as_python_would(tmp_path):
    scripts = tmp_path / "project"
    scripts.mkdir()
    write(scripts / "report.py", REPORT_SCRIPT)
    result = run(["-m", "gsplat_lib.compat", "project/report.py", str(tmp_path / "out.json"), "-s", "x", "--flag"],
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["argv"] == ["project/report.py", str(tmp_path / "out.json"), "-s", "x", "--flag"]
    assert report["name"] == "__main__"
    assert report["path0"] == str(scripts.resolve())
    assert report["file"] == "project/report.py"
    assert report["modules"] == ["gsplat_lib.compat.diff_surfel_rasterization", "gsplat_lib.compat.simple_knn._C"]


def test_runner_exit_status_errors_and_usage(clean_aliases, tmp_path, capsys):
    script = write(tmp_path / "report.py", REPORT_SCRIPT)
    argv, path = list(sys.argv), list(sys.path)
    with pytest.raises(SystemExit) as exited:
        main([str(script), str(tmp_path / "r.json"), "--exit", "3"])
    assert exited.value.code == 3
    with pytest.raises(RuntimeError, match="from the script"):
        main([str(script), str(tmp_path / "r.json"), "--raise"])
    assert sys.argv == argv and sys.path == path, "the runner restores sys.argv and sys.path"
    assert main([str(script), str(tmp_path / "r.json")]) == 0
    assert main(["no_such_script.py"]) == 2 and "no such script" in capsys.readouterr().err
    assert main(["--gpu", str(script)]) == 2 and "unknown option --gpu" in capsys.readouterr().err
    assert main([]) == 2 and "usage: gsplat-compat" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "usage: gsplat-compat [--cpu] SCRIPT" in capsys.readouterr().out


def test_console_script(clean_aliases, tmp_path):
    executable = shutil.which("gsplat-compat")
    if executable is None:
        pytest.skip("gsplat-compat is on PATH only when the package is installed (pip install .)")
    result = subprocess.run([executable, "--help"], env=python_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "usage: gsplat-compat [--cpu] SCRIPT" in result.stdout


CUDA_SCRIPT = """
import json, sys, torch
torch.cuda.set_device(torch.device("cuda:0"))
assert torch.cuda.is_available() and torch.cuda.device_count() == 1 and torch.cuda.current_device() == 0
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
a = torch.zeros(3, device="cuda")
b = torch.tensor([1.0, 2.0], device=torch.device("cuda"))
c = torch.rand(2, 2).cuda()
d = c.to("cuda:0", non_blocking=True)
e = torch.ones(2).to(0)
f = torch.arange(4, device="cuda").float().cuda(0)
g = torch.zeros_like(a, device="cuda", requires_grad=True) + 0
module = torch.nn.Linear(2, 2).cuda()
moved = torch.nn.Linear(2, 2).to("cuda")
pinned = torch.ones(2).pin_memory()
torch.save({"x": torch.ones(2)}, sys.argv[2])
loaded = torch.load(sys.argv[2], map_location="cuda")
torch.cuda.synchronize(); torch.cuda.empty_cache()
end.record()
c[0, 0] = -5.0  # .to("cuda") copied: d keeps its value
devices = {name: str(t.device) for name, t in dict(a=a, b=b, c=c, d=d, e=e, f=f, g=g, weight=module.weight,
           moved=moved.weight, pinned=pinned, loaded=loaded["x"]).items()}
with open(sys.argv[1], "w") as out:
    json.dump({"devices": devices, "elapsed": end.elapsed_time(start) <= 0 <= start.elapsed_time(end),
               "copied": float(d[0, 0]) != -5.0, "grad": g.requires_grad,
               "memory": [torch.cuda.memory_allocated(), torch.cuda.max_memory_allocated()],
               "free_total": list(torch.cuda.mem_get_info()), "name": torch.cuda.get_device_name()}, out)
"""


def test_cpu_flag_sends_cuda_requests_to_the_cpu(tmp_path):
    script = write(tmp_path / "uses_cuda.py", CUDA_SCRIPT)
    result = run(["-m", "gsplat_lib.compat", "--cpu", str(script), str(tmp_path / "out.json"),
                  str(tmp_path / "saved.pt")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert set(report["devices"].values()) == {"cpu"}, report["devices"]
    assert report["elapsed"] and report["copied"] and report["grad"]
    assert report["memory"] == [0, 0]
    free, total = report["free_total"]
    assert 0 < free <= total
    assert "CPU" in report["name"]
