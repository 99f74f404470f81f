// CPU schedule of the rasterizer: threads over (camera, surfel) items and over tiles.
// Each tile is composited by one thread and each pair's gradient record is written only by
// its tile's thread, so results are bit-identical for any thread count (decision 4).
#include <algorithm>
#include <vector>

#include "cpu/parallel.h"
#include "ops/rasterize/rasterize_impl.h"

namespace gsl::rasterize {

namespace {

// The splats of one tile, gathered once so the tile's passes read them contiguously.
struct TileSplats {
  std::vector<Splat> splats;
  std::vector<vec3> normals;
  std::vector<const float*> colors;
  std::vector<PixelRect> rects;  // pixels each splat can reach

  void gather(const PixelPassInputs& in, int64_t begin, int64_t end) {
    const int64_t count = end - begin;
    splats.resize(count);
    normals.resize(count);
    colors.resize(count);
    rects.resize(count);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t item = in.pair_surfels[begin + i];
      splats[i] = load_splat(in, item);
      normals[i] = load_normal(in, item);
      colors[i] = in.colors + item * in.dims.num_channels;
      rects[i] = load_pixel_rect(in, item);
    }
  }
};

struct TileCoords {
  int64_t camera;
  int x0, y0, x1, y1;  // pixel range [x0, x1) x [y0, y1)
  int width() const { return x1 - x0; }
  int height() const { return y1 - y0; }
  // The part of a splat's pixel rectangle inside this tile.
  PixelRect clip(const PixelRect& r) const {
    return {std::max(r.x0, x0), std::max(r.y0, y0), std::min(r.x1, x1), std::min(r.y1, y1)};
  }
};

TileCoords tile_coords(const Dims& d, int64_t tile) {
  const int64_t per_camera = tiles_per_camera(d);
  const int64_t t = tile % per_camera;
  TileCoords tc;
  tc.camera = tile / per_camera;
  tc.x0 = static_cast<int>(t % d.tiles_x) * kTileSize;
  tc.y0 = static_cast<int>(t / d.tiles_x) * kTileSize;
  tc.x1 = std::min(tc.x0 + kTileSize, d.width);
  tc.y1 = std::min(tc.y0 + kTileSize, d.height);
  return tc;
}

}  // namespace

void project_cpu(const ProjectArgs& a, int num_threads) {
  const int64_t items = a.dims.num_cameras * a.dims.num_surfels;
  cpu::parallel_for(items, num_threads, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) project_item(a, item);
  });
}

void emit_pairs_cpu(const EmitArgs& a, int num_threads) {
  const int64_t items = a.dims.num_cameras * a.dims.num_surfels;
  cpu::parallel_for(items, num_threads, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) emit_item(a, item);
  });
}

// Per tile, splat-major: each splat (front to back) visits only the pixels its rectangle
// reaches; every pixel still sees its splats in depth order, so this equals the per-pixel
// loop of the CUDA backend.
void forward_cpu(const ForwardArgs& a, int num_threads) {
  const Dims& d = a.in.dims;
  const int D = d.num_channels;
  const int64_t num_tiles = d.num_cameras * tiles_per_camera(d);
  cpu::parallel_for(num_tiles, num_threads, 1, [&](int64_t tile_begin, int64_t tile_end) {
    TileSplats tile_splats;
    std::vector<PixelForward> pixels;
    std::vector<float> color_acc;
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const int64_t begin = a.in.tile_starts[tile], end = a.in.tile_starts[tile + 1];
      tile_splats.gather(a.in, begin, end);
      const TileCoords tc = tile_coords(d, tile);
      const int tile_width = tc.width();
      pixels.assign(static_cast<size_t>(tile_width) * tc.height(), PixelForward());
      color_acc.assign(pixels.size() * D, 0.f);
      for (int y = tc.y0; y < tc.y1; ++y)
        for (int x = tc.x0; x < tc.x1; ++x) {
          PixelForward& f = pixels[(y - tc.y0) * tile_width + (x - tc.x0)];
          f.px = x + 0.5f;
          f.py = y + 0.5f;
        }
      int64_t active = static_cast<int64_t>(pixels.size());
      const int32_t count = static_cast<int32_t>(end - begin);
      for (int32_t i = 0; i < count && active > 0; ++i) {
        const PixelRect r = tc.clip(tile_splats.rects[i]);
        for (int y = r.y0; y < r.y1; ++y) {
          for (int x = r.x0; x < r.x1; ++x) {
            const int p = (y - tc.y0) * tile_width + (x - tc.x0);
            PixelForward& f = pixels[p];
            if (f.done) continue;
            f.visit(tile_splats.splats[i], tile_splats.normals[i], tile_splats.colors[i], D, i, d.near_plane,
                    d.far_plane, color_acc.data() + static_cast<size_t>(p) * D);
            active -= f.done;
          }
        }
      }
      for (int y = tc.y0; y < tc.y1; ++y)
        for (int x = tc.x0; x < tc.x1; ++x) {
          const int p = (y - tc.y0) * tile_width + (x - tc.x0);
          const int64_t pixel = (tc.camera * d.height + y) * d.width + x;
          store_pixel(a, tc.camera, pixel, pixels[p], color_acc.data() + static_cast<size_t>(p) * D);
        }
    }
  });
}

// Per tile, splat-major back to front; each pair's record sums its pixels in row-major order.
void backward_cpu(const BackwardArgs& a, int num_threads) {
  const Dims& d = a.in.dims;
  const int D = d.num_channels;
  const int64_t num_tiles = d.num_cameras * tiles_per_camera(d);
  const int width = pair_grad_width(D);
  cpu::parallel_for(num_tiles, num_threads, 1, [&](int64_t tile_begin, int64_t tile_end) {
    TileSplats tile_splats;
    std::vector<PixelBackward> pixels;
    float grad[kPairGradColor];
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const int64_t begin = a.in.tile_starts[tile], end = a.in.tile_starts[tile + 1];
      if (end == begin) continue;
      tile_splats.gather(a.in, begin, end);
      const TileCoords tc = tile_coords(d, tile);
      const int tile_width = tc.width();
      const float* bg = a.in.backgrounds ? a.in.backgrounds + tc.camera * D : nullptr;
      pixels.resize(static_cast<size_t>(tile_width) * tc.height());
      int32_t max_last = 0;
      for (int y = tc.y0; y < tc.y1; ++y)
        for (int x = tc.x0; x < tc.x1; ++x) {
          PixelBackward& b = pixels[(y - tc.y0) * tile_width + (x - tc.x0)];
          b = load_pixel_backward(a, (tc.camera * d.height + y) * d.width + x, x + 0.5f, y + 0.5f);
          b.start(bg, D);
          max_last = std::max(max_last, b.rec.last);
        }
      for (int32_t i = max_last - 1; i >= 0; --i) {
        const PixelRect r = tc.clip(tile_splats.rects[i]);
        float* record = a.pair_grads + a.pair_emit_index[begin + i] * width;
        for (int y = r.y0; y < r.y1; ++y) {
          for (int x = r.x0; x < r.x1; ++x) {
            PixelBackward& b = pixels[(y - tc.y0) * tile_width + (x - tc.x0)];
            if (i >= b.rec.last) continue;
            if (!b.visit(tile_splats.splats[i], tile_splats.normals[i], tile_splats.colors[i], D, i, d.near_plane,
                         d.far_plane, grad))
              continue;
            for (int k = 0; k < kPairGradColor; ++k) record[k] += grad[k];
            for (int ch = 0; ch < D; ++ch) record[kPairGradColor + ch] += b.weight * b.v.color[ch];
          }
        }
      }
      for (int y = tc.y0; y < tc.y1; ++y)
        for (int x = tc.x0; x < tc.x1; ++x)
          a.out_visited[(tc.camera * d.height + y) * d.width + x] = pixels[(y - tc.y0) * tile_width + (x - tc.x0)].visited;
    }
  });
}

void reduce_cpu(const ReduceArgs& a, int num_threads) {
  const int64_t items = a.dims.num_cameras * a.dims.num_surfels;
  cpu::parallel_for(items, num_threads, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) reduce_item(a, item);
  });
}

void project_backward_cpu(const ProjectBackwardArgs& a, int num_threads) {
  cpu::parallel_for(a.dims.num_surfels, num_threads, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) project_backward_item(a, n);
  });
}

}  // namespace gsl::rasterize
