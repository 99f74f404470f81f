// The surfel rasterizer's launch parameters and entry points. Python (gsplat_lib/ops/
// rasterize_autograd.py) allocates every buffer with torch and passes it under the name of its
// field here; csrc/bindings/rasterize.cpp checks every name, dtype and size on the way in.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "core/semantics.h"

namespace gsl::rasterize {

// The widest tile the CPU passes take (Dims::tile_width), and the width the library uses:
// wide tiles split fewer splat rows between tiles, so lane groups are fuller. CUDA tiles are
// kTileSize (core/projection.h) wide.
constexpr int kMaxCpuTileWidth = 64;
// The CPU backward's default camera group (Dims::cpu_group_bytes): its pair records and item
// gradients stay in the last-level cache between the passes that write and read them.
constexpr int64_t kCameraGroupBytes = int64_t(8) << 20;

// The call's sizes and settings, the same for every pass of one call.
struct Dims {
  int64_t num_cameras;   // C
  int64_t num_surfels;   // N
  // I, the (camera, surfel) items: C N in a dense call; with scene ids, the pairs that share a
  // scene (each camera's items are its scene's surfels in index order: camera_items below).
  int64_t num_items;
  int64_t num_scenes;    // S: scene ids are in [0, S); 0 in a dense call
  int32_t num_channels;  // D
  int32_t width, height;
  int32_t tile_width;  // pixels; tiles are kTileSize rows high (16 x 16 on CUDA, wider on the CPU)
  int32_t tiles_x, tiles_y;
  float near_plane, far_plane, scale_modifier;
  int32_t cpu_lanes;  // CPU pixel passes: 0 = widest available, or 1 (the CUDA math's scalar form), 4, 8
  // CPU backward: the scratch bytes a camera group may fill (0: kCameraGroupBytes); at least one
  // camera per group.
  int64_t cpu_group_bytes;
  int32_t semantics;  // a gsl::Semantics: 0 gsplat_lib's, 1 upstream 2DGS's (core/semantics.h)
  int64_t num_pairs;  // P, (tile, surfel) pairs; 0 until the projection has counted them
  // CUDA backward only (deterministic=False): a gradient record per (camera, surfel) item that
  // its pairs add to atomically, instead of one record per pair.
  bool item_records;
};

// An item is a (camera, surfel) pair; a pair is a (tile, item). In a dense call item c * N + n
// is camera c and surfel n, and the item lists below are null. With scene ids the items come
// packed, by camera, then surfel: camera c's are [camera_items[c], camera_items[c + 1]), and
// item i draws surfel item_surfels[i]. Per-item buffers are [I, ...] ([C, N, ...] when dense).
struct ProjectArgs {
  Dims dims;
  const float* means;      // [N, 3]
  const float* quats;      // [N, 4]
  const float* scales;     // [N, 2]
  const float* opacities;  // [N]
  const float* colors;     // [I, D]
  const float* viewmats;   // [C, 4, 4]
  const float* Ks;         // [C, 3, 3]
  const int64_t* camera_items;  // [C + 1] or null (dense)
  const int64_t* item_surfels;  // [I] or null (dense)
  float* M;                // [I, 9] out
  float* normals;          // [I, 3] out, camera frame
  float* means2d;          // [I, 2] out
  float* depths;           // [I] out
  int32_t* radii;          // [I, 2] out, 0 when culled
  int32_t* pixel_rects;    // [I, 4] out, pixels (x0, y0, x1, y1) the splat can reach
  int64_t* tile_counts;    // [I] out: each item's tile count, or null when pair_ends is given
  // [I] out (CPU only; CUDA takes tile_counts and torch.cumsum): the inclusive running sum of
  // the tile counts, which emit_pairs and bin_pairs take.
  int64_t* pair_ends;
};

struct EmitArgs {
  Dims dims;
  const float* depths;         // [I]
  const int32_t* pixel_rects;  // [I, 4]
  const int64_t* pair_ends;    // [I] inclusive cumulative sum of tile_counts
  const int64_t* camera_items; // [C + 1] or null (dense)
  // P here is the buffers' capacity: pairs emitted at P or beyond are skipped (the caller
  // compares the total with it, grows and emits again); slots past the total are not written.
  int64_t* emitted_keys;       // [P] out: (camera * tiles + tile) << 32 | depth bits
  int64_t* emitted_items;      // [P] out: the item of each pair, in emission order
};

// The pairs in sorted order (tile, then depth, then item): what emit_pairs and a stable
// sort of its keys give, without the keys (CPU; CUDA runs emit_pairs and torch.sort).
struct BinPairsArgs {
  Dims dims;
  const float* depths;          // [I]
  const int32_t* pixel_rects;   // [I, 4]
  const int64_t* pair_ends;     // [I] inclusive cumulative sum of tile_counts
  const int64_t* camera_items;  // [C + 1] or null (dense)
  int64_t* tile_starts;         // [C * tiles + 1] out: first sorted pair of each tile
  int64_t* pair_emit_index;     // [P] out: sorted position -> emission position
  int64_t* pair_items;          // [P] out: the item of each pair, in sorted order
};

// Inputs shared by the forward and the backward pixel passes.
struct PixelPassInputs {
  Dims dims;
  const int64_t* tile_starts;   // [C * tiles + 1] first sorted pair of each tile
  const int64_t* pair_items;    // [P] the item of each pair, sorted
  const float* M;               // [I, 9]
  const float* means2d;         // [I, 2]
  const float* normals;         // [I, 3]
  const float* opacities;       // [N]
  const float* colors;          // [I, D]
  const float* backgrounds;     // [C, D] or null
  const int32_t* pixel_rects;   // [I, 4]
  const int64_t* item_surfels;  // [I] or null (dense)
};

struct ForwardArgs : PixelPassInputs {
  float* out_colors;         // [C, H, W, D]
  float* out_alphas;         // [C, H, W, 1]
  float* out_depths;         // [C, H, W, 1]
  float* out_median_depths;  // [C, H, W, 1]
  float* out_normals;        // [C, H, W, 3]
  float* out_distortions;    // [C, H, W, 1]
  float* saved_T;            // [C, H, W]
  int32_t* saved_last;       // [C, H, W] splats the backward revisits
  int32_t* saved_median;     // [C, H, W]
  float* saved_sums;         // [C, H, W, 3] distortion sums A, S1, S2
  int32_t* evaluated_pairs;  // [C, H, W] out: splats the forward evaluated
};

// v_<name>: the gradient (cotangent) of buffer <name>.
struct BackwardArgs : PixelPassInputs {
  const float* saved_T;         // [C, H, W]
  const int32_t* saved_last;    // [C, H, W]
  const int32_t* saved_median;  // [C, H, W]
  const float* saved_sums;      // [C, H, W, 3]
  const float* v_out_colors;    // [C, H, W, D]
  // The other image outputs' cotangents may be null (zero).
  const float* v_out_alphas;         // [C, H, W, 1]
  const float* v_out_depths;         // [C, H, W, 1]
  const float* v_out_median_depths;  // [C, H, W, 1]
  const float* v_out_normals;        // [C, H, W, 3]
  const float* v_out_distortions;    // [C, H, W, 1]
  const int64_t* pair_emit_index;    // [P] sorted position -> emission position
  // [P, G] out (G = pair_grad_width: kPairGradColor + D, or kPairGradColorUpstream + D), a record
  // per pair by emission position; or, with dims.item_records, [I, G]: a record per item that each
  // of its pairs adds
  // to atomically, in no fixed order. Zeroed by the caller on CUDA.
  float* pair_grads;
  int32_t* backward_pairs;  // [C, H, W] out: splats the backward evaluated
  // The emission position of pair_grads' first record: 0, except in the CPU's camera groups
  // (CpuBackwardArgs), whose records are those of one group of cameras.
  int64_t first_record;
};

struct ReduceArgs {
  Dims dims;
  const int64_t* record_ends;  // [I] where each item's pair_grads records end (inclusive sums)
  const float* pair_grads;     // [records, G]
  const float* M;              // [I, 9]
  float* v_M;                  // [I, 9] out
  float* v_opacities_cn;       // [I] out: each camera's part of v_opacities
  float* v_normals;            // [I, 3] out
  float* v_colors;             // [I, D] out
  float* screen_grad;          // [I, 2] out
  float* screen_absgrad;       // [I, 2] out
  // [I, 2] out, upstream semantics only (else null): dL/d(means2d), the fallback centre e
  // (chained into v_M here); the compat layer adds it to the statistic for cov3D_precomp.
  float* center_grad;
  int64_t first_record;  // pair_grads' first record (see BackwardArgs)
  // v_M, v_opacities_cn and v_normals hold the items from this one on: 0, except in the CPU's
  // camera groups, which keep only one group's.
  int64_t first_item;
};

// Sums each surfel's item gradients over its cameras in camera order. With scene ids a
// surfel's items are found through its scene: scene s holds surfels
// scene_surfels[scene_surfel_starts[s] .. scene_surfel_starts[s + 1]) (in index order; a
// surfel's rank there is its place among camera c's items) and cameras
// scene_cameras[scene_camera_starts[s] .. scene_camera_starts[s + 1]) (in order).
struct ProjectBackwardArgs {
  Dims dims;
  const float* means;           // [N, 3]
  const float* quats;           // [N, 4]
  const float* scales;          // [N, 2]
  const float* viewmats;        // [C, 4, 4]
  const float* Ks;              // [C, 3, 3]
  const int32_t* radii;         // [I, 2]
  const float* v_M;             // [I, 9]
  const float* v_normals;       // [I, 3]
  const float* v_opacities_cn;  // [I]
  const int64_t* camera_items;         // [C + 1] or null (dense; then the four below are null too)
  const int64_t* scene_surfels;        // [N]
  const int64_t* scene_surfel_starts;  // [S + 1]
  const int64_t* scene_cameras;        // [C]
  const int64_t* scene_camera_starts;  // [S + 1]
  float* v_means;               // [N, 3] out
  float* v_quats;               // [N, 4] out
  float* v_scales;              // [N, 2] out
  float* v_opacities;           // [N] out
  int64_t first_item;           // v_M, v_normals, v_opacities_cn hold items from this one on (ReduceArgs)
  // Add the cameras' gradients to v_means ... v_opacities instead of setting them: the CPU's
  // camera groups sum a surfel's cameras group by group, still in camera order.
  bool accumulate;
};

// CPU only: the whole backward of a call, camera group by camera group (rasterize_cpu.cpp).
// The pair records and v_M, v_normals, v_opacities_cn then exist for one group at a time, in
// scratch memory that stays in cache between the three passes, instead of for the whole call.
struct CpuBackwardArgs : BackwardArgs {  // pair_grads is the scratch: not a field
  // What Python gives of the other two passes: the reduction's record_ends and per-item outputs
  // (v_colors, screen_grad, screen_absgrad, center_grad), the projection backward's inputs, scene
  // lists and per-surfel outputs. Their dims, records, v_M / v_normals / v_opacities_cn and
  // group offsets are set group by group.
  ReduceArgs reduce;
  ProjectBackwardArgs project;
};

// The packed items of a call with scene ids, from the scenes' sizes (CPU; CUDA builds the
// same with torch.sort): each scene's surfels in index order, and each camera's items.
struct ScenePlanArgs {
  int64_t num_surfels, num_cameras, num_items, num_scenes;  // N, C, I, S
  const int64_t* scene_ids;            // [N] in [0, S)
  const int64_t* camera_scene_ids;     // [C] in [0, S)
  const int64_t* scene_surfel_starts;  // [S + 1] where each scene's surfels start (exclusive sums)
  const int64_t* camera_items;         // [C + 1] where each camera's items start
  int64_t* scene_surfels;              // [N] out: the surfels by scene, each scene's in index order
  int64_t* item_cameras;               // [I] out
  int64_t* item_surfels;               // [I] out
};

// The call's semantics; std::invalid_argument naming the field for any other value (host only).
inline Semantics semantics_of(const Dims& d) {
  if (d.semantics != int32_t(Semantics::kGsplatLib) && d.semantics != int32_t(Semantics::kUpstream))
    throw std::invalid_argument("rasterize: semantics must be 0 (gsplat_lib) or 1 (upstream), got " +
                                std::to_string(d.semantics));
  return Semantics(d.semantics);
}

// Runs body(std::integral_constant<Semantics, S>{}) for the call's semantics S: the passes are
// compiled once per semantics, and the choice is made here, once per call. Force-inlined, so the
// CPU's AVX2 schedule keeps its code inside its own entry points (docs/design.md, "Lanes").
template <class Body>
inline __attribute__((always_inline)) void with_semantics(const Dims& d, Body&& body) {
  if (semantics_of(d) == Semantics::kUpstream)
    body(std::integral_constant<Semantics, Semantics::kUpstream>{});
  else
    body(std::integral_constant<Semantics, Semantics::kGsplatLib>{});
}

// Widest lane group the CPU pixel passes can use on this machine: 8 with AVX2, else 4.
int max_cpu_lanes();
void project_cpu(const ProjectArgs& args, int num_threads);
void emit_pairs_cpu(const EmitArgs& args, int num_threads);
// CPU only: the CUDA path sorts emit_pairs' keys with torch.sort.
void bin_pairs_cpu(const BinPairsArgs& args, int num_threads);
void forward_cpu(const ForwardArgs& args, int num_threads);
// The CPU's backward, reduce and project_backward (which only CUDA runs as three passes).
void backward_by_camera_groups_cpu(const CpuBackwardArgs& args, int num_threads);
// Fills the calling thread's scratch of backward_by_camera_groups_cpu with `value` (for tests).
void fill_backward_scratch_cpu(float value);
void plan_scenes_cpu(const ScenePlanArgs& args, int num_threads);

#if GSPLAT_LIB_WITH_CUDA
void project_cuda(const ProjectArgs& args, int device, std::uintptr_t stream);
void emit_pairs_cuda(const EmitArgs& args, int device, std::uintptr_t stream);
void forward_cuda(const ForwardArgs& args, int device, std::uintptr_t stream);
void backward_cuda(const BackwardArgs& args, int device, std::uintptr_t stream);
void reduce_cuda(const ReduceArgs& args, int device, std::uintptr_t stream);
void project_backward_cuda(const ProjectBackwardArgs& args, int device, std::uintptr_t stream);
#endif

}  // namespace gsl::rasterize
