"""The expression and indexing parts of a C++ emitter, shared by the CUDA backend and a
native CPU backend: tile-IR indices to C++ integer expressions (`index`), region points to
element offsets (`address`), element-wise expression trees and conversions to one C++
expression per element (`elementwise`, with the per-op table in `ops`), and the dialect
tables in which host C++ and CUDA C++ differ (`dialect`).  No runtime: backends compile
and launch.

    >>> from fractal.lower import parse_index
    >>> index_expr(parse_index("floor((i - 3) / 4) + 2*(q mod 4)"))
    '2*fl_mod(q, 4) + fl_div(i - 3, 4)'
"""

from .address import offset, point_offset
from .dialect import CUDA, DIALECTS, HOST, Dialect
from .elementwise import Emitted, cast, emit_expr, prelude, store
from .index import index_expr, index_prelude
from .ops import BINARY_OPS, UNARY_OPS

__all__ = ["offset", "point_offset", "CUDA", "DIALECTS", "HOST", "Dialect", "Emitted", "cast", "emit_expr", "prelude",
           "store", "index_expr", "index_prelude", "BINARY_OPS", "UNARY_OPS"]
