"""The GPU device's parts that need no GPU (`fractal.backends.cuda.cupy_device`; CuPy is not
imported here: where a test needs CuPy's answers, a small stand-in gives them).

* The cubin cache: one entry per source, architecture, compiler version and options; a second
  cache (or a second process) on the same folder loads the entry without compiling; two
  processes compiling the same module at once both end with one whole entry; a write that
  fails leaves no part of a file; an entry that is not whole, or that does not load, is
  compiled again, once.
* The architecture: the target's when the GPU's agrees, the GPU's with a warning when the GPU
  is newer, refused when it is older.
* Without CuPy, without a GPU, out of device memory: clear errors, the first two suggesting the
  emulated target.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

import fractal as ft
from fractal.backends.cuda import cupy_device, nvrtc
from fractal.backends.cuda.cupy_device import CubinCache, CupyDevice, arch_of, choose_arch, whole_elf
from fractal.backends.disk_cache import write_atomic

ROOT = Path(__file__).resolve().parents[3]
needs_compiler = pytest.mark.skipif(not nvrtc.compilers(), reason="no CUDA compiler here (NVRTC: pip install "
                                                                  "'fractal-tensor[cuda]'; or nvcc)")
KERNEL = 'extern "C" __global__ void twice(float* x) { x[threadIdx.x] *= 2.0f; }\n'


def fake_compile(source, arch, *, options, name, compiler):
    """A stand-in compiler: a whole ELF image that depends on the source and the arch."""
    body = f"{arch}:{source}".encode()
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    header[0x28:0x30] = (64 + len(body)).to_bytes(8, "little")          # e_shoff: after the body
    header[0x3A:0x3E] = (64).to_bytes(2, "little") + (1).to_bytes(2, "little")  # one 64-byte section header
    return bytes(header) + body + bytes(64)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(nvrtc, "compiler_version", lambda compiler=None: "NVRTC 12.9")
    return CubinCache(tmp_path / "cuda", compile=fake_compile)


def test_the_key_names_the_source_the_arch_the_compiler_version_and_the_options(cache, monkeypatch):
    key = cache.key(KERNEL, "sm_90")
    assert key == CubinCache(cache.folder, compile=fake_compile).key(KERNEL, "sm_90")
    assert len({key, cache.key(KERNEL + " ", "sm_90"), cache.key(KERNEL, "sm_80"),
                CubinCache(cache.folder, options=("-std=c++17", "-lineinfo")).key(KERNEL, "sm_90")}) == 4
    monkeypatch.setattr(nvrtc, "compiler_version", lambda compiler=None: "NVRTC 13.0")
    assert cache.key(KERNEL, "sm_90") != key
    assert cache.path(KERNEL, "sm_90").name.endswith("-sm_90.cubin")


def test_a_second_cache_on_the_same_folder_loads_the_entry_without_compiling(cache):
    first = cache.load(KERNEL, "sm_90", Path.read_bytes)
    again = CubinCache(cache.folder, compile=fake_compile)
    assert again.load(KERNEL, "sm_90", Path.read_bytes) == first == fake_compile(KERNEL, "sm_90", options=(),
                                                                                 name="", compiler=None)
    assert (cache.compiles, again.compiles) == (1, 0)
    assert sorted(p.name for p in cache.folder.iterdir()) == [cache.path(KERNEL, "sm_90").name]


@pytest.mark.parametrize("damage", [lambda b: b[:len(b) // 2], lambda b: b"\0" * len(b), lambda b: b""])
def test_an_entry_that_is_not_whole_is_compiled_again_and_replaced(cache, damage):
    path = cache.path(KERNEL, "sm_90")
    whole = cache.load(KERNEL, "sm_90", Path.read_bytes)
    path.write_bytes(damage(whole))
    loads = []
    again = CubinCache(cache.folder, compile=fake_compile)
    assert again.load(KERNEL, "sm_90", lambda p: loads.append(p) or p.read_bytes()) == whole
    assert again.compiles == 1 and loads == [path] and path.read_bytes() == whole  # the damaged one never loaded


def test_an_entry_the_driver_refuses_is_compiled_again_once(cache):
    cache.load(KERNEL, "sm_90", Path.read_bytes)
    tries = []

    def load(path):  # the driver refuses the cached image, then loads the fresh one
        tries.append(path)
        if len(tries) == 1:
            raise RuntimeError("CUDA_ERROR_INVALID_IMAGE")
        return "module"
    again = CubinCache(cache.folder, compile=fake_compile)
    assert again.load(KERNEL, "sm_90", load) == "module" and again.compiles == 1 and len(tries) == 2


def test_a_fresh_module_the_driver_refuses_is_an_error_not_a_loop(cache):
    def load(path):
        raise RuntimeError("CUDA_ERROR_NO_BINARY_FOR_GPU")
    with pytest.raises(ft.DeviceError, match=r"the CUDA driver cannot load the module just compiled for sm_90 "
                                             r"\(.*-sm_90.cubin\): RuntimeError: CUDA_ERROR_NO_BINARY_FOR_GPU"):
        cache.load(KERNEL, "sm_90", load)
    assert cache.compiles == 1


def test_a_write_that_fails_leaves_the_old_entry_whole_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "entry.cubin"
    write_atomic(path, b"old")

    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, b"new" * 1000)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["entry.cubin"]


def test_whole_elf_reads_the_tables_of_a_real_cubin():
    cubin = fake_compile(KERNEL, "sm_90", options=(), name="", compiler=None)
    assert whole_elf(cubin) and not whole_elf(cubin[:-1]) and not whole_elf(b"\x7fELF" + cubin[4:40])
    if nvrtc.compilers():
        real = nvrtc.compile_cuda(KERNEL, "sm_90")
        assert whole_elf(real) and not whole_elf(real[:-1]) and not whole_elf(real[:len(real) // 2])


SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from fractal.backends.cuda.cupy_device import CubinCache
    mode, source = sys.argv[1], sys.argv[2]
    cache = CubinCache()
    if mode == "reuse":
        def refuse(*a, **k):
            raise AssertionError("compiled again")
        cache._compile = refuse
    data = cache.load(source, "sm_80", Path.read_bytes)
    print(cache.compiles, len(data), cache.path(source, "sm_80"))
""")


def _process(mode: str, source: str, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, mode, source], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@needs_compiler
def test_two_processes_compiling_one_module_both_end_with_a_whole_entry_and_a_third_reuses_it(tmp_path):
    env = {**os.environ, "FRACTAL_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    source = KERNEL + f"// {tmp_path.name}\n"
    runs = [_process("compile", source, env) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outs
    (a_compiles, a_size, a_path), (b_compiles, b_size, b_path) = (o.split() for o, _ in outs)
    assert a_path == b_path and a_size == b_size
    entries = list((tmp_path / "cuda").iterdir())
    assert [p.name for p in entries] == [Path(a_path).name] and whole_elf(entries[0].read_bytes())
    third = _process("reuse", source, env)
    out, err = third.communicate(timeout=60)
    assert third.returncode == 0, err
    assert out.split()[:2] == ["0", a_size]


def test_the_gpu_arch_is_the_targets_when_they_agree_and_the_gpus_when_it_is_newer():
    h100, a100 = ft.targets.get("h100"), ft.targets.get("a100")
    assert [arch_of("90"), arch_of("86"), arch_of("100"), arch_of((8, 9))] == ["sm_90", "sm_86", "sm_100", "sm_89"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_arch(h100, "sm_90", "NVIDIA H100") == "sm_90"
    with pytest.warns(UserWarning, match=r"target 'a100' describes a sm_80 GPU; this GPU \(NVIDIA H100\) is sm_90: "
                                         r"its kernels are compiled for sm_90 and run correctly, but were shaped"):
        assert choose_arch(a100, "sm_90", "NVIDIA H100") == "sm_90"


@pytest.mark.parametrize("target, gpu, hint", [
    ("h100", "sm_80", r"compile for ft.targets.cuda\('sm_80'\) \(its reference GPU is a100\)"),
    ("l4", "sm_86", r"compile for an architecture this GPU has \(of ft.targets.cuda's: sm_80\)"),
    ("a100", "sm_75", r"compile for an architecture this GPU has \(of ft.targets.cuda's: none\)"),
])
def test_a_gpu_older_than_the_target_is_refused_naming_a_target_that_fits(target, gpu, hint):
    with pytest.raises(ft.DeviceError, match=rf"target '{target}' is for sm_\d\d GPUs, and this GPU \(Old GPU\) "
                                             rf"is {gpu}, older: its kernels may use instructions that {gpu} "
                                             rf"lacks; {hint}, or run the same kernels on the CPU with "
                                             r"ft.targets.cuda\(..., emulate=True\)"):
        choose_arch(ft.targets.get(target), gpu, "Old GPU")


@ft.function
def double(x):
    return x * 2.0


def test_without_cupy_compiling_for_a_gpu_says_so_and_suggests_the_emulation(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # (import cupy: ImportError)
    with pytest.raises(ft.DeviceError, match=r"the 'cuda' backend runs its kernels with CuPy, which does not import "
                                             r"here \(.*\): install the `cuda` extra \(pip install "
                                             r"'fractal-tensor\[cuda\]'\) on a machine with an NVIDIA GPU, or run "
                                             r"the same kernels on the CPU with ft.targets.cuda\(..., emulate=True\)"):
        double(np.ones(2, np.float32), target="h100")


class _NoDriver(Exception):
    pass


def fake_cupy(devices: int = 1, capability: str = "90", free: int = 1 << 20):
    """What the device reads of CuPy, answering as a machine with `devices` GPUs (`free`
    bytes each) would; no kernel runs."""
    class OutOfMemoryError(Exception):
        pass

    def get_device_count():
        if devices < 0:
            raise _NoDriver("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
        return devices

    def allocate(nbytes, make):
        if nbytes > free:
            raise OutOfMemoryError(f"Out of memory allocating {nbytes} bytes")
        return make()

    class Device:
        def __init__(self, id=0):
            self.id, self.compute_capability = id, capability

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count,
                                    getDeviceProperties=lambda i: {"name": b"NVIDIA Fake"})
    return types.SimpleNamespace(
        cuda=types.SimpleNamespace(runtime=runtime, Device=Device,
                                   memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError)),
        ndarray=type("ndarray", (), {}), asnumpy=np.asarray,
        asarray=lambda a: allocate(np.asarray(a).nbytes, lambda: np.array(a)),
        zeros=lambda n, dtype: allocate(n * np.dtype(dtype).itemsize, lambda: np.zeros(n, dtype)))


@pytest.mark.parametrize("devices, reason", [(0, "no CUDA device"),
                                             (-1, "_NoDriver: cudaErrorInsufficientDriver: CUDA driver version")])
def test_without_a_gpu_compiling_for_one_says_so_and_suggests_the_emulation(monkeypatch, devices, reason):
    monkeypatch.setattr(cupy_device, "import_cupy", lambda: fake_cupy(devices))
    with pytest.raises(ft.DeviceError, match=rf"the 'cuda' backend found no NVIDIA GPU here \(CuPy says {reason}.*\); "
                                             r"run the same kernels on the CPU with ft.targets.cuda\(..., "
                                             r"emulate=True\)"):
        double(np.ones(3, np.float32), target="h100")
    assert cupy_device.probe() == (None, "no NVIDIA GPU")


def test_the_device_is_the_gpus_own_and_takes_only_arrays_on_a_gpu(monkeypatch):
    monkeypatch.setattr(cupy_device, "import_cupy", lambda: fake_cupy(capability="90"))
    device = CupyDevice.for_target(ft.targets.get("h100"))
    assert (device.arch, device.name, device.gpu_name) == ("sm_90", "cuda:0 (NVIDIA Fake)", "NVIDIA Fake")
    assert cupy_device.probe() == ("NVIDIA Fake (sm_90)", "")

    class OnGpu:  # a DLPack tensor in CUDA memory; a NumPy array says it is on the CPU
        __dlpack__ = None

        def __dlpack_device__(self):
            return (2, 0)
    device.cupy.from_dlpack = lambda x: ("adopted", x)
    gpu_tensor = OnGpu()
    assert device.adopt(np.ones(2)) is None and device.adopt(gpu_tensor) == ("adopted", gpu_tensor)
    monkeypatch.setattr(cupy_device, "import_cupy", lambda: fake_cupy(capability="80"))
    with pytest.raises(ft.DeviceError, match=r"target 'h100' is for sm_90 GPUs, and this GPU \(NVIDIA Fake\) is sm_80"):
        CupyDevice.for_target(ft.targets.get("h100"))


def test_running_out_of_device_memory_names_the_buffer_and_its_size(monkeypatch):
    monkeypatch.setattr(cupy_device, "import_cupy", lambda: fake_cupy(free=1 << 20))
    device = CupyDevice.for_target(ft.targets.get("h100"))
    assert device.zeros(1000, np.float32, "h").shape == (1000,)
    with pytest.raises(ft.ResourceError, match=r"out of GPU memory on NVIDIA Fake allocating buffer 'h' \(3.0 MiB: "
                                               r"786432 x float32\); free device memory \(other processes, arrays "
                                               r"kept with keep_on_device\) or use smaller inputs"):
        device.zeros(3 << 18, np.float32, "h")
    with pytest.raises(ft.ResourceError, match=r"allocating buffer 'x' \(2.0 MiB: 262144 x float64\)"):
        device.to_device(np.zeros(1 << 18), "x")


def test_without_cupy_the_cuda_backend_says_it_is_unavailable_and_check_leaves_it_out(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert ft.backends.unavailable("cuda") == "no CuPy here: it runs on an NVIDIA GPU through CuPy"
    assert ft.backends.unavailable("cpu") is None and ft.backends.unavailable("cuda-emulated") is None
    from hypothesis import strategies as st
    report = ft.testing.check(double, lambda x: x * 2.0, max_examples=2, arguments=st.tuples(
        st.just(np.arange(3, dtype=np.float32))))
    # (the emulation runs here, but only where named: checked_by_default = False)
    assert "cuda" not in report.backends and "cuda-emulated" not in report.backends and "cpu" in report.backends
    assert report.unavailable == {"cuda": "no CuPy here: it runs on an NVIDIA GPU through CuPy"}


def test_fractal_run_for_a_gpu_without_one_says_so_in_a_line(monkeypatch, capsys):
    from fractal.cli import main
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert main(["run", "b2b_gemm", "--target", "h100"]) == 2
    assert capsys.readouterr().err.startswith("fractal: the 'cuda' backend runs its kernels with CuPy, which does "
                                              "not import here")


def test_a_cooperative_launch_asks_for_no_more_blocks_than_the_gpu_holds():
    """An H100-like SM (2048 threads, 64K registers, 228 KiB shared, 32 blocks) and a kernel of
    256 threads: 80 registers a thread allow 3 blocks an SM, 40 KiB of shared memory 5, and
    the threads 8; missing attributes leave the record's estimate."""
    from fractal.backends.cuda.cupy_device import resident_blocks
    gpu = {"MultiProcessorCount": 132, "MaxThreadsPerMultiProcessor": 2048, "MaxRegistersPerMultiprocessor": 65536,
           "MaxSharedMemoryPerMultiprocessor": 228 * 1024, "MaxBlocksPerMultiprocessor": 32}
    assert resident_blocks({"num_regs": 80, "shared_size_bytes": 0}, gpu, 256) == 3 * 132
    assert resident_blocks({"num_regs": 32, "shared_size_bytes": 40 * 1024}, gpu, 256) == 5 * 132
    assert resident_blocks({"num_regs": 16, "shared_size_bytes": 0}, gpu, 256) == 8 * 132
    assert resident_blocks({}, gpu, 256) is None
