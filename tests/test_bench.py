"""`trainops bench` (the main job) on its smallest case: the table and the JSON
agree and every figure is derived from times measured in the run."""

from __future__ import annotations

import json

import pytest
import torch

from trainops import cli


def test_bench_small_case_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--suite", "clip", "--cases", "1k_x_1k", "--dtypes", "fp32", "--clip", "no", "--device", "cpu"]
    assert cli.main(argv + ["--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert ".grad ms" in table and "ceiling" in table
    data = json.loads(out.read_text())
    assert data["device"] == "cpu" and data["init_rows"] == []
    (row,) = data["rows"]
    assert row["case"] == "1k_x_1k" and row["tensors"] == 1000 and not row["clipping"]
    assert row["mbytes"] == pytest.approx(4.0)
    for key in ("torch_foreach_ms", "torch_loop_ms", "trainops_ms", "grads_ms"):
        assert row[key] > 0
    fastest_torch = min(row["torch_foreach_ms"], row["torch_loop_ms"])
    assert row["speedup"] == pytest.approx(fastest_torch / row["trainops_ms"])
    assert row["ceiling"] == pytest.approx(fastest_torch / row["grads_ms"])
    assert row["gbs"] == pytest.approx(row["mbytes"] * 1e6 / (row["trainops_ms"] * 1e6))


def test_bench_rejects_unknown_case(capsys):
    assert cli.main(["bench", "--cases", "nope"]) == 2
    assert "unknown case" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_bench_without_cuda_device_says_so(capsys):
    assert cli.main(["bench", "--device", "cuda", "--cases", "10k_x_100"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_bench_refuses_to_time_the_fallback_unless_asked(monkeypatch, capsys, tmp_path):
    # No kernel for the device (extension missing, or a CPU-only build on a
    # GPU): the trainops column would time torch's operations, so the bench
    # refuses; --allow-fallback runs it, says so, and records it in the JSON.
    from trainops import _extension

    monkeypatch.setattr(_extension, "CLIP_DEVICES", frozenset())
    argv = ["bench", "--cases", "1k_x_1k", "--dtypes", "fp32", "--clip", "no", "--device", "cpu"]
    assert cli.main(argv) == 2
    assert "--allow-fallback" in capsys.readouterr().err
    out = tmp_path / "fallback.json"
    with pytest.warns(RuntimeWarning, match="falling back"):
        assert cli.main(argv + ["--allow-fallback", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fallback" in text and "1k_x_1k" in text
    build = json.loads(out.read_text())["build"]
    assert build["trainops_column_is_fallback"] and build["extension_loaded"]


def test_bench_checks_its_options_before_measuring(capsys, tmp_path):
    for argv, message in (
        (["--device", "gpu"], "--device"),
        (["--threads", "-1"], "--threads"),
        (["--cases", ""], "no gradient set"),
        (["--cases", "1k_x_1k", "--json", str(tmp_path / "missing" / "x.json")], "--json"),
        (["--cases", "1k_x_1k", "--json", str(tmp_path)], "is a directory"),  # refused before, not after, the run
    ):
        assert cli.main(["bench"] + argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "measuring" not in err, (argv, err)


def test_bench_json_records_the_build(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert cli.main(["bench", "--cases", "10k_x_100", "--dtypes", "fp32", "--clip", "no", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["init_rows"] == []  # --cases alone runs the clip suite only
    assert data["build"]["extension_loaded"] and data["build"]["build_info"]["abi"]
    assert data["args"]["cases"] == "10k_x_100" and data["timestamp"]


def test_bench_init_suite_measures_thread_scaling_side_by_side(tmp_path, capsys, monkeypatch):
    from trainops import bench

    monkeypatch.setattr(bench, "gpt2_shapes", lambda: [(64, 32), (32,), (128,)])  # the suite's logic, not its size
    before = torch.get_num_threads()
    out = tmp_path / "init.json"
    argv = ["bench", "--suite", "init", "--dtypes", "fp32", "--device", "cpu", "--threads", "2", "--json", str(out)]
    try:
        assert cli.main(argv) == 0
    finally:
        torch.set_num_threads(before)
    table = capsys.readouterr().out
    assert "1 -> 2 threads" in table and "side by side" in table
    data = json.loads(out.read_text())
    assert [(r["case"], r["threads"]) for r in data["init_rows"]] == [
        ("gpt2 normal", 2), ("gpt2 normal", 1), ("gpt2 trunc_normal", 2), ("gpt2 trunc_normal", 1)
    ]
    for r in data["init_rows"]:
        assert r["uniform_ms"] > 0 and r["ceiling"] == pytest.approx(r["torch_ms"] / r["uniform_ms"])
    assert "uniform ms" in table and "ceiling" in table
    scaling = data["thread_scaling"]
    assert [r["case"] for r in scaling] == ["gpt2 normal", "gpt2 trunc_normal"]
    for r in scaling:
        assert r["threads"] == 2 and r["one_thread_ms"] > 0 and r["threads_ms"] > 0
        assert r["speedup"] == pytest.approx(r["one_thread_ms"] / r["threads_ms"]) and r["fill_speedup"] > 0


def test_side_by_side_rotates_the_order_every_round():
    # Each round calls every fn once, starting one later than the round before,
    # so no fn always runs first or right after the same neighbour; before(key)
    # runs ahead of each call, warm-up included.
    from trainops import bench

    calls: list[str] = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    befores: list[str] = []
    ms = bench.side_by_side_ms(
        fns, "cpu", min_rounds=3, max_rounds=3, budget_s=0.0, before=befores.append, rewarm_below_ms=0.0
    )
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert befores == calls
    assert set(ms) == set("abc") and all(v >= 0 for v in ms.values())
    # Fast fns are called once more, untimed, right before each timed call.
    calls.clear()
    bench.side_by_side_ms(fns, "cpu", min_rounds=2, max_rounds=2, budget_s=0.0)
    assert calls == list("abc") + list("aabbcc") + list("bbccaa")


def test_side_by_side_medians_are_of_each_fns_timed_calls(monkeypatch):
    # A fake clock: each fn's n-th call "takes" a time that says what the call
    # was (warm-up, re-warm, timed), so the medians show which calls count.
    from trainops import bench

    counts = {"short": 0, "long": 0}
    timed = {"short": [3.0, 1.0, 2.0, 9.0, 4.0], "long": [30.0, 50.0, 40.0, 35.0, 90.0]}

    def fake_time_ms(fn, device):
        key = fn()
        n = counts[key]
        counts[key] += 1
        if n == 0:
            return 5.0  # warm-up: fast, so every timed call is re-warmed
        return 1000.0 if n % 2 == 1 else timed[key][n // 2 - 1]

    monkeypatch.setattr(bench, "_time_ms", fake_time_ms)
    fns = {"short": lambda: "short", "long": lambda: "long"}
    ms = bench.side_by_side_ms(fns, "cpu", min_rounds=5, max_rounds=5, budget_s=0.0)
    assert ms == {"short": 3.0, "long": 40.0}
    assert counts == {"short": 11, "long": 11}
