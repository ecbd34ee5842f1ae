"""A GRU sequence classifier on synthetic data, with the whole trainops training-loop toolkit.

Runs on CPU in a few seconds, no downloads::

    python examples/gru.py                       # a healthy run
    python examples/gru.py --scenario high_lr    # a learning rate 300x too high
    tensorboard --logdir runs                    # the curves and gradient norms

The task: each sequence has 16 steps of 6 noisy channels; the label is the
channel among the first four with the largest sum over time (the GRU has to
accumulate evidence across the sequence). The loop shows trainops weight init
(when trainops.init is available), gradient clipping and monitoring in one pass
(GradMonitor), linear warmup + cosine decay from torch.optim.lr_scheduler,
TensorBoard logging, EarlyStopping and trainops.diagnose. In the "high_lr"
scenario clipping triggers on most steps, the loss bounces or climbs, and both
GradMonitor's summary and the diagnosis say to lower the learning rate.

The loop itself, shared with the other example, is examples/training_loop.py.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import nn

from training_loop import Result, TrainData, main as _main, train

try:  # trainops.init is optional: older builds fall back to torch's default init
    from trainops.init import init_module_
except ImportError:
    init_module_ = None

__all__ = ["SCENARIOS", "Result", "main", "run"]


@dataclass(frozen=True)
class Scenario:
    """What distinguishes the runs."""

    lr: float
    epochs: int
    patience: int


SCENARIOS = {
    "default": Scenario(lr=1e-2, epochs=16, patience=6),
    # 300x the working rate: Adam's steps overshoot every minimum.
    "high_lr": Scenario(lr=3.0, epochs=16, patience=6),
}

SEQ_LEN = 16
N_CHANNELS = 6
N_CLASSES = 4
HIDDEN = 24
N_TRAIN = 2048
N_VAL = 512
BATCH = 128


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences x [n, SEQ_LEN, N_CHANNELS] and labels y [n]."""
    x = torch.randn(n, SEQ_LEN, N_CHANNELS, generator=generator)
    # A small per-sequence bias on the true channel makes the task learnable
    # but not trivial from any single step.
    y = torch.randint(0, N_CLASSES, (n,), generator=generator)
    x[torch.arange(n), :, y] += 0.35
    y = x[:, :, :N_CLASSES].sum(dim=1).argmax(dim=1)
    return x, y


class GRUClassifier(nn.Module):
    """GRU over the sequence, then a linear layer on the last hidden state."""

    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.gru = nn.GRU(N_CHANNELS, hidden, batch_first=True)
        self.head = nn.Linear(hidden, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [batch, SEQ_LEN, N_CHANNELS] -> logits [batch, N_CLASSES]
        _, h = self.gru(x)
        return self.head(h[-1])


def run(
    scenario: str = "default",
    seed: int = 0,
    epochs: int | None = None,
    logdir: str | None = None,
    verbose: bool = True,
) -> Result:
    """Train the GRU classifier for one scenario and diagnose the curves.

    Args:
        scenario: a key of :data:`SCENARIOS`.
        seed: seeds data, init and batch order.
        epochs: maximum epochs (default: the scenario's).
        logdir: TensorBoard log directory (None: no logging).
        verbose: print one line per epoch and the final report.

    Returns:
        The :class:`Result`.
    """
    cfg = SCENARIOS[scenario]
    torch.manual_seed(seed)
    x_train, y_train = make_data(N_TRAIN, torch.Generator().manual_seed(seed))
    x_val, y_val = make_data(N_VAL, torch.Generator().manual_seed(seed + 10_000))
    model = GRUClassifier()
    if init_module_ is not None:
        init_module_(model, seed=seed)  # orthogonal weight_hh, xavier weight_ih, zero biases
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return train(
        model,
        optimizer,
        TrainData(x_train, y_train, x_val, y_val),
        epochs=cfg.epochs if epochs is None else epochs,
        batch=BATCH,
        patience=cfg.patience,
        logdir=logdir,
        verbose=verbose,
    )


def main(argv: list[str] | None = None) -> int:
    return _main("gru", __doc__.splitlines()[0], SCENARIOS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
