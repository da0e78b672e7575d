"""`ft.targets.host()`: this machine as a CPU target, measured once and kept on disk.

The measurement reads the cores this process may run on, the SIMD width and the model name
(`/proc/cpuinfo`), cpu0's data caches (`/sys/devices/system/cpu/cpu0/cache`) and the memory
size, then times NumPy's float32 and float64 GEMMs (1024 x 1024) and a 64 MB copy.  It runs
once per machine: the record is written to `$FRACTAL_CACHE_DIR` (default
`~/.cache/fractal`) under the machine's fingerprint (its model, cores, caches and NumPy
version), and read back by later processes.  `fractal targets` shows it, and `fractal
targets --measure` measures again (the rates are each benchmark's best run, but a machine
busy throughout gives low ones).

Compiling for the host is the default, and the one compile whose tile IR depends on the
machine; every other target is data.  `FRACTAL_HOST` replaces the measurement: a preset's
name (`FRACTAL_HOST=xeon-8480`) or the path of a JSON file of a `CpuSpec`'s fields (CI runs
the tests under two very different records this way).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from fractal.lang.errors import ArgumentError
from fractal.lower.hardware import GiB, KiB, MiB

from ..disk_cache import cache_dir, write_atomic
from .machines import PRESETS, CpuSpec

_SYS_CACHE = "/sys/devices/system/cpu/cpu0/cache"
_LOCK = threading.Lock()


def host_spec() -> CpuSpec:
    """This machine's `CpuSpec`: `FRACTAL_HOST`'s, else measured (once per machine)."""
    override = os.environ.get("FRACTAL_HOST", "").strip()
    if override:
        return _override(override)
    with _LOCK:
        return _measured()


def _override(value: str) -> CpuSpec:
    if value in PRESETS:
        spec = PRESETS[value]
        return CpuSpec(**{**asdict(spec), "name": "host", "source": f"FRACTAL_HOST={value}: {spec.source}"})
    path = Path(value)
    if not path.is_file():
        raise ArgumentError(f"FRACTAL_HOST={value!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file")
    try:
        numbers = json.loads(path.read_text())
        known = {f.name for f in fields(CpuSpec)}
        return CpuSpec(**{**{k: v for k, v in numbers.items() if k in known}, "name": "host",
                          "source": f"FRACTAL_HOST={value}"})
    except (ValueError, TypeError) as e:
        raise ArgumentError(f"FRACTAL_HOST={value!r}: not a CPU record ({e})") from None


@functools.lru_cache(maxsize=1)
def _measured() -> CpuSpec:
    probe = read_machine()
    path = cache_dir() / f"host-{_fingerprint(probe)}.json"
    try:
        return CpuSpec(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    spec = measure(probe)
    try:  # one file per machine (processes may race to write it)
        write_atomic(path, json.dumps(asdict(spec), indent=1).encode())
    except OSError:
        pass  # an unwritable cache: measured again by the next process
    return spec


def measure_again() -> CpuSpec:
    """Measure this machine again and keep the new record (`fractal targets --measure`: the
    first measurement may have run on a busy machine)."""
    with _LOCK:
        path = cache_dir() / f"host-{_fingerprint(read_machine())}.json"
        path.unlink(missing_ok=True)
        _measured.cache_clear()
        return _measured()


def _fingerprint(probe: dict) -> str:
    text = json.dumps({**probe, "numpy": np.__version__}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


# --- reading the machine --------------------------------------------------------------------

def read_machine() -> dict:
    """What the OS says: model, cores, SIMD bytes, cache sizes, memory, clock."""
    model, simd, mhz = _cpuinfo()
    caches = _read_caches()
    return {"model": model, "cores": _cpu_count(), "simd_bytes": simd,
            "l1": caches.get(1, 32 * KiB), "l2": caches.get(2, 1 * MiB), "l3": caches.get(3, 0),
            "dram": _dram_bytes(), "clock_ghz": round(mhz / 1000, 3) if mhz else 2.5}


def measure(probe: dict) -> CpuSpec:
    """The machine's spec, with its GEMM rates and memory bandwidth timed."""
    stamp = time.strftime("%Y-%m-%d")
    return CpuSpec("host", probe["cores"], probe["simd_bytes"], probe["l1"], probe["l2"], probe["l3"], probe["dram"],
                   gemm_gflops=gemm_gflops("float32"), gemm_gflops_f64=gemm_gflops("float64"),
                   memory_gbs=copy_gbs(), clock_ghz=probe["clock_ghz"],
                   source=f"measured on {probe['model']} ({stamp}): caches from /sys, NumPy GEMM and copy timed")


def gemm_gflops(dtype: str = "float32", n: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of np.matmul on n x n operands (2 n^3 flops), its best of `repeats` runs: what
    the machine can do (a busy moment of a shared machine only slows some runs down)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    np.matmul(a, b)  # warm up: thread pool, page faults
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b)
        times.append(time.perf_counter() - start)
    return 2.0 * n ** 3 / max(min(times), 1e-9) / 1e9


def copy_gbs(nbytes: int = 64 * MiB, repeats: int = 3) -> float:
    """GB/s of copying `nbytes` (read and write counted), the best of `repeats`."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - start)
    return 2.0 * nbytes / max(min(times), 1e-9) / 1e9


def read_text(path: str) -> str | None:
    """The stripped contents of a file, or None when it cannot be read (monkeypatched in tests)."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _parse_size(text: str) -> int:
    scale = {"K": KiB, "M": MiB, "G": GiB}.get(text[-1:].upper(), 1)
    return int(text.rstrip("KMGkmg")) * scale


def _read_caches() -> dict[int, int]:
    """level -> bytes of cpu0's data (or unified) caches; {} where /sys cannot be read."""
    caches: dict[int, int] = {}
    for index in range(16):
        base = f"{_SYS_CACHE}/index{index}"
        level, kind, size = (read_text(f"{base}/{f}") for f in ("level", "type", "size"))
        if level is None:
            break
        if kind == "Instruction" or not size:
            continue
        try:
            lv, nbytes = int(level), _parse_size(size)
        except ValueError:  # an unexpected format: skip this cache rather than fail
            continue
        if lv > 0 and nbytes > 0:
            caches.setdefault(lv, nbytes)
    return caches


def _cpuinfo() -> tuple[str, int, float]:
    """The model name, SIMD width in bytes (AVX-512 64, AVX 32, else 16) and clock in MHz."""
    text = read_text("/proc/cpuinfo") or ""
    lines = text.splitlines()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    mhz = []
    for line in lines:
        if line.startswith("cpu MHz"):
            try:
                mhz.append(float(line.split(":", 1)[1]))
            except ValueError:
                pass
    flags = set(text.split())
    simd = 64 if "avx512f" in flags else 32 if "avx" in flags else 16
    return (names or ["generic cpu"])[0], simd, (mhz[0] if mhz else 0.0)


def _dram_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return 8 * GiB
