"""Loss-curve diagnosis: read train/validation loss histories like a practitioner.

``diagnose(train_loss, val_loss=None)`` returns a :class:`Diagnosis` whose
``kind`` is one of :data:`KINDS`. The rules (thresholds are module constants,
documented in docs/toolkit.md) work on the logarithm of the loss, so that every
threshold is a relative change ("10% above its best") and the same rules serve
a cross-entropy of 2.3 and an MSE of 1e-4. Curves are smoothed (running median,
then running mean) so that single noisy epochs do not decide, and every trend is
compared with the curve's own noise level before it counts.

This module also implements the ``trainops diagnose PATH [--plot out.png]``
command (:func:`add_arguments`), which reads a CSV file or TensorBoard event
files.

Note: ``trainops.diagnose`` is this module's :func:`diagnose` function (the
package re-exports it); import the module's other names with
``from trainops.diagnose import ...``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union

try:
    import numpy as np
except ImportError:  # numpy is optional for torch, so `import trainops` must not need it
    np = None  # type: ignore[assignment]

__all__ = [
    "KINDS",
    "MIN_EPOCHS",
    "CurveError",
    "Curves",
    "Diagnosis",
    "add_arguments",
    "diagnose",
    "load_curves",
    "main",
    "plot_curves",
]

KINDS = ("nonfinite", "lr_too_high", "stuck", "underfitting", "overfitting", "early_stop", "converged")

# Thresholds. Changes are in log-loss units: 0.05 means about 5% (exactly
# exp(0.05) - 1 = 5.1%). See docs/toolkit.md for the reasoning.
MIN_EPOCHS = 5  # fewer points than this cannot show a trend beyond noise
CLIMB = 0.10  # train rising >10% above its best so far is climbing ...
CLIMB_FRACTION = 0.25  # ... if that also undoes >25% of the progress made
OBVIOUS_CLIMB = math.log(2.0)  # a smoothed loss that doubles climbs, whatever the noise
OSCILLATION_NOISE = 0.10  # epoch-to-epoch train noise above ~10% ...
OSCILLATION_PROGRESS = 3.0  # ... with progress under 3x that noise (or a flat tail) is oscillation
STUCK_DROP = 0.05  # less than ~5% total improvement from the start is stuck
FLAT = 0.05  # a change under ~5% over the last third of the run is flat
VAL_RISE = 0.05  # validation >5% above its best has turned upward
GAP_WIDEN = 0.05  # the val-train log gap growing >0.05 widens
STALL_EPOCHS = 3  # validation without a new (smoothed) best this long has stalled
GAP_LARGE = math.log(1.5)  # val more than 1.5x train is a large gap
SIGNIFICANCE = 3.0  # a change counts only if it exceeds this many standard errors
TAIL_FRACTION = 1 / 3  # trends are fit over the last third of the history
STEADY_PACE = 0.5  # a tail falling (beyond the noise) at >= half the run's average pace is not converged
MAX_WINDOW = 11  # smoothing window cap: longer would lag the end of the curve

_ADVICE = {
    "nonfinite": (
        "The loss became NaN or inf at epoch {epoch}: the gradients exploded. Clip the gradient norm "
        "(trainops.clip_grad_norm_), lower the learning rate, and with fp16 use torch.amp.GradScaler."
    ),
    "lr_too_high": (
        "The training loss {how}: the learning rate is too high. Lower it (try 3-10x), lengthen the "
        "warmup, or clip the gradient norm (GradMonitor shows how often clipping triggers)."
    ),
    "stuck": (
        "The training loss has barely moved from the start ({drop:.1%} better): the learning rate is "
        "too low or the gradients vanish. Raise the learning rate, check the initialisation and that "
        "the loss is connected to the parameters (GradMonitor shows the gradient norms)."
    ),
    "underfitting": (
        "The {what} still falling at the end: the model has not finished learning. Train longer, or "
        "use a larger model or a higher learning rate."
    ),
    "overfitting": (
        "The training loss keeps falling while the validation loss stalled (best at epoch {epoch}) and "
        "the gap widens: the model is memorising. Regularise (weight decay, dropout, augmentation), "
        "get more data or use a smaller model; keep the checkpoint of epoch {epoch}."
    ),
    "early_stop": (
        "The validation loss has turned upward since its best at epoch {epoch} ({rise:.1%} higher) "
        "while the training loss {train}: the model is overfitting. Stop and keep the checkpoint of "
        "epoch {epoch} (trainops.EarlyStopping stops the run; save a checkpoint whenever its "
        "`improved` is True to have the best one)."
    ),
    "converged": (
        "The {what} flat{gap}: training has converged. More epochs will not help; to do better, change "
        "the model, the data or the regularisation."
    ),
}

# A sequence of numbers, a numpy array or a tensor (Any: numpy and torch types
# are not needed at import time).
ArrayLike = Union[Sequence[float], Any]


@dataclass
class Diagnosis:
    """The verdict on a loss history.

    Attributes:
        kind: one of :data:`KINDS`.
        epoch: for "nonfinite" the first epoch with a NaN/inf loss; otherwise
            the best epoch (lowest smoothed validation loss, or training loss
            without validation; the raw lowest, which EarlyStopping keeps,
            can lie many epochs away on a noisy plateau: it is in
            ``evidence["val_lowest_epoch"]``). In the caller's epoch labels
            (``epochs=``), 0-based positions by default.
        advice: one or two sentences saying what to do.
        evidence: the numbers behind the verdict (relative changes as
            fractions, e.g. 0.12 = 12%).
        too_short: True when the history has fewer than :data:`MIN_EPOCHS`
            epochs and every loss is finite; the kind is then a provisional
            "underfitting" (keep training). A NaN or inf loss is certain at
            any length (kind "nonfinite", too_short False), and so is a
            positive training loss whose last two epochs are both more than
            double its lowest before them (kind "lr_too_high", too_short
            False).
    """

    kind: str
    epoch: int | None
    advice: str
    evidence: dict[str, Any] = field(default_factory=dict)
    too_short: bool = False

    def __str__(self) -> str:
        at = "" if self.epoch is None else f" (epoch {self.epoch})"
        short = " [history too short to judge]" if self.too_short else ""
        lines = [f"diagnosis: {self.kind}{at}{short}", f"advice: {self.advice}", "evidence:"]
        for key, value in self.evidence.items():
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"  {key}: {shown}")
        return "\n".join(lines)


def _require_numpy() -> None:
    if np is None:
        raise ImportError("trainops.diagnose needs numpy: pip install numpy")


def _to_array(values: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(1-D float64 numpy copy, mask of missing epochs) of a list, array or
    tensor (a tensor is copied to the host). ``None`` entries of a list (or
    of a numpy object array) are missing epochs (e.g. no validation run that epoch); a list may hold 0-dim
    tensors, even ones that require grad (``train_hist.append(loss)``)."""
    missing = None
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu().double().numpy()
    elif not (isinstance(values, np.ndarray) and values.dtype != object) and not isinstance(values, (str, bytes)):
        # (A numpy object array, e.g. np.array([2.6, None, 2.0]), is read as the list it holds.)
        try:
            values = list(values)
        except TypeError:
            raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}") from None
        missing = np.array([v is None for v in values], dtype=bool)
        try:
            values = [math.nan if v is None else (float(v.detach()) if hasattr(v, "detach") else v) for v in values]
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a sequence of numbers: {exc}") from None
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a sequence of numbers: {exc}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one loss per epoch), got shape {tuple(array.shape)}")
    if missing is None:
        missing = np.zeros(len(array), dtype=bool)
    return array.copy(), missing


def _window(n: int) -> int:
    """Odd smoothing window: ~n/10, at least 3, at most MAX_WINDOW."""
    w = max(3, min(MAX_WINDOW, int(round(n / 10))))
    return w if w % 2 == 1 else w + 1


def _running(values: np.ndarray, w: int, reduce: Any) -> np.ndarray:
    """Centred running ``reduce`` with windows that shrink at the edges."""
    half = w // 2
    n = len(values)
    return np.array([reduce(values[max(0, i - half) : min(n, i + half + 1)]) for i in range(n)])


def _smooth(z: np.ndarray, w: int) -> np.ndarray:
    # The median removes isolated spikes; the mean then removes the median's
    # staircase. Edge windows shrink, so the ends follow the data (slightly
    # noisier) instead of being extrapolated.
    return _running(_running(z, w, np.median), w, np.mean)


def _noise(z: np.ndarray) -> float:
    """Robust epoch-to-epoch noise (std) of z.

    From second differences, which cancel any linear trend: for white noise of
    std s, z[t+1] - 2 z[t] + z[t-1] has std s * sqrt(6); the MAD makes one
    spike irrelevant.
    """
    if len(z) < 3:
        return 0.0
    d2 = z[2:] - 2.0 * z[1:-1] + z[:-2]
    mad = float(np.median(np.abs(d2 - np.median(d2))))
    return 1.4826 * mad / math.sqrt(6.0)


MAX_SLOPE_POINTS = 400
# The CLI averages a training-only history of more than TRAIN_ONLY_MAX_POINTS
# points (a per-step log) into TRAIN_ONLY_BINS consecutive means.
TRAIN_ONLY_MAX_POINTS = 200
TRAIN_ONLY_BINS = 100


def _tail_change(z: np.ndarray, k: int, sigma: float) -> tuple[float, float]:
    """(change over the last k epochs, its standard error).

    The slope is Theil-Sen's (the median of all pairwise slopes), so one noisy
    epoch in the tail cannot fake a trend; the standard error is the least-
    squares one, using the larger of the global noise estimate and the
    residuals of the tail (the global estimate can be low by chance, and the
    tail can be noisier than the rest).
    """
    t = np.arange(k, dtype=np.float64)
    tail = z[-k:]
    # All pairs of a long tail are k^2/2 slopes (a 100,000-step log: 10 GB):
    # past MAX_SLOPE_POINTS the slope is taken over that many bin means.
    tb, zb = t, tail
    if k > MAX_SLOPE_POINTS:
        starts = np.linspace(0, k, MAX_SLOPE_POINTS + 1).astype(np.int64)[:-1]
        counts = np.diff(np.append(starts, k))
        tb = np.add.reduceat(t, starts) / counts
        zb = np.add.reduceat(tail, starts) / counts
    i, j = np.triu_indices(len(tb), 1)
    slope = float(np.median((zb[j] - zb[i]) / (tb[j] - tb[i])))
    sxx = float(((t - t.mean()) ** 2).sum())
    residual = tail - np.median(tail - slope * t) - slope * t
    local = math.sqrt(float((residual**2).sum()) / max(k - 2, 1))
    return slope * (k - 1), max(sigma, local) * (k - 1) / math.sqrt(sxx)


@dataclass
class _Features:
    z: np.ndarray  # transformed curve
    s: np.ndarray  # smoothed
    sigma: float  # noise of z per epoch
    best: int  # argmin of s
    drop: float  # s[0] - s[best]
    rise: float  # s[-1] - s[best]
    tail: float  # change over the tail
    tail_se: float

    def falling(self) -> bool:
        """Still falling: the tail change is below -FLAT and beyond the noise."""
        return self.tail < -max(FLAT, SIGNIFICANCE * self.tail_se)

    def falling_steadily(self, k: int) -> bool:
        """Falling by less than FLAT over the tail of ``k`` points, but beyond
        the noise and at least STEADY_PACE times the run's average pace: a
        slow, steady decrease (a learning rate too low), not a curve that has
        levelled off (whose tail falls at a small fraction of its early pace)."""
        pace = self.drop / max(len(self.z) - 1, 1)  # smoothed start to best, per epoch
        return self.tail < -SIGNIFICANCE * self.tail_se and -self.tail >= STEADY_PACE * pace * (k - 1)

    def rising(self) -> bool:
        """Rising: the tail change is above FLAT and beyond the noise, and the
        end is above the best (a curve that fell and bounced back to where
        the tail started is not rising)."""
        return self.tail > max(FLAT, SIGNIFICANCE * self.tail_se) and self.rise > FLAT


def _rising_how(ft: _Features, k: int, scale: str) -> str:
    return (
        f"is rising again at the end ({_relative(ft.tail, scale):+.0%} over the last {k} epochs, "
        f"{_relative(ft.rise, scale):.0%} above its best)"
    )


def _features(z: np.ndarray, w: int, k: int) -> _Features:
    s = _smooth(z, w)
    sigma = _noise(z)
    best = int(np.argmin(s))
    tail, tail_se = _tail_change(z, k, sigma)
    return _Features(z, s, sigma, best, float(s[0] - s[best]), float(s[-1] - s[best]), tail, tail_se)


def _transform(train: np.ndarray, val: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Log of the losses when all are positive, else a shared linear rescaling."""
    both = train if val is None else np.concatenate([train, val])
    if float(both.min()) > 0.0:
        return np.log(train), (None if val is None else np.log(val)), "log"
    # Losses that can be <= 0 (e.g. a continuous NLL): changes are measured in
    # units of the curve's typical magnitude instead of relative terms.
    scale = max(float(np.median(np.abs(both))), float(both.max() - both.min()), 1e-12)
    return train / scale, (None if val is None else val / scale), "linear"


def _relative(change: float, scale: str) -> float:
    """A change in z units as a fraction (exp(change) - 1 on the log scale)."""
    return math.expm1(change) if scale == "log" else change


def diagnose(
    train_loss: ArrayLike,
    val_loss: ArrayLike | None = None,
    *,
    epochs: Sequence[int] | None = None,
) -> Diagnosis:
    """Diagnose a training run from its per-epoch loss history.

    The checks run in this order and the first that applies decides (see
    docs/toolkit.md for the thresholds):

    1. "nonfinite": any loss is NaN or inf.
    2. too short (< :data:`MIN_EPOCHS` epochs): "lr_too_high" if the last
       two epochs of a positive train loss are both more than double its
       lowest before them (a divergence needs no trend fit), else a
       provisional "underfitting".
    3. "lr_too_high": the smoothed train loss climbs well above its best so
       far (anywhere in the run, or above epoch 0).
    4. "early_stop": validation rose significantly since its best epoch,
       while train is not rising (falling or flat) and made net progress
       beyond its noise (a loss near zero bounces by a large fraction while
       the model memorises: that is overfitting, not oscillation).
    5. "lr_too_high": train oscillates with epoch-to-epoch noise large
       against its net progress.
    6. "stuck": the train loss improved by less than ~5% from the start.
    7. "early_stop": as 4, for a train loss whose net progress is within its
       noise.
    8. "lr_too_high": train rises over the tail (beyond ~5% and the noise)
       after its best, by less than rule 3 needs: not convergence.
    9. "underfitting": validation (or, without it, train) is still falling.
    10. "overfitting": train still falls while validation has stalled (its
       best is well before the end) and the gap grew since, or the gap widens
       over the tail; or both are flat with a large gap that grew in training.
    11. "underfitting" if train is still falling, or if the curve (validation,
        else train) still falls by less than ~5% over the tail but beyond the
        noise and at half the run's average pace or more (a slow, steady
        decrease, as with a learning rate too low); else "converged".

    Args:
        train_loss: training loss per epoch (list, numpy array or tensor; a
            tensor is copied to the host, which syncs). Pass per-epoch means:
            per-step losses are noisy enough to look like oscillation.
        val_loss: validation loss per epoch, the same length, or None.
            ``None`` entries (epochs without a validation run) are skipped,
            with the training loss of those epochs.
        epochs: labels of the epochs (e.g. ``range(1, n + 1)``), used for
            ``Diagnosis.epoch``; default 0-based positions.

    Returns:
        A :class:`Diagnosis`.

    Raises:
        ValueError: empty history, not 1-D, or lengths that differ.
        TypeError: values that are not numbers.
    """
    _require_numpy()
    train, missing = _to_array(train_loss, "train_loss")
    n = len(train)
    if n == 0:
        raise ValueError("train_loss is empty: nothing to diagnose")
    val = None
    if val_loss is not None:
        val, val_missing = _to_array(val_loss, "val_loss")
        if len(val) != n:
            raise ValueError(f"train_loss has {n} epochs but val_loss has {len(val)}; pass one value per epoch")
        missing = missing | val_missing
    labels = list(range(n)) if epochs is None else [int(e) for e in epochs]
    if len(labels) != n:
        raise ValueError(f"epochs has {len(labels)} labels for {n} epochs")
    if missing.any():  # epochs without a value (None): judged on the others
        keep = ~missing
        train = train[keep]
        val = None if val is None else val[keep]
        labels = [lb for lb, k in zip(labels, keep.tolist()) if k]
        n = len(train)
        if n == 0:
            raise ValueError("no epoch has both a training and a validation loss: nothing to diagnose")

    evidence: dict[str, Any] = {"epochs": n}
    bad = ~np.isfinite(train) if val is None else ~(np.isfinite(train) & np.isfinite(val))
    if bad.any():
        first = int(np.argmax(bad))
        which = "train" if not np.isfinite(train[first]) else "validation"
        evidence.update({"first_nonfinite_epoch": labels[first], "nonfinite_in": which})
        evidence["nonfinite_epochs"] = int(bad.sum())
        return Diagnosis("nonfinite", labels[first], _ADVICE["nonfinite"].format(epoch=labels[first]), evidence)

    if n < MIN_EPOCHS:
        evidence.update({"min_epochs": MIN_EPOCHS, "train_first": float(train[0]), "train_last": float(train[-1])})
        if n >= 3 and float(train.min()) > 0.0:
            # Too few epochs for a trend, but a loss whose last two epochs
            # both more than doubled its lowest before them (OBVIOUS_CLIMB)
            # diverges: one epoch's spike could be noise, two in a row at the
            # end are not.
            z = np.log(train)
            low = int(np.argmin(z[:-2]))
            climb = float(min(z[-2:]) - z[low])
            if climb > OBVIOUS_CLIMB:
                evidence.update({"rule": "lr_too_high", "train_max_climb": _relative(float(z[-1] - z[low]), "log")})
                how = (
                    f"more than doubled within {n} epochs and stayed up ({math.exp(z[-1] - z[low]):.3g}x its "
                    f"level of epoch {labels[low]} by epoch {labels[n - 1]})"
                )
                return Diagnosis("lr_too_high", labels[low], _ADVICE["lr_too_high"].format(how=how), evidence)
        advice = (
            f"Only {n} epoch{'s' if n != 1 else ''}: too short to judge (at least {MIN_EPOCHS} needed). "
            "Keep training and diagnose again."
        )
        return Diagnosis("underfitting", None, advice, evidence, too_short=True)

    zt, zv, scale = _transform(train, val)
    w = _window(n)
    k = max(MIN_EPOCHS, int(math.ceil(TAIL_FRACTION * n)))
    k = min(k, n)
    ft = _features(zt, w, k)
    evidence.update(
        {
            "scale": scale,
            "smoothing_window": w,
            "tail_epochs": k,
            "train_start": float(train[: max(1, w // 2 + 1)].mean()),
            "train_best": float(train[ft.best]),
            "train_end": float(train[-k:].mean()),
            "train_improvement": -_relative(-ft.drop, scale),
            "train_rise_from_best": _relative(ft.rise, scale),
            "train_tail_change": _relative(ft.tail, scale),
            "train_noise": ft.sigma,
        }
    )
    fv = None
    if zv is not None:
        fv = _features(zv, w, k)
        gap = fv.s - ft.s
        evidence.update(
            {
                "val_best": float(val[fv.best]),
                "val_best_epoch": labels[fv.best],
                "val_lowest_epoch": labels[int(np.argmin(val))],
                "val_end": float(val[-k:].mean()),
                "val_rise_from_best": _relative(fv.rise, scale),
                "val_tail_change": _relative(fv.tail, scale),
                "val_noise": fv.sigma,
                "gap_end": _relative(float(gap[-1]), scale),
                "gap_change_tail": _relative(fv.tail - ft.tail, scale),
            }
        )
    best = labels[fv.best if fv is not None else ft.best]

    def verdict(kind: str, **fmt: Any) -> Diagnosis:
        evidence["rule"] = kind
        advice = _ADVICE[kind].format(epoch=best, **fmt)
        lowest = evidence.get("val_lowest_epoch", best)
        if kind in ("early_stop", "overfitting") and lowest != best:
            # The checkpoint EarlyStopping's `improved` saves last is the raw lowest.
            advice += f" (The lowest single validation loss was at epoch {lowest}; its checkpoint serves as well.)"
        return Diagnosis(kind, best, advice, evidence)

    # Smoothed values average ~w/1.5 points (median then mean): the standard
    # error of a difference of two of them is about sigma * sqrt(3 / w).
    smooth_se = ft.sigma * math.sqrt(3.0 / w)
    # The largest climb of the smoothed train loss above its running minimum,
    # anywhere in the run: a climb that the LR decay later undid still shows
    # the rate was too high at its peak.
    running_min = np.minimum.accumulate(ft.s)
    climb_at = int(np.argmax(ft.s - running_min))
    climb = float(ft.s[climb_at] - running_min[climb_at])
    before_climb = int(np.argmin(ft.s[: climb_at + 1]))
    # A climb must beat the noise, but a doubling of a smoothed epoch loss is
    # never noise, even on a curve so wild that its noise estimate is huge.
    climbing = climb > max(CLIMB, CLIMB_FRACTION * ft.drop, min(SIGNIFICANCE * smooth_se, OBVIOUS_CLIMB))
    # The smoothed start mixes epoch 0 with the next epochs, so a loss that
    # explodes right after epoch 0 hides in it: compare with the raw epoch 0
    # too (one raw point: its noise is sigma, not the smoothed error).
    first_climb_at = int(np.argmax(ft.s))
    first_climb = float(ft.s[first_climb_at] - ft.z[0])
    raw_se = ft.sigma * math.sqrt(1.0 + 3.0 / w)
    if not climbing and first_climb > max(CLIMB, CLIMB_FRACTION * ft.drop, min(SIGNIFICANCE * raw_se, OBVIOUS_CLIMB)):
        climbing, climb, climb_at, before_climb = True, first_climb, first_climb_at, 0
    # Net progress start-to-end, not start-to-best: the minimum of a bouncing
    # curve is a lucky low, not progress.
    net = float(ft.s[0] - ft.s[-1])
    # Bouncing by >10% epoch to epoch is oscillation when it is large against
    # the net progress, or when the curve has stopped falling anyway (a
    # plateau with such swings is not convergence).
    oscillating = ft.sigma > OSCILLATION_NOISE and (net < OSCILLATION_PROGRESS * ft.sigma or not ft.falling())
    evidence["train_max_climb"] = _relative(climb, scale)
    # Validation turned upward while train is not rising (falling, flat, or
    # bouncing around a level far below its start): overfitting, which decides
    # before oscillation and "stuck". A training loss near zero bounces by a
    # large fraction on the log scale while the model memorises, and a flat
    # one with validation rising needs stopping, not a higher learning rate.
    train_rising = ft.rising()
    val_turned_up = (
        fv is not None
        and fv.rise > max(VAL_RISE, SIGNIFICANCE * fv.sigma * math.sqrt(3.0 / w))
        and fv.best < n - 2
        and not train_rising
    )

    def early_stop() -> Diagnosis:
        state = "keeps falling" if ft.falling() else "is flat"
        return verdict("early_stop", rise=_relative(fv.rise, scale), train=state)

    if val_turned_up and not climbing and net >= OSCILLATION_PROGRESS * ft.sigma:
        return early_stop()
    if climbing or oscillating:
        best = labels[before_climb if climbing else ft.best]  # where to resume from
        how = (
            f"climbed {_relative(climb, scale):.0%} above its level of epoch {best} by epoch {labels[climb_at]}"
            if climbing
            else (
                f"oscillates (epoch-to-epoch noise {ft.sigma:.0%}) without net progress"
                if net < OSCILLATION_PROGRESS * ft.sigma
                else f"stopped falling and oscillates (epoch-to-epoch noise {ft.sigma:.0%})"
            )
        )
        evidence["climbing"], evidence["oscillating"] = climbing, oscillating
        return verdict("lr_too_high", how=how)

    if ft.drop < max(STUCK_DROP, SIGNIFICANCE * smooth_se):
        return verdict("stuck", drop=-_relative(-ft.drop, scale))

    # Rising again over the tail (train_rising, above), by less than the climb
    # rule needs: still not convergence.
    if fv is None:
        if ft.falling():
            return verdict("underfitting", what="training loss is")
        if train_rising:
            return verdict("lr_too_high", how=_rising_how(ft, k, scale))
        if ft.falling_steadily(k):
            return verdict("underfitting", what="training loss is")
        return verdict("converged", what="training loss is", gap="")

    if val_turned_up:
        return early_stop()
    if train_rising:
        return verdict("lr_too_high", how=_rising_how(ft, k, scale))
    if fv.falling():
        return verdict("underfitting", what="training and validation losses are")
    gap = fv.s - ft.s
    gap_growth = float(gap[-1] - gap[0])
    # Stalled: the best validation epoch is well before the end (a still-
    # improving curve has its smoothed minimum at the end; a plateau anywhere).
    stalled_for = n - 1 - fv.best
    stalled = stalled_for >= max(STALL_EPOCHS, k // 2)
    gap_since_best = float(gap[-1] - gap[fv.best])
    widening = fv.tail - ft.tail > max(GAP_WIDEN, SIGNIFICANCE * math.hypot(fv.tail_se, ft.tail_se))
    evidence.update(
        {
            "gap_growth": _relative(gap_growth, scale),
            "val_stalled_for": stalled_for,
            "gap_growth_since_best": _relative(gap_since_best, scale),
        }
    )
    if ft.falling():
        if (stalled and gap_since_best > GAP_WIDEN) or widening:
            return verdict("overfitting")
        return verdict("underfitting", what="training loss is")
    if gap[-1] > GAP_LARGE and gap_growth > GAP_LARGE / 2:
        return verdict("overfitting")
    if fv.falling_steadily(k):
        return verdict("underfitting", what="training and validation losses are")
    note = f" with a small gap ({_relative(float(gap[-1]), scale):+.0%} val vs train)"
    if gap[-1] > GAP_LARGE:
        note = f"; validation is {_relative(float(gap[-1]), scale):.0%} above train, as it was from the start"
    return verdict("converged", what="training and validation losses are", gap=note)


# --------------------------------------------------------------------------
# Reading histories: CSV and TensorBoard
# --------------------------------------------------------------------------


class CurveError(ValueError):
    """A loss history file that cannot be read; the message is one line for users."""


@dataclass
class Curves:
    """A loss history read from a file.

    Attributes:
        epochs: the epoch (or step) label of each point.
        train: training loss per point.
        val: validation loss per point, or None.
        train_name: the column or tag the training loss came from.
        val_name: the column or tag the validation loss came from, or None.
        averaged_from: when a long training-only series (a per-step log) was
            averaged into :data:`TRAIN_ONLY_BINS` consecutive means, the
            number of points it had; else None.
        notes: what the reader decided that the user should know (e.g. an
            older run in the same directory that was left out), one line each.
    """

    epochs: list[int]
    train: list[float]
    val: list[float] | None
    train_name: str
    val_name: str | None
    averaged_from: int | None = None
    notes: list[str] = field(default_factory=list)


def _bin_long_train_only(curves: Curves) -> Curves:
    """A training-only history longer than TRAIN_ONLY_MAX_POINTS, as
    TRAIN_ONLY_BINS means of consecutive points, each labelled with its last
    step: a per-step log's noise (20-30% from batch to batch) would otherwise
    read as oscillation, and with a validation series such a log is averaged
    over each validation interval already (_align)."""
    n = len(curves.train)
    if curves.val is not None or n <= TRAIN_ONLY_MAX_POINTS:
        return curves
    bounds = np.linspace(0, n, TRAIN_ONLY_BINS + 1).round().astype(np.int64)
    train = np.asarray(curves.train, dtype=np.float64)
    means = [float(train[a:b].mean()) for a, b in zip(bounds[:-1], bounds[1:])]
    labels = [curves.epochs[b - 1] for b in bounds[1:]]
    return Curves(labels, means, None, curves.train_name, None, averaged_from=n, notes=curves.notes)


_EPOCH_NAMES = ("epoch", "epochs", "ep", "step", "steps", "global_step", "iteration", "iter", "it")
_TRAIN_TOKENS = {"train", "training", "tr", "trn"}
_METRIC_WORDS = {"loss", "losses", "epoch", "step", "metric", "metrics", "scalar", "scalars"}
_VAL_TOKENS = {"val", "valid", "validation", "test", "eval", "evaluation", "dev", "holdout"}


def _tokens(name: str) -> list[str]:
    """Lower-case words of a column/tag name: split at non-alphanumerics and
    at camelCase humps ('valLoss' -> val, loss; 'Loss/train' -> loss, train)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def _role_of_joined(token: str) -> str | None:
    """'valloss' -> 'val', 'trainloss' -> 'train': a role word glued to 'loss'."""
    if token.endswith("loss") and token[:-4] in _VAL_TOKENS:
        return "val"
    if token.endswith("loss") and token[:-4] in _TRAIN_TOKENS:
        return "train"
    return None


def _loss_role(name: str) -> str | None:
    """'train', 'val' or None for a column/tag name, e.g. 'val_loss' -> 'val'."""
    tokens = _tokens(name)
    if not tokens:
        return None
    if any(t in _VAL_TOKENS or _role_of_joined(t) == "val" for t in tokens):
        if "loss" in tokens or "losses" in tokens or len(tokens) == 1 or any(t.endswith("loss") for t in tokens):
            return "val"
        return None
    if "loss" in tokens or "losses" in tokens or any(t.endswith("loss") for t in tokens):
        return "train"
    if len(tokens) == 1 and tokens[0] in _TRAIN_TOKENS:
        return "train"
    return None


def _pick(names: list[str], role: str, override: str | None, what: str) -> str | None:
    """The column/tag for role ('train'/'val'); explicit override wins."""
    if override is not None:
        if override not in names:
            raise CurveError(f"no {what} named {override!r}; found: {', '.join(names) or 'none'}")
        return override
    candidates = [nm for nm in names if _loss_role(nm) == role]
    if not candidates:
        return None
    # Prefer names that also say 'train'/'epoch' explicitly, then the shortest:
    # 'train_loss' over 'train_loss_step', 'epoch_loss' over 'batch_loss'.
    def rank(nm: str) -> tuple[int, int, int]:
        tokens = _tokens(nm)
        words = _TRAIN_TOKENS if role == "train" else _VAL_TOKENS
        says_role = any(t in words or _role_of_joined(t) == role for t in tokens)
        per_step = any(t in ("step", "batch", "iter", "iteration") for t in tokens)
        return (int(per_step), int(not says_role), len(nm))

    return min(candidates, key=rank)


def _parse_float(cell: str, where: str) -> float | None:
    cell = cell.strip()
    if cell == "":
        return None
    try:
        return float(cell)
    except ValueError:
        raise CurveError(f"{where}: {cell!r} is not a number") from None


def _delimiter(text: str) -> str:
    """The CSV's delimiter: comma, or semicolon / tab when the header row holds
    one of those and no comma (European spreadsheets, TSV exports)."""
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    if "," not in first:
        for candidate in ("\t", ";"):
            if candidate in first:
                return candidate
    return ","


def _load_csv(path: str, train_key: str | None, val_key: str | None) -> Curves:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
        delimiter = _delimiter(text)
        if delimiter == ";":  # the spreadsheets that write ';' write decimal commas too
            text = text.replace(",", ".")
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        # (line number where the row ends, row): blank lines are skipped but
        # still counted, so error messages name the file's own line.
        numbered = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]
    except UnicodeDecodeError:
        raise CurveError(f"{path}: not a text CSV file (and not a TensorBoard event file)") from None
    except csv.Error as exc:
        raise CurveError(f"{path}: malformed CSV ({exc})") from None
    if not numbered:
        raise CurveError(f"{path}: the file is empty")
    rows = [r for _, r in numbered]

    def numeric(cell: str) -> bool:
        try:
            float(cell)
            return True
        except ValueError:
            return cell.strip() == ""

    has_header = not all(numeric(c) for c in rows[0])
    if has_header:
        header = [c.strip() for c in rows[0]]
        body = numbered[1:]
    else:
        width = len(rows[0])
        if width == 1:
            header = ["train_loss"]
        elif width == 2:
            # epoch,loss rows (a first column counting 0, 1, 2, ... or 1, 2, 3,
            # ..., or steps 0, 10, 20, ...) rather than train,val: no loss
            # curve counts up in equal integer steps.
            first = []
            for _, r in numbered:
                try:
                    first.append(float(r[0]))
                except (ValueError, IndexError):
                    first = []
                    break
            step = first[1] - first[0] if len(first) > 2 else 0.0
            counts = (
                step >= 1.0
                and step.is_integer()
                and first[0] in (0.0, 1.0, step)
                and all(b - a == step for a, b in zip(first, first[1:]))
            )
            header = ["epoch", "train_loss"] if counts else ["train_loss", "val_loss"]
        elif width == 3:
            header = ["epoch", "train_loss", "val_loss"]
        else:
            raise CurveError(f"{path}: no header row and {width} columns; add a header (epoch,train_loss,val_loss)")
        body = numbered
    if not body:
        raise CurveError(f"{path}: a header but no data rows")
    lower = [h.lower() for h in header]
    epoch_col = next((lower.index(e) for e in _EPOCH_NAMES if e in lower), None)
    train_name = _pick(header, "train", train_key, "column")
    if train_name is None:
        raise CurveError(
            f"{path}: no training-loss column among: {', '.join(header)} (expected e.g. train_loss or loss; "
            "or pass --train)"
        )
    val_name = _pick([h for h in header if h != train_name], "val", val_key, "column")
    ti = header.index(train_name)
    vi = None if val_name is None else header.index(val_name)

    # Aggregate by epoch when there is an epoch column: loggers such as
    # Lightning's CSVLogger write train and validation values on separate rows.
    order: list[float] = []
    sums: dict[float, list[list[float]]] = {}
    for r_index, row in body:
        if len(row) != len(header):
            raise CurveError(f"{path}, line {r_index}: {len(row)} fields, expected {len(header)}")
        where = f"{path}, line {r_index}"
        key = float(r_index) if epoch_col is None else _parse_float(row[epoch_col], where)
        if key is None:
            continue
        tv = _parse_float(row[ti], where)
        vv = None if vi is None else _parse_float(row[vi], where)
        if key not in sums:
            sums[key] = [[], []]
            order.append(key)
        if tv is not None:
            sums[key][0].append(tv)
        if vv is not None:
            sums[key][1].append(vv)
    train_pts = {key: float(np.mean(sums[key][0])) for key in order if sums[key][0]}
    val_pts = {key: float(np.mean(sums[key][1])) for key in order if sums[key][1]}
    if not train_pts:
        raise CurveError(f"{path}: column {train_name!r} has no values")
    if val_name is not None and not val_pts:
        val_name = None
    if val_name is None:
        keys, train, val = list(train_pts), list(train_pts.values()), None
    elif all(key in val_pts for key in train_pts):
        keys = list(train_pts)
        train, val = list(train_pts.values()), [val_pts[key] for key in keys]
    else:
        # Validation every few epochs (or fractional epochs, as Hugging Face
        # logs them): each validation point with the mean training loss since
        # the previous one, as for TensorBoard logs.
        aligned = _align(train_pts, val_pts, train_name, val_name)
        keys, train, val = aligned.epochs, aligned.train, aligned.val
    if epoch_col is None:
        epochs = list(range(len(keys)))
    elif all(float(key).is_integer() for key in keys):
        epochs = [int(key) for key in keys]
    else:  # fractional epochs: int() would repeat labels, so number the points
        epochs = list(range(len(keys)))
    return Curves(epochs, train, val, train_name, val_name)


def _event_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    found = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            if "tfevents" in name:
                found.append(os.path.join(root, name))
    return sorted(found)


def _holds_hparams(acc: Any) -> bool:
    try:
        return bool(acc.PluginTagToContent("hparams"))
    except KeyError:
        return False


def _run_root(prefix: str) -> str:
    """The run a subdirectory prefix belongs to: its parent when the last
    component names a role (Keras' train/ and validation/, SummaryWriter.
    add_scalars' Loss_train/ and Loss_val/), else the prefix itself."""
    parts = [p for p in prefix.split("/") if p]
    # Its last word that is not a metric word: 'Loss_train_loss' -> train (a
    # role), 'train_a' -> a (a run's own name).
    words = [t for t in (_tokens(parts[-1]) if parts else []) if t not in _METRIC_WORDS]
    if words and (words[-1] in _TRAIN_TOKENS or words[-1] in _VAL_TOKENS):
        parts = parts[:-1]
    return "/".join(parts)


_NONZERO = re.compile(rb"[^\x00]")


def _check_records(file: str, data: bytes, acc: Any) -> str | None:
    """Refuse an event file with readable scalars after a damaged record.

    ``data``: the file's bytes, read before TensorBoard's reader ``acc``
    loaded it (a run still writing only adds to what the reader then sees).
    The reader stops at the first record that fails its checksum without an
    error: it takes it for the end of a file still being written. A file
    damaged in the middle would so give a shorter history and a confident
    verdict on it: that raises :class:`CurveError`. A damaged end with no
    readable scalar after it (a run that stopped while writing: zero bytes, a
    garbled last record) is what the reader read up to: that returns a note.
    A whole file, or one whose last record is cut short (a run still
    writing), returns None.

    The records are walked in order and parsed. A scalar or tensor value is
    known to have been read when the reader holds it (same tag, step and wall
    time); the reader read a prefix of the file, so what matters is what
    follows the last record it holds: a scalar record there whose checksums
    are right was lost. Where a record does not parse (or its length runs
    past the end), the walk resynchronises at the next offset where a whole
    record reads. Checksums are computed only for those: TensorBoard's
    pure-Python CRC32C runs at ~6 MB/s, and the reader checked the rest."""
    import struct

    try:
        from google.protobuf.message import DecodeError
        from tensorboard.compat.proto import event_pb2
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
    except ImportError:  # another tensorboard layout: not checked
        return None

    loaded = set()
    tags = acc.Tags()
    for kind, events_of in (("scalars", acc.Scalars), ("tensors", acc.Tensors)):
        for tag in tags.get(kind, []):
            loaded.update((tag, e.step, e.wall_time) for e in events_of(tag))
    size = len(data)

    def length_at(at: int) -> int:
        return struct.unpack_from("<Q", data, at)[0]

    def crc_ok(at: int, n: int) -> bool:  # data[at:at+n] followed by its masked CRC32C
        return struct.unpack_from("<I", data, at + n)[0] == masked_crc32c(data[at : at + n])

    def reads(at: int) -> bool:  # a whole record at byte ``at``, both checksums right
        if at + 16 > size:
            return False
        n = length_at(at)
        return at + 16 + n <= size and crc_ok(at, 8) and crc_ok(at + 12, n)

    def next_record(at: int) -> int | None:
        while at + 16 <= size:
            if data[at] == 0:  # skip zero runs: a header's length has a nonzero byte among its first 8
                found = _NONZERO.search(data, at)
                nonzero = found.start() if found else size
                if nonzero - 7 > at:
                    at = nonzero - 7
                    continue
            if reads(at):
                return at
            at += 1
        return None

    pos = 0
    damage = None  # the first unreadable spot after the last record the reader holds
    lost = None  # a readable scalar record after it
    while pos < size:
        n = length_at(pos) if pos + 8 <= size else 0
        event = None
        if pos + 16 + n <= size and data[pos : pos + 12] != bytes(12):
            try:
                event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n])
            except DecodeError:
                pass
        if event is None:
            if pos + 16 + n > size and (size - pos < 12 or crc_ok(pos, 8)):
                break  # the last record, cut short: a run still writing
            damage = pos if damage is None else damage
            resync = next_record(pos + 1)
            if resync is None:
                break
            pos = resync
            continue
        values = [
            v.tag for v in event.summary.value if v.HasField("simple_value") or v.HasField("tensor")
        ]
        if any((tag, event.step, event.wall_time) in loaded for tag in values):
            damage = lost = None  # the reader got here: nothing before matters
        elif event.session_log.status == event_pb2.SessionLog.START and damage is None:
            lost = None  # a restart: the reader drops the records it replaces (TF1's Supervisor)
        elif values and reads(pos):
            lost = pos if lost is None else lost
        elif values and damage is None:
            damage = pos  # parses, but its checksums are wrong
        pos += 16 + n
    if lost is not None:
        raise CurveError(
            f"{file}: a damaged record at byte {damage if damage is not None else lost}, with readable "
            "records after it: TensorBoard's reader stops there, so the data after it would be lost"
        )
    if damage is not None:
        return (
            f"damaged from byte {damage} to its end, with no readable scalar after that (a run that stopped "
            "while writing?): read up to the damage"
        )
    return None


def _load_tensorboard(path: str, train_key: str | None, val_key: str | None) -> Curves:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise CurveError("reading TensorBoard event files needs tensorboard: pip install tensorboard") from None
    path = os.path.abspath(path)  # relpath below needs a directory even for "events.out..."
    files = _event_files(path)
    if not files:
        raise CurveError(f"{path}: a directory without TensorBoard event files (events.out.tfevents.*)")
    base = path if os.path.isdir(path) else os.path.dirname(path)
    series: dict[str, dict[int, float]] = {}
    run_of: dict[str, str] = {}  # series name -> the run (directory) it belongs to
    dir_of: dict[str, str] = {}  # series name -> the directory prefix of its files
    files_in: dict[str, list[str]] = {}  # directory prefix -> its files read so far
    replaced: dict[str, list[str]] = {}  # newer file -> the older files of a rerun it replaced
    damaged: dict[str, CurveError] = {}  # files with readable records after a damaged one
    torn_notes: dict[str, str] = {}  # files whose end is damaged, nothing readable after it

    def add_file(prefix: str, file: str, points_of: dict[str, dict[int, float]]) -> None:
        """Merge one file's series into those of its directory. A later file
        in which any series starts at or before the first step already held
        is a rerun into the same directory (a new run from its beginning): it
        replaces every series of the older files there (a new run that has
        not logged validation yet must not pair with the old run's), which
        would otherwise splice the new run with the tail of the old one. A
        later file that starts further on resumes the run: its values win
        where the two overlap."""
        points_of = {name: pts for name, pts in points_of.items() if pts}
        restart = any(series.get(name) and min(pts) <= min(series[name]) for name, pts in points_of.items())
        if restart and files_in.get(prefix):
            replaced[file] = list(files_in[prefix])
            for name in [nm for nm, d in dir_of.items() if d == prefix]:
                series[name] = {}
        for name, pts in points_of.items():
            series.setdefault(name, {}).update(pts)
            dir_of[name] = prefix
        files_in.setdefault(prefix, []).append(file)

    for file in files:
        # Runs in subdirectories (Keras writes train/ and validation/, both
        # with tag epoch_loss) are told apart by prefixing the subdirectory.
        rel = os.path.relpath(os.path.dirname(file), base)
        prefix = "" if rel in (".", "") else rel.replace(os.sep, "/") + "/"
        run = _run_root(prefix)
        with open(file, "rb") as f:
            snapshot = f.read()
        acc = EventAccumulator(file, size_guidance={"scalars": 0, "tensors": 0})
        try:
            acc.Reload()
        except Exception as exc:  # tensorboard raises assorted errors on corrupt records
            raise CurveError(f"{file}: not a readable TensorBoard event file ({type(exc).__name__})") from None
        try:  # judged once the reruns are known: a rerun may replace a damaged file
            torn = _check_records(file, snapshot, acc)
        except CurveError as e:
            damaged[file] = e
        else:
            if torn is not None:
                torn_notes[file] = f"{os.path.relpath(file, base)}: {torn}"
        tags = acc.Tags()
        if _holds_hparams(acc) and all(len(acc.Scalars(tag)) <= 1 for tag in tags.get("scalars", [])):
            # SummaryWriter.add_hparams writes its metrics (e.g. "hparam/loss",
            # one point each) into a subdirectory of its own: a summary, not a
            # run. (Lightning writes hparams into the run's own file: kept.)
            continue
        points_of: dict[str, dict[int, float]] = {}
        for tag in tags.get("scalars", []):
            run_of[prefix + tag] = run
            # Within a file, a step logged twice keeps its later value.
            points_of[prefix + tag] = {int(event.step): float(event.value) for event in acc.Scalars(tag)}
        for tag in tags.get("tensors", []):
            # TF2 summaries store scalars as 0-d tensors.
            points: dict[int, float] = {}
            for event in acc.Tensors(tag):
                try:
                    from tensorboard.util import tensor_util

                    value = tensor_util.make_ndarray(event.tensor_proto)
                except Exception:
                    continue
                if value.size == 1 and np.issubdtype(value.dtype, np.number):
                    points[int(event.step)] = float(value.reshape(()))
            if points:
                run_of[prefix + tag] = run
                points_of[prefix + tag] = points
        add_file(prefix, file, points_of)
    # A damaged file matters unless a rerun in its directory replaced it.
    left_out = {f for older in replaced.values() for f in older}
    for file, error in damaged.items():
        if file not in left_out:
            raise error
    series = {name: pts for name, pts in series.items() if pts}
    if not series:
        raise CurveError(f"{path}: no scalar data in the TensorBoard event files")
    names = sorted(series)
    if train_key is None:
        # A directory of several runs: never pair one run's training loss with
        # another's validation loss, and never pick a run silently.
        runs = sorted({run_of[nm] for nm in names if _loss_role(nm) == "train"})
        if len(runs) > 1:
            shown = ", ".join(r or "." for r in runs)
            raise CurveError(
                f"{path}: {len(runs)} runs with a training loss ({shown}); "
                "pass one run's directory (or --train TAG and --val TAG)"
            )
    train_name = _pick(names, "train", train_key, "tag")
    if train_name is None:
        raise CurveError(f"{path}: no training-loss tag among: {', '.join(names)} (or pass --train TAG)")
    same_run = [nm for nm in names if nm != train_name and run_of[nm] == run_of[train_name]]
    val_name = _pick(same_run if val_key is None else names, "val", val_key, "tag")
    train_pts = series[train_name]
    used_dirs = {dir_of[nm] for nm in (train_name, val_name) if nm is not None}
    notes = [
        f"{os.path.relpath(newer, base)} starts its run again from the first step: the older "
        f"{', '.join(os.path.relpath(f, base) for f in older)} in the same directory "
        f"{'is' if len(older) == 1 else 'are'} left out (a rerun)"
        for newer, older in replaced.items()
        if any(newer in files_in[d] for d in used_dirs)
    ] + [note for file, note in torn_notes.items() if file not in left_out]
    if val_name is None:
        steps = sorted(train_pts)
        return Curves(steps, [train_pts[s] for s in steps], None, train_name, None, notes=notes)
    curves = _align(series[train_name], series[val_name], train_name, val_name)
    curves.notes = notes
    return curves


def _align(train_pts: dict[int, float], val_pts: dict[int, float], train_name: str, val_name: str) -> Curves:
    """Put train and validation on the sparser series' steps.

    Validation is usually logged once per epoch and training often per step:
    each validation point is paired with the mean training loss logged since
    the previous validation point (inclusive of its own step).
    """
    sparse, dense, sparse_is_val = (val_pts, train_pts, True) if len(val_pts) <= len(train_pts) else (
        train_pts,
        val_pts,
        False,
    )
    dense_steps = sorted(dense)
    # The common slip: training logged against the global step and validation
    # against the epoch. Pairing them would read epoch e's validation with
    # training step e and drop nearly every training point: refuse instead.
    # (Or the other way round: most of the sparser series after the last point of the denser.)
    beyond = len(dense_steps) - int(np.searchsorted(dense_steps, max(sparse), side="right"))
    sparse_beyond = sum(1 for s in sparse if s > dense_steps[-1])
    if beyond > len(dense_steps) // 2 or sparse_beyond > len(sparse) // 2:
        (dense_name, sparse_name) = (train_name, val_name) if sparse_is_val else (val_name, train_name)
        raise CurveError(
            f"{sparse_name!r} is logged at steps {min(sparse)}..{max(sparse)} but {dense_name!r} at "
            f"steps {dense_steps[0]}..{dense_steps[-1]}: most of one's points come after the last one of "
            "the other; log both against the same step counter (e.g. the global step)"
        )
    steps, a, b = [], [], []
    previous = None
    j = 0
    for s in sorted(sparse):
        bucket = []
        while j < len(dense_steps) and dense_steps[j] <= s:
            if previous is None or dense_steps[j] > previous:
                bucket.append(dense[dense_steps[j]])
            j += 1
        previous = s
        if bucket:
            steps.append(s)
            a.append(sparse[s])
            b.append(float(np.mean(bucket)))
    if not steps:
        raise CurveError(f"tags {train_name!r} and {val_name!r} share no steps")
    train, val = (b, a) if sparse_is_val else (a, b)
    return Curves(steps, train, val, train_name, val_name)


def load_curves(path: str, train_key: str | None = None, val_key: str | None = None) -> Curves:
    """Read a loss history from a CSV file or TensorBoard event file(s).

    CSV: a header row naming the columns (epoch/step, train loss, validation
    loss; common names such as ``loss``, ``train_loss``, ``val_loss``,
    ``valid_loss``, ``test_loss`` are recognised), or no header and 1-3
    columns (train | train,val | epoch,train,val; two columns whose first
    counts up in equal integer steps from 0, 1 or the step are epoch,train). Rows that share an epoch are
    averaged. TensorBoard: an event file or a directory searched recursively;
    tags are matched the same way (``loss/train``, ``Loss/val``,
    ``train/epoch_loss``, ...), and a per-step training loss is averaged over
    each validation interval (both must be logged against the same step
    counter: mostly disjoint step ranges raise ``CurveError``). A later event
    file of a series that starts again from its first step is a rerun: it
    replaces the older files (named in ``Curves.notes``); one that goes on
    from a later step resumes the run. A training-only history of more than
    :data:`TRAIN_ONLY_MAX_POINTS` points is averaged into
    :data:`TRAIN_ONLY_BINS` consecutive means (``Curves.averaged_from``).

    Args:
        path: a .csv file, an events.out.tfevents.* file or a directory.
        train_key: the exact column or tag of the training loss (default: guess).
        val_key: the exact column or tag of the validation loss (default: guess).

    Returns:
        The :class:`Curves`.

    Raises:
        CurveError: a missing, empty or malformed file, with a one-line message.
    """
    _require_numpy()
    if not os.path.exists(path):
        raise CurveError(f"{path}: no such file or directory")
    if os.path.isdir(path) or "tfevents" in os.path.basename(path):
        return _bin_long_train_only(_load_tensorboard(path, train_key, val_key))
    try:
        if os.path.getsize(path) == 0:
            raise CurveError(f"{path}: the file is empty")
        return _bin_long_train_only(_load_csv(path, train_key, val_key))
    except OSError as exc:
        raise CurveError(f"{path}: {exc.strerror or exc}") from None


def plot_curves(curves: Curves, diagnosis: Diagnosis, out: str) -> None:
    """Draw the loss curves with the verdict and the best epoch marked, as a PNG.

    Uses matplotlib's Agg canvas directly (no pyplot, no display needed, no
    global backend switch).

    Args:
        curves: the history.
        diagnosis: its diagnosis (title and marked epoch).
        out: the output path (PNG).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(curves.epochs, curves.train, label=f"train ({curves.train_name})", color="tab:blue")
    if curves.val is not None:
        ax.plot(curves.epochs, curves.val, label=f"validation ({curves.val_name})", color="tab:orange")
    values = [v for v in curves.train + (curves.val or []) if math.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")
    if diagnosis.epoch is not None:
        label = "first non-finite epoch" if diagnosis.kind == "nonfinite" else "best epoch"
        ax.axvline(diagnosis.epoch, color="tab:red", linestyle="--", label=f"{label} ({diagnosis.epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    short = " (history too short)" if diagnosis.too_short else ""
    ax.set_title(f"diagnosis: {diagnosis.kind}{short}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, format="png")


# --------------------------------------------------------------------------
# The `trainops diagnose` command
# --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``trainops diagnose`` arguments to ``parser`` (sets ``func``).

    Args:
        parser: the sub-command parser.
    """
    parser.add_argument("path", help="a CSV file (epoch,train_loss,val_loss) or a TensorBoard event file/directory")
    parser.add_argument("--plot", metavar="OUT.png", help="also draw the curves, the verdict and the best epoch")
    parser.add_argument("--train", metavar="NAME", help="column/tag of the training loss (default: recognised)")
    parser.add_argument("--val", metavar="NAME", help="column/tag of the validation loss (default: recognised)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``trainops diagnose``; errors are one line on stderr and exit code 1.

    Args:
        args: the parsed arguments (path, plot, train, val).

    Returns:
        0 on success, 1 on any error.
    """
    try:
        curves = load_curves(args.path, args.train, args.val)
        diagnosis = diagnose(curves.train, curves.val, epochs=curves.epochs)
        source = curves.train_name + ("" if curves.val_name is None else f" / {curves.val_name}")
        averaged = "" if curves.averaged_from is None else f", means of {curves.averaged_from} logged points"
        print(f"{args.path}: {len(curves.train)} epochs ({source}{averaged})")
        for note in curves.notes:
            print(f"note: {note}")
        print(diagnosis)
        if args.plot:
            try:
                plot_curves(curves, diagnosis, args.plot)
            except ImportError:
                raise CurveError("--plot needs matplotlib: pip install matplotlib") from None
            except OSError as exc:
                raise CurveError(f"cannot write {args.plot}: {exc.strerror or exc}") from None
            print(f"plot written to {args.plot}")
    except BrokenPipeError:
        raise  # the reader went away (`| head`): cli.main exits quietly
    except Exception as exc:  # a command-line tool reports, it does not trace back
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"trainops diagnose: error: {message}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``trainops diagnose`` as a function, for scripts and tests.

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog="trainops diagnose", description="Diagnose a train/validation loss curve.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))


# trainops/__init__.py re-exports the function ``diagnose``, which shadows this
# module as the attribute ``trainops.diagnose``; cli.py's
# ``from . import diagnose`` then gets the function. Hanging the command hooks
# on it keeps ``diagnose.add_arguments(...)`` working either way.
diagnose.add_arguments = add_arguments  # type: ignore[attr-defined]
diagnose.run = run  # type: ignore[attr-defined]
