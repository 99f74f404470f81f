// TSDF fusion math shared by the CPU and CUDA backends (docs/design.md, "Meshes").
//
// The volume is a grid of voxels in sparse blocks of 8^3. Voxel (i, j, k) sits at grid
// position q = (i, j, k) * voxel_size. Bounded volumes use world coordinates directly;
// unbounded ones (2DGS) place the grid in contracted space: y = contract((x - center) / radius)
// with contract(u) = u inside the unit ball and (2 - 1/|u|) u/|u| outside it, so all of
// space fits in the ball of radius 2 and voxels grow with distance.
//
// Per view, a voxel at world x projects to camera point p = R x + t and to the pixel
// (floor(u), floor(v)) that contains (u, v) = (fx p.x / p.z + cx, fy p.y / p.z + cy) (pixel
// centres at i + 0.5, so that is the nearest centre). With that pixel's depth d > 0, its
// signed distance along the ray is sdf = (d - p.z) |p| / p.z (Open3D's projective distance).
// Voxels with sdf < -trunc are hidden behind the surface and skipped; the others fuse
// tsdf = min(1, sdf / trunc) and the pixel's colour into weighted running averages, one
// weight per observation, views in order: deterministic on every backend.
#pragma once

#include "core/common.h"
#include "core/lanes.h"

namespace gsl::tsdf {

constexpr int kBlockSide = 8;                                            // voxels per block edge
constexpr int kBlockVoxels = kBlockSide * kBlockSide * kBlockSide;       // 512
// Block coordinates must fit 21 signed bits each: the Python layer packs them into int64 keys.
constexpr int32_t kMaxBlockCoord = (1 << 20) - 1;

struct Grid {
  float voxel_size = 0.0f;        // spacing of the voxels: world units, or contracted units when contracted
  float truncation = 0.0f;        // world units where space is not stretched (every bounded voxel)
  int32_t contracted = 0;         // 0: bounded world grid; 1: 2DGS's contraction
  float center[3] = {0.0f, 0.0f, 0.0f};  // contraction centre (world)
  float radius = 1.0f;            // contraction radius (world): the unit ball maps to it unchanged
  float contracted_limit = 1.9f;  // depth landing beyond this |y| is not fused (2 is infinity)
};

// One pinhole camera: world-to-camera rotation (row-major) and translation, intrinsics.
struct View {
  float r[9];
  float t[3];
  float fx, fy, cx, cy;
  vec3 origin;  // the camera centre, -R^T t (world)
};

GSL_HD float length(vec3 a) { return sqrtf(a.x * a.x + a.y * a.y + a.z * a.z); }

GSL_HD vec3 world_to_camera(const View& v, vec3 x) {
  return {v.r[0] * x.x + v.r[1] * x.y + v.r[2] * x.z + v.t[0], v.r[3] * x.x + v.r[4] * x.y + v.r[5] * x.z + v.t[1],
          v.r[6] * x.x + v.r[7] * x.y + v.r[8] * x.z + v.t[2]};
}

// R^T (p - t): a camera point back in the world.
GSL_HD vec3 camera_to_world(const View& v, vec3 p) {
  const vec3 d{p.x - v.t[0], p.y - v.t[1], p.z - v.t[2]};
  return {v.r[0] * d.x + v.r[3] * d.y + v.r[6] * d.z, v.r[1] * d.x + v.r[4] * d.y + v.r[7] * d.z,
          v.r[2] * d.x + v.r[5] * d.y + v.r[8] * d.z};
}

GSL_HD View load_view(const float* viewmat, const float* K) {  // [4, 4], [3, 3]
  View v;
  for (int row = 0; row < 3; ++row) {
    for (int col = 0; col < 3; ++col) v.r[3 * row + col] = viewmat[4 * row + col];
    v.t[row] = viewmat[4 * row + 3];
  }
  v.fx = K[0];
  v.cx = K[2];
  v.fy = K[4];
  v.cy = K[5];
  v.origin = camera_to_world(v, {0.0f, 0.0f, 0.0f});
  return v;
}

GSL_HD float quiet_nan() {
#if defined(__CUDA_ARCH__)
  return __int_as_float(0x7fc00000);
#else
  return __builtin_nanf("");
#endif
}

// 2DGS's contraction (utils/mesh_utils.py) and its inverse, on normalised coordinates.
template <class F>
GSL_HD void contract_lanes(F& x, F& y, F& z) {
  const F n = sqrt_lanes(x * x + y * y + z * z);
  const F scale = select(n <= 1.0f, broadcast<F>(1.0f), (2.0f - 1.0f / n) / n);
  x = scale * x;
  y = scale * y;
  z = scale * z;
}

GSL_HD vec3 contract(vec3 u) {
  contract_lanes<float>(u.x, u.y, u.z);
  return u;
}

// Grid points at |y| >= 2 (the far corners of the outermost blocks) are at infinity: NaN,
// which no view observes and no block bound admits.
GSL_HD vec3 uncontract(vec3 y) {
  const float m = length(y);
  if (m <= 1.0f) return y;
  const float scale = m < 2.0f ? 1.0f / (m * (2.0f - m)) : quiet_nan();
  return scale * y;
}

// How much the grid is stretched along a ray from the centre at contracted radius m: d|x|/d|y|
// = 1 / (2 - m)^2 outside the unit ball. The truncation scales with it, so the band stays a
// few voxels deep where voxels grow.
template <class F>
GSL_HD F radial_stretch(F m) {
  const F gap = 2.0f - m;
  return select(m <= 1.0f, broadcast<F>(1.0f), 1.0f / (gap * gap));
}

// World position of grid point q (voxel units, continuous).
GSL_HD vec3 grid_to_world(const Grid& g, vec3 q) {
  const vec3 p = g.voxel_size * q;
  if (!g.contracted) return p;
  const vec3 x = uncontract(p);
  return {g.center[0] + g.radius * x.x, g.center[1] + g.radius * x.y, g.center[2] + g.radius * x.z};
}

// Contracted (normalised) coordinates of world points; the world itself when bounded.
template <class F>
GSL_HD void world_to_grid_space_lanes(const Grid& g, F& x, F& y, F& z) {
  if (!g.contracted) return;
  const float inv = 1.0f / g.radius;
  x = (x - g.center[0]) * inv;
  y = (y - g.center[1]) * inv;
  z = (z - g.center[2]) * inv;
  contract_lanes(x, y, z);
}

GSL_HD vec3 world_to_grid_space(const Grid& g, vec3 x) {
  world_to_grid_space_lanes<float>(g, x.x, x.y, x.z);
  return x;
}

// Truncation distance (world) at grid-space points y.
template <class F>
GSL_HD F truncation_lanes(const Grid& g, const F& x, const F& y, const F& z) {
  if (!g.contracted) return broadcast<F>(g.truncation);
  return g.truncation * radial_stretch(sqrt_lanes(x * x + y * y + z * z));
}

GSL_HD float truncation_at(const Grid& g, vec3 y) { return truncation_lanes<float>(g, y.x, y.y, y.z); }

// The voxel at grid point q: where it is and how deep its truncation band reaches there.
struct VoxelSite {
  vec3 world;
  float truncation;
  float inv_truncation;
};

GSL_HD VoxelSite voxel_site(const Grid& g, vec3 q) {
  const float trunc = truncation_at(g, g.voxel_size * q);
  return {grid_to_world(g, q), trunc, 1.0f / trunc};
}

// Voxels as lanes (core/lanes.h): F = float, one voxel (CUDA, and the CPU's scalar
// schedule), or a vector of 4 or 8 voxels of a block row (the CPU's SSE and AVX2 schedules).
template <class F>
struct SiteLanes {
  F x, y, z;  // world position
  F truncation, inv_truncation;
};

// A voxel's state while views are fused into it: running means and their weight.
template <class F>
struct StateLanes {
  F tsdf, weight;
  F rgb[3];
};

// base[index * stride + offset] in every lane.
template <class F, class I>
GSL_HD F gather_lanes(const float* base, const I& index, int stride, int offset) {
  if constexpr (Lanes<F>::kWidth == 1) {
    return base[static_cast<int64_t>(index) * stride + offset];
  } else {
    F values;
    for (int k = 0; k < Lanes<F>::kWidth; ++k) values[k] = base[static_cast<int64_t>(index[k]) * stride + offset];
    return values;
  }
}

// Fuses one view into the lanes' voxels: depth [H, W] and, when given, colors [H, W, 3]
// (H W < 2^31). Per lane, the voxel projects to the pixel holding it (p.z > 0, inside the
// image), which must have a depth d > 0; sdf = (d - z) |p| / z along the ray; voxels more than
// the truncation behind are left alone, the others take min(1, sdf / truncation) and the
// pixel's colour into their running means (one weight per view). Divisions are products
// with reciprocals. The branches are masks, so every lane width gives the same bits.
template <class F>
GSL_HD void fuse_view(const View& v, const float* depth, const float* colors, int width, int height,
                      const SiteLanes<F>& s, StateLanes<F>* state) {
  using Mask = typename Lanes<F>::Mask;
  const F px = v.r[0] * s.x + v.r[1] * s.y + v.r[2] * s.z + v.t[0];
  const F py = v.r[3] * s.x + v.r[4] * s.y + v.r[5] * s.z + v.t[1];
  const F pz = v.r[6] * s.x + v.r[7] * s.y + v.r[8] * s.z + v.t[2];
  Mask fuse = Mask(pz > 0.0f);
  const F inv_z = 1.0f / select(fuse, pz, broadcast<F>(1.0f));
  const F u = v.fx * (px * inv_z) + v.cx;
  const F w = v.fy * (py * inv_z) + v.cy;
  // Compared as floats first: NaN and huge values fail here, before any int conversion.
  fuse = Mask(fuse & Mask(u >= 0.0f) & Mask(u < static_cast<float>(width)) & Mask(w >= 0.0f) &
              Mask(w < static_cast<float>(height)));
  if (!any(fuse)) return;
  const auto pixel = floor_to_int(select(fuse, w, broadcast<F>(0.0f))) * width +
                     floor_to_int(select(fuse, u, broadcast<F>(0.0f)));
  const F d = gather_lanes<F>(depth, pixel, 1, 0);
  fuse = Mask(fuse & Mask(d > 0.0f) & Mask(d <= 3.0e38f));  // no depth there: masked, empty, NaN or inf
  const F sdf = (d - pz) * (sqrt_lanes(px * px + py * py + pz * pz) * inv_z);
  fuse = Mask(fuse & lanes_not(Mask(sdf < -s.truncation)));
  if (!any(fuse)) return;
  const F value = fmin_lanes(broadcast<F>(1.0f), sdf * s.inv_truncation);
  const F count = state->weight;
  const F next = count + 1.0f;
  const F inv_next = 1.0f / next;
  state->tsdf = select(fuse, (state->tsdf * count + value) * inv_next, state->tsdf);
  if (colors != nullptr) {
    for (int k = 0; k < 3; ++k) {
      const F pixel_rgb = gather_lanes<F>(colors, pixel, 3, k);  // pixel is in the image in every lane
      state->rgb[k] = select(fuse, (state->rgb[k] * count + pixel_rgb) * inv_next, state->rgb[k]);
    }
  }
  state->weight = select(fuse, next, state->weight);
}

// A bound on where a block lies: a sphere (world) holding every voxel of the block at block
// coordinates b. Uncontraction stretches space by at most radial_stretch of the block's
// outermost |y| (>= the tangential stretch 1 / (|y| (2 - |y|)) there).
struct Sphere {
  vec3 center;
  float radius;
  bool bounded;  // false: the block reaches |y| >= 2, where no finite sphere holds it
};

GSL_HD Sphere block_bounds(const Grid& g, const int32_t* b) {
  const float half = 0.5f * (kBlockSide - 1);
  const vec3 mid{b[0] * static_cast<float>(kBlockSide) + half, b[1] * static_cast<float>(kBlockSide) + half,
                 b[2] * static_cast<float>(kBlockSide) + half};
  const float half_diagonal = 0.8661f * (kBlockSide - 1) * g.voxel_size;  // > sqrt(3) / 2 * extent
  Sphere s{grid_to_world(g, mid), half_diagonal, true};
  if (g.contracted) {
    const float outer = length(g.voxel_size * mid) + half_diagonal;
    s.bounded = outer < 2.0f;
    s.radius = g.radius * half_diagonal * radial_stretch(fmin_lanes(outer, 1.99f));
  }
  return s;
}

// False only when no point of the sphere projects into the image in front of the camera
// (then fuse_view leaves every voxel of the block alone). One pixel of margin covers rounding.
GSL_HD bool sphere_may_be_seen(const View& v, const Sphere& s, int width, int height) {
  if (!s.bounded) return true;
  const vec3 c = world_to_camera(v, s.center);
  if (!(c.z + s.radius > 0.0f)) return false;
  if (!(c.z - s.radius > 0.0f)) return true;  // reaches behind the camera: no cheap bound
  // For p = c + d with |d| <= r: |p.x/p.z - c.x/c.z| = |d.x c.z - c.x d.z| / (p.z c.z)
  //                                                  <= r (c.z + |c.x|) / ((c.z - r) c.z).
  const float denom = (c.z - s.radius) * c.z;
  const float spread_x = s.radius * (c.z + abs_lanes(c.x)) / denom;
  const float spread_y = s.radius * (c.z + abs_lanes(c.y)) / denom;
  const float u = v.fx * (c.x / c.z) + v.cx;
  const float w = v.fy * (c.y / c.z) + v.cy;
  const float reach_x = v.fx * spread_x + 1.0f;
  const float reach_y = v.fy * spread_y + 1.0f;
  return u + reach_x >= 0.0f && u - reach_x <= static_cast<float>(width) && w + reach_y >= 0.0f &&
         w - reach_y <= static_cast<float>(height);
}

// The blocks a pixel's measurement touches: the box of blocks around the ray segment from
// sdf = -trunc to +trunc, plus one voxel on the high side so every cube holding the band has
// all eight corners. Out of range when a coordinate would not fit a key (kMaxBlockCoord).
struct BlockBox {
  int32_t lo[3];
  int32_t hi[3];
};

enum class PixelBlocks { kNone, kBox, kOutOfRange };

// The boxes of a lane group of pixels (i, j) of one row: which have one, which are out of
// range, and the boxes' low and high block coordinates.
template <class F>
struct BoxLanes {
  typename Lanes<F>::Mask box, out_of_range;
  typename Lanes<F>::Int lo[3], hi[3];
};

template <class F>
GSL_HD BoxLanes<F> block_box_lanes(const Grid& g, const View& v, F depth, F i, int j) {
  using Mask = typename Lanes<F>::Mask;
  BoxLanes<F> out;
  Mask valid = Mask(Mask(depth > 0.0f) & Mask(depth <= 3.0e38f));
  const F ray_x = (i + 0.5f - v.cx) / v.fx;
  const float ray_y = (static_cast<float>(j) + 0.5f - v.cy) / v.fy;
  // R^T (depth ray - t): the surface point in the world.
  const F dx = depth * ray_x - v.t[0], dy = depth * ray_y - v.t[1], dz = depth * 1.0f - v.t[2];
  const F sx = v.r[0] * dx + v.r[3] * dy + v.r[6] * dz;
  const F sy = v.r[1] * dx + v.r[4] * dy + v.r[7] * dz;
  const F sz = v.r[2] * dx + v.r[5] * dy + v.r[8] * dz;
  F yx = sx, yy = sy, yz = sz;
  world_to_grid_space_lanes(g, yx, yy, yz);
  if (g.contracted) valid = Mask(valid & Mask(sqrt_lanes(yx * yx + yy * yy + yz * yz) <= g.contracted_limit));
  const F trunc = truncation_lanes(g, yx, yy, yz);
  const F tx = sx - v.origin.x, ty = sy - v.origin.y, tz = sz - v.origin.z;
  const F scale = trunc / select(valid, sqrt_lanes(tx * tx + ty * ty + tz * tz), broadcast<F>(1.0f));
  // The band's ends; in contracted space its middle too, as the segment bends there.
  const float inv_voxel = 1.0f / g.voxel_size;
  F lo[3], hi[3];
  for (int e = 0; e < (g.contracted ? 3 : 2); ++e) {
    F x = e == 2 ? sx : (e == 0 ? sx - scale * tx : sx + scale * tx);
    F y = e == 2 ? sy : (e == 0 ? sy - scale * ty : sy + scale * ty);
    F z = e == 2 ? sz : (e == 0 ? sz - scale * tz : sz + scale * tz);
    world_to_grid_space_lanes(g, x, y, z);
    const F c[3] = {x * inv_voxel, y * inv_voxel, z * inv_voxel};
    for (int a = 0; a < 3; ++a) {
      lo[a] = e == 0 ? c[a] : fmin_lanes(lo[a], c[a]);
      hi[a] = e == 0 ? c[a] : fmax_lanes(hi[a], c[a]);
    }
  }
  const float limit = static_cast<float>(kMaxBlockCoord) * kBlockSide;
  Mask in_range = valid;
  for (int a = 0; a < 3; ++a) in_range = Mask(in_range & Mask(lo[a] > -limit) & Mask(hi[a] < limit - 2.0f));
  out.box = in_range;
  out.out_of_range = Mask(valid & lanes_not(in_range));
  for (int a = 0; a < 3; ++a) {
    // Floor division of voxel indices by 8: an arithmetic shift, also for negative ones.
    out.lo[a] = floor_to_int(select(in_range, lo[a], broadcast<F>(0.0f))) >> 3;
    out.hi[a] = (floor_to_int(select(in_range, hi[a], broadcast<F>(0.0f))) + 1) >> 3;
  }
  return out;
}

// One pixel's box of blocks: the scalar lane of block_box_lanes (what CUDA runs).
GSL_HD PixelBlocks pixel_block_box(const Grid& g, const View& v, float depth, int i, int j, BlockBox* box) {
  const BoxLanes<float> lanes = block_box_lanes<float>(g, v, depth, static_cast<float>(i), j);
  if (lanes.out_of_range) return PixelBlocks::kOutOfRange;
  if (!lanes.box) return PixelBlocks::kNone;
  for (int a = 0; a < 3; ++a) {
    box->lo[a] = lanes.lo[a];
    box->hi[a] = lanes.hi[a];
  }
  return PixelBlocks::kBox;
}

GSL_HD bool same_box(const BlockBox& a, const BlockBox& b) {
  return a.lo[0] == b.lo[0] && a.lo[1] == b.lo[1] && a.lo[2] == b.lo[2] && a.hi[0] == b.hi[0] &&
         a.hi[1] == b.hi[1] && a.hi[2] == b.hi[2];
}

// A pixel's box of blocks, or why it has none.
struct PixelBox {
  PixelBlocks kind;
  BlockBox box;
};

GSL_HD PixelBox pixel_box(const Grid& g, const View& v, const float* depth, int width, int i, int j) {
  PixelBox found;
  found.kind = pixel_block_box(g, v, depth[static_cast<int64_t>(j) * width + i], i, j, &found.box);
  return found;
}

// Blocks a pixel emits: its box, or nothing when the pixel to its left or the one above (null
// at the image's edge) has the same box: neighbouring pixels mostly land in the same blocks,
// and this keeps the candidate list short. Every box is still emitted: following equal left
// or upper neighbours ends at a pixel that emits it. -1 marks an out-of-range pixel.
GSL_HD int64_t emitted_blocks(const PixelBox& self, const PixelBox* left, const PixelBox* up) {
  if (self.kind == PixelBlocks::kOutOfRange) return -1;
  if (self.kind == PixelBlocks::kNone) return 0;
  if (left != nullptr && left->kind == PixelBlocks::kBox && same_box(left->box, self.box)) return 0;
  if (up != nullptr && up->kind == PixelBlocks::kBox && same_box(up->box, self.box)) return 0;
  const BlockBox& b = self.box;
  return static_cast<int64_t>(b.hi[0] - b.lo[0] + 1) * (b.hi[1] - b.lo[1] + 1) * (b.hi[2] - b.lo[2] + 1);
}

// Writes the blocks of a box, x fastest, as [K, 3] coordinates; returns the end of the output.
GSL_HD int32_t* write_box_blocks(const BlockBox& box, int32_t* out) {
  for (int32_t z = box.lo[2]; z <= box.hi[2]; ++z)
    for (int32_t y = box.lo[1]; y <= box.hi[1]; ++y)
      for (int32_t x = box.lo[0]; x <= box.hi[0]; ++x) {
        out[0] = x;
        out[1] = y;
        out[2] = z;
        out += 3;
      }
  return out;
}

}  // namespace gsl::tsdf
