"""The MPI executor: a mesh program run for real, one rank per PE or per block of PEs.

From Python, `run_mpi` writes the program and its inputs to a plan file in a temporary
folder, launches `mpiexec -n N python -m fractal.backends.dataflow.run PLAN OUT` (the
`mpiexec` next to this Python first, then the one on PATH), and reads the outputs back::

    outputs, wall_seconds = run_mpi(program, {"a": a, "b": b}, ranks=4)

`wall_seconds` is the run's own time on rank 0 (loads, supersteps and the gathered stores;
not MPI's start-up nor the files).  The outputs are the one-process run's bit for bit
(`blocked.run_local`), whatever the number of ranks: every rank applies the same one-PE
semantics in the same order, and messages copy bytes.  `strict=True` sends every message synchronously
(`Ssend`), so a run that only finishes because MPI buffers messages hangs instead (and
`timeout` turns the hang into an `MpiTimeoutError`).

From a shell, or on a cluster with a hostfile (the plan file must be readable on every node,
e.g. on a shared file system; nothing else changes)::

    # in Python: plan_file.save_plan(program, {"a": a, "b": b}, "cannon.plan.npz"), then
    mpiexec -n 16 python -m fractal.backends.dataflow.run cannon.plan.npz     # writes cannon.plan.out.npz
    mpiexec -f hosts -n 64 python -m fractal.backends.dataflow.run cannon.plan.npz out.npz --strict
    python -c "import numpy as np; print(np.load('out.npz')['output/c'])"

The ranks form a `MPI.Compute_dims(N, 2)` grid (the larger side along the mesh's longer
side) and each takes a contiguous block of the mesh's rows and columns; more ranks than PEs
along an axis leave some ranks idle.  MPI comes from the optional extra:
`pip install 'fractal-tensor[mpi]'` (mpi4py and the MPICH wheel, which runs as root and
with more ranks than cores).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np

from fractal.lang.errors import ArgumentError, FractalError

from .host import host_arrays
from .mesh_ir import MeshProgram
from .plan_file import save_plan

INSTALL = "pip install 'fractal-tensor[mpi]' installs mpi4py and MPICH"
TAIL_LINES = 30
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class MpiError(FractalError):
    """An MPI run that could not start or did not finish."""


class MpiMissingError(MpiError):
    """No `mpiexec`, or no mpi4py for this Python."""


class MpiRankError(MpiError):
    """A rank failed: the message ends with the tail of what the ranks wrote to stderr."""


class MpiTimeoutError(MpiError):
    """The run did not finish in time (a deadlock, or too short a timeout); its processes are stopped."""


def find_mpiexec() -> str:
    """The `mpiexec` next to this Python (a virtual environment's, from the MPICH wheel),
    else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("mpiexec")
    if found is None:
        raise MpiMissingError(f"MPI is not installed here: no mpiexec next to {sys.executable} or on PATH "
                              f"({INSTALL})")
    return found


def _tail(text: str) -> str:
    lines = text.strip().splitlines()
    return "\n".join(lines[-TAIL_LINES:])


def _stop(process: subprocess.Popen) -> None:
    """Stop mpiexec and the ranks it started: SIGTERM first (mpiexec passes it on to its
    proxies, which end their ranks), then SIGKILL to its process group."""
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_mpi(program: MeshProgram, inputs: dict, ranks: int = 4, *, strict: bool = False,
            timeout: float = 120.0, mpiexec_args=()) -> tuple[dict[str, np.ndarray], float]:
    """Run `program` on `ranks` MPI processes of this machine (`mpiexec_args`, e.g.
    `["-f", "hosts"]`, go to mpiexec before `-n`); the outputs and the run's wall seconds."""
    if int(ranks) < 1:
        raise ArgumentError(f"an MPI run needs at least one rank, not {ranks}")
    host_arrays(program, inputs)  # wrong inputs fail here, not in every rank
    mpiexec = find_mpiexec()
    if importlib.util.find_spec("mpi4py") is None:
        raise MpiMissingError(f"mpi4py is not installed for {sys.executable} ({INSTALL})")
    with tempfile.TemporaryDirectory(prefix="fractal-mpi-") as folder:
        plan, out = os.path.join(folder, "plan.npz"), os.path.join(folder, "out.npz")
        save_plan(program, inputs, plan)
        command = [mpiexec, *mpiexec_args, "-n", str(int(ranks)), sys.executable, "-m",
                   "fractal.backends.dataflow.run", plan, out] + (["--strict"] if strict else [])
        env = dict(os.environ)  # the ranks import the fractal this process runs
        env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                   start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(process)
            stdout, stderr = process.communicate()
            raise MpiTimeoutError(f"the MPI run of {program.name} on {ranks} ranks did not finish within {timeout} s "
                                  f"(a deadlock, or too short a timeout); its processes were stopped"
                                  + (f"\n{_tail(stderr)}" if stderr.strip() else "")) from None
        finally:
            if process.poll() is None:
                _stop(process)
        if process.returncode != 0 or not os.path.exists(out):
            raise MpiRankError(f"the MPI run of {program.name} on {ranks} ranks failed (mpiexec exit status "
                               f"{process.returncode}):\n{_tail(stderr + stdout)}")
        with np.load(out, allow_pickle=False) as archive:
            outputs = {k[len("output/"):]: archive[k] for k in archive.files if k.startswith("output/")}
            return outputs, float(archive["wall_seconds"])
