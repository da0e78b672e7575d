"""The two text parsers, fuzzed (issue 16): any text gives a program or a `ParseError`.

Valid texts (traced programs, the tile IR of the zoo's golden files) are cut short, edited
one token at a time, and nested deeply (`ft<` types, `neg(` expressions, `max(` indices,
stray brackets); `ft.parse_program` and `parse_tile_program` must never raise anything but
`ParseError` on them (not lark's own errors, a `RecursionError`, a `ValueError` from a piece
the grammar accepts but its class refuses...).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fractal as ft
from fractal.lower import parse_tile_program

from .test_text_format import RNN_TEXT

GOLDEN = Path(__file__).parents[1] / "lower" / "golden"
TILE_TEXTS = [(GOLDEN / f"{name}.small.tile").read_text() for name in ("b2b_gemm", "stacked_lstm", "retention")]


def _program_texts() -> list[str]:
    xs = ft.from_numpy(np.ones((3, 2, 4), np.float32))
    w = np.ones((4, 4), np.float32)

    def attention(xs, w):
        return ft.map(lambda x: ft.softmax(x @ w, axis=-1)[:, 1:3], ft.reverse(xs))

    def windows(xs):
        pairs = ft.zip(ft.window(xs, 2), ft.enumerate(xs[1:]))
        return ft.map(lambda p: ft.fold(lambda h, x: ft.maximum(h, x), p[0], ft.zeros((2, 4))) * 2.0, pairs)

    def rnn(xs, w):
        return ft.scan(lambda h, x: ft.tanh(x @ w + h), xs, ft.full((2, 4), float("-inf")))

    return [RNN_TEXT, str(ft.function(attention).trace(xs, w)), str(ft.function(windows).trace(xs)),
            str(ft.function(rnn).trace(xs, w))]


PROGRAM_TEXTS = _program_texts()
PARSERS = {"program": (ft.parse_program, PROGRAM_TEXTS), "tile": (parse_tile_program, TILE_TEXTS)}

TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[%@^]?[A-Za-z_][A-Za-z0-9_.]*|\d+(?:\.\d*)?(?:e[+-]?\d+)?|\s+|.')
JUNK = ["(", ")", "[", "]", "{", "}", "<", ">", ",", ":", "=", "-", "*", "/", "%", "@", "^", '"', "#",
        "ft<", "array<", "%x", "@f", "1e999", "-0", "99999999999999999999", "nan", "inf", "none", "f33",
        "i64[]", "yield", "return", "loc(", "\\", "\n", "", "0:0:0", "max(", "floor(", "mod"]

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parses_or_parse_error(parse, text: str) -> None:
    try:
        parse(text)
    except ft.ParseError:
        pass


@st.composite
def prefixes(draw, texts):
    text = draw(st.sampled_from(texts))
    return text[:draw(st.integers(0, len(text) - 1))]


@st.composite
def one_token_edits(draw, texts):
    tokens = TOKEN.findall(draw(st.sampled_from(texts)))
    i = draw(st.integers(0, len(tokens) - 1))
    new = draw(st.sampled_from(JUNK) | st.sampled_from(tokens))
    edit = draw(st.sampled_from(["replace", "insert", "delete"]))
    tokens[i:i + (edit != "insert")] = [] if edit == "delete" else [new]
    return "".join(tokens)


NESTINGS = {  # (pattern, wrapping of one match k deep): valid text where the pattern occurs
    "program": [(r"\bf32\[[0-9,]*\]", lambda m, k: "ft<" * k + m + ">" * k), (r"\(", lambda m, k: "(" * k)],
    "tile": [(r"\b[a-z_0-9]+\[[^\]=]*\](?=\s*[,)]|\s*$)", lambda m, k: "neg(" * k + m + ")" * k),
             (r"(?<=\[)[a-z]\w*(?=[,\]])", lambda m, k: "max(" * k + m + ", 0)" * k),
             (r"\{", lambda m, k: "{" * k)],
}


@st.composite
def deep_nestings(draw, texts, kind):
    text = draw(st.sampled_from(texts))
    pattern, wrap = draw(st.sampled_from(NESTINGS[kind]))
    matches = list(re.finditer(pattern, text, re.M))
    if not matches:
        return text
    m = draw(st.sampled_from(matches))
    k = draw(st.integers(1, 1200) | st.sampled_from([150, 199, 200, 201, 300, 500, 1200]))  # (around the limit)
    return text[:m.start()] + wrap(m.group(), k) + text[m.end():]


def _fuzz(strategy_of):
    def make(kind):
        parse, texts = PARSERS[kind]

        @SETTINGS
        @given(text=strategy_of(texts, kind))
        def test(text):
            parses_or_parse_error(parse, text)
        return test
    return make


test_program_prefixes = _fuzz(lambda texts, kind: prefixes(texts))("program")
test_tile_prefixes = _fuzz(lambda texts, kind: prefixes(texts))("tile")
test_program_one_token_edits = _fuzz(lambda texts, kind: one_token_edits(texts))("program")
test_tile_one_token_edits = _fuzz(lambda texts, kind: one_token_edits(texts))("tile")
test_program_deep_nesting = _fuzz(deep_nestings)("program")
test_tile_deep_nesting = _fuzz(deep_nestings)("tile")


def test_the_texts_are_valid():
    """The fuzzed texts parse unchanged (else the fuzzing would start from errors)."""
    for parse, texts in PARSERS.values():
        for text in texts:
            parse(text)


def test_valid_deep_nesting_below_the_limit_parses():
    """150 nested `neg(` around a load of stacked_lstm's cell (an elementwise expression)."""
    text = TILE_TEXTS[1]
    load = "t12_0[3*f32 + m31, 0:1, 0:32]"
    assert f"add({load}" in text
    deep = text.replace(f"add({load}", "add(" + "neg(" * 150 + load + ")" * 150, 1)
    assert parse_tile_program(deep) != parse_tile_program(text)
