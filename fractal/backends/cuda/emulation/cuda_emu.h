// cuda_emu.h: CUDA C++ kernels compiled by the host C++ compiler and run on the CPU.
//
// The execution model, deterministic by construction:
// - every CUDA thread of a launch is a fiber (ucontext) on the calling OS thread; one fiber runs
//   at a time, from its start to its next synchronisation point (__syncthreads, a warp
//   intrinsic, grid.sync()) or its end, in a fixed order (the block's threads forward, or
//   reversed on the second run of `run.py`), so a missing __syncthreads reads data that the
//   other threads have not written yet, the same way on every run;
// - blocks run one after another in a shuffled order (seeded); a cooperative launch runs all
//   blocks' fibers together, so grid.sync() is a barrier among every thread of the grid;
// - warp intrinsics gather the values of the lanes named by the mask, and hand each lane its
//   result once all of them arrived; a lane outside its own mask, lanes of a warp with different
//   masks, or a lane read that is not in the mask are errors;
// - a barrier that cannot complete (threads exited or wait elsewhere) is found when no fiber can
//   run, and reported: never a hang;
// - global buffers of the launched kernel arrive as bounds-checked `__ft::gptr<T>`; indices into
//   arrays of known size (`__shared__` tiles) are checked by the compiler (-fsanitize=bounds).
// Errors end the launch through an exception caught at the fiber's root, and reach the caller as
// a message (`__ft::launch`'s return value), never abort().
//
// cp.async is emulated through the __pipeline_memcpy_async / __pipeline_commit /
// __pipeline_wait_prior intrinsics (not inline PTX).  __half and __nv_bfloat16 come from
// cuda_emu_half.h; mma.sync (m16n8k16 f16/bf16, m16n8k8 tf32) is a warp collective over the real
// fragment layout, in cuda_emu_mma.h, reached through the helpers of fractal/backends/cuda/mma.py.
// Code that must differ from the GPU's tests `__FT_EMULATION__`, which this header defines.
// Not emulated: inline PTX (asm), other mma shapes and types, ldmatrix, fp16x2 (__half2) arithmetic,
// warp intrinsics with disjoint masks from one warp at the same time (reported as different masks).
#pragma once
#define __FT_EMULATION__ 1
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>
#include <sys/mman.h>
#include <ucontext.h>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static
#define __constant__
#define __align__(n) __attribute__((aligned(n)))
#define warpSize 32

namespace __ft {

struct Abort {};  // unwinds a fiber after an error was recorded

enum class State { runnable, at_barrier, at_warp, at_grid, done };
enum class Op { shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all, syncwarp, mma };
inline const char* op_name(Op op) {
  static const char* names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                                "__ballot_sync", "__any_sync", "__all_sync", "__syncwarp", "mma.sync"};
  return names[int(op)];
}

struct Fiber {
  ucontext_t ctx;
  void* stack = nullptr;
  State state = State::runnable;
  dim3 tid, bid;
  int block = 0;  // index into Launch::blocks
  unsigned linear = 0;
  uint64_t result = 0;
  struct Copy { void* dst; const void* src; size_t size; };
  std::vector<Copy> open_copies;               // __pipeline_memcpy_async since the last commit
  std::vector<std::vector<Copy>> copy_groups;  // committed, not yet waited for (oldest first)
};

struct Warp {
  bool active = false;
  Op op = Op::shfl;
  unsigned mask = 0, arrived = 0, first_lane = 0;
  uint64_t vals[32];
  int params[32];
  int width = 32;
};

struct Block {
  dim3 bid;
  int first_fiber = 0;
  unsigned arrived = 0;
  std::vector<Warp> warps;
  std::vector<unsigned char> dyn;
  std::vector<void*> fresh;  // __shared__ arrays filled with the poison byte for this block
};

inline void mma_complete(Warp& w, unsigned warp);  // cuda_emu_mma.h: D of a warp's mma.sync

constexpr size_t kStack = 256 * 1024;

struct Launch {
  const char* kernel = "";
  dim3 grid, block;
  unsigned nthreads = 0;  // per block
  bool cooperative = false;
  long long shared_bytes = 0;
  unsigned char poison = 0xff;  // fills __shared__ memory at a block's start: differs per run
  std::vector<Fiber> fibers;
  std::vector<Block> blocks;
  std::vector<int> order;
  ucontext_t main;
  unsigned grid_arrived = 0;
  std::string error;
  void (*body)(int slot, void* ctx) = nullptr;  // runs the kernel for the block at a slot
  void* ctx = nullptr;
};

inline thread_local Launch* g_launch = nullptr;
inline thread_local Fiber* g_cur = nullptr;

inline std::string format(const char* fmt, va_list ap) {
  char buf[1024];
  vsnprintf(buf, sizeof buf, fmt, ap);
  return buf;
}

inline std::string where(const Fiber& f) {
  char buf[160];
  snprintf(buf, sizeof buf, " (block (%u,%u,%u), thread (%u,%u,%u))", f.bid.x, f.bid.y, f.bid.z, f.tid.x,
           f.tid.y, f.tid.z);
  return buf;
}

[[noreturn]] inline void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string msg = std::string("kernel ") + g_launch->kernel + ": " + format(fmt, ap);
  va_end(ap);
  if (g_cur) msg += where(*g_cur);
  if (g_launch->error.empty()) g_launch->error = msg;
  throw Abort{};
}

inline void yield(State s) {
  g_cur->state = s;
  swapcontext(&g_cur->ctx, &g_launch->main);
}

inline void syncthreads() {
  Launch& L = *g_launch;
  Block& b = L.blocks[g_cur->block];
  if (++b.arrived == L.nthreads) {
    b.arrived = 0;
    for (unsigned i = 0; i < L.nthreads; ++i) L.fibers[b.first_fiber + i].state = State::runnable;
    return;
  }
  yield(State::at_barrier);
}

inline void grid_sync() {
  Launch& L = *g_launch;
  if (!L.cooperative)
    fail("grid.sync() in a kernel launched without cooperative=True: a grid-wide barrier needs every "
         "block co-resident (a cooperative launch)");
  if (++L.grid_arrived == L.fibers.size()) {
    L.grid_arrived = 0;
    for (Fiber& f : L.fibers) f.state = State::runnable;
    return;
  }
  yield(State::at_grid);
}

inline uint64_t lane_result(const Warp& w, unsigned lane, unsigned mask) {
  unsigned seg = lane & ~unsigned(w.width - 1), in = lane & unsigned(w.width - 1);
  int p = w.params[lane];
  long src = lane;
  switch (w.op) {
    case Op::shfl: src = seg + (unsigned(p) & unsigned(w.width - 1)); break;
    case Op::shfl_up: src = long(in) >= p ? long(lane) - p : long(lane); break;
    case Op::shfl_down: src = long(in) + p < w.width ? long(lane) + p : long(lane); break;
    case Op::shfl_xor: src = long(unsigned(lane) ^ unsigned(p)); if (src < long(seg) || src >= long(seg) + w.width) src = lane; break;
    case Op::mma: return 0;  // mma_complete wrote each lane's d registers
    case Op::ballot: case Op::any: case Op::all: case Op::syncwarp: {
      unsigned bits = 0;
      for (unsigned l = 0; l < 32; ++l) if ((mask >> l & 1) && w.vals[l]) bits |= 1u << l;
      if (w.op == Op::ballot) return bits;
      if (w.op == Op::any) return bits != 0;
      if (w.op == Op::all) return bits == mask;
      return 0;
    }
  }
  if (!(mask >> src & 1))
    fail("lane %u of warp %u read lane %ld with %s, which is not in the mask 0x%08x", lane,
         g_cur->linear / 32, src, op_name(w.op), mask);
  return w.vals[src];
}

inline uint64_t collective(Op op, unsigned mask, uint64_t value, int param, int width) {
  Launch& L = *g_launch;
  Fiber& me = *g_cur;
  Block& b = L.blocks[me.block];
  unsigned warp = me.linear / 32, lane = me.linear % 32;
  if (width <= 0 || width > 32 || (width & (width - 1)))
    fail("%s: width %d is not a power of two up to 32", op_name(op), width);
  if (!(mask >> lane & 1))
    fail("lane %u of warp %u called %s with mask 0x%08x, which does not include it", lane, warp,
         op_name(op), mask);
  unsigned lanes = std::min(32u, L.nthreads - warp * 32);
  unsigned exists = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
  if (mask & ~exists)
    fail("%s mask 0x%08x names lanes that do not exist (warp %u has %u threads)", op_name(op), mask,
         warp, lanes);
  Warp& w = b.warps[warp];
  if (w.active && (w.mask != mask || w.op != op))
    fail("lanes of warp %u reached warp intrinsics with different masks: lane %u %s(0x%08x), lane %u "
         "%s(0x%08x)", warp, w.first_lane, op_name(w.op), w.mask, lane, op_name(op), mask);
  if (!w.active) { w.active = true; w.op = op; w.mask = mask; w.arrived = 0; w.first_lane = lane; w.width = width; }
  w.vals[lane] = value;
  w.params[lane] = param;
  w.arrived |= 1u << lane;
  if (w.arrived != mask) {
    yield(State::at_warp);
    return me.result;
  }
  w.active = false;
  if (op == Op::mma) mma_complete(w, warp);
  for (unsigned l = 0; l < 32; ++l) {
    if (!(mask >> l & 1)) continue;
    Fiber& f = L.fibers[b.first_fiber + warp * 32 + l];
    g_cur = &f;  // an error names the lane that reads
    f.result = lane_result(w, l, mask);
    f.state = State::runnable;
  }
  g_cur = &me;
  return me.result;
}

template <class T> uint64_t bits(T v) { static_assert(sizeof(T) <= 8, "warp intrinsics move up to 8 bytes"); uint64_t b = 0; std::memcpy(&b, &v, sizeof(T)); return b; }
template <class T> T from_bits(uint64_t b) { T v; std::memcpy(&v, &b, sizeof(T)); return v; }

// cp.async (through the __pipeline_* intrinsics): a copy happens when a wait retires its group,
// so a thread that reads the destination before __pipeline_wait_prior reads the old contents.
inline void pipeline_wait(size_t keep) {
  auto& g = g_cur->copy_groups;
  size_t done = g.size() > keep ? g.size() - keep : 0;
  for (size_t i = 0; i < done; ++i)
    for (auto& c : g[i]) c.src ? (void)std::memcpy(c.dst, c.src, c.size) : (void)std::memset(c.dst, 0, c.size);
  g.erase(g.begin(), g.begin() + long(done));
}

// A __shared__ declaration reached by a thread: the first thread of a block to reach it fills the
// array with the poison byte (0xff: NaN in the first run; another pattern in each other run), so a
// read of shared memory that no thread wrote shows, and differs between runs.
inline void shared_fresh(void* p, size_t n) {
  auto& fresh = g_launch->blocks[g_cur->block].fresh;
  if (std::find(fresh.begin(), fresh.end(), p) != fresh.end()) return;
  fresh.push_back(p);
  std::memset(p, g_launch->poison, n);
}

inline void* dynamic_shared() { return g_launch->blocks[g_cur->block].dyn.data(); }

// A global buffer of the launched kernel: every access is checked against the buffer's length.
template <class T> struct gptr {
  T* base = nullptr;
  long long n = 0, off = 0;
  const char* name = "?";
  gptr() = default;
  gptr(T* b, long long len, const char* nm, long long o = 0) : base(b), n(len), off(o), name(nm) {}
  template <class U, class = std::enable_if_t<std::is_convertible<U*, T*>::value>>
  gptr(const gptr<U>& o) : base(o.base), n(o.n), off(o.off), name(o.name) {}
  T& at(long long i) const {
    long long j = off + i;
    if (j < 0 || j >= n) fail("out-of-bounds access %s[%lld] (%s holds %lld elements)", name, j, name, n);
    return base[j];
  }
  template <class I, class = std::enable_if_t<std::is_integral<I>::value>> T& operator[](I i) const { return at((long long)i); }
  T& operator*() const { return at(0); }
  T* operator->() const { return &at(0); }
  template <class I, class = std::enable_if_t<std::is_integral<I>::value>> gptr operator+(I i) const { return gptr(base, n, name, off + (long long)i); }
  template <class I, class = std::enable_if_t<std::is_integral<I>::value>> gptr operator-(I i) const { return gptr(base, n, name, off - (long long)i); }
  template <class I, class = std::enable_if_t<std::is_integral<I>::value>> gptr& operator+=(I i) { off += i; return *this; }
  template <class I, class = std::enable_if_t<std::is_integral<I>::value>> gptr& operator-=(I i) { off -= i; return *this; }
  gptr& operator++() { ++off; return *this; }
  gptr& operator--() { --off; return *this; }
  long long operator-(const gptr& o) const { return off - o.off; }
  operator T*() const { return base + off; }  // an unchecked escape (helpers taking T*)
};

inline void run_fibers(Launch& L) {
  for (bool ran = true; ran && L.error.empty();) {
    ran = false;
    for (int i : L.order) {
      Fiber& f = L.fibers[i];
      if (f.state != State::runnable) continue;
      ran = true;
      g_cur = &f;
      swapcontext(&L.main, &f.ctx);
      g_cur = nullptr;
      if (!L.error.empty()) return;
    }
  }
}

inline std::string stuck_report(Launch& L) {
  char buf[512];
  for (size_t bi = 0; bi < L.blocks.size(); ++bi) {
    Block& b = L.blocks[bi];
    unsigned at_bar = 0, done = 0, at_grid = 0;
    for (unsigned i = 0; i < L.nthreads; ++i) {
      State s = L.fibers[b.first_fiber + i].state;
      at_bar += s == State::at_barrier; done += s == State::done; at_grid += s == State::at_grid;
    }
    for (size_t wi = 0; wi < b.warps.size(); ++wi) {
      Warp& w = b.warps[wi];
      if (!w.active) continue;
      snprintf(buf, sizeof buf, "kernel %s: block (%u,%u,%u), warp %zu: lanes 0x%08x of mask 0x%08x never reached %s (they exited or wait at another barrier)",
               L.kernel, b.bid.x, b.bid.y, b.bid.z, wi, w.mask & ~w.arrived, w.mask, op_name(w.op));
      return buf;
    }
    if (at_bar) {
      snprintf(buf, sizeof buf, "kernel %s: block (%u,%u,%u): __syncthreads reached by %u of %u threads; %u exited without it (a __syncthreads in divergent control flow)",
               L.kernel, b.bid.x, b.bid.y, b.bid.z, at_bar, L.nthreads, done);
      return buf;
    }
    if (L.grid_arrived && done == L.nthreads) {
      snprintf(buf, sizeof buf, "kernel %s: grid.sync() never completed: block (%u,%u,%u) exited without reaching it (every thread of a cooperative launch must reach grid.sync())",
               L.kernel, b.bid.x, b.bid.y, b.bid.z);
      return buf;
    }
  }
  snprintf(buf, sizeof buf, "kernel %s: grid.sync() reached by %u of %zu threads; the others exited or wait at another barrier", L.kernel, L.grid_arrived, L.fibers.size());
  return buf;
}

inline void fiber_entry() {
  Launch& L = *g_launch;
  Fiber& f = *g_cur;
  try {
    L.body(L.cooperative ? f.block : 0, L.ctx);
  } catch (Abort&) {
  } catch (std::exception& e) {
    if (L.error.empty()) L.error = std::string("kernel ") + L.kernel + ": " + e.what() + where(f);
  }
  f.state = State::done;
}

inline void start_block(Launch& L, int slot, dim3 bid, int first, bool reverse) {
  Block& b = L.blocks[slot];
  b.bid = bid;
  b.first_fiber = first;
  b.arrived = 0;
  b.warps.assign((L.nthreads + 31) / 32, Warp{});
  b.dyn.assign(size_t(L.shared_bytes), L.poison);
  b.fresh.clear();
  for (unsigned t = 0; t < L.nthreads; ++t) {
    Fiber& f = L.fibers[first + t];
    f.state = State::runnable;
    f.open_copies.clear();
    f.copy_groups.clear();
    f.block = slot;
    f.linear = t;
    f.bid = bid;
    f.tid = dim3(t % L.block.x, t / L.block.x % L.block.y, t / (L.block.x * L.block.y));
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = kStack;
    f.ctx.uc_link = &L.main;
    makecontext(&f.ctx, fiber_entry, 0);
  }
  for (unsigned t = 0; t < L.nthreads; ++t) L.order.push_back(first + int(reverse ? L.nthreads - 1 - t : t));
}

// Runs `body(slot)` as the kernel for every block; returns 0, or 1 with the error in `msg`.
// `reverse`: bit 0 reverses the (shuffled) block order, bit 1 each block's thread order.
inline int launch(const char* kernel, const unsigned* grid, const unsigned* block, long long shared_bytes,
                  int cooperative, unsigned long long seed, int reverse, void (*body)(int, void*), void* ctx,
                  char* msg, int msglen) {
  Launch L;
  L.kernel = kernel;
  L.grid = dim3(grid[0], grid[1], grid[2]);
  L.block = dim3(block[0], block[1], block[2]);
  L.nthreads = block[0] * block[1] * block[2];
  L.cooperative = cooperative != 0;
  L.shared_bytes = shared_bytes;
  static const unsigned char poisons[4] = {0xff, 0x7f, 0xfe, 0x7e};
  L.poison = poisons[reverse & 3];
  L.body = body;
  L.ctx = ctx;
  unsigned nblocks = grid[0] * grid[1] * grid[2];
  std::vector<unsigned> blocks(nblocks);
  for (unsigned i = 0; i < nblocks; ++i) blocks[i] = i;
  for (unsigned i = nblocks; i > 1; --i) {  // Fisher-Yates, with splitmix64 as the generator
    uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    std::swap(blocks[i - 1], blocks[(z ^ (z >> 31)) % i]);
  }
  if (reverse & 1) std::reverse(blocks.begin(), blocks.end());
  size_t live = L.cooperative ? size_t(nblocks) * L.nthreads : L.nthreads;
  L.fibers.resize(live);
  L.blocks.resize(L.cooperative ? nblocks : 1);
  for (Fiber& f : L.fibers) {
    f.stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (f.stack == MAP_FAILED) { f.stack = nullptr; L.error = "cannot map fiber stacks"; break; }
  }
  Launch* saved = g_launch;
  g_launch = &L;
  auto bid_of = [&](unsigned i) { return dim3(i % L.grid.x, i / L.grid.x % L.grid.y, i / (L.grid.x * L.grid.y)); };
  auto finish = [&]() {
    run_fibers(L);
    if (!L.error.empty()) return false;
    for (Fiber& f : L.fibers) if (f.state != State::done) { L.error = stuck_report(L); return false; }
    return true;
  };
  if (L.error.empty()) {
    if (L.cooperative) {
      for (unsigned s = 0; s < nblocks; ++s) start_block(L, int(s), bid_of(blocks[s]), int(s * L.nthreads), reverse & 2);
      finish();
    } else {
      for (unsigned i : blocks) {
        L.order.clear();
        start_block(L, 0, bid_of(i), 0, reverse & 2);
        if (!finish()) break;
      }
    }
  }
  g_launch = saved;
  for (Fiber& f : L.fibers) if (f.stack) munmap(f.stack, kStack);
  if (L.error.empty()) return 0;
  snprintf(msg, size_t(msglen), "%s", L.error.c_str());
  return 1;
}

}  // namespace __ft

// Out-of-bounds indices into arrays of known size (__shared__ tiles, per-thread arrays): the
// compiler checks them (-fsanitize=bounds) and calls this handler, which ends the launch.
extern "C" {
struct __ft_ubsan_type { unsigned short kind, info; char name[1]; };
struct __ft_ubsan_oob { const char* file; unsigned line, column; __ft_ubsan_type* array; __ft_ubsan_type* index; };
// Defined here (this header is in one translation unit per library), hidden so that a sanitizer
// runtime already loaded in the process cannot take the calls.
__attribute__((visibility("hidden"), used)) void __ubsan_handle_out_of_bounds(__ft_ubsan_oob* d, uintptr_t value) {
  unsigned bits = 1u << (d->index->info >> 1);
  long long index = (long long)value;
  if ((d->index->info & 1) && bits < 64) index = (long long)(value << (64 - bits)) >> (64 - bits);
  ::__ft::fail("out-of-bounds index %lld into an array of type %s at %s:%u", index, d->array->name,
               d->file, d->line);
}
__attribute__((visibility("hidden"), used)) void __ubsan_handle_out_of_bounds_abort(__ft_ubsan_oob* d, uintptr_t value) {
  __ubsan_handle_out_of_bounds(d, value);
}
}

#define threadIdx (::__ft::g_cur->tid)
#define blockIdx (::__ft::g_cur->bid)
#define blockDim (::__ft::g_launch->block)
#define gridDim (::__ft::g_launch->grid)

inline void __syncthreads() { ::__ft::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::__ft::collective(::__ft::Op::syncwarp, mask, 0, 0, 32); }
inline void __threadfence() {}
inline void __threadfence_block() {}

template <class T> T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return ::__ft::from_bits<T>(::__ft::collective(::__ft::Op::shfl, mask, ::__ft::bits(v), src, width));
}
template <class T> T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::__ft::from_bits<T>(::__ft::collective(::__ft::Op::shfl_up, mask, ::__ft::bits(v), int(delta), width));
}
template <class T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::__ft::from_bits<T>(::__ft::collective(::__ft::Op::shfl_down, mask, ::__ft::bits(v), int(delta), width));
}
template <class T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::__ft::from_bits<T>(::__ft::collective(::__ft::Op::shfl_xor, mask, ::__ft::bits(v), lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int p) { return unsigned(::__ft::collective(::__ft::Op::ballot, mask, p != 0, 0, 32)); }
inline int __any_sync(unsigned mask, int p) { return int(::__ft::collective(::__ft::Op::any, mask, p != 0, 0, 32)); }
inline int __all_sync(unsigned mask, int p) { return int(::__ft::collective(::__ft::Op::all, mask, p != 0, 0, 32)); }

// Atomics: one fiber runs at a time, so a read-modify-write is atomic.
#define FT_ATOMICS(T)                                                                      \
  inline T atomicAdd(T* p, T v) { T o = *p; *p = o + v; return o; }                       \
  inline T atomicSub(T* p, T v) { T o = *p; *p = o - v; return o; }                       \
  inline T atomicExch(T* p, T v) { T o = *p; *p = v; return o; }                          \
  inline T atomicMax(T* p, T v) { T o = *p; *p = o < v ? v : o; return o; }               \
  inline T atomicMin(T* p, T v) { T o = *p; *p = v < o ? v : o; return o; }               \
  inline T atomicCAS(T* p, T cmp, T v) { T o = *p; if (o == cmp) *p = v; return o; }
FT_ATOMICS(int)
FT_ATOMICS(unsigned)
FT_ATOMICS(unsigned long long)
#undef FT_ATOMICS
inline float atomicAdd(float* p, float v) { float o = *p; *p = o + v; return o; }
inline double atomicAdd(double* p, double v) { double o = *p; *p = o + v; return o; }
inline float atomicExch(float* p, float v) { float o = *p; *p = v; return o; }

inline void __pipeline_memcpy_async(void* dst, const void* src, size_t size, size_t zfill = 0) {
  if (size != 4 && size != 8 && size != 16) ::__ft::fail("__pipeline_memcpy_async copies 4, 8 or 16 bytes, not %zu", size);
  ::__ft::g_cur->open_copies.push_back({dst, src, size - zfill});
  if (zfill) ::__ft::g_cur->open_copies.push_back({static_cast<char*>(dst) + size - zfill, nullptr, zfill});
}
inline void __pipeline_commit() {
  auto& f = *::__ft::g_cur;
  f.copy_groups.push_back(std::move(f.open_copies));
  f.open_copies.clear();
}
inline void __pipeline_wait_prior(size_t n) { ::__ft::pipeline_wait(n); }

template <class T> T __ldg(const T* p) { return *p; }
template <class A, class B> auto min(A a, B b) -> std::common_type_t<A, B> { return b < a ? b : a; }
template <class A, class B> auto max(A a, B b) -> std::common_type_t<A, B> { return a < b ? b : a; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline float __int_as_float(int x) { float f; std::memcpy(&f, &x, 4); return f; }
inline int __float_as_int(float f) { int x; std::memcpy(&x, &f, 4); return x; }
inline double __longlong_as_double(long long x) { double f; std::memcpy(&f, &x, 8); return f; }
inline long long __double_as_longlong(double f) { long long x; std::memcpy(&x, &f, 8); return x; }

namespace cooperative_groups {
struct grid_group {
  void sync() const { ::__ft::grid_sync(); }
  unsigned long long size() const { return (unsigned long long)gridDim.x * gridDim.y * gridDim.z * blockDim.x * blockDim.y * blockDim.z; }
};
struct thread_block {
  void sync() const { __syncthreads(); }
  unsigned size() const { return blockDim.x * blockDim.y * blockDim.z; }
  unsigned thread_rank() const { return ::__ft::g_cur->linear; }
};
inline grid_group this_grid() { return {}; }
inline thread_block this_thread_block() { return {}; }
}  // namespace cooperative_groups

#include "cuda_emu_half.h"
#include "cuda_emu_mma.h"
