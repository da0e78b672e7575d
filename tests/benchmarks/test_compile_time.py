"""benchmarks/compile_time.py, run small: a model compiled in a fresh process reports each
stage's seconds and its peak memory; a model that fails to compile is a row with its error.
Structure only (the machine is shared: nothing here asserts on a timing)."""

import json

from benchmarks import compile_time


def test_a_compile_in_a_fresh_process_reports_its_stages_and_peak_memory(tmp_path):
    out = tmp_path / "ct.json"
    assert compile_time.main(["--config", "small", "b2b_gemm", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["config"] == "small" and saved["machine"]["cpu_count"] >= 1
    (row,) = saved["results"]
    assert row["error"] is None and row["model"] == "b2b_gemm"
    assert set(row["seconds"]) == {"trace", "lower", "passes", "backend"}
    assert row["total_s"] >= sum(row["seconds"].values()) * 0.99 and row["peak_rss_bytes"] > 2**20


def test_a_model_that_does_not_compile_is_a_row_with_its_error():
    row = compile_time.measure("no_such_model", "small")
    assert row["total_s"] is None and "no_such_model" in row["error"]
    assert "failed: " in compile_time.table([row])
