"""Gradient monitoring for training loops: norms, clipping rate, non-finite steps.

The practice this serves: watch the global gradient norm; if clipping triggers
on most steps, the learning rate is too high (clipping is then silently acting
as the learning rate). :class:`GradMonitor` records, every step, the total
gradient norm, whether clipping triggered, whether the gradients were finite
and (optionally) one norm per parameter, and can do the clipping itself from
the same norm pass::

    monitor = trainops.GradMonitor(model.named_parameters(), max_norm=1.0)
    for batch in loader:
        loss = model(batch).mean()
        loss.backward()
        monitor.step()          # norm + clip, no host sync
        optimizer.step()
        optimizer.zero_grad()
    print(monitor.summary())    # one host sync

Host synchronisation: :meth:`GradMonitor.step` never synchronises. Records go
into preallocated device tensors that grow by doubling (amortised O(1) device
copies, no allocation per step). :meth:`GradMonitor.summary` synchronises once.
With a TensorBoard ``writer`` the records are copied to the host in one
transfer every ``log_every`` steps (one sync per ``log_every`` steps) and on
:meth:`GradMonitor.flush` / :meth:`GradMonitor.summary`; with
``log_every=None`` only on those explicit calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import Tensor

from . import distributed
from .clip import (
    _check_nonnegative,
    _check_norm_type,
    _norms as _fused_norms,
    _scale_by_norm,
)

__all__ = ["GradMonitor", "GradSummary"]

ParamsArg = Union[torch.nn.Module, Tensor, Iterable[Tensor], Iterable[tuple[str, Tensor]]]

# Clip rate above which the summary advises lowering the learning rate: when
# most steps are clipped, every update has norm max_norm * lr and the loss
# curve no longer reflects the learning rate the user set.
FREQUENT_CLIP_RATE = 0.5
# Clip rate above which clipping is reported as "occasional" rather than rare.
OCCASIONAL_CLIP_RATE = 0.1
# A norm this many times the median is a spike worth clipping (when no
# max_norm is set, the advice suggests one).
SPIKE_FACTOR = 10.0
# Median norms below this look like vanishing gradients (fp32 updates of
# size lr * 1e-7 barely move fp32 weights of size ~1).
VANISHING_NORM = 1e-7
# Percentiles reported by summary().
PERCENTILES = (5, 25, 50, 75, 95, 99)
# Default number of largest-norm parameters listed by summary().
TOP_K = 5
# Initial capacity (steps) of the record buffers: 1024 float32 steps = 4 KiB.
INITIAL_CAPACITY = 1024
# Default bound on the steps kept on the device: with per_parameter and 1,000
# parameters, 10,000 steps are 40 MB.
MAX_STEPS = 10_000


@dataclass
class GradSummary:
    """What :meth:`GradMonitor.summary` returns.

    Attributes:
        steps: number of recorded steps.
        max_norm: the clipping threshold, or None when the monitor does not clip.
        clip_rate: fraction of steps whose gradients were scaled down (None
            without ``max_norm``).
        clipped_steps: number of clipped steps.
        percentiles: total-norm percentiles over the steps with a finite norm,
            keyed ``"p5"`` ... ``"p99"``, plus ``"min"``, ``"max"`` and ``"mean"``.
        nonfinite_steps: step indices (0-based) whose gradient norm was NaN or inf.
        top_parameters: up to ``top_k`` ``(name, mean norm, max norm)`` tuples,
            largest mean norm first (empty unless ``per_parameter=True``).
        advice: sentences of advice; empty when nothing looks wrong.
        no_grad_steps: step indices of steps when no parameter had a
            gradient (``step()`` before ``backward()``, or every parameter
            frozen); their norm is recorded as 0 but left out of
            ``percentiles``, ``clip_rate`` and ``top_parameters``.
    """

    steps: int
    max_norm: float | None
    clip_rate: float | None
    clipped_steps: int
    percentiles: dict[str, float]
    nonfinite_steps: list[int]
    top_parameters: list[tuple[str, float, float]] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    no_grad_steps: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"GradMonitor: {self.steps} steps"]
        if self.clip_rate is not None:
            lines.append(
                f"  clipping (max_norm={self.max_norm:g}): {self.clipped_steps}/{self.steps} steps "
                f"({100.0 * self.clip_rate:.1f}%)"
            )
        if self.percentiles:
            pct = "  ".join(f"{k}={v:.4g}" for k, v in self.percentiles.items())
            lines.append(f"  total norm: {pct}")
        if self.nonfinite_steps:
            lines.append(f"  non-finite gradients at steps: {_some(self.nonfinite_steps)}")
        if self.no_grad_steps:
            lines.append(f"  no gradient at steps: {_some(self.no_grad_steps)}")
        if self.top_parameters:
            lines.append("  largest gradient norms (mean / max):")
            for name, mean, peak in self.top_parameters:
                lines.append(f"    {name}: {mean:.4g} / {peak:.4g}")
        for sentence in self.advice:
            lines.append(f"  advice: {sentence}")
        return "\n".join(lines)


def _some(steps: list[int], shown: int = 10) -> str:
    """The first ``shown`` step numbers, and how many more there are."""
    more = f" (+{len(steps) - shown} more)" if len(steps) > shown else ""
    return ", ".join(str(s) for s in steps[:shown]) + more


def _named_params(parameters: ParamsArg) -> tuple[list[str], list[Tensor]]:
    """Split ``parameters`` into names and tensors (names are invented if absent)."""
    if isinstance(parameters, torch.nn.Module):
        items: list[Any] = list(parameters.named_parameters())
    elif isinstance(parameters, Tensor):
        items = [parameters]
    else:
        items = list(parameters)
    names: list[str] = []
    tensors: list[Tensor] = []
    for i, item in enumerate(items):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, tensor = item
        else:
            name, tensor = f"param{i}", item
        if not isinstance(tensor, Tensor):
            raise TypeError(f"parameter {i} is a {type(tensor).__name__}, not a torch.Tensor")
        names.append(name)
        tensors.append(tensor)
    return names, tensors


class GradMonitor:
    """Records gradient norms, clipping and non-finite gradients every step.

    Call :meth:`step` after ``loss.backward()`` and before ``optimizer.step()``.
    All records stay on the device of the first parameter until :meth:`summary`
    (one sync) or a TensorBoard flush (see the module docstring). Parameters
    spread over several devices cost two passes and a copy of the norms to
    that device per step (a sync if that device is the CPU).

    Args:
        parameters: an ``nn.Module``, ``model.named_parameters()`` (names are
            used in the summary and TensorBoard tags) or an iterable of tensors
            (named ``param0``, ``param1``, ...). A generator is consumed once.
        max_norm: when given, :meth:`step` clips the gradients to this global
            norm (like :func:`trainops.clip_grad_norm_`, from the same norm pass)
            and records whether it had to scale them down.
        norm_type: the order p of the norm, any p > 0 or ``inf``.
        per_parameter: also record each parameter's gradient norm (from the
            same fused pass when all gradients share one device). A parameter
            without a gradient at a step records 0.
        writer: a ``torch.utils.tensorboard.SummaryWriter`` (or anything with
            ``add_scalar(tag, value, global_step)`` and ``flush()``). Tags:
            ``grad/total_norm``, ``grad/clipped`` (0/1), ``grad/nonfinite``
            (0/1) and, with ``per_parameter``, ``grad_norm/<name>``.
        log_every: with a writer, copy pending records to the host and log them
            every this many steps (one sync each time); None logs only on
            :meth:`flush` and :meth:`summary`.
        global_step: the step number of the first recorded step (TensorBoard
            x-axis and the step indices in the summary), e.g. when resuming.
        max_steps: the most recent steps kept on the device (None: all, which
            grows without bound over a long run). When the buffers are full the
            older half is dropped, after any of it not yet logged has been
            written to the writer (one sync every ``max_steps / 2`` steps at
            most). :meth:`summary` and the tensor properties cover the kept
            steps; step indices stay global.

    Raises:
        ValueError: for a negative/NaN ``max_norm``, ``norm_type <= 0``, a
            ``log_every`` < 1 or a ``max_steps`` < 2.
    """

    def __init__(
        self,
        parameters: ParamsArg,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        per_parameter: bool = False,
        writer: Any | None = None,
        log_every: int | None = 100,
        global_step: int = 0,
        max_steps: int | None = MAX_STEPS,
    ) -> None:
        self.names, self.parameters = _named_params(parameters)
        self.max_norm = None if max_norm is None else _check_nonnegative(max_norm, "max_norm")
        self.norm_type = _check_norm_type(norm_type)
        self.per_parameter = bool(per_parameter)
        self.writer = writer
        if log_every is not None and int(log_every) < 1:
            raise ValueError(f"log_every must be >= 1 or None, got {log_every}")
        self.log_every = None if log_every is None else int(log_every)
        if max_steps is not None and int(max_steps) < 2:
            raise ValueError(f"max_steps must be >= 2 or None, got {max_steps}")
        self.max_steps = None if max_steps is None else int(max_steps)
        self.first_step = int(global_step)
        self.device = self.parameters[0].device if self.parameters else torch.device("cpu")
        self._steps = 0
        self._logged = 0
        # Buffer rows of steps when no parameter had a gradient: known on the
        # host at step(), so no device record (and no sync) is needed.
        self._no_grad_rows: list[int] = []
        self._allocate(INITIAL_CAPACITY if self.max_steps is None else min(INITIAL_CAPACITY, self.max_steps))

    def _allocate(self, capacity: int) -> None:
        n_params = len(self.parameters) if self.per_parameter else 0
        self._norms = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self._clipped = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self._nonfinite = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self._param_norms = torch.zeros(capacity, n_params, dtype=torch.float32, device=self.device)

    def _grow(self) -> None:
        """Double the capacity (up to max_steps); the copy is device-to-device, no sync."""
        old = (self._norms, self._clipped, self._nonfinite, self._param_norms)
        capacity = 2 * self._norms.shape[0]
        self._allocate(capacity if self.max_steps is None else min(capacity, self.max_steps))
        for new, prev in zip((self._norms, self._clipped, self._nonfinite, self._param_norms), old):
            new[: prev.shape[0]].copy_(prev)

    def _drop_oldest_half(self) -> None:
        """Make room at max_steps: log what is pending, keep the newer half."""
        if self.writer is not None and self._logged < self._steps:
            self.flush()
        drop = self._steps // 2
        keep = self._steps - drop
        for buffer in (self._norms, self._clipped, self._nonfinite, self._param_norms):
            buffer[:keep].copy_(buffer[drop : self._steps].clone())  # device-to-device
            buffer[keep:].zero_()  # step() writes only the fields that apply
        self.first_step += drop
        self._logged = max(0, self._logged - drop)
        self._steps = keep
        self._no_grad_rows = [r - drop for r in self._no_grad_rows if r >= drop]

    def _follow_parameters(self) -> None:
        """Move the records to the parameters' device when the model moved
        after the monitor was made (``GradMonitor(model); model.cuda()``):
        otherwise every step would copy its norm across devices, a host sync
        on each step. One copy of the records, once (a copy from the host,
        which syncs once); records made on the meta device hold nothing and
        start again as zeros."""
        device = self.parameters[0].device
        if device.type == "meta":
            # Nothing to measure. Most likely the model was materialised after
            # the monitor was made (materialize_, to_empty, fully_shard): that
            # makes new parameter objects, and the monitor holds the old ones.
            raise RuntimeError(
                "GradMonitor: its parameters are on the meta device. materialize_, to_empty and fully_shard "
                "replace a model's parameters with new ones; make the monitor after them, as an optimizer"
            )
        if device == self.device:
            return
        was_meta = self.device.type == "meta"
        self.device = device
        for name in ("_norms", "_clipped", "_nonfinite", "_param_norms"):
            old = getattr(self, name)
            setattr(self, name, torch.zeros_like(old, device=device) if was_meta else old.to(device))

    @property
    def steps(self) -> int:
        """Number of recorded steps kept (at most ``max_steps``)."""
        return self._steps

    @property
    def capacity(self) -> int:
        """Number of steps the buffers hold before they next double."""
        return int(self._norms.shape[0])

    @property
    def total_norms(self) -> Tensor:
        """Recorded total norms, float32 [steps] on the device (a view; no sync)."""
        return self._norms[: self._steps]

    @property
    def clipped(self) -> Tensor:
        """Whether each step was clipped, bool [steps] on the device (no sync)."""
        return self._clipped[: self._steps]

    @property
    def nonfinite(self) -> Tensor:
        """Whether each step's gradient norm was NaN/inf, bool [steps] (no sync)."""
        return self._nonfinite[: self._steps]

    @property
    def parameter_norms(self) -> Tensor:
        """Per-parameter norms, float32 [steps, n_params] (n_params = 0 unless
        ``per_parameter``); no sync."""
        return self._param_norms[: self._steps]

    def _norms_now(self, present: list[int], grads: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        """(total norm, per-parameter norms of ``grads`` or None) for this step."""
        # One fused pass gives both the total and the per-tensor norms; grads
        # on several devices or DTensor (FSDP2 / TP) grads go through
        # trainops.clip's multi-device and distributed paths.
        total, per = _fused_norms(grads, self.norm_type, self.per_parameter)
        return total, (per if self.per_parameter else None)

    @torch.no_grad()
    def step(self) -> Tensor:
        """Record (and, with ``max_norm``, clip) the current gradients.

        Never synchronises with the device (except every ``log_every`` steps
        with a writer, see the class docstring).

        Returns:
            The total gradient norm before clipping, a 0-dim device tensor
            (float64 if any gradient is float64, else float32), like
            :func:`trainops.clip_grad_norm_`.
        """
        if self._steps == self.capacity:
            if self.max_steps is not None and self._steps >= self.max_steps:
                self._drop_oldest_half()
            else:
                self._grow()
        if self.parameters:
            self._follow_parameters()
        i = self._steps
        present: list[int] = []
        grads: list[Tensor] = []
        for k, p in enumerate(self.parameters):  # one .grad read per parameter
            g = p.grad
            if g is not None:
                present.append(k)
                grads.append(g)
        if grads:
            # The fused op validates the whole list before touching any data
            # (and trainops.clip turns its errors into the precise TypeError /
            # ValueError), so no per-tensor Python checks on every step.
            total, per = self._norms_now(present, grads)
            # A no-op unless the parameters span devices. Not non_blocking: a
            # device-to-host copy could then be read before it lands.
            total_here = total.to(self.device)
            self._norms[i].copy_(total_here)
            self._nonfinite[i].copy_(~torch.isfinite(total_here))
            if self.max_norm is not None:
                # Clipped means scaled down: the coefficient max_norm / (total
                # + 1e-6), computed as the kernel and torch compute it (a
                # reciprocal, then a multiply), is below 1.
                self._clipped[i].copy_(self.max_norm / (total_here + 1e-6) < 1.0)
                _scale_by_norm(grads, self.max_norm, total)
            if per is not None:
                per = per.to(device=self.device, dtype=torch.float32)
                if len(present) == len(self.parameters):
                    self._param_norms[i].copy_(per)
                else:  # the index from a bounded cache: no host-to-device copy per step
                    self._param_norms[i].index_copy_(0, distributed.index_tensor(present, self.device), per)
        else:
            # Buffers start zeroed (see _allocate and reset), so a step with
            # no gradient at all records norm 0, not clipped, finite; the
            # summary leaves it out of the statistics.
            total = torch.zeros((), dtype=torch.float32, device=self.device)
            self._no_grad_rows.append(i)
        self._steps += 1
        if self.writer is not None and self.log_every is not None and self._steps - self._logged >= self.log_every:
            self.flush()
        return total

    def _host_records(self, start: int) -> tuple[list[float], list[bool], list[bool], list[list[float]]]:
        """Records from step ``start`` on, copied to the host in one transfer."""
        n = self._steps
        packed = torch.cat(
            [
                self._norms[start:n, None],
                self._clipped[start:n, None].float(),
                self._nonfinite[start:n, None].float(),
                self._param_norms[start:n],
            ],
            dim=1,
        ).cpu()  # the one sync
        rows = packed.tolist()
        norms = [r[0] for r in rows]
        clipped = [r[1] > 0.5 for r in rows]
        nonfinite = [r[2] > 0.5 for r in rows]
        per = [r[3:] for r in rows]
        return norms, clipped, nonfinite, per

    def flush(self) -> None:
        """Write the records not yet logged to the writer and flush it.

        One host sync (when there is anything to log). No-op without a writer.
        """
        if self.writer is None or self._logged == self._steps:
            return
        start = self._logged
        norms, clipped, nonfinite, per = self._host_records(start)
        self._write(start, norms, clipped, nonfinite, per)
        self._logged = self._steps
        self.writer.flush()

    def _write(
        self,
        start: int,
        norms: list[float],
        clipped: list[bool],
        nonfinite: list[bool],
        per: list[list[float]],
    ) -> None:
        for j, norm in enumerate(norms):
            step = self.first_step + start + j
            self.writer.add_scalar("grad/total_norm", norm, step)
            self.writer.add_scalar("grad/nonfinite", float(nonfinite[j]), step)
            if self.max_norm is not None:
                self.writer.add_scalar("grad/clipped", float(clipped[j]), step)
            for name, value in zip(self.names, per[j]):
                self.writer.add_scalar(f"grad_norm/{name}", value, step)

    def reset(self) -> None:
        """Forget all records (pending TensorBoard records are flushed first).

        The step numbering continues, so TensorBoard curves stay monotone.
        """
        self.flush()
        self.first_step += self._steps
        self._steps = 0
        self._logged = 0
        self._no_grad_rows = []
        # step() only writes the fields that apply, so reused rows must be zero.
        for buffer in (self._norms, self._clipped, self._nonfinite, self._param_norms):
            buffer.zero_()

    def summary(self, top_k: int = TOP_K) -> GradSummary:
        """Statistics over all recorded steps, with advice.

        Synchronises with the device once (and writes pending TensorBoard
        records, from the same host copy).

        Args:
            top_k: how many largest-norm parameters to list.

        Returns:
            A :class:`GradSummary`; ``str()`` of it is a readable report.
        """
        norms, clipped, nonfinite, per = self._host_records(0)
        if self.writer is not None and self._logged < self._steps:
            start = self._logged
            self._write(start, norms[start:], clipped[start:], nonfinite[start:], per[start:])
            self._logged = self._steps
            self.writer.flush()
        steps = len(norms)
        nonfinite_steps = [self.first_step + j for j, bad in enumerate(nonfinite) if bad]
        no_grad = set(self._no_grad_rows)
        # Steps left out of the statistics: a non-finite total, or no gradient at all.
        skipped = [bad or j in no_grad for j, bad in enumerate(nonfinite)]
        finite = sorted(v for v, skip in zip(norms, skipped) if not skip and math.isfinite(v))
        percentiles: dict[str, float] = {}
        if finite:
            for q in PERCENTILES:
                percentiles[f"p{q}"] = _percentile(finite, q)
            percentiles["min"] = finite[0]
            percentiles["max"] = finite[-1]
            percentiles["mean"] = math.fsum(finite) / len(finite)
        clipped_steps = sum(clipped) if self.max_norm is not None else 0
        with_grads = steps - len(no_grad)
        clip_rate = (clipped_steps / with_grads if with_grads else 0.0) if self.max_norm is not None else None
        top = self._top_parameters(per, skipped, top_k) if self.per_parameter else []
        summary = GradSummary(
            steps=steps,
            max_norm=self.max_norm,
            clip_rate=clip_rate,
            clipped_steps=clipped_steps,
            percentiles=percentiles,
            nonfinite_steps=nonfinite_steps,
            no_grad_steps=[self.first_step + j for j in self._no_grad_rows],
            top_parameters=top,
        )
        summary.advice = _advice(summary)
        return summary

    def _top_parameters(
        self, per: list[list[float]], skipped: list[bool], top_k: int
    ) -> list[tuple[str, float, float]]:
        """(name, mean, max) of the ``top_k`` parameters with the largest mean norm.

        Steps with a non-finite total are left out (``skipped``): one NaN
        would otherwise make every mean NaN and hide which layer is large the
        rest of the time. So are steps without any gradient.
        """
        rows = [r for r, bad in zip(per, skipped) if not bad]
        if not rows:
            return []
        stats = []
        for k, name in enumerate(self.names):
            column = [r[k] for r in rows]
            stats.append((name, math.fsum(column) / len(column), max(column)))
        stats.sort(key=lambda s: s[1], reverse=True)
        return stats[: max(0, top_k)]


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of sorted values."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _advice(s: GradSummary) -> list[str]:
    """Advice sentences for a summary, most important first."""
    advice: list[str] = []
    if s.steps == 0:
        return ["No steps recorded: call GradMonitor.step() after loss.backward()."]
    if s.nonfinite_steps:
        advice.append(
            f"Non-finite gradients on {len(s.nonfinite_steps)} of {s.steps} steps (first at step "
            f"{s.nonfinite_steps[0]}): the gradients exploded or overflowed. Lower the learning rate, "
            "clip the gradient norm, and with fp16 use torch.amp.GradScaler (it skips such steps)."
        )
    if s.clip_rate is not None and s.max_norm is not None:
        if s.clip_rate > FREQUENT_CLIP_RATE:
            advice.append(
                f"Clipping triggered on {100.0 * s.clip_rate:.0f}% of steps (more than "
                f"{100.0 * FREQUENT_CLIP_RATE:.0f}%): clipping is acting as the learning rate. "
                "Lower the learning rate (try 2-10x lower) or raise max_norm if these norms are normal "
                f"for this model (median norm {s.percentiles.get('p50', float('nan')):.3g})."
            )
        elif s.clip_rate > OCCASIONAL_CLIP_RATE:
            advice.append(
                f"Clipping triggered on {100.0 * s.clip_rate:.0f}% of steps: it is absorbing frequent "
                "spikes. Fine early in training; if it persists, lower the learning rate."
            )
        elif s.clipped_steps == 0 and "p99" in s.percentiles and s.percentiles["p99"] < 0.1 * s.max_norm:
            advice.append(
                f"Clipping never triggered and 99% of norms are below {s.percentiles['p99']:.3g}, "
                f"a tenth of max_norm={s.max_norm:g}: clipping is not protecting against spikes at this "
                "threshold; consider max_norm near the 99th percentile."
            )
    if s.no_grad_steps:
        advice.append(
            f"{len(s.no_grad_steps)} of {s.steps} steps had no gradient at all (left out of the norm "
            "statistics): step() ran before backward() or after zero_grad(), or every parameter is frozen."
        )
    median = s.percentiles.get("p50")
    peak = s.percentiles.get("max")
    if s.max_norm is None and median is not None and peak is not None and median > 0 and peak > SPIKE_FACTOR * median:
        advice.append(
            f"The largest gradient norm ({peak:.3g}) is over {SPIKE_FACTOR:g}x the median ({median:.3g}): "
            f"consider clipping, e.g. max_norm={s.percentiles['p95']:.3g} (the 95th percentile)."
        )
    if median is not None and median < VANISHING_NORM:
        advice.append(
            f"The median gradient norm is {median:.3g}: gradients are vanishing. Check the initialisation, "
            "normalisation layers and activations, or raise the learning rate."
        )
    return advice
