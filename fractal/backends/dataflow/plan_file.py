"""A plan file: one mesh program and its inputs, what every MPI rank reads.

The file is an `.npz` archive: the inputs as plain arrays (`input/<name>`, readable with
`np.load` alone) and the `MeshProgram` as a **pickle** (`program`, its bytes).  Loading a
pickle can run arbitrary code, so load only plan files you wrote yourself (or someone you
trust wrote): `load_plan` is as safe as `pickle.load`, no safer.

    save_plan(program, {"a": a, "b": b}, "cannon.plan.npz")
    program, inputs = load_plan("cannon.plan.npz")

(The mesh IR's text form will replace the pickle; `save_plan` and `load_plan` are the only
two functions the executors use.)
"""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np

from fractal.lang.errors import ArgumentError

from .mesh_ir import MeshProgram

FORMAT = "fractal mesh plan, pickled program, version 1"


def save_plan(program: MeshProgram, inputs: dict, path) -> None:
    """Write `program` and its `inputs` (name -> array) to `path` (an `.npz` archive)."""
    arrays = {f"input/{name}": np.asarray(value) for name, value in inputs.items()}
    blob = np.frombuffer(pickle.dumps(program, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a bare name
        np.savez(f, format=np.array(FORMAT), program=blob, **arrays)


def load_plan(path) -> tuple[MeshProgram, dict[str, np.ndarray]]:
    """The program and inputs that `save_plan` wrote to `path` (it unpickles the program)."""
    if not os.path.isfile(path):
        raise ArgumentError(f"no plan file {os.fspath(path)}")
    if not zipfile.is_zipfile(path):
        raise ArgumentError(f"{os.fspath(path)} is not a plan file: not an .npz archive")
    with np.load(path, allow_pickle=False) as archive:
        if "format" not in archive.files or str(archive["format"]) != FORMAT:
            raise ArgumentError(f"{os.fspath(path)} is not a plan file (no {FORMAT!r} in it)")
        program = pickle.loads(archive["program"].tobytes())
        inputs = {key[len("input/"):]: archive[key] for key in archive.files if key.startswith("input/")}
    if not isinstance(program, MeshProgram):
        raise ArgumentError(f"{os.fspath(path)} holds a {type(program).__name__}, not a mesh program")
    return program, inputs
