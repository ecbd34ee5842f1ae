"""EarlyStopping: patience, min_delta, modes, non-finite metrics, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

import trainops
from trainops import EarlyStopping


def _run(stopper: EarlyStopping, values: list[float]) -> int | None:
    """Feed values; return the index of the first step that said stop."""
    for i, v in enumerate(values):
        if stopper.step(v):
            return i
    return None


def test_stops_after_patience_epochs_without_improvement():
    stopper = EarlyStopping(patience=3)
    # best at index 2; indices 3, 4, 5 do not improve -> stop at 5
    assert _run(stopper, [1.0, 0.8, 0.5, 0.6, 0.55, 0.7, 0.1]) == 5
    assert stopper.best == 0.5
    assert stopper.best_epoch == 2
    assert stopper.num_bad_epochs == 3
    assert stopper.should_stop
    assert "no improvement for 3 epochs" in stopper.stop_reason


def test_improvement_resets_the_counter():
    stopper = EarlyStopping(patience=2)
    assert _run(stopper, [1.0, 1.1, 0.9, 1.0, 0.8, 0.85]) is None
    assert stopper.best_epoch == 4
    assert stopper.num_bad_epochs == 1
    assert stopper.improved is False


def test_patience_zero_stops_at_first_non_improvement():
    stopper = EarlyStopping(patience=0)
    assert _run(stopper, [3.0, 2.0, 2.5]) == 2


def test_equal_value_is_not_an_improvement():
    stopper = EarlyStopping(patience=1)
    assert _run(stopper, [1.0, 1.0]) == 1


def test_min_delta_requires_a_large_enough_improvement():
    stopper = EarlyStopping(patience=2, min_delta=0.1)
    # 0.95 and 0.92 improve by less than 0.1 on 1.0: two bad epochs -> stop
    assert _run(stopper, [1.0, 0.95, 0.92]) == 2
    assert stopper.best == 1.0
    stopper = EarlyStopping(patience=2, min_delta=0.1)
    assert _run(stopper, [1.0, 0.85, 0.80, 0.7]) is None
    assert stopper.best == 0.7 and stopper.best_epoch == 3


def test_max_mode_for_accuracies():
    stopper = EarlyStopping(patience=2, mode="max")
    assert _run(stopper, [0.5, 0.7, 0.69, 0.71, 0.70, 0.65]) == 5
    assert stopper.best == 0.71
    assert stopper.best_epoch == 3


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_metric_stops_at_once(bad):
    stopper = EarlyStopping(patience=10)
    assert _run(stopper, [1.0, 0.9, bad, 0.5]) == 2
    assert stopper.best == 0.9
    assert "metric is" in stopper.stop_reason


def test_nonfinite_metric_waits_for_patience_when_check_finite_is_off():
    stopper = EarlyStopping(patience=2, check_finite=False)
    assert _run(stopper, [1.0, math.nan, 0.5, math.nan, math.nan]) == 4
    assert stopper.best == 0.5


def test_nan_first_value_is_not_a_best():
    stopper = EarlyStopping(patience=5, check_finite=False)
    stopper.step(math.nan)
    assert stopper.best is None
    stopper.step(2.0)
    assert stopper.best == 2.0 and stopper.best_epoch == 1


def test_keeps_saying_stop():
    stopper = EarlyStopping(patience=1)
    _run(stopper, [1.0, 2.0])
    assert stopper.step(0.1) is True


def test_accepts_tensors():
    stopper = EarlyStopping(patience=1)
    stopper.step(torch.tensor(1.0))
    assert stopper.step(torch.tensor(0.5, dtype=torch.float64)) is False
    assert stopper.best == 0.5


def test_state_dict_round_trip_resumes_identically():
    values = [1.0, 0.9, 0.95, 0.97, 0.85, 0.9, 0.91, 0.92]
    full = EarlyStopping(patience=3, min_delta=0.01)
    full_stop = _run(full, values)

    first = EarlyStopping(patience=3, min_delta=0.01)
    _run(first, values[:5])
    state = first.state_dict()
    assert all(isinstance(v, (int, float, str, bool, type(None))) for v in state.values())
    resumed = EarlyStopping(patience=3, min_delta=0.01)
    resumed.load_state_dict(state)
    later = _run(resumed, values[5:])
    assert later is not None and later + 5 == full_stop
    assert resumed.state_dict() == full.state_dict()


def test_resuming_with_more_patience_continues_a_stopped_run():
    stopper = EarlyStopping(patience=1)
    _run(stopper, [1.0, 1.5])
    assert stopper.should_stop
    more = EarlyStopping(patience=5)
    more.load_state_dict(stopper.state_dict())
    assert not more.should_stop
    assert more.step(1.2) is False
    assert more.num_bad_epochs == 2


def test_resuming_with_less_patience_stops_a_run_that_waited_that_long():
    stopper = EarlyStopping(patience=5)
    _run(stopper, [1.0, 1.1, 1.2, 1.3])  # 3 epochs without improvement
    assert not stopper.should_stop
    less = EarlyStopping(patience=2)
    less.load_state_dict(stopper.state_dict())
    assert less.should_stop and "no improvement for 3 epochs" in less.stop_reason
    assert less.step(0.5) is True  # stays stopped, as after any stop
    fresh = EarlyStopping(patience=0)  # a state right after an improvement does not stop
    fresh.load_state_dict(EarlyStopping(patience=0).state_dict())
    assert not fresh.should_stop


def test_resuming_a_nonfinite_stop_stays_stopped():
    stopper = EarlyStopping(patience=1)
    _run(stopper, [1.0, math.nan])
    more = EarlyStopping(patience=5)
    more.load_state_dict(stopper.state_dict())
    assert more.should_stop


def test_load_state_dict_rejects_another_mode_and_garbage():
    saved = EarlyStopping(patience=1, mode="max")
    saved.step(0.5)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(patience=1, mode="min").load_state_dict(saved.state_dict())
    with pytest.raises(ValueError, match="missing"):
        EarlyStopping(patience=1).load_state_dict({"mode": "min"})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patience": -1},
        {"patience": 1.5},
        {"patience": True},
        {"patience": 2, "min_delta": -0.1},
        {"patience": 2, "min_delta": math.nan},
        {"patience": 2, "mode": "minimum"},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        EarlyStopping(**kwargs)


def test_exported_from_package():
    assert trainops.EarlyStopping is EarlyStopping
    assert "EarlyStopping" in trainops.__all__


def test_a_loss_tensor_that_requires_grad_is_read_without_warning():
    import warnings

    stopper = EarlyStopping(patience=1)
    loss = (torch.ones(3, requires_grad=True) * 2).sum()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when float() reads a tensor that requires grad
        assert not stopper.step(loss)
    assert stopper.best == 6.0
