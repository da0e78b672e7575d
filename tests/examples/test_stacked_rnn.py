"""The example behind `make run`: a stacked RNN over a ragged batch, checked against NumPy."""

import importlib.util
import pathlib
import re

import numpy as np

import fractal as ft

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("stacked_rnn", ROOT / "examples" / "stacked_rnn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_float64_matches_the_numpy_reference_tightly():
    m = _load()
    args = m.make_inputs(dtype=np.float64, lengths=(4, 1, 6), batch=3)
    out = m.model(*args)
    for got, want in zip(out, m.reference(*args)):
        np.testing.assert_allclose(got.to_numpy()[:, 0], want, rtol=1e-12, atol=1e-12)


def test_program_text_round_trips_and_verifies():
    m = _load()
    p = m.model.trace(*m.make_inputs())
    assert ft.parse_program(str(p)) == p
    p.verify()


def test_main_job_prints_ir_and_passes(capsys):
    assert _load().main() == 0
    out = capsys.readouterr().out
    assert "func @stacked_rnn(" in out and "OK: matches the NumPy reference" in out


def test_readme_taste_snippet_runs():
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## A taste\n\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {"print": lambda *a: None})
