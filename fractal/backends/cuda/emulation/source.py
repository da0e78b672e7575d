"""Kernel source -> a translation unit the host compiler builds for the emulation.

The launched kernel is rewritten in three ways, none of which changes what it computes:
its pointer parameters become bounds-checked `__ft::gptr<T>` (so an out-of-bounds access to a
launch argument names the buffer and the index); it becomes a template over the block's slot,
so that in a cooperative launch, where all blocks run at once, each block's `static`
(`__shared__`) arrays are its own; and `extern "C"` before `__global__` is dropped (a template
has C++ linkage).  `extern __shared__ T name[];` (dynamic shared memory) becomes a pointer to the
block's dynamic buffer, and each `__shared__` declaration fills its array with a poison byte
when a block first reaches it (`__ft::shared_fresh`).  A generated `extern "C"` launcher takes the arguments as `void*`s.
The CUDA headers the emulation stands in for (`cuda_runtime.h`, `cuda_fp16.h`, `cuda_bf16.h`,
`cuda_pipeline.h`, `cooperative_groups.h`...) are not included: `cuda_emu.h` declares what they
would.  Pointer parameters of type `__half*` take NumPy float16 arrays, and `__nv_bfloat16*`
take uint16 arrays holding the bfloat16 bits, the upper half of a float32's (NumPy has no
bfloat16; `bfloat16_bits` rounds float32 values to them, `from_bfloat16_bits` reads them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import EmulationError

# C scalar types -> NumPy dtypes (the element type of a pointer parameter, or a scalar's type).
C_TYPES = {
    "float": np.float32, "double": np.float64,
    "int": np.int32, "int32_t": np.int32, "unsigned": np.uint32, "unsigned int": np.uint32,
    "uint32_t": np.uint32, "long long": np.int64, "long": np.int64, "int64_t": np.int64,
    "unsigned long long": np.uint64, "uint64_t": np.uint64, "size_t": np.uint64,
    "short": np.int16, "int16_t": np.int16, "unsigned short": np.uint16, "uint16_t": np.uint16,
    "char": np.int8, "signed char": np.int8, "int8_t": np.int8, "unsigned char": np.uint8,
    "uint8_t": np.uint8, "bool": np.bool_,
    # 16-bit floats (cuda_emu_half.h): __half takes float16 arrays; NumPy has no bfloat16, so
    # __nv_bfloat16 takes uint16 arrays holding the bfloat16 bits (the upper half of a float32).
    "__half": np.float16, "half": np.float16, "__nv_bfloat16": np.uint16, "nv_bfloat16": np.uint16,
}


def bfloat16_bits(x) -> np.ndarray:
    """float32 values rounded to bfloat16 (to nearest, ties to even), as uint16 bits: what a
    `__nv_bfloat16*` parameter of an emulated kernel takes (NaN keeps its upper half, quieted)."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    out = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, (bits >> 16) | 0x40, out).astype(np.uint16)


def from_bfloat16_bits(b) -> np.ndarray:
    """The float32 values of bfloat16 bits (exact)."""
    return (np.asarray(b, np.uint16).astype(np.uint32) << 16).view(np.float32)


_DROPPED_INCLUDES = re.compile(
    r'^\s*#\s*include\s*[<"](cooperative_groups|cuda_runtime|cuda_pipeline|cuda_fp16|cuda_bf16|cuda|'
    r'device_launch_parameters)(\.h)?[>"].*$',
    re.M)
_DYNAMIC_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([\w\s]+?)\s*(\w+)\s*\[\s*\]\s*;")
_STATIC_SHARED = re.compile(r"(__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?[\w:<>\s]+?\s(\w+)\s*(?:\[[^\]]*\]\s*)*;)")
_QUALIFIERS = re.compile(r"\b(const|volatile|__restrict__|__restrict|restrict)\b")


@dataclass(frozen=True)
class Param:
    name: str
    ctype: str  # the scalar type, or the element type of a pointer, without qualifiers
    pointer: bool
    const: bool

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(C_TYPES[self.ctype])

    def cpp_arg(self, i: int) -> str:
        elem = f"const {self.ctype}" if self.const else self.ctype
        if self.pointer:
            return f"::__ft::gptr<{elem}>(({elem}*)a[{i}], n[{i}], \"{self.name}\")"
        return f"*({self.ctype}*)a[{i}]"


def _parse_param(text: str, kernel: str) -> Param:
    m = re.fullmatch(r"\s*(.*?)\s*\b(\w+)\s*", text, re.S)
    if m is None or not m.group(1):
        raise EmulationError(f"kernel {kernel}: cannot read the parameter {text.strip()!r}")
    spelled, name = m.group(1), m.group(2)
    stars = spelled.count("*")
    ctype = " ".join(_QUALIFIERS.sub(" ", spelled.replace("*", " ")).split())
    if stars > 1 or ctype not in C_TYPES:
        raise EmulationError(
            f"kernel {kernel}: parameter {name!r} has type {spelled.strip()!r}; the emulation takes "
            f"scalars and pointers to one of {', '.join(sorted(C_TYPES))}")
    const = "const" in spelled.split("*")[0].split()
    return Param(name, ctype, stars == 1, const)


def _kernel_signature(source: str, kernel: str) -> tuple[int, int, int]:
    """(where `__global__` starts, where the parameter list opens and closes) of the
    definition of `kernel`."""
    pattern = re.compile(r"__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+"
                         r"(?:__launch_bounds__\s*\([^)]*\)\s*)?" + re.escape(kernel) + r"\s*\(")
    for m in pattern.finditer(source):
        depth, i = 1, m.end()
        while i < len(source) and depth:
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            i += 1
        if re.match(r"\s*\{", source[i:]):
            if re.search(r"template\s*<[^;{}]*>\s*$", source[:m.start()]):
                raise EmulationError(f"kernel {kernel}: a template kernel cannot be launched by the "
                                     "emulation; write an instance out as a plain kernel")
            return m.start(), m.end(), i - 1
    raise EmulationError(f"kernel {kernel!r}: no `__global__ void {kernel}(...) {{` in the source")


def _split_params(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += {"<": 1, ">": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur] if cur.strip() else parts


def _prepare(source: str) -> str:
    """The rewrites of the whole source: dropped includes and `extern "C"`, shared memory."""
    source = _DROPPED_INCLUDES.sub("", source)
    source = re.sub(r'extern\s+"C"\s+(?=__global__)', "", source)
    source = _DYNAMIC_SHARED.sub(lambda m: f"{m.group(1)}* {m.group(2)} = "
                                 f"reinterpret_cast<{m.group(1)}*>(::__ft::dynamic_shared());", source)
    return _STATIC_SHARED.sub(lambda m: f"{m.group(1)} ::__ft::shared_fresh(&{m.group(2)}, sizeof({m.group(2)}));",
                              source)


def _instantiate(source: str, kernel: str) -> tuple[str, tuple[Param, ...]]:
    """`kernel` as a template over the block's slot, its pointers bounds-checked."""
    start, open_, close = _kernel_signature(source, kernel)
    params = tuple(_parse_param(p, kernel) for p in _split_params(source[open_:close]))
    checked = ", ".join(
        f"::__ft::gptr<{'const ' if p.const else ''}{p.ctype}> {p.name}" if p.pointer else f"{p.ctype} {p.name}"
        for p in params)
    return source[:start] + "template <int __ft_slot> " + source[start:open_] + checked + source[close:], params


def _launcher(kernel: str, params: tuple[Param, ...], slots: int, symbol: str) -> str:
    call_args = ", ".join(p.cpp_arg(i) for i, p in enumerate(params))
    table = ", ".join(f"__ft_call_{kernel}<{s}>" for s in range(slots))
    return f"""
#line 1 "<emulation launcher of {kernel}>"
template <int S> static void __ft_call_{kernel}(void** a, const long long* n) {{ {kernel}<S>({call_args}); }}
static void (*const __ft_table_{kernel}[])(void**, const long long*) = {{{table}}};
extern "C" __attribute__((visibility("default"))) int {symbol}(void** a, const long long* n, const unsigned* grid, const unsigned* block,
                         long long shared_bytes, int cooperative, unsigned long long seed, int reverse,
                         char* msg, int msglen) {{
  struct Args {{ void** a; const long long* n; }} args{{a, n}};
  auto body = [](int slot, void* ctx) {{ auto* p = static_cast<Args*>(ctx); __ft_table_{kernel}[slot](p->a, p->n); }};
  return ::__ft::launch("{kernel}", grid, block, shared_bytes, cooperative, seed, reverse, body, &args,
                        msg, msglen);
}}
"""


def module_unit(source: str, kernels: dict[str, int], name: str = "module") -> tuple[str, dict[str, tuple[Param, ...]]]:
    """The emulation's C++ for several kernels of one source (`kernels`: name -> the blocks one
    launch runs at once, 1 unless cooperative), each launched by `ft_launch_<name>`, and each
    kernel's parameters."""
    source, params = _prepare(source), {}
    for kernel in kernels:
        source, params[kernel] = _instantiate(source, kernel)
    launchers = "".join(_launcher(k, params[k], slots, f"ft_launch_{k}") for k, slots in kernels.items())
    return f'#include "cuda_emu.h"\n#line 1 "{name}.cu"\n{source}\n{launchers}', params
