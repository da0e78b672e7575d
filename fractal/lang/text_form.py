"""What the three text parsers share: the program IR's (`fractal.lang.parser`), the tile IR's
(`fractal.lower.tile_parser`) and the mesh IR's (`fractal.backends.dataflow.mesh_parser`).

A `TextForm` is one form's reading rules: its grammar's parser, the file name its `ParseError`s
point at, how they place the line and column, and what syntax errors call its terminals.  It
parses (the text checked by `lark_errors.check_text`, syntax errors worded by
`lark_errors.syntax_error`) and reads what all forms write alike: a JSON string, a dtype name,
a constant array's data (`fractal.lang.array_text`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from lark import Lark, Token
from lark.exceptions import UnexpectedInput

from .array_text import TERMINAL_NAMES, array_from_data, position
from .errors import ParseError, SourceLoc
from .lark_errors import check_text, parse_and_build, syntax_error
from .types import DTYPES, dtype_from_name, dtype_name

# How syntax errors name the terminals every form has (a form adds its own: `%variable`...).
COMMON_TERMINAL_NAMES = {"PROGNAME": "@name", "NAME": "name", "INT": "integer", "FLOAT": "float",
                         "STRING": "string", "$END": "end of input", **TERMINAL_NAMES}


def _no_hint(text: str) -> str:
    return ""


@dataclass(frozen=True)
class TextForm:
    """One text form's reading rules (module docstring)."""

    file: str                                       # e.g. "<tile IR text>"
    parser: Callable[[], Lark]                      # the grammar's parser (built once, cached)
    terminal_names: dict = field(default_factory=dict)  # beyond COMMON_TERMINAL_NAMES
    position_first: bool = True                     # "line 3, column 4: ...", else "... at line 3, column 4"
    at_end: Callable[[str], str] = _no_hint         # a hint added to an unexpected end of input

    def parse(self, text, what: str, builder, start: str | None = None):
        """`text` parsed from rule `start` and built by `builder`; `what` names the caller in the
        error for text that is not a `str`."""
        check_text(text, self.file, what)
        return parse_and_build(self.parser(), text, builder, self.syntax_error, start, file=self.file)

    def error(self, message: str, line: int, column: int | None = None) -> ParseError:
        where = f"line {line}" if column is None else f"line {line}, column {column}"
        return ParseError(f"{where}: {message}" if self.position_first else f"{message} at {where}",
                          loc=SourceLoc(self.file, line))

    def describe(self, terminal: str) -> str:
        """A terminal as syntax errors name it: its name for people, or its literal text."""
        names = {**COMMON_TERMINAL_NAMES, **self.terminal_names}
        if terminal in names:
            return names[terminal]
        t = next((t for t in self.parser().terminals if t.name == terminal), None)
        return f"'{t.pattern.value}'" if t is not None and t.pattern.type == "str" else terminal

    def syntax_error(self, e: UnexpectedInput, text: str) -> ParseError:
        return syntax_error(e, text, self.describe, self.file, self.at_end)

    def string(self, tok: Token) -> str:
        """A `"..."` token's text (JSON escapes)."""
        try:
            return json.loads(tok)
        except ValueError as e:
            raise self.error(f"bad string literal {tok} ({e.msg})", tok.line, tok.column) from None

    def dtype(self, tok: Token) -> np.dtype:
        """A dtype name's dtype (`f32`...)."""
        try:
            return dtype_from_name(str(tok))
        except KeyError:
            known = ", ".join(dtype_name(d) for d in DTYPES)
            raise self.error(f"unknown dtype '{tok}' (expected one of {known})", tok.line, tok.column) from None

    def array(self, data, shape, dtype, what: str) -> np.ndarray:
        """An `array_data` tree read for the declared shape and dtype; data that does not fit is
        an error that names `what` it belongs to."""
        try:
            return array_from_data(data, shape, dtype)
        except ValueError as e:
            raise self.error(f"{what}: {e}", *position(data)) from None
