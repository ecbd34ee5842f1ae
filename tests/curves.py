"""Labelled synthetic loss curves for the diagnosis tests.

Each generator returns ``(train, val, expected_epoch)`` for ``n`` epochs with
multiplicative log-normal noise of relative size ``noise`` (validation gets
``val_noise``), so that every kind is exercised on noisy curves, not only on
clean ones. ``expected_epoch`` is the epoch ``Diagnosis.epoch`` should point
at (None when the kind has no particular epoch to check).
"""

from __future__ import annotations

import numpy as np

N = 60


def _noisy(curve: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    return curve * np.exp(noise * rng.standard_normal(curve.shape))


def converged(rng: np.random.Generator, noise: float, val_noise: float, n: int = N):
    t = np.arange(n, dtype=np.float64)
    train = 0.30 + 2.0 * np.exp(-t / 5.0)
    val = 0.34 + 2.0 * np.exp(-t / 5.0)
    return _noisy(train, rng, noise), _noisy(val, rng, val_noise), None


def underfitting(rng: np.random.Generator, noise: float, val_noise: float, n: int = N):
    # Far from the floor at the end: still ~3% better every epoch.
    t = np.arange(n, dtype=np.float64)
    train = 0.05 + 2.3 * np.exp(-t / 30.0)
    val = 0.07 + 2.3 * np.exp(-t / 30.0)
    return _noisy(train, rng, noise), _noisy(val, rng, val_noise), n - 1


def overfitting(rng: np.random.Generator, noise: float, val_noise: float, n: int = N):
    # Train keeps falling exponentially; validation plateaus from ~epoch 30.
    t = np.arange(n, dtype=np.float64)
    train = 2.0 * np.exp(-t / 15.0)
    val = 0.6 + 1.6 * np.exp(-t / 6.0)
    return _noisy(train, rng, noise), _noisy(val, rng, val_noise), None


def early_stop(rng: np.random.Generator, noise: float, val_noise: float, n: int = N):
    # Validation bottoms out at epoch ~20, then climbs ~45% by the end.
    t = np.arange(n, dtype=np.float64)
    train = 2.0 * np.exp(-t / 15.0)
    val = 0.45 + 1.8 * np.exp(-t / 5.0) + 0.0002 * np.maximum(t - 12.0, 0.0) ** 2
    best = int(np.argmin(val))
    return _noisy(train, rng, noise), _noisy(val, rng, val_noise), best


def lr_climbing(rng: np.random.Generator, noise: float, val_noise: float, n: int = N):
    # Falls until epoch 20, then diverges slowly (e.g. an LR warmup to a peak too high).
    t = np.arange(n, dtype=np.float64)
    train = (0.4 + 2.0 * np.exp(-t / 5.0)) * np.exp(0.03 * np.maximum(t - 20.0, 0.0))
    val = 1.1 * train
    best = int(np.argmin(train))
    return _noisy(train, rng, noise), _noisy(val, rng, val_noise), best


def lr_rising_late(rng: np.random.Generator, noise: float, val_noise: float, n: int = N):
    # Converges, then creeps up over the last third (~25%): too little for the
    # climb rule, but not convergence either.
    t = np.arange(n, dtype=np.float64)
    start = 2 * n // 3
    train = (0.4 + 2.0 * np.exp(-t / (n / 12.0))) * np.exp(0.25 * np.maximum(t - start, 0.0) / (n - start))
    val = 1.1 * train
    return _noisy(train, rng, noise), _noisy(val, rng, val_noise), None


def early_stop_flat_train(rng: np.random.Generator, noise: float, val_noise: float, n: int = N):
    # Train has flattened out; validation bottoms out at epoch 15 and climbs ~45% by the end.
    t = np.arange(n, dtype=np.float64)
    train = 1.0 + 2.0 * np.exp(-t / 3.0)
    val = 1.05 + 2.0 * np.exp(-t / 3.0) + 0.012 * np.maximum(t - n / 4.0, 0.0)
    best = int(np.argmin(val))
    return _noisy(train, rng, noise), _noisy(val, rng, val_noise), best


def lr_exploding(rng: np.random.Generator, noise: float, val_noise: float, n: int = N):
    # Blows up 4x right after epoch 0, bounces, and only comes back down as
    # the learning-rate schedule decays: ends below epoch 0 but was never healthy.
    t = np.arange(n, dtype=np.float64)
    train = 2.3 * (1.0 + 3.0 * np.exp(-(((t - n / 4.0) / (n / 5.0)) ** 2)) * np.minimum(t, 1.0)) * np.exp(-t / n)
    val = 1.1 * train
    return _noisy(train, rng, noise), _noisy(val, rng, val_noise), 0


def lr_oscillating(rng: np.random.Generator, noise: float, val_noise: float, n: int = N):
    # Bounces between ~1x and ~2.5x its level with little net progress.
    t = np.arange(n, dtype=np.float64)
    level = 1.2 + 0.8 * np.exp(-t / 3.0)
    swing = np.exp(0.45 * np.abs(rng.standard_normal(n)))
    train = level * swing
    val = level * np.exp(0.45 * np.abs(rng.standard_normal(n)))
    return _noisy(train, rng, noise), _noisy(val, rng, val_noise), None


def stuck(rng: np.random.Generator, noise: float, val_noise: float, n: int = N):
    # ln(10) = 2.303: a 10-class classifier that never learns.
    t = np.arange(n, dtype=np.float64)
    train = 2.303 - 0.0003 * t
    val = np.full(n, 2.305)
    return _noisy(train, rng, noise), _noisy(val, rng, val_noise), None


def nonfinite(rng: np.random.Generator, noise: float, val_noise: float, n: int = N):
    train, val, _ = converged(rng, noise, val_noise, n)
    first = n // 3
    train[first] = np.nan
    train[first + 1 :] = np.inf
    return train, val, first


GENERATORS = {
    "converged": converged,
    "underfitting": underfitting,
    "overfitting": overfitting,
    "early_stop": early_stop,
    "early_stop/flat_train": early_stop_flat_train,
    "lr_too_high/rising_late": lr_rising_late,
    "lr_too_high/climbing": lr_climbing,
    "lr_too_high/oscillating": lr_oscillating,
    "lr_too_high/exploding": lr_exploding,
    "stuck": stuck,
    "nonfinite": nonfinite,
}
