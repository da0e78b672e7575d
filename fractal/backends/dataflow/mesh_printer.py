"""Print the mesh IR in its text form; `fractal.backends.dataflow.mesh_parser` reads it back exactly.

Spellings (grammar: `mesh_ir.lark`; a whole program is in `fractal.backends.dataflow.mesh_ir`'s
docstring), two spaces of indent per level:

* program `mesh @name { machine... arrays... buffers... allocs... loads... supersteps... stores... frees... }`;
* the machine in full, so that a program carries its spec: `machine "tiny-2x2" {`, then one
  line per field of `MeshSpec` in field order, its value and its provenance (when it has one)
  as a JSON string: `sram_bytes 65536 "tests"`, `kind mesh "tests"`, `clock_hz 1000000000.0`,
  `flops_per_cycle [float16 128.0, float32 32.0] "[D] ..."`; ints print as digits and floats
  as Python's `repr`, so each reads back as the type it was;
* host array `array ids: i64[4] const = [0, 2, 1, 3]` (the data in the program IR's array
  format, `fractal.lang.array_text`), local buffer `buffer ta: f32[2,2]`;
* `alloc ta, tb on pes[0:2, 0:2]`, `free ta on pes[0:2, 0:2]`, `load pes[0:2, 0:2]: ta[...] = a[...]`,
  `store pes[0:2, 0:2]: c[...] = tc[...]`;
* `superstep "step 0" { ... }` (`superstep {` without a label) holding its allocs, computes,
  transfers and frees in that order;
* `compute pes[0:2, 0:2] (k in 0:4) label "gates" { ops }`, the dims and the label only when
  there are any; the ops, regions and indices exactly as the tile IR prints them
  (`fractal.lower.tile_printer`);
* `send (0, 1) -> (1, 1) channel 0: ta[0:2] -> tb[0:2]`,
  `shift pes[0:2, 0:2] row by -1 wrap channel 0: ta[0:2, 0:2] -> ta[0:2, 0:2]`,
  `multicast pes[0:2, 0:2] col root 1 channel 2: ta[0:2] -> tb[0:2]`.

Words (roles, axes, rings, kinds) print as they are and `verify_mesh` checks them; names follow
the tile IR's rules (`tile_printer.name_problem`).  Every node's `str` is its text form.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np

from fractal.lang.array_text import print_array_data
from fractal.lang.types import dtype_name
from fractal.lower.tile_printer import name_problem, print_op, print_region

from .mesh_ir import (Alloc, Compute, Free, HostArray, Load, LocalBuffer, MeshProgram, Multicast, Pes, Send, Sends, Shift,
                      Store, Superstep)
from .spec import MeshSpec

_PROG_NAME = re.compile(r"[A-Za-z_0-9][A-Za-z_0-9.]*\Z")
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\Z")
SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(MeshSpec) if f.name not in ("name", "sources"))


def print_mesh(p: MeshProgram) -> str:
    """The text of `p` (module docstring)."""
    if not isinstance(p.name, str) or not _PROG_NAME.match(p.name):
        raise ValueError(f"cannot print mesh program name {p.name!r}")
    lines = [f"mesh @{p.name} {{"]
    lines += ["  " + line for line in print_spec(p.spec).split("\n")]
    lines += ["  " + str(x) for x in (*p.arrays, *p.buffers, *p.allocs, *p.loads)]
    lines += ["  " + line for s in p.steps for line in print_superstep(s).split("\n")]
    lines += ["  " + str(x) for x in (*p.stores, *p.frees)]
    lines.append("}")
    return "\n".join(lines)


def print_spec(spec: MeshSpec) -> str:
    """The `machine "name" { ... }` block: every field with its value and its provenance."""
    sources = dict(spec.sources)
    lines = [f"machine {json.dumps(str(spec.name))} {{"]
    for name in SPEC_FIELDS:
        source = sources.get(name, "")
        provenance = f" {json.dumps(source)}" if source else ""
        lines.append(f"  {name} {_spec_value(name, getattr(spec, name))}{provenance}")
    lines.append("}")
    return "\n".join(lines)


def _spec_value(field: str, value) -> str:
    if field == "flops_per_cycle":
        rates = []
        for dtype, rate in value:
            if not isinstance(dtype, str) or not _WORD.match(dtype):
                raise ValueError(f"cannot print the flops_per_cycle dtype {dtype!r}")
            rates.append(f"{dtype} {_number(field, rate)}")
        return f"[{', '.join(rates)}]"
    if isinstance(value, str):
        return _word(value)
    return _number(field, value)


def _number(field: str, x) -> str:
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        return str(int(x))
    if isinstance(x, (float, np.floating)) and math.isfinite(x):
        return repr(float(x))
    raise ValueError(f"cannot print {field} = {x!r}: not an int or a finite float")


def _name(name) -> str:
    problem = name_problem(name)
    if problem:
        raise ValueError(f"cannot print: {problem}")
    return name


def _word(w) -> str:
    """Enumerated words (roles, axes, rings, kinds) print as they are; `verify_mesh` checks them."""
    if not isinstance(w, str) or not _WORD.match(w):
        raise ValueError(f"cannot print {w!r}: not a word")
    return w


def print_pes(p: Pes) -> str:
    return f"pes[{p.r0}:{p.r1}, {p.c0}:{p.c1}]"


def print_host_array(a: HostArray) -> str:
    text = f"array {_name(a.name)}: {_dtype(a)}[{','.join(map(str, a.shape))}] {_word(a.role)}"
    if a.data is None:
        return text
    value = a.data.value
    if value.dtype != a.dtype or value.shape != a.shape:  # the text gives the data the array's type
        raise ValueError(f"cannot print array {a.name!r}: its data is {value.dtype}{list(value.shape)}, "
                         f"not {a.dtype}{list(a.shape)}")
    return f"{text} = {print_array_data(value)}"


def print_local_buffer(b: LocalBuffer) -> str:
    return f"buffer {_name(b.name)}: {_dtype(b)}[{','.join(map(str, b.shape))}]"


def _dtype(x) -> str:
    try:
        return dtype_name(x.dtype)
    except KeyError:
        raise ValueError(f"cannot print dtype {x.dtype} of {x.name!r}") from None


def print_alloc_free(a: Alloc | Free) -> str:
    if not a.buffers:  # `alloc on pes[...]` would read `on` as a buffer's name
        raise ValueError(f"cannot print an {type(a).__name__.lower()} that names no buffers")
    word = "alloc" if isinstance(a, Alloc) else "free"
    return f"{word} {', '.join(_name(b) for b in a.buffers)} on {print_pes(a.pes)}"


def print_load_store(x: Load | Store) -> str:
    word = "load" if isinstance(x, Load) else "store"
    return f"{word} {print_pes(x.pes)}: {print_region(x.dst)} = {print_region(x.src)}"


def print_compute(c: Compute) -> str:
    head = f"compute {print_pes(c.pes)}"
    if c.dims:
        head += " (" + ", ".join(f"{_name(v)} in {a}:{b}" for v, a, b in c.dims) + ")"
    if c.label:
        head += f" label {json.dumps(str(c.label))}"
    return "\n".join([head + " {", *("  " + print_op(op) for op in c.ops), "}"])


def print_transfer(t: Send | Shift | Multicast) -> str:
    regions = f"{print_region(t.src_region if isinstance(t, Send) else t.src)} -> " \
              f"{print_region(t.dst_region if isinstance(t, Send) else t.dst)}"
    if isinstance(t, Send):
        return f"send ({t.src[0]}, {t.src[1]}) -> ({t.dst[0]}, {t.dst[1]}) channel {t.channel}: {regions}"
    if isinstance(t, Shift):
        return (f"shift {print_pes(t.pes)} {_word(t.axis)} by {int(t.by)} {_word(t.ring)} "
                f"channel {int(t.channel)}: {regions}")
    if isinstance(t, Multicast):
        return f"multicast {print_pes(t.pes)} {_word(t.axis)} root {int(t.root)} channel {int(t.channel)}: {regions}"
    raise TypeError(f"cannot print {t!r}: not a transfer")


def print_sends(t: Sends) -> str:
    """A table of messages: the two template regions, then one row per message (its PEs and starts)."""
    head = f"sends channel {int(t.channel)}: {print_region(t.src)} -> {print_region(t.dst)} {{"
    rows = [f"  ({r[0]}, {r[1]}) [{', '.join(map(str, a))}] -> ({r[2]}, {r[3]}) [{', '.join(map(str, b))}]"
            for r, a, b in zip(t.routes, t.src_starts, t.dst_starts)]
    return "\n".join([head, *rows, "}"])


def print_superstep(s: Superstep) -> str:
    head = f"superstep {json.dumps(str(s.label))} {{" if s.label else "superstep {"
    body = [str(x) for x in (*s.allocs, *s.computes, *s.transfers, *s.frees)]
    return "\n".join([head, *("  " + line for text in body for line in text.split("\n")), "}"])


# Every node prints as its text form (as the tile IR's do: `fractal.lower.tile_printer`).
_STR = {MeshProgram: print_mesh, Pes: print_pes, HostArray: print_host_array,
        LocalBuffer: print_local_buffer, Alloc: print_alloc_free, Free: print_alloc_free, Load: print_load_store,
        Store: print_load_store, Compute: print_compute, Send: print_transfer, Shift: print_transfer,
        Multicast: print_transfer, Sends: print_sends, Superstep: print_superstep}
for _cls, _fn in _STR.items():  # (a MeshSpec keeps its table for people; `print_spec` is its text form)
    _cls.__str__ = _fn
