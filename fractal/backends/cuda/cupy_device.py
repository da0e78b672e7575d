"""The GPU device: a module's CUDA C++ compiled by NVRTC, cached on disk, run with CuPy.

    device = CupyDevice.for_target(ft.targets.get("h100"))   # DeviceError without CuPy or a GPU
    loaded = device.load(module.source, {"full1": 0, ...})    # cubin from the cache, or compiled
    loaded.launch("full1", blocks, threads, [x, y, 4, status])

Compiling: `nvrtc.compile_cuda` (NVRTC, or nvcc), never CuPy's own compile path, so that the
source a GPU runs is compiled exactly as the compile checks on machines without a GPU compile
it.  The cubin is for the GPU's own architecture (`choose_arch`): the target's when they agree;
the GPU's, with a warning, when the GPU is newer than the target (its kernels were shaped for
the target's record, and run correctly on a newer GPU, perhaps not at its best speed); refused
(`DeviceError`) when the GPU is older than the target, whose code may use instructions it lacks.

The cache (`CubinCache`): one file per module under `cache_dir()/"cuda"`, named by a hash of the
source, the architecture, the compiler's version and the options.  A file is written whole or
not at all (a temporary file in the same folder, then `os.replace`): two processes compiling the
same module both end with a whole file, the last one's.  An entry that is not a whole ELF image,
or that the driver refuses to load, is compiled again and replaced, once: the fresh one loads or
the error is raised.  Within a process a module is loaded once per device and shared.

Memory: buffers are CuPy arrays (flat, in the buffer's layout order); running out of device
memory while allocating one is a `ResourceError` naming the buffer and its size.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import struct
import threading
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from fractal.lang.errors import DeviceError, ResourceError

from ..disk_cache import cache_dir, write_atomic
from . import nvrtc
from .presets import REFERENCE

EMULATE_HINT = "run the same kernels on the CPU with ft.targets.cuda(..., emulate=True)"
_KDLCUDA = (2, 13)  # DLPack device types of CUDA memory: kDLCUDA, kDLCUDAManaged


# -- the on-disk cache ----------------------------------------------------------------------

def whole_elf(data: bytes) -> bool:
    """Whether `data` is a whole 64-bit ELF image: the magic, and every part the header and the
    section headers place (the section and program header tables, each section's bytes) inside
    the file.  A truncated or overwritten entry fails this."""
    if len(data) < 64 or data[:5] != b"\x7fELF\x02":
        return False
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    ends = [phoff + phentsize * phnum, shoff + shentsize * shnum]
    if not shnum or ends[1] > len(data):
        return False
    for i in range(shnum):
        kind, = struct.unpack_from("<I", data, shoff + i * shentsize + 4)
        offset, size = struct.unpack_from("<QQ", data, shoff + i * shentsize + 0x18)
        if kind != 8:  # SHT_NOBITS takes no room in the file
            ends.append(offset + size)
    return max(ends) <= len(data)


class CubinCache:
    """Cubins on disk, one per (source, architecture, compiler version, options).

    `compile` is `nvrtc.compile_cuda`'s signature; `compiles` counts the compilations this
    object ran (what a test of reuse reads)."""

    def __init__(self, folder: Path | str | None = None, *, compiler: str | None = None,
                 options: tuple[str, ...] = nvrtc.DEFAULT_OPTIONS, compile: Callable = nvrtc.compile_cuda):
        self.folder = Path(folder) if folder is not None else cache_dir() / "cuda"
        self.compiler, self.options, self._compile = compiler, tuple(options), compile
        self.compiles = 0

    def key(self, source: str, arch: str) -> str:
        text = json.dumps([source, arch, nvrtc.compiler_version(self.compiler), list(self.options)])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def path(self, source: str, arch: str) -> Path:
        return self.folder / f"{self.key(source, arch)}-{arch}.cubin"

    def load(self, source: str, arch: str, load: Callable[[Path], object], name: str = "module.cu"):
        """`load(path)` of the cached cubin of `source` for `arch`, compiled (and cached) first
        where there is none or the cached one is not whole or does not load."""
        path = self.path(source, arch)
        try:
            cached = path.read_bytes()
        except OSError:
            cached = None
        if cached is not None and whole_elf(cached):
            try:
                return load(path)
            except Exception:  # a damaged entry: compiled again below, and loaded once more
                pass
        cubin = self._compile(source, arch, options=self.options, name=name, compiler=self.compiler)
        self.compiles += 1
        write_atomic(path, cubin)
        try:
            return load(path)
        except Exception as e:
            raise DeviceError(f"the CUDA driver cannot load the module just compiled for {arch} ({path}): "
                              f"{type(e).__name__}: {e}") from None


# -- the architecture -----------------------------------------------------------------------

def arch_of(capability) -> str:
    """"sm_86" for a compute capability (8, 6) or CuPy's "86"."""
    major, minor = (capability[:-1], capability[-1]) if isinstance(capability, str) else capability
    return f"sm_{major}{minor}"


def _capability(arch: str) -> tuple[int, int]:
    digits = arch.removeprefix("sm_").rstrip("af")
    return int(digits[:-1]), int(digits[-1])


def choose_arch(target, gpu_arch: str, gpu_name: str) -> str:
    """The architecture to compile `target`'s kernels for on a GPU of `gpu_arch` ("sm_86"):
    the target's when they agree; the GPU's, with a warning, when the GPU is newer; a GPU older
    than the target is a `DeviceError` naming the target that fits it."""
    want = target.hardware.gpu.name
    if gpu_arch == want:
        return want
    if _capability(gpu_arch) > _capability(want):
        warnings.warn(f"target {target.name!r} describes a {want} GPU; this GPU ({gpu_name}) is {gpu_arch}: its "
                      f"kernels are compiled for {gpu_arch} and run correctly, but were shaped for {target.name}'s "
                      f"numbers (a target of this GPU's own numbers: ft.targets.cuda(arch, sms=...))", stacklevel=2)
        return gpu_arch
    fits = REFERENCE.get(gpu_arch)
    hint = (f"compile for ft.targets.cuda({gpu_arch!r}) (its reference GPU is {fits})" if fits else
            f"compile for an architecture this GPU has (of ft.targets.cuda's: "
            f"{', '.join(a for a in REFERENCE if _capability(a) <= _capability(gpu_arch)) or 'none'})")
    raise DeviceError(f"target {target.name!r} is for {want} GPUs, and this GPU ({gpu_name}) is {gpu_arch}, "
                      f"older: its kernels may use instructions that {gpu_arch} lacks; {hint}, or {EMULATE_HINT}")


# -- the device -----------------------------------------------------------------------------

def import_cupy():
    """CuPy, or a `DeviceError` saying how to get it."""
    try:
        return importlib.import_module("cupy")
    except ImportError as e:
        raise DeviceError(f"the 'cuda' backend runs its kernels with CuPy, which does not import here ({e}): "
                          f"install the `cuda` extra (pip install 'fractal-tensor[cuda]') on a machine with an "
                          f"NVIDIA GPU, or {EMULATE_HINT}") from None


def gpu_of(cupy) -> tuple[int, str, str]:
    """(device id, name, "sm_XY") of CuPy's current GPU, or a `DeviceError` when there is none."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        device = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(device.id)
        capability = device.compute_capability
    except Exception as e:  # no driver, no device, a driver too old for this CuPy...
        count, reason = 0, f"{type(e).__name__}: {e}"
    else:
        reason = "no CUDA device"
    if not count:
        raise DeviceError(f"the 'cuda' backend found no NVIDIA GPU here (CuPy says {reason}); {EMULATE_HINT}")
    name = props["name"]
    return device.id, name.decode() if isinstance(name, bytes) else str(name), arch_of(capability)


def probe() -> tuple[str | None, str]:
    """("NVIDIA H100 80GB HBM3 (sm_90)", "") for this machine's GPU, or (None, why there is none
    to run on: no CuPy, no GPU)."""
    try:
        _, name, arch = gpu_of(import_cupy())
    except DeviceError as e:
        return None, "no CuPy" if "does not import" in e.message else "no NVIDIA GPU"
    return f"{name} ({arch})", ""


def resident_blocks(kernel_attributes: dict, device_attributes: dict, threads: int) -> int | None:
    """How many blocks of `threads` threads of a compiled kernel the GPU holds at once (what a
    cooperative launch may ask for), from the kernel's registers and shared memory and the
    GPU's per-SM limits; None where an attribute is missing (the record's estimate stands)."""
    try:
        regs = kernel_attributes["num_regs"] * threads
        shared = kernel_attributes["shared_size_bytes"]
        sms = device_attributes["MultiProcessorCount"]
        limits = [device_attributes["MaxThreadsPerMultiProcessor"] // threads,
                  device_attributes["MaxRegistersPerMultiprocessor"] // max(1, regs)]
        if shared:
            limits.append(device_attributes["MaxSharedMemoryPerMultiprocessor"] // shared)
        if "MaxBlocksPerMultiprocessor" in device_attributes:
            limits.append(device_attributes["MaxBlocksPerMultiprocessor"])
    except (KeyError, TypeError):
        return None
    return max(1, min(limits)) * sms


class _Loaded:
    def __init__(self, functions: dict, np_int, device_attributes: dict | None = None):
        self.functions, self._int, self.device_attributes = functions, np_int, device_attributes or {}

    def launch(self, kernel: str, blocks: int, threads: int, args, cooperative: bool = False) -> None:
        # (a cooperative kernel comes from a module loaded with enable_cooperative_groups: CuPy
        # launches it with cuLaunchCooperativeKernel, which fails when the blocks cannot all be
        # resident: the kernel deals its points to however many run, so ask for what fits)
        fn = self.functions[kernel]
        if cooperative:
            fits = resident_blocks(getattr(fn, "attributes", {}), self.device_attributes, threads)
            blocks = min(blocks, fits) if fits else blocks
        args = tuple(self._int(a) if isinstance(a, int) else a for a in args)  # long long parameters
        fn((blocks,), (threads,), args)


class CupyDevice:
    """A GPU through CuPy: `load` compiles (or finds in `cache`) a module for `arch`; buffers
    are flat CuPy arrays; `adopt` takes CuPy arrays and CUDA tensors of other libraries
    (`__cuda_array_interface__`, DLPack) without a copy."""

    _modules: dict = {}          # (device id, cache path) -> _Loaded, shared by every executable
    _modules_lock = threading.Lock()

    def __init__(self, cupy, device_id: int, gpu_name: str, arch: str, cache: CubinCache | None = None):
        self.cupy, self.id, self.gpu_name, self.arch = cupy, device_id, gpu_name, arch
        self.name = f"cuda:{device_id} ({gpu_name})"
        self.xp = cupy
        self.cache = cache if cache is not None else CubinCache()

    @classmethod
    def for_target(cls, target, cache: CubinCache | None = None) -> "CupyDevice":
        cupy = import_cupy()
        device_id, gpu_name, gpu_arch = gpu_of(cupy)
        return cls(cupy, device_id, gpu_name, choose_arch(target, gpu_arch, gpu_name), cache)

    def load(self, source: str, kernels: dict[str, int]) -> _Loaded:
        """The module of `source`; `kernels` maps each kernel to 0 or, for one launched
        cooperatively (a device loop's), the most blocks it runs at once."""
        key = (self.id, self.cache.path(source, self.arch))
        with self._modules_lock:
            if key not in self._modules:
                def load(path: Path) -> _Loaded:
                    with self.cupy.cuda.Device(self.id):
                        plain = self.cupy.RawModule(path=str(path))
                        together = (self.cupy.RawModule(path=str(path), enable_cooperative_groups=True)
                                    if any(kernels.values()) else None)
                        attributes = getattr(self.cupy.cuda.Device(self.id), "attributes", {})
                        return _Loaded({k: (together if n else plain).get_function(k) for k, n in kernels.items()},
                                       np.int64, attributes)
                self._modules[key] = self.cache.load(source, self.arch, load)
            return self._modules[key]

    def _allocate(self, make, size: int, dtype, name: str):
        try:
            with self.cupy.cuda.Device(self.id):
                return make()
        except self.cupy.cuda.memory.OutOfMemoryError:
            nbytes = size * np.dtype(dtype).itemsize
            raise ResourceError(f"out of GPU memory on {self.gpu_name} allocating buffer {name!r} "
                                f"({_size(nbytes)}: {size} x {np.dtype(dtype).name}); free device memory "
                                f"(other processes, arrays kept with keep_on_device) or use smaller "
                                f"inputs") from None

    def to_device(self, array: np.ndarray, name: str = "") -> object:
        return self._allocate(lambda: self.cupy.asarray(array), array.size, array.dtype, name)

    def zeros(self, size: int, dtype, name: str = "") -> object:
        return self._allocate(lambda: self.cupy.zeros(size, dtype), size, dtype, name)

    def to_host(self, array) -> np.ndarray:
        return self.cupy.asnumpy(array)

    def adopt(self, value):
        """`value` as a CuPy array on this device without a copy, or None when it is not an
        array on this GPU (a NumPy array: the host path copies it in; another GPU's: refused)."""
        cupy = self.cupy
        if isinstance(value, cupy.ndarray):
            return value if value.device.id == self.id else None
        if hasattr(value, "__cuda_array_interface__"):
            with cupy.cuda.Device(self.id):
                adopted = cupy.asarray(value)  # (a view: CUDA's interface hands over the pointer)
            return adopted if adopted.device.id == self.id else None
        where = getattr(value, "__dlpack_device__", None)
        if where is not None and where()[0] in _KDLCUDA and where()[1] == self.id:
            return cupy.from_dlpack(value)
        return None

    def synchronize(self) -> None:
        self.cupy.cuda.Device(self.id).synchronize()


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"
