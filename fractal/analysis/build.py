"""Build the ETDG of a traced program for given argument sizes.

The program is walked once, abstractly: every variable gets a `Ref` (which
buffer elements it is, see `refs.py`), a `Local` (a tensor computed by an op
of the current iteration) or a `Constant`.  Combinators open blocks and dims;
access operators only transform Refs (table `ACCESS_RULES`); tensor ops become
`OpNode`s whose buffer inputs are recorded as read accesses.

Scan/fold states are the subtle part.  The state seen at step i is the value
yielded at step i-1 (or the initial value at step 0).  When the yielded value
is an alias of other buffers (a fold over layers whose state is the batch list
the layer's map produced), the state buffer is *virtual*: reads of it are
resolved to the elements of the aliased buffers at the end, so a layer's
step t depends on step t of the previous layer only, not on the whole layer.
"""

from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass, replace

import islpy as isl

from ..lang.combinators import COMBINATORS
from ..lang.ir import Eqn, Program, Region
from ..lang.types import FractalTensorType, TensorType
from ..lang.values import FractalTensor
from . import refs as R
from .etdg import ETDG, Access, Block, Buffer, Dim, OpNode


@dataclass(frozen=True)
class Local:
    """A tensor computed in the current iteration (by op `op`, or a constant when op is None)."""

    op: int | None
    s: int


class _Block:
    def __init__(self, id_, dims, parent, loc):
        self.id, self.dims, self.parent, self.loc = id_, list(dims), parent, loc
        self.ops: list[int] = []
        self.children: list[int] = []


GLUE = {"zip", "const", "full", "const_list", "enumerate"}


def _is_glue(eqn: Eqn) -> bool:
    return eqn.op in GLUE or eqn.op in ACCESS_RULES


def _extents_of(value: FractalTensor) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """Max length and raggedness of each list level of an argument (0 for levels with no lists)."""
    extents, ragged, level = [], [], [value]
    for d in range(value.depth):  # by the type: an empty list still has all its levels
        lengths = [len(x) for x in level]
        extents.append(max(lengths, default=0))
        ragged.append(len(set(lengths)) > 1)
        if d + 1 < value.depth:  # the last level's elements are tensors: no need to build them
            level = [e for x in level for e in x]
    return tuple(extents), tuple(ragged)


class Builder:
    def __init__(self, program: Program, args):
        self.program, self.args = program, args
        self.buffers: dict[str, Buffer] = {}
        self.blocks: list[_Block] = []
        self.ops: list[OpNode] = []
        self.accesses: list[Access] = []
        self.maps: list[isl.Map] = []       # isl form of accesses (parallel list)
        self.resolved: dict[str, tuple] = {}  # virtual buffer -> pieces it stands for
        self.open_states: set[str] = set()  # states of the combinators whose body is being walked
        self.ragged: dict[int, bool] = {}

    # -- entry --------------------------------------------------------------------------
    def build(self) -> ETDG:
        env = {}
        for var, value in zip(self.program.params, self.args):
            if isinstance(var.type, FractalTensorType):
                extents, ragged = _extents_of(value)
                self.buffers[var.name] = Buffer(var.name, "input", _leaf(var.type), extents, ragged, var.name)
                env[var] = R.identity(var.name, 0, extents)
            else:
                self.buffers[var.name] = Buffer(var.name, "input", var.type, (), (), var.name)
                env[var] = R.identity(var.name, 0, ())
        self.walk(self.program.body, env, None, 0)
        outputs = []
        for v in self.program.results:
            val = env.get(v)
            if isinstance(val, R.Ref):
                outputs += [buf for p in val.pieces for buf, _, _ in self.resolve(p.buffer, p.map, (False, False))]
        return self.finish(tuple(dict.fromkeys(outputs)))

    # -- walking ------------------------------------------------------------------------
    def walk(self, region: Region, env: dict, block: _Block | None, s: int) -> None:
        combinators = [e for e in region.eqns if e.op in COMBINATORS]
        extend = (block is not None and len(combinators) == 1
                  and all(_is_glue(e) or e.op in COMBINATORS for e in region.eqns))
        for eqn in region.eqns:
            ins = [env[v] for v in eqn.inputs]
            if eqn.op in COMBINATORS:
                if extend:
                    target = block
                else:
                    parent_dims = block.dims[:s] if block is not None else []
                    target = self.new_block(parent_dims, block, eqn)
                outs = self.combinator(eqn, ins, target, s, env)
            elif eqn.op in ACCESS_RULES:
                ins = [self.as_ref(v, block, s) if v is not None else v for v in ins]
                outs = ACCESS_RULES[eqn.op](self, eqn, [R.lift(v, s) if isinstance(v, R.Ref) else v for v in ins])
            elif eqn.op in ("const", "full"):
                outs = [Local(None, s)]
            elif eqn.op in ("const_list", "enumerate"):
                outs = [self.constant_list(eqn, ins, s)]
            elif eqn.op == "zip":
                outs = ins
            else:
                outs = self.operation(eqn, ins, block, s)
            env.update(zip(eqn.outputs, outs))

    def new_block(self, dims, parent: _Block | None, eqn: Eqn) -> _Block:
        blk = _Block(len(self.blocks), dims, parent.id if parent else None, eqn.loc)
        self.blocks.append(blk)
        if parent is not None:
            parent.children.append(blk.id)
        return blk

    def operation(self, eqn: Eqn, ins, block, s) -> list:
        op = OpNode(len(self.ops), eqn.op, block.id if block else None, eqn.loc)
        self.ops.append(op)
        if block is not None:
            block.ops.append(op.id)
        for v in ins if eqn.op != "length" else ():  # a length reads no element
            if isinstance(v, R.Ref):
                v = R.lift(v, s)
                self.read(block, R.everything(v) if v.k else v, op.id)
        return [Local(op.id, s) for _ in eqn.outputs]

    def constant_list(self, eqn: Eqn, ins, s: int) -> R.Ref:
        name = f"const%{eqn.outputs[0].name}"
        if eqn.op == "const_list":
            value = FractalTensor.from_storage(eqn.attrs["type"], eqn.attrs["leaves"].value,
                                               tuple(o.value for o in eqn.attrs["offsets"]),
                                               range(eqn.attrs["length"]))
            extents, ragged = _extents_of(value)
            label = "a constant list"
        else:  # the positions of the enumerated list: as ragged as it is
            extents, ragged = (ins[0].extents[0],), (self.is_ragged(ins[0]),)
            label = f"enumerate({self.describe(ins[0])})"
        self.buffers[name] = Buffer(name, "const", _leaf(eqn.outputs[0].type), extents, ragged, label)
        return R.identity(name, s, extents)

    # -- combinators --------------------------------------------------------------------
    def combinator(self, eqn: Eqn, ins, blk: _Block, s: int, outer: dict) -> list:
        attrs = eqn.attrs
        k = attrs.get("n_state", 0)
        reverse = attrs.get("reverse", False)
        states, lists = ins[:k], [R.lift(self.as_ref(v, blk, s), s) for v in ins[k:]]
        ragged = any(self.is_ragged(x) for x in lists)  # zipped lists have equal lengths: any one says it
        if reverse:  # the dim counts steps in execution order, so every dependence points forward
            lists = [R.reverse(x, per_sample=ragged) for x in lists]
        n = max(x.extents[0] for x in lists)
        src = self.describe(*lists)
        dim = Dim(f"{eqn.op}{s}", eqn.op, n, src, ragged, reverse)
        label = f"{eqn.op}({src})"  # what the combinator's results are, in the user's terms
        blk.dims = blk.dims[:s] + [dim]
        body = eqn.regions[0]
        env = ChainMap({}, outer)  # bodies see the enclosing regions' variables
        state_buffers = []
        for j, (param, init) in enumerate(zip(body.params[:k], states)):
            name = f"state%{eqn.outputs[j].name}"
            state_buffers.append(name)
            env[param] = self.state_ref(name, init, param.type, s, n, blk, label)
        self.open_states.update(state_buffers)  # reads of them in the body are carried reads
        for param, x in zip(body.params[k:], lists):
            env[param] = R.Ref(x.pieces, s + 1, x.extents[1:])
        self.walk(body, env, blk, s + 1)
        # a tensor computed outside the body (a captured constant, an outer value) is passed on,
        # not computed by this iteration: it is written where it was computed, and aliased here
        yields = [self.as_ref(y, blk, s) if isinstance(y, Local) and y.s <= s else y
                  for y in (env[v] for v in body.results)]
        if eqn.op == "map":
            return [self.map_output(var, y, blk, s, n, label) for var, y in zip(eqn.outputs, yields)]
        outs = []
        for j, (name, y) in enumerate(zip(state_buffers, yields)):
            self.define_state(name, y, blk, s, n, state_buffers)
            full = R.identity(name, s, (n,) + self.buffers[name].extents[s + 1:])
            if eqn.op == "scan":
                outs.append(R.reverse(full, per_sample=ragged) if reverse else full)
            elif n == 0:
                outs.append(states[j])
            else:  # the last step: per sample when the lengths differ
                outs.append(R.list_index(full, n - 1, per_sample=ragged))
        self.open_states.difference_update(state_buffers)
        return outs

    def state_ref(self, name, init, type_, s, n, blk, label) -> R.Ref:
        """Step i reads state[i-1] (a carried read) or, at step 0, the initial value."""
        pend = self.pending_extents(init, type_)
        extents = tuple(d.extent for d in blk.dims[:s]) + (n,) + pend
        ragged = tuple(d.ragged for d in blk.dims[:s + 1]) + (False,) * len(pend)
        self.buffers[name] = Buffer(name, "state", _leaf(type_), extents, ragged, label)
        scope = R.names("i", s)
        rest = R.names("r", len(pend))
        prev = isl.Map(f"{{ [{', '.join(scope + [f'i{s}'] + rest)}] -> [{', '.join(scope + [f'i{s} - 1'] + rest)}]"
                       f" : i{s} >= 1 }}")
        pieces = [R.Piece(name, prev)]
        if isinstance(init, R.Ref):
            first = R.lift(init, s + 1)
            zero = isl.Set(f"{{ [{', '.join(R.names('i', s + 1) + rest)}] : i{s} = 0 }}")
            pieces += [replace(p, map=p.map.intersect_domain(zero)) for p in first.pieces]
        return R.Ref(tuple(pieces), s + 1, pend)

    def define_state(self, name, y, blk, s, n, siblings) -> None:
        """The state yielded at step i is state[i]: an alias (virtual buffer) or a real write."""
        if isinstance(y, R.Ref) and not any(p.buffer in siblings for p in y.pieces):
            self.resolved[name] = R.lift(y, s + 1)
            return
        if isinstance(y, R.Ref):  # passes (part of) its own state on: copy it, reading what it copies
            self.read(blk, R.everything(R.lift(y, s + 1)), None)
        self.write(blk, name, s + 1, self.buffers[name].extents[s + 1:])

    def map_output(self, var, y, blk, s, n, label) -> R.Ref:
        """Element i of a map's output is the body's result at i: an alias, or a new buffer
        (as ragged as the nest that writes it)."""
        if isinstance(y, R.Ref):
            y = R.lift(y, s + 1)
            return R.Ref(y.pieces, s, (n,) + y.extents)
        buf = f"%{var.name}"
        leaf = _leaf(var.type)
        extents = tuple(d.extent for d in blk.dims[:s + 1])
        self.buffers[buf] = Buffer(buf, "intermediate", leaf, extents, tuple(d.ragged for d in blk.dims[:s + 1]), label)
        self.write(blk, buf, s + 1, ())
        return R.identity(buf, s, (n,))

    # -- accesses -----------------------------------------------------------------------
    def domain(self, blk: _Block | None, depth: int) -> isl.Set:
        dims = blk.dims[:depth] if blk is not None else []
        names = R.names("i", len(dims))
        cond = " and ".join(f"0 <= {v} < {d.extent}" for v, d in zip(names, dims))
        return isl.Set(f"{{ [{', '.join(names)}] : {cond} }}" if cond else "{ [] }")

    def read(self, blk, ref: R.Ref, op) -> None:
        for p in ref.pieces:
            m = p.map.intersect_domain(self.domain(blk, ref.s))
            if not m.is_empty():
                flags = (p.data_dependent, p.per_sample)
                self.record(blk, p.buffer, "read", m, op, flags, p.buffer in self.open_states)

    def write(self, blk, buffer, s, pend) -> None:
        scope = R.names("i", s)
        rest = R.names("r", len(pend))
        bounds = " and ".join(f"0 <= {v} < {e}" for v, e in zip(rest, pend))
        m = isl.Map(f"{{ [{', '.join(scope)}] -> [{', '.join(scope + rest)}]" + (f" : {bounds} }}" if bounds else " }"))
        self.record(blk, buffer, "write", m.intersect_domain(self.domain(blk, s)), None, (False, False), False)

    def record(self, blk, buffer, kind, m, op, flags, carried) -> None:
        """An access; `flags`: (data-dependent, per-sample)."""
        self.accesses.append(Access(blk.id if blk else None, buffer, kind, "", op, flags[0], carried, flags[1]))
        self.maps.append(m)

    def as_ref(self, v, blk, s):
        """A Local flowing into list structure (repeat, slices) becomes a buffer written here."""
        if not isinstance(v, Local):
            return v
        name = f"%local{len(self.buffers)}"
        dims = blk.dims[:v.s] if blk else []
        what = "a constant" if v.op is None else f"{self.ops[v.op].op}(...) at line {self.ops[v.op].loc.line}"
        self.buffers[name] = Buffer(name, "intermediate", None, tuple(d.extent for d in dims),
                                    tuple(d.ragged for d in dims), what)
        self.write(blk, name, v.s, ())
        return R.identity(name, v.s, ())

    # -- helpers ------------------------------------------------------------------------
    def pending_extents(self, init, type_) -> tuple[int, ...]:
        if isinstance(init, R.Ref):
            return init.extents
        return ()

    def describe(self, *refs: R.Ref) -> str:
        """The lists in the user's terms: the buffers they read (`batch`, `map(batch)`, ...), a
        scan's or fold's own state left out; zipped lists as `zip(a, b)`."""
        def one(ref):
            names = sorted({self.buffers[p.buffer].label or p.buffer for p in ref.pieces
                            if not p.buffer.startswith("state%")})
            return " + ".join(names) if names else "state"
        texts = list(dict.fromkeys(one(r) for r in refs))
        return texts[0] if len(texts) == 1 else f"zip({', '.join(texts)})"

    def is_ragged(self, ref: R.Ref) -> bool:
        """Whether the list level about to be iterated (pending level 0) is ragged in its buffer."""
        for p in ref.pieces:
            buf = self.buffers.get(p.buffer)
            if buf is None or not any(buf.ragged):
                continue
            n_in = p.map.dim(isl.dim_type.in_)
            xs = R.names("x", n_in)
            ys = [f"{x} + 1" if k == ref.s else x for k, x in enumerate(xs)]
            step = isl.Map(f"{{ [{', '.join(xs)}] -> [{', '.join(ys)}] }}")
            moved = p.map.reverse().apply_range(step).apply_range(p.map)  # element -> next element's
            if moved.is_empty():
                continue
            deltas = moved.deltas()
            n_out = p.map.dim(isl.dim_type.out)
            lead = n_out - len(buf.ragged)  # a constant list made inside a loop is indexed by its scope first
            ds = R.names("d", n_out)
            for j in range(n_out):  # the first buffer level the step moves along
                nonzero = isl.Set(f"{{ [{', '.join(ds)}] : d{j} < 0 or d{j} > 0 }}")
                if not deltas.intersect(nonzero).is_empty():
                    if j >= lead and buf.ragged[j - lead]:
                        return True
                    break
        return False

    # -- finishing ----------------------------------------------------------------------
    def finish(self, outputs) -> ETDG:
        accesses = []
        for a, m in zip(self.accesses, self.maps):
            for buf, mm, (dd, ps) in self.resolve(a.buffer, m, (a.data_dependent, a.per_sample)):
                accesses.append(Access(a.block, buf, a.kind, str(mm.coalesce()), a.op, dd, a.carried, ps))
        used = {a.buffer for a in accesses}
        buffers = tuple(b for b in self.buffers.values() if b.name not in self.resolved and
                        (b.name in used or b.kind == "input"))
        blocks = tuple(Block(b.id, tuple(b.dims), b.parent, b.loc, tuple(b.ops), tuple(b.children))
                       for b in self.blocks)
        return ETDG(self.program.name, buffers, blocks, tuple(self.ops), tuple(accesses), outputs)

    def resolve(self, buffer, m, flags, depth=0):
        """Replace accesses to virtual (alias) state buffers by the elements they stand for;
        `flags` (data-dependent, per-sample) hold if they hold for the access or the alias."""
        if buffer not in self.resolved or depth > 64:
            return [(buffer, m, flags)]
        out = []
        for p in self.resolved[buffer].pieces:
            mm = m.apply_range(p.map)
            if not mm.is_empty():
                out += self.resolve(p.buffer, mm, (flags[0] or p.data_dependent, flags[1] or p.per_sample), depth + 1)
        return out


def _leaf(t):
    while isinstance(t, FractalTensorType):
        t = t.elem
    return t if isinstance(t, TensorType) else None


# -- access operators: op -> rule(builder, eqn, input refs) -> output refs ------------------


def _window(b, e, ins):
    a = e.attrs
    return [R.window(ins[0], a["size"], a["stride"], a["dilation"], a["padding"])]


def _product(b, e, ins):
    xs, ys = ins
    return [R.product_left(xs, ys.extents[0]), R.product_right(ys, xs.extents[0])]


def _slices(b, e, ins):
    (x,) = ins
    count = e.inputs[0].type.shape[e.attrs["axis"]]
    return [R.slices_of(x, count)]


ACCESS_RULES = {
    "list_index": lambda b, e, ins: [R.list_index(ins[0], e.attrs["i"],
                                                  per_sample=e.attrs["i"] < 0 and b.is_ragged(ins[0]))],
    "list_slice": lambda b, e, ins: [R.list_slice(ins[0], e.attrs["start"], e.attrs["stop"], e.attrs["step"])],
    "reverse": lambda b, e, ins: [R.reverse(ins[0], per_sample=b.is_ragged(ins[0]))],
    "gather": lambda b, e, ins: [R.gather(ins[0], e.attrs["indices"])],
    "gather_dynamic": lambda b, e, ins: [R.gather_dynamic(ins[0], e.inputs[1].type.shape[0] if isinstance(
        e.inputs[1].type, TensorType) else ins[1].extents[0])],
    "join": lambda b, e, ins: [R.join(ins[0], ins[1])],
    "flatten": lambda b, e, ins: [R.flatten(ins[0])],
    "split": lambda b, e, ins: [R.split(ins[0], e.attrs["n"])],
    "window": _window,
    "shifted_window": lambda b, e, ins: [R.shifted_window(ins[0], e.attrs["size"], e.attrs["dilation"])],
    "dilate": lambda b, e, ins: [R.dilate(ins[0], e.attrs["d"])],
    "interleave": lambda b, e, ins: [R.interleave(ins[0])],
    "repeat": lambda b, e, ins: [R.repeat(ins[0], e.attrs["n"])],
    "product": _product,
    "slices": _slices,
}
