"""`verify_mesh(program)`: the rules a mesh program must keep before any executor runs it.

* Declarations: host arrays and local buffers share one namespace of unique names (the tile
  IR's naming rules); supported dtypes, non-negative shapes; a host array's role is input,
  output or const, a const array carries data of exactly its shape and dtype and no other does.
* Places: every `pes[...]` is a non-empty rectangle inside the mesh, a send's PEs are in the
  mesh; shift and multicast axes are `row` or `col`, rings `wrap` or `interleaved`, a
  multicast's root lies on its lines, channels are not negative; allocs and frees name at
  least one buffer, and only local buffers.
* Who touches what: a compute's ops name only local buffers (a host array there is a remote
  load or store); loads read input or const arrays into local buffers, stores write local
  buffers to output arrays; transfers move local buffers.
* Regions and ops, by the tile IR's verifier (`fractal.lower.tile_verify`) on a small tile
  program per node: a compute is a stage with the compute's dims inside loops over `pr` and
  `pc` (so every op's shape and dtype rules hold and every region is in bounds for every PE
  of the rectangle and every point of the dims, exactly); a load, store or transfer is a
  reshaping copy between its two sides (equal element counts and dtypes, both sides in
  bounds: a shift's over its rectangle, a multicast's source on the roots of its lines, a
  send's at its two PEs).  Identical nodes are checked once per program.
* Resources (`fractal.backends.dataflow.mesh_resources`): buffers are used only where they are
  allocated, allocated once, freed once; the live bytes per PE, receive buffers of rotations
  included, stay within `spec.usable_bytes` (else `SramCapacityError`); with
  `max_channels_per_router > 0`, no router carries more channels (else `RouteLimitError`).

Rule violations are `VerifyError`s whose message ends with `in <place>: <the node>`.
"""

from __future__ import annotations

import re

import numpy as np

from fractal.lang.errors import VerifyError
from fractal.lang.types import DTYPES, dtype_name
from fractal.lower.tile_affine import aff
from fractal.lower.tile_ir import Buffer, Copy, Loop, Region, Stage, TileProgram
from fractal.lower.tile_printer import name_problem
from fractal.lower.tile_verify import verify_tile_program

from .collectives import bind
from .mesh_ir import (AXES, RINGS, ROLES, Alloc, Compute, Free, HostArray, Load, Multicast, Pes, Send, Sends, Shift, Store,
                      Superstep)
from .mesh_resources import check_channels, router_channels, sram_high_water, walk  # noqa: F401 (the report's)
from .spec import MeshSpec

_NAME = re.compile(r"[A-Za-z_0-9][A-Za-z_0-9.]*\Z")


def verify_mesh(program) -> None:
    """Check `program` (module docstring); raises `VerifyError`, `SramCapacityError` or `RouteLimitError`."""
    _Verifier(program).run()
    walk(program, program.spec.usable_bytes)
    check_channels(program)


def _fail(message: str, place: str, node=None) -> VerifyError:
    text = "" if node is None else ": " + _first_line(node)
    return VerifyError(f"{message}\n  in {place}{text}")


def _first_line(node) -> str:
    try:
        line = str(node).split("\n")[0]
    except (ValueError, TypeError, AttributeError):
        line = repr(node)
    return line if len(line) <= 300 else line[:297] + "..."


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _an(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


class _Verifier:
    def __init__(self, p):
        self.p = p
        self.checked: set = set()   # nodes already verified: programs repeat their steps
        self.tile_checked: set = set()

    def run(self) -> None:
        p = self.p
        if not isinstance(p.name, str) or not _NAME.match(p.name):
            raise _fail(f"program name {p.name!r} is not a name like cannon or model.layer_0", "the program")
        if not isinstance(p.spec, MeshSpec):
            raise _fail(f"the machine is a {type(p.spec).__name__}, not a MeshSpec", "the program")
        self.names: dict = {}
        for x in (*p.arrays, *p.buffers):
            self.declaration(x)
        for place, nodes, kinds in (("the initial allocs", p.allocs, (Alloc,)), ("the loads", p.loads, (Load,))):
            self.nodes(nodes, kinds, place)
        for k, step in enumerate(p.steps):
            if not isinstance(step, Superstep):
                raise _fail(f"the steps hold supersteps, not {_an(type(step).__name__)}", "the program", repr(step))
            place = f"superstep {step.label!r}" if step.label else f"superstep {k}"
            for nodes, kinds in ((step.allocs, (Alloc,)), (step.computes, (Compute,)),
                                 (step.transfers, (Send, Shift, Multicast, Sends)), (step.frees, (Free,))):
                self.nodes(nodes, kinds, place)
        self.nodes(p.stores, (Store,), "the stores")
        self.nodes(p.frees, (Free,), "the final frees")

    def declaration(self, x) -> None:
        what = "array" if isinstance(x, HostArray) else "buffer"
        problem = name_problem(x.name, f"{what} name")
        if problem:
            raise _fail(problem, "the declarations", x)
        if x.name in self.names:
            raise _fail(f"{x.name!r} is declared twice (host arrays and local buffers share one namespace)",
                        "the declarations", x)
        self.names[x.name] = x
        if x.dtype not in DTYPES:
            raise _fail(f"{what} {x.name}: dtype {x.dtype} is not supported (use one of "
                        f"{', '.join(dtype_name(d) for d in DTYPES)})", "the declarations", repr(x))
        if any(d < 0 for d in x.shape):
            raise _fail(f"{what} {x.name}: shape {x.shape} has a negative dimension", "the declarations", x)
        if what == "buffer":
            return
        if x.role not in ROLES:
            raise _fail(f"array {x.name}: role {x.role!r} is not one of {', '.join(ROLES)}", "the declarations", x)
        if x.role == "const" and x.data is None:
            raise _fail(f"array {x.name}: a const array must carry its data", "the declarations", x)
        if x.role != "const" and x.data is not None:
            raise _fail(f"array {x.name}: {_an(x.role)} array has no data (only const arrays do)", "the declarations",
                        repr(x))
        if x.data is not None and (x.data.value.dtype != x.dtype or x.data.value.shape != x.shape):
            raise _fail(f"array {x.name}: its data is {x.data.value.dtype}{list(x.data.value.shape)}, not "
                        f"{x.dtype}{list(x.shape)} like the array", "the declarations", repr(x))

    # --- nodes ----------------------------------------------------------------------------------

    def nodes(self, nodes, kinds, place: str) -> None:
        for x in nodes:
            if not isinstance(x, kinds):
                names = " or ".join(k.__name__ for k in kinds)
                raise _fail(f"expected {names} here, not {_an(type(x).__name__)}", place, repr(x))
            try:
                if x in self.checked:
                    continue
            except TypeError:  # an unhashable piece (a malformed node): checked every time
                self.node(x, place)
                continue
            self.node(x, place)
            self.checked.add(x)  # (the checks do not depend on the place)

    def node(self, x, place: str) -> None:
        if isinstance(x, (Alloc, Free)):
            self.pes(x.pes, place, x)
            if not x.buffers:
                raise _fail(f"an {type(x).__name__.lower()} names no buffers", place, repr(x))
            for name in x.buffers:
                self.local(name, place, x)
        elif isinstance(x, (Load, Store)):
            self.load_store(x, place)
        elif isinstance(x, Compute):
            self.compute(x, place)
        else:
            self.transfer(x, place)

    def pes(self, pes, place: str, node) -> None:
        rows, cols = self.p.spec.rows, self.p.spec.cols
        if not isinstance(pes, Pes) or not (0 <= pes.r0 < pes.r1 <= rows and 0 <= pes.c0 < pes.c1 <= cols):
            raise _fail(f"{pes} is not a non-empty rectangle of PEs inside the {rows}x{cols} mesh", place, node)

    def kind(self, name: str, place: str, node) -> str:
        found = self.names.get(name)
        if found is None:
            raise _fail(f"unknown buffer or array {name!r}", place, node)
        return "array" if isinstance(found, HostArray) else "buffer"

    def local(self, name: str, place: str, node) -> None:
        if self.kind(name, place, node) == "array":
            raise _fail(f"{name!r} is a host array, not a local buffer (PEs allocate and move only local "
                        f"buffers; loads and stores reach the host)", place, node)

    def load_store(self, x, place: str) -> None:
        self.pes(x.pes, place, x)
        host, local = (x.src, x.dst) if isinstance(x, Load) else (x.dst, x.src)
        self.local(local.buffer, place, x)
        if self.kind(host.buffer, place, x) != "array":
            raise _fail(f"{host.buffer!r} is a local buffer, not a host array", place, x)
        role = self.names[host.buffer].role
        if isinstance(x, Load) and role not in ("input", "const"):
            raise _fail(f"a load reads an input or const array, and {host.buffer!r} is {_an(role)} array", place, x)
        if isinstance(x, Store) and role != "output":
            raise _fail(f"a store writes an output array, and {host.buffer!r} is {_an(role)} array", place, x)
        self.tile_check((Copy(x.src, x.dst),), x.pes, (), place, x, {host.buffer: "input" if isinstance(x, Load)
                                                                    else "output"})

    def compute(self, x: Compute, place: str) -> None:
        self.pes(x.pes, place, x)
        try:
            reads = [r.buffer for op in x.ops for r in op.reads]
            writes = [r.buffer for op in x.ops for r in op.writes]
        except (AttributeError, TypeError):
            raise _fail("a compute holds only tile ops", place, repr(x)) from None
        for names, word in ((reads, "reads"), (writes, "writes")):
            for name in names:
                if self.kind(name, place, x) == "array":
                    remote = "load" if word == "reads" else "store"
                    raise _fail(f"compute{f' {x.label!r}' if x.label else ''} on {x.pes} {word} host array "
                                f"{name!r}: a remote {remote} (a PE's compute touches only its own buffers; "
                                f"{'load it into' if remote == 'load' else 'store it from'} a local buffer)", place, x)
        self.tile_check(x.ops, x.pes, x.dims, place, x, {})

    def transfer(self, t, place: str) -> None:
        if not _is_int(t.channel) or t.channel < 0:
            raise _fail(f"channel {t.channel!r} must be an int of 0 or more", place, t)
        src, dst = (t.src_region, t.dst_region) if isinstance(t, Send) else (t.src, t.dst)
        for r in (src, dst):
            self.local(r.buffer, place, t)
        if isinstance(t, Sends):
            return self.sends(t, place)
        if isinstance(t, Send):
            for pe in (t.src, t.dst):
                if not (0 <= pe[0] < self.p.spec.rows and 0 <= pe[1] < self.p.spec.cols):
                    raise _fail(f"PE {pe} is outside the {self.p.spec.rows}x{self.p.spec.cols} mesh", place, t)
            at = lambda r, pe: bind(r, pe) if r.vars() & {"pr", "pc"} else r  # noqa: E731 (most regions are fixed)
            return self.tile_check((Copy(at(src, t.src), at(dst, t.dst)),), None, (), place, t, {})
        self.pes(t.pes, place, t)
        if t.axis not in AXES:
            raise _fail(f"axis {t.axis!r} is not one of {', '.join(AXES)}", place, t)
        if isinstance(t, Shift) and t.ring not in RINGS:
            raise _fail(f"ring {t.ring!r} is not one of {', '.join(RINGS)}", place, t)
        if isinstance(t, Shift) and not _is_int(t.by):
            raise _fail(f"shift by {t.by!r}: not an int", place, t)
        if isinstance(t, Multicast):
            line = t.pes.shape[1] if t.axis == "row" else t.pes.shape[0] if t.axis == "col" else t.pes.count
            if not _is_int(t.root) or not 0 <= t.root < line:
                what = "the rectangle's" if t.axis == "all" else "its lines of"
                raise _fail(f"multicast root {t.root!r} is not an offset on {what} {line} PEs", place, t)
            width = t.pes.shape[1]
            fixed = {"row": {"pc": t.pes.c0 + t.root}, "col": {"pr": t.pes.r0 + t.root},
                     "all": {"pr": t.pes.r0 + t.root // max(width, 1), "pc": t.pes.c0 + t.root % max(width, 1)}}[t.axis]
            src = Region(src.buffer, tuple(s.substitute(fixed) for s in src.start), src.size, src.stride)
        self.tile_check((Copy(src, dst),), t.pes, (), place, t, {})

    def sends(self, t: Sends, place: str) -> None:
        """A table of messages, checked row by row at once: PEs in the mesh, regions in bounds."""
        n = len(t)
        if not (len(t.src_starts) == len(t.dst_starts) == n):
            raise _fail(f"a sends table has {n} routes but {len(t.src_starts)} and {len(t.dst_starts)} starts", place, t)
        if any(a.vars() for r in (t.src, t.dst) for a in r.start) or any(a.const for r in (t.src, t.dst) for a in r.start):
            raise _fail("a sends table's regions are templates: their own starts must be 0", place, t)
        self.tile_check((Copy(t.src, t.dst),), None, (), place, t, {})
        if not n:
            return
        routes = np.array(t.routes, np.int64).reshape(n, 4)
        spec = self.p.spec
        outside = (routes < 0).any(1) | (routes[:, [0, 2]] >= spec.rows).any(1) | (routes[:, [1, 3]] >= spec.cols).any(1)
        if outside.any():
            row = int(np.argmax(outside))
            raise _fail(f"message {row} goes from {tuple(int(x) for x in routes[row, :2])} to "
                        f"{tuple(int(x) for x in routes[row, 2:])}: outside the "
                        f"{spec.rows}x{spec.cols} mesh", place, t)
        for region, starts, side in ((t.src, t.src_starts, "source"), (t.dst, t.dst_starts, "destination")):
            shape = np.array(self.names[region.buffer].shape, np.int64)
            at = np.array(starts, np.int64).reshape(n, len(region.size))
            extent = np.array([0 if s is None else (s - 1) * st for s, st in zip(region.size, region.stride)], np.int64)
            bad = (at < 0).any(1) | (at + extent >= shape).any(1)
            if bad.any():
                row = int(np.argmax(bad))
                raise _fail(f"message {row}'s {side} region starts at {tuple(int(x) for x in at[row])}, out of "
                            f"{region.buffer}'s bounds {tuple(int(x) for x in shape)}", place, t)

    def tile_check(self, ops, pes, dims, place: str, node, host_roles: dict) -> None:
        """Run the tile IR's verifier on `ops` as a stage with `dims` inside loops over the PEs (once per
        distinct check: the sends of a pattern often move the same regions between different PEs)."""
        key = (tuple(ops), pes, tuple(dims), tuple(sorted(host_roles.items())))
        if key in self.tile_checked:
            return
        names = sorted({r.buffer for op in ops for r in op.reads + op.writes})
        buffers = tuple(Buffer(n, self.names[n].shape, self.names[n].dtype, role=host_roles.get(n, "temp"))
                        for n in names)
        body = (Stage("compute", tuple(dims), tuple(ops), "device"),)
        if pes is not None:
            inner = Loop("pc", aff(pes.c0), aff(pes.c1), 1, "parallel", "host", body)
            body = (Loop("pr", aff(pes.r0), aff(pes.r1), 1, "parallel", "host", (inner,)),)
        try:
            verify_tile_program(TileProgram("mesh", buffers, body), contract=False)
        except VerifyError as e:
            message = e.message if isinstance(node, Compute) else e.message.split("\n  in:")[0]
            raise _fail(message.replace("stage variable", "compute dim"), place, node) from None
        self.tile_checked.add(key)
