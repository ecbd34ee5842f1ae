"""The training loop both examples share, with the whole trainops toolkit.

Each example (mlp.py, gru.py) brings its data, model, optimiser and scenarios;
this module runs them: AdamW/Adam steps with linear warmup + cosine decay
(torch.optim.lr_scheduler), gradient clipping and monitoring from one norm pass
(trainops.GradMonitor), TensorBoard logging, early stopping on the validation
loss (trainops.EarlyStopping) and trainops.diagnose on the resulting curves.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import trainops

__all__ = ["Result", "TrainData", "evaluate", "main", "open_writer", "train", "warmup_cosine"]

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
    seconds: float  # wall time of the training loop (train()), not of the data and model setup


@dataclass
class TrainData:
    """Training and validation inputs and class labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


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
    """Mean cross-entropy of model on (x, y), in eval mode."""
    model.eval()
    loss = nn.functional.cross_entropy(model(x), y).item()
    model.train()
    return loss


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TrainData,
    *,
    epochs: int,
    batch: int,
    patience: int,
    min_delta: float = 0.0,
    logdir: str | None = None,
    verbose: bool = True,
) -> Result:
    """Train model with cross-entropy until ``epochs`` or early stopping, then diagnose the curves.

    Args:
        model: the classifier (logits out).
        optimizer: over model's parameters, at its peak learning rate.
        data: the training and validation sets.
        epochs: maximum epochs.
        batch: minibatch size.
        patience: EarlyStopping's epochs without improvement of the validation loss.
        min_delta: EarlyStopping's smallest improvement that counts.
        logdir: TensorBoard log directory (None or '': no logging).
        verbose: print one line per epoch and the final report.

    Returns:
        The :class:`Result`.
    """
    start = time.perf_counter()
    n_train = len(data.y_train)
    steps_per_epoch = math.ceil(n_train / batch)
    scheduler = warmup_cosine(optimizer, epochs * steps_per_epoch)
    writer = open_writer(logdir)
    # Clipping and monitoring from one norm pass; the records stay on the
    # device and reach TensorBoard once per epoch (one host sync per epoch,
    # none per step).
    monitor = trainops.GradMonitor(
        model.named_parameters(), max_norm=MAX_NORM, per_parameter=True, writer=writer, log_every=steps_per_epoch
    )
    stopper = trainops.EarlyStopping(patience=patience, min_delta=min_delta)

    train_hist: list[float] = []
    val_hist: list[float] = []
    for epoch in range(epochs):
        order = torch.randperm(n_train)
        running = torch.zeros(())  # summed on the device: no .item() per step
        for i in range(0, n_train, batch):
            idx = order[i : i + batch]
            loss = nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            monitor.step()
            optimizer.step()
            scheduler.step()
            running += loss.detach() * len(idx)
        train_loss = running.item() / n_train
        val_loss = evaluate(model, data.x_val, data.y_val)
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


def main(name: str, description: str, scenarios: dict[str, Any], run: Callable[..., Result], argv: list[str] | None) -> int:
    """The command line of an example: pick a scenario, seed, epochs, threads and log directory."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--scenario", choices=sorted(scenarios), default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the scenario's)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1, see below)")
    parser.add_argument(
        "--logdir", default=None, help=f"TensorBoard directory (default: runs/{name}-<scenario>; '' for none)"
    )
    args = parser.parse_args(argv)
    # A model this small runs fastest on one thread: with more, each tiny op
    # pays thread wake-ups that cost more than its math (30x slower on a
    # loaded 2-core machine).
    torch.set_num_threads(args.threads)
    logdir = f"runs/{name}-{args.scenario}" if args.logdir is None else args.logdir
    run(args.scenario, seed=args.seed, epochs=args.epochs, logdir=logdir)
    return 0
