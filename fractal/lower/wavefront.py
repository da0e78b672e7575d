"""Pass 3, wavefront: skew a perfect nest of sequential loops onto hyperplanes of its dependences.

A stacked RNN is `for layer { for step { cells } }` where cell (l, t) needs (l, t - 1) and
(l - 1, t): no two cells of one anti-diagonal `w = l + t` depend on each other.  A grid RNN
adds a third loop, and its cells (d, i, j) need their three neighbours: the planes
`w = d + i + j` are independent.  In general the analysis' engine gives the exact
dependence distances between the nest's instances (`fractal.lower.dependences.deltas`, with
the loops around the nest held fixed) and the hyperplane `h` with `h . d >= 1` for each of
them that takes the fewest steps (`fractal.analysis.wavefront.find_hyperplane`); the nest
becomes one sequential loop over `w = h . x` with parallel loops over the other variables,
bounded by isl's exact projections (the paper's boundary regions, `fractal.lower.skew`).
Coarsening then batches each step's points into one stage (a polygon of points when the
inner bounds read the outer ones).  Skewing drops the loops' `active` hints.

Before::                                     After::

    for l in 0:2 sequential host {              for l_t in 0:6 sequential host {
      for t in 0:5 sequential host {              for l in max(0, l_t - 4):min(2, l_t + 1) parallel host {
        for m in 0:3 parallel host {                for m in 0:3 parallel host {
          stage cell() { h[l, t + 1] = ... }          stage cell() { h[l, l_t - l + 1] = ... }
"""

from __future__ import annotations

from ..analysis.wavefront import find_hyperplane
from .dependences import accesses, deltas, tables_of
from .hoist import batch_recurrences
from .rewrite import Path, rewrite_blocks, rewrite_stmts, substitute, var_ranges
from .skew import skew_bounds
from .policy import ScheduleOption
from .tile_ir import Loop, TileProgram
from .workload import stage_runs


def wavefront(program: TileProgram, ctx) -> TileProgram:
    """Pass 3, wavefront: each nest of sequential loops takes the cheapest of its legal
    schedules: as written, skewed onto its hyperplane, or batched and skewed inside."""
    site = _Site(program, ctx)
    return rewrite_blocks(program, site.block, order="pre")


class _Site:
    def __init__(self, program: TileProgram, ctx):
        self.program, self.ctx = program, ctx
        self.shapes = {b.name: b.shape for b in program.buffers}
        self.itemsizes = {b.name: b.dtype.itemsize for b in program.buffers}
        self.tables = tables_of(program)
        self.ranges = var_ranges(program.body)
        self.skews: dict = {}  # the loop variable of each skewed nest -> the variables it skews

    def block(self, stmts, path: Path) -> list:
        out = []
        for s in stmts:
            if isinstance(s, Loop) and s.kind == "sequential":
                out.extend(self.schedule(s, path))
            else:
                out.append(s)
        return out

    def schedule(self, loop: Loop, path: Path) -> list:
        """The nest's legal schedules, of which the target's policy picks one: as written,
        skewed whole, or with what reads the enclosing recurrence batched out of the inner
        loops (and the inner perfect nest that leaves skewed)."""
        options = [("as written", [loop])]
        full = self.skewed(loop, path)
        if full is not None:
            options.append(("wavefront", [full]))
        if self.ctx is not None and len(perfect_chain(loop)) > 1:
            batched = batch_recurrences(self.program, self.ctx, loop, path)
            batched = rewrite_stmts(batched, self.skew_block, order="pre", path=path)
            if batched != [loop] and (full is None or batched != [full]):
                options.append(("batched", batched))
        if len(options) == 1 or self.ctx is None:
            return options[-1][1] if full is not None else [loop]
        facts = [ScheduleOption(name, _steps(stmts), self.runs(stmts, path)) for name, stmts in options]
        target = self.ctx.target
        pick = target.policy.choose_schedule(facts, target.hardware)
        name, chosen = options[pick]
        if chosen != [loop]:
            priced = "; ".join(f"{o.name} {o.steps} steps" for o in facts)
            for st in _loops(chosen):
                if st.var in self.skews:
                    self.ctx.notes.append(f"wavefront: {' x '.join(self.skews[st.var])} -> {st.var} "
                                          f"({st.stop.const - st.start.const} steps; {name} of: {priced})")
        return chosen

    def skew_block(self, stmts, path: Path) -> list:
        out = []
        for s in stmts:
            skewed = self.skewed(s, path) if isinstance(s, Loop) else None
            out.append(s if skewed is None else skewed)
        return out

    def runs(self, stmts, path: Path):
        """The stage runs of `stmts` for the policy to price (None: too many to list)."""
        env = {lp.var: self.ranges.get(lp.var, (0, 0))[0] for lp in path.loops}
        runs = stage_runs(stmts, env, self.itemsizes)
        return None if runs is None else tuple(runs)

    def skewed(self, loop: Loop, path: Path):
        out = _skewed(loop, path, self.shapes, self.tables)
        if out is not None:
            self.skews[out.var] = [lp.var for lp in perfect_chain(loop)]
        return out


def _steps(stmts) -> int:
    """Sequential steps a block runs: each sequential loop's trip count times its body's."""
    total = 0
    for s in stmts:
        if isinstance(s, Loop) and s.kind == "sequential" and s.start.is_const and s.stop.is_const:
            total += max(0, s.stop.const - s.start.const) * max(1, _steps(s.body))
        elif isinstance(s, Loop):
            total += _steps(s.body)
    return total


def _loops(stmts):
    for s in stmts:
        if isinstance(s, Loop):
            yield s
            yield from _loops(s.body)


def perfect_chain(loop: Loop) -> list[Loop]:
    """The sequential loops of a perfect nest headed by `loop` (each body the next loop alone)."""
    chain = [loop]
    while len(chain[-1].body) == 1 and _plain(chain[-1].body[0]):
        chain.append(chain[-1].body[0])
    return chain


def _plain(s) -> bool:
    """A sequential loop of step 1 over constant bounds: a dim of the box to skew."""
    return isinstance(s, Loop) and s.kind == "sequential" and s.step == 1 and s.start.is_const and s.stop.is_const


def _skewed(loop: Loop, path: Path, shapes, tables):
    """The nest headed by `loop` on its best hyperplane, or None (not a nest of two or more
    loops over a box, no hyperplane, or isl's bounds not plain loops)."""
    if not _plain(loop):
        return None
    chain = perfect_chain(loop)
    if len(chain) < 2 or any(lp.stop.const - lp.start.const < 2 for lp in chain):
        return None
    names = tuple(lp.var for lp in chain)
    box = tuple((lp.start.const, lp.stop.const) for lp in chain)
    scope = path.scope()
    inner = scope
    for lp in chain:
        inner = inner.inner(lp.var, lp.start, lp.stop, lp.step)
    body = chain[-1].body
    xs = accesses(body, inner, shapes, tables)
    h = find_hyperplane(deltas(xs, xs, over=names, fixed=scope.vars), [hi - lo for lo, hi in box])
    if h is None:
        return None
    found = skew_bounds(names, box, h, "_".join(names))
    if found is None:
        return None
    (w, start, stop), *parallel = found[0]
    pivot, index = found[1]
    moved = []
    for st in body:
        st = substitute(st, {pivot: index})
        for var, lo, hi in reversed(parallel):
            st = Loop(var, lo, hi, 1, "parallel", loop.placement, (st,))
        moved.append(st)
    return Loop(w, start, stop, 1, "sequential", loop.placement, tuple(moved))

