// CPU sort of the (tile, surfel) pairs by key = tile << 32 | depth bits, stable: the result
// equals torch.sort(keys, stable=True) (what the CUDA path runs) plus the per-tile ranges,
// without a torch pass between the compiled passes. A counting sort by tile (contiguous
// chunks of pairs, scattered in order, so it is stable for any thread count), then each
// tile's segment sorted by (depth bits, position), in parallel over tiles.
#include <algorithm>
#include <vector>

#include "cpu/parallel.h"
#include "ops/rasterize/rasterize.h"

namespace gsl::rasterize {

namespace {

// Sorts (depth bits << 32 | position) values, positions unique and ascending on entry: a
// stable LSD radix sort on the depth bits, 11 bits a pass (a pass whose digit is the same
// everywhere is skipped), std::sort for short tiles. Both give the same order.
void sort_by_depth(std::vector<uint64_t>& values, std::vector<uint64_t>& scratch) {
  const size_t n = values.size();
  if (n < 128) {
    std::sort(values.begin(), values.end());
    return;
  }
  constexpr int kBits = 11;
  constexpr uint32_t kDigits = 1u << kBits;
  scratch.resize(n);
  uint64_t* src = values.data();
  uint64_t* dst = scratch.data();
  uint32_t counts[kDigits];
  for (int shift = 32; shift < 64; shift += kBits) {
    std::fill_n(counts, kDigits, 0u);
    for (size_t i = 0; i < n; ++i) ++counts[(src[i] >> shift) & (kDigits - 1)];
    if (counts[(src[0] >> shift) & (kDigits - 1)] == n) continue;
    uint32_t offset = 0;
    for (uint32_t d = 0; d < kDigits; ++d) {
      const uint32_t count = counts[d];
      counts[d] = offset;
      offset += count;
    }
    for (size_t i = 0; i < n; ++i) dst[counts[(src[i] >> shift) & (kDigits - 1)]++] = src[i];
    std::swap(src, dst);
  }
  if (src != values.data()) std::copy(src, src + n, values.data());
}

}  // namespace

void sort_pairs_cpu(const SortPairsArgs& a, int num_threads) {
  const int64_t P = a.num_pairs;
  const int64_t T = a.dims.num_cameras * int64_t(a.dims.tiles_x) * a.dims.tiles_y;
  // A fixed chunking (not the thread count) decides the scatter order: same bits anywhere.
  const int64_t chunk_size = std::max<int64_t>(int64_t{1} << 16, (P + 63) / 64);
  const int64_t num_chunks = std::max<int64_t>(1, (P + chunk_size - 1) / chunk_size);
  const int chunk_threads = static_cast<int>(std::min<int64_t>(num_threads, num_chunks));
  std::vector<int64_t> cursors(static_cast<size_t>(num_chunks) * T, 0);  // [chunk, tile]
  cpu::parallel_for(num_chunks, chunk_threads, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t* counts = cursors.data() + c * T;
      const int64_t end = std::min(P, (c + 1) * chunk_size);
      for (int64_t p = c * chunk_size; p < end; ++p) ++counts[static_cast<uint64_t>(a.keys[p]) >> 32];
    }
  });
  // Tile t's pairs start at tile_starts[t]; within it chunk c's at the sum of earlier chunks.
  int64_t total = 0;
  for (int64_t t = 0; t < T; ++t) {
    a.tile_starts[t] = total;
    for (int64_t c = 0; c < num_chunks; ++c) {
      int64_t& slot = cursors[c * T + t];
      const int64_t count = slot;
      slot = total;
      total += count;
    }
  }
  a.tile_starts[T] = total;
  std::vector<uint32_t> depth_bits(P);
  cpu::parallel_for(num_chunks, chunk_threads, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t* cursor = cursors.data() + c * T;
      const int64_t end = std::min(P, (c + 1) * chunk_size);
      for (int64_t p = c * chunk_size; p < end; ++p) {
        const uint64_t key = static_cast<uint64_t>(a.keys[p]);
        const int64_t dst = cursor[key >> 32]++;
        depth_bits[dst] = static_cast<uint32_t>(key);
        a.pair_emit_index[dst] = p;
      }
    }
  });
  // Within a tile the positions are in emission order, so (depth bits, position) is the
  // stable order by depth.
  cpu::parallel_for(T, num_threads, 16, [&](int64_t t0, int64_t t1) {
    std::vector<uint64_t> order, scratch;
    std::vector<int64_t> emitted;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t begin = a.tile_starts[t], count = a.tile_starts[t + 1] - begin;
      if (count == 0) continue;
      order.resize(count);
      for (int64_t i = 0; i < count; ++i) order[i] = (uint64_t(depth_bits[begin + i]) << 32) | uint64_t(i);
      sort_by_depth(order, scratch);
      emitted.assign(a.pair_emit_index + begin, a.pair_emit_index + begin + count);
      for (int64_t i = 0; i < count; ++i) {
        const int64_t p = emitted[order[i] & 0xffffffffu];
        a.pair_emit_index[begin + i] = p;
        a.sorted_surfels[begin + i] = a.pair_surfels[p];
      }
    }
  });
}

}  // namespace gsl::rasterize
