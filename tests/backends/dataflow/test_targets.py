"""Mesh targets: presets with a provenance per number, overrides, and one error per mistake."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import fractal as ft
from fractal.backends.dataflow.spec import PRESETS, mesh_spec


def test_every_preset_number_says_where_it_comes_from():
    for preset in PRESETS:
        spec = mesh_spec(preset=preset)
        assert all(tag for _, tag in spec.sources), preset
        assert (spec.rows, spec.cols) == (PRESETS[preset]["rows"][0], PRESETS[preset]["cols"][0])
    assert "sram_bytes" not in mesh_spec(preset="wse2").placeholders()        # 48 KB is published
    assert "flops_per_cycle" in mesh_spec(preset="wse2").placeholders()       # no public per-PE figure


def test_a_number_given_replaces_the_presets_and_is_tagged_user():
    t = ft.targets.mesh(16, 16, preset="wse2", sram_bytes=96 << 10, hop_latency_cycles=2)
    spec = t.policy.spec
    assert (spec.rows, spec.cols, spec.sram_bytes, spec.hop_latency_cycles) == (16, 16, 96 << 10, 2)
    assert spec.source_of("sram_bytes") == "user" and spec.source_of("link_bytes_per_cycle") == "[S] one 32-bit wavelet per cycle"
    assert t.backend == "dataflow" and t.hardware.mesh_shape == (16, 16) and t.name == "wse2-16x16"
    assert "sram_bytes" in str(t) and "[S] 48 KB per PE" not in str(t)   # replaced: shown as the user's


def test_the_named_targets_are_listed():
    for name in ("mesh-tiny", "ipu_mk2", "wse2-64x64", "wormhole"):
        assert name in ft.targets.names()
        assert ft.targets.get(name).backend == "dataflow"


@pytest.mark.parametrize("kwargs, message", [
    (dict(preset="ipu_mk3"), "unknown mesh preset 'ipu_mk3'; the presets are ipu_mk2, ipu_mk1, wse2"),
    (dict(sram=1), "mesh: unknown field(s) sram; a mesh has rows, cols, kind"),
    (dict(rows=2.5), "mesh: rows must be an int, not 2.5"),
    (dict(rows=0), "needs at least one row and one column of PEs, not 0x4"),
    (dict(kind="ring"), "kind 'ring' is not one of ('mesh', 'torus', 'crossbar')"),
    (dict(routing="zz"), "routing 'zz' is not one of ('xy', 'yx')"),
    (dict(sram_bytes=100, reserved_bytes=100), "sram_bytes (100) must exceed reserved_bytes (100)"),
    (dict(link_bytes_per_cycle=0), "bandwidths and the clock must be positive"),
    (dict(hop_latency_cycles=-1), "latencies, overheads, packet sizes and channel counts cannot be negative"),
    (dict(flops_per_cycle=(("float32", 0),)), "flops_per_cycle needs a positive rate per dtype"),
])
def test_each_mistake_in_a_mesh_has_its_own_message(kwargs, message):
    args = {"rows": 4, "cols": 4, **kwargs}
    with pytest.raises(ft.ArgumentError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        ft.targets.mesh(**args)


@ft.function
def double(xs):
    return ft.map(lambda x: x * 2.0, xs)


XS = ft.fractal([np.arange(6.0).reshape(2, 3), np.ones((2, 3))])


def test_executor_mistakes_have_their_own_messages():
    compiled = double.compile(XS, target=ft.targets.mesh(2, 2))
    with pytest.raises(ft.ArgumentError, match="unknown executor 'gpu'; the dataflow backend runs on bsp, event, mpi"):
        compiled.run(XS, executor="gpu")
    with pytest.raises(ft.ArgumentError, match=r"ranks=4: only the 'mpi' executor runs on ranks \(executor='bsp'\)"):
        compiled.run(XS, ranks=4)
    with pytest.raises(ft.ArgumentError, match=r"timeout=60: only the 'mpi' executor has a time limit \(executor='event'\)"):
        compiled.run(XS, executor="event", timeout=60)
    on_cpu = double.compile(XS, backend="cpu")
    with pytest.raises(ft.ArgumentError, match="executor=: only the dataflow backend has executors and ranks"):
        on_cpu.run(XS, executor="bsp")
    assert on_cpu.report is None


def test_the_dataflow_backend_needs_a_mesh_target():
    from fractal.backends.registry import get
    with pytest.raises(ft.ArgumentError, match="target 'cpu-generic' is not a mesh"):
        get("dataflow").build(double.compile(XS, backend="cpu").tile_ir, ft.targets.get("cpu-generic"))


def test_the_report_as_json_text_and_html():
    compiled = double.compile(XS, target=ft.targets.mesh(2, 2))
    report = compiled.report
    data = json.loads(json.dumps(report.to_json()))
    assert data["engine"] == "bsp" and data["makespan_cycles"] == report.makespan_cycles > 0
    assert np.array(data["per_pe"]["sram_peak_bytes"]).shape == (2, 2)
    assert data["bytes_sent"] == data["bytes_received"] == report.bytes_sent
    text = str(report)
    assert f"{report.makespan_cycles:,.0f} cycles" in text and "SRAM high water" in text
    html = report._repr_html_()
    assert html.count("<svg") == 2 and "PE (1, 1)" in html


def test_a_compiled_mesh_program_runs_from_several_threads():
    compiled = double.compile(XS, target=ft.targets.mesh(2, 2))
    results, errors = [], []

    def work():
        try:
            results.append([x.copy() for x in compiled.run(XS).to_list()])
        except Exception as e:   # pragma: no cover (reported below)
            errors.append(e)
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        assert all(np.array_equal(a, 2 * b) for a, b in zip(r, XS.to_list()))
