"""Triangle meshes: a small container, connected-component clean-up and PLY files."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch

__all__ = ["Mesh", "connected_components", "keep_largest_components", "save_mesh_ply", "load_mesh_ply"]

PathLike = Union[str, os.PathLike]


@dataclass(eq=False)
class Mesh:
    """A triangle mesh.

    Attributes:
        vertices: ``[V, 3]`` float32 world positions.
        faces: ``[F, 3]`` int64 vertex indices, counter-clockwise seen from the front.
        vertex_colors: ``[V, 3]`` float32 RGB in [0, 1], or None.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    vertex_colors: Optional[torch.Tensor] = None

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def device(self) -> torch.device:
        return self.vertices.device

    def to(self, device) -> "Mesh":
        colors = None if self.vertex_colors is None else self.vertex_colors.to(device)
        return Mesh(self.vertices.to(device), self.faces.to(device), colors)

    def face_normals(self) -> torch.Tensor:
        """``[F, 3]`` unit normals (zero for degenerate faces)."""
        corners = self.vertices[self.faces]
        normals = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1)
        return torch.nn.functional.normalize(normals, dim=-1)

    def face_areas(self) -> torch.Tensor:
        """``[F]`` triangle areas."""
        corners = self.vertices[self.faces]
        normals = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1)
        return 0.5 * normals.norm(dim=-1)

    def select_faces(self, keep: torch.Tensor) -> "Mesh":
        """The mesh of the faces where ``keep [F]`` (bool) is set, without unused vertices."""
        return Mesh(self.vertices, self.faces[keep], self.vertex_colors).without_unreferenced_vertices()

    def without_unreferenced_vertices(self) -> "Mesh":
        """The same surface with only the vertices some face uses (their order kept)."""
        used = torch.zeros(self.num_vertices, dtype=torch.bool, device=self.device)
        used[self.faces.reshape(-1)] = True
        new_index = torch.cumsum(used.to(torch.int64), dim=0) - 1
        colors = None if self.vertex_colors is None else self.vertex_colors[used]
        return Mesh(self.vertices[used], new_index[self.faces], colors)


def connected_components(faces: torch.Tensor, num_vertices: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Components of faces that share a vertex.

    Returns ``(labels [F], sizes [K])``: each face's component, numbered 0..K-1 in the order
    of their first face, and the number of faces of each. Deterministic on every device: the
    smallest vertex index of a component spreads along the faces (with pointer jumping:
    every label names a vertex of the same component with a smaller or equal index).
    """
    device = faces.device
    if faces.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=device), torch.zeros(0, dtype=torch.int64, device=device)
    labels = torch.arange(num_vertices, dtype=torch.int64, device=device)
    flat = faces.reshape(-1)
    while True:
        face_min = labels[faces].min(dim=1).values
        spread = labels.scatter_reduce(0, flat, face_min.repeat_interleave(3), reduce="amin")
        spread = spread[spread]
        if torch.equal(spread, labels):
            break
        labels = spread
    face_roots = labels[faces[:, 0]]
    roots, first_face = torch.unique(face_roots, return_inverse=True)
    # Renumber components by their first face, so the numbering does not depend on vertex order.
    first = torch.full((roots.shape[0],), faces.shape[0], dtype=torch.int64, device=device)
    first = first.scatter_reduce(0, first_face, torch.arange(faces.shape[0], device=device), reduce="amin")
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(first.shape[0], device=device)
    face_labels = rank[first_face]
    return face_labels, torch.bincount(face_labels, minlength=first.shape[0])


def keep_largest_components(mesh: Mesh, num_components: int = 50, min_faces: int = 50) -> Mesh:
    """2DGS's ``post_process_mesh``: keeps the ``num_components`` largest connected components
    (by face count; components tied with the last one kept stay too) and drops every
    component of fewer than ``min_faces`` faces, the floaters that fusion leaves."""
    if isinstance(num_components, bool) or not isinstance(num_components, int) or num_components < 1:
        raise ValueError(f"num_components must be an integer >= 1, got {num_components!r}")
    if isinstance(min_faces, bool) or not isinstance(min_faces, int) or min_faces < 0:
        raise ValueError(f"min_faces must be an integer >= 0, got {min_faces!r}")
    if mesh.num_faces == 0:
        return mesh
    labels, sizes = connected_components(mesh.faces, mesh.num_vertices)
    ranked = torch.sort(sizes, descending=True).values
    threshold = max(int(ranked[min(num_components, ranked.shape[0]) - 1]), min_faces)
    return mesh.select_faces(sizes[labels] >= threshold)


def save_mesh_ply(path: PathLike, mesh: Mesh) -> Path:
    """Writes a binary PLY (x, y, z float; red, green, blue uchar when coloured; faces as
    int32 vertex lists), atomically (a temporary file renamed into place). Returns the path."""
    from plyfile import PlyData, PlyElement

    path = Path(path)
    vertices = mesh.vertices.detach().cpu().numpy().astype(np.float32)
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if mesh.vertex_colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex_rows = np.empty(len(vertices), dtype=fields)
    for axis, name in enumerate("xyz"):
        vertex_rows[name] = vertices[:, axis]
    if mesh.vertex_colors is not None:
        colors = np.clip(np.rint(mesh.vertex_colors.detach().cpu().numpy() * 255.0), 0, 255).astype(np.uint8)
        for channel, name in enumerate(("red", "green", "blue")):
            vertex_rows[name] = colors[:, channel]
    faces = mesh.faces.detach().cpu().numpy()
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"{path}: the mesh's faces index vertices that do not exist")
    face_rows = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
    face_rows["vertex_indices"] = faces.astype(np.int32)
    data = PlyData([PlyElement.describe(vertex_rows, "vertex"), PlyElement.describe(face_rows, "face")], byte_order="<")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            data.write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_mesh_ply(path: PathLike) -> Mesh:
    """Reads a triangle mesh PLY (as :func:`save_mesh_ply` writes, or any with x, y, z and
    triangular faces); colours are read when the vertices have red, green and blue."""
    from plyfile import PlyData, PlyParseError

    path = Path(path)
    try:
        data = PlyData.read(str(path))
        vertex = data["vertex"]
        face = data["face"]
    except (OSError, KeyError, ValueError, PlyParseError) as error:
        raise ValueError(f"{path}: not a readable PLY mesh ({error})") from error
    names = vertex.data.dtype.names
    if not all(name in names for name in "xyz"):
        raise ValueError(f"{path}: the vertices have no x, y, z")
    vertices = np.stack([np.asarray(vertex[name], dtype=np.float32) for name in "xyz"], axis=1)
    face_names = face.data.dtype.names
    key = "vertex_indices" if "vertex_indices" in face_names else ("vertex_index" if "vertex_index" in face_names else None)
    if key is None:
        raise ValueError(f"{path}: the faces have no vertex_indices")
    lists = face[key]
    if len(lists) and any(len(entry) != 3 for entry in lists):
        raise ValueError(f"{path}: only triangle meshes are supported")
    faces = np.asarray(np.stack(lists) if len(lists) else np.zeros((0, 3)), dtype=np.int64).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"{path}: faces index vertices that do not exist")
    colors = None
    if all(name in names for name in ("red", "green", "blue")):
        colors = torch.from_numpy(
            np.stack([np.asarray(vertex[name], dtype=np.float32) / 255.0 for name in ("red", "green", "blue")], axis=1)
        )
    return Mesh(torch.from_numpy(vertices), torch.from_numpy(faces), colors)
