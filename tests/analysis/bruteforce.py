"""A brute-force dependence checker: run the program on element IDs and watch who reads what.

This is an oracle for `fractal.analysis`, deliberately independent of it: nothing of
`fractal/analysis` is used, no isl, no symbolic access maps.  Instead the program IR is
*executed* by an "ID interpreter" (modelled on `fractal.lang.interpreter`):

* Every leaf tensor is replaced by a unique int64 scalar, its ID (0 means "no element":
  window padding, `enumerate` positions, captured constant lists).  List-valued inputs
  become FractalTensors of `i64[]` IDs with the same (ragged) list structure.
* Access operators run their real NumPy rule from the op table (`OPS[op].impl`) on those
  lists, so they move IDs around unchanged: whatever element a window, dilate, gather,
  product, ... selects, its ID says exactly which value it is.
* Every other op (a tensor op, a constant, `stack`, `length`) READS every ID of its inputs
  (`length` reads none) at the current iteration vector and returns a FRESH ID, which is
  WRITTEN at that vector: the instance that computes a value is the one that writes it.
  Yielding an existing ID from a body is an alias, not a write.
* Scan/fold/reduce states: at each step the state values are handed to the body under
  fresh *alias* IDs.  A body that yields (part of) its own incoming state passes it on by
  copying: the copy reads the yielded IDs and writes fresh ones (so does the analysis:
  "passes its own state on: copy it").  A state that merely aliases other values (a fold
  over layers whose state is the batch list) stays an alias, resolved element by element,
  and leaves the loop (next step, results) under new alias IDs, as the analysis names it
  anew (a state buffer): an enclosing loop getting its state back through an inner
  scan/fold sees a passed-on value, not a copy of its own.
* Ragged lists: the analysis reasons on the box of maximum extents, where a short scan/fold
  runs as many steps as the longest run of the same combinator; so does the brute force
  (a second run, once the first one found the longest runs).  A padding step runs the body
  on a phantom element (ID 0, or an empty list); a body that cannot (it indexes the
  element) copies the state instead.  Padding steps come last, except for reverse
  scans/folds where they come first.  Maps are not padded.
* Iteration vectors: one step number per running combinator, in execution order of the
  padded loop (a reverse loop's step t processes element N-1-t of N).  On regular lists
  these are the plain step numbers.
* A tensor computed outside a body (a captured constant, an enclosing iteration's value)
  and yielded by it is written where it was computed, not by the yielding iteration.

Blocks are derived from the IR the way the ETDG defines them: a chain of nested
combinators with only glue (access operators, zip, constants) in between is one block;
any other combinator starts a child block whose dims extend the enclosing ones.

For a block B with n dims, the dependences are the non-zero `r - w` over every read at
vector r of an ID written at vector w, both instances in B's subtree, both vectors cut to
B's dims (an instance above B's innermost loops, e.g. a state copy at a glue level, is
compared on the dims it has, the rest zero).  External ones: the writer is in a block
outside B's subtree that shares c leading dims with B: `(r[:c] - w[:c])` zero-padded to n.
`brute_force` also reports the trip counts each dim's loop ran with, so a test can tell
whether the analysis' maximum extents are exact for a block or over-approximate it.
Data-dependent gathers (`gather_dynamic`) are not modelled (NotImplementedError).
"""

from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

import fractal as ft
from fractal.lang.combinators import COMBINATORS
from fractal.lang.errors import FractalError
from fractal.lang.ir import Region
from fractal.lang.registry import OPS
from fractal.lang.types import FractalTensorType, TensorType, TupleType, int64
from fractal.lang.values import FractalTensor

ID = TensorType((), int64)
# ops that are not tensor ops yet compute (or reduce to) new values: handled as tensor ops
COMPUTING = {"stack", "length"}


def id_type(t):
    """The type `t` with every leaf tensor replaced by an ID scalar."""
    if isinstance(t, FractalTensorType):
        return FractalTensorType(id_type(t.elem))
    if isinstance(t, TupleType):
        return TupleType(tuple(id_type(e) for e in t.elems))
    return ID


def leaves(v) -> list[int]:
    """The IDs a value holds (every element of a list, at every level)."""
    if isinstance(v, FractalTensor):
        assert v._parts is None, "IR variables are never zipped lists"
        return [int(x) for x in v.compact()[0].ravel()]
    return [int(v)]


def relabel(v, fn):
    """The same (list) structure with each leaf ID x replaced by fn(x)."""
    def first(x):  # an ID (or, for the program's real inputs, any number: fn ignores it)
        x = np.asarray(x).ravel()
        return int(x[0]) if x.size else 0
    if not isinstance(v, FractalTensor):
        return np.array(fn(first(v)), dtype=np.int64)
    old, offsets = v.compact()
    new = np.array([fn(first(x)) for x in old], dtype=np.int64).reshape(len(old))
    return FractalTensor.from_storage(id_type(v.type), new, offsets, range(len(v)))


# -- blocks ---------------------------------------------------------------------------------

@dataclass
class BlockInfo:
    kinds: list
    parent: int | None
    children: list = field(default_factory=list)


def _is_glue(op: str) -> bool:
    return op in ("const", "full") or (OPS[op].kind == "access" and op not in COMPUTING)


def find_blocks(region: Region, blocks: list, owner: dict, depth: dict, block: int | None = None, s: int = 0):
    """Fill `blocks` (creation order), `owner` and `depth` (id(combinator eqn) -> its block, its dim)."""
    combs = [e for e in region.eqns if e.op in COMBINATORS]
    extend = block is not None and len(combs) == 1 and all(
        e.op in COMBINATORS or _is_glue(e.op) for e in region.eqns)
    for eqn in combs:
        if extend:
            target = block
        else:
            target = len(blocks)
            blocks.append(BlockInfo(list(blocks[block].kinds[:s]) if block is not None else [], block))
            if block is not None:
                blocks[block].children.append(target)
        blocks[target].kinds[s:] = [eqn.op]
        owner[id(eqn)] = target
        depth[id(eqn)] = s
        find_blocks(eqn.regions[0], blocks, owner, depth, target, s + 1)


# -- the ID interpreter ----------------------------------------------------------------------

class IdInterpreter:
    def __init__(self, owner: dict, longest: dict | None = None):
        self.owner = owner
        self.longest = longest or {}      # id(scan/fold eqn) -> steps to pad its runs to
        self.count = 0
        self.base: dict[int, int] = {}    # alias ID -> the ID it stands for
        self.writer: dict[int, tuple] = {}  # ID -> (block, instance) computing it
        self.reads: set[tuple] = set()    # (block, instance, ID)
        self.stack: list[tuple] = []      # (block, (id(eqn), element, reverse)) per running combinator
        self.trips: dict[int, set] = {}   # id(combinator eqn) -> the trip counts it ran with

    def _new(self) -> int:
        self.count += 1
        return self.count

    def here(self) -> tuple:
        """(block, instance): the instance is one (loop, element, reverse) per running loop."""
        return self.stack[-1][0], tuple(loop for _, loop in self.stack)

    def fresh(self, _old=None) -> int:
        """A new value computed (written) by the current instance."""
        x = self._new()
        if self.stack:
            self.writer[x] = self.here()
        return x

    def read(self, values) -> None:
        if not self.stack:
            return
        here = self.here()
        for v in values:
            for x in leaves(v):
                x = self.base.get(x, x)
                if x in self.writer:
                    self.reads.add(here + (x,))

    def alias(self, v):
        def new(x):
            if x == 0:
                return 0
            a = self._new()
            self.base[a] = self.base.get(x, x)
            return a
        return relabel(v, new)

    def run(self, region: Region, args, outer) -> list:
        env = ChainMap(dict(zip(region.params, args)), outer)
        for eqn in region.eqns:
            vals = [env[v] for v in eqn.inputs]
            op, attrs = eqn.op, eqn.attrs
            if op in COMBINATORS:
                outs = self.combinator(eqn, vals, env)
            elif op == "gather_dynamic":
                raise NotImplementedError("brute force: data-dependent gather indices are not modelled")
            elif op == "window":
                outs = OPS[op].impl(*vals, **{**attrs, "pad_value": 0})  # padding is "no element"
            elif op == "enumerate":
                outs = [FractalTensor.from_elements(ID, [np.array(0, np.int64)] * len(vals[0]))]
            elif op == "const_list":
                outs = [relabel(v, lambda x: 0) for v in OPS[op].impl(**attrs)]
            elif op == "slices":  # every slice is a part of the same value
                count = eqn.inputs[0].type.shape[attrs["axis"]]
                outs = [FractalTensor.from_elements(ID, [vals[0]] * count)]
            elif _is_glue(op) and op not in ("const", "full"):
                outs = OPS[op].impl(*vals, **attrs)
            else:  # a computation: reads its inputs, writes new values
                self.read(vals if op != "length" else ())
                outs = [np.array(self.fresh(), np.int64) for _ in eqn.outputs]
            env.maps[0].update(zip(eqn.outputs, outs))
        return [env[v] for v in region.results]

    def combinator(self, eqn, vals, env) -> list:
        block, region = self.owner[id(eqn)], eqn.regions[0]
        k = eqn.attrs.get("n_state", 0)
        states, lists = list(vals[:k]), vals[k:]
        n = len(lists[0])
        self.trips.setdefault(id(eqn), set()).add(n)
        reverse = eqn.attrs.get("reverse", False)
        per_element = [None] * n
        steps = n if eqn.op == "map" else max(n, self.longest.get(id(eqn), 0))
        for i in (range(steps - 1, -1, -1) if reverse else range(steps)):
            self.stack.append((block, (id(eqn), i, reverse)))
            elems = [xs[i] for xs in lists] if i < n else None
            if eqn.op == "map":
                per_element[i] = self.run(region, elems, env)
            elif elems is None:
                states = self.padding_step(region, states, lists, env)
            else:
                states = per_element[i] = self.state_step(region, states, elems, env)
            self.stack.pop()
        if eqn.op in ("map", "scan"):
            return [FractalTensor.from_elements(id_type(o.type.elem), [r[j] for r in per_element])
                    for j, o in enumerate(eqn.outputs)]
        return states

    def padding_step(self, region, states, lists, env) -> list:
        """A step past this list's end: the body runs on a phantom element (no element, an empty
        list), as in the analysis' box; a body that cannot (it indexes the element) copies the state."""
        phantom = [np.array(0, np.int64) if isinstance(xs.elem_type, TensorType)
                   else FractalTensor.from_elements(xs.elem_type.elem, []) for xs in lists]
        try:
            return self.state_step(region, states, phantom, env)
        except FractalError:
            return [self.copy(s) for s in states]

    def state_step(self, region, states, elems, env) -> list:
        """One scan/fold step: the body sees its state under fresh alias IDs; yielding (part of)
        them copies the state, anything else is passed on under new alias IDs (an enclosing
        loop getting its own state back through this one sees a new value, not its own)."""
        incoming = [self.alias(s) for s in states]
        own = {x for s in incoming for x in leaves(s)} - {0}
        ys = self.run(region, incoming + elems, env)
        return [self.copy(y) if own & set(leaves(y)) else self.alias(y) for y in ys]

    def copy(self, y):
        self.read([y])
        return relabel(y, self.fresh)


# -- dependences ----------------------------------------------------------------------------

class BruteBlock(NamedTuple):
    kinds: tuple            # the combinator kind of each dim
    dependences: frozenset  # all non-zero distance vectors (internal and external)
    external: frozenset     # those on writes of blocks outside this block's subtree
    trips: tuple            # per dim, the set of trip counts its loop ran with (ragged: several)
    subtree: tuple          # positions (in this list) of this block and of the blocks nested in it


def _diff(r, w, c, n):
    c = min(c, len(r), len(w))
    return tuple(a - b for a, b in zip(r[:c], w[:c])) + (0,) * (n - c)


def brute_force(f, *args) -> list[BruteBlock]:
    """One `BruteBlock` per block, in the analysis' pre-order (outer blocks first, program
    order), so `zip(ft.analyze(f, *args).blocks, brute_force(f, *args))` pairs them up."""
    f = f if isinstance(f, ft.Function) else ft.function(f)
    program, _, flat = f.traced(args, {})
    blocks, owner, depth = [], {}, {}
    find_blocks(program.body, blocks, owner, depth)
    first = IdInterpreter(owner)  # a first run finds how long each loop runs at most
    first.run(program.body, [relabel(v, lambda x: first.fresh()) for v in flat], {})
    longest = {e: max(counts) for e, counts in first.trips.items()}
    interp = IdInterpreter(owner, longest)  # the run that records, padded to the box
    interp.run(program.body, [relabel(v, lambda x: interp.fresh()) for v in flat], {})

    def chain(b):  # b and its ancestors
        return [b] + (chain(blocks[b].parent) if blocks[b].parent is not None else [])

    def shared(a, b):
        return max((len(blocks[x].kinds) for x in set(chain(a)) & set(chain(b))), default=0)

    # steps of each loop: its longest run (a loop that only ran inside padding steps: there)
    steps = {e: max(longest.get(e, 0), *counts) for e, counts in interp.trips.items()}

    def vector(instance):  # step numbers; a reverse loop's padding steps come first
        return tuple(steps[e] - 1 - i if rev else i for e, i, rev in instance)

    deps = [set() for _ in blocks]
    ext = [set() for _ in blocks]
    for rb, r, x in interp.reads:
        wb, w = interp.writer[x]
        rv, wv = vector(r), vector(w)
        for b in chain(rb):  # every block whose subtree holds the reader
            n = len(blocks[b].kinds)
            if b in chain(wb):
                v = _diff(rv, wv, n, n)
            else:
                c = min(shared(b, wb), n)
                v = _diff(rv, wv, c, n) if c else (0,) * n
                if any(v):
                    ext[b].add(v)
            if any(v):
                deps[b].add(v)

    trips = {}  # (block, depth) -> trip counts of the block's own loops at that depth
    for eqn_id, counts in first.trips.items():  # the real program's trip counts
        b = owner[eqn_id]
        trips.setdefault((b, depth[eqn_id]), set()).update(counts)

    def trips_of(b, d):  # a dim inherited from an enclosing block is that block's loop
        while (b, d) not in trips and blocks[b].parent is not None:
            b = blocks[b].parent
        return frozenset(trips.get((b, d), ()))

    order = []

    def visit(b):
        first = len(order)
        order.append(b)
        for c in blocks[b].children:
            visit(c)
        spans[b] = tuple(range(first, len(order)))
    spans = {}
    for b, info in enumerate(blocks):
        if info.parent is None:
            visit(b)
    return [BruteBlock(tuple(blocks[b].kinds), frozenset(deps[b]), frozenset(ext[b]),
                       tuple(trips_of(b, d) for d in range(len(blocks[b].kinds))), spans[b])
            for b in order]
