"""GradMonitor: records against torch.nn.utils, clipping, buffers, summary, TensorBoard, no host sync."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import trainops
from trainops import distributed
from trainops import monitor as monitor_module
from trainops.monitor import GradMonitor

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _model(device: str = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(device=device, dtype=dtype)


def _backward(model: nn.Module, scale: float = 1.0, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    first = next(model.parameters())
    x = torch.randn(8, 5, generator=g).to(device=first.device, dtype=first.dtype)
    model.zero_grad(set_to_none=True)
    (scale * model(x).square().mean()).backward()


class _RecordingWriter:
    """Stands in for SummaryWriter: records add_scalar calls and flushes."""

    def __init__(self) -> None:
        self.scalars: dict[str, list[tuple[int, float]]] = {}
        self.flushes = 0

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        assert isinstance(value, float), "values must reach the writer as host floats"
        self.scalars.setdefault(tag, []).append((global_step, value))

    def flush(self) -> None:
        self.flushes += 1


class _HostReads(TorchDispatchMode):
    """Records every op that reads a tensor value on the host (a sync on CUDA)."""

    SYNCING = ("_local_scalar_dense", "is_nonzero", "item", "equal")

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []
        self.copies_to_cpu = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__
        if any(s in name for s in self.SYNCING):
            self.reads.append(name)
        kwargs = kwargs or {}
        if "_to_copy" in name or name.startswith("copy_"):
            dst = kwargs.get("device")
            src = args[0] if args else None
            if dst is not None and torch.device(dst).type == "cpu" and getattr(src, "device", None) is not None:
                if src.device.type != "cpu":
                    self.copies_to_cpu += 1
        return func(*args, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_records_match_torch(device, norm_type):
    model = _model(device)
    params = list(model.parameters())
    mon = GradMonitor(model, norm_type=norm_type, per_parameter=True)
    expected_totals, expected_per = [], []
    for step in range(6):
        _backward(model, scale=10.0**step, seed=step)
        expected_totals.append(torch.nn.utils.get_total_norm([p.grad for p in params], norm_type).item())
        expected_per.append([torch.linalg.vector_norm(p.grad, norm_type).item() for p in params])
        total = mon.step()
        assert total.device.type == device and total.dim() == 0
    assert mon.steps == 6
    np.testing.assert_allclose(mon.total_norms.cpu().numpy(), expected_totals, rtol=1e-5)
    np.testing.assert_allclose(mon.parameter_norms.cpu().numpy(), expected_per, rtol=1e-5)
    assert not mon.nonfinite.any()
    assert not mon.clipped.any()  # no max_norm: never clipped


@pytest.mark.parametrize("device", DEVICES)
def test_clipping_matches_clip_grad_norm(device):
    model = _model(device)
    reference = _model(device)
    mon = GradMonitor(model.parameters(), max_norm=0.5)
    flags = []
    for step, scale in enumerate([0.01, 100.0, 1.0, 1000.0]):
        _backward(model, scale, seed=step)
        _backward(reference, scale, seed=step)
        ref_total = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
        flags.append(bool(ref_total > 0.5))
        total = mon.step()
        torch.testing.assert_close(total, ref_total, rtol=1e-5, atol=0)
        for p, q in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)
    assert mon.clipped.cpu().tolist() == flags
    assert flags == [False, True, False, True]  # the test data must exercise both cases


def test_fallback_without_a_kernel_gives_the_same_records(monkeypatch):
    # As on a device trainops has no kernel for: torch.nn.utils math, one warning.
    from trainops import _extension

    model = _model()
    with_kernel = GradMonitor(model, max_norm=0.01, per_parameter=True)
    _backward(model)
    grads_before = [p.grad.clone() for p in model.parameters()]
    with_kernel.step()
    clipped_grads = [p.grad.clone() for p in model.parameters()]

    monkeypatch.setattr(_extension, "CLIP_DEVICES", frozenset())
    monkeypatch.setattr(_extension, "_warned_devices", set())
    for p, g in zip(model.parameters(), grads_before):
        p.grad = g.clone()
    fallback = GradMonitor(model, max_norm=0.01, per_parameter=True)
    with pytest.warns(RuntimeWarning, match="falling back"):
        fallback.step()
    torch.testing.assert_close(fallback.total_norms, with_kernel.total_norms)
    torch.testing.assert_close(fallback.parameter_norms, with_kernel.parameter_norms)
    assert fallback.clipped.tolist() == with_kernel.clipped.tolist() == [True]
    for p, expected in zip(model.parameters(), clipped_grads):
        torch.testing.assert_close(p.grad, expected)


def test_nonfinite_gradients_are_flagged():
    model = _model()
    mon = GradMonitor(model, max_norm=1.0)
    for step in range(5):
        _backward(model, seed=step)
        if step in (1, 3):
            model[0].weight.grad[0, 0] = math.nan if step == 1 else math.inf
        mon.step()
    assert mon.nonfinite.cpu().tolist() == [False, True, False, True, False]
    summary = mon.summary()
    assert summary.nonfinite_steps == [1, 3]
    # percentiles come from the finite steps only
    assert all(math.isfinite(v) for v in summary.percentiles.values())
    assert any("Non-finite gradients on 2 of 5 steps" in a for a in summary.advice)


def test_buffers_grow_by_doubling(monkeypatch):
    monkeypatch.setattr(monitor_module, "INITIAL_CAPACITY", 4)
    model = _model()
    mon = GradMonitor(model, per_parameter=True)
    assert mon.capacity == 4
    totals = []
    for step in range(11):
        _backward(model, seed=step)
        totals.append(mon.step().item())
    assert mon.capacity == 16
    np.testing.assert_allclose(mon.total_norms.numpy(), totals, rtol=1e-6)
    assert mon.parameter_norms.shape == (11, 4)


def test_step_reads_nothing_on_the_host():
    model = _model()
    writer = _RecordingWriter()
    mon = GradMonitor(model.named_parameters(), max_norm=0.1, per_parameter=True, writer=writer, log_every=None)
    _backward(model)
    mon.step()  # first call may build caches
    _backward(model, seed=1)
    model[2].bias.grad = None  # exercise the scatter path too
    with _HostReads() as watch:
        mon.step()
        mon.step()
    assert watch.reads == [] and watch.copies_to_cpu == 0
    assert writer.scalars == {}  # log_every=None: nothing reaches the host until asked
    mon.summary()
    assert [s for s, _ in writer.scalars["grad/total_norm"]] == [0, 1, 2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_step_does_not_sync_on_cuda():
    model = _model("cuda")
    mon = GradMonitor(model, max_norm=0.1, per_parameter=True)
    _backward(model)
    mon.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            mon.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_missing_gradients_record_zero_norm():
    model = _model()
    mon = GradMonitor(model.named_parameters(), per_parameter=True)
    _backward(model)
    model[0].weight.grad = None
    mon.step()
    expected = [0.0] + [torch.linalg.vector_norm(p.grad).item() for p in list(model.parameters())[1:]]
    np.testing.assert_allclose(mon.parameter_norms[0].numpy(), expected, rtol=1e-6)
    model.zero_grad(set_to_none=True)
    total = mon.step()  # no gradient at all
    assert total.item() == 0.0
    assert mon.parameter_norms[1].abs().sum().item() == 0.0


def test_changing_sets_of_gradients_keep_a_bounded_index_cache():
    # MoE experts / layer drop with zero_grad(set_to_none=True): which
    # parameters have a grad changes every step.
    params = [torch.nn.Parameter(torch.zeros(3)) for _ in range(16)]
    mon = GradMonitor(params, per_parameter=True)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        present = torch.rand(16, generator=gen) > 0.3
        for p, has in zip(params, present.tolist()):
            p.grad = torch.full((3,), 2.0) if has else None
        mon.step()
        # the scatter indices come from distributed.index_tensor's bounded cache
        assert len(distributed.INDEX_CACHE) <= distributed.INDEX_CACHE_SIZE
        expected = torch.where(present, torch.tensor(2.0 * 3**0.5), torch.tensor(0.0))
        torch.testing.assert_close(mon.parameter_norms[-1], expected)


def test_clipped_flag_agrees_with_the_scaling_at_the_threshold():
    # max_norm / (total + 1e-6) can round to just below 1 while
    # total + 1e-6 <= max_norm: the flag must follow the coefficient.
    p = torch.nn.Parameter(torch.zeros(1))
    cases = 0
    for k in range(400):
        total = 825.3782016853396 * (1 + (k - 200) * 1e-9)
        max_norm = 825.3781924315577 * (1 + (k - 200) * 1e-9)
        p.grad = torch.tensor([total])
        before = p.grad.clone()
        mon = GradMonitor([p], max_norm=max_norm)
        mon.step()
        scaled = not torch.equal(p.grad, before)
        assert bool(mon.clipped[0]) == scaled
        cases += scaled
    assert cases > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_changing_sets_of_gradients_do_not_sync_on_cuda():
    model = _model("cuda")
    mon = GradMonitor(model, per_parameter=True)
    params = list(model.parameters())
    _backward(model)
    mon.step()
    for k in range(len(params)):
        # The backward's input is copied from the host with a blocking copy,
        # which the sync-debug mode reports: only the step is checked.
        _backward(model)
        params[k].grad = None  # a new pattern each step: a cache miss
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            mon.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_float64_gradients_return_float64_total():
    model = _model(dtype=torch.float64)
    mon = GradMonitor(model)
    _backward(model)
    total = mon.step()
    assert total.dtype == torch.float64
    expected = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    torch.testing.assert_close(total, expected)


def test_summary_statistics_and_top_parameters():
    model = _model()
    mon = GradMonitor(model.named_parameters(), max_norm=2.0, per_parameter=True)
    for step in range(40):
        _backward(model, scale=0.5 + 0.1 * step, seed=step)
        mon.step()
    totals = mon.total_norms.numpy().astype(np.float64)
    per = mon.parameter_norms.numpy().astype(np.float64)
    clipped = mon.clipped.numpy()
    s = mon.summary(top_k=2)
    assert s.steps == 40
    assert s.clipped_steps == int(clipped.sum()) and s.clip_rate == pytest.approx(clipped.mean())
    for q in (5, 25, 50, 75, 95, 99):
        assert s.percentiles[f"p{q}"] == pytest.approx(np.percentile(totals, q), rel=1e-6)
    assert s.percentiles["max"] == pytest.approx(totals.max(), rel=1e-6)
    names = [name for name, _ in model.named_parameters()]
    order = np.argsort(-per.mean(axis=0))[:2]
    assert [t[0] for t in s.top_parameters] == [names[i] for i in order]
    assert s.top_parameters[0][2] == pytest.approx(per[:, order[0]].max(), rel=1e-6)
    text = str(s)
    assert "40 steps" in text and "largest gradient norms" in text


def test_frequent_clipping_advises_lowering_the_learning_rate():
    model = _model()
    mon = GradMonitor(model, max_norm=1e-3)
    for step in range(10):
        _backward(model, seed=step)
        mon.step()
    s = mon.summary()
    assert s.clip_rate == 1.0
    assert any("Lower the learning rate" in a for a in s.advice)


def test_rare_clipping_gives_no_learning_rate_advice():
    model = _model()
    mon = GradMonitor(model, max_norm=1.0)
    for step in range(20):
        _backward(model, scale=50.0 if step == 7 else 0.3, seed=step)
        mon.step()
    s = mon.summary()
    assert s.clipped_steps == 1
    assert not any("learning rate" in a for a in s.advice)


def test_spikes_without_clipping_suggest_a_max_norm():
    model = _model()
    mon = GradMonitor(model)
    for step in range(30):
        _backward(model, scale=1000.0 if step == 12 else 1.0, seed=step)
        mon.step()
    s = mon.summary()
    assert s.clip_rate is None
    assert any("consider clipping" in a for a in s.advice)


def test_empty_summary():
    s = GradMonitor(_model()).summary()
    assert s.steps == 0 and s.percentiles == {} and s.advice


def test_writer_logs_every_n_steps_with_step_numbers():
    model = _model()
    writer = _RecordingWriter()
    mon = GradMonitor(
        model.named_parameters(), max_norm=0.5, per_parameter=True, writer=writer, log_every=4, global_step=100
    )
    for step in range(6):
        _backward(model, seed=step)
        mon.step()
    # one flush after step 4; steps 5-6 are pending
    assert writer.flushes == 1
    assert [s for s, _ in writer.scalars["grad/total_norm"]] == [100, 101, 102, 103]
    mon.summary()
    assert writer.flushes == 2
    logged = writer.scalars["grad/total_norm"]
    assert [s for s, _ in logged] == list(range(100, 106))
    np.testing.assert_allclose([v for _, v in logged], mon.total_norms.numpy(), rtol=1e-6)
    assert [v for _, v in writer.scalars["grad/clipped"]] == [float(c) for c in mon.clipped.tolist()]
    assert "grad_norm/0.weight" in writer.scalars and "grad/nonfinite" in writer.scalars
    mon.flush()  # nothing pending: no extra flush
    assert writer.flushes == 2


def test_reset_keeps_step_numbering():
    model = _model()
    writer = _RecordingWriter()
    mon = GradMonitor(model, max_norm=1e-3, writer=writer, log_every=None)
    for step in range(3):
        _backward(model, seed=step)
        mon.step()
    mon.reset()
    assert mon.steps == 0 and len(writer.scalars["grad/total_norm"]) == 3
    # the reused buffer row held "clipped": a small gradient must not inherit it
    _backward(model, scale=1e-9)
    mon.step()
    assert mon.clipped.tolist() == [False]
    mon.flush()
    assert writer.scalars["grad/total_norm"][-1][0] == 3


def test_real_summary_writer(tmp_path):
    tensorboard = pytest.importorskip("tensorboard")
    del tensorboard
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    model = _model()
    writer = SummaryWriter(str(tmp_path))
    mon = GradMonitor(model.named_parameters(), max_norm=0.5, writer=writer, log_every=5)
    for step in range(12):
        _backward(model, seed=step)
        mon.step()
    mon.summary()
    writer.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    events = acc.Scalars("grad/total_norm")
    assert [e.step for e in events] == list(range(12))
    np.testing.assert_allclose([e.value for e in events], mon.total_norms.numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_norm": -1.0}, {"max_norm": math.nan}, {"norm_type": 0.0}, {"norm_type": -2.0}, {"log_every": 0}],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        GradMonitor(_model(), **kwargs)


def test_rejects_non_tensors_and_bad_gradients():
    with pytest.raises(TypeError):
        GradMonitor([1.0, 2.0])
    p = torch.zeros(3, dtype=torch.float32, requires_grad=True)
    p.grad = torch.zeros(3).to_sparse()
    with pytest.raises(TypeError, match="sparse"):
        GradMonitor([p]).step()


def test_exported_from_package():
    assert trainops.GradMonitor is GradMonitor
    assert "GradMonitor" in trainops.__all__


def test_max_steps_bounds_the_buffers_and_logs_every_step(monkeypatch):
    monkeypatch.setattr(monitor_module, "INITIAL_CAPACITY", 4)
    model = _model()
    writer = _RecordingWriter()
    mon = GradMonitor(model.named_parameters(), per_parameter=True, writer=writer, log_every=None, max_steps=8)
    totals = []
    for step in range(21):
        _backward(model, seed=step)
        totals.append(mon.step().item())
        assert mon.steps <= 8 and mon.capacity <= 8
    # The newest steps are kept, with their global indices.
    kept = mon.steps
    np.testing.assert_allclose(mon.total_norms.numpy(), totals[-kept:], rtol=1e-6)
    assert mon.parameter_norms.shape == (kept, 4)
    assert mon.summary().steps == kept
    # Nothing was lost on the way to the writer: every step once, in order.
    mon.flush()
    logged = writer.scalars["grad/total_norm"]
    assert [step for step, _ in logged] == list(range(21))
    np.testing.assert_allclose([value for _, value in logged], totals, rtol=1e-6)


def test_max_steps_validated():
    with pytest.raises(ValueError, match="max_steps"):
        GradMonitor(_model(), max_steps=1)


def test_steps_without_gradients_are_reported_not_read_as_vanishing():
    # step() before backward() (grads set to None by zero_grad): no gradient
    # at all. Such steps are named and left out of the statistics.
    model = _model()
    mon = GradMonitor(model.named_parameters(), per_parameter=True)
    for _ in range(3):
        model.zero_grad(set_to_none=True)
        mon.step()
    _backward(model)
    mon.step()
    s = mon.summary()
    assert s.no_grad_steps == [0, 1, 2]
    assert s.percentiles["min"] > 0.0 and s.percentiles["p50"] == s.percentiles["max"]
    assert not any("vanishing" in a for a in s.advice)
    assert any("no gradient at all" in a for a in s.advice)
    clipping = GradMonitor(model.named_parameters(), max_norm=1e-9)
    model.zero_grad(set_to_none=True)
    clipping.step()
    _backward(model)
    clipping.step()
    assert clipping.summary().clip_rate == 1.0  # of the steps that had gradients
    assert "no gradient at steps: 0, 1, 2" in str(s)
    assert all(mean > 0.0 for _, mean, _ in s.top_parameters)


def test_no_gradient_steps_follow_dropped_and_reset_records():
    params = [torch.nn.Parameter(torch.ones(2))]
    mon = GradMonitor(params, max_steps=4)
    for step in range(6):  # steps 1 and 4 without a gradient
        params[0].grad = None if step in (1, 4) else torch.ones(2)
        mon.step()
    assert mon.summary().no_grad_steps == [4]  # steps 0-1 were dropped at max_steps
    mon.reset()
    params[0].grad = None
    mon.step()
    assert mon.summary().no_grad_steps == [6]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_records_follow_a_model_moved_to_cuda_after_the_monitor_was_made():
    # GradMonitor(model); model.cuda(): the same Parameter objects, now on the
    # GPU. The records move with them once, instead of a sync every step.
    model = _model()
    mon = GradMonitor(model.parameters())
    _backward(model)
    mon.step()
    model.cuda()
    _backward(model)
    mon.step()  # moves the records: one copy from the host, which syncs once
    assert mon.device.type == "cuda" and mon.total_norms.device.type == "cuda"
    _backward(model)
    torch.cuda.set_sync_debug_mode("error")
    try:
        mon.step()  # then no sync per step
    finally:
        torch.cuda.set_sync_debug_mode("default")
    norms = mon.total_norms.cpu()
    assert norms[0] > 0 and torch.allclose(norms[1:], norms[0].expand(2), rtol=1e-5)


def test_records_made_on_the_meta_device_follow_the_materialised_model():
    # GradMonitor(meta_model), then to_empty with swapped parameters (the same
    # Python objects, torch.__future__.set_swap_module_params_on_conversion):
    # the meta records hold nothing; they start again as zeros where the
    # parameters are.
    params = [torch.nn.Parameter(torch.empty(3, device="meta"))]
    mon = GradMonitor(params)
    torch.utils.swap_tensors(params[0], torch.nn.Parameter(torch.ones(3)))
    params[0].grad = torch.full((3,), 2.0)
    mon.step()
    assert mon.device == torch.device("cpu")
    torch.testing.assert_close(mon.total_norms, torch.tensor([math.sqrt(12.0)]))


def test_monitor_made_before_materialize_says_so():
    # materialize_ (like to_empty and fully_shard) makes new parameter objects:
    # a monitor made before it holds the meta ones, which it cannot measure.
    from trainops import init

    with torch.device("meta"):
        model = nn.Linear(4, 2)
    mon = GradMonitor(model)
    init.materialize_(model, "cpu")
    model(torch.ones(1, 4)).sum().backward()
    with pytest.raises(RuntimeError, match="make the monitor after them"):
        mon.step()
    mon = GradMonitor(model)  # made after: works
    assert mon.step() > 0
