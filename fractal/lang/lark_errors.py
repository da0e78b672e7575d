"""Syntax errors from lark, as `ParseError`s that name the line, column and what was expected.

Shared by the program IR parser and the tile IR parser, as is `parse_and_build`."""

from __future__ import annotations

from typing import Callable

from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from .errors import ParseError, SourceLoc


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


def parse_and_build(parser, text: str, builder, to_error: Callable, start: str | None = None):
    """Parse `text` and transform the tree with `builder`; syntax errors become `to_error(e,
    text)`, and a `ParseError` raised inside a transformer callback comes out unwrapped (lark
    wraps it in a `VisitError`)."""
    try:
        tree = parser.parse(text, start=start) if start else parser.parse(text)
    except UnexpectedInput as e:
        raise to_error(e, text) from None
    try:
        return builder.transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, ParseError):
            raise e.orig_exc from None
        raise
