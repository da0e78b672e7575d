"""Where backends keep what they compile or measure across processes, and how they write it.

`cache_dir()` is `$FRACTAL_CACHE_DIR`, else `$XDG_CACHE_HOME/fractal`, else `~/.cache/fractal`;
`write_atomic(path, data)` leaves `path` whole or as it was, so processes that race to write
one entry (two notebooks compiling one kernel) both end with a whole file:

    write_atomic(cache_dir() / "cuda" / f"{key}-sm_90.cubin", cubin)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    base = os.environ.get("FRACTAL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "fractal")
    return Path(base)


def write_atomic(path: Path, data: bytes) -> None:
    """`path` holds `data` whole, or is as it was: written to a temporary file beside it, then
    renamed over it (a reader, or a second writer, never sees a part)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
