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


def test_bench_runs_on_torch_alone_without_the_extension(monkeypatch, capsys):
    # Extension missing (or no kernel for the device): trainops falls back to
    # torch's operations, with one warning, and the bench still prints its table.
    from trainops import _extension, clip

    monkeypatch.setattr(_extension, "LOADED", False)
    monkeypatch.setattr(_extension, "CLIP_DEVICES", ())
    monkeypatch.setattr(clip, "_warned_fallback", set())
    with pytest.warns(RuntimeWarning, match="falling back"):
        assert cli.main(["bench", "--suite", "clip", "--cases", "1k_x_1k", "--dtypes", "fp32", "--clip", "no"]) == 0
    assert "1k_x_1k" in capsys.readouterr().out
