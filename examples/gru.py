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
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import trainops

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
MAX_NORM = 1.0
WARMUP_FRACTION = 0.1


@dataclass
class Result:
    """What a run returns (also printed by main)."""

    train_loss: list[float]
    val_loss: list[float]
    diagnosis: trainops.Diagnosis
    grad_summary: Any  # trainops.monitor.GradSummary
    stopped_early: bool
    best_epoch: int | None
    seconds: float


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


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warmup over the first 10% of steps, then cosine decay to 1% of the peak."""
    warmup = max(1, int(WARMUP_FRACTION * total_steps))
    peak = optimizer.param_groups[0]["lr"]  # read before LinearLR rescales it
    return torch.optim.lr_scheduler.SequentialLR(
        optimizer,
        schedulers=[
            torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup),
            torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(1, total_steps - warmup), eta_min=0.01 * peak
            ),
        ],
        milestones=[warmup],
    )


def open_writer(logdir: str | None) -> Any:
    """A TensorBoard SummaryWriter, or None without a logdir or without tensorboard."""
    if not logdir:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("tensorboard is not installed (pip install tensorboard): not logging", file=sys.stderr)
        return None
    return SummaryWriter(logdir)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    loss = nn.functional.cross_entropy(model(x), y).item()
    model.train()
    return loss


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
    epochs = cfg.epochs if epochs is None else epochs
    start = time.perf_counter()
    torch.manual_seed(seed)
    x_train, y_train = make_data(N_TRAIN, torch.Generator().manual_seed(seed))
    x_val, y_val = make_data(N_VAL, torch.Generator().manual_seed(seed + 10_000))

    model = GRUClassifier()
    if init_module_ is not None:
        init_module_(model, seed=seed)  # orthogonal weight_hh, xavier weight_ih, zero biases
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = math.ceil(N_TRAIN / BATCH)
    scheduler = warmup_cosine(optimizer, epochs * steps_per_epoch)
    writer = open_writer(logdir)
    # Clipping and monitoring from one norm pass; records reach TensorBoard
    # once per epoch (one host sync per epoch, none per step).
    monitor = trainops.GradMonitor(
        model.named_parameters(), max_norm=MAX_NORM, per_parameter=True, writer=writer, log_every=steps_per_epoch
    )
    stopper = trainops.EarlyStopping(patience=cfg.patience)

    train_hist: list[float] = []
    val_hist: list[float] = []
    for epoch in range(epochs):
        order = torch.randperm(N_TRAIN)
        running = torch.zeros(())  # summed on the device: no .item() per step
        for i in range(0, N_TRAIN, BATCH):
            idx = order[i : i + BATCH]
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            monitor.step()
            optimizer.step()
            scheduler.step()
            running += loss.detach() * len(idx)
        train_loss = running.item() / N_TRAIN
        val_loss = evaluate(model, x_val, y_val)
        train_hist.append(train_loss)
        val_hist.append(val_loss)
        if writer is not None:
            writer.add_scalar("loss/train", train_loss, epoch)
            writer.add_scalar("loss/val", val_loss, epoch)
            writer.add_scalar("lr", optimizer.param_groups[0]["lr"], epoch)
        if verbose:
            lr = optimizer.param_groups[0]["lr"]
            print(f"epoch {epoch:3d}  train {train_loss:.4f}  val {val_loss:.4f}  lr {lr:.2e}")
        if stopper.step(val_loss):
            if verbose:
                print(f"early stop: {stopper.stop_reason}")
            break

    grad_summary = monitor.summary()
    if writer is not None:
        writer.close()
    diagnosis = trainops.diagnose(train_hist, val_hist)
    result = Result(
        train_loss=train_hist,
        val_loss=val_hist,
        diagnosis=diagnosis,
        grad_summary=grad_summary,
        stopped_early=stopper.should_stop,
        best_epoch=stopper.best_epoch,
        seconds=time.perf_counter() - start,
    )
    if verbose:
        print(grad_summary)
        print(diagnosis)
        print(f"{len(train_hist)} epochs in {result.seconds:.1f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the scenario's)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1, see below)")
    parser.add_argument(
        "--logdir", default=None, help="TensorBoard directory (default: runs/gru-<scenario>; '' for none)"
    )
    args = parser.parse_args(argv)
    # A model this small runs fastest on one thread: with more, each tiny op
    # pays thread wake-ups that cost more than its math (30x slower on a
    # loaded 2-core machine).
    torch.set_num_threads(args.threads)
    logdir = f"runs/gru-{args.scenario}" if args.logdir is None else args.logdir
    run(args.scenario, seed=args.seed, epochs=args.epochs, logdir=logdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
