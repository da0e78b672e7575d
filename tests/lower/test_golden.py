"""Golden tile IR: every zoo model at its `small` configurations compiled for `cpu-generic`
prints exactly the text checked in under `tests/lower/golden/` (byte for byte).

A target is data, so this text is the same on every machine; a change to the lowering or a
pass that changes it shows here as a diff to read.  After an intended change, write the new
texts with `FRACTAL_UPDATE_GOLDEN=1 python -m pytest tests/lower/test_golden.py` and commit
them with the change.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import fractal as ft
from examples import zoo

GOLDEN = Path(__file__).parent / "golden"
CASES = [(name, config) for name in zoo.available() for config in zoo.load(name).CONFIGS if config.startswith("small")]


@pytest.mark.parametrize("name, config", CASES, ids=[f"{n}.{c}" for n, c in CASES])
def test_the_tile_ir_of_each_small_zoo_model_is_the_golden_text(name, config):
    m = zoo.load(name)
    text = str(m.model.compile(*m.inputs(config, dtype=np.float32), target=ft.targets.get("cpu-generic")).tile_ir) + "\n"
    path = GOLDEN / f"{name}.{config}.tile"
    if os.environ.get("FRACTAL_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.is_file(), f"no golden text for {name} [{config}]: write it with FRACTAL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} [{config}] compiles to other tile IR than {path}"


def test_every_golden_text_belongs_to_a_case():
    assert sorted(p.name for p in GOLDEN.glob("*.tile")) == sorted(f"{n}.{c}.tile" for n, c in CASES)
