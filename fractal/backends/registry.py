"""The backend registry, and what a backend is.

A backend runs compiled programs.  It is an object with

* `name` (what `backend=` and `Target.backend` say) and a one-line `description`;
* `consumes`: `"tile"` — `build` receives a verified `TileProgram` (`fractal.lower.tile_ir`):
  its buffers (inputs, outputs, temporaries, and constants with their data) and statements,
  under the contract of `fractal.lower.tile_contract` (a stage's points and a parallel loop's
  iterations are independent; a scatter names each row once per point) — or `"program"`: the
  traced program IR itself (the reference interpreter is the one such backend);
* `default_target()`: the `Target` a call naming only the backend compiles for;
* `targets()`: its named presets, `{name: () -> Target}` (`ft.targets.get` looks them up);
* optionally `checked_by_default = False`: `ft.testing.check` leaves it out unless named
  (a slow backend, such as the CUDA emulation);
* `build(program, target)`: an executable, with `run(inputs, profile=None) -> outputs`;
* optionally `unavailable()`: why it cannot run on this machine (no GPU...), None when it can
  (`unavailable(name)` asks; `ft.testing.check` leaves such backends out by default).
  For a tile backend, `inputs` maps each input buffer's name to an array of the buffer's
  shape and dtype and the result maps each output buffer's name to its array (`profile`, a
  dict, may collect seconds per stage).  For a program backend, `inputs` is the list of
  the program's flat arguments and the result the list of its flat results.

The compile layer (`fractal.compile`) traces, lowers and runs the pass pipeline for the
target, then asks the target's backend to build; it names no backend itself.  Register a
backend with `register(backend)` (README: "Writing a backend"), forget it with `unregister`;
`get` and `names` look them up, and an unknown name is an error listing the known ones.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol

from fractal.lang.errors import ArgumentError
from fractal.lower.target import Target

KINDS = ("tile", "program")


class Executable(Protocol):
    def run(self, inputs: Any, profile: dict | None = None) -> Any: ...


class Backend(Protocol):
    name: str
    description: str
    consumes: str

    def default_target(self) -> Target: ...

    def targets(self) -> Mapping[str, Callable[[], Target]]: ...

    def build(self, program, target: Target) -> Executable: ...


_BACKENDS: dict[str, Backend] = {}

# Backends whose targets exist before the backend does: `get` says what is missing instead of
# listing the others (none today; the CUDA targets came before their backend, issue 18).
NOT_BUILT: dict[str, str] = {}


def register(backend: Backend) -> Backend:
    """Make `backend` available under `backend.name` (a new object replaces an old one of the
    same name: re-running a notebook cell); returns it."""
    for attr in ("name", "description", "consumes", "default_target", "targets", "build"):
        if not hasattr(backend, attr):
            raise ArgumentError(f"a backend needs a `{attr}` (see fractal.backends.registry); "
                                f"{type(backend).__name__} has none")
    if backend.consumes not in KINDS:
        raise ArgumentError(f"backend {backend.name!r} consumes {backend.consumes!r}: it must be one of {KINDS}")
    _BACKENDS[backend.name] = backend
    return backend


def unregister(name: str) -> None:
    """Forget the backend called `name` (a notebook's experiment); an unknown name is an error."""
    get(name)
    del _BACKENDS[name]


def get(name: str) -> Backend:
    """The backend called `name`; an unknown name is an `ArgumentError` listing the known ones."""
    if isinstance(name, str) and name not in _BACKENDS and name in NOT_BUILT:
        raise ArgumentError(NOT_BUILT[name])
    if not isinstance(name, str) or name not in _BACKENDS:
        raise ArgumentError(f"unknown backend {name!r}; the backends are {', '.join(names())}")
    return _BACKENDS[name]


def unavailable(name: str) -> str | None:
    """Why the backend called `name` cannot run on this machine, or None when it can."""
    probe = getattr(get(name), "unavailable", None)
    return probe() if probe is not None else None


def names() -> list[str]:
    return list(_BACKENDS)


def backends() -> list[Backend]:
    return list(_BACKENDS.values())
