"""Read the mesh IR text form (`fractal.backends.dataflow.mesh_printer`) back into its dataclasses.

`parse_mesh(print_mesh(p)) == p` for every printable program `p`, its machine's provenance
included.  The grammar is the tile IR's (`fractal/lower/tile_ir.lark`) with the mesh rules of
`mesh_ir.lark` appended, and the tree is built by the tile parser's builder extended with those
rules, so tile ops, regions and indices read exactly as in a tile program.  Mistakes raise
`ParseError` with the line and column; text that is not a `str` a `FractalTypeError`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lark import Lark, Token

from fractal.lang.array_text import GRAMMAR_DIR
from fractal.lang.errors import ArgumentError
from fractal.lang.text_form import TextForm
from fractal.lower import tile_parser
from fractal.lower.tile_ir import Dim, TILE_OPS

from .mesh_ir import (Alloc, Compute, Free, HostArray, Load, LocalBuffer, MeshProgram, Multicast, Pes, Send, Sends, Shift,
                      Store, Superstep)
from .mesh_printer import SPEC_FIELDS
from .spec import MeshSpec

_TILE_GRAMMAR = Path(tile_parser.__file__).with_name("tile_ir.lark")
_MESH_GRAMMAR = Path(__file__).with_name("mesh_ir.lark")


def parse_mesh(text: str) -> MeshProgram:
    """Parse one `mesh @name { ... }`."""
    return _FORM.parse(text, "parse_mesh", _Build(), "mesh")


@lru_cache(maxsize=None)
def _parser() -> Lark:
    grammar = _TILE_GRAMMAR.read_text(encoding="utf-8") + "\n" + _MESH_GRAMMAR.read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", start="mesh", maybe_placeholders=False, propagate_positions=True,
                import_paths=[GRAMMAR_DIR])


_FORM = TextForm("<mesh IR text>", _parser, {"CMP": "comparison"})
_error, _string, _dtype = _FORM.error, _FORM.string, _FORM.dtype


def _number(tok: Token):
    return int(tok) if tok.type == "INT" else float(tok)


class _Build(tile_parser._Build):
    """The tile IR's builder (ops, regions, indices, dims) plus the mesh rules."""

    def mesh(self, c):
        name, spec, *items = c
        kinds = (HostArray, LocalBuffer, Alloc, Load, Superstep, Store, Free)
        groups = {k: tuple(x for x in items if type(x) is k) for k in kinds}
        return MeshProgram(str(name)[1:], spec, groups[HostArray], groups[LocalBuffer], groups[Alloc],
                           groups[Load], groups[Superstep], groups[Store], groups[Free])

    def machine(self, c):
        name, *fields = c
        values, sources = {}, {}
        for key, value, source in fields:
            if key not in SPEC_FIELDS:
                raise _error(f"unknown machine field '{key}' (a machine has {', '.join(SPEC_FIELDS)})",
                             key.line, key.column)
            if key in values:
                raise _error(f"machine field '{key}' is given twice", key.line, key.column)
            values[str(key)] = value
            if source:
                sources[str(key)] = source
        missing = [f for f in ("rows", "cols") if f not in values]
        if missing:
            raise _error(f"the machine needs {' and '.join(missing)}", name.line, name.column)
        try:
            return MeshSpec(_string(name), **values, sources=tuple(sorted(sources.items())))
        except ArgumentError as e:
            raise _error(e.message, name.line, name.column) from None

    def spec_field(self, c):
        key, value, *source = c
        if isinstance(value, Token):
            value = str(value) if value.type == "NAME" else _number(value)
        return key, value, _string(source[0]) if source else ""

    rates = tuple
    rate = staticmethod(lambda c: (str(c[0]), _number(c[1])))

    def host_array(self, c):
        name, dt, shape, role, *data = c
        dtype = _dtype(dt)
        value = _FORM.array(data[0], shape, dtype, f"array {name}") if data else None
        return HostArray(str(name), shape, dtype, str(role), value)

    local_buffer = staticmethod(lambda c: LocalBuffer(str(c[0]), c[2], _dtype(c[1])))
    alloc = staticmethod(lambda c: Alloc(tuple(str(n) for n in c[:-1]), c[-1]))
    free = staticmethod(lambda c: Free(tuple(str(n) for n in c[:-1]), c[-1]))
    pes = staticmethod(lambda c: Pes(*c))
    pe = tuple
    signed = staticmethod(lambda c: -int(c[1]) if len(c) == 2 else int(c[0]))
    mesh_load = staticmethod(lambda c: Load(*c))
    mesh_store = staticmethod(lambda c: Store(*c))
    label = staticmethod(lambda c: _string(c[0]))

    def superstep(self, c):
        label = _string(c.pop(0)) if c and isinstance(c[0], Token) else ""
        pick = lambda *kinds: tuple(x for x in c if isinstance(x, kinds))  # noqa: E731
        return Superstep(label, pick(Alloc), pick(Compute), pick(Send, Shift, Multicast, Sends), pick(Free))

    def compute(self, c):
        pes, *rest = c
        label = next((x for x in rest if isinstance(x, str)), "")
        return Compute(pes, tuple(x for x in rest if isinstance(x, TILE_OPS)),
                       tuple(x for x in rest if isinstance(x, Dim)), label)

    send = staticmethod(lambda c: Send(c[0], c[1], c[3], c[4], c[2]))
    starts = tuple
    sends_row = staticmethod(lambda c: (c[0] + c[2], c[1], c[3]))

    def sends(self, c):
        channel, src, dst, *rows = c
        return Sends(src, dst, tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(r[2] for r in rows), channel)

    shift = staticmethod(lambda c: Shift(c[0], c[5], c[6], str(c[1]), c[2], str(c[3]), c[4]))
    multicast = staticmethod(lambda c: Multicast(c[0], c[4], c[5], str(c[1]), c[2], c[3]))
