"""diagnose(): labelled synthetic curves for every kind, with noise and several seeds."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

import curves  # noqa: E402

import trainops  # noqa: E402
from trainops.diagnose import KINDS, MIN_EPOCHS, Diagnosis, diagnose  # noqa: E402

SEEDS = range(5)
# (train noise, validation noise), relative per epoch: clean, typical, noisy.
NOISE = [(0.0, 0.0), (0.01, 0.03), (0.03, 0.05)]
VAL_ONLY_KINDS = {"overfitting", "early_stop"}


def _kind(label: str) -> str:
    return label.split("/")[0]


def test_kinds_are_exactly_the_documented_ones():
    assert KINDS == ("nonfinite", "lr_too_high", "stuck", "underfitting", "overfitting", "early_stop", "converged")
    assert set(_kind(label) for label in curves.GENERATORS) == set(KINDS)


@pytest.mark.parametrize("noise", NOISE, ids=lambda n: f"noise{n[0]}-{n[1]}")
@pytest.mark.parametrize("label", sorted(curves.GENERATORS))
def test_labelled_curve_with_validation(label, noise):
    for seed in SEEDS:
        train, val, expected_epoch = curves.GENERATORS[label](np.random.default_rng(seed), *noise)
        d = diagnose(train, val)
        assert d.kind == _kind(label), f"seed {seed}: {d}"
        assert d.kind in KINDS
        assert not d.too_short
        assert d.advice and d.evidence["epochs"] == len(train)
        if _kind(label) in ("nonfinite", "early_stop") or label == "lr_too_high/exploding":
            assert abs(d.epoch - expected_epoch) <= 4, f"seed {seed}: epoch {d.epoch}, expected {expected_epoch}"


@pytest.mark.parametrize("noise", NOISE, ids=lambda n: f"noise{n[0]}-{n[1]}")
@pytest.mark.parametrize("label", sorted(lb for lb in curves.GENERATORS if _kind(lb) not in VAL_ONLY_KINDS))
def test_labelled_curve_train_only(label, noise):
    for seed in SEEDS:
        train, _, _ = curves.GENERATORS[label](np.random.default_rng(seed), *noise)
        d = diagnose(train)
        assert d.kind == _kind(label), f"seed {seed}: {d}"
        assert not any(key.startswith("val_") for key in d.evidence)


def test_overfitting_points_at_the_validation_plateau():
    train, val, _ = curves.overfitting(np.random.default_rng(0), 0.01, 0.03)
    d = diagnose(train, val)
    assert d.kind == "overfitting"
    # validation is within 2% of its floor from epoch ~25 on
    assert d.epoch >= 20
    assert d.evidence["val_best_epoch"] == d.epoch
    assert d.evidence["gap_growth_since_best"] > 0.05


def test_early_stop_evidence_and_advice():
    train, val, best = curves.early_stop(np.random.default_rng(1), 0.01, 0.03)
    d = diagnose(train, val)
    assert d.kind == "early_stop"
    assert d.evidence["val_rise_from_best"] > 0.2
    assert d.evidence["train_tail_change"] < 0
    assert f"epoch {d.epoch}" in d.advice
    assert "EarlyStopping" in d.advice


def test_nonfinite_reports_first_bad_epoch_in_either_curve():
    train = [2.0, 1.5, 1.2, 1.0, 0.9, 0.85, 0.8, 0.78]
    val = [2.1, 1.6, 1.3, float("inf"), 1.0, 0.9, 0.9, 0.9]
    d = diagnose(train, val)
    assert d.kind == "nonfinite" and d.epoch == 3
    assert d.evidence["nonfinite_in"] == "validation"
    d = diagnose([2.0, float("nan")])  # too short, but NaN is certain
    assert d.kind == "nonfinite" and d.epoch == 1 and not d.too_short


@pytest.mark.parametrize("n", range(1, MIN_EPOCHS))
def test_too_short_history_says_so(n):
    d = diagnose(np.linspace(2.0, 1.0, n), np.linspace(2.1, 1.1, n))
    assert d.too_short
    assert d.kind == "underfitting"
    assert "too short" in d.advice
    assert d.epoch is None
    assert "too short" in str(d)


def test_short_history_that_diverges_is_certain():
    # Too few epochs for a trend, but a loss that more than doubles is not noise.
    d = diagnose([2.3, 2.0, 4.5, 30.0], [2.4, 2.1, 5.0, 40.0], epochs=[1, 2, 3, 4])
    assert d.kind == "lr_too_high" and not d.too_short
    assert d.epoch == 2  # where to resume from: the lowest loss before the climb
    assert "doubled" in d.advice and d.evidence["train_max_climb"] == pytest.approx(14.0)
    assert diagnose([1.0, 2.5, 6.0]).kind == "lr_too_high"
    # A rise below a doubling, a single spike, two epochs only, or losses that
    # are not all positive stay "too short".
    for train in ([2.3, 4.0, 3.0, 2.5], [2.3, 2.0, 1.8], [2.3, 5.0, 1.8], [2.3, 2.0, 5.0], [1.0, 2.5], [-1.0, 0.5, 3.0]):
        d = diagnose(train)
        assert d.too_short and d.kind == "underfitting" and d.epoch is None, train


def test_lowest_validation_epoch_is_named_when_smoothing_moves_the_best():
    # A lone low validation epoch (7) before the smoothed minimum (~10): the
    # verdict's epoch is the smoothed one; the raw lowest, which EarlyStopping
    # keeps, is in the evidence and the advice.
    train = [2.0 * 0.9**i for i in range(24)]
    val = [2.0 - 0.1 * i for i in range(11)] + [1.0 + 0.05 * i for i in range(1, 14)]
    val[7] = 0.9
    d = diagnose(train, val)
    assert d.kind == "early_stop"
    assert d.evidence["val_lowest_epoch"] == 7 and d.epoch != 7
    assert "lowest single validation loss was at epoch 7" in d.advice
    val[7] = 1.3
    d = diagnose(train, val)
    assert d.evidence["val_lowest_epoch"] == d.epoch and "lowest single" not in d.advice


def test_minimum_length_is_judged():
    d = diagnose([2.3, 2.3, 2.3, 2.3, 2.3])
    assert not d.too_short and d.kind == "stuck"


def test_scale_invariance():
    # The rules work on log-loss: the same shape at any scale gets the same verdict.
    for label in ("early_stop", "converged", "overfitting"):
        train, val, _ = curves.GENERATORS[label](np.random.default_rng(3), 0.01, 0.03)
        kinds = {diagnose(train * s, val * s).kind for s in (1e-4, 1.0, 1e3)}
        assert kinds == {label}


def test_single_spike_does_not_decide():
    train, val, _ = curves.converged(np.random.default_rng(0), 0.01, 0.02)
    train[40] *= 3.0
    val[41] *= 3.0
    assert diagnose(train, val).kind == "converged"


def test_losses_that_go_negative_use_a_linear_scale():
    t = np.arange(40, dtype=np.float64)
    rng = np.random.default_rng(0)
    train = -1.0 + 2.0 * np.exp(-t / 4.0) + 0.005 * rng.standard_normal(40)  # a continuous NLL
    d = diagnose(train)
    assert d.evidence["scale"] == "linear"
    assert d.kind == "converged"
    d = diagnose(train - 3.0 * np.linspace(0, 1, 40) ** 2)  # still falling fast at the end
    assert d.kind == "underfitting"


def test_input_types_agree():
    train, val, _ = curves.early_stop(np.random.default_rng(2), 0.01, 0.03)
    expected = diagnose(train, val)
    for convert in (list, np.asarray, torch.tensor, lambda a: torch.tensor(a, dtype=torch.float32)):
        got = diagnose(convert(train), convert(val))
        assert (got.kind, got.epoch) == (expected.kind, expected.epoch)


def test_epoch_labels():
    train, val, _ = curves.early_stop(np.random.default_rng(0), 0.01, 0.03)
    zero_based = diagnose(train, val)
    one_based = diagnose(train, val, epochs=range(1, len(train) + 1))
    assert one_based.epoch == zero_based.epoch + 1
    assert one_based.evidence["val_best_epoch"] == zero_based.epoch + 1


@pytest.mark.parametrize(
    "args, error",
    [
        (([],), ValueError),
        (([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0]), ValueError),
        ((np.ones((5, 2)),), ValueError),
        ((["a", "b", "c", "d", "e"],), TypeError),
    ],
)
def test_invalid_input(args, error):
    with pytest.raises(error):
        diagnose(*args)


def test_epoch_labels_must_match_length():
    with pytest.raises(ValueError, match="labels"):
        diagnose([1.0] * 6, epochs=[1, 2, 3])


def test_str_is_a_readable_report():
    train, val, _ = curves.overfitting(np.random.default_rng(0), 0.01, 0.03)
    text = str(diagnose(train, val))
    assert text.startswith("diagnosis: overfitting (epoch ")
    assert "advice: " in text and "val_best_epoch" in text


def test_evidence_values_are_plain_numbers():
    train, val, _ = curves.early_stop(np.random.default_rng(0), 0.01, 0.03)
    for key, value in diagnose(train, val).evidence.items():
        assert isinstance(value, (int, float, str, bool)), key
        if isinstance(value, float):
            assert math.isfinite(value), key


def test_exported_from_package():
    assert trainops.diagnose is diagnose
    assert trainops.Diagnosis is Diagnosis
    assert {"diagnose", "Diagnosis"} <= set(trainops.__all__)


def test_import_trainops_does_not_need_numpy():
    """numpy is optional for torch: only diagnose() needs it, and says so."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import sys, warnings; sys.modules['numpy'] = None; warnings.simplefilter('ignore')\n"
        "import torch, trainops\n"
        "m = torch.nn.Linear(3, 2); m(torch.ones(4, 3)).sum().backward()\n"
        "mon = trainops.GradMonitor(m, max_norm=1e-3); mon.step(); assert mon.summary().clip_rate == 1.0\n"
        "assert trainops.EarlyStopping(1).step(1.0) is False\n"
        "try:\n    trainops.diagnose([1.0] * 6)\nexcept ImportError as e:\n    print(e)\n"
    )
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "needs numpy" in proc.stdout


def test_missing_validation_epochs_are_skipped():
    # Validation every other epoch: None is a missing epoch, not a NaN loss.
    train = list(0.3 + 2.0 * np.exp(-np.arange(40) / 5.0))
    val = [v * 1.1 if i % 2 else None for i, v in enumerate(train)]
    d = diagnose(train, val, epochs=range(1, 41))
    assert d.kind == "converged" and d.evidence["epochs"] == 20
    assert d.epoch % 2 == 0  # a label of an epoch that had a validation run
    with pytest.raises(ValueError, match="no epoch"):
        diagnose([1.0, 2.0], [None, None])


def test_a_list_of_loss_tensors_that_require_grad():
    w = torch.nn.Parameter(torch.tensor(1.0))
    hist = [(w * (2.0 - 0.03 * i)) ** 2 for i in range(40)]  # appended without .detach()
    assert diagnose(hist).kind == diagnose([float(h.detach()) for h in hist]).kind


def test_oscillation_after_real_progress_is_not_called_no_progress():
    # Falls ~80%, then bounces by ~12% epoch to epoch on a flat tail: lr_too_high
    # (a plateau with such swings is not convergence), but the text must not say
    # "without net progress" when the evidence shows most of the loss gone.
    epochs = np.arange(60.0)
    found = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        train = (5 * np.exp(-epochs / 5) + 1) * np.exp(rng.normal(0, 0.12, 60))
        d = diagnose(train)
        if d.evidence.get("oscillating") and not d.evidence.get("climbing"):
            found += 1
            assert d.kind == "lr_too_high" and d.evidence["train_improvement"] > 0.5
            assert "without net progress" not in d.advice and "stopped falling" in d.advice, d.advice
    assert found > 0


# Found by a review (eighteenth session): overfitting that the earlier rule
# order read as a learning-rate problem.


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("noise", [0.08, 0.12, 0.15])
def test_memorising_with_a_noisy_near_zero_train_loss_is_early_stop(seed, noise):
    # Train falls to ~1e-3 and bounces by 8-15% (large on the log scale);
    # validation is 46% above its best at epoch 10.
    t = np.arange(40)
    rng = np.random.default_rng(seed)
    train = np.maximum(2 * np.exp(-t / 3), 1e-3) * np.exp(rng.normal(0, noise, 40))
    val = 1.0 + 0.5 * np.exp(-t / 4) + 0.02 * np.maximum(0, t - 10)
    d = trainops.diagnose(train, val)
    assert d.kind == "early_stop", (d.kind, d.advice)
    assert "EarlyStopping" in d.advice and "improved" in d.advice


def test_flat_train_with_validation_rising_is_early_stop_not_stuck():
    t = np.arange(30)
    d = trainops.diagnose(0.30 * (1 - 0.001 * t), 0.40 * np.exp(0.015 * np.maximum(0, t - 5)))
    assert d.kind == "early_stop", (d.kind, d.advice)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("with_val", [True, False])
def test_slow_steady_decrease_is_underfitting_not_converged(seed, with_val):
    # -0.2% per epoch for 60 epochs with 0.5% noise: under the 5% tail change
    # of "falling", but far beyond the noise and at the run's own pace.
    t = np.arange(60)
    rng = np.random.default_rng(seed)
    train = 2.3 * np.exp(-0.002 * t) * np.exp(rng.normal(0, 0.005, 60))
    val = 2.35 * np.exp(-0.002 * t) * np.exp(rng.normal(0, 0.005, 60)) if with_val else None
    d = trainops.diagnose(train, val)
    assert d.kind == "underfitting", (d.kind, d.advice)


@pytest.mark.parametrize("seed", range(5))
def test_levelled_off_exponential_is_still_converged(seed):
    # Its tail still falls a little (1-2%), at a small fraction of its early pace.
    t = np.arange(40)
    rng = np.random.default_rng(seed)
    train = (2 * np.exp(-t / 5) + 0.5) * np.exp(rng.normal(0, 0.01, 40))
    val = (2 * np.exp(-t / 5) + 0.55) * np.exp(rng.normal(0, 0.03, 40))
    assert trainops.diagnose(train, val).kind == "converged"


def test_none_in_a_numpy_object_array_is_a_missing_epoch_as_in_a_list():
    train, val, _ = curves.early_stop(np.random.default_rng(0), 0.0, 0.0)
    val_list = [v if i % 2 == 0 else None for i, v in enumerate(val)]
    from_list = trainops.diagnose(train, val_list)
    from_array = trainops.diagnose(train, np.array(val_list, dtype=object))
    assert from_array.kind == from_list.kind != "nonfinite"
    assert from_array.epoch == from_list.epoch
