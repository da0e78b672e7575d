"""Dialects: the few spellings in which host C++ and CUDA C++ differ, as data.

Everything else of the emitter (index expressions, addresses, element-wise expressions) is
written once against a `Dialect`: scalar type names per dtype, how a math function is named
for a compute type (`std::exp` on the host, `expf` / `exp` in CUDA), how half-precision
values convert to and from their `float` compute type, the qualifier of an inline helper,
and how infinities and NaNs are spelled.  int64 is `long long` in both (so `3LL` is an
int64 literal everywhere; the host's `std::int64_t` may be `long`).  `HOST` is C++17 for g++/clang (a later native CPU
backend), `CUDA` is CUDA C++ for nvcc and NVRTC (no standard headers needed).

    >>> CUDA.math("exp", "float32"), CUDA.math("exp", "float64"), HOST.math("exp", "float32")
    ('expf', 'exp', 'std::exp')
    >>> CUDA.ctype["float16"], CUDA.to_compute("float16", "h")
    ('__half', '__half2float(h)')
"""

from __future__ import annotations

from dataclasses import dataclass, field


# The dtypes the emitter computes in: half precision computes in float32 (rounded when stored).
COMPUTE = {"float16": "float32", "bfloat16": "float32", "float32": "float32", "float64": "float64",
           "int32": "int32", "int64": "int64", "bool": "bool"}
KIND = {"float16": "f", "bfloat16": "f", "float32": "f", "float64": "f", "int32": "i", "int64": "i", "bool": "b"}


@dataclass(frozen=True)
class Dialect:
    """How one C++ dialect spells scalar types, math functions and half conversions."""

    name: str
    ctype: dict = field(hash=False)        # dtype name -> C++ scalar type
    index_type: str                        # loop variables and element offsets (64-bit)
    inline: str                            # qualifier of an emitted helper function
    math_prefix: str                       # "std::" on the host
    float_suffix: str                      # "f": CUDA's float versions (expf)
    to_float: dict = field(hash=False)     # half dtype -> template converting "{v}" to float
    from_float: dict = field(hash=False)   # half dtype -> template converting "{v}" from float
    infinity: dict = field(hash=False)     # compute dtype -> +inf
    nan: dict = field(hash=False)          # compute dtype -> quiet NaN
    headers: tuple[str, ...] = ()
    math_names: dict = field(default_factory=dict, hash=False)   # (fn, compute dtype) -> a function of its own

    def math(self, fn: str, dtype: str) -> str:
        """The name of math function `fn` for a float compute dtype."""
        own = self.math_names.get((fn, dtype))
        return own or f"{self.math_prefix}{fn}{self.float_suffix if dtype == 'float32' else ''}"

    def includes(self) -> str:
        """The `#include` lines the emitted text needs."""
        return "".join(f"#include {h}\n" for h in self.headers)

    def to_compute(self, dtype: str, value: str) -> str:
        """`value` (of `dtype`) in its compute dtype."""
        return self.to_float[dtype].format(v=value) if dtype in self.to_float else value

    def from_compute(self, dtype: str, value: str) -> str:
        """`value` (in `dtype`'s compute dtype) stored as `dtype`."""
        return self.from_float[dtype].format(v=value) if dtype in self.from_float else value


HOST = Dialect(
    name="host",
    ctype={"float16": "_Float16", "bfloat16": "__bf16", "float32": "float", "float64": "double",
           "int32": "std::int32_t", "int64": "long long", "bool": "bool"},
    index_type="std::int64_t", inline="static inline", math_prefix="std::", float_suffix="",
    to_float={"float16": "static_cast<float>({v})", "bfloat16": "static_cast<float>({v})"},
    from_float={"float16": "static_cast<_Float16>({v})", "bfloat16": "static_cast<__bf16>({v})"},
    infinity={"float32": "std::numeric_limits<float>::infinity()",
              "float64": "std::numeric_limits<double>::infinity()"},
    nan={"float32": "std::numeric_limits<float>::quiet_NaN()", "float64": "std::numeric_limits<double>::quiet_NaN()"},
    headers=("<cmath>", "<cstdint>", "<limits>"),
)

CUDA = Dialect(
    name="cuda",
    ctype={"float16": "__half", "bfloat16": "__nv_bfloat16", "float32": "float", "float64": "double",
           "int32": "int", "int64": "long long", "bool": "bool"},
    index_type="long long", inline="static __device__ __forceinline__", math_prefix="", float_suffix="f",
    to_float={"float16": "__half2float({v})", "bfloat16": "__bfloat162float({v})"},
    from_float={"float16": "__float2half({v})", "bfloat16": "__float2bfloat16({v})"},
    infinity={"float32": "__int_as_float(0x7f800000)", "float64": "__longlong_as_double(0x7ff0000000000000LL)"},
    nan={"float32": "__int_as_float(0x7fc00000)", "float64": "__longlong_as_double(0x7ff8000000000000LL)"},
    headers=("<cuda_fp16.h>", "<cuda_bf16.h>"),
)

DIALECTS = {d.name: d for d in (HOST, CUDA)}
