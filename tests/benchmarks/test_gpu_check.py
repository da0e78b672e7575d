"""The one-shot GPU check (benchmarks/gpu_check.py), without a GPU.

* Without CuPy or a GPU it says so in one line, exits 2 and runs nothing (`fractal bench
  --target cuda` too).
* Its parts run on the emulated GPU, so the harness is checked here: a model's answer at
  `small` against the interpreter, a timed case beside the (absent) peers, the markdown section
  of a GPU, spliced into BENCHMARKS.md without touching the CPU page or other GPUs' sections.
* Its time boxes stop a model that runs over, nested boxes included.
"""

from __future__ import annotations

import sys
import time

import pytest

import fractal as ft
from benchmarks import cpu_backend, gpu_check, report
from fractal.cli import main as cli

EMULATED = ft.targets.cuda("sm_80", emulate=True)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    for step in ("run_tests", "check_small", "time_cases"):
        monkeypatch.setattr(gpu_check, step, lambda *a, **k: pytest.fail("ran without a GPU"))


def test_without_a_gpu_the_check_says_so_in_one_line_and_runs_nothing(no_gpu, tmp_path, capsys):
    out, md = tmp_path / "gpu.json", tmp_path / "BENCHMARKS.md"
    assert gpu_check.main(["--out", str(out), "--markdown", str(md)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gpu_check: no GPU to check here (the 'cuda' backend runs its "
                                                   "kernels with CuPy, which does not import here")
    assert err.rstrip().endswith("emulate=True)); nothing was run") and not out.exists() and not md.exists()
    assert cli(["bench", "--target", "cuda"]) == 2 and "nothing was run" in capsys.readouterr().err


def test_a_model_at_small_is_checked_against_the_interpreter_and_a_case_is_timed():
    small = gpu_check.check_small(["b2b_gemm"], EMULATED, gpu_check.Clock(120), 120)
    assert small == [{"model": "b2b_gemm", "error": None, "max_abs_error": small[0]["max_abs_error"], "agrees": True}]
    cases, skipped = gpu_check.time_cases(["b2b_gemm"], "small", EMULATED, None, 2, gpu_check.Clock(120))
    frac = cases[0]["systems"][gpu_check.FRACTAL]
    assert skipped == [] and list(cases[0]["systems"]) == [gpu_check.FRACTAL]
    assert frac["agrees"] and frac["median_ms"] > 0 and frac["pct_peak"] > 0
    assert frac["repeats"] in (2, 2 * cpu_backend.SHORT_FACTOR)  # (the harness: more runs of a short case)
    assert gpu_check.time_cases(["b2b_gemm"], "small", EMULATED, None, 1, gpu_check.Clock(1)) == ([], ["b2b_gemm"])
    results = {"gpu": "NVIDIA Test (sm_80)", "target": EMULATED.name, "date": "today", "repeats": 2, "seconds": 3.0,
               "versions": {"fractal_commit": "0123456789abcdef", "cupy": "13.0", "torch": None},
               "tests": {"ok": True, "summary": "40 passed", "gpu_skips": []}, "small": small, "paper": cases,
               "skipped": ["graphsage"], "peers_note": "none (torch is not installed)"}
    text = gpu_check.section(results)
    assert text.startswith("## GPU: NVIDIA Test (sm_80)\n")
    assert "- **Tests** (`pytest tests/backends/cuda`): OK: 40 passed" in text
    assert "### Every model at `small` against the interpreter: 1 of 1 agree" in text
    assert f"| b2b_gemm | small | {report._ms(frac['median_ms'])} |" in text and "- graphsage: not run" in text


def test_a_gpus_section_replaces_its_old_one_and_keeps_the_page_and_the_other_gpus(tmp_path):
    page = "# CPU backend benchmarks\n\n## Results\n\nrows\n"
    one = report.splice_gpu_section(page, "A (sm_80)", "## GPU: A (sm_80)\n\nold\n")
    two = report.splice_gpu_section(one, "B (sm_90)", "## GPU: B (sm_90)\n\nb\n")
    again = report.splice_gpu_section(two, "A (sm_80)", "## GPU: A (sm_80)\n\nnew\n")
    assert again == page + "\n## GPU: A (sm_80)\n\nnew\n\n## GPU: B (sm_90)\n\nb\n"
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(again)
    assert report.keep_gpu_sections("# CPU backend benchmarks\n\nrerun\n", path) == \
        "# CPU backend benchmarks\n\nrerun\n\n## GPU: A (sm_80)\n\nnew\n\n## GPU: B (sm_90)\n\nb\n"


def spin(seconds: float) -> None:
    """Python code running (a box stops Python code, as the host side of a GPU run is)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_time_box_stops_what_runs_over_and_boxes_nest():
    with pytest.raises(gpu_check.OverBudget, match="over its 0 s box"):
        with gpu_check.time_box(0.05):
            spin(1)
    t0 = time.perf_counter()
    with pytest.raises(gpu_check.OverBudget):
        with gpu_check.time_box(0.3):
            with gpu_check.time_box(5):  # ends with the box around it
                spin(2)
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(gpu_check.OverBudget):
        with gpu_check.time_box(0.3):
            with gpu_check.time_box(0.05):
                pass
            spin(2)  # the outer box still counts
    assert time.perf_counter() - t0 < 2.0
