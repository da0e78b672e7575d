"""`FRACTAL_DUMP_IR=<dir>`: the tile IR before the first pass and after each one, as files.

    <dir>/<program>.<signature>.<pid>.00-lowered.tile
    <dir>/<program>.<signature>.<pid>.01-contract.tile      (`// contract: (unchanged)`: no change)

The signature is a short hash of the lowered program and the target, so the dumps of one
function compiled for two sizes (or two targets), and those of two processes, never
overwrite each other; a recompile of the same program in the same process writes the same
files again.  A folder that cannot be made or written warns once (naming the variable and
the folder) and the compile goes on without dumps: the dump is a debugging aid, never a
reason for a compile to fail.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from pathlib import Path

_WARNED: set[str] = set()  # folders already warned about
_WARNED_LOCK = threading.Lock()


class Dump:
    """The dump files of one `run_pipeline` call (nothing written where `folder` is None)."""

    def __init__(self, folder: str | os.PathLike | None, program, target):
        self.folder = Path(folder) if folder else None
        if self.folder is not None:
            sig = hashlib.sha1(f"{program}\n{target!r}".encode()).hexdigest()[:8]
            self.prefix = f"{program.name}.{sig}.{os.getpid()}"
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                self._give_up(e)

    def write(self, k: int, name: str, text: str) -> None:
        """Stage `k`'s text (`name`: the pass, or `lowered`)."""
        if self.folder is None:
            return
        try:
            (self.folder / f"{self.prefix}.{k:02d}-{name}.tile").write_text(text)
        except OSError as e:
            self._give_up(e)

    def _give_up(self, error: OSError) -> None:
        folder, self.folder = str(self.folder), None
        with _WARNED_LOCK:
            if folder in _WARNED:
                return
            _WARNED.add(folder)
        reason = error.strerror or type(error).__name__
        warnings.warn(f"FRACTAL_DUMP_IR={folder}: cannot write the IR dumps there ({reason}); "
                      f"compiling without them", RuntimeWarning, stacklevel=4)
