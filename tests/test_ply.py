"""PLY I/O in the INRIA 2DGS / 3DGS layout: round trips, layout, 3DGS files, bad files."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from gsplat_lib import GaussianModel, load_ply, look_at, save_ply
from gsplat_lib.io import FLAT_SCALE
from gsplat_lib.param_schema import PARAM_NAMES
from gsplat_lib.strategy import in_plane_axes
from random_params import random_params
from subprocess_env import python_env


def expected_names(num_rest, three_scales):
    scales = ["scale_0", "scale_1"] + (["scale_2"] if three_scales else [])
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(num_rest)]
        + ["opacity"]
        + scales
        + ["rot_0", "rot_1", "rot_2", "rot_3"]
    )


@pytest.mark.parametrize("sh_degree", [0, 1, 3])
@pytest.mark.parametrize("three_scales", [False, True])
def test_round_trip_is_bit_exact(tmp_path, sh_degree, three_scales):
    params = random_params(sh_degree=sh_degree)
    path = tmp_path / "surfels.ply"
    save_ply(path, params, three_scales=three_scales)
    loaded = load_ply(path)
    assert set(loaded) == set(PARAM_NAMES)
    for name in PARAM_NAMES:
        assert loaded[name].dtype == torch.float32
        assert torch.equal(loaded[name], params[name]), name


def test_layout_is_inria_with_channel_major_rest(tmp_path):
    params = random_params(count=2, sh_degree=1)
    params["sh_rest"] = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3)  # [N, K-1, channel]
    path = tmp_path / "surfels.ply"
    save_ply(path, params)
    vertex = PlyData.read(str(path))["vertex"]
    assert [p.name for p in vertex.properties] == expected_names(9, False)
    assert all(vertex.data.dtype[name] == np.dtype("<f4") for name in vertex.data.dtype.names)
    row = [float(vertex[f"f_rest_{i}"][1]) for i in range(9)]
    # Surfel 1 holds 9..17 as [coefficient][channel]; the file lists red's 3, then green's, then blue's.
    assert row == [9.0, 12.0, 15.0, 10.0, 13.0, 16.0, 11.0, 14.0, 17.0]
    assert not any(vertex[n].any() for n in ("nx", "ny", "nz"))
    assert float(vertex["opacity"][0]) == params["opacity_logits"][0].item()


def test_three_scale_layout_opens_as_flat_discs(tmp_path):
    path = tmp_path / "viewer.ply"
    save_ply(path, random_params(count=3), three_scales=True)
    vertex = PlyData.read(str(path))["vertex"]
    assert [p.name for p in vertex.properties] == expected_names(45, True)
    np.testing.assert_array_equal(vertex["scale_2"], np.float32(math.log(FLAT_SCALE)))


def write_vertex_ply(path, columns):
    dtype = [(name, "<f4") for name in columns]
    count = len(next(iter(columns.values())))
    data = np.empty(count, dtype=dtype)
    for name, values in columns.items():
        data[name] = values
    PlyData([PlyElement.describe(data, "vertex")]).write(str(path))


def gaussian_columns(log_scales3, quats, count):
    columns = {name: np.zeros(count, np.float32) for name in ("x", "y", "z", "nx", "ny", "nz")}
    columns.update({f"f_dc_{i}": np.full(count, 0.1 * i, np.float32) for i in range(3)})
    columns["opacity"] = np.zeros(count, np.float32)
    columns.update({f"scale_{i}": log_scales3[:, i] for i in range(log_scales3.shape[1])})
    columns.update({f"rot_{i}": quats[:, i] for i in range(4)})
    return columns


def test_3dgs_ellipsoids_become_surfels_of_their_two_largest_axes(tmp_path):
    count = 30
    generator = torch.Generator().manual_seed(2)
    log_scales3 = torch.randn(count, 3, generator=generator)
    quats = torch.randn(count, 4, generator=generator)
    path = tmp_path / "3dgs.ply"
    write_vertex_ply(path, gaussian_columns(log_scales3.numpy(), quats.numpy(), count))
    loaded = load_ply(path)
    assert loaded["sh_rest"].shape == (count, 0, 3)

    def axes(unit_quats):
        t_u, t_v = in_plane_axes(unit_quats)
        return torch.stack([t_u, t_v, torch.linalg.cross(t_u, t_v)], dim=2)  # columns

    original = axes(torch.nn.functional.normalize(quats, dim=1))
    surfel = axes(torch.nn.functional.normalize(loaded["quats"], dim=1))
    order = torch.argsort(log_scales3, dim=1, descending=True)
    for n in range(count):
        largest, second, smallest = order[n].tolist()
        kept = {largest, second}
        in_plane = sorted(kept)
        # The surfel's scales are those of the two largest axes, each with its own axis.
        for j in range(2):
            axis = [k for k in in_plane if math.isclose(math.exp(loaded["log_scales"][n, j]), math.exp(log_scales3[n, k]), rel_tol=1e-6)]
            assert axis, (n, j)
            torch.testing.assert_close(surfel[n, :, j], original[n, :, axis[0]], atol=1e-5, rtol=0)
        normal_alignment = torch.dot(surfel[n, :, 2], original[n, :, smallest]).abs()
        assert normal_alignment.item() == pytest.approx(1.0, abs=1e-5)


def test_from_ply_is_a_warm_start(tmp_path):
    params = random_params(sh_degree=2)
    path = tmp_path / "surfels.ply"
    save_ply(path, params)
    model = GaussianModel.from_ply(path, scene_extent=2.0)
    assert model.active_sh_degree == 2 and model.max_sh_degree == 2
    assert len(model.optimizer.state) == 0
    for name in PARAM_NAMES:
        assert torch.equal(model.params[name].detach(), params[name])
    model.save_ply(tmp_path / "again.ply")
    assert (tmp_path / "again.ply").read_bytes() == path.read_bytes()


def test_from_ply_without_a_scene_extent_derives_it_from_the_surfels(tmp_path):
    params = random_params(sh_degree=1)
    path = tmp_path / "surfels.ply"
    save_ply(path, params)
    model = GaussianModel.from_ply(path)
    means = params["means"].double()
    expected = 1.1 * float((means - means.mean(dim=0)).norm(dim=1).max())
    assert model.scene_extent == pytest.approx(expected, rel=1e-12)
    assert model.render(*single_camera(), 16, 12).colors.shape == (1, 12, 16, 3)


def single_camera():
    viewmat = look_at((0.0, 0.0, -4.0))[None]
    Ks = torch.tensor([[[20.0, 0.0, 8.0], [0.0, 20.0, 6.0], [0.0, 0.0, 1.0]]])
    return viewmat, Ks


def valid_columns(count=4):
    params = random_params(count=count, sh_degree=1)
    columns = gaussian_columns(
        params["log_scales"].numpy(), params["quats"].numpy(), count
    )
    columns.update({f"f_rest_{i}": np.zeros(count, np.float32) for i in range(9)})
    return columns


def test_missing_property_is_named(tmp_path):
    columns = valid_columns()
    del columns["opacity"]
    path = tmp_path / "no_opacity.ply"
    write_vertex_ply(path, columns)
    with pytest.raises(ValueError, match=r"no_opacity\.ply.*'opacity'"):
        load_ply(path)


def test_non_finite_value_is_named(tmp_path):
    columns = valid_columns()
    columns["rot_2"][3] = np.nan
    path = tmp_path / "nan.ply"
    write_vertex_ply(path, columns)
    with pytest.raises(ValueError, match=r"nan\.ply.*'rot_2'.*row 3"):
        load_ply(path)


def test_wrong_rest_count_is_named(tmp_path):
    columns = valid_columns()
    for i in range(5, 9):
        del columns[f"f_rest_{i}"]
    path = tmp_path / "rest.ply"
    write_vertex_ply(path, columns)
    with pytest.raises(ValueError, match=r"rest\.ply.*f_rest"):
        load_ply(path)


def test_truncated_and_foreign_files_are_rejected(tmp_path):
    path = tmp_path / "surfels.ply"
    save_ply(path, random_params(count=50))
    truncated = tmp_path / "truncated.ply"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated.ply"):
        load_ply(truncated)
    text = tmp_path / "notes.ply"
    text.write_text("these are not surfels\n")
    with pytest.raises(ValueError, match="notes.ply"):
        load_ply(text)
    faces = tmp_path / "faces.ply"
    PlyData([PlyElement.describe(np.zeros(2, dtype=[("a", "<f4")]), "face")]).write(str(faces))
    with pytest.raises(ValueError, match=r"faces\.ply.*vertex"):
        load_ply(faces)
    with pytest.raises(FileNotFoundError):
        load_ply(tmp_path / "missing.ply")


def test_gsplat_lib_imports_without_plyfile(tmp_path):
    """Only the PLY functions need plyfile: a --no-deps build (a GPU machine with no registry)
    still imports the library, and they then fail with plyfile's ImportError."""
    script = (
        "import sys\n"
        "sys.modules['plyfile'] = None  # a later `import plyfile` raises ImportError\n"
        "import gsplat_lib\n"
        "try:\n"
        "    gsplat_lib.load_ply('missing.ply')\n"
        "except FileNotFoundError:\n"
        "    pass\n"
        "try:\n"
        "    gsplat_lib.load_ply(sys.argv[1])\n"
        "except ImportError:\n"
        "    print('plyfile needed')\n"
    )
    existing = tmp_path / "any.ply"
    existing.write_bytes(b"ply\n")
    result = subprocess.run([sys.executable, "-c", script, str(existing)], capture_output=True, text=True,
                            cwd=tmp_path, env=python_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "plyfile needed"


# Files whose header disagrees with their data: found by fuzzing (issue 27); plyfile reads the
# declared rows and ignores the rest, so each would otherwise load silently.


def _write_with_header_count(tmp_path, declared):
    path = tmp_path / "surfels.ply"
    save_ply(path, random_params(count=30))
    data = path.read_bytes()
    path.write_bytes(data.replace(b"element vertex 30\n", f"element vertex {declared}\n".encode(), 1))
    return path


@pytest.mark.parametrize("declared", [29, 0])
def test_header_count_below_the_data_is_refused(tmp_path, declared):
    path = _write_with_header_count(tmp_path, declared)
    with pytest.raises(ValueError, match=r"surfels\.ply: \d+ bytes follow the %d rows" % declared):
        load_ply(path)


def test_header_count_above_the_data_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"surfels\.ply: cannot be read"):
        load_ply(_write_with_header_count(tmp_path, 31))


def test_trailing_bytes_are_refused(tmp_path):
    path = tmp_path / "surfels.ply"
    save_ply(path, random_params(count=5))
    path.write_bytes(path.read_bytes() + b"\x00garbage")
    with pytest.raises(ValueError, match=r"surfels\.ply: 8 bytes follow the 5 rows"):
        load_ply(path)


def test_ascii_file_with_an_extra_row_is_refused(tmp_path):
    path = tmp_path / "ascii.ply"
    save_ply(path, random_params(count=4))
    ply = PlyData.read(str(path), mmap=False)  # a mapped file must not be rewritten under the map
    ply.text = True
    ply.write(str(path))
    assert torch.equal(load_ply(path)["means"], random_params(count=4)["means"])  # as written, it loads
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines + [lines[-1]]))
    with pytest.raises(ValueError, match=r"ascii\.ply: the header declares 4 rows but the file has 5 data lines"):
        load_ply(path)


def test_list_typed_property_is_named(tmp_path):
    rows = np.empty(2, dtype=[("x", "f4"), ("opacity", "O")])
    rows["x"] = 0.0
    rows["opacity"] = [np.array([0.1, 0.2], "f4"), np.array([0.3], "f4")]
    path = tmp_path / "lists.ply"
    PlyData([PlyElement.describe(rows, "vertex", val_types={"opacity": "f4"}, len_types={"opacity": "u1"})]).write(
        str(path))
    with pytest.raises(ValueError, match=r"lists\.ply: property 'opacity' of the vertex element is a list"):
        load_ply(path)
