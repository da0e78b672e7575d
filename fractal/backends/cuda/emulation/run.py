"""`EmulatedModule`: CUDA kernels run on the CPU through the host C++ compiler (`cuda_emu.h`);
`emulate`: one kernel of a source, on copies of its arguments.

The source and a generated launcher per kernel are compiled into a shared library, cached on disk
by `fractal.backends.cxx_build` under a key of the source, the headers, the compiler and the
flags (built under a temporary name and renamed into place, so two processes compiling the same
kernel both end with a whole library; checked against its digest before it is loaded).  A
launch runs on fresh copies of the arguments: first with the blocks in a shuffled order
(`shuffle_seed`) and each block's threads in order, then (`repeat=2`) with both orders
reversed.  Results that differ are a race, and a third run (only the thread order reversed)
tells which: between blocks (two blocks writing one element) or within a block (a missing
`__syncthreads`: the emulation runs one thread at a time up to its next barrier, so a thread
reads shared memory that the threads after it in that order have not written yet, and each run
fills shared memory with another poison byte at a block's start).
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np

from ... import cxx_build
from .errors import CompilerMissingError, EmulationCompileError, EmulationError
from .source import Param, module_unit

HEADER = Path(__file__).with_name("cuda_emu.h")
# bounds: cuda_emu.h.  Hidden visibility and no GNU-unique symbols: two modules loaded in one
# process each keep their own kernels and `__shared__` arrays (a kernel's static arrays would
# otherwise be one process-wide symbol, sized by whichever module loaded first).
FLAGS = ("-std=c++17", "-O1", "-shared", "-fPIC", "-w", "-fsanitize=bounds", "-fvisibility=hidden")
GCC_FLAGS = ("-fno-gnu-unique",)
MAX_COOPERATIVE_BLOCKS = 256  # one template instance per block of a cooperative launch


@functools.lru_cache(maxsize=None)
def compiler() -> tuple[str, str]:
    """(path, version line) of the host C++ compiler (`$CXX`, else `g++`, else `clang++`)."""
    try:
        found = cxx_build.require_compiler()
    except cxx_build.CompilerNotFoundError as e:
        raise CompilerMissingError(f"the CUDA emulation needs a C++17 compiler: {e.message} (install g++, "
                                   "or set CXX to one)") from None
    return found.path, found.version


def flags_for(version: str) -> tuple[str, ...]:
    """The flags for a compiler of this version line (clang has no GNU-unique symbols to turn off)."""
    return FLAGS if "clang" in version.lower() else FLAGS + GCC_FLAGS


def _build(text: str) -> Path:
    """The library of a module unit, from the cache (`cxx_build.build`) under "cuda-emulation"."""
    path, version = compiler()
    headers = tuple(h.read_text() for h in sorted(HEADER.parent.glob("*.h")))  # cuda_emu.h and those it includes
    try:
        return cxx_build.build(text, flags_for(version), "cuda-emulation", extra_key=headers,
                               compiler=cxx_build.Compiler(path, version), include_dirs=(HEADER.parent,))
    except cxx_build.CxxCompileError as e:
        raise EmulationCompileError(f"the host compiler refused the kernel source:\n{e.log or e.message}") from None


def _argument(p: Param, value, kernel: str) -> np.ndarray:
    if p.pointer:
        if not isinstance(value, np.ndarray):
            raise EmulationError(f"kernel {kernel}: parameter {p.name!r} is a pointer and takes a NumPy "
                                 f"array, got {type(value).__name__}")
        if value.dtype != p.dtype:
            raise EmulationError(f"kernel {kernel}: parameter {p.name!r} is {p.ctype}* and takes "
                                 f"{p.dtype} arrays, got {value.dtype}")
        return np.ascontiguousarray(value)
    if isinstance(value, np.ndarray) or not np.isscalar(value):
        raise EmulationError(f"kernel {kernel}: parameter {p.name!r} is a {p.ctype} and takes a number, "
                             f"got {type(value).__name__}")
    return np.array(value, dtype=p.dtype)


def _dims(value, what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, int) else tuple(value)
    if not 1 <= len(dims) <= 3 or any(not isinstance(d, int) or d < 1 for d in dims):
        raise EmulationError(f"{what} must be 1 to 3 positive whole numbers, got {value!r}")
    return (*dims, 1, 1)[:3]


def _launch(lib: ctypes.CDLL, arrays: list[np.ndarray], grid, block, shared_bytes, cooperative, seed, reverse,
            symbol: str):
    fn = getattr(lib, symbol)
    ptrs = (ctypes.c_void_p * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])
    lens = (ctypes.c_longlong * max(1, len(arrays)))(*[a.size for a in arrays])
    msg = ctypes.create_string_buffer(4096)
    rc = fn(ptrs, lens, (ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block),
            ctypes.c_longlong(shared_bytes), ctypes.c_int(cooperative), ctypes.c_ulonglong(seed),
            ctypes.c_int(reverse), msg, ctypes.c_int(len(msg)))
    if rc != 0:
        raise EmulationError(msg.value.decode(errors="replace"))


def _mismatch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where `a` and `b` differ: floats beyond a tolerance (atomics that sum in another order
    round differently), other types at all."""
    if a.dtype.kind not in "fc":
        return a != b
    tol = float(np.sqrt(np.finfo(a.dtype).eps))
    finite = np.abs(a[np.isfinite(a)])  # (infinities compare exactly)
    scale = float(finite.max()) if finite.size else 0.0
    return ~np.isclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True)


def _difference(params, first: list[np.ndarray], other: list[np.ndarray]):
    """(array name, index, first value, other value) of the first element that differs, or None."""
    for p, a, b in zip([p for p in params if p.pointer], first, other):
        wrong = _mismatch(a, b)
        if wrong.any():
            at = tuple(int(i) for i in np.unravel_index(int(np.argmax(wrong)), a.shape))
            return p.name, at[0] if len(at) == 1 else at, a[at].item(), b[at].item()
    return None


def _race(kernel: str, diff, cause: str) -> EmulationError:
    name, at, x, y = diff
    return EmulationError(f"kernel {kernel}: the result depends on the schedule: {name}[{at}] is {x!r} "
                          f"in one order and {y!r} in another: {cause}")


BETWEEN_BLOCKS = "a race between blocks (two blocks write one element without an atomic)"
WITHIN_BLOCK = ("a race within a block (a missing __syncthreads, or a read of __shared__ memory that no "
                "thread wrote: run in the reverse order, its threads read other values)")


def emulate(source: str, kernel: str, grid, block, args, *, shared_bytes: int = 0,
            shuffle_seed: int = 0, repeat: int = 2, cooperative: bool = False) -> tuple[np.ndarray, ...]:
    """Runs `kernel<<<grid, block, shared_bytes>>>(*args)` of CUDA C++ `source` on the CPU.

    `args` are NumPy arrays (for pointer parameters, of the matching dtype) and numbers (for
    scalar ones); the inputs are not modified.  Returns every array argument after the
    kernel ran, in order.  `cooperative=True` runs all blocks at once, as a cooperative launch
    does (needed by `grid.sync()`).  `repeat=2` runs a second time with the block and thread
    orders reversed; where the results differ, `EmulationError` says which order matters
    (`repeat=1`: one run, no check)."""
    if repeat not in (1, 2):
        raise EmulationError(f"kernel {kernel}: repeat is 1 (one run) or 2 (a second run in the reversed "
                             f"orders, compared with the first), got {repeat!r}")
    nblocks = int(np.prod(_dims(grid, "grid")))
    if cooperative and nblocks > MAX_COOPERATIVE_BLOCKS:
        raise EmulationError(f"kernel {kernel}: the emulation runs at most {MAX_COOPERATIVE_BLOCKS} "
                             f"blocks in a cooperative launch, got {nblocks}")
    module = EmulatedModule(source, {kernel: nblocks if cooperative else 1}, name=kernel)
    # (copies, launched in place: the caller's arrays stay as they were)
    work = [np.array(a, order="C", copy=True) if isinstance(a, np.ndarray) else a for a in args]
    module.launch(kernel, grid, block, work, shared_bytes=shared_bytes, cooperative=cooperative,
                  shuffle_seed=shuffle_seed, check=repeat == 2)
    return tuple(w for w, p in zip(work, module.params[kernel]) if p.pointer)


class EmulatedModule:
    """Several kernels of one CUDA C++ source, compiled once for the emulation, launched in
    place on NumPy arrays (a program's buffers, kept between launches).

    `kernels` names the kernels, or maps each to the blocks its cooperative launch runs at
    once.  `launch` runs one kernel like `emulate`, checking for races the same way when
    `check` (two runs in opposite orders on copies, compared), then writes the results into
    the pointer arguments themselves."""

    def __init__(self, source: str, kernels, name: str = "module"):
        slots = dict(kernels) if isinstance(kernels, dict) else {k: 1 for k in kernels}
        for kernel, n in slots.items():
            if not 1 <= n <= MAX_COOPERATIVE_BLOCKS:
                raise EmulationError(f"kernel {kernel}: the emulation runs 1 to {MAX_COOPERATIVE_BLOCKS} "
                                     f"blocks at once, got {n}")
        text, self.params = module_unit(source, slots, name)
        self.slots = slots
        self._lib = ctypes.CDLL(str(_build(text)))

    def launch(self, kernel: str, grid, block, args, *, shared_bytes: int = 0, cooperative: bool = False,
               shuffle_seed: int = 0, check: bool = True) -> None:
        if kernel not in self.params:
            raise EmulationError(f"no kernel {kernel!r} in this module; it has {', '.join(self.params)}")
        grid, block = _dims(grid, "grid"), _dims(block, "block")
        if int(np.prod(block)) > 1024:
            raise EmulationError(f"kernel {kernel}: a block holds at most 1024 threads, got {int(np.prod(block))}")
        if cooperative and int(np.prod(grid)) > self.slots[kernel]:
            raise EmulationError(f"kernel {kernel}: a cooperative launch of {int(np.prod(grid))} blocks, but the "
                                 f"module was built for {self.slots[kernel]} at once")
        params = self.params[kernel]
        args = list(args)
        if len(args) != len(params):
            raise EmulationError(f"kernel {kernel} takes {len(params)} arguments "
                                 f"({', '.join(p.name for p in params)}), got {len(args)}")
        values = [_argument(p, v, kernel) for p, v in zip(params, args)]
        pointers = [(a, v) for a, v, p in zip(args, values, params) if p.pointer]
        if any(v is not a for a, v in pointers):
            raise EmulationError(f"kernel {kernel}: a launch in place takes C-contiguous arrays")
        symbol = f"ft_launch_{kernel}"

        def run(order: int, copy: bool) -> list[np.ndarray]:
            work = [v.copy() if copy and p.pointer else v for v, p in zip(values, params)]
            _launch(self._lib, work, grid, block, shared_bytes, cooperative, shuffle_seed, order, symbol)
            return [w for w, p in zip(work, params) if p.pointer]

        if not check:
            run(0, copy=False)
            return
        first = run(0, copy=True)
        if (diff := _difference(params, first, run(3, copy=True))) is not None:
            threads = _difference(params, first, run(2, copy=True))
            raise _race(kernel, threads or diff, WITHIN_BLOCK if threads else BETWEEN_BLOCKS)
        for (array, _), result in zip(pointers, first):
            np.copyto(array, result)
