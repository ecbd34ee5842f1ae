"""Run the examples (MLP and GRU, healthy and pathological) and check what their diagnoses say."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

import pytest
import torch

from trainops.diagnose import diagnose, load_curves

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
# The budget is a minute on CPU; the examples aim at a few seconds.
TIME_LIMIT_S = 60.0
HEALTHY = {"converged", "underfitting", "overfitting"}


def _load(name: str):
    if EXAMPLES not in sys.path:  # the examples import training_loop, which a script finds beside it
        sys.path.append(EXAMPLES)
    spec = importlib.util.spec_from_file_location(f"trainops_example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each example scenario once (seed 0), with TensorBoard logs when available:
    (result, logdir, seconds of the whole run including data and model setup)."""
    results = {}
    threads = torch.get_num_threads()
    # As the examples' main() does: tiny models are fastest on one thread.
    torch.set_num_threads(1)
    try:
        for name, scenario in (("mlp", "default"), ("mlp", "overfit"), ("gru", "default"), ("gru", "high_lr")):
            logdir = str(tmp_path_factory.mktemp(f"{name}-{scenario}")) if HAS_TENSORBOARD else None
            start = time.perf_counter()
            result = _load(name).run(scenario, seed=0, logdir=logdir, verbose=False)
            results[name, scenario] = (result, logdir, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return results


def test_mlp_overfits_a_tiny_dataset(runs):
    result, *_ = runs["mlp", "overfit"]
    assert result.diagnosis.kind in ("early_stop", "overfitting"), result.diagnosis
    assert result.stopped_early
    # diagnose's best epoch (smoothed) agrees with EarlyStopping's (raw)
    assert abs(result.diagnosis.epoch - result.best_epoch) <= 2
    assert result.val_loss[-1] > min(result.val_loss) * 1.1
    assert result.train_loss[-1] < result.train_loss[0] * 0.5


def test_gru_with_too_high_a_learning_rate(runs):
    result, *_ = runs["gru", "high_lr"]
    assert result.diagnosis.kind == "lr_too_high", result.diagnosis
    summary = result.grad_summary
    assert summary.clip_rate > 0.5
    assert any("Lower the learning rate" in sentence for sentence in summary.advice)


@pytest.mark.parametrize("name", ["mlp", "gru"])
def test_default_runs_are_healthy(runs, name):
    result, *_ = runs[name, "default"]
    assert result.diagnosis.kind in HEALTHY, result.diagnosis
    assert result.grad_summary.clip_rate < 0.5
    assert result.grad_summary.nonfinite_steps == []
    assert min(result.val_loss) < 0.5 * result.val_loss[0]  # it learned the task


def test_mlp_default_converges(runs):
    result, *_ = runs["mlp", "default"]
    assert result.diagnosis.kind in ("converged", "underfitting"), result.diagnosis


def test_results_are_consistent(runs):
    for (name, scenario), (result, _, seconds) in runs.items():
        assert len(result.train_loss) == len(result.val_loss) > 0, (name, scenario)
        again = diagnose(result.train_loss, result.val_loss)
        assert again.kind == result.diagnosis.kind
        assert result.grad_summary.steps > 0
        assert 0 < result.seconds <= seconds < TIME_LIMIT_S, (name, scenario, result.seconds, seconds)


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_logs_give_the_same_diagnosis(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for key in (("mlp", "overfit"), ("gru", "high_lr")):
        result, logdir, _ = runs[key]
        curves = load_curves(logdir)
        assert curves.train_name == "loss/train" and curves.val_name == "loss/val"
        assert len(curves.train) == len(result.train_loss)
        assert diagnose(curves.train, curves.val).kind == result.diagnosis.kind
        acc = EventAccumulator(logdir)
        acc.Reload()
        assert len(acc.Scalars("grad/total_norm")) == result.grad_summary.steps
        assert "grad/clipped" in acc.Tags()["scalars"] and "lr" in acc.Tags()["scalars"]


def test_example_script_runs_from_the_command_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "mlp.py"), "--scenario", "overfit", "--logdir", str(tmp_path / "tb")],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=120,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "diagnosis: early_stop" in proc.stdout or "diagnosis: overfitting" in proc.stdout
    assert "GradMonitor:" in proc.stdout
    assert elapsed < TIME_LIMIT_S
