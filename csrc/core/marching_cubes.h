// Marching cubes without a case table: the polygons of a cube are traced from its faces.
//
// Corner k of a cube is at offset (k & 1, k >> 1 & 1, k >> 2 & 1); it is inside (behind the
// surface) when its value is negative. Edge e = 4 a + b_u + 2 b_v runs along axis a from the
// corner whose bit a is 0; b_u, b_v are that corner's bits along u = a + 1 and v = a + 2
// (mod 3). Walking each face's corners counter-clockwise seen from outside the cube, a sign
// change is an entry (outside to inside) or an exit; each entry joins the next exit along the
// walk. So a face whose two diagonal corners are inside always cuts them off separately, from
// whichever cube it is seen, which makes the surface watertight across cubes (the classic
// table is not). Every crossed edge is an entry on one of its two faces and an exit on the
// other, so the segments link into closed loops; each loop is a fan of triangles whose
// normals point to the outside (positive) corners.
#pragma once

#include "core/common.h"
#include "core/tsdf.h"

namespace gsl::mc {

constexpr int kMaxTriangles = 12;  // a loop of n crossings gives n - 2 triangles; 12 edges at most

GSL_HD int edge_axis(int edge) { return edge >> 2; }

// The corner an edge starts from (its bit along the edge's axis is 0).
GSL_HD int edge_origin(int edge) {
  const int axis = edge >> 2;
  const int u = (axis + 1) % 3;
  const int v = (axis + 2) % 3;
  return ((edge & 1) << u) | (((edge >> 1) & 1) << v);
}

// The edge joining two corners that differ in one bit.
GSL_HD int edge_between(int a, int b) {
  const int diff = a ^ b;
  const int axis = diff == 1 ? 0 : (diff == 2 ? 1 : 2);
  const int origin = a & b;
  const int u = (axis + 1) % 3;
  const int v = (axis + 2) % 3;
  return 4 * axis + ((origin >> u) & 1) + 2 * ((origin >> v) & 1);
}

// Fills next_edge[e] (the crossing that follows crossing e along its loop) from the faces;
// entries of edges without a crossing are left alone. inside: bit k set when corner k is inside.
GSL_HD void link_crossings(unsigned inside, int* next_edge) {
  for (int axis = 0; axis < 3; ++axis) {
    const int u = (axis + 1) % 3;
    const int v = (axis + 2) % 3;
    for (int side = 0; side < 2; ++side) {
      // Counter-clockwise about the outward normal: +axis for side 1, -axis for side 0.
      const int walk_u[4] = {0, 1, 1, 0};
      const int walk_v[4] = {0, 0, 1, 1};
      int corners[4];
      for (int k = 0; k < 4; ++k) {
        const int step = side == 1 ? k : (4 - k) % 4;
        corners[k] = (side << axis) | (walk_u[step] << u) | (walk_v[step] << v);
      }
      int crossing[4];
      bool entry[4];
      int count = 0;
      for (int k = 0; k < 4; ++k) {
        const int a = corners[k];
        const int b = corners[(k + 1) % 4];
        const bool in_a = (inside >> a) & 1u;
        const bool in_b = (inside >> b) & 1u;
        if (in_a == in_b) continue;
        crossing[count] = edge_between(a, b);
        entry[count] = in_b;
        ++count;
      }
      for (int k = 0; k < count; ++k) {
        if (!entry[k]) continue;
        next_edge[crossing[k]] = crossing[(k + 1) % count];  // crossings alternate: that one is an exit
      }
    }
  }
}

// The two cube faces an edge lies on, as bits 2 * axis + side.
GSL_HD unsigned edge_faces(int edge) {
  const int axis = edge >> 2;
  const int u = (axis + 1) % 3;
  const int v = (axis + 2) % 3;
  return (1u << (2 * u + (edge & 1))) | (1u << (2 * v + ((edge >> 1) & 1)));
}

// The vertex a loop's triangle fan starts from: the first whose chords (to every vertex but
// its two neighbours) all cross the cube's inside. A chord between two crossings of one face
// would lie on that face, where the neighbouring cube may draw the same chord: two triangles
// would then share it, folded onto each other.
GSL_HD int fan_apex(const int* loop, int n) {
  for (int apex = 0; apex < n; ++apex) {
    bool clear = true;
    for (int k = 2; k + 1 < n && clear; ++k)
      clear = (edge_faces(loop[apex]) & edge_faces(loop[(apex + k) % n])) == 0u;
    if (clear) return apex;
  }
  return 0;
}

// Triangles of a cube as edge triples; returns how many (0 for a cube wholly in or out).
GSL_HD int cube_triangles(unsigned inside, int (*triangles)[3]) {
  if (inside == 0u || inside == 0xffu) return 0;
  int next_edge[12];
  for (int e = 0; e < 12; ++e) next_edge[e] = -1;
  link_crossings(inside, next_edge);
  bool used[12] = {false, false, false, false, false, false, false, false, false, false, false, false};
  int count = 0;
  for (int start = 0; start < 12; ++start) {
    if (next_edge[start] < 0 || used[start]) continue;
    int loop[12];
    int n = 0;
    // A loop visits each of the 12 edges at most once; the bound only guards the kernel.
    for (int current = start; n < 12 && current >= 0 && !used[current]; current = next_edge[current]) {
      used[current] = true;
      loop[n++] = current;
    }
    const int apex = fan_apex(loop, n);
    for (int k = 1; k + 1 < n; ++k) {
      triangles[count][0] = loop[apex];
      triangles[count][1] = loop[(apex + k) % n];
      triangles[count][2] = loop[(apex + k + 1) % n];
      ++count;
    }
  }
  return count;
}

// ---------------------------------------------------------------------------------------------
// Marching cubes over the sparse blocks of a TSDF volume (core/tsdf.h). Each voxel owns the
// three edges that leave it along +x, +y, +z and the cube it is the lowest corner of; cubes
// and edges reach into the neighbouring blocks. A corner counts only when observed
// (weight > min_weight), and a cube only when all eight corners are.

struct BlockField {
  const int32_t* block_coords = nullptr;  // [B, 3]
  const int32_t* neighbours = nullptr;    // [B, 8]: block at offset (k & 1, k >> 1 & 1, k >> 2 & 1), -1 if none; [b, 0] = b
  const float* tsdf = nullptr;            // [B, 512]
  const float* weight = nullptr;          // [B, 512]
  const float* color = nullptr;           // [B, 512, 3], or null
  float min_weight = 0.0f;
};

// Global index (block * 512 + x + 8 y + 64 z) of the voxel at (x, y, z), 0 <= x, y, z < 16,
// counted from the lowest voxel of `block`; -1 when its block does not exist.
GSL_HD int64_t voxel_at(const BlockField& f, int64_t block, int x, int y, int z) {
  const int side = tsdf::kBlockSide;
  const int k = (x / side) | ((y / side) << 1) | ((z / side) << 2);
  const int32_t found = f.neighbours[8 * block + k];
  if (found < 0) return -1;
  return static_cast<int64_t>(found) * tsdf::kBlockVoxels + (x % side) + side * (y % side) + side * side * (z % side);
}

GSL_HD bool observed(const BlockField& f, int64_t voxel) { return voxel >= 0 && f.weight[voxel] > f.min_weight; }

GSL_HD void voxel_coords(int64_t local, int* x, int* y, int* z) {
  const int side = tsdf::kBlockSide;
  *x = static_cast<int>(local % side);
  *y = static_cast<int>((local / side) % side);
  *z = static_cast<int>(local / (side * side));
}

// Bit a set when the edge from voxel (block, local) along axis a crosses the surface.
GSL_HD unsigned voxel_edge_mask(const BlockField& f, int64_t block, int64_t local) {
  const int64_t self = block * tsdf::kBlockVoxels + local;
  if (!observed(f, self)) return 0u;
  int x, y, z;
  voxel_coords(local, &x, &y, &z);
  const bool inside = f.tsdf[self] < 0.0f;
  unsigned mask = 0u;
  for (int axis = 0; axis < 3; ++axis) {
    const int64_t other = voxel_at(f, block, x + (axis == 0), y + (axis == 1), z + (axis == 2));
    if (observed(f, other) && (f.tsdf[other] < 0.0f) != inside) mask |= 1u << axis;
  }
  return mask;
}

GSL_HD int edge_mask_count(unsigned mask) { return (mask & 1u) + ((mask >> 1) & 1u) + ((mask >> 2) & 1u); }

// The cube whose lowest corner is voxel (block, local): its corners' global indices and
// inside mask. False when a corner is missing or unobserved.
GSL_HD bool load_cube(const BlockField& f, int64_t block, int64_t local, int64_t* corners, unsigned* inside) {
  int x, y, z;
  voxel_coords(local, &x, &y, &z);
  unsigned mask = 0u;
  for (int k = 0; k < 8; ++k) {
    corners[k] = voxel_at(f, block, x + (k & 1), y + ((k >> 1) & 1), z + ((k >> 2) & 1));
    if (!observed(f, corners[k])) return false;
    if (f.tsdf[corners[k]] < 0.0f) mask |= 1u << k;
  }
  *inside = mask;
  return true;
}

GSL_HD int cube_triangle_count(const BlockField& f, int64_t block, int64_t local) {
  int64_t corners[8];
  unsigned inside;
  if (!load_cube(f, block, local, corners, &inside)) return 0;
  int triangles[kMaxTriangles][3];
  return cube_triangles(inside, triangles);
}

// Writes the vertices of voxel (block, local)'s crossed edges, from vertices[first] on:
// positions (world) where the TSDF interpolates to zero, and colours interpolated alike.
GSL_HD void write_voxel_vertices(const BlockField& f, const tsdf::Grid& g, int64_t block, int64_t local,
                                 unsigned mask, int64_t first, float* vertices, float* vertex_colors) {
  int x, y, z;
  voxel_coords(local, &x, &y, &z);
  const int64_t self = block * tsdf::kBlockVoxels + local;
  const int32_t* b = f.block_coords + 3 * block;
  const float base[3] = {static_cast<float>(b[0] * tsdf::kBlockSide + x), static_cast<float>(b[1] * tsdf::kBlockSide + y),
                         static_cast<float>(b[2] * tsdf::kBlockSide + z)};
  int64_t out = first;
  for (int axis = 0; axis < 3; ++axis) {
    if (!((mask >> axis) & 1u)) continue;
    const int64_t other = voxel_at(f, block, x + (axis == 0), y + (axis == 1), z + (axis == 2));
    const float d0 = f.tsdf[self];
    const float t = d0 / (d0 - f.tsdf[other]);  // signs differ, so the difference is not zero
    float q[3] = {base[0], base[1], base[2]};
    q[axis] += t;
    const vec3 world = tsdf::grid_to_world(g, {q[0], q[1], q[2]});
    vertices[3 * out + 0] = world.x;
    vertices[3 * out + 1] = world.y;
    vertices[3 * out + 2] = world.z;
    if (vertex_colors != nullptr) {
      for (int k = 0; k < 3; ++k) {
        const float c0 = f.color != nullptr ? f.color[3 * self + k] : 0.0f;
        const float c1 = f.color != nullptr ? f.color[3 * other + k] : 0.0f;
        vertex_colors[3 * out + k] = c0 + t * (c1 - c0);
      }
    }
    ++out;
  }
}

// Writes the triangles of the cube at voxel (block, local) from triangles[first] on, as
// vertex indices: the vertex of an edge is vertex_offsets[its origin voxel] plus the number
// of that voxel's crossed edges along lower axes.
GSL_HD void write_cube_triangles(const BlockField& f, int64_t block, int64_t local, const uint8_t* edge_masks,
                                 const int64_t* vertex_offsets, int64_t first, int64_t* triangles) {
  int64_t corners[8];
  unsigned inside;
  if (!load_cube(f, block, local, corners, &inside)) return;
  int edges[kMaxTriangles][3];
  const int count = cube_triangles(inside, edges);
  for (int t = 0; t < count; ++t) {
    for (int k = 0; k < 3; ++k) {
      const int edge = edges[t][k];
      const int64_t origin = corners[edge_origin(edge)];
      const unsigned lower = edge_masks[origin] & ((1u << edge_axis(edge)) - 1u);
      triangles[3 * (first + t) + k] = vertex_offsets[origin] + edge_mask_count(lower);
    }
  }
}

}  // namespace gsl::mc
