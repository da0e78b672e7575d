"""Syntax errors from lark, as `ParseError`s that name the line, column and what was expected.

Shared by the text parsers (program, tile and mesh IR, through `text_form.TextForm`), as are
`parse_and_build` and `check_text`: the text must be a `str` (else a `FractalTypeError`, a
`TypeError`), and may nest brackets (`(`, `[`, `{`, `ft<`, `array<`) at most `MAX_NESTING` deep
(else a `ParseError` at the first bracket too deep), which keeps the parser and the code that
walks what it built far from Python's recursion limit."""

from __future__ import annotations

import re
from typing import Callable

from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from .errors import FractalTypeError, ParseError, SourceLoc

MAX_NESTING = 200

# strings and comments (skipped), then openers and closers; `<` opens only after `ft` / `array`
_BRACKETS = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|(?:\bft|\barray)<|[(\[{]|[)\]}>]')
_CLOSES = {")": "(", "]": "[", "}": "{", ">": "<"}


def check_text(text, file: str, what: str) -> None:
    """`text` is a `str` nesting brackets at most `MAX_NESTING` deep (see the module docstring)."""
    if not isinstance(text, str):
        hint = "; decode it first, e.g. text.decode()" if isinstance(text, (bytes, bytearray)) else ""
        raise FractalTypeError(f"{what} takes the text as a str, got {type(text).__name__}{hint}")
    stack: list[str] = []
    for m in _BRACKETS.finditer(text):
        tok = m.group()
        if tok[0] in "\"#":
            continue
        if tok in _CLOSES:
            if stack and stack[-1] == _CLOSES[tok]:
                stack.pop()
            continue
        stack.append(tok[-1])
        if len(stack) > MAX_NESTING:
            line = text.count("\n", 0, m.start()) + 1
            column = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
            raise ParseError(f"line {line}, column {column}: brackets nest more than {MAX_NESTING} deep",
                             loc=SourceLoc(file, line))


def syntax_error(e: UnexpectedInput, text: str, describe: Callable[[str], str], file: str,
                 at_end: Callable[[str], str] = lambda text: "") -> ParseError:
    """`describe` names a terminal for people; `at_end(text)` may add a hint to an early end."""
    if isinstance(e, UnexpectedCharacters):
        word = (text[e.pos_in_stream:].split(None, 1) or [""])[0][:20]
        got, expected = f"unexpected text {word!r}", e.allowed
    elif isinstance(e, UnexpectedToken) and e.token.type != "$END":
        got, expected = f"unexpected {e.token.value!r}", e.accepts or e.expected  # accepts: exact for LALR,
        # but lark only tries terminals named in upper case: imported ones (`array_text__INT`) come from expected
        expected = set(expected) | {t for t in e.expected if not t.isupper()}
    else:  # UnexpectedEOF, or LALR's UnexpectedToken at $END
        got, expected = "unexpected end of input", getattr(e, "expected", ())
        got += at_end(text)
    line, column = e.line, e.column
    if line is None or line < 1:  # at the end: point after the last character
        line = text.count("\n") + 1
        column = len(text) - (text.rfind("\n") + 1) + 1
    want = ", ".join(sorted({describe(t) for t in expected if not t.startswith("__IGNORE")}))
    message = f"line {line}, column {column}: {got}" + (f"; expected one of: {want}" if want else "")
    context = e.get_context(text).rstrip() if e.line and e.line > 0 else ""
    return ParseError(message + ("\n" + context if context else ""), loc=SourceLoc(file, line))


def parse_and_build(parser, text: str, builder, to_error: Callable, start: str | None = None,
                    file: str = "<text>"):
    """Parse `text` and transform the tree with `builder`; syntax errors become `to_error(e,
    text)`, and a `ParseError` raised inside a transformer callback comes out unwrapped (lark
    wraps it in a `VisitError`).  Check the text with `check_text` first."""
    try:
        tree = parser.parse(text, start=start) if start else parser.parse(text)
    except UnexpectedInput as e:
        raise to_error(e, text) from None
    try:
        return builder.transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, ParseError):
            raise e.orig_exc from None
        # a piece the grammar accepts but its class refuses (a number out of range, ...)
        meta = getattr(e.obj, "meta", None)
        line = getattr(meta, "line", None) if meta is not None and not getattr(meta, "empty", True) else None
        column = getattr(meta, "column", None) if line else None
        where = f"line {line}, column {column}: " if line else ""
        raise ParseError(f"{where}{e.rule}: {type(e.orig_exc).__name__}: {e.orig_exc}",
                         loc=SourceLoc(file, line or 1)) from None
