"""A real BLAS's GEMM for generated C++, passed to it as C function pointers at load time.

`find_blas` finds a BLAS this process can already call: NumPy's bundled OpenBLAS
(scipy-openblas, usually ILP64 CBLAS), SciPy's `cython_blas` (Fortran interface, 32-bit
ints), or a system CBLAS.  `gemm_prelude` is the C++ the generated library starts with: slots
for that BLAS's ABI, the exported setter `ft_set_blas`, and row-major `ft_gemm_f32` /
`ft_gemm_f64`; `bind` fills the slots of a loaded library.  The slots are not linked, so a
compiled library does not depend on where the BLAS lives.  Shapes BLAS cannot take (a
leading dimension below the stored columns across several rows: a broadcast 0 stride; ints
past 32 bits for an LP64 BLAS) and unbound slots run plain loops, as does `gemm_prelude(None)`.

    >>> blas = find_blas()                             # NumPy 2's wheel on Linux
    >>> blas.name, blas.abi
    ("numpy's scipy-openblas 0.3.31.188.0 (ILP64)", 'cblas64')

    source = gemm_prelude(blas) + generated_cpp        # compiled by g++ into lib.so
    lib = ctypes.CDLL("lib.so"); bind(lib, blas)      # before the library's first GEMM
    with blas_threads(1): lib.run(...)                # BLAS's threads off OpenMP's cores
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import glob
import os
from dataclasses import dataclass, field, replace
from string import Template
from typing import Callable

import numpy as np

_LOADED: list = []      # the CDLLs (and SciPy's module) the addresses point into: kept alive
_reasons: list[str] = []  # why each candidate was passed over, for `why_no_blas`


@dataclass(frozen=True)
class Blas:
    """A BLAS's sgemm and dgemm entry points (addresses) and the ABI they are called with."""

    name: str
    library: str                 # the file the functions live in
    sgemm: int
    dgemm: int
    interface: str               # "cblas" (row-major capable) or "fortran" (column-major, pointers)
    int_bits: int                # 32 (LP64) or 64 (ILP64): the width of m, n, k and the lds
    set_threads: Callable | None = field(default=None, compare=False)  # (int) -> None
    get_threads: Callable | None = field(default=None, compare=False)  # () -> int

    @property
    def abi(self) -> str:
        """The tag the prelude compiles in and `bind` checks: "cblas64", "fortran32", ..."""
        return f"{self.interface}{self.int_bits}"


def _open(path: str, schemes) -> Blas | None:
    """`path` as a CBLAS under the first symbol scheme it exports: (gemm name with {} for s/d,
    candidate (set, get) thread-count functions, OpenBLAS's config function, int bits)."""
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        _reasons.append(f"{path}: cannot be loaded ({e})")
        return None
    for gemm, threads, config, bits in schemes:
        try:
            s, d = (ctypes.cast(getattr(lib, gemm.format(p)), ctypes.c_void_p).value for p in "sd")
        except AttributeError:
            continue
        version = ""
        if hasattr(lib, config):  # OpenBLAS says how wide its ints are: trust that over the names
            getattr(lib, config).restype = ctypes.c_char_p
            text = (getattr(lib, config)() or b"").decode(errors="replace")
            version = text.split()[1] if text.startswith("OpenBLAS ") and len(text.split()) > 1 else ""
            if ("USE64BITINT" in text) != (bits == 64):
                _reasons.append(f"{path}: {gemm.format('s')} takes {bits}-bit ints but the library "
                                f"says {text!r}")
                continue
        set_ = get = None
        for names in threads:
            if all(hasattr(lib, t) for t in names):  # OpenBLAS's and MKL's take and give a plain int
                set_, get = (getattr(lib, t) for t in names)
                set_.argtypes, set_.restype, get.argtypes, get.restype = [ctypes.c_int], None, [], ctypes.c_int
                break
        _LOADED.append(lib)
        return Blas(version, path, s, d, "cblas", bits, set_, get)  # named by the caller
    _reasons.append(f"{path}: exports no CBLAS sgemm/dgemm")
    return None


def _numpy_openblas() -> Blas | None:
    """NumPy's bundled scipy-openblas: numpy.libs/ (Linux, Windows) or numpy/.dylibs/ (macOS)."""
    root = os.path.dirname(np.__file__)
    paths = sorted(p for d in (root + ".libs", os.path.join(root, ".dylibs"), os.path.join(root, ".libs"))
                   for p in glob.glob(os.path.join(d, "*openblas*"))
                   if p.endswith((".dylib", ".dll")) or ".so" in os.path.basename(p))
    if not paths:
        _reasons.append(f"numpy {np.__version__} bundles no OpenBLAS")
    # scipy-openblas (NumPy 2) ILP64 and LP64; NumPy 1's openblas64_ (suffixed symbols, ILP64)
    schemes = [(f"{pre}cblas_{{}}gemm{suf}", [tuple(f"{pre}openblas_{x}_num_threads{suf}" for x in ("set", "get"))],
                f"{pre}openblas_get_config{suf}", bits)
               for pre, suf, bits in (("scipy_", "64_", 64), ("scipy_", "", 32), ("", "64_", 64))]
    for path in paths:
        blas = _open(path, schemes)
        if blas is not None:
            width = "ILP64" if blas.int_bits == 64 else "LP64"
            return replace(blas, name=f"numpy's scipy-openblas {blas.name or '(unknown version)'} ({width})")
    return None


def _scipy_blas() -> Blas | None:
    """SciPy's `cython_blas` capsules: the Fortran sgemm/dgemm SciPy links (32-bit ints)."""
    try:
        from scipy.linalg import cython_blas
    except Exception as e:  # not installed, or broken: either way no BLAS from it
        _reasons.append(f"scipy's cython_blas cannot be imported ({e})")
        return None
    get_name, get_pointer = ctypes.pythonapi.PyCapsule_GetName, ctypes.pythonapi.PyCapsule_GetPointer
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    try:
        s, d = (get_pointer(c, get_name(c)) for c in (cython_blas.__pyx_capi__[f] for f in ("sgemm", "dgemm")))
    except (AttributeError, KeyError, ValueError) as e:
        _reasons.append(f"scipy.linalg.cython_blas has no usable sgemm/dgemm capsules ({e!r})")
        return None
    _LOADED.append(cython_blas)
    return Blas("scipy's cython_blas (Fortran, LP64)", cython_blas.__file__, s, d, "fortran", 32)


def _system_cblas() -> Blas | None:
    """The first system library among OpenBLAS, CBLAS, BLAS and MKL exporting cblas_sgemm."""
    threads = [("openblas_set_num_threads", "openblas_get_num_threads"), ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads")]
    for name in ("openblas", "cblas", "blas", "mkl_rt"):
        path = ctypes.util.find_library(name)
        if path is None:
            continue
        blas = _open(path, [("cblas_{}gemm", threads, "openblas_get_config", bits) for bits in (32, 64)])
        if blas is not None:
            return replace(blas, name=f"system {path} {blas.name} ({'ILP64' if blas.int_bits == 64 else 'LP64'})")
    _reasons.append("no system CBLAS (openblas, cblas, blas, mkl_rt) exporting cblas_sgemm")
    return None


@functools.cache
def find_blas() -> Blas | None:
    """The first BLAS found of NumPy's OpenBLAS, SciPy's, a system CBLAS; None (see `why_no_blas`)."""
    for finder in (_numpy_openblas, _scipy_blas, _system_cblas):
        blas = finder()
        if blas is not None:
            return blas
    return None


def why_no_blas() -> str | None:
    """Why `find_blas` found nothing (each candidate passed over); None when it found one."""
    return None if find_blas() is not None else "; ".join(_reasons)


def get_threads() -> int | None:
    """The found BLAS's thread count; None when it has no known control."""
    blas = find_blas()
    return blas.get_threads() if blas is not None and blas.get_threads is not None else None


def set_threads(n: int) -> None:
    """Sets the found BLAS's thread count (a no-op without a known control)."""
    blas = find_blas()
    if blas is not None and blas.set_threads is not None:
        blas.set_threads(int(n))


@contextlib.contextmanager
def blas_threads(n: int):
    """BLAS on `n` threads inside the block, on its former count after it."""
    before = get_threads()
    set_threads(n)
    try:
        yield
    finally:
        if before is not None:
            set_threads(before)


def bind(lib: ctypes.CDLL, blas: Blas | None) -> None:
    """Hands `blas`'s sgemm/dgemm to `lib`, compiled from `gemm_prelude` of the same ABI."""
    if blas is None:
        return  # unbound slots (or a prelude without any) run the loops
    abi = getattr(lib, "ft_blas_abi", None)
    if abi is None:
        raise ValueError(f"{lib._name} was compiled without a BLAS (gemm_prelude(None)); cannot bind {blas.name}")
    abi.restype = ctypes.c_char_p
    if abi().decode() != blas.abi:
        raise ValueError(f"{lib._name} was compiled for a {abi().decode()} BLAS, not {blas.name} ({blas.abi})")
    lib.ft_set_blas.argtypes, lib.ft_set_blas.restype = [ctypes.c_void_p, ctypes.c_void_p], None
    lib.ft_set_blas(blas.sgemm, blas.dgemm)


_EXPORT = 'extern "C" __attribute__((visibility("default")))'  # exported under -fvisibility=hidden too

# Row-major C = alpha op(A) op(B) + beta C in plain loops (i-k-j: unit stride over B and C rows).
# beta == 0 overwrites C and alpha == 0 reads neither A nor B, as BLAS does.
_LOOPS = """\
template <typename T>
static inline void ft_gemm_loops(bool trans_a, bool trans_b, $idx m, $idx n, $idx k, T alpha, const T* a, $idx lda,
                                 const T* b, $idx ldb, T beta, T* c, $idx ldc) {
  for ($idx i = 0; i < m; ++i) {
    T* ci = c + i * ldc;
    for ($idx j = 0; j < n; ++j) ci[j] = beta == T(0) ? T(0) : beta * ci[j];
    if (alpha == T(0)) continue;
    for ($idx p = 0; p < k; ++p) {
      const T aip = alpha * (trans_a ? a[p * lda + i] : a[i * lda + p]);
      for ($idx j = 0; j < n; ++j) ci[j] += aip * (trans_b ? b[j * ldb + p] : b[p * ldb + j]);
    }
  }
}
"""

_GEMM = """
static inline void ft_gemm_$t(bool trans_a, bool trans_b, $idx m, $idx n, $idx k, $real alpha, const $real* a, $idx lda,
                           const $real* b, $idx ldb, $real beta, $real* c, $idx ldc) {
$body
}
"""

_LOOPS_BODY = "  ft_gemm_loops<$real>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);"

# A null slot (not bound), k == 0 and leading dimensions BLAS rejects run the loops.
_BLAS_BODY = """\
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || ft_blas_${p}gemm == nullptr || !ft_blas_ld(trans_a ? k : m, trans_a ? m : k, lda)
      || !ft_blas_ld(trans_b ? n : k, trans_b ? k : n, ldb) || !ft_blas_ld(m, n, ldc)$lp64) {
  $loops
    return;
  }
  $call"""

# An LP64 BLAS takes no dimension past 2^31 - 1.
_LP64 = ("\n      || m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX"
         " || ldc > INT32_MAX")

_CALL = {
    "cblas": "ft_blas_${p}gemm(101, trans_a ? 112 : 111, trans_b ? 112 : 111, m, n, k, alpha, a, lda, b, ldb, "
             "beta, c, ldc);",  # CblasRowMajor, CblasNoTrans / CblasTrans
    # Column-major Fortran sees each row-major matrix transposed: C^T = op(B)^T op(A)^T.
    "fortran": "const char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';\n"
               "  const ft_blas_int M = n, N = m, K = k, LDA = ldb, LDB = lda, LDC = ldc;\n"
               "  ft_blas_${p}gemm(&tb, &ta, &M, &N, &K, &alpha, b, &LDA, a, &LDB, &beta, c, &LDC);",
}

_FN_TYPE = {  # ft_blas_int: the BLAS's integer; CBLAS's enums are plain ints
    "cblas": "typedef void (*ft_${p}gemm_fn)(int, int, int, ft_blas_int, ft_blas_int, ft_blas_int, $real,\n"
             "    const $real*, ft_blas_int, const $real*, ft_blas_int, $real, $real*, ft_blas_int);\n",
    "fortran": "typedef void (*ft_${p}gemm_fn)(const char*, const char*, const ft_blas_int*, const ft_blas_int*,\n"
               "    const ft_blas_int*, const $real*, const $real*, const ft_blas_int*, const $real*,\n"
               "    const ft_blas_int*, const $real*, $real*, const ft_blas_int*);\n",
}

# BLAS wants ld >= max(1, stored columns).  Ours may be smaller where one row is read (any ld
# will do: raise it) or where rows repeat (a 0 stride: no BLAS call reads that).
_SLOTS = f"""\
static ft_sgemm_fn ft_blas_sgemm = nullptr;  // filled by ft_set_blas (fractal's `bind`)
static ft_dgemm_fn ft_blas_dgemm = nullptr;

{_EXPORT} void ft_set_blas(void* sgemm, void* dgemm) {{
  ft_blas_sgemm = reinterpret_cast<ft_sgemm_fn>(sgemm);
  ft_blas_dgemm = reinterpret_cast<ft_dgemm_fn>(dgemm);
}}

{_EXPORT} const char* ft_blas_abi() {{ return "$abi"; }}

static inline bool ft_blas_ld($idx rows, $idx cols, $idx& ld) {{
  if (ld >= cols && ld >= 1) return true;
  if (rows > 1) return false;
  ld = cols > 1 ? cols : 1;
  return true;
}}

"""

_TYPES = ({"t": "f32", "real": "float", "p": "s"}, {"t": "f64", "real": "double", "p": "d"})


def gemm_prelude(blas: Blas | None, dialect_index_type: str = "long long") -> str:
    """C++ defining row-major `ft_gemm_f32` / `ft_gemm_f64` (on `blas`, or loops for None),
    with lda/ldb/ldc the row strides of the stored matrices; `ft_set_blas` fills the slots."""
    idx = dialect_index_type
    text = f"#include <cstdint>\n\n// GEMM on {blas.name if blas else 'loops (no BLAS)'}\n"
    body = _LOOPS_BODY
    if blas is not None:
        text += f"typedef std::int{blas.int_bits}_t ft_blas_int;\n"
        text += "".join(Template(_FN_TYPE[blas.interface]).substitute(ty) for ty in _TYPES)
        text += Template(_SLOTS).substitute(abi=blas.abi, idx=idx)
        body = Template(_BLAS_BODY).safe_substitute(call=_CALL[blas.interface], loops=_LOOPS_BODY,
                                                    lp64=_LP64 if blas.int_bits == 32 else "")
    text += Template(_LOOPS).substitute(idx=idx)
    return text + "".join(Template(Template(_GEMM).safe_substitute(body=body)).substitute(ty, idx=idx)
                          for ty in _TYPES)
