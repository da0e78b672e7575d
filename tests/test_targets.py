"""Targets and backends as the compile layer sees them.

* One program, its argument sizes and a named target give the same tile IR text whatever
  this machine's record says (`FRACTAL_HOST` replaces it here); only the host target is the
  machine's own.
* `target=` takes a `Target` or a target's name, `backend=` a backend's name (its default
  target); a target and a backend that disagree, an unknown target and an unknown backend are
  errors that list what there is.
* The registry takes any object that has a backend's parts, and says which part is missing.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import fractal as ft
from examples import zoo
from fractal.backends import registry
from fractal.backends.cpu import host
from fractal.backends.cpu.machines import PRESETS
from fractal.compile import compile_function, resolve_target


@pytest.fixture
def host_record(monkeypatch, tmp_path):
    """Set this machine's record: `host_record("xeon-8480")` or a dict of CpuSpec numbers."""
    def use(record):
        if isinstance(record, dict):
            path = tmp_path / "host.json"
            path.write_text(json.dumps({**PRESETS["cpu-generic"].__dict__, **record}))
            record = str(path)
        monkeypatch.setenv("FRACTAL_HOST", record)
    host._measured.cache_clear()
    yield use
    host._measured.cache_clear()


@pytest.mark.parametrize("name, config", [("grid_rnn", "cpu"), ("stacked_lstm", "cpu_small_batch"),
                                          ("retention", "cpu"), ("conv2d", "cpu")])
def test_a_named_target_compiles_to_the_same_text_whatever_the_host_record_says(host_record, name, config):
    m = zoo.load(name)
    args = m.inputs(config, dtype=np.float32)
    texts = []
    for record in ("epyc-9654", dict(cores=1, l2=64 << 10, l3=0, gemm_gflops=5.0, memory_gbs=1.0)):
        host_record(record)
        texts.append(str(compile_function(m.model, args, {}, ft.targets.get("cpu-generic")).tile_ir))
    assert texts[0] == texts[1]


def test_the_host_target_is_the_machine_record(host_record):
    host_record("xeon-8480")
    assert ft.targets.host().hardware.cores == 56 and resolve_target().hardware.cores == 56
    host_record(dict(cores=3))
    assert resolve_target(backend="cpu").hardware.cores == 3


def test_a_call_naming_no_target_runs_on_this_machine_by_cxx_where_a_compiler_is_found(monkeypatch):
    """The default (`ft.targets.default()`): native where a compiler is found, the NumPy cpu
    backend where none is, and the backend `FRACTAL_BACKEND` names where it is set."""
    import fractal.targets as targets
    monkeypatch.delenv("FRACTAL_BACKEND", raising=False)
    monkeypatch.setattr(targets, "find_compiler", lambda: object())
    assert resolve_target() == ft.targets.host(native=True) and resolve_target().backend == "native"
    monkeypatch.setattr(targets, "find_compiler", lambda: None)
    assert resolve_target() == ft.targets.host() and resolve_target().backend == "cpu"
    monkeypatch.setenv("FRACTAL_BACKEND", "interpreter")
    assert resolve_target().backend == "interpreter"
    monkeypatch.setenv("FRACTAL_BACKEND", "tpu")
    with pytest.raises(ft.ArgumentError, match="unknown backend 'tpu'"):
        resolve_target()


def test_a_target_is_given_by_value_or_by_name_and_a_backend_by_its_default_target():
    generic = ft.targets.get("cpu-generic")
    assert resolve_target(target=generic) is generic
    assert resolve_target(target="cpu-generic") == generic
    assert resolve_target(backend="interpreter").backend == "interpreter"


@pytest.mark.parametrize("options, message", [
    (dict(target="z80"), "unknown target 'z80'; the targets are host, cpu-generic, epyc-9654, xeon-8480, graviton3, "
                         "pointwise, interpreter"),
    (dict(backend="tpu"), "unknown backend 'tpu'; the backends are cpu, pointwise, interpreter"),
    (dict(target="xeon-8480", backend="interpreter"), "target 'xeon-8480' runs on the 'cpu' backend, not "
                                                      "'interpreter'"),
    (dict(target=42), "target must be a Target .see ft.targets. or a target's name, got int"),
])
def test_bad_targets_and_backends_are_refused_with_what_there_is(options, message):
    @ft.function
    def double(x):
        return x * 2.0

    with pytest.raises(ft.ArgumentError, match=message):
        double(np.ones(2, np.float32), **options)


def test_a_target_naming_an_unregistered_backend_is_refused():
    alien = dataclasses.replace(ft.targets.get("cpu-generic"), name="alien", backend="fpga")
    with pytest.raises(ft.ArgumentError, match="unknown backend 'fpga'; the backends are cpu, pointwise, interpreter"):
        resolve_target(target=alien)


class Incomplete:
    name, description, consumes = "incomplete", "a backend without build", "tile"

    def default_target(self):
        return ft.targets.get("cpu-generic")

    def targets(self):
        return {}


def test_the_registry_names_what_a_backend_lacks():
    with pytest.raises(ft.ArgumentError, match="a backend needs a `build`.*Incomplete has none"):
        registry.register(Incomplete())
    odd = Incomplete()
    odd.build, odd.consumes = (lambda program, target: None), "bytecode"
    with pytest.raises(ft.ArgumentError, match="consumes 'bytecode': it must be one of \\('tile', 'program'\\)"):
        registry.register(odd)
    assert "incomplete" not in registry.names()


def test_a_backend_registered_in_a_notebook_can_be_forgotten():
    class Echo:
        name, description, consumes = "echo", "the inputs back", "tile"

        def default_target(self):
            return dataclasses.replace(ft.targets.get("cpu-generic"), name="echo", backend="echo")

        def targets(self):
            return {}

        def build(self, program, target):
            return None

    registry.register(Echo())
    assert "echo" in registry.names()
    registry.unregister("echo")
    assert "echo" not in registry.names()
    with pytest.raises(ft.ArgumentError, match="unknown backend 'echo'"):
        registry.unregister("echo")
