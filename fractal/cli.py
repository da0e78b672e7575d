"""The `fractal` command line: browse and run the model zoo.

    fractal models                            list the zoo
    fractal run stacked_lstm --config cpu     run a model, check it against its reference, time it
    fractal bench [--models M ...] [--quick]  the CPU benchmark (benchmarks/cpu_backend.py, from a checkout)
    fractal bench --target cuda               the GPU check (benchmarks/gpu_check.py), on an NVIDIA GPU
    fractal targets [NAME ...] [--measure]    the targets (CPUs and GPUs), their numbers and sources

The zoo lives in the repository's `examples/` folder; the command finds it in
the current directory, next to the installed package (editable installs), or
in the folder named by `FRACTAL_ZOO`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import sys
import time

import numpy as np

import fractal as ft
from fractal.backends.cpu import host
from fractal.backends.cuda.cupy_device import probe


def _from_checkout(relpath: str, module: str, missing: str):
    """Import `module` from the source checkout holding `relpath` (the current folder, the one
    this package was installed from, or FRACTAL_ZOO), putting that folder on sys.path."""
    candidates = [os.environ.get("FRACTAL_ZOO"), os.getcwd(), str(pathlib.Path(__file__).resolve().parents[1])]
    for root in filter(None, candidates):
        if (pathlib.Path(root) / relpath).is_file():
            if root not in sys.path:
                sys.path.insert(0, root)
            return importlib.import_module(module)
    raise SystemExit(f"fractal: {missing}")


def _zoo():
    """`examples.zoo`."""
    return _from_checkout("examples/zoo.py", "examples.zoo",
                          "cannot find the model zoo (examples/zoo.py); run from a clone of the "
                          "repository or set FRACTAL_ZOO to the folder that holds examples/")


def _benchmark():
    """`benchmarks.cpu_backend` (benchmarks/ is not installed with the package)."""
    return _from_checkout("benchmarks/cpu_backend.py", "benchmarks.cpu_backend",
                          "cannot find benchmarks/cpu_backend.py; `fractal bench` runs from a clone of "
                          "the repository (the benchmarks are not installed with the package)")


def cmd_models(args) -> int:
    zoo = _zoo()
    names = zoo.available()
    width = max(map(len, names))
    for name in names:
        m = zoo.load(name)
        print(f"{name:<{width}}  {m.DESCRIPTION}")
        print(f"{'':<{width}}  configs: {', '.join(m.CONFIGS)}")
    return 0


class _Bar:
    """A one-line progress bar on stderr, drawn at most every 0.2 s."""

    def __init__(self, label: str, stream=sys.stderr):
        self.label, self.stream, self.last, self.start = label, stream, 0.0, time.perf_counter()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.last < 0.2 and done < total or now - self.start < 0.5:
            return
        self.last, self.shown = now, True
        frac = done / total if total else 0.0
        bar = "#" * int(30 * frac)
        self.stream.write(f"\r{self.label} [{bar:<30}] {done}/{total} steps, {now - self.start:.1f} s")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")


def cmd_run(args) -> int:
    zoo = _zoo()
    try:
        m = zoo.load(args.model)
    except KeyError as e:
        print(f"fractal: {e.args[0]}", file=sys.stderr)
        return 2
    if args.config not in m.CONFIGS:
        print(f"fractal: {args.model} has no config {args.config!r}; it has {', '.join(m.CONFIGS)}",
              file=sys.stderr)
        return 2
    dtype = np.dtype(args.dtype)
    print(f"{args.model} [{args.config}] {m.CONFIGS[args.config]} {dtype}, "
          f"{'regular' if args.regular else 'ragged'} inputs, seed {args.seed}")
    t0 = time.perf_counter()
    inputs = m.inputs(args.config, dtype=dtype, seed=args.seed, ragged=not args.regular)
    t1 = time.perf_counter()
    m.model.trace(*inputs)
    t2 = time.perf_counter()
    if args.print_ir:
        print("== program IR ==")
        print(m.model.trace(*inputs))
    compile_ms = None
    if args.backend == "interpreter" and args.target is None:  # (with a progress bar)
        bar = _Bar("interpreter")
        try:
            result = m.model.interpret(*inputs, progress=bar)
        finally:
            bar.close()
    else:
        options = {k: v for k, v in (("backend", args.backend), ("target", args.target)) if v is not None}
        try:
            compiled = m.model.compile(*inputs, **options)
        except (ft.ArgumentError, ft.DeviceError) as e:  # (a GPU target on a machine without one)
            print(f"fractal: {e.message}", file=sys.stderr)
            return 2
        compile_ms = 1e3 * compiled.compile_seconds
        if args.print_tile_ir:
            print("== tile IR ==")
            print(compiled.tile_ir)
        t2 = time.perf_counter()
        result = compiled.run(*inputs)
    t3 = time.perf_counter()
    expected = m.reference(*inputs)
    t4 = time.perf_counter()
    print(f"result: {_describe(result)}")
    err = zoo.max_abs_error(m.outputs(result), expected)
    tol = zoo.tolerance(dtype)
    compiled_text = f"compile {compile_ms:.1f} ms, " if compile_ms is not None else ""
    print(f"inputs {1e3 * (t1 - t0):.1f} ms, trace {1e3 * (t2 - t1):.1f} ms, {compiled_text}"
          f"{args.backend or args.target or 'host'} {1e3 * (t3 - t2):.1f} ms, NumPy reference {1e3 * (t4 - t3):.1f} ms")
    ok = err <= tol
    print(f"max |fractal - reference| = {err:.3e} (tolerance {tol:.0e}): {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def cmd_targets(args) -> int:
    """Print the named targets (or those asked for): every number the compiler reads from each
    and where it comes from; the host's is this machine's measurement and where it is kept."""
    if args.measure:
        host.measure_again()
    wanted = args.names or ft.targets.names()
    gpu = None  # (this machine's GPU, probed once)
    for name in wanted:
        try:
            target = ft.targets.get(name)
        except ft.ArgumentError as e:
            print(f"fractal: {e.message}", file=sys.stderr)
            return 2
        print(target)
        if name == "host":
            override = os.environ.get("FRACTAL_HOST")
            print(f"  (FRACTAL_HOST={override} replaces the measurement)" if override else
                  f"  (measured once per machine, kept in {host.cache_dir()}; FRACTAL_HOST replaces it)")
        if target.backend == "cuda":
            gpu = gpu or probe()
            where = f"runs it on this machine's {gpu[0]}" if gpu[0] else f"cannot run it here ({gpu[1]})"
            print(f"  (the 'cuda' backend {where}; {target.name}-emulated runs the same kernels on the CPU)")
        print()
    return 0


def _gpu_check():
    """`benchmarks.gpu_check` (from a checkout, as `_benchmark`)."""
    return _from_checkout("benchmarks/gpu_check.py", "benchmarks.gpu_check",
                          "cannot find benchmarks/gpu_check.py; `fractal bench --target cuda` runs from a clone "
                          "of the repository (the benchmarks are not installed with the package)")


def cmd_bench(args) -> int:
    models = ["--models", *args.models] if args.models else []
    if args.target == "cuda":  # the GPU check: tests, answers at small, speed at paper
        return _gpu_check().main(["--repeats", str(1 if args.quick else args.repeats)] + models)
    argv = ["--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
    return _benchmark().main(argv + models)


def _describe(result) -> str:
    if isinstance(result, tuple):
        return "(" + ", ".join(_describe(r) for r in result) + ")"
    return repr(result) if hasattr(result, "type") else f"array{list(np.shape(result))}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fractal", description="The fractal model zoo.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the models of the zoo").set_defaults(fn=cmd_models)
    run = sub.add_parser("run", help="run a model, check it against its reference, print timings")
    run.add_argument("model")
    run.add_argument("--config", default="small", help="small (default), cpu, paper, or a model's variant")
    run.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--regular", action="store_true", help="equal lengths instead of a ragged batch")
    run.add_argument("--print-ir", action="store_true", help="also print the program IR")
    run.add_argument("--backend", default=None,
                     help="a backend by name (cpu, pointwise, interpreter, ...); default: the target's")
    run.add_argument("--target", default=None, help="a target by name (see `fractal targets`; default: host)")
    run.add_argument("--print-tile-ir", action="store_true", help="also print the compiled tile IR (cpu)")
    run.set_defaults(fn=cmd_run)
    bench = sub.add_parser("bench", help="benchmark the CPU backend against the interpreter, NumPy, "
                                         "PyTorch and JAX (writes BENCHMARKS.md)")
    bench.add_argument("--models", nargs="+", metavar="MODEL", help="zoo models (default: all)")
    bench.add_argument("--repeats", type=int, default=5, help="timed runs per system, median (default 5)")
    bench.add_argument("--quick", action="store_true", help="1 repeat and no interpreter")
    bench.add_argument("--target", choices=["host", "cuda"], default="host",
                       help="host: the CPU benchmark (default); cuda: the GPU check on this machine's NVIDIA GPU "
                            "(benchmarks/gpu_check.py: the CUDA tests, every model at small, the zoo at paper "
                            "against PyTorch; exits 2 without a GPU)")
    bench.set_defaults(fn=cmd_bench)
    targets = sub.add_parser("targets", help="the targets to compile for: hardware numbers, sources, policy")
    targets.add_argument("names", nargs="*", metavar="NAME", help="targets to show (default: all)")
    targets.add_argument("--measure", action="store_true",
                         help="measure this machine again (on a quiet machine: the record is kept)")
    targets.set_defaults(fn=cmd_targets)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
