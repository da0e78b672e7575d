"""The README's code runs as written."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_taste_snippet_runs():
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## A taste\n\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {"print": lambda *a: None})


def test_quick_start_names_the_two_make_targets():
    text = (ROOT / "README.md").read_text()
    make = (ROOT / "Makefile").read_text()
    assert "make run" in text and "make test" in text
    assert "\nrun:" in make and "\ntest:" in make
