// chatstack's matrix multiplies on Intel AMX (model_api/amx_kernels.py builds and loads this
// file): a decode step's few rows with int4 weights (the Q4_1 linears) and int8 (the output
// projection), a prompt's many rows with the int4 linears' bf16 copy; and decode attention.
//
// int4: y[m][n] = sum over groups g of 32 inputs: step[n][g] * sum_k x[m][k] * q[n][k]
//                                                + low[n][g]  * sum_k x[m][k]
// with q in 0..15 (a Q4_1 block: weight = low + q * step) and x quantized to int8 per group
// (the int4 section below). int8: y[m][n] = scale[n] * sum_k x[m][k] * c[n][k], the codes
// entering the tiles as exact bf16 integers and x as bf16, so every product is exact; the
// sums are float32.
//
// Why kernels of our own: PyTorch's int4 and int8 CPU kernels unpack the weights again for
// every row, so a 16-row step costs 6-9x a 1-row one. Here a block of 16 outputs x 32
// inputs is unpacked once and multiplied with all the rows at once. A row's arithmetic is
// its own, and the work is split across threads by output blocks only, so a row gets the
// same bits in a batch of any size.
//
// Packed layouts (amx_kernels.py packs them): int4 below; int8, for each block b of 16
// outputs and each group g, two planes (the low and the high nibbles of c, c = 16 * (h - 8)
// + l) of 16 pairs j of inputs (2j, 2j+1) x 16 outputs i, one byte each:
// c[16b+i][32g+2j] | c[16b+i][32g+2j+1] << 4. int4 steps and lows float16
// [blocks][groups][16], int8 scales float32 [out].

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace {

constexpr int kGroup = 32;
constexpr int kLanes = 16;
constexpr int kMaxRows = 16;  // an AMX tile's rows

// bf16 of 0..15 at word index q (vpermw reads the low 5 bits of each word).
alignas(64) const uint16_t kTable[32] = {
    0x0000, 0x3F80, 0x4000, 0x4040, 0x4080, 0x40A0, 0x40C0, 0x40E0,
    0x4100, 0x4110, 0x4120, 0x4130, 0x4140, 0x4150, 0x4160, 0x4170,
    0x0000, 0x3F80, 0x4000, 0x4040, 0x4080, 0x40A0, 0x40C0, 0x40E0,
    0x4100, 0x4110, 0x4120, 0x4130, 0x4140, 0x4150, 0x4160, 0x4170};

// bf16 of 16 * (h - 8) at word index h: the high nibble of an int8 code.
alignas(64) const uint16_t kHighTable[32] = {
    0xC300, 0xC2E0, 0xC2C0, 0xC2A0, 0xC280, 0xC240, 0xC200, 0xC180,
    0x0000, 0x4180, 0x4200, 0x4240, 0x4280, 0x42A0, 0x42C0, 0x42E0,
    0xC300, 0xC2E0, 0xC2C0, 0xC2A0, 0xC280, 0xC240, 0xC200, 0xC180,
    0x0000, 0x4180, 0x4200, 0x4240, 0x4280, 0x42A0, 0x42C0, 0x42E0};

// Pair j of a block's group: 16 outputs x inputs (2j, 2j+1) as 32 bf16 integers.
inline __m512bh unpack_pair(const uint8_t* block, int j, __m512i table, __m512i nibbles) {
  const __m512i bytes = _mm512_cvtepu8_epi32(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 16 * j)));
  // words (q0, q1) of each output: q0 from bits 0-3, q1 shifted from bits 4-7 to 16-19
  const __m512i words =
      _mm512_ternarylogic_epi32(bytes, _mm512_slli_epi32(bytes, 12), nibbles, 0xA8);
  return (__m512bh)_mm512_permutexvar_epi16(words, table);
}

// The RMSNorm factor of a row: 1 / sqrt(mean(x^2) + eps).
inline float rms_factor(const float* row, int64_t in, float eps) {
  __m512 squares = _mm512_setzero_ps();
  for (int64_t i = 0; i < in; i += 16) {
    const __m512 v = _mm512_loadu_ps(row + i);
    squares = _mm512_fmadd_ps(v, v, squares);
  }
  const float mean = _mm512_reduce_add_ps(squares) / static_cast<float>(in);
  return 1.0f / sqrtf(mean + eps);
}

// Inputs k..k+31 of a row as two vectors, RMS-normalized (times `factor`, the row's
// rms_factor, and the norm weight) when there is a norm weight.
inline void load_group(const float* row, int64_t k, const float* norm, __m512 factor, __m512& lo,
                       __m512& hi) {
  lo = _mm512_loadu_ps(row + k);
  hi = _mm512_loadu_ps(row + k + 16);
  if (norm) {
    lo = _mm512_mul_ps(_mm512_mul_ps(lo, factor), _mm512_loadu_ps(norm + k));
    hi = _mm512_mul_ps(_mm512_mul_ps(hi, factor), _mm512_loadu_ps(norm + k + 16));
  }
}

// x as bf16 (in order, so each 32-bit word is a pair of inputs), rows padded with zeros to
// a multiple of `multiple` (whole AMX tiles of rows). With a norm weight, each row is
// RMS-normalized first (x * rms_factor * weight, in float32): the decoder's norm before
// q/k/v and before the MLP, fused into the rounding.
struct Rows {
  uint32_t* pairs;
  Rows(const float* x, int64_t rows, int64_t in, const float* norm, float eps,
       int64_t multiple = kMaxRows) {
    const int64_t padded = (rows + multiple - 1) / multiple * multiple;
    pairs = static_cast<uint32_t*>(aligned_alloc(64, sizeof(uint16_t) * padded * in));
    uint16_t* halves = reinterpret_cast<uint16_t*>(pairs);
    memset(halves + rows * in, 0, sizeof(uint16_t) * (padded - rows) * in);
    for (int64_t m = 0; m < rows; ++m) {
      const float* row = x + m * in;
      const __m512 scale = _mm512_set1_ps(norm ? rms_factor(row, in, eps) : 1.0f);
      for (int64_t k = 0; k < in; k += 32) {
        __m512 lo, hi;
        load_group(row, k, norm, scale, lo, hi);
        _mm512_storeu_si512(halves + m * in + k, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
      }
    }
  }
  ~Rows() { free(pairs); }
};

struct TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Loads this thread's tile configuration: `count` tiles of 64 bytes a row, the first `tall`
// of them (C and A) as tall as the step's rows (at most 16: a tile instruction's cost
// follows its rows, and each row's arithmetic is the same however many there are), the
// rest (B) 16 rows.
inline void configure_tiles(int64_t rows, int count, int tall) {
  TileConfig config;
  const uint8_t height = rows < kMaxRows ? static_cast<uint8_t>(rows) : kMaxRows;
  for (int t = 0; t < count; ++t) config.colsb[t] = 64, config.rows[t] = t < tall ? height : 16;
  _tile_loadconfig(&config);
}

// ---- int4 ---------------------------------------------------------------------------
// x is quantized per group of 32 inputs, as llama.cpp quantizes it (Q8_1) for its Q4_1 dot
// products: q = round(x * 127 / max|x|) in -127..127, the group's scale d = max|x| / 127 and
// s = d * sum q. Then
//   y[m][n] = sum over g of (step[n][g] * d[m][g]) * dot[m][n][g] + low[n][g] * s[m][g],
//   dot[m][n][g] = sum over the group's k of q[m][k] * code[n][k],
// an exact integer whichever instructions compute it: AVX512-VNNI for a few rows (one pass
// over the codes per few rows, no tile round trip), AMX tiles for many. Both then sum the
// groups in order through the same float32 arithmetic (accumulate_group), so a row gets the
// same bits by either path, in a batch of any size.
//
// Packed codes, per block b of 16 outputs and group g: 4 rows r of 64 bytes, byte 4n + i of
// row r holding code[16b+n][32g+4r+i] in its low nibble and code[16b+n][32g+16+4r+i] in its
// high one. Unpacked, a row's low (or high) nibbles are the dwords vpdpbusd multiplies with
// 4 inputs, one output per lane; all 8 of them (low 0-3, high 4-7) are an AMX B tile.

// x's rows quantized per group (rows padded with zeros to a multiple of an AMX tile's 16),
// RMS-normalized first (x * rms_factor * weight, in float32) when given a norm weight.
struct QuantizedRows {
  int8_t* codes;  // [padded rows][in]
  float* scales;  // [rows][groups]: d
  float* sums;    // [rows][groups]: s
  QuantizedRows(const float* x, int64_t rows, int64_t in, const float* norm, float eps) {
    const int64_t groups = in / kGroup, padded = (rows + kMaxRows - 1) / kMaxRows * kMaxRows;
    codes = static_cast<int8_t*>(aligned_alloc(64, padded * in));
    scales = static_cast<float*>(malloc(sizeof(float) * rows * groups * 2));
    sums = scales + rows * groups;
    memset(codes + rows * in, 0, (padded - rows) * in);
    for (int64_t m = 0; m < rows; ++m) {
      const float* row = x + m * in;
      const __m512 factor = _mm512_set1_ps(norm ? rms_factor(row, in, eps) : 1.0f);
      for (int64_t g = 0; g < groups; ++g) {
        __m512 lo, hi;
        load_group(row, g * kGroup, norm, factor, lo, hi);
        const float top = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
        const __m512 inverse = _mm512_set1_ps(top > 0.0f ? 127.0f / top : 0.0f);
        // round to nearest even (the default rounding), saturated to int8
        const __m512i qlo = _mm512_cvtps_epi32(_mm512_mul_ps(lo, inverse));
        const __m512i qhi = _mm512_cvtps_epi32(_mm512_mul_ps(hi, inverse));
        int8_t* target = codes + m * in + g * kGroup;
        _mm_storeu_si128(reinterpret_cast<__m128i*>(target), _mm512_cvtsepi32_epi8(qlo));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(target + 16), _mm512_cvtsepi32_epi8(qhi));
        const float scale = top / 127.0f;
        scales[m * groups + g] = scale;
        sums[m * groups + g] = scale * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi)));
      }
    }
  }
  ~QuantizedRows() {
    free(codes);
    free(scales);
  }
};

// One group's integer dots of one row into its float32 sums: the only float arithmetic of the
// int4 product, shared by both paths.
inline __m512 accumulate_group(__m512 acc, __m512i dot, __m512 step, __m512 low, float scale,
                               float sum) {
  const __m512 scaled = _mm512_mul_ps(step, _mm512_set1_ps(scale));
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scaled, acc);
  return _mm512_fmadd_ps(low, _mm512_set1_ps(sum), acc);
}

inline __m512 load_halves(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

inline void store_result(float* target, __m512 result, bool add) {
  if (add) result = _mm512_add_ps(_mm512_loadu_ps(target), result);
  _mm512_storeu_ps(target, result);
}

constexpr int kVnniRows = 4;  // rows a VNNI pass keeps in registers
// Up to this many rows VNNI is the faster path (measured on a 2-core Xeon with AMX: 1 row
// 0.05 ms a layer against AMX's 0.11, 8 rows 0.17 against 0.16): the tiles pay a store and
// a load per group, VNNI unpacks the codes again for every kVnniRows rows.
constexpr int kVnniMaxRows = 7;

void int4_vnni_blocks(const QuantizedRows& x, int64_t rows, int64_t in, const uint8_t* codes,
                      const uint16_t* steps, const uint16_t* lows, int64_t blocks, float* y,
                      int64_t n_out, bool add) {
  const int64_t groups = in / kGroup;
  const __m512i nibble = _mm512_set1_epi8(0x0F);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t first = 0; first < rows; first += kVnniRows) {
      const int64_t count = rows - first < kVnniRows ? rows - first : kVnniRows;
      __m512 acc[kVnniRows];
      for (int m = 0; m < kVnniRows; ++m) acc[m] = _mm512_setzero_ps();
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t at = b * groups + g;
        __m512i low_codes[4], high_codes[4];
        for (int r = 0; r < 4; ++r) {
          const __m512i packed = _mm512_loadu_si512(codes + at * 256 + 64 * r);
          low_codes[r] = _mm512_and_si512(packed, nibble);
          high_codes[r] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), nibble);
        }
        const __m512 step = load_halves(steps + at * kLanes), low = load_halves(lows + at * kLanes);
        for (int64_t m = 0; m < count; ++m) {
          const int64_t row = first + m;
          const int32_t* q = reinterpret_cast<const int32_t*>(x.codes + row * in + g * kGroup);
          // two chains of four: integer sums, so their order cannot change a bit
          __m512i even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
          for (int r = 0; r < 4; ++r) {
            even = _mm512_dpbusd_epi32(even, low_codes[r], _mm512_set1_epi32(q[r]));
            odd = _mm512_dpbusd_epi32(odd, high_codes[r], _mm512_set1_epi32(q[4 + r]));
          }
          acc[m] = accumulate_group(acc[m], _mm512_add_epi32(even, odd), step, low,
                                    x.scales[row * groups + g], x.sums[row * groups + g]);
        }
      }
      for (int64_t m = 0; m < count; ++m) {
        store_result(y + (first + m) * n_out + b * kLanes, acc[m], add);
      }
    }
  }
}

// Tiles: C 0-1 (int32, the step's rows x 16 outputs), A 2-3 (the rows x 32 int8 inputs), B 4-5
// (8 x 64 bytes: 32 inputs x 16 outputs), two groups in flight: a tile is not renamed, so one
// set would make each group wait for the last one's product to be stored.
inline void configure_int4_tiles(int64_t rows) {
  TileConfig config;
  const uint8_t height = rows < kMaxRows ? static_cast<uint8_t>(rows) : kMaxRows;
  for (int t = 0; t < 6; ++t) {
    config.colsb[t] = t == 2 || t == 3 ? 32 : 64;
    config.rows[t] = t < 4 ? height : 8;
  }
  _tile_loadconfig(&config);
}

// (The tile intrinsics take their register numbers as literals, hence a macro.)
#define AMX_INT4_GROUP(C, A, B, h)                                          \
  _tile_loadd(A, x.codes + t * kMaxRows * in + (g + h) * kGroup, in);       \
  _tile_zero(C);                                                            \
  _tile_dpbsud(C, A, B);                                                    \
  _tile_stored(C, product[h], 64)

void int4_amx_blocks(const QuantizedRows& x, int64_t rows, int64_t in, const uint8_t* codes,
                     const uint16_t* steps, const uint16_t* lows, int64_t blocks, float* y,
                     int64_t n_out, bool add) {
  const int64_t groups = in / kGroup, tiles = (rows + kMaxRows - 1) / kMaxRows;
#pragma omp parallel
  {
    configure_int4_tiles(rows);
    alignas(64) uint8_t unpacked[2][8 * 64];
    alignas(64) int32_t product[2][16 * 16];
    float* acc = static_cast<float*>(aligned_alloc(64, sizeof(float) * tiles * 256));
    const __m512i nibble = _mm512_set1_epi8(0x0F);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      memset(acc, 0, sizeof(float) * tiles * 256);
      for (int64_t g = 0; g < groups; g += 2) {  // groups is even: in % 64 == 0
        for (int h = 0; h < 2; ++h) {
          const uint8_t* packed = codes + (b * groups + g + h) * 256;
          for (int r = 0; r < 4; ++r) {
            const __m512i v = _mm512_loadu_si512(packed + 64 * r);
            _mm512_store_si512(unpacked[h] + 64 * r, _mm512_and_si512(v, nibble));
            _mm512_store_si512(unpacked[h] + 64 * (4 + r),
                               _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble));
          }
        }
        _tile_loadd(4, unpacked[0], 64);
        _tile_loadd(5, unpacked[1], 64);
        for (int64_t t = 0; t < tiles; ++t) {
          AMX_INT4_GROUP(0, 2, 4, 0);
          AMX_INT4_GROUP(1, 3, 5, 1);
          const int64_t count = rows - t * kMaxRows < kMaxRows ? rows - t * kMaxRows : kMaxRows;
          for (int h = 0; h < 2; ++h) {
            const int64_t at = b * groups + g + h;
            const __m512 step = load_halves(steps + at * kLanes), low = load_halves(lows + at * kLanes);
            for (int64_t m = 0; m < count; ++m) {
              const int64_t row = t * kMaxRows + m;
              float* sums = acc + t * 256 + m * 16;
              const __m512i dot = _mm512_load_si512(product[h] + m * 16);
              _mm512_store_ps(sums, accumulate_group(_mm512_load_ps(sums), dot, step, low,
                                                     x.scales[row * groups + g + h],
                                                     x.sums[row * groups + g + h]));
            }
          }
        }
      }
      for (int64_t m = 0; m < rows; ++m) {
        store_result(y + m * n_out + b * kLanes,
                     _mm512_load_ps(acc + (m / kMaxRows) * 256 + (m % kMaxRows) * 16), add);
      }
    }
    free(acc);
    _tile_release();
  }
}

// ---- bf16 (a prompt's rows) -------------------------------------------------------------
// y = x w^T for a prompt's hundreds of rows, with the int4 linears' dense bf16 copy: the rows
// in bf16, float32 sums kept in the tiles over all the inputs (no round trip per group, so at
// 768 rows ~2x the int4 kernel's speed). Every output accumulates its inputs 32 at a time in
// ascending order whatever the number of rows, so a prompt's rows get the same bits alone and
// batched with other prompts (oneDNN's GEMM picks its blocking by the rows, and does not).
//
// Packed weight (amx_kernels.py packs it): for each block b of 16 outputs and each step s of
// 32 inputs, a B tile of 16 rows j x 16 outputs i x 2 bf16: w[16b+i][32s+2j], w[16b+i][32s+2j+1].
// Tiles: C 0-3 (2 row tiles x 2 output blocks), A 4-5, B 6-7.

#define AMX_BF16_STEP(k)                                                          \
  _tile_loadd(4, x.pairs + (32 * pair) * in / 2 + (k) * 16, in * 2);              \
  _tile_loadd(5, x.pairs + (32 * pair + 16) * in / 2 + (k) * 16, in * 2);         \
  _tile_loadd(6, weight + ((2 * quad) * steps + (k)) * 512, 64);                  \
  _tile_loadd(7, weight + ((2 * quad + 1) * steps + (k)) * 512, 64);              \
  _tile_dpbf16ps(0, 4, 6);                                                        \
  _tile_dpbf16ps(1, 4, 7);                                                        \
  _tile_dpbf16ps(2, 5, 6);                                                        \
  _tile_dpbf16ps(3, 5, 7)

void amx_bf16_blocks(const Rows& x, int64_t rows, int64_t in, const uint16_t* weight,
                     int64_t blocks, float* y, int64_t n_out, bool add) {
  const int64_t steps = in / 32, pairs = (rows + 31) / 32, quads = blocks / 2;
#pragma omp parallel
  {
    configure_tiles(kMaxRows, 8, 8);
    alignas(64) float product[4][16 * 16];
#pragma omp for schedule(static) collapse(2)
    for (int64_t quad = 0; quad < quads; ++quad) {
      for (int64_t pair = 0; pair < pairs; ++pair) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t k = 0; k < steps; ++k) {
          AMX_BF16_STEP(k);
        }
        _tile_stored(0, product[0], 64);
        _tile_stored(1, product[1], 64);
        _tile_stored(2, product[2], 64);
        _tile_stored(3, product[3], 64);
        for (int c = 0; c < 4; ++c) {
          const int64_t first = 32 * pair + 16 * (c / 2), block = 2 * quad + c % 2;
          for (int64_t m = 0; m < 16 && first + m < rows; ++m) {
            store_result(y + (first + m) * n_out + block * kLanes,
                         _mm512_load_ps(product[c] + m * 16), add);
          }
        }
      }
    }
    _tile_release();
  }
}

// ---- int8 (the output projection) -------------------------------------------------------
// Each nibble plane goes through unpack_pair, the high one with kHighTable: every product is
// still exact, and as the scale is per output (not per group) the tile accumulates over all
// the inputs before it is scaled.

// AMX: C (tile 0) accumulates every group's two planes; A and both B tiles are doubled
// (1-2, 3-6) so that two groups are in flight.
#define AMX_INT8_GROUP(A, BL, BH, h)                                                     \
  for (int j = 0; j < 16; ++j) {                                                         \
    _mm512_store_si512(unpacked[h][0] + 32 * j,                                          \
                       (__m512i)unpack_pair(block + (g + h) * 512, j, low_table, nibbles)); \
    _mm512_store_si512(                                                                  \
        unpacked[h][1] + 32 * j,                                                         \
        (__m512i)unpack_pair(block + (g + h) * 512 + 256, j, high_table, nibbles));      \
  }                                                                                      \
  _tile_loadd(BL, unpacked[h][0], 64);                                                   \
  _tile_loadd(BH, unpacked[h][1], 64);                                                   \
  _tile_loadd(A, x.pairs + t * kMaxRows * groups * 16 + (g + h) * 16, groups * 16 * 4);  \
  _tile_dpbf16ps(0, A, BL);                                                              \
  _tile_dpbf16ps(0, A, BH)

void amx_int8_blocks(const Rows& x, int64_t rows, int64_t groups, const uint8_t* planes,
                     const float* scales, int64_t blocks, float* y, int64_t n_out) {
  const int64_t tiles = (rows + kMaxRows - 1) / kMaxRows;
#pragma omp parallel
  {
    configure_tiles(rows, 7, 3);
    alignas(64) uint16_t unpacked[2][2][16 * 32];
    alignas(64) float product[16 * 16];
    const __m512i low_table = _mm512_load_si512(kTable);
    const __m512i high_table = _mm512_load_si512(kHighTable);
    const __m512i nibbles = _mm512_set1_epi32(0x000F000F);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* block = planes + b * groups * 512;
      const __m512 scale = _mm512_loadu_ps(scales + b * kLanes);
      for (int64_t t = 0; t < tiles; ++t) {
        _tile_zero(0);
        for (int64_t g = 0; g < groups; g += 2) {
          AMX_INT8_GROUP(1, 3, 4, 0);
          AMX_INT8_GROUP(2, 5, 6, 1);
        }
        _tile_stored(0, product, 64);
        const int64_t count = rows - t * kMaxRows < kMaxRows ? rows - t * kMaxRows : kMaxRows;
        for (int64_t m = 0; m < count; ++m) {
          _mm512_storeu_ps(y + (t * kMaxRows + m) * n_out + b * kLanes,
                           _mm512_mul_ps(_mm512_load_ps(product + m * 16), scale));
        }
      }
    }
    _tile_release();
  }
}

// ---- decode attention -----------------------------------------------------------------
// One query token per row over the row's first `length` keys, the query heads that share a
// KV head together: scores q·k in float32 from the bf16 keys (converted in registers, not
// in memory: converting the whole batch's keys to float32 first was 30% of a 32-row step),
// a softmax, the weighted sum of values. Each (row, KV head) is one task, its sums in a
// fixed order, so a row gets the same bits in any batch.

constexpr int kMaxGroup = 8;  // query heads per KV head

inline __m512 bf16_to_fp32(const uint16_t* p) {
  const __m512i words = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(words, 16));
}

// e^x for x <= 0 (scores minus their maximum): 2^n * p(r), |error| ~ 2 ulp; 0 below -87.
inline __m512 exp_nonpositive(__m512 x) {
  const __mmask16 finite = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_mov_ps(finite, _mm512_scalef_ps(p, n));
}

void attend_task(const float* q, int64_t q_head_stride, const uint16_t* keys,
                 const uint16_t* values, int64_t length, int64_t group, int64_t dim,
                 float scale, float* out, float* scores) {
  const int64_t chunks = dim / 16, padded = (length + 15) / 16 * 16;
  // scores[g][j] = scale * q_g · k_j, each row padded to whole vectors with -inf (exp: 0)
  for (int64_t j = 0; j < length; ++j) {
    const uint16_t* k = keys + j * dim;
    for (int64_t g = 0; g < group; ++g) {
      const float* qg = q + g * q_head_stride;
      __m512 sum = _mm512_mul_ps(_mm512_loadu_ps(qg), bf16_to_fp32(k));
      for (int64_t c = 1; c < chunks; ++c) {
        sum = _mm512_fmadd_ps(_mm512_loadu_ps(qg + 16 * c), bf16_to_fp32(k + 16 * c), sum);
      }
      scores[g * padded + j] = _mm512_reduce_add_ps(sum) * scale;
    }
  }
  for (int64_t g = 0; g < group; ++g) {
    for (int64_t j = length; j < padded; ++j) scores[g * padded + j] = -INFINITY;
  }
  // a softmax per query head, then out_g = sum_j p_j v_j / sum_j p_j
  for (int64_t g = 0; g < group; ++g) {
    float* row = scores + g * padded;
    __m512 top = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < padded; j += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(row + j));
    const __m512 peak = _mm512_set1_ps(_mm512_reduce_max_ps(top));
    __m512 total = _mm512_setzero_ps();
    for (int64_t j = 0; j < padded; j += 16) {
      const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(row + j), peak));
      _mm512_storeu_ps(row + j, e);
      total = _mm512_add_ps(total, e);
    }
    const float inverse = 1.0f / _mm512_reduce_add_ps(total);
    __m512 acc[8];
    for (int64_t c = 0; c < chunks; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t j = 0; j < length; ++j) {
      const __m512 weight = _mm512_set1_ps(row[j]);
      const uint16_t* v = values + j * dim;
      for (int64_t c = 0; c < chunks; ++c) {
        acc[c] = _mm512_fmadd_ps(weight, bf16_to_fp32(v + 16 * c), acc[c]);
      }
    }
    for (int64_t c = 0; c < chunks; ++c) {
      _mm512_storeu_ps(out + g * dim + 16 * c, _mm512_mul_ps(acc[c], _mm512_set1_ps(inverse)));
    }
  }
}

// (x0, x1) of each rotary pair → (x0 c - x1 s, x0 s + x1 c), 8 pairs per vector.
inline void rotate(const float* x, const float* turn, int64_t dim, float* y) {
  for (int64_t i = 0; i < dim; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i), cs = _mm512_loadu_ps(turn + i);
    const __m512 swapped = _mm512_permute_ps(v, 0xB1);  // (x1, x0)
    const __m512 sines = _mm512_mul_ps(swapped, _mm512_movehdup_ps(cs));
    _mm512_storeu_ps(y + i, _mm512_fmaddsub_ps(v, _mm512_moveldup_ps(cs), sines));
  }
}

inline void store_bf16(const float* x, int64_t dim, uint16_t* target) {  // round to nearest even
  for (int64_t i = 0; i < dim; i += 32) {
    const __m512bh pair = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(target + i, (__m512i)pair);
  }
}

}  // namespace

extern "C" {

// Whether this process may use AMX tiles (Linux grants them to a process that asks once).
int chatstack_amx_available() {
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

// x [rows][in] float32 → y [rows][out] float32; in % 64 == 0, out % 16 == 0. norm: an
// RMSNorm weight [in] applied to x first, or null; add: y += the product (a residual).
void chatstack_int4_mm(const float* x, int64_t rows, int64_t in, const uint8_t* codes,
                       const uint16_t* steps, const uint16_t* lows, int64_t out, float* y,
                       const float* norm, float eps, int add) {
  const QuantizedRows prepared(x, rows, in, norm, eps);
  if (rows <= kVnniMaxRows) {
    int4_vnni_blocks(prepared, rows, in, codes, steps, lows, out / kLanes, y, out, add);
  } else {
    int4_amx_blocks(prepared, rows, in, codes, steps, lows, out / kLanes, y, out, add);
  }
}

// x [rows][in] float32 → y [rows][out] float32 through the packed bf16 weight; in % 32 == 0,
// out % 32 == 0; norm and add as for chatstack_int4_mm.
void chatstack_bf16_mm(const float* x, int64_t rows, int64_t in, const uint16_t* weight,
                       int64_t out, float* y, const float* norm, float eps, int add) {
  const Rows prepared(x, rows, in, norm, eps, 32);
  amx_bf16_blocks(prepared, rows, in, weight, out / kLanes, y, out, add);
}

void chatstack_int8_mm(const float* x, int64_t rows, int64_t in, const uint8_t* planes,
                       const float* scales, int64_t out, float* y) {
  const Rows prepared(x, rows, in, nullptr, 0.0f);
  amx_int8_blocks(prepared, rows, in / kGroup, planes, scales, out / kLanes, y, out);
}

// query [rows][heads][dim] float32 (row stride q_stride); keys and values bf16 with row
// stride kv_row_stride and KV-head stride kv_head_stride, each key `dim` wide and
// contiguous; lengths[rows] keys per row (0: not decoding, its output is zeros) → out
// [rows][heads][dim] float32. dim % 16 == 0, dim <= 128, heads / kv_heads <= 8.
void chatstack_decode_attention(const float* query, int64_t q_stride, const uint16_t* keys,
                                const uint16_t* values, int64_t kv_row_stride,
                                int64_t kv_head_stride, const int64_t* lengths, int64_t rows,
                                int64_t heads, int64_t kv_heads, int64_t dim, float scale,
                                float* out) {
  const int64_t group = heads / kv_heads;
  int64_t longest = 0;
  for (int64_t r = 0; r < rows; ++r) longest = lengths[r] > longest ? lengths[r] : longest;
  const size_t scratch = sizeof(float) * group * ((longest + 15) / 16 * 16);
#pragma omp parallel
  {
    float* scores = static_cast<float*>(malloc(scratch + 64));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < rows * kv_heads; ++task) {
      const int64_t r = task / kv_heads, h = task % kv_heads;
      float* target = out + (r * heads + h * group) * dim;
      if (!lengths[r]) {
        memset(target, 0, sizeof(float) * group * dim);
        continue;
      }
      attend_task(query + r * q_stride + h * group * dim, dim,
                  keys + r * kv_row_stride + h * kv_head_stride,
                  values + r * kv_row_stride + h * kv_head_stride, lengths[r], group, dim, scale,
                  target, scores);
    }
    free(scores);
  }
}

// A decode step's attention for one layer, from the q/k/v projection on: rotary positions
// on q and k (each rotary pair side by side, as llama_decoder.py lays the rows out), k and
// v stored as bf16 at each token's position in its KV row, then attend_task over the row's
// keys up to and including its new one. projected [n][(heads + 2 kv_heads) dim] float32;
// rotation [n][dim / 2][2] (cos, sin); rows and positions [n] → out [n][heads][dim] float32.
void chatstack_decode_attend(const float* projected, int64_t n, const float* rotation,
                             const int64_t* rows, const int64_t* positions, uint16_t* keys,
                             uint16_t* values, int64_t kv_row_stride, int64_t kv_head_stride,
                             int64_t heads, int64_t kv_heads, int64_t dim, float scale,
                             float* out) {
  const int64_t group = heads / kv_heads, width = (heads + 2 * kv_heads) * dim;
  int64_t longest = 0;
  for (int64_t b = 0; b < n; ++b) longest = positions[b] + 1 > longest ? positions[b] + 1 : longest;
  const size_t scratch = sizeof(float) * group * ((longest + 15) / 16 * 16);
#pragma omp parallel
  {
    float* scores = static_cast<float*>(malloc(scratch + 64));
    alignas(64) float query[kMaxGroup * 128];
    alignas(64) float key[128];
#pragma omp for schedule(static)
    for (int64_t task = 0; task < n * kv_heads; ++task) {
      const int64_t b = task / kv_heads, h = task % kv_heads;
      const float* token = projected + b * width;
      const float* turn = rotation + b * dim;
      rotate(token + (heads + h) * dim, turn, dim, key);
      const int64_t at = rows[b] * kv_row_stride + h * kv_head_stride + positions[b] * dim;
      store_bf16(key, dim, keys + at);
      store_bf16(token + (heads + kv_heads + h) * dim, dim, values + at);
      for (int64_t g = 0; g < group; ++g) {
        rotate(token + (h * group + g) * dim, turn, dim, query + g * dim);
      }
      attend_task(query, dim, keys + rows[b] * kv_row_stride + h * kv_head_stride,
                  values + rows[b] * kv_row_stride + h * kv_head_stride, positions[b] + 1,
                  group, dim, scale, out + (b * heads + h * group) * dim, scores);
    }
    free(scores);
  }
}

}  // extern "C"
