"""CUDA C++ to a cubin, without a GPU: NVRTC through the `cuda-python` wheel, or `nvcc`.

    cubin = compile_cuda(source, "sm_90", name="stacked_lstm.cu")   # bytes: an ELF image
    compilers()                      # ["nvrtc", "nvcc"]: those this machine has
    compiler_version("nvrtc")        # "NVRTC 12.9" (a cache key for compiled kernels)

NVRTC (`cuda.bindings.nvrtc`, the `cuda` extra: `pip install 'fractal-tensor[cuda]'`) is the
compiler CuPy uses at run time and needs no GPU and no driver: `nvrtcCompileProgram` to
`nvrtcGetCUBIN` works on any machine.  Where the wheel is absent (or its library is), `nvcc
--cubin` does the same from a CUDA toolkit.  Both get the same options, at test time and at run
time (`DEFAULT_OPTIONS` and the architecture), or a compile check proves little.  NVRTC has no
headers of its own: the CUDA runtime and CCCL headers (`cuda_fp16.h`, `cooperative_groups.h`,
`cuda_pipeline.h`...) come from the `nvidia-cuda-runtime-cu12` and `nvidia-cuda-cccl-cu12`
wheels of the extra, or from `$CUDA_HOME/include`; nvcc knows its own.

A source the compiler refuses is a `CudaCompileError` that quotes the compiler's log with each
failing source line; no compiler at all is one too, naming the `cuda` extra.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile

from fractal.lang.errors import ArgumentError, CudaCompileError

# Fast math stays off (no `--use_fast_math`): division and square roots correctly rounded,
# denormals kept, as the interpreter computes.  FMA contraction (`--fmad=true`) is both
# compilers' default and stays on.
DEFAULT_OPTIONS = ("-std=c++17",)
COMPILERS = ("nvrtc", "nvcc")   # in the order `compile_cuda` tries them
_ARCH = re.compile(r"sm_\d{2,3}[af]?")
# A log line pointing at the source: `kernel.cu(12): error: ...` (NVRTC and nvcc alike).
_LOG_LINE = re.compile(r"^(?P<file>.+?)\((?P<line>\d+)\): (?P<kind>(?:catastrophic )?error|warning)")
_NO_COMPILER = ("no CUDA compiler here: install the `cuda` extra (pip install 'fractal-tensor[cuda]', which "
                "brings NVRTC through cuda-python; no GPU needed) or put a CUDA toolkit's nvcc on the PATH")


@functools.lru_cache(maxsize=None)
def _nvrtc():
    """The `cuda.bindings.nvrtc` module when it imports and its library loads, else None."""
    try:
        from cuda.bindings import nvrtc
        result, major, minor = nvrtc.nvrtcVersion()
    except Exception:  # no wheel, or a wheel without its libnvrtc: NVRTC is not available
        return None
    return nvrtc if result == nvrtc.nvrtcResult.NVRTC_SUCCESS else None


def compilers() -> list[str]:
    """The CUDA compilers this machine has, in the order `compile_cuda` prefers them."""
    have = {"nvrtc": _nvrtc() is not None, "nvcc": shutil.which("nvcc") is not None}
    return [c for c in COMPILERS if have[c]]


def compiler_version(compiler: str | None = None) -> str:
    """"NVRTC 12.9" or "nvcc 13.0": the compiler `compile_cuda(compiler=...)` would use."""
    compiler = _choose(compiler)
    if compiler == "nvrtc":
        _, major, minor = _nvrtc().nvrtcVersion()
        return f"NVRTC {major}.{minor}"
    text = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"release (\d+\.\d+)", text)
    return f"nvcc {found.group(1) if found else 'unknown'}"


def include_dirs() -> list[str]:
    """Where NVRTC finds the CUDA headers: the runtime and CCCL wheels, else `$CUDA_HOME/include`."""
    dirs = []
    for package in ("nvidia.cuda_runtime", "nvidia.cuda_cccl"):
        try:
            spec = importlib.util.find_spec(package)
        except ImportError:
            spec = None
        for root in (spec.submodule_search_locations or []) if spec else []:
            if os.path.isdir(os.path.join(root, "include")):
                dirs.append(os.path.join(root, "include"))
                break
    if not dirs:
        home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
        if home and os.path.isdir(os.path.join(home, "include")):
            dirs.append(os.path.join(home, "include"))
    return dirs


def compile_cuda(source: str, arch: str = "sm_90", *, options: tuple[str, ...] = DEFAULT_OPTIONS,
                 name: str = "kernel.cu", compiler: str | None = None) -> bytes:
    """The cubin (an ELF image) of CUDA C++ `source` for `arch` ("sm_80", "sm_90"...), compiled
    with `options` by `compiler` ("nvrtc", "nvcc"; default: the first of `compilers()`).  `name`
    is the file name the compiler's messages give the source."""
    if not isinstance(arch, str) or not _ARCH.fullmatch(arch):
        raise ArgumentError(f"compile_cuda: arch must name a GPU architecture such as 'sm_80' or 'sm_90', got {arch!r}")
    compiler = _choose(compiler)
    run = _compile_nvrtc if compiler == "nvrtc" else _compile_nvcc
    cubin, log = run(source, arch, tuple(options), name)
    if cubin is None:
        raise _error(source, arch, name, log, compiler_version(compiler))
    return cubin


def _choose(compiler: str | None) -> str:
    have = compilers()
    if compiler is None:
        if not have:
            raise CudaCompileError(_NO_COMPILER)
        return have[0]
    if compiler not in COMPILERS:
        raise ArgumentError(f"compile_cuda: compiler must be one of {COMPILERS}, got {compiler!r}")
    if compiler not in have:
        raise CudaCompileError(f"the CUDA compiler {compiler!r} is not available here (found: "
                               f"{', '.join(have) or 'none'}); " + _NO_COMPILER.removeprefix("no CUDA compiler here: "))
    return compiler


def _compile_nvrtc(source: str, arch: str, options: tuple[str, ...], name: str):
    """(cubin, log): the cubin None when NVRTC refuses the source or an option."""
    nvrtc = _nvrtc()
    ok = nvrtc.nvrtcResult.NVRTC_SUCCESS
    result, program = nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], [])
    if result != ok:
        return None, f"nvrtcCreateProgram: {result.name}"
    try:
        flags = [f"--gpu-architecture={arch}", *options, *(f"-I{d}" for d in include_dirs())]
        (result,) = nvrtc.nvrtcCompileProgram(program, len(flags), [f.encode() for f in flags])
        _, size = nvrtc.nvrtcGetProgramLogSize(program)
        # (a buffer of its own: `b" " * 1` is CPython's shared one-byte object, and NVRTC writes
        # into the buffer it is given; an empty log, size 1, would turn every b" " into b"\0")
        log = bytes(size + 1)
        nvrtc.nvrtcGetProgramLog(program, log)
        log = log.rstrip(b"\0 ").decode(errors="replace")  # (the NUL and the byte after it)
        if result != ok:
            return None, log or result.name
        _, size = nvrtc.nvrtcGetCUBINSize(program)
        cubin = b" " * size
        nvrtc.nvrtcGetCUBIN(program, cubin)
        return cubin, log
    finally:
        nvrtc.nvrtcDestroyProgram(program)


def _compile_nvcc(source: str, arch: str, options: tuple[str, ...], name: str):
    """(cubin, log) from `nvcc --cubin`, in a folder of its own (run there, so that its messages
    name the source `name`, as NVRTC's do)."""
    with tempfile.TemporaryDirectory(prefix="fractal-nvcc-") as folder:
        filename = os.path.basename(name) or "kernel.cu"
        with open(os.path.join(folder, filename), "w") as f:
            f.write(source)
        done = subprocess.run(["nvcc", "--cubin", f"--gpu-architecture={arch}", *options, "-o", "out.cubin",
                               filename], cwd=folder, capture_output=True, text=True, check=False)
        log = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            return None, log or f"nvcc exited with status {done.returncode}"
        with open(os.path.join(folder, "out.cubin"), "rb") as f:
            return f.read(), log


def _error(source: str, arch: str, name: str, log: str, version: str) -> CudaCompileError:
    """The compiler's log, each error at a line of `name` followed by that line of the source and
    the one before it (a missing `;` is reported at the next token)."""
    text, lines, failing = source.splitlines(), [], []
    for entry in log.splitlines():
        lines.append(entry)
        found = _LOG_LINE.match(entry)
        if found and "error" in found["kind"] and os.path.basename(found["file"]) == os.path.basename(name):
            number = int(found["line"])
            failing.append(number)
            lines += [f"    {k} | {text[k - 1]}" for k in (number - 1, number) if 1 <= k <= len(text)]
    message = f"CUDA C++ does not compile for {arch} ({version}): {name}\n" + "\n".join(lines)
    return CudaCompileError(message, log=log, lines=tuple(dict.fromkeys(failing)))
