"""The README's code runs as written."""

import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_taste_snippet_runs():
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## A taste\n\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {"print": lambda *a: None})


def test_readme_backend_example_registers_and_runs_a_checked_backend():
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## Writing a backend\n.*?```python\n(.*?)```", text, re.S).group(1)
    printed = []
    env = {"print": lambda *a: printed.append(a)}
    try:
        exec(compile(code, "README.md", "exec"), env)
        from fractal import backends
        assert backends.get("checked").build is not None
        (sums,), = printed
        np.testing.assert_array_equal(sums.to_numpy()[:, 0], [0, 1, 3, 6])
    finally:
        from fractal import backends
        if "checked" in backends.names():
            backends.unregister("checked")  # (other tests see the stock registry)


def test_quick_start_names_the_two_make_targets():
    text = (ROOT / "README.md").read_text()
    make = (ROOT / "Makefile").read_text()
    assert "make run" in text and "make test" in text
    assert "\nrun:" in make and "\ntest:" in make


def test_readme_testing_example_checks_the_model_and_catches_the_missing_mask():
    import pytest

    text = (ROOT / "README.md").read_text()
    code = re.search(r"## Testing a model: `ft.testing`\n.*?```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("max_examples=20", "max_examples=20, derandomize=True")
    env = {}
    exec(compile(code, "README.md", "exec"), env)
    assert env["test_last_states"].__name__.startswith("test_")
    broken = code.replace("h = np.where((t < lengths)[:, None, None], np.tanh(x[:, t] + h @ u), h)",
                          "h = np.tanh(x[:, t] + h @ u)")
    assert broken != code
    with pytest.raises(AssertionError, match="the interpreter .* disagrees with the reference numpy_last_states"):
        exec(compile(broken, "README.md", "exec"), {})


def test_readme_cuda_example_runs_in_the_emulation_and_shows_the_source():
    import shutil

    import pytest
    if shutil.which("g++") is None:
        pytest.skip("the CUDA emulation needs a host C++ compiler (g++)")
    text = (ROOT / "README.md").read_text()
    code = re.search(r"### CUDA\n.*?```python\n(.*?)```", text, re.S).group(1)
    printed = []
    env = {"print": lambda *a: printed.append(a)}
    exec(compile(code, "README.md", "exec"), env)
    np.testing.assert_allclose(env["out"].to_numpy(), np.tanh(np.full((3, 2, 8), 0.4)), rtol=1e-6)
    assert printed[0][0].startswith("// fractal: tile program @step")
