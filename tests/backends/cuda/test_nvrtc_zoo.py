"""Every kernel of every zoo model compiles, and a compile error points at the tile IR.

* Each zoo model (`examples/zoo.py`) at its `small` and `paper` configs, lowered and run
  through the passes for the target of each architecture (`ft.targets.cuda("sm_80")`,
  `ft.targets.cuda("sm_90")`), is one CUDA module that NVRTC compiles for that architecture
  with the runtime's options (`nvrtc.DEFAULT_OPTIONS`) into a cubin holding every kernel; so
  does nvcc, where it is on the PATH, at the `small` configs.
* Each line of a kernel belongs, by the comments the emitter writes, to that kernel, its
  stage's header and the tile op it is the code of (none before the first op).
* A module the compiler refuses (`diagnose.compile_module`) is a `CudaCompileError` that keeps
  the compiler's message, log and failing lines and names, per failing line, the kernel, the
  stage and the op; per kernel ptxas refuses as a whole, the kernel and the stage; a line of
  the helpers, the helpers.  An error at no line of the module is the compiler's, unchanged.

Time (measured on 2 cores): tracing and `lower_program` take up to ~15 s per model at `paper`
(graphsage, sliding_window_attention, transformer_block; ~60 s over the zoo), the passes for
a target well under a second, a module 0.3-4 s to compile (NVRTC and nvcc alike).  So the
lowered program is cached per (model, config) and the passes run per architecture, and a
test takes one (model, config) with both architectures: under pytest-xdist two tests of one
(model, config) may run in two workers, each lowering it.  The split: NVRTC (the runtime's
compiler) compiles every (model, config, arch), one call each; nvcc the `small` configs at
both architectures (the same kernels with other constants; its `paper` runs would lower
again where they land in another worker).  The whole file: ~2.3 min of CPU (user + system,
under `-n 2`).  The passes run without their verification (`FRACTAL_VERIFY`,
which the pipeline's own tests run): this checks what the CUDA compiler makes of the
emitted code.  A (model, config) the emitter cannot run yet is a strict xfail (`NOT_YET`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re

import pytest

import fractal as ft
from examples import zoo
from fractal.backends.cuda import nvrtc
from fractal.backends.cuda.diagnose import Location, compile_module, kernel_location, locate
from fractal.backends.cuda.policy import CudaPolicy
from fractal.backends.cuda.module import CudaModule, emit_module
from fractal.lower.lower_program import lower_program
from fractal.lower.pipeline import run_pipeline
from fractal.lower.tile_printer import header

HAVE = nvrtc.compilers()
needs = {c: pytest.mark.skipif(c not in HAVE, reason=f"{c} is not available here (NVRTC: pip install "
                                                       f"'fractal-tensor[cuda]'; nvcc: a CUDA toolkit on the PATH)")
         for c in nvrtc.COMPILERS}
BOTH = [pytest.param(c, marks=needs[c]) for c in nvrtc.COMPILERS]
ARCHS = ("sm_80", "sm_90")
MODELS = zoo.available()
# What the emitter cannot run yet (it raises UnsupportedError): strict, so that the day it
# can, the test says to take the mark off.
NOT_YET: dict = {}  # (model, config) -> why the emitter cannot run it yet (none today)


@functools.lru_cache(maxsize=None)
def lowered(name: str, config: str):
    m = zoo.load(name)
    program, _, leaves, _ = m.model.traced_call(m.inputs(config), {})
    return lower_program(program, leaves).program


@functools.lru_cache(maxsize=None)
def module(name: str, config: str, arch: str) -> CudaModule:
    """Zoo model `name` at `config` as the CUDA module the backend builds for `arch`'s target."""
    target = ft.targets.cuda(arch)
    tile, _ = run_pipeline(lowered(name, config), target=target, verify=False)
    return emit_module(tile, target.hardware)


def zoo_cases(configs):
    return [pytest.param(name, config, marks=pytest.mark.xfail(raises=ft.UnsupportedError, strict=True,
                                                               reason=NOT_YET[name, config]))
            if (name, config) in NOT_YET else pytest.param(name, config)
            for name in MODELS for config in configs]


def assert_compiles(name: str, config: str, compiler: str):
    for arch in ARCHS:
        m = module(name, config, arch)
        cubin = compile_module(m, arch, compiler=compiler)
        assert cubin[:4] == b"\x7fELF"
        missing = [k for k in m.launched() if k.encode() not in cubin]
        assert m.launched() and not missing, f"{name} ({config}, {arch}): the cubin lacks the kernels {missing}"


@needs["nvrtc"]
@pytest.mark.parametrize("name, config", zoo_cases(("small", "paper")))
def test_every_kernel_of_the_zoo_compiles_with_nvrtc_for_sm_80_and_sm_90(name, config):
    assert_compiles(name, config, "nvrtc")


@needs["nvcc"]
@pytest.mark.parametrize("name, config", zoo_cases(("small",)))
def test_every_kernel_of_the_zoo_compiles_with_nvcc_for_sm_80_and_sm_90(name, config):
    assert_compiles(name, config, "nvcc")


@pytest.mark.parametrize("name", MODELS)
def test_each_kernel_line_locates_its_kernel_stage_and_op(name):
    m = module(name, "small", "sm_90")
    text = m.source.splitlines()
    first = text.index(stage_kernels(m)[0].source.splitlines()[0])
    assert all(locate(m.source, n) == Location(None, None, None) for n in range(1, first + 1))
    for loop in m.loops.values():  # a device loop's kernel: its lines locate to the loop, then each stage
        lines = [locate(m.source, n) for n in kernel_lines(m, loop)]
        assert {o.kernel for o in lines} == {loop.name}
        assert [s for s, _ in itertools.groupby(o.stage for o in lines)] == \
            [f"{header(loop.loop)}: on the device", *(header(s) for s in loop.loop.body)]
    for k in stage_kernels(m):
        ops = [locate(m.source, n) for n in kernel_lines(m, k)]
        assert {(o.kernel, o.stage) for o in ops} == {(k.name, header(k.stage))}
        seen = [op for op, _ in itertools.groupby(o.op for o in ops)]
        assert seen == [None, *(header(op) for op in k.stage.body)], f"kernel {k.name}"
        assert kernel_location(m.source, k.name) == Location(k.name, header(k.stage), None)


# --- compile errors point at the stage ------------------------------------------------------

needs_a_compiler = pytest.mark.skipif(not HAVE, reason="no CUDA compiler here (NVRTC: pip install "
                                                       "'fractal-tensor[cuda]'; nvcc: a CUDA toolkit on the PATH)")


class HostLoops(CudaPolicy):
    """The GPU policy, every loop on the host (so the LSTM's step is a kernel of two GEMMs)."""

    def loop_on_device(self, facts, hw) -> bool:
        return False


@functools.lru_cache(maxsize=None)
def stacked() -> CudaModule:
    """The tile IR docstring's wavefront LSTM, its loop on the host: kernel `gates` runs two GEMMs."""
    from fractal.lower import parse_tile_program
    from tests.lower.test_tile_ir import docstring_programs
    return emit_module(parse_tile_program(docstring_programs()[0]), ft.targets.cuda("sm_90").hardware, HostLoops())


def kernel_lines(m: CudaModule, k) -> list[int]:
    """The 1-based lines of `m.source` that are kernel `k`'s text (its stage header first)."""
    start = m.source.splitlines().index(k.source.splitlines()[0]) + 1
    return list(range(start, start + len(k.source.splitlines())))


def edited(m: CudaModule, line: int, edit) -> CudaModule:
    """`m` with 1-based line `line` of its source replaced by `edit(line's text)`."""
    lines = m.source.splitlines()
    before, lines[line - 1] = lines[line - 1], edit(lines[line - 1])
    assert lines[line - 1] != before
    return dataclasses.replace(m, source="\n".join(lines) + "\n")


def refused(m: CudaModule, **options) -> ft.CudaCompileError:
    with pytest.raises(ft.CudaCompileError) as caught:
        compile_module(m, "sm_90", **options)
    return caught.value


def stage_kernels(m: CudaModule) -> list:
    """Every kernel of a stage (not of a device loop), in order."""
    return [k for parts in m.kernels.values() for k in parts]


def a_gemm_kernel(m: CudaModule):
    return next(k for k in stage_kernels(m) if sum(type(op).__name__ == "Gemm" for op in k.stage.body) >= 2)


@needs_a_compiler
@pytest.mark.parametrize("compiler", BOTH)
def test_a_line_of_an_op_the_compiler_refuses_names_the_kernel_the_stage_and_the_op(compiler):
    m = stacked()
    k = a_gemm_kernel(m)
    op = k.stage.body[1]                                     # the nearest op above, not the first
    n = next(n for n in kernel_lines(m, k) if m.source.splitlines()[n - 1] == f"  // {header(op)}") + 1
    bad = edited(m, n, lambda line: re.sub(r"ft_tile < ([^;]+);", r"ft_tile < \1 + ft_bogus;", line))
    e = refused(bad, compiler=compiler)
    assert e.message.startswith(f"CUDA C++ does not compile for sm_90 ({nvrtc.compiler_version(compiler)}): "
                                f"{m.program.name}.cu\n")
    assert e.message.endswith(f"\ngenerated from the tile IR:\n  line {n}: kernel {k.name}, {header(k.stage)},\n"
                              f"    op {header(op)}")
    assert e.lines == (n,) and 'identifier "ft_bogus" is undefined' in e.log


@needs_a_compiler
def test_a_line_before_the_kernels_first_op_names_the_kernel_and_the_stage():
    m = stacked()
    k = a_gemm_kernel(m)
    n = kernel_lines(m, k)[2]                                # after the header and the signature
    bad = edited(m, n, lambda line: line + " ft_bogus;")
    assert refused(bad).message.endswith(f"generated from the tile IR:\n  line {n}: kernel {k.name}, "
                                         f"{header(k.stage)} (its set-up, before the first op)")


@needs_a_compiler
def test_a_line_of_the_helpers_names_the_helpers():
    m = module("stacked_lstm", "small", "sm_90")  # (its device loop's bounds call fl_max)
    n = next(i for i, line in enumerate(m.source.splitlines(), 1) if line.startswith("static __device__"))
    bad = edited(m, n, lambda line: line.replace("{ ", "{ ft_bogus; ", 1))
    assert refused(bad).message.endswith(f"generated from the tile IR:\n  line {n}: the module's helpers, "
                                         "before the first kernel")


@needs_a_compiler
def test_a_kernel_ptxas_refuses_as_a_whole_names_the_kernel_and_the_stage():
    m = stacked()
    k = a_gemm_kernel(m)
    n = next(n for n in kernel_lines(m, k) if "__shared__" in m.source.splitlines()[n - 1])
    bad = edited(m, n, lambda line: re.sub(r"\[\d+\];", "[65536];", line))   # 48 KiB of static shared memory at most
    e = refused(bad)
    assert f"Entry function '{k.name}' uses too much shared data" in e.log and e.lines == ()
    assert e.message.endswith(f"\ngenerated from the tile IR:\n  kernel {k.name}, {header(k.stage)}")


@needs_a_compiler
def test_a_kernel_without_a_stage_header_says_so():
    m = stacked()
    extra = 'extern "C" __global__ void extra(float* x) { __shared__ float s[65536]; s[threadIdx.x] = 1; x[0] = s[3]; }'
    bad = dataclasses.replace(m, source=m.source + extra + "\n")
    assert refused(bad).message.endswith("generated from the tile IR:\n  kernel extra, which has no stage header")


@needs_a_compiler
def test_an_error_at_no_line_of_the_module_is_the_compilers_own():
    m = stacked()
    with pytest.raises(ft.CudaCompileError) as theirs:
        nvrtc.compile_cuda(m.source, "sm_99", name=f"{m.program.name}.cu")
    with pytest.raises(ft.CudaCompileError) as ours:
        compile_module(m, "sm_99")
    assert ours.value.message == theirs.value.message and "generated from the tile IR" not in ours.value.message


def test_locate_reads_the_stage_and_op_comments():
    source = "\n".join([
        "// fractal: tile program @p, 1 kernel for sm_90",           # 1
        "static __device__ int fl_one() { return 1; }",               # 2
        "// stage cell(i in 0:4) device",                             # 3
        'extern "C" __global__ void __launch_bounds__(32) cell(float* __restrict__ b_h) {',  # 4
        "  const long long v_i = blockIdx.x;",                        # 5
        "  // h[i, 0:4] = tanh(h[i, 0:4])",                           # 6
        "  for (int e = threadIdx.x; e < 4; e += 32) {  // a trailing comment is no op",  # 7
        "  }",                                                        # 8
        "  __syncthreads();  // the ops before are done in every thread",  # 9
        "  // h[i, 0:4] = exp(h[i, 0:4])",                            # 10
        "  b_h[v_i] = 0;",                                            # 11
        "}",                                                          # 12
    ])
    stage = "stage cell(i in 0:4) device"
    assert [locate(source, n) for n in (1, 2)] == [Location(None, None, None)] * 2
    assert [locate(source, n) for n in (3, 4, 5)] == [Location("cell", stage, None)] * 3
    assert [locate(source, n).op for n in range(6, 13)] == ["h[i, 0:4] = tanh(h[i, 0:4])"] * 4 + \
        ["h[i, 0:4] = exp(h[i, 0:4])"] * 3
    assert kernel_location(source, "cell") == Location("cell", stage, None)
    assert str(locate(source, 11)) == f"kernel cell, {stage},\n    op h[i, 0:4] = exp(h[i, 0:4])"
