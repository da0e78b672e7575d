"""A brute-force dependence oracle for tile programs: run the program, watch every element.

This checks the exact dependence engine the passes use, so it shares nothing with it (no
isl, no access maps): the program is executed for real by the pointwise executor
(`fractal/backends/pointwise.py`), op instance by op instance, and before each instance runs
the elements it reads and writes are looked up on *element-number arrays* (each buffer
replaced by `arange(size)` of its shape, sliced with the very same region code).  Gathers
and scatters index those numbers with the index values the program holds at that moment,
so the oracle sees exactly the rows they touch, repeated and permuted indices included.

An *instance* is one op at one point: `(op, env)`, `op` the stage name and the op's
index in the stage body, `env` the values of every enclosing loop and stage variable.
Reads of an instance come before its writes (`x = x + 1` reads, then writes), and an
instance never depends on itself.  The dependences are memory-based: every ordered pair of
different instances touching a common element, at least one of them writing it, earlier
one first:

* flow:   the earlier writes, the later reads,
* anti:   the earlier reads, the later writes,
* output: both write.

Within a stage the points run in row-major order, all ops at one point before the next
(`order="point"`) or each op over every point before the next op (`order="op"`); the tile
IR says a stage's points are independent, so both orders must give the same memory.

`element_accesses` is the record (per element, who read and wrote it, in order),
`instance_dependences` the pairs it implies, `execute` a run in either order and
`run_instances` a run in any order of the instances (a schedule to check); `between`,
`has_dependence`, `distance_vectors` and `cross_point_dependences` answer what tests ask.
A program runs on its const buffers' data (`Buffer.data`) and on `inputs`, a dict
`{input buffer name: array}` (zeros where an input is missing: only index tables matter
to the dependences).

A gather reads, a scatter writes, the rows its index names; one past the end (the region's
size along the axis) names none: that is padding (see `Gather`, `Scatter`), so the oracle
counts no element there.  `repeated_scatter_rows` reports a row one point of a scatter
names twice (what the contract forbids).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np

from fractal.lower.tile_ir import Gather, If, Loop, Scatter, TileProgram
from fractal.backends.pointwise import op_instances, region, run_op  # the tile IR's reference executor

KINDS = ("flow", "anti", "output")


class Env(Mapping):
    """The values of an instance's enclosing loop and stage variables: a hashable mapping,
    iterated by variable name."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, int] | Iterable[tuple[str, int]] = (), **named: int):
        self._values = {var: int(x) for var, x in sorted({**dict(values), **named}.items())}

    def __getitem__(self, var: str) -> int:
        return self._values[var]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(tuple(self._values.items()))

    def __repr__(self) -> str:
        return "Env(" + ", ".join(f"{var}={x}" for var, x in self._values.items()) + ")"


class Instance(NamedTuple):
    op: tuple[str, int]  # (stage name, index of the op in the stage body)
    env: Env


class Access(NamedTuple):
    step: int  # the instance's place in execution order
    instance: Instance
    read: bool
    wrote: bool


class Dependence(NamedTuple):
    src: Instance  # runs first
    dst: Instance
    kind: str  # flow | anti | output
    buffer: str
    element: tuple[int, ...]  # the common element, an index into the buffer's shape


# --- running a program -------------------------------------------------------------------------

def initial_arrays(program: TileProgram, inputs=None) -> dict[str, np.ndarray]:
    """Every buffer's array before the program runs: consts hold their `Buffer.data`, inputs
    their entry of `inputs` (zeros where there is none), the rest zeros."""
    arrays = {}
    for b in program.buffers:
        data = (inputs or {}).get(b.name) if b.role == "input" else b.data.value if b.role == "const" else None
        arrays[b.name] = np.zeros(b.shape, b.dtype) if data is None else np.array(data, b.dtype).reshape(b.shape)
    return arrays


def program_instances(program: TileProgram, order: str = "point") -> list[Instance]:
    """Every op instance of one run of `program`, in execution order (`order`: "point" or "op")."""
    return [Instance((stage.name, k), Env(env)) for stage, k, env in op_instances(program.body, {}, order)]


def run_instances(program: TileProgram, instances: Iterable[Instance], inputs=None) -> dict[str, np.ndarray]:
    """Every buffer's array after running `instances` (the program's, in any order) one by one."""
    stages = {s.name: s for s in program.stages()}
    arrays = initial_arrays(program, inputs)
    with np.errstate(all="ignore"):
        for (stage, k), env in instances:
            run_op(stages[stage].body[k], env, arrays)
    return arrays


def execute(program: TileProgram, inputs=None, order: str = "point") -> dict[str, np.ndarray]:
    """Every buffer's array after running `program` with the stage order `order` ("point"/"op")."""
    return run_instances(program, program_instances(program, order), inputs)


def touched_elements(op, env, arrays, numbers) -> tuple[set, set]:
    """The `(buffer, element number)`s one op instance reads and writes.  `numbers` holds each
    buffer's element numbers; `arrays` the data, for the index values of gathers and scatters."""
    def elements(r, rows=None):
        view = region(r, env, numbers)
        if rows is not None:  # the rows an index table selects along the op's axis
            picked = region(rows, env, arrays)
            picked = picked[picked != view.shape[op.axis]]  # one past the end: padding, touched nowhere
            view = view[(slice(None),) * op.axis + (picked,)]
        return {(r.buffer, int(e)) for e in np.unique(view)}

    reads = [elements(op.src, op.index), elements(op.index)] if isinstance(op, Gather) else \
        [elements(r) for r in op.reads]
    writes = [elements(op.dst, op.index)] if isinstance(op, Scatter) else [elements(r) for r in op.writes]
    return set().union(*reads), set().union(*writes)


def element_accesses(program: TileProgram, inputs=None, order: str = "point") -> dict[tuple[str, tuple[int, ...]], list[Access]]:
    """Run `program` and record, for every element it touches (`(buffer, index)`, in buffer and
    index order), the instances that read or wrote it, in execution order."""
    arrays = initial_arrays(program, inputs)
    numbers = {b.name: np.arange(int(np.prod(b.shape)), dtype=np.int64).reshape(b.shape) for b in program.buffers}
    history = defaultdict(list)  # (buffer, element number) -> accesses
    with np.errstate(all="ignore"):
        for step, (stage, k, env) in enumerate(op_instances(program.body, {}, order)):
            me = Instance((stage.name, k), Env(env))
            reads, writes = touched_elements(stage.body[k], env, arrays, numbers)
            for key in reads | writes:
                history[key].append(Access(step, me, key in reads, key in writes))
            run_op(stage.body[k], env, arrays)
    shapes = {b.name: b.shape for b in program.buffers}
    return {(name, tuple(int(i) for i in np.unravel_index(n, shapes[name]))): accesses
            for (name, n), accesses in sorted(history.items())}


def instance_dependences(program: TileProgram, inputs=None, order: str = "point") -> list[Dependence]:
    """Every memory-based dependence of one run of `program`, ordered by their later instance's
    place in execution, then element, then the earlier instance's place, then kind (as KINDS)."""
    found = []
    for (buffer, element), accesses in element_accesses(program, inputs, order).items():
        writers, readers = [], []
        for a in accesses:
            earlier = [(w, "flow") for w in writers] if a.read else []
            if a.wrote:  # reads only meet writes: many readers of an element cost nothing
                earlier += [(w, "output") for w in writers] + [(r, "anti") for r in readers]
            found += [((a.step, buffer, element, e.step, KINDS.index(kind)),
                       Dependence(e.instance, a.instance, kind, buffer, element)) for e, kind in earlier]
            if a.read:
                readers.append(a)
            if a.wrote:
                writers.append(a)
    return [dep for _, dep in sorted(found, key=lambda f: f[0])]


# --- queries tests ask ---------------------------------------------------------------------------

def _op_set(spec) -> list:
    """Ops given as a stage name (all its ops), an op id `(stage, index)`, or a list of them."""
    one = isinstance(spec, str) or isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], int)
    return [spec] if one else list(spec)


def _in(op: tuple[str, int], ops: list) -> bool:
    return op in ops or op[0] in ops


def between(deps: Iterable[Dependence], sources, sinks) -> list[Dependence]:
    """The dependences from an op of `sources` to an op of `sinks` (each a stage name, an op
    id `(stage, index)`, or a list of them)."""
    sources, sinks = _op_set(sources), _op_set(sinks)
    return [d for d in deps if _in(d.src.op, sources) and _in(d.dst.op, sinks)]


def has_dependence(deps: Iterable[Dependence], xs, ys) -> bool:
    """Whether any dependence joins an op of `xs` and an op of `ys`, either way round."""
    deps = list(deps)
    return bool(between(deps, xs, ys) or between(deps, ys, xs))


def distance_vectors(deps: Iterable[Dependence], over: Iterable[str], fixed: Iterable[str] = ()) -> set[tuple]:
    """The distinct `dst.env[v] - src.env[v]` for `v` in `over`, over the dependences whose two
    instances both bind every variable of `over` and `fixed` and agree on those of `fixed`."""
    over, fixed = tuple(over), tuple(fixed)
    out = set()
    for d in deps:
        a, b = d.src.env, d.dst.env
        if all(v in a and v in b for v in over + fixed) and all(a[v] == b[v] for v in fixed):
            out.add(tuple(b[v] - a[v] for v in over))
    return out


def cross_point_dependences(deps: Iterable[Dependence], program: TileProgram) -> list[Dependence]:
    """The dependences between two different points of one run of a stage (same stage, same
    enclosing loop values, different values of its dims): what the tile IR rules out."""
    dims = {s.name: {d.var for d in s.dims} for s in program.stages()}

    def split(env, own):
        return ({v: x for v, x in env.items() if v not in own}, {v: x for v, x in env.items() if v in own})

    out = []
    for d in deps:
        if d.src.op[0] == d.dst.op[0]:
            (outer_a, point_a), (outer_b, point_b) = (split(i.env, dims[d.src.op[0]]) for i in (d.src, d.dst))
            if outer_a == outer_b and point_a != point_b:
                out.append(d)
    return out


def parallel_loop_dependences(deps: Iterable[Dependence], program: TileProgram) -> list[Dependence]:
    """The dependences between two different iterations of one run of a parallel loop (both
    instances inside the loop, with equal values of the loops around it and different values of
    its variable): what the tile IR rules out, as between a stage's points."""
    around = _loops_around(program)
    out = []
    for d in deps:
        outside = []  # the variables of the loops around the common loop being looked at
        for (place_a, loop), (place_b, _) in zip(around[d.src.op[0]], around[d.dst.op[0]]):
            if place_a != place_b:
                break
            a, b = d.src.env, d.dst.env
            if loop.kind == "parallel" and a[loop.var] != b[loop.var] and all(a[v] == b[v] for v in outside):
                out.append(d)
                break
            outside.append(loop.var)
    return out


def _loops_around(program: TileProgram) -> dict[str, tuple]:
    """Stage name -> the loops around it, outermost first, each as (its place in the program, loop):
    sibling loops may share a variable name, their places tell them apart."""
    out = {}

    def walk(stmts, around, place):
        for n, s in enumerate(stmts):
            here = place + (n,)
            if isinstance(s, Loop):
                walk(s.body, around + ((here, s),), here)
            elif isinstance(s, If):
                walk(s.then, around, here + ("then",))
                walk(s.orelse, around, here + ("else",))
            else:
                out[s.name] = around
    walk(program.body, (), ())
    return out


def repeated_scatter_rows(program: TileProgram, inputs=None) -> list[tuple[Instance, int]]:
    """(instance, row) for every row that one instance of a scatter names more than once (rows
    counted from the destination region's start, negative index values from its end; padding
    names none): what the contract rules out within a point."""
    arrays, out = initial_arrays(program, inputs), []
    with np.errstate(all="ignore"):
        for stage, k, env in op_instances(program.body, {}, "point"):
            op = stage.body[k]
            if isinstance(op, Scatter):
                size = region(op.dst, env, arrays).shape[op.axis]
                index = region(op.index, env, arrays).astype(np.int64)
                rows = np.where(index < 0, index + size, index)
                values, counts = np.unique(rows[rows != size], return_counts=True)
                out += [(Instance((stage.name, k), Env(env)), int(v)) for v in values[counts > 1]]
            run_op(op, env, arrays)
    return out


def touch_differences(accesses: Mapping, xs, ys, over: Iterable[str], fixed: Iterable[str] = ()) -> set[tuple]:
    """`y[over] - x[over]` for every instance x of an op of `xs` and y of an op of `ys` (op sets
    as in `between`) that touch a common element, one of them writing it, with equal `fixed`
    values; `accesses` is an `element_accesses` record.  These are the distances of the
    dependences between the two sets taken either way round (`dst - src` from xs to ys,
    `src - dst` from ys to xs), plus zero where one instance of an op in both sets writes: an
    instance meets itself.  It is what the dependence engine's `deltas` answers."""
    xs, ys, over, fixed = _op_set(xs), _op_set(ys), tuple(over), tuple(fixed)
    out = set()
    for found in accesses.values():
        left = [a for a in found if _in(a.instance.op, xs)]
        right = [b for b in found if _in(b.instance.op, ys)]
        for a in left:
            x = a.instance.env
            for b in right:
                y = b.instance.env
                if (a.wrote or b.wrote) and all(x[v] == y[v] for v in fixed):
                    out.add(tuple(y[v] - x[v] for v in over))
    return out
