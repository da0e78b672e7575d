"""`FRACTAL_DUMP_IR=<dir>` file names and an unwritable folder (`fractal.lower.dump`).

Specification checked here:

* Dumps are named `<program>.<signature>.<pid>.<k>-<pass>.tile`: one function compiled for
  two sizes writes two sets of files, none overwritten; the same compile again writes the
  same names.
* A folder that cannot be written gives one RuntimeWarning naming the variable and the
  folder, and the compile goes on (no OSError from inside).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import fractal as ft
from fractal.lower.pipeline import PASSES


def scaled():
    return ft.function(lambda xs: ft.map(lambda x: x * 2.0, xs))


def rows(n):
    return ft.fractal([np.ones((1, 4), np.float32)] * n)


def prefixes(folder) -> set[str]:
    return {p.name.rsplit(".", 2)[0] for p in folder.iterdir()}


def test_dumps_of_two_sizes_do_not_overwrite_each_other(tmp_path, monkeypatch):
    monkeypatch.setenv("FRACTAL_DUMP_IR", str(tmp_path))
    f = scaled()
    f.compile(rows(2))
    f.compile(rows(3))
    found = prefixes(tmp_path)
    assert len(found) == 2
    for prefix in found:
        name, signature, pid = prefix.split(".")
        assert name == "_lambda_" and len(signature) == 8 and pid == str(os.getpid())
    assert len(list(tmp_path.iterdir())) == 2 * (len(PASSES) + 1)
    scaled().compile(rows(2))  # the same program again: the same files
    assert prefixes(tmp_path) == found


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_dump_folder_warns_once_and_the_compile_goes_on(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        monkeypatch.setenv("FRACTAL_DUMP_IR", str(locked / "dumps"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = scaled()(rows(2))
            scaled()(rows(3))
        assert out.to_numpy()[0, 0, 0] == 2.0
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(messages) == 1
        assert messages[0].startswith(f"FRACTAL_DUMP_IR={locked / 'dumps'}: cannot write the IR dumps there")
    finally:
        locked.chmod(0o700)


def test_a_dump_path_that_is_a_file_warns_too(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("FRACTAL_DUMP_IR", str(blocker))
    with pytest.warns(RuntimeWarning, match="FRACTAL_DUMP_IR=.*cannot write the IR dumps there"):
        assert scaled()(rows(2)).to_numpy()[0, 0, 0] == 2.0
