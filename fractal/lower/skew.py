"""Skewing a perfect nest of loops onto hyperplanes, with loop bounds from isl's AST builder.

For a nest of loops over a box `x_k in lo_k:hi_k` and a hyperplane `h` (non-negative
integers, one of them 1 at the pivot `p`), the skewed nest runs `w = h . x` as its outer
loop and the other variables inside it, in their order; the pivot is eliminated,
`x_p = w - sum_{k != p} h_k x_k`.  The inner bounds are the exact projections of the box
(isl: `max`/`min` of affine bounds, `floor` where a coefficient exceeds 1), which are the
paper's boundary ("control") regions of the wavefront::

    skew_bounds(("l", "i", "j"), ((0, 2), (0, 3), (0, 4)), (1, 1, 1), "w")
    -> [("w", 0, 7), ("l", max(0, w - 5), min(2, w + 1)), ("i", max(0, -l + w - 3), min(3, -l + w + 1))]
       with j = w - l - i
"""

from __future__ import annotations

import islpy as isl

from .tile_affine import Aff, Max, Min, aff, amax, amin, floordiv

# isl AST operators that make indices, and how (`args` already converted)
_OPS = {
    isl.ast_expr_op_type.add: lambda a: a[0] + a[1],
    isl.ast_expr_op_type.sub: lambda a: a[0] - a[1],
    isl.ast_expr_op_type.minus: lambda a: -a[0],
    isl.ast_expr_op_type.max: lambda a: amax(*a),
    isl.ast_expr_op_type.min: lambda a: amin(*a),
}


class NotAffine(ValueError):
    """isl produced an expression the tile IR's indices cannot hold."""


def skew_bounds(names, box, h, w: str):
    """`[(var, start, stop), ...]` of the skewed nest (outermost `w` first) and the pivot's
    `(var, index)` in terms of them, or None when isl's loops are not a plain nest."""
    n = len(names)
    pivot = max(k for k, c in enumerate(h) if c == 1)
    rest = [k for k in range(n) if k != pivot]
    xs = [f"x{k}" for k in range(n)]
    in_box = " and ".join(f"{lo} <= x{k} < {hi}" for k, (lo, hi) in enumerate(box))
    dot = " + ".join(f"{c}*x{k}" for k, c in enumerate(h) if c)
    schedule = isl.UnionMap(f"{{ S[{', '.join(xs)}] -> [{dot}, {', '.join(xs[k] for k in rest)}] : {in_box} }}")
    node = isl.AstBuild.from_context(isl.Set("{ : }")).node_from_schedule_map(schedule)
    order = [w] + [names[k] for k in rest]
    loops = []
    try:
        for depth, var in enumerate(order):
            if node.get_type() != isl.ast_node_type.for_ or _expr(node.for_get_inc(), {}) != aff(1):
                return None
            ids = {f"c{j}": order[j] for j in range(depth + 1)}
            iterator = node.for_get_iterator().get_id().get_name()
            if iterator != f"c{depth}":
                return None
            start = _expr(node.for_get_init(), ids)
            stop = _stop(node.for_get_cond(), iterator, ids)
            loops.append((var, start, stop))
            node = node.for_get_body()
    except NotAffine:
        return None
    if node.get_type() != isl.ast_node_type.user:
        return None
    index = aff(w) - sum((aff(names[k]) * h[k] for k in rest), Aff())
    return loops, (names[pivot], index)


def shifted(a: Aff, k: int) -> Aff:
    """`a + k`, the constant moved into a lone max/min (`min(1, w) + 1` -> `min(2, w + 1)`)."""
    terms = a.terms
    if len(terms) == 1 and terms[0][1] == 1 and isinstance(terms[0][0], (Max, Min)):
        atom, c = terms[0][0], a.const + k
        return (amin if isinstance(atom, Min) else amax)(*(x + c for x in atom.args))
    return a + k


def _stop(cond, iterator: str, ids) -> Aff:
    """The exclusive upper bound of `iterator <= e` or `iterator < e`."""
    kind = cond.get_op_type()
    lhs, rhs = cond.get_op_arg(0), cond.get_op_arg(1)
    if lhs.get_type() != isl.ast_expr_type.id or lhs.get_id().get_name() != iterator:
        raise NotAffine(f"loop condition {cond}")
    bound = _expr(rhs, ids)
    if kind == isl.ast_expr_op_type.le:
        return shifted(bound, 1)
    if kind == isl.ast_expr_op_type.lt:
        return bound
    raise NotAffine(f"loop condition {cond}")


def _expr(e, ids) -> Aff:
    """An isl AST expression as a tile index (affine with max/min/floor)."""
    kind = e.get_type()
    if kind == isl.ast_expr_type.int:
        return aff(e.get_val().to_python())
    if kind == isl.ast_expr_type.id:
        name = e.get_id().get_name()
        if name not in ids:
            raise NotAffine(f"unknown variable {name}")
        return aff(ids[name])
    op = e.get_op_type()
    args = [_expr(e.get_op_arg(k), ids) for k in range(e.get_op_n_arg())]
    if op in _OPS:
        return _OPS[op](args)
    if op == isl.ast_expr_op_type.mul:
        a, b = args
        if a.is_const:
            return b * a.const
        if b.is_const:
            return a * b.const
    if op in (isl.ast_expr_op_type.fdiv_q, isl.ast_expr_op_type.pdiv_q, isl.ast_expr_op_type.div) and \
            args[1].is_const and args[1].const > 0:
        return floordiv(args[0], args[1].const)  # (pdiv/div: isl knows the dividend is >= 0 or exact)
    raise NotAffine(f"isl expression {e}")
