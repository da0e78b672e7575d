"""The CUDA emulation (`fractal.backends.cuda.emulation`): hand-written kernels run on the CPU
with the CUDA execution model, and each bug that matters on a GPU is caught: a missing
`__syncthreads`, a wrong shuffle mask, a race between blocks, an out-of-bounds access, a
barrier or grid sync that not every thread reaches."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractal.backends.cuda.emulation import (CompilerMissingError, EmulationCompileError,
                                             EmulationError, emulate)
from fractal.backends.cuda.emulation import run as emulation_run
from fractal.backends.cuda.emulation.source import module_unit
from fractal.lang.errors import FractalError

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "g++") is None,
                                reason="the CUDA emulation needs a host C++ compiler (g++)")

RNG = np.random.default_rng(0)

GEMM = r"""
#define TILE 8
extern "C" __global__ void gemm(const float* __restrict__ A, const float* __restrict__ B, float* C,
                                int M, int N, int K) {
  __shared__ float As[TILE][TILE];
  __shared__ float Bs[TILE][TILE];
  int tx = threadIdx.x, ty = threadIdx.y;
  int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
  float acc = 0.f;
  for (int t = 0; t < K; t += TILE) {
    As[ty][tx] = A[row * K + t + tx];
    Bs[ty][tx] = B[(t + ty) * N + col];
    __syncthreads();
    for (int k = 0; k < TILE; ++k) acc += As[ty][k] * Bs[k][tx];
    __syncthreads();
  }
  C[row * N + col] = acc;
}
"""


def gemm_args(m=16, n=24, k=16):
    a = RNG.standard_normal((m, k)).astype(np.float32)
    b = RNG.standard_normal((k, n)).astype(np.float32)
    return a, b, [a, b, np.zeros((m, n), np.float32), m, n, k]


def test_a_tiled_shared_memory_gemm_matches_numpy():
    a, b, args = gemm_args()
    _, _, c = emulate(GEMM, "gemm", (3, 2), (8, 8), args)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


def test_a_gemm_without_syncthreads_is_reported_as_a_race_within_a_block():
    _, _, args = gemm_args()
    with pytest.raises(EmulationError, match=r"kernel gemm: the result depends on the schedule: C\[\(\d+, \d+\)\]"
                       r" .* a race within a block \(a missing __syncthreads"):
        emulate(GEMM.replace("__syncthreads();", ""), "gemm", (3, 2), (8, 8), args)


def test_a_gemm_without_syncthreads_computes_a_wrong_answer_in_one_run():
    a, b, args = gemm_args()
    _, _, c = emulate(GEMM.replace("__syncthreads();", ""), "gemm", (3, 2), (8, 8), args, repeat=1)
    assert not np.allclose(c, a @ b, rtol=1e-3, atol=1e-3)


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**32))
def test_the_gemm_matches_numpy_for_any_number_of_tiles_and_block_order(mt, nt, kt, seed):
    a, b, args = gemm_args(8 * mt, 8 * nt, 8 * kt)
    _, _, c = emulate(GEMM, "gemm", (nt, mt), (8, 8), args, shuffle_seed=seed)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


WARP_SUM = r"""
__global__ void warp_sum(const double* x, double* out, unsigned mask) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  double v = x[i];
  for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(mask, v, d);
  if (threadIdx.x % 32 == 0) out[i / 32] = v;
}
"""


def test_a_warp_shuffle_reduction_matches_numpy():
    x = RNG.standard_normal(128)
    _, out = emulate(WARP_SUM, "warp_sum", 2, 64, [x, np.zeros(4), 0xFFFFFFFF])
    np.testing.assert_allclose(out, x.reshape(4, 32).sum(axis=1), rtol=1e-12)


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3))
def test_warp_reductions_match_numpy_for_any_block_and_grid(warps, blocks):
    x = RNG.standard_normal(32 * warps * blocks)
    _, out = emulate(WARP_SUM, "warp_sum", blocks, 32 * warps, [x, np.zeros(warps * blocks), 0xFFFFFFFF])
    np.testing.assert_allclose(out, x.reshape(-1, 32).sum(axis=1), rtol=1e-12)


def test_a_lane_outside_its_own_shuffle_mask_is_reported():
    source = r"""
    __global__ void upper(int* out) {
      if (threadIdx.x >= 16) out[threadIdx.x] = __shfl_sync(0x0000ffffu, (int)threadIdx.x, 0);
    }"""
    with pytest.raises(EmulationError, match=r"kernel upper: lane 16 of warp 0 called __shfl_sync with mask "
                       r"0x0000ffff, which does not include it \(block \(0,0,0\), thread \(16,0,0\)\)"):
        emulate(source, "upper", 1, 32, [np.zeros(32, np.int32)])


def test_reading_a_lane_outside_the_mask_is_reported():
    half = WARP_SUM.replace("double v = x[i];", "double v = x[i];\n  if (threadIdx.x % 32 >= 16) return;")
    with pytest.raises(EmulationError, match=r"lane 0 of warp 0 read lane 16 with __shfl_down_sync, "
                       r"which is not in the mask 0x0000ffff \(block \(0,0,0\), thread \(0,0,0\)\)"):
        emulate(half, "warp_sum", 1, 32, [RNG.standard_normal(32), np.zeros(1), 0x0000FFFF])


def test_lanes_of_one_warp_with_different_masks_are_reported():
    source = r"""
    __global__ void k(int* out) {
      unsigned mask = threadIdx.x == 3 ? 0x0000000fu : 0xffffffffu;
      out[threadIdx.x] = __shfl_sync(mask, (int)threadIdx.x, 0);
    }"""
    with pytest.raises(EmulationError, match=r"lanes of warp 0 reached warp intrinsics with different masks: "
                       r"lane 0 __shfl_sync\(0xffffffff\), lane 3 __shfl_sync\(0x0000000f\)"):
        emulate(source, "k", 1, 32, [np.zeros(32, np.int32)])


def test_votes_and_xor_shuffles_follow_cuda():
    source = r"""
    __global__ void votes(const int* p, unsigned* ballot, int* any_all, int* butterfly) {
      int lane = threadIdx.x;
      ballot[0] = __ballot_sync(0xffffffffu, p[lane]);
      any_all[lane] = __any_sync(0xffffffffu, p[lane]) * 2 + __all_sync(0xffffffffu, p[lane]);
      butterfly[lane] = __shfl_xor_sync(0xffffffffu, lane * 10, 1);
    }"""
    p = (np.arange(32) % 3 == 0).astype(np.int32)
    _, ballot, any_all, butterfly = emulate(source, "votes", 1, 32, [p, np.zeros(1, np.uint32),
                                                                     np.zeros(32, np.int32), np.zeros(32, np.int32)])
    assert ballot[0] == sum(1 << i for i in range(32) if p[i])
    assert (any_all == 2).all()  # some lanes vote yes, not all
    np.testing.assert_array_equal(butterfly, (np.arange(32) ^ 1) * 10)


RACE = r"""
__global__ void owner(int* out) {
  if (threadIdx.x == 0) out[0] = blockIdx.x + 1;
}
__global__ void counter(int* out) {
  if (threadIdx.x == 0) atomicAdd(&out[0], (int)blockIdx.x + 1);
}
"""


def test_two_blocks_writing_one_element_are_reported_as_a_race_between_blocks():
    with pytest.raises(EmulationError, match=r"kernel owner: the result depends on the schedule: out\[0\] is \d "
                       r"in one order and \d in another: a race between blocks"):
        emulate(RACE, "owner", 4, 32, [np.zeros(1, np.int32)])


def test_a_race_is_found_in_a_float_array_that_also_holds_an_infinity():
    source = r"""
    __global__ void owner_inf(float* out) {
      if (threadIdx.x == 0) { out[0] = INFINITY; out[1] = blockIdx.x + 1; }
    }"""
    with pytest.raises(EmulationError, match=r"kernel owner_inf: the result depends on the schedule: out\[1\] is "
                       r"\d\.0 in one order and \d\.0 in another: a race between blocks"):
        emulate(source, "owner_inf", 4, 32, [np.zeros(2, np.float32)])


def test_blocks_adding_atomically_are_no_race():
    (out,) = emulate(RACE, "counter", 4, 32, [np.zeros(1, np.int32)])
    assert out[0] == 1 + 2 + 3 + 4


def test_an_out_of_bounds_write_names_the_kernel_the_buffer_and_the_index():
    source = r"""
    __global__ void scale(const float* x, float* y, int n) {
      int i = blockIdx.x * blockDim.x + threadIdx.x;
      y[i] = 2.f * x[i < n ? i : 0];
    }"""
    with pytest.raises(EmulationError, match=r"kernel scale: out-of-bounds access y\[(4[0-9])\] \(y holds 40 "
                       r"elements\) \(block \(1,0,0\), thread \(\d+,0,0\)\)"):
        emulate(source, "scale", 2, 32, [np.ones(40, np.float32), np.zeros(40, np.float32), 40])


def test_an_out_of_bounds_index_into_a_shared_tile_names_the_array_type_and_the_line():
    source = r"""
    __global__ void shifted(float* y, int shift) {
      __shared__ float tile[32];
      tile[threadIdx.x] = threadIdx.x;
      __syncthreads();
      int j = (int)threadIdx.x + shift;
      y[threadIdx.x] = tile[j];
    }"""
    (y,) = emulate(source, "shifted", 1, 32, [np.zeros(32, np.float32), 0])
    np.testing.assert_array_equal(y, np.arange(32))
    with pytest.raises(EmulationError, match=r"kernel shifted: out-of-bounds index -9 into an array of type "
                       r"'float \[32\]' at shifted.cu:7 \(block \(0,0,0\), thread \(31,0,0\)\)"):
        emulate(source, "shifted", 1, 32, [np.zeros(32, np.float32), -40])


PIPELINE = r"""
#include <cuda_pipeline.h>
__global__ void stream(const float* x, float* y, int tiles) {  // y[t] = x[t] + x[t - 1], tiles of 32
  __shared__ float buf[2][32];
  int t = threadIdx.x;
  __pipeline_memcpy_async(&buf[0][t], &x[t], sizeof(float));
  __pipeline_commit();
  for (int i = 0; i < tiles; ++i) {
    if (i + 1 < tiles) __pipeline_memcpy_async(&buf[(i + 1) % 2][t], &x[(i + 1) * 32 + t], sizeof(float));
    __pipeline_commit();
    __pipeline_wait_prior(WAIT);
    __syncthreads();
    y[i * 32 + t] = buf[i % 2][t] + (t ? buf[i % 2][t - 1] : 0.f);
    __syncthreads();
  }
}
"""


def test_a_double_buffered_cp_async_pipeline_matches_numpy():
    x = RNG.standard_normal(4 * 32).astype(np.float32)
    _, y = emulate("#define WAIT 1\n" + PIPELINE, "stream", 1, 32, [x, np.zeros_like(x), 4])
    tiles = x.reshape(4, 32)
    np.testing.assert_allclose(y.reshape(4, 32), tiles + np.pad(tiles[:, :-1], ((0, 0), (1, 0))), rtol=1e-6)


def test_reading_a_cp_async_destination_before_its_wait_reads_unwritten_shared_memory():
    x = RNG.standard_normal(4 * 32).astype(np.float32)
    _, y = emulate("#define WAIT 2\n" + PIPELINE, "stream", 1, 32, [x, np.zeros_like(x), 4], repeat=1)
    assert np.isnan(y[:32]).all()  # the first tile is read before its copy lands: the poison (NaN)
    with pytest.raises(EmulationError, match=r"kernel stream: the result depends on the schedule: y\[0\] is nan "
                       r"in one order and .* in another: a race within a block"):
        emulate("#define WAIT 2\n" + PIPELINE, "stream", 1, 32, [x, np.zeros_like(x), 4])


PERSISTENT = r"""
#include <cooperative_groups.h>
namespace cg = cooperative_groups;
__global__ void two_phase(const float* x, float* partial, float* total, int skip) {
  cg::grid_group grid = cg::this_grid();
  __shared__ float acc[32];
  acc[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.f;
    for (int i = 0; i < 32; ++i) s += acc[i];
    partial[blockIdx.x] = s;
  }
  if (blockIdx.x == skip) return;
  grid.sync();
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    float s = 0.f;
    for (int b = 0; b < gridDim.x; ++b) s += partial[b];
    total[0] = s;
  }
}
"""


def persistent_args(skip):
    return [RNG.standard_normal(128).astype(np.float32), np.zeros(4, np.float32), np.zeros(1, np.float32), skip]


def test_a_persistent_kernel_with_a_grid_sync_runs_all_blocks_together():
    args = persistent_args(-1)
    x, partial, total = emulate(PERSISTENT, "two_phase", 4, 32, args, cooperative=True)
    np.testing.assert_allclose(partial, x.reshape(4, 32).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(total, [x.sum()], rtol=1e-5)


def test_a_block_that_skips_the_grid_sync_is_reported_not_a_hang():
    with pytest.raises(EmulationError, match=r"kernel two_phase: grid.sync\(\) never completed: block \(2,0,0\) "
                       r"exited without reaching it"):
        emulate(PERSISTENT, "two_phase", 4, 32, persistent_args(2), cooperative=True)


def test_a_grid_sync_outside_a_cooperative_launch_is_reported():
    with pytest.raises(EmulationError, match=r"grid.sync\(\) in a kernel launched without cooperative=True"):
        emulate(PERSISTENT, "two_phase", 4, 32, persistent_args(-1))


def test_a_syncthreads_in_divergent_code_is_reported():
    source = r"""
    __global__ void half_barrier(float* y) {
      if (threadIdx.x < 16) __syncthreads();
      y[threadIdx.x] = 1.f;
    }"""
    with pytest.raises(EmulationError, match=r"kernel half_barrier: block \(0,0,0\): __syncthreads reached by 16 "
                       r"of 48 threads; 32 exited without it"):
        emulate(source, "half_barrier", 1, 48, [np.zeros(48, np.float32)])


def test_dynamic_shared_memory_is_per_block_and_sized_by_the_launch():
    source = r"""
    __global__ void reverse(const int* x, int* y) {
      extern __shared__ int buf[];
      int t = threadIdx.x, base = blockIdx.x * blockDim.x;
      buf[t] = x[base + t];
      __syncthreads();
      y[base + t] = buf[blockDim.x - 1 - t];
    }"""
    x = np.arange(64, dtype=np.int32)
    _, y = emulate(source, "reverse", 2, 32, [x, np.zeros(64, np.int32)], shared_bytes=32 * 4)
    np.testing.assert_array_equal(y, x.reshape(2, 32)[:, ::-1].ravel())


def test_a_compile_error_carries_the_compiler_log():
    with pytest.raises(EmulationCompileError, match=r"(?s)the host compiler refused the kernel source:.*"
                       r"undeclared_name"):
        emulate("__global__ void k(float* y) { y[0] = undeclared_name; }", "k", 1, 1, [np.zeros(1, np.float32)])


def test_an_array_of_the_wrong_dtype_is_refused_before_compiling():
    with pytest.raises(EmulationError, match=r"kernel gemm: parameter 'A' is float\* and takes float32 arrays, "
                       r"got float64"):
        emulate(GEMM, "gemm", 1, (8, 8), [np.zeros((8, 8)), np.zeros((8, 8), np.float32),
                                          np.zeros((8, 8), np.float32), 8, 8, 8])


def test_a_kernel_missing_from_the_source_is_named():
    with pytest.raises(EmulationError, match=r"kernel 'gemv': no `__global__ void gemv\(\.\.\.\) \{` in the source"):
        emulate(GEMM, "gemv", 1, 1, [])


def test_the_errors_are_fractal_errors():
    assert issubclass(EmulationError, FractalError) and issubclass(EmulationCompileError, EmulationError)


def test_no_compiler_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    emulation_run.compiler.cache_clear()
    try:
        with pytest.raises(CompilerMissingError, match=r"'no-such-compiler-xyz' is not on PATH"):
            emulate(GEMM, "gemm", 1, (8, 8), gemm_args(8, 8, 8)[2])
    finally:
        emulation_run.compiler.cache_clear()


def test_a_compiled_kernel_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("FRACTAL_CACHE_DIR", str(tmp_path))
    text, _ = module_unit(GEMM, {"gemm": 1})
    lib = emulation_run._build(text)
    assert lib.parent == tmp_path / "cuda-emulation" and lib.exists()
    assert emulation_run._build(text) == lib and [p.name for p in lib.parent.iterdir()] == [lib.name]


def test_two_processes_compiling_one_kernel_both_get_the_whole_library(tmp_path, monkeypatch):
    import subprocess
    import sys

    text, _ = module_unit(WARP_SUM, {"warp_sum": 1})
    (tmp_path / "kernel.cpp").write_text(text)
    monkeypatch.setenv("FRACTAL_CACHE_DIR", str(tmp_path / "cache"))
    build = ("import sys; from fractal.backends.cuda.emulation import run; "
             "print(run._build(open(sys.argv[1]).read()))")
    procs = [subprocess.Popen([sys.executable, "-c", build, str(tmp_path / "kernel.cpp")], stdout=subprocess.PIPE,
                              text=True, cwd=os.getcwd()) for _ in range(2)]
    libs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert libs[0] == libs[1] and os.listdir(tmp_path / "cache" / "cuda-emulation") == [os.path.basename(libs[0])]
    _, out = emulate(WARP_SUM, "warp_sum", 1, 32, [np.ones(32), np.zeros(1), 0xFFFFFFFF])
    assert out[0] == 32


MISUSE = r"""
__global__ void misuse(float* y, int mode) {
  int t = threadIdx.x;
  if (mode == 0) y[t] = __shfl_sync(0xffffffffu, 1.f, 0, 3);
  if (mode == 1) y[t] = __shfl_sync(0xffffffffu, 1.f, 0);
  if (mode == 2 && t < 31) y[t] = __shfl_sync(0xffffffffu, 1.f, 0);
  if (mode == 3) __pipeline_memcpy_async(&y[t], &y[0], 12);
}
"""


@pytest.mark.parametrize("mode, message", [
    (0, r"kernel misuse: __shfl_sync: width 3 is not a power of two up to 32"),
    (1, r"kernel misuse: __shfl_sync mask 0xffffffff names lanes that do not exist \(warp 1 has 16 threads\)"),
    (2, r"kernel misuse: block \(0,0,0\), warp 0: lanes 0x80000000 of mask 0xffffffff never reached __shfl_sync"),
    (3, r"kernel misuse: __pipeline_memcpy_async copies 4, 8 or 16 bytes, not 12"),
])
def test_each_misuse_of_a_warp_intrinsic_or_cp_async_is_reported(mode, message):
    with pytest.raises(EmulationError, match=message):
        emulate(MISUSE, "misuse", 1, 48, [np.zeros(48, np.float32), mode])


TWO = "__global__ void two(float* y, int n) { y[0] = n; }"


@pytest.mark.parametrize("call, message", [
    (lambda: emulate(TWO, "two", 1, 1, [np.zeros(1, np.float32)]),
     r"kernel two takes 2 arguments \(y, n\), got 1"),
    (lambda: emulate(TWO, "two", 1, 1, [[0.0], 1]),
     r"kernel two: parameter 'y' is a pointer and takes a NumPy array, got list"),
    (lambda: emulate(TWO, "two", 1, 1, [np.zeros(1, np.float32), np.ones(1)]),
     r"kernel two: parameter 'n' is a int and takes a number, got ndarray"),
    (lambda: emulate(TWO, "two", (0, 1), 1, [np.zeros(1, np.float32), 1]),
     r"grid must be 1 to 3 positive whole numbers, got \(0, 1\)"),
    (lambda: emulate(TWO, "two", 1, (32, 33), [np.zeros(1, np.float32), 1]),
     r"kernel two: a block holds at most 1024 threads, got 1056"),
    (lambda: emulate(TWO, "two", 257, 1, [np.zeros(1, np.float32), 1], cooperative=True),
     r"kernel two: the emulation runs at most 256 blocks in a cooperative launch, got 257"),
    (lambda: emulate("__global__ void k(float** y) {}", "k", 1, 1, [np.zeros(1)]),
     r"kernel k: parameter 'y' has type 'float\*\*'; the emulation takes scalars and pointers to one of"),
    (lambda: emulate("__global__ void k(float* ) {}", "k", 1, 1, [np.zeros(1, np.float32)]),
     r"kernel k: cannot read the parameter 'float\*'"),
    (lambda: emulate(TWO, "two", 1, 1, [np.zeros(1, np.float32), 1], repeat=3),
     r"kernel two: repeat is 1 \(one run\) or 2 \(a second run in the reversed orders, compared with the first\), got 3"),
    (lambda: emulate("template <int N> __global__ void k(float* y) {}", "k", 1, 1, [np.zeros(1, np.float32)]),
     r"kernel k: a template kernel cannot be launched by the emulation"),
])
def test_each_launch_the_kernel_cannot_take_is_refused_before_it_runs(call, message):
    with pytest.raises(EmulationError, match=message):
        call()


def test_the_block_order_is_a_shuffle_chosen_by_the_seed():
    source = r"""
    __global__ void order(int* position, int* counter) {
      if (threadIdx.x == 0) position[blockIdx.x] = atomicAdd(&counter[0], 1);
    }"""
    orders = {tuple(emulate(source, "order", 8, 1, [np.zeros(8, np.int32), np.zeros(1, np.int32)],
                            shuffle_seed=seed, repeat=1)[0]) for seed in range(4)}
    assert len(orders) > 1 and all(sorted(o) == list(range(8)) for o in orders)
    assert orders != {tuple(range(8))}


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_the_kernels_emulated_here_are_cuda_that_nvcc_compiles(tmp_path):
    import subprocess

    source = "\n".join(["#define WAIT 1", GEMM, WARP_SUM, RACE, PERSISTENT, PIPELINE, MISUSE])
    (tmp_path / "kernels.cu").write_text(source)
    done = subprocess.run(["nvcc", "-arch=sm_90", "--cubin", "-o", str(tmp_path / "kernels.cubin"),
                           str(tmp_path / "kernels.cu")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_atomics_summing_floats_in_another_order_are_no_race():
    source = r"""
    __global__ void total(const double* x, double* sum) { atomicAdd(&sum[0], x[blockIdx.x * blockDim.x + threadIdx.x]); }"""
    x = RNG.standard_normal(256) * 10.0 ** RNG.integers(-8, 8, 256)
    _, (s,) = emulate(source, "total", 8, 32, [x, np.zeros(1)])
    assert s == pytest.approx(x.sum(), rel=1e-9, abs=1e-9 * np.abs(x).max())


SHARED_SUM = r"""
extern "C" __global__ void total(const float* x, float* out) {
  __shared__ float a[N];
  __shared__ float b[N];
  a[threadIdx.x] = x[threadIdx.x];
  b[threadIdx.x] = 2.f * x[threadIdx.x];
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.f;
    for (int i = 0; i < N; ++i) s += a[i] + b[i];
    out[0] = s;
  }
}
"""


def test_two_modules_with_a_kernel_of_one_name_keep_their_own_shared_arrays():
    """Loaded in one process, each module's kernel uses its own `__shared__` array (not one
    process-wide symbol, sized by the module loaded first)."""
    from fractal.backends.cuda.emulation import EmulatedModule
    small, big = (EmulatedModule(SHARED_SUM.replace("N", str(n)), ["total"]) for n in (2, 64))
    for module, n in ((small, 2), (big, 64), (small, 2)):
        x, out = np.arange(n, dtype=np.float32), np.zeros(1, np.float32)
        module.launch("total", 1, n, [x, out])
        assert out[0] == 3 * x.sum()


def test_a_module_launch_names_what_is_wrong_with_it():
    from fractal.backends.cuda.emulation import EmulatedModule
    with pytest.raises(EmulationError, match="kernel total: the emulation runs 1 to 256 blocks at once, got 0"):
        EmulatedModule(SHARED_SUM.replace("N", "4"), {"total": 0})
    module = EmulatedModule(SHARED_SUM.replace("N", "4"), {"total": 1})
    x, out = np.arange(4, dtype=np.float32), np.zeros(1, np.float32)
    with pytest.raises(EmulationError, match="no kernel 'sum' in this module; it has total"):
        module.launch("sum", 1, 4, [x, out])
    with pytest.raises(EmulationError, match="kernel total: a cooperative launch of 2 blocks, but the module was "
                                             "built for 1 at once"):
        module.launch("total", 2, 4, [x, out], cooperative=True)
    with pytest.raises(EmulationError, match="kernel total: a launch in place takes C-contiguous arrays"):
        module.launch("total", 1, 4, [np.arange(8, dtype=np.float32)[::2], out])
    with pytest.raises(EmulationError, match="kernel total: a block holds at most 1024 threads, got 2048"):
        module.launch("total", 1, 2048, [x, out])
