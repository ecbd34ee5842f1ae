"""Early stopping: stop training when a validation metric stops improving.

::

    stopper = trainops.EarlyStopping(patience=5)
    for epoch in range(max_epochs):
        train_one_epoch()
        val = evaluate()
        if stopper.step(val):
            break
        if stopper.improved:
            torch.save(model.state_dict(), "best.pt")
    print(f"best {stopper.best:.4f} at epoch {stopper.best_epoch}")

Semantics follow Keras and Lightning: training stops after ``patience``
consecutive epochs without an improvement larger than ``min_delta``.
"""

from __future__ import annotations

import math
import operator
from typing import Any

__all__ = ["EarlyStopping"]

_MODES = ("min", "max")


class EarlyStopping:
    """Decides when to stop from a metric reported once per epoch.

    Args:
        patience: how many consecutive epochs without improvement to allow;
            :meth:`step` returns True on the ``patience``-th such epoch (0 stops
            at the first epoch that does not improve).
        min_delta: the smallest change that counts as an improvement (>= 0);
            with mode "min" a value improves if it is below ``best - min_delta``.
        mode: "min" for losses, "max" for accuracies and similar.
        check_finite: stop at once when the metric is NaN or inf (a diverged
            run does not recover; waiting ``patience`` epochs wastes them).

    Raises:
        ValueError: negative/non-integer patience, negative or NaN min_delta,
            unknown mode.
    """

    def __init__(self, patience: int, min_delta: float = 0.0, mode: str = "min", check_finite: bool = True) -> None:
        if isinstance(patience, bool) or not hasattr(patience, "__index__") or operator.index(patience) < 0:
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        patience = operator.index(patience)  # numpy / torch integers too
        delta = float(min_delta)
        if not delta >= 0.0:  # also rejects NaN
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.patience = patience
        self.min_delta = delta
        self.mode = mode
        self.check_finite = bool(check_finite)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epoch = -1
        self.num_bad_epochs = 0
        self.improved = False
        self.should_stop = False
        self.stop_reason: str | None = None
        self._stopped_nonfinite = False

    def _is_improvement(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, value: Any) -> bool:
        """Report this epoch's metric.

        Args:
            value: a number or a 0-dim tensor (read with ``float()``, which
                syncs with the device; call it once per epoch, not per step).

        Returns:
            True when training should stop (and on every later call).
        """
        detach = getattr(value, "detach", None)  # a tensor that requires grad: no warning
        value = float(detach() if callable(detach) else value)
        self.epoch += 1
        self.improved = self._is_improvement(value)
        if self.improved:
            self.best = value
            self.best_epoch = self.epoch
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
            if self.check_finite and not math.isfinite(value):
                self._stopped_nonfinite = True
                self._stop(f"the metric is {value} at epoch {self.epoch}")
            elif self.num_bad_epochs >= self.patience:
                self._stop(
                    f"no improvement for {self.num_bad_epochs} epochs (best {self.best} at epoch {self.best_epoch})"
                )
        return self.should_stop

    def _stop(self, reason: str) -> None:
        if not self.should_stop:
            self.should_stop = True
            self.stop_reason = reason

    def state_dict(self) -> dict[str, Any]:
        """The state to save in a checkpoint (plain Python values).

        Returns:
            A dict with the configuration and the counters.
        """
        return {
            "patience": self.patience,
            "min_delta": self.min_delta,
            "mode": self.mode,
            "check_finite": self.check_finite,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "epoch": self.epoch,
            "num_bad_epochs": self.num_bad_epochs,
            "improved": self.improved,
            "should_stop": self.should_stop,
            "stop_reason": self.stop_reason,
            "stopped_nonfinite": self._stopped_nonfinite,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the counters from :meth:`state_dict`.

        The configuration given to the constructor wins (so ``patience`` can be
        changed when resuming), except that the modes must agree: a best value
        recorded under "min" means nothing under "max".

        Args:
            state: a dict from :meth:`state_dict`.

        Raises:
            ValueError: the saved mode differs, or a key is missing.
        """
        missing = [k for k in ("mode", "best", "best_epoch", "epoch", "num_bad_epochs") if k not in state]
        if missing:
            raise ValueError(f"not an EarlyStopping state dict: missing {', '.join(missing)}")
        if state["mode"] != self.mode:
            raise ValueError(
                f"the state was saved with mode={state['mode']!r} but this EarlyStopping has mode={self.mode!r}"
            )
        self.best = None if state["best"] is None else float(state["best"])
        self.best_epoch = None if state["best_epoch"] is None else int(state["best_epoch"])
        self.epoch = int(state["epoch"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.improved = bool(state.get("improved", False))
        self._stopped_nonfinite = bool(state.get("stopped_nonfinite", False))
        # Re-decide under this object's patience: resuming with a larger
        # patience lets a run that had stopped continue, and with a smaller
        # one stops a run that has already waited that long.
        self.should_stop = self._stopped_nonfinite or 0 < self.num_bad_epochs >= self.patience
        self.stop_reason = None
        if self.should_stop:
            self.stop_reason = (state.get("stop_reason") if state.get("should_stop") else None) or (
                f"no improvement for {self.num_bad_epochs} epochs (best {self.best} at epoch {self.best_epoch})"
            )

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, mode={self.mode!r}, "
            f"best={self.best}, best_epoch={self.best_epoch}, num_bad_epochs={self.num_bad_epochs})"
        )
