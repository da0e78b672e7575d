"""Print the tile IR in its text form; `fractal.lower.tile_parser` reads it back exactly.

Spellings (grammar: `tile_ir.lark`; an example is in `fractal.lower.tile_ir`'s docstring):

* program `tile @name { buffers... statements... }`, two spaces of indent per level;
* buffer `buffer w: f32[2,8,32] global input`, plus ` layout(0,2,1)` when not row-major,
  and a const buffer's data after ` = `: `buffer ids: i64[4] global const = [0, 2, 1, 3]`,
  in the program IR's format (`fractal.lang.array_text`: a literal up to 64 elements,
  else `b64"..."`); in messages (`header`) the data is elided as ` = ...`;
* loop `for s in 0:7 sequential host { ... }` (`step -1` before the kind when not 1;
  ` active m < 64 - s` after the placement for a ragged batch's live points;
  ` associative` after the kind for a reduce's loop),
  stage `stage gates(l in max(0, s - 5):min(2, s + 1)) device { ... }`,
  `if s < 4 { ... } else { ... }`;
* region `h[l + 1, s - l, 0:4, 0:8:2]`: an index axis is its index, a range axis
  `lo:hi` or `lo:hi:stride` with `hi = lo + size*stride` (so `0:8:2` has 4 elements);
* ops `dst = copy(src)`, `c = gemm(a, b.T)` / `c += gemm(a, b)` (accumulate),
  `dst = reduce_max(src, axes=[1])`, `dst = gather(src, index, axis=0)`,
  `dst = scatter(src, index, axis=0)`, `dst = convert(src)`, and elementwise `dst = expr`
  with `expr` a region, a float (`0.5`, `-1e-07`, `inf`, `nan`), `op(x)`, `op(a, b)` or
  `where(c, a, b)`;
* indices as in `fractal.lower.tile_affine`.

Buffer, variable and stage names are identifiers other than the words in `RESERVED`
(`max min floor mod inf nan copy gemm gather scatter convert reduce_*`), which the grammar
reads as keywords where such a name may also stand; other keywords (`input`, `step`,
`for`, ...) are fine names.  Unary/binary op names avoid `EXPR_KEYWORDS` and `where`.
Program names may also start with a digit and hold dots (`@model.layer_0`).
"""

from __future__ import annotations

import re

from fractal.lang.array_text import print_array_data
from fractal.lang.types import dtype_name

from .tile_affine import INDEX_KEYWORDS
from .tile_expr import Binary, Const, Load, Region, Unary, Where
from .tile_nodes import (TILE_OPS, Buffer, Convert, Copy, Elementwise, Gather, Gemm, If, Loop, Reduce, Scatter,
                          SegmentReduce, Stage)

# Keywords where an index may start (or continue), INDEX_KEYWORDS, and where an element
# expression may start: there a buffer or variable name would read as the keyword.  Op names
# (`mod`, ...) only avoid the second set.
EXPR_KEYWORDS = frozenset({"inf", "nan", "copy", "gemm", "gather", "scatter", "convert", "reduce_add",
                           "reduce_max", "reduce_min", "segment_add", "segment_max", "segment_min"})
RESERVED = INDEX_KEYWORDS | EXPR_KEYWORDS
_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\Z")
_PROG_NAME = re.compile(r"[A-Za-z_0-9][A-Za-z_0-9.]*\Z")


def name_problem(name, what: str = "name") -> str | None:
    """Why `name` cannot be printed as a buffer/variable/stage/op name, or None."""
    if not isinstance(name, str) or not _NAME.match(name):
        return f"{what} {name!r} is not an identifier ([A-Za-z_][A-Za-z_0-9]*)"
    if name in RESERVED:
        return f"{what} {name!r} is a reserved word"
    return None


def print_tile_program(p) -> str:
    """The text of `p`, a `TileProgram` (read by its fields: it is defined in `tile_ir`, which
    builds on this module)."""
    if not isinstance(p.name, str) or not _PROG_NAME.match(p.name):
        raise ValueError(f"cannot print program name {p.name!r}")
    lines = [f"tile @{p.name} {{"]
    lines += ["  " + print_buffer(b) for b in p.buffers]
    for s in p.body:
        _stmt(s, "  ", lines)
    lines.append("}")
    return "\n".join(lines)


def print_buffer(b: Buffer, data: bool = True) -> str:
    """The declaration, with the data (`data=False`: elided as ` = ...`, for messages)."""
    try:
        dt = dtype_name(b.dtype)
    except KeyError:
        raise ValueError(f"cannot print dtype {b.dtype} of buffer {b.name!r}") from None
    text = f"buffer {_name(b.name)}: {dt}[{','.join(map(str, b.shape))}] {_word(b.level)} {_word(b.role)}"
    if b.layout != tuple(range(len(b.shape))):
        text += f" layout({','.join(map(str, b.layout))})"
    if b.data is None:
        return text
    if not data:
        return text + " = ..."
    value = b.data.value
    if value.dtype != b.dtype or value.shape != b.shape:  # the text gives the data the buffer's type
        raise ValueError(f"cannot print buffer {b.name!r}: its data is {value.dtype}{list(value.shape)}, "
                         f"not {b.dtype}{list(b.shape)}")
    return f"{text} = {print_array_data(value)}"


def print_stmt(s) -> str:
    """The whole statement (a loop with its body), as in a program at indent 0."""
    lines: list[str] = []
    _stmt(s, "", lines)
    return "\n".join(lines)


def header(s) -> str:
    """One line naming a statement, for messages: a tile op, or a loop/stage/if header."""
    if isinstance(s, Loop):
        step = f" step {s.step}" if s.step != 1 else ""
        active = f" active {s.active.point} < {s.active.bound}" if s.active is not None else ""
        assoc = " associative" if s.associative else ""
        return f"for {_name(s.var)} in {s.start}:{s.stop}{step} {_word(s.kind)}{assoc} {_word(s.placement)}{active}"
    if isinstance(s, Stage):
        dims = ", ".join(f"{_name(v)} in {a}:{b}" for v, a, b in s.dims)
        return f"stage {_name(s.name)}({dims}) {_word(s.placement)}"
    if isinstance(s, If):
        a, op, b = s.cond
        return f"if {a} {_word(op)} {b}"
    if isinstance(s, Buffer):
        return print_buffer(s, data=False)
    return print_op(s)


def _stmt(s, pad: str, lines: list[str]) -> None:
    if isinstance(s, (Loop, Stage, If)):
        lines.append(f"{pad}{header(s)} {{")
        if isinstance(s, Stage):
            lines += [f"{pad}  {print_op(op)}" for op in s.body]
        else:
            for t in s.body if isinstance(s, Loop) else s.then:
                _stmt(t, pad + "  ", lines)
            if isinstance(s, If) and s.orelse:
                lines.append(f"{pad}}} else {{")
                for t in s.orelse:
                    _stmt(t, pad + "  ", lines)
        lines.append(pad + "}")
    else:
        lines.append(pad + print_op(s))  # a misplaced op prints (verify rejects it)


def print_region(r: Region) -> str:
    axes = []
    for start, size, stride in zip(r.start, r.size, r.stride):
        if size is None:
            if stride != 1:
                raise ValueError(f"cannot print region of {r.buffer!r}: index axis {start} has stride {stride}")
            axes.append(str(start))
        else:
            axes.append(f"{start}:{start + size * stride}" + (f":{stride}" if stride != 1 else ""))
    return f"{_name(r.buffer)}[{', '.join(axes)}]"


def print_expr(e) -> str:
    if isinstance(e, Load):
        return print_region(e.region)
    if isinstance(e, Const):
        return repr(e.value)
    if isinstance(e, Unary):
        return f"{_op_name(e.op)}({print_expr(e.x)})"
    if isinstance(e, Binary):
        return f"{_op_name(e.op)}({print_expr(e.a)}, {print_expr(e.b)})"
    if isinstance(e, Where):
        return f"where({print_expr(e.cond)}, {print_expr(e.a)}, {print_expr(e.b)})"
    raise TypeError(f"cannot print expression {e!r}")


def print_op(op) -> str:
    if isinstance(op, Copy):
        perm = f", perm=[{', '.join(map(str, op.perm))}]" if op.perm else ""
        return f"{print_region(op.dst)} = copy({print_region(op.src)}{perm})"
    if isinstance(op, Gemm):
        a = print_region(op.a) + (".T" if op.trans_a else "")
        b = print_region(op.b) + (".T" if op.trans_b else "")
        return f"{print_region(op.c)} {'+=' if op.accumulate else '='} gemm({a}, {b})"
    if isinstance(op, Elementwise):
        return f"{print_region(op.dst)} = {print_expr(op.expr)}"
    if isinstance(op, Reduce):
        return (f"{print_region(op.dst)} = reduce_{_word(op.combiner)}({print_region(op.src)}, "
                f"axes=[{', '.join(map(str, op.axes))}])")
    if isinstance(op, SegmentReduce):
        return f"{print_region(op.dst)} = segment_{_word(op.combiner)}({print_region(op.src)}, {print_region(op.segments)})"
    if isinstance(op, (Gather, Scatter)):
        kw = "gather" if isinstance(op, Gather) else "scatter"
        return (f"{print_region(op.dst)} = {kw}({print_region(op.src)}, {print_region(op.index)}, "
                f"axis={int(op.axis)})")
    if isinstance(op, Convert):
        return f"{print_region(op.dst)} = convert({print_region(op.src)})"
    raise TypeError(f"cannot print {op!r}: not a tile op or statement")


def _name(name) -> str:
    problem = name_problem(name)
    if problem:
        raise ValueError(f"cannot print: {problem}")
    return name


def _op_name(name) -> str:
    if name == "where" or name in EXPR_KEYWORDS or not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"cannot print unary/binary op {name!r}: it must be an identifier other than "
                         f"'where' and {', '.join(sorted(EXPR_KEYWORDS))}")
    return name


def _word(w) -> str:
    """Enumerated words (levels, kinds, comparisons...) print as they are; verify checks them."""
    if not isinstance(w, str) or not w or any(ch.isspace() for ch in w):
        raise ValueError(f"cannot print {w!r}")
    return w


# Every node prints as its text form.  The printer reads the node classes, so they cannot
# import it back to define `__str__` themselves: it is given to them here, where the
# printer is defined (`TileProgram`, above this module, calls `print_tile_program` itself).
Buffer.__str__ = print_buffer
Region.__str__ = print_region
for _op in TILE_OPS:
    _op.__str__ = print_op
for _stmt_class in (Loop, Stage, If):
    _stmt_class.__str__ = print_stmt
