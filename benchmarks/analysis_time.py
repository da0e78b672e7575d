"""How long the ETDG analysis takes on every zoo model at its `paper` configuration.

    python benchmarks/analysis_time.py [--config paper] [--repeat 3] [MODEL ...]

For each model: the time to trace the program (a fresh `ft.function`, so no
trace cache), the time of the analysis itself (`fractal.analysis.analyze_program` on
the traced program: building the ETDG, dependences, wavefronts, reuse), each
the median of `--repeat` runs, and the number of blocks.  Input generation is
not timed.  The goal is under a second per model: the analysis is symbolic
(isl), so its cost depends on the program's structure, not on the sizes.

Writes `benchmarks/results/analysis_time.json` (with the machine and the
versions of Python, NumPy and islpy) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/analysis_time.py` from a checkout
    sys.path.insert(0, str(ROOT))

import islpy  # noqa: E402
import numpy as np  # noqa: E402

import fractal as ft  # noqa: E402
from examples import zoo  # noqa: E402
from fractal.analysis import analyze_program  # noqa: E402

GOAL_S = 1.0


def _median_time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def measure(name: str, config: str, repeat: int) -> dict:
    m = zoo.load(name)
    args = m.inputs(config)
    # trace: a fresh Function each time, so the trace cache does not hide the work
    trace_s, program = _median_time(lambda: ft.function(m.model.fn).trace(*args), repeat)
    flat = m.model.traced(tuple(args), {})[2]  # the program's parameters (captured arrays too)
    analysis_s, a = _median_time(lambda: analyze_program(program, flat), repeat)
    return {"model": name, "config": config, "trace_s": trace_s, "analysis_s": analysis_s,
            "blocks": len(a.blocks), "within_goal": analysis_s < GOAL_S}


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}


def versions() -> dict:
    return {"python": platform.python_version(), "numpy": np.__version__, "islpy": islpy.__version__}


def table(rows) -> str:
    head = f"{'model':<26} {'trace (ms)':>11} {'analysis (ms)':>14} {'blocks':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        flag = "" if r["within_goal"] else f"   > {GOAL_S:g} s"
        lines.append(f"{r['model']:<26} {1e3 * r['trace_s']:>11.1f} {1e3 * r['analysis_s']:>14.1f} "
                     f"{r['blocks']:>7}{flag}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", help="zoo models (default: all)")
    ap.add_argument("--config", default="paper")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "analysis_time.json"))
    opts = ap.parse_args(argv)
    names = opts.models or zoo.available()
    rows = []
    for name in names:
        rows.append(measure(name, opts.config, opts.repeat))
        print(f"  {name}: analysis {1e3 * rows[-1]['analysis_s']:.1f} ms", file=sys.stderr, flush=True)
    print(f"ETDG analysis time, config {opts.config!r}, median of {opts.repeat} ({platform.python_implementation()} "
          f"{platform.python_version()}, numpy {np.__version__}, islpy {islpy.__version__}, "
          f"{os.cpu_count()} CPUs)")
    print(table(rows))
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "analysis_time", "config": opts.config, "repeat": opts.repeat,
                               "goal_s": GOAL_S, "machine": machine(), "versions": versions(),
                               "results": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
