// cuda_emu_mma.h: mma.sync and cvt.rna.tf32.f32 for the CUDA emulation (included by cuda_emu.h).
//
// `__ft::mma_sync` is a warp collective, like the shuffles: each of the 32 lanes hands in its
// a, b and c registers and waits; once all have, the emulation assembles the whole A (16xK),
// B (Kx8) and C (16x8) by the PTX ISA's lane layout for the instruction ("Matrix Fragments for
// mma.m16n8k16 / mma.m16n8k8"), computes D = A * B + C in float (each product of two f16, bf16
// or tf32 values is exact in float; the sums run over k in order from C) and hands each lane its
// d registers.  The layout is written out here on its own, from the ISA's formulas, and not
// shared with the helpers that fill fragments (fractal/backends/cuda/mma.py), so that a layout
// bug in those helpers gives a wrong D instead of cancelling out.  A warp with fewer than 32
// threads, lanes that never arrive, and lanes calling different mma instructions are errors.
#pragma once

namespace __ft {

enum class MmaKind { f16, bf16, tf32 };
inline const char* mma_name(int kind) {
  static const char* names[] = {"mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32",
                                "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32",
                                "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32"};
  return names[kind];
}

struct MmaLane { const unsigned* a; const unsigned* b; const float* c; float* d; };

// cvt.rna.tf32.f32: to the nearest tf32 (10 mantissa bits), ties away from zero; NaN canonical.
inline uint32_t f32_to_tf32(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffffffu;
  return (x + 0x1000u) & 0xffffe000u;  // half an ulp onto the magnitude, then truncate
}

// A tf32 operand as the tensor core reads it: the upper 19 bits of the register.
inline float tf32_operand(uint32_t r) {
  if ((r & 0x7fffffffu) > 0x7f800000u) return f32_from(0x7fffffffu);
  return f32_from(r & 0xffffe000u);
}

inline float f16x2_element(uint32_t r, int h, int kind) {
  uint16_t bits16 = uint16_t(h ? r >> 16 : r & 0xffffu);
  return kind == int(MmaKind::f16) ? half_bits_to_float(bits16) : bfloat16_bits_to_float(bits16);
}

inline void mma_complete(Warp& w, unsigned warp) {
  int kind = w.params[w.first_lane];
  for (unsigned l = 0; l < 32; ++l)
    if (w.params[l] != kind)
      fail("lanes of warp %u called different mma instructions: lane %u %s, lane %u %s", warp,
           w.first_lane, mma_name(kind), l, mma_name(w.params[l]));
  const int K = kind == int(MmaKind::tf32) ? 8 : 16;
  float A[16][16], B[16][8], C[16][8];
  MmaLane* lanes[32];
  for (unsigned lane = 0; lane < 32; ++lane) {
    MmaLane* p = lanes[lane] = from_bits<MmaLane*>(w.vals[lane]);
    int g = int(lane >> 2), t = int(lane & 3);  // groupID, threadID_in_group
    for (int i = 0; i < 4; ++i) C[g + 8 * (i >> 1)][2 * t + (i & 1)] = p->c[i];  // c0 c1 | c2 c3
    if (kind == int(MmaKind::tf32)) {
      for (int i = 0; i < 4; ++i) A[g + 8 * (i & 1)][t + 4 * (i >> 1)] = tf32_operand(p->a[i]);
      for (int i = 0; i < 2; ++i) B[t + 4 * i][g] = tf32_operand(p->b[i]);
      continue;
    }
    for (int i = 0; i < 8; ++i)  // a_i in register i/2, half i%2: rows g, g+8; cols 2t.., 2t+8..
      A[g + 8 * ((i >> 1) & 1)][2 * t + (i & 1) + 8 * (i >> 2)] = f16x2_element(p->a[i >> 1], i & 1, kind);
    for (int i = 0; i < 4; ++i)  // b_i: rows 2t.., 2t+8..; column g
      B[2 * t + (i & 1) + 8 * (i >> 1)][g] = f16x2_element(p->b[i >> 1], i & 1, kind);
  }
  float D[16][8];
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 8; ++c) {
      float acc = C[r][c];
      for (int k = 0; k < K; ++k) acc += A[r][k] * B[k][c];
      D[r][c] = acc;
    }
  for (unsigned lane = 0; lane < 32; ++lane) {
    int g = int(lane >> 2), t = int(lane & 3);
    for (int i = 0; i < 4; ++i) lanes[lane]->d[i] = D[g + 8 * (i >> 1)][2 * t + (i & 1)];
  }
}

inline void mma_sync(MmaKind kind, float* d, const unsigned* a, const unsigned* b, const float* c) {
  Launch& L = *g_launch;
  unsigned warp = g_cur->linear / 32, lanes = std::min(32u, L.nthreads - warp * 32);
  if (lanes != 32)
    fail("%s is a warp-wide instruction that all 32 lanes execute together, but warp %u has %u "
         "threads (a block of %u threads)", mma_name(int(kind)), warp, lanes, L.nthreads);
  MmaLane mine{a, b, c, d};
  collective(Op::mma, 0xffffffffu, bits(&mine), int(kind), 32);
}

}  // namespace __ft
