"""CUDA C++ to a cubin without a GPU (`fractal.backends.cuda.nvrtc`).

* A small kernel compiles for sm_80 and sm_90 to an ELF cubin that holds the kernel, through
  NVRTC (the cuda-python wheel) and through nvcc, each where this machine has it (else the test
  skips, saying which); NVRTC finds the CUDA headers (fp16, cooperative groups, cp.async).
* Both compilers get the same options: a macro given as an option reaches the source.
* A syntax error is a `CudaCompileError` quoting the compiler's log and the failing source line.
* No compiler at all, a compiler that is not here, a bad architecture: clear errors.
"""

from __future__ import annotations

import pickle

import pytest

import fractal as ft
from fractal.backends.cuda import nvrtc
from fractal.backends.cuda.nvrtc import compile_cuda, compiler_version, compilers

HAVE = compilers()
needs = {c: pytest.mark.skipif(c not in HAVE, reason=f"{c} is not available here (NVRTC: pip install "
                                                       f"'fractal-tensor[cuda]'; nvcc: a CUDA toolkit)")
         for c in nvrtc.COMPILERS}
BOTH = [pytest.param(c, marks=needs[c]) for c in nvrtc.COMPILERS]

SCALE = """\
extern "C" __global__ void scale_rows(float* x, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= a * SCALE;
}
"""
BROKEN = """\
extern "C" __global__ void scale_rows(float* x, float a) {
    x[threadIdx.x] *= a
}
"""


@pytest.mark.parametrize("compiler", BOTH)
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_a_small_kernel_compiles_to_a_cubin_that_holds_it(compiler, arch):
    cubin = compile_cuda(SCALE, arch, options=(*nvrtc.DEFAULT_OPTIONS, "-DSCALE=2.0f"), compiler=compiler)
    assert cubin[:4] == b"\x7fELF" and len(cubin) > 1000 and b"scale_rows" in cubin


@pytest.mark.parametrize("compiler", BOTH)
def test_the_options_reach_the_compiler(compiler):
    with pytest.raises(ft.CudaCompileError, match='identifier "SCALE" is undefined'):
        compile_cuda(SCALE, "sm_90", compiler=compiler)  # the default options define no SCALE


@needs["nvrtc"]
def test_nvrtc_finds_the_cuda_headers_a_generated_kernel_includes():
    source = """\
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda_pipeline.h>
#include <cooperative_groups.h>
extern "C" __global__ void twice(__half* x) {
    cooperative_groups::this_grid().sync();
    x[threadIdx.x] = __hadd(x[threadIdx.x], x[threadIdx.x]);
}
"""
    if not nvrtc.include_dirs():
        pytest.skip("the CUDA headers wheels (nvidia-cuda-runtime-cu12, nvidia-cuda-cccl-cu12) are not installed")
    assert compile_cuda(source, "sm_80", compiler="nvrtc")[:4] == b"\x7fELF"


@pytest.mark.parametrize("compiler", BOTH)
def test_a_syntax_error_quotes_the_log_and_the_failing_line(compiler):
    with pytest.raises(ft.CudaCompileError) as caught:
        compile_cuda(BROKEN, "sm_90", name="scale.cu", compiler=compiler)
    e = caught.value
    version = compiler_version(compiler)
    assert e.message.startswith(f"CUDA C++ does not compile for sm_90 ({version}): scale.cu\n"
                                'scale.cu(3): error: expected a ";"\n'
                                "    2 |     x[threadIdx.x] *= a\n"
                                "    3 | }\n")
    assert e.lines == (3,) and 'expected a ";"' in e.log
    again = pickle.loads(pickle.dumps(e))
    assert (again.message, again.lines, again.log) == (e.message, e.lines, e.log)


@pytest.mark.parametrize("compiler", BOTH)
def test_an_architecture_the_compiler_does_not_know_is_its_error(compiler):
    with pytest.raises(ft.CudaCompileError, match="does not compile for sm_99 .*\n.*(invalid value for "
                                                  "--gpu-architecture|Unsupported gpu architecture 'sm_99')"):
        compile_cuda(SCALE, "sm_99", compiler=compiler)


def test_compiler_versions_name_the_compiler():
    for compiler in HAVE:
        assert compiler_version(compiler).startswith({"nvrtc": "NVRTC 1", "nvcc": "nvcc 1"}[compiler])


def test_without_any_compiler_the_error_names_the_cuda_extra(monkeypatch):
    monkeypatch.setattr(nvrtc, "compilers", lambda: [])
    with pytest.raises(ft.CudaCompileError, match=r"no CUDA compiler here: install the `cuda` extra \(pip install "
                                                  r"'fractal-tensor\[cuda\]', which brings NVRTC through cuda-python; "
                                                  r"no GPU needed\) or put a CUDA toolkit's nvcc on the PATH"):
        compile_cuda(SCALE, "sm_90")
    with pytest.raises(ft.CudaCompileError, match=r"the CUDA compiler 'nvcc' is not available here \(found: none\); "
                                                  r"install the `cuda` extra"):
        compile_cuda(SCALE, "sm_90", compiler="nvcc")


@pytest.mark.parametrize("call, message", [
    (lambda: compile_cuda(SCALE, "hopper"), "compile_cuda: arch must name a GPU architecture such as 'sm_80' or "
                                            "'sm_90', got 'hopper'"),
    (lambda: compile_cuda(SCALE, "sm_90", compiler="clang"), r"compile_cuda: compiler must be one of "
                                                             r"\('nvrtc', 'nvcc'\), got 'clang'"),
])
def test_bad_arguments_are_refused(call, message):
    with pytest.raises(ft.ArgumentError, match=message):
        call()


@needs["nvcc"]
def test_without_the_wheel_nvcc_compiles(monkeypatch):
    monkeypatch.setattr(nvrtc, "_nvrtc", lambda: None)
    assert compilers() == ["nvcc"] and compiler_version().startswith("nvcc")
    with pytest.raises(ft.CudaCompileError, match=r"\(nvcc 1"):
        compile_cuda(BROKEN, "sm_80")


@needs["nvrtc"]
def test_an_empty_compiler_log_leaves_pythons_one_byte_objects_alone():
    # NVRTC writes its log into the buffer it is given: a one-byte `b" " * 1` is CPython's shared
    # b" ", and a clean compile (a log of one NUL) once turned it into b"\0" for the whole process
    # (print(1, 2) wrote "1\x002")
    compile_cuda('extern "C" __global__ void k(float* x) { x[0] = 1.0f; }', "sm_90", compiler="nvrtc")
    assert " ".encode()[0] == 32 and repr(bytes([32])) == "b' '"
