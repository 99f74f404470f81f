// CPU binning of the (tile, surfel) pairs straight into sorted order: the result of
// emit_pairs followed by a stable sort by key = tile << 32 | depth bits (what the CUDA path
// runs, with torch.sort), without writing the keys or sorting each pair. The items are
// sorted by depth bits once (a stable LSD radix sort), then scattered to their tiles in that
// order (a stable counting sort by tile). Within a tile the pairs then come by depth bits,
// ties by item index, which is their emission order: the same order as the key sort.
//
// Both sorts are stable, so their result is unique: it does not depend on how the work is
// split between threads.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "core/projection.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"
#include "ops/rasterize/rasterize.h"
#include "ops/rasterize/rasterize_impl.h"

namespace gsl::rasterize {

namespace {

// Runs body(k, begin, end) for `chunks` contiguous chunks of [0, n), one per thread.
template <class Body>
void for_each_chunk(int64_t n, int chunks, Body&& body) {
  cpu::parallel_for(chunks, chunks, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) body(k, n * k / chunks, n * (k + 1) / chunks);
  });
}

// Turns counts[chunk * keys + key] (values of each key in each chunk) into where each chunk's
// values of that key start: keys in order, and within a key the chunks in order, which keeps
// a chunked counting sort stable. key_starts[key], when given, gets where each key starts.
// Returns the number of values.
int64_t counts_to_starts(int64_t* counts, int chunks, int64_t keys, int64_t* key_starts = nullptr) {
  int64_t total = 0;
  for (int64_t g = 0; g < keys; ++g) {
    if (key_starts != nullptr) key_starts[g] = total;
    for (int k = 0; k < chunks; ++k) {
      int64_t& slot = counts[k * keys + g];
      const int64_t count = slot;
      slot = total;
      total += count;
    }
  }
  return total;
}

// Where an item's pairs go: the tiles of its rectangle (rows of tiles first, as emit_pairs
// writes them) and its first emission position.
struct TileSpan {
  int64_t first_pair;
  int32_t first_tile;  // global tile index of the top-left tile
  int32_t cols, rows;
};

// bin_pairs' buffers, kept by each calling thread (cpu/scratch.h): 40 bytes per item (a
// 24-byte span, the order and the sort's second buffer), 8 per (chunk, tile) and 16 KB per
// chunk (the radix digit counts).
struct BinScratch {
  cpu::ScratchBuffer<TileSpan> spans;
  cpu::ScratchBuffer<uint64_t> order, sort_buffer;
  cpu::ScratchBuffer<int64_t> cursors, digit_offsets;
};

// Sorts values[0, n) (depth bits << 32 | item) by their upper 32 bits, stably: an LSD radix
// sort, 11 bits a pass, each pass a histogram and a scatter per chunk. A pass whose digit is
// the same for every value is skipped (the high bits of depths in one scene often are).
// Returns the sorted values: `values` itself or the scratch buffer the last pass wrote (not
// copied back).
const uint64_t* sort_by_depth(uint64_t* values, int64_t n, int chunks, BinScratch& scratch) {
  constexpr int kBits = 11;
  constexpr int64_t kDigits = int64_t{1} << kBits;
  if (n == 0) return values;
  int64_t* offsets = scratch.digit_offsets.get(static_cast<size_t>(chunks) * kDigits);  // [chunk, digit]
  uint64_t* src = values;
  uint64_t* dst = scratch.sort_buffer.get(static_cast<size_t>(n));
  for (int shift = 32; shift < 64; shift += kBits) {
    const auto digit = [shift](uint64_t v) { return static_cast<int64_t>((v >> shift) & (kDigits - 1)); };
    for_each_chunk(n, chunks, [&](int64_t k, int64_t begin, int64_t end) {
      int64_t* counts = offsets + k * kDigits;
      std::fill_n(counts, kDigits, 0);
      for (int64_t i = begin; i < end; ++i) ++counts[digit(src[i])];
    });
    int64_t first_digit_count = 0;  // a pass is needed unless every value has this digit
    for (int k = 0; k < chunks; ++k) first_digit_count += offsets[k * kDigits + digit(src[0])];
    if (first_digit_count == n) continue;
    counts_to_starts(offsets, chunks, kDigits);
    for_each_chunk(n, chunks, [&](int64_t k, int64_t begin, int64_t end) {
      int64_t* cursor = offsets + k * kDigits;
      for (int64_t i = begin; i < end; ++i) dst[cursor[digit(src[i])]++] = src[i];
    });
    std::swap(src, dst);
  }
  return src;
}

// Prefetch distance of the passes over the sorted items: their spans are scattered in memory.
constexpr int64_t kAhead = 16;

// Bins all of a's items at once, over num_threads threads.
void bin_all_items(const BinPairsArgs& a, int num_threads) {
  const Dims& d = a.dims;
  const int64_t items = d.num_items;
  const int64_t per_camera = int64_t(d.tiles_x) * d.tiles_y;
  const int64_t num_tiles = d.num_cameras * per_camera;
  if (items >= (int64_t{1} << 32) || num_tiles >= (int64_t{1} << 31))
    throw std::invalid_argument("rasterize: the CPU backend takes fewer than 2^32 (camera, surfel) items and 2^31 "
                                "tiles, got " + std::to_string(items) + " and " + std::to_string(num_tiles));
  // Small inputs in one chunk; otherwise a chunk per thread, with at most ~2^24 per-tile
  // cursors in all (many tiles are many cameras or huge images).
  const int chunks_for_size = static_cast<int>(std::min<int64_t>(num_threads, std::max<int64_t>(1, items >> 14)));
  const int chunks = std::max(1, std::min<int>(chunks_for_size, static_cast<int>((int64_t{1} << 24) / (num_tiles + 1))));

  // Most items have one or two tiles: those two are visited without a loop (whose trip count
  // would vary from item to item, a branch mispredicted often), any further ones in one.
  const auto second_tile = [&](const TileSpan& s) {
    return s.first_tile + (s.cols > 1 ? 1 : s.rows > 1 ? d.tiles_x : 0);
  };
  const auto for_each_further_tile = [&](const TileSpan& s, auto&& visit) {
    for (int32_t row = 0, k = 0; row < s.rows; ++row)
      for (int32_t col = 0; col < s.cols; ++col, ++k)
        if (k >= 2) visit(s.first_tile + row * d.tiles_x + col, k);
  };
  const auto count_pairs = [&](const TileSpan& span, int64_t* counts) {
    const int32_t tiles = span.cols * span.rows;
    ++counts[span.first_tile];
    counts[second_tile(span)] += tiles > 1;
    if (tiles > 2) for_each_further_tile(span, [&](int32_t t, int32_t) { ++counts[t]; });
  };

  // 1. The items with pairs, as depth bits << 32 | item, in item order, their spans, and the
  // pairs of each tile (which give tile_starts). Each chunk packs its items at the start of
  // its own range of `order`; then the ranges are joined.
  thread_local BinScratch scratch;
  TileSpan* spans = scratch.spans.get(static_cast<size_t>(items));  // read only where an item has pairs
  uint64_t* order = scratch.order.get(static_cast<size_t>(items));
  const size_t num_cursors = static_cast<size_t>(chunks) * num_tiles;
  int64_t* cursors = scratch.cursors.get(num_cursors);  // [chunk, tile]
  std::fill_n(cursors, num_cursors, 0);
  std::vector<int64_t> found(chunks, 0);
  for_each_chunk(items, chunks, [&](int64_t k, int64_t begin, int64_t end) {
    uint64_t* out = order + begin;
    int64_t* counts = cursors + k * num_tiles;
    if (begin == end) return;
    int64_t camera = camera_of_item(d, a.camera_items, begin);
    int64_t camera_end = first_item(d, a.camera_items, camera + 1);  // where the camera's items end
    int64_t camera_tile = camera * per_camera;
    const TileColumns tiles(d.tile_width);
    for (int64_t i = begin; i < end; ++i) {
      const int32_t* r = a.pixel_rects + 4 * i;
      const PixelRect rect{r[0], r[1], r[2], r[3]};
      if (!rect.empty()) {
        const int tx0 = rect.tile_x0(tiles), ty0 = rect.tile_y0();
        TileSpan& span = spans[i];
        span.cols = rect.tile_x1(tiles) - tx0;
        span.rows = rect.tile_y1() - ty0;
        span.first_tile = static_cast<int32_t>(camera_tile + int64_t(ty0) * d.tiles_x + tx0);
        span.first_pair = a.pair_ends[i] - int64_t(span.cols) * span.rows;
        count_pairs(span, counts);
        *out++ = (uint64_t(float_bits(a.depths[i])) << 32) | uint64_t(i);
      }
      while (i + 1 == camera_end && camera + 1 < d.num_cameras) {  // cameras without items are skipped
        ++camera;
        camera_end = first_item(d, a.camera_items, camera + 1);
        camera_tile += per_camera;
      }
    }
    found[k] = out - (order + begin);
  });
  int64_t n = found[0];
  for (int k = 1; k < chunks; ++k) {
    const int64_t begin = items * k / chunks;
    std::copy(order + begin, order + begin + found[k], order + n);
    n += found[k];
  }
  const int64_t total = counts_to_starts(cursors, chunks, num_tiles, a.tile_starts);
  a.tile_starts[num_tiles] = total;
  if (total != d.num_pairs)
    throw std::invalid_argument("rasterize: bin_pairs got num_pairs " + std::to_string(d.num_pairs) +
                                " but the rectangles hold " + std::to_string(total));

  // 2. By depth bits, ties by item.
  const uint64_t* sorted = sort_by_depth(order, n, chunks, scratch);

  // 3. A stable counting sort of the pairs by tile, a chunk of the sorted items per thread:
  // chunk k's pairs of tile t go after earlier chunks' pairs of t. The first chunk fills each
  // tile from its start; with two chunks, the second walks its items backwards and fills each
  // tile from its end. Only three or more chunks need the tile counts of each chunk of the
  // sorted items (a counting pass).
  const auto item_at = [&](int64_t i) { return static_cast<int64_t>(sorted[i] & 0xffffffffu); };
  if (chunks > 2) {
    std::fill_n(cursors, num_cursors, 0);
    for_each_chunk(n, chunks, [&](int64_t k, int64_t begin, int64_t end) {
      int64_t* counts = cursors + k * num_tiles;
      for (int64_t i = begin; i < end; ++i) {
        if (i + kAhead < end) __builtin_prefetch(&spans[item_at(i + kAhead)]);
        count_pairs(spans[item_at(i)], counts);
      }
    });
    counts_to_starts(cursors, chunks, num_tiles);
  } else {
    std::copy(a.tile_starts, a.tile_starts + num_tiles, cursors);
    if (chunks == 2) std::copy(a.tile_starts + 1, a.tile_starts + num_tiles + 1, cursors + num_tiles);
  }
  // Claims `count` (0 or 1) slots of a tile whose cursor is c: forwards c, c + 1, ...;
  // backwards from an end, c - 1, c - 2, ...
  const auto claim = [](int64_t& c, int64_t count, auto backwards) {
    if constexpr (decltype(backwards)::value) return c -= count;
    const int64_t slot = c;
    c += count;
    return slot;
  };
  const auto scatter = [&](int64_t begin, int64_t end, int64_t* cursor, auto backwards) {
    constexpr bool kBackwards = decltype(backwards)::value;
    int64_t sink[2];  // where the second pair of an item with one tile goes
    for (int64_t j = 0; j < end - begin; ++j) {
      const int64_t i = kBackwards ? end - 1 - j : begin + j;
      const int64_t ahead = kBackwards ? i - kAhead : i + kAhead;
      if (ahead >= begin && ahead < end) __builtin_prefetch(&spans[item_at(ahead)]);
      const int64_t item = item_at(i);
      const TileSpan& span = spans[item];
      const int32_t tiles = span.cols * span.rows;
      const int64_t first = claim(cursor[span.first_tile], 1, backwards);
      a.pair_items[first] = item;
      a.pair_emit_index[first] = span.first_pair;
      const int64_t second = claim(cursor[second_tile(span)], tiles > 1, backwards);
      *(tiles > 1 ? a.pair_items + second : sink) = item;
      *(tiles > 1 ? a.pair_emit_index + second : sink + 1) = span.first_pair + 1;
      if (tiles > 2)
        for_each_further_tile(span, [&](int32_t t, int32_t index) {
          const int64_t slot = claim(cursor[t], 1, backwards);
          a.pair_items[slot] = item;
          a.pair_emit_index[slot] = span.first_pair + index;
        });
    }
  };
  for_each_chunk(n, chunks, [&](int64_t k, int64_t begin, int64_t end) {
    int64_t* cursor = cursors + k * num_tiles;
    if (chunks == 2 && k == 1)
      scatter(begin, end, cursor, std::true_type{});
    else
      scatter(begin, end, cursor, std::false_type{});
  });
}

}  // namespace

// Packed items of many cameras: no pair of one camera mixes with another's (a tile's key starts
// with its camera), so each camera is binned alone by one thread, its items and tiles staying in
// cache: the same pairs in the same order as binning all items at once. Dense calls and calls
// with few cameras a thread bin all items at once.
void bin_pairs_cpu(const BinPairsArgs& a, int num_threads) {
  const Dims& d = a.dims;
  constexpr int64_t kCamerasPerThread = 4;  // fewer would leave threads idle at the end
  if (a.camera_items == nullptr || d.num_cameras < kCamerasPerThread * num_threads) {
    bin_all_items(a, num_threads);
    return;
  }
  const int64_t per_camera = int64_t(d.tiles_x) * d.tiles_y;
  const int64_t all_pairs = d.num_items > 0 ? a.pair_ends[d.num_items - 1] : 0;
  if (all_pairs != d.num_pairs)
    throw std::invalid_argument("rasterize: bin_pairs got num_pairs " + std::to_string(d.num_pairs) +
                                " but pair_ends sums to " + std::to_string(all_pairs));
  cpu::parallel_for(d.num_cameras, num_threads, 1, [&](int64_t c0, int64_t c1) {
    thread_local cpu::ScratchBuffer<int64_t> camera_tile_starts;
    int64_t* starts = camera_tile_starts.get(static_cast<size_t>(per_camera + 1));
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t begin = a.camera_items[c], end = a.camera_items[c + 1];
      const int64_t pair_begin = begin > 0 ? a.pair_ends[begin - 1] : 0;
      const int64_t pair_end = end > begin ? a.pair_ends[end - 1] : pair_begin;
      if (end > begin) {
        // The camera's items as a dense one-camera call; pair_ends stay global, so the emission
        // positions (pair_emit_index) do too, and its pairs go to its own range of the output.
        BinPairsArgs camera = a;
        camera.dims.num_cameras = 1;
        camera.dims.num_surfels = camera.dims.num_items = end - begin;
        camera.dims.num_pairs = pair_end - pair_begin;
        camera.depths += begin;
        camera.pixel_rects += 4 * begin;
        camera.pair_ends += begin;
        camera.camera_items = nullptr;
        camera.tile_starts = starts;
        camera.pair_items += pair_begin;
        camera.pair_emit_index += pair_begin;
        bin_all_items(camera, 1);
        for (int64_t p = pair_begin; p < pair_end; ++p) a.pair_items[p] += begin;  // its items, globally
      } else {
        std::fill_n(starts, per_camera, 0);
      }
      for (int64_t t = 0; t < per_camera; ++t) a.tile_starts[c * per_camera + t] = starts[t] + pair_begin;
    }
  });
  a.tile_starts[d.num_cameras * per_camera] = d.num_pairs;
}

}  // namespace gsl::rasterize
