"""The host arrays of a mesh run, which every executor (BSP, event, MPI) starts from.

`host_arrays(program, inputs)` checks the user's inputs against the program's declarations
and returns every host array by name: each input converted to its declared dtype (a copy, so
the run never writes into the user's array), each const's data, each output zero.  A wrong
input is refused here, once for all executors, with one error per kind of mistake: a missing
input, a name that is not an input, a wrong shape, a dtype that does not convert `same_kind`.
"""

from __future__ import annotations

import numpy as np

from fractal.lang.errors import ArgumentError, ShapeError

from .mesh_ir import HostArray, MeshProgram


def _names(names) -> str:
    return ", ".join(map(repr, names))


def _input(program: MeshProgram, a: HostArray, value) -> np.ndarray:
    value = np.asarray(value)
    if value.shape != a.shape:
        raise ShapeError(f"{program.name}: input {a.name!r} has shape {value.shape}, the program declares {a.shape}")
    if not np.can_cast(value.dtype, a.dtype, "same_kind"):
        raise ArgumentError(f"{program.name}: input {a.name!r} is {value.dtype}, which does not convert to its "
                            f"declared {a.dtype}")
    return np.array(value, dtype=a.dtype)


def host_arrays(program: MeshProgram, inputs: dict) -> dict[str, np.ndarray]:
    """Every host array of a run on `inputs` (input name -> array): the inputs checked and
    converted, the consts' data, the outputs zero."""
    declared = [a.name for a in program.inputs]
    missing = [name for name in declared if name not in inputs]
    if missing:
        raise ArgumentError(f"{program.name}: no value for input {_names(missing)}; the inputs are "
                            f"{', '.join(declared)}")
    unknown = sorted(set(inputs) - set(declared))
    if unknown:
        raise ArgumentError(f"{program.name}: no input named {_names(unknown)}; the inputs are {', '.join(declared)}")
    host = {}
    for a in program.arrays:
        if a.role == "input":
            host[a.name] = _input(program, a, inputs[a.name])
        elif a.role == "const":
            host[a.name] = np.array(a.data.value, dtype=a.dtype)
        else:
            host[a.name] = np.zeros(a.shape, a.dtype)
    return host
