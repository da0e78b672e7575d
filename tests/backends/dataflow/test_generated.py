"""Plans the planner generates run to the end under the strictest schedules: with rendezvous
(zero-capacity) channels in the event engine, and under MPI's synchronous sends on several
ranks, each giving the BSP simulator's outputs bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import fractal as ft
from examples import zoo
from fractal.backends.dataflow.event import run_event
from fractal.backends.dataflow.mpi import run_mpi

from .test_mpi import needs_mpi

MODELS = ["b2b_gemm", "stacked_lstm", "graphsage", "flash_attention"]


def _planned(name, mesh):
    m = zoo.load(name)
    args = m.inputs("small", dtype=np.float64)
    compiled = m.model.compile(*args, target=mesh)
    leaves = [x for x in m.model.flatten_args(args, {})[0]]
    inputs = {}
    for x, (buffer, kind) in zip(leaves, compiled._lowered.inputs):
        inputs[buffer] = np.asarray(x)[None] if kind == "tensor" else x.compact()[0]
    return compiled._executable, inputs


@pytest.mark.parametrize("name", MODELS)
def test_generated_plans_finish_with_rendezvous_channels(name):
    executable, inputs = _planned(name, ft.targets.mesh(3, 3, sram_bytes=256 << 10))
    bsp = executable.run(inputs)
    event, summary = run_event(executable.program, inputs, capacity=0)
    assert all(np.array_equal(bsp[k], event[k]) for k in bsp)
    assert (summary.bytes_sent, summary.messages) == (executable.report.bytes_sent, executable.report.messages)


@needs_mpi
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["b2b_gemm", "stacked_lstm"])
def test_generated_plans_finish_under_synchronous_mpi_sends(name):
    executable, inputs = _planned(name, ft.targets.mesh(2, 3, sram_bytes=256 << 10))
    bsp = executable.run(inputs)
    mpi, _ = run_mpi(executable.program, inputs, ranks=6, strict=True, timeout=100)
    assert all(np.array_equal(bsp[k], mpi[k]) for k in bsp)
