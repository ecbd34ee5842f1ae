"""The `trainops diagnose PATH [--plot out.png]` command: CSV, TensorBoard, plots, errors."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

import curves  # noqa: E402

from trainops.diagnose import CurveError, add_arguments, load_curves, main  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def _early_stop_curves():
    train, val, best = curves.early_stop(np.random.default_rng(0), 0.01, 0.03)
    return train, val, best


def _write_csv(path, header, rows):
    with open(path, "w") as f:
        if header is not None:
            f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join("" if v is None else str(v) for v in row) + "\n")
    return str(path)


def _run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "header",
    [
        ["epoch", "train_loss", "val_loss"],
        ["epoch", "loss", "val_loss"],  # Keras CSVLogger
        ["Epoch", "Train Loss", "Validation Loss"],
        ["step", "training_loss", "valid_loss"],
        ["epoch", "train/loss", "test/loss"],
        ["epoch", "trainLoss", "valLoss"],  # camelCase: valLoss is the validation loss, not a training loss
        ["epoch", "TrainLoss", "ValidationLoss"],
        ["epoch", "trainloss", "valloss"],  # a role glued to "loss"
    ],
)
def test_csv_with_common_column_names(tmp_path, capsys, header):
    train, val, best = _early_stop_curves()
    path = _write_csv(tmp_path / "h.csv", header, [(e + 1, t, v) for e, (t, v) in enumerate(zip(train, val))])
    code, out, err = _run_cli([path], capsys)
    assert code == 0, err
    assert "diagnosis: early_stop" in out
    c = load_curves(path)
    assert c.epochs[0] == 1 and c.val_name == header[2]
    # epochs are reported in the file's own labels (1-based here)
    reported = int(re.search(r"diagnosis: early_stop \(epoch (\d+)\)", out).group(1))
    assert abs(reported - (best + 1)) <= 4


def test_csv_without_header(tmp_path, capsys):
    train, val, _ = _early_stop_curves()
    path = _write_csv(tmp_path / "n.csv", None, [(e, t, v) for e, (t, v) in enumerate(zip(train, val))])
    code, out, _ = _run_cli([path], capsys)
    assert code == 0 and "diagnosis: early_stop" in out
    path = _write_csv(tmp_path / "one.csv", None, [(t,) for t in train])
    c = load_curves(path)
    assert c.val is None and len(c.train) == len(train)


def test_csv_train_only(tmp_path, capsys):
    train, _, _ = curves.underfitting(np.random.default_rng(0), 0.01, 0.03)
    path = _write_csv(tmp_path / "t.csv", ["epoch", "loss"], list(enumerate(train)))
    code, out, _ = _run_cli([path], capsys)
    assert code == 0 and "diagnosis: underfitting" in out


def test_long_train_only_step_log_is_averaged(tmp_path, capsys):
    # 600 per-step losses with 20% batch-to-batch noise around a converged
    # curve: averaged into 100 means, not read as oscillation.
    rng = np.random.default_rng(0)
    t = np.arange(600.0)
    loss = (0.3 + 2.0 * np.exp(-t / 50.0)) * np.exp(0.2 * rng.standard_normal(600))
    path = _write_csv(tmp_path / "steps.csv", ["step", "loss"], list(zip(range(600), loss)))
    code, out, _ = _run_cli([path], capsys)
    assert code == 0 and "diagnosis: converged" in out, out
    assert "100 epochs" in out and "means of 600 logged points" in out
    c = load_curves(path)
    assert c.averaged_from == 600 and len(c.train) == 100 and c.epochs[-1] == 599
    np.testing.assert_allclose(c.train[0], loss[:6].mean())
    short = _write_csv(tmp_path / "short.csv", ["epoch", "loss"], list(enumerate(loss[:200])))
    assert load_curves(short).averaged_from is None  # per-epoch histories are left alone


def test_csv_rows_split_like_lightning(tmp_path):
    # Lightning's CSVLogger: train and validation metrics on separate rows,
    # several training rows per epoch.
    train, val, _ = _early_stop_curves()
    rows = []
    for e, (t, v) in enumerate(zip(train, val)):
        rows.append((e, 2 * e, t * 1.1, None))
        rows.append((e, 2 * e + 1, t * 0.9, None))
        rows.append((e, 2 * e + 1, None, v))
    path = _write_csv(tmp_path / "metrics.csv", ["epoch", "step", "train_loss_step", "val_loss"], rows)
    c = load_curves(path)
    assert c.epochs == list(range(len(train)))
    np.testing.assert_allclose(c.train, train)
    np.testing.assert_allclose(c.val, val)


def test_csv_validation_every_other_epoch(tmp_path):
    train, val, _ = _early_stop_curves()
    rows = [(e, t, v if e % 2 == 0 else None) for e, (t, v) in enumerate(zip(train, val))]
    c = load_curves(_write_csv(tmp_path / "sparse.csv", ["epoch", "train_loss", "val_loss"], rows))
    assert c.epochs == list(range(0, len(train), 2))


def test_explicit_columns(tmp_path, capsys):
    train, val, _ = _early_stop_curves()
    path = _write_csv(tmp_path / "x.csv", ["epoch", "a", "b"], [(e, t, v) for e, (t, v) in enumerate(zip(train, val))])
    code, _, err = _run_cli([path], capsys)
    assert code == 1 and "no training-loss column" in err
    code, out, _ = _run_cli([path, "--train", "a", "--val", "b"], capsys)
    assert code == 0 and "diagnosis: early_stop" in out


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="needs matplotlib")
def test_plot_writes_a_png(tmp_path, capsys):
    train, val, _ = _early_stop_curves()
    path = _write_csv(tmp_path / "h.csv", ["epoch", "train_loss", "val_loss"], list(zip(range(60), train, val)))
    png = tmp_path / "out.png"
    code, out, _ = _run_cli([path, "--plot", str(png)], capsys)
    assert code == 0 and f"plot written to {png}" in out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="needs matplotlib")
def test_plot_to_unwritable_path_is_an_error(tmp_path, capsys):
    train, val, _ = _early_stop_curves()
    path = _write_csv(tmp_path / "h.csv", ["epoch", "train_loss", "val_loss"], list(zip(range(60), train, val)))
    code, _, err = _run_cli([path, "--plot", str(tmp_path / "missing-dir" / "out.png")], capsys)
    assert code == 1 and err.count("\n") == 1 and "cannot write" in err


def _tensorboard_run(logdir, train, val, train_tag="loss/train", val_tag="loss/val", steps_per_epoch=1):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(logdir))
    for e, (t, v) in enumerate(zip(train, val)):
        for s in range(steps_per_epoch):
            writer.add_scalar(train_tag, t, e * steps_per_epoch + s)
        writer.add_scalar(val_tag, v, e * steps_per_epoch + steps_per_epoch - 1)
        writer.add_scalar("grad/total_norm", 1.0, e)
    writer.close()


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_directory_and_file(tmp_path, capsys, monkeypatch):
    train, val, _ = _early_stop_curves()
    _tensorboard_run(tmp_path, train, val)
    code, out, err = _run_cli([str(tmp_path)], capsys)
    assert code == 0, err
    assert "diagnosis: early_stop" in out and "loss/train / loss/val" in out
    (event_file,) = [f for f in os.listdir(tmp_path) if "tfevents" in f]
    c = load_curves(str(tmp_path / event_file))
    np.testing.assert_allclose(c.train, train, rtol=1e-6)
    monkeypatch.chdir(tmp_path)  # a bare relative file name
    assert load_curves(event_file).train == c.train


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_per_step_train_loss_is_averaged_per_validation(tmp_path):
    train, val, _ = _early_stop_curves()
    _tensorboard_run(tmp_path, train, val, train_tag="Loss/train_step", val_tag="Loss/val", steps_per_epoch=3)
    c = load_curves(str(tmp_path))
    assert c.epochs == [3 * e + 2 for e in range(len(train))]
    np.testing.assert_allclose(c.train, train, rtol=1e-6)


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_keras_layout(tmp_path, capsys):
    # Keras' TensorBoard callback: logs/train and logs/validation, both with tag epoch_loss.
    train, val, _ = _early_stop_curves()
    from torch.utils.tensorboard import SummaryWriter

    for sub, values in (("train", train), ("validation", val)):
        writer = SummaryWriter(str(tmp_path / sub))
        for e, v in enumerate(values):
            writer.add_scalar("epoch_loss", v, e)
        writer.close()
    code, out, _ = _run_cli([str(tmp_path)], capsys)
    assert code == 0 and "train/epoch_loss / validation/epoch_loss" in out and "diagnosis: early_stop" in out


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_directory_of_several_runs_is_refused(tmp_path, capsys):
    # One run logged only a (flat) training loss, the other train and val: pairing
    # exp1's train with exp2's val would diagnose a curve that never existed.
    from torch.utils.tensorboard import SummaryWriter

    train, val, _ = _early_stop_curves()
    writer = SummaryWriter(str(tmp_path / "exp1"))
    for e in range(len(train)):
        writer.add_scalar("Loss/train", 5.0, e)
    writer.close()
    _tensorboard_run(tmp_path / "exp2", train, val)
    code, out, err = _run_cli([str(tmp_path)], capsys)
    _one_line_error(code, err)
    assert "2 runs with a training loss (exp1, exp2)" in err and out == ""
    code, out, _ = _run_cli([str(tmp_path / "exp2")], capsys)  # one run's directory is fine
    assert code == 0 and "diagnosis: early_stop" in out
    # SummaryWriter.add_scalars' layout (Loss_train/, Loss_val/ under one run) is one run, also
    # with keys that end in "loss" (Loss_train_loss/, Loss_val_loss/)
    for train_key, val_key in (("train", "val"), ("train_loss", "val_loss")):
        writer = SummaryWriter(str(tmp_path / f"scalars_{train_key}"))
        for e, (t, v) in enumerate(zip(train, val)):
            writer.add_scalars("Loss", {train_key: t, val_key: v}, e)
        writer.close()
        code, out, _ = _run_cli([str(tmp_path / f"scalars_{train_key}")], capsys)
        assert code == 0 and "diagnosis: early_stop" in out
        assert f"Loss_{train_key}/Loss / Loss_{val_key}/Loss" in out
    # runs whose own names hold a role word are still two runs
    for run in ("train_a", "train_bb"):
        _tensorboard_run(tmp_path / "named" / run, train, val, train_tag="loss", val_tag="val_loss")
    code, _, err = _run_cli([str(tmp_path / "named")], capsys)
    _one_line_error(code, err)
    assert "2 runs with a training loss (train_a, train_bb)" in err


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_add_hparams_subdirectory_is_not_a_run(tmp_path, capsys):
    # torch's documented add_hparams writes its metric ("hparam/loss") into a
    # timestamped subdirectory of the run: one run, not two.
    from torch.utils.tensorboard import SummaryWriter

    train, val, _ = _early_stop_curves()
    writer = SummaryWriter(str(tmp_path))
    for e, (t, v) in enumerate(zip(train, val)):
        writer.add_scalar("Loss/train", t, e)
        writer.add_scalar("Loss/val", v, e)
    writer.add_hparams({"lr": 0.1}, {"hparam/loss": float(val[-1])})
    writer.close()
    code, out, err = _run_cli([str(tmp_path)], capsys)
    assert code == 0, err
    assert "Loss/train / Loss/val" in out and "diagnosis: early_stop" in out
    # Lightning writes the hparams summary into the run's own event file: still the run
    from torch.utils.tensorboard.summary import hparams

    writer = SummaryWriter(str(tmp_path / "lightning"))
    for summary in hparams({"lr": 0.1}, {}):
        writer._get_file_writer().add_summary(summary)
    for e, (t, v) in enumerate(zip(train, val)):
        writer.add_scalar("train_loss", t, e)
        writer.add_scalar("val_loss", v, e)
    writer.close()
    code, out, err = _run_cli([str(tmp_path / "lightning")], capsys)
    assert code == 0, err
    assert "train_loss / val_loss" in out and "diagnosis: early_stop" in out


def test_broken_pipe_is_quiet_even_unbuffered(tmp_path):
    # With PYTHONUNBUFFERED=1 the print itself meets the closed pipe, inside
    # diagnose's own error handler: it must not become "error: Broken pipe".
    train, val, _ = _early_stop_curves()
    path = _write_csv(tmp_path / "h.csv", ["epoch", "train_loss", "val_loss"], list(zip(range(len(train)), train, val)))
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainops", "diagnose", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    proc.stdout.close()  # the reader goes away before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""


def _one_line_error(code, err):
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("trainops diagnose: error: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (b"epoch,train_loss,val_loss\n", "no data rows"),
        (b"epoch,train_loss,val_loss\n1,2.0,2.1\n2,abc,2.0\n", "line 3: 'abc' is not a number"),
        (b"epoch,train_loss,val_loss\n1,2.0,2.1\n2,1.9\n", "line 3: 2 fields, expected 3"),
        # blank lines are skipped but counted: the message names the file's own line
        (b"epoch,train_loss,val_loss\n\n1,2.0,2.1\n\n2,abc,2.0\n", "line 5: 'abc' is not a number"),
        (b"epoch,accuracy\n1,0.5\n2,0.6\n", "no training-loss column"),
        (b"epoch,train_loss\n1,\n2,\n", "has no values"),
        (b"1,2,3,4,5\n", "no header row and 5 columns"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "not a text CSV"),
    ],
)
def test_malformed_csv_is_one_line_error(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    code, out, err = _run_cli([str(path)], capsys)
    _one_line_error(code, err)
    assert message in err
    assert out == ""


def test_missing_path_and_unknown_column(tmp_path, capsys):
    code, _, err = _run_cli([str(tmp_path / "nope.csv")], capsys)
    _one_line_error(code, err)
    assert "no such file" in err
    path = _write_csv(tmp_path / "h.csv", ["epoch", "train_loss"], [(1, 2.0), (2, 1.0)])
    code, _, err = _run_cli([path, "--train", "loss"], capsys)
    _one_line_error(code, err)
    assert "no column named 'loss'" in err


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_errors(tmp_path, capsys):
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    code, _, err = _run_cli([str(empty_dir)], capsys)
    _one_line_error(code, err)
    assert "without TensorBoard event files" in err
    corrupt = tmp_path / "events.out.tfevents.123.host"
    corrupt.write_bytes(b"\x00\x01garbage" * 10)
    code, _, err = _run_cli([str(corrupt)], capsys)
    _one_line_error(code, err)


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_file_damaged_in_the_middle_is_an_error(tmp_path, capsys):
    # TensorBoard's reader stops quietly at a record that fails its checksum:
    # without the check the verdict would be on a shorter history.
    train, val, _ = _early_stop_curves()
    _tensorboard_run(tmp_path / "run", train, val)
    (name,) = os.listdir(tmp_path / "run")
    data = (tmp_path / "run" / name).read_bytes()
    for where in (len(data) // 3, len(data) // 2 + 3):  # in a record's header or its payload, by chance
        damaged = tmp_path / f"damaged{where}" / name
        damaged.parent.mkdir()
        damaged.write_bytes(data[:where] + b"\xff" * 20 + data[where + 20 :])
        code, _, err = _run_cli([str(damaged.parent)], capsys)
        _one_line_error(code, err)
        assert "damaged" in err
    # A last record cut short (a run still writing) is read up to it.
    cut = tmp_path / "cut" / name
    cut.parent.mkdir()
    cut.write_bytes(data[:-7])
    c = load_curves(str(cut.parent))  # the lost record is the last epoch's grad/total_norm
    assert len(c.train) == len(train) and c.val is not None and len(c.val) == len(val) and not c.notes
    # A damaged end with nothing readable after it (a run that stopped while
    # writing) is read up to the damage, with a note.
    for label, blob in [("zeros", data + bytes(4096)), ("garbled", data[:-10] + bytes(10)), ("junk", data + b"\x07" * 100)]:
        torn = tmp_path / label / name
        torn.parent.mkdir()
        torn.write_bytes(blob)
        c = load_curves(str(torn.parent))
        assert len(c.train) == len(train) and len(c.notes) == 1 and "stopped while writing" in c.notes[0], label


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_damaged_file_replaced_by_a_rerun_is_left_out(tmp_path):
    train, val, _ = _early_stop_curves()
    _tensorboard_run(tmp_path, train, val)
    (old,) = os.listdir(tmp_path)
    data = (tmp_path / old).read_bytes()
    (tmp_path / old).write_bytes(data[: len(data) // 2] + b"\xff" * 20 + data[len(data) // 2 + 20 :])
    time.sleep(1.1)  # event file names carry the second they were made
    _tensorboard_run(tmp_path, train[:30], val[:30])  # a rerun into the same directory
    c = load_curves(str(tmp_path))
    assert len(c.train) == 30 and any("rerun" in note for note in c.notes)


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_file_still_being_written_is_not_damaged(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from trainops.diagnose import _check_records

    writer = SummaryWriter(str(tmp_path))
    for step in range(50):
        writer.add_scalar("loss/train", 1.0 / (step + 1), step)
    writer.flush()
    (name,) = os.listdir(tmp_path)
    before = (tmp_path / name).read_bytes()  # read, then the run writes on, then the reader loads
    for step in range(50, 80):
        writer.add_scalar("loss/train", 1.0 / (step + 1), step)
    writer.add_histogram("weights", torch.arange(10.0), 80)  # the last records need not be scalars
    writer.add_text("note", "done", 80)
    writer.close()
    acc = EventAccumulator(str(tmp_path / name), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    _check_records(name, before, acc)
    _check_records(name, (tmp_path / name).read_bytes(), acc)
    assert len(load_curves(str(tmp_path)).train) == 80


def test_load_curves_raises_curve_error(tmp_path):
    with pytest.raises(CurveError):
        load_curves(str(tmp_path / "absent.csv"))


def test_add_arguments_wires_a_subcommand():
    parser = argparse.ArgumentParser(prog="trainops")
    add_arguments(parser.add_subparsers(dest="command").add_parser("diagnose"))
    args = parser.parse_args(["diagnose", "run.csv", "--plot", "p.png"])
    assert args.path == "run.csv" and args.plot == "p.png" and callable(args.func)


def test_command_in_a_fresh_process(tmp_path):
    """End to end: real exit codes, nothing on stderr but the one line."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    train, val, _ = _early_stop_curves()
    good = _write_csv(tmp_path / "h.csv", ["epoch", "train_loss", "val_loss"], list(zip(range(60), train, val)))
    entry = "import sys; from trainops.diagnose import main; sys.exit(main())"
    ok = subprocess.run([sys.executable, "-c", entry, good], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "diagnosis: early_stop" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-c", entry, str(tmp_path / "missing.csv")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr
    # Through the `trainops` command itself once the rest of the CLI (bench) is there.
    if importlib.util.find_spec("trainops.bench") is not None:
        cli = subprocess.run(
            [sys.executable, "-m", "trainops", "diagnose", good], capture_output=True, text=True, env=env, timeout=120
        )
        assert cli.returncode == 0 and "diagnosis: early_stop" in cli.stdout


def test_cli_hooks_survive_the_function_shadowing_the_module():
    # trainops/__init__ exports the function `diagnose`, so cli.py's
    # `from . import diagnose` gets the function: it must carry the hooks.
    import trainops
    from trainops import diagnose as exported

    assert exported is trainops.diagnose and callable(exported)
    assert exported.add_arguments is add_arguments
    parser = argparse.ArgumentParser()
    exported.add_arguments(parser)
    assert parser.parse_args(["x.csv"]).func is exported.run


def test_csv_fractional_epochs_like_hugging_face(tmp_path):
    # Training loss logged 3 times per epoch at fractional epochs, validation
    # at the end of each epoch on its own row.
    train, val, best = _early_stop_curves()
    rows = []
    for e, (t, v) in enumerate(zip(train, val)):
        for j, f in enumerate((1.2, 1.0, 0.8)):
            rows.append((round(e + (j + 1) / 3, 4), t * f, None))
        rows.append((float(e + 1), None, v))
    c = load_curves(_write_csv(tmp_path / "hf.csv", ["epoch", "loss", "eval_loss"], rows))
    assert c.epochs == list(range(1, len(train) + 1))  # no repeated labels
    np.testing.assert_allclose(c.train, train)  # each epoch's three values averaged
    np.testing.assert_allclose(c.val, val)


@pytest.mark.parametrize("sep", [";", "\t"])
def test_csv_with_semicolons_or_tabs(tmp_path, sep):
    train, val, _ = _early_stop_curves()
    path = tmp_path / "run.csv"
    path.write_text(sep.join(["epoch", "loss", "val_loss"]) + "\n" + "".join(
        f"{e}{sep}{t}{sep}{v}\n" for e, (t, v) in enumerate(zip(train, val))))
    c = load_curves(str(path))
    np.testing.assert_allclose(c.train, train)
    np.testing.assert_allclose(c.val, val)


def test_csv_with_semicolons_and_decimal_commas(tmp_path):
    path = tmp_path / "de.csv"
    path.write_text("epoch;train_loss;val_loss\n" + "".join(f"{e};{2.0 / (e + 1):.4f};{2.2 / (e + 1):.4f}\n".replace(".", ",") for e in range(10)))
    c = load_curves(str(path))
    np.testing.assert_allclose(c.train, [round(2.0 / (e + 1), 4) for e in range(10)])


# Found by a review (eighteenth session): TensorBoard logs read silently wrong.


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_train_per_step_and_validation_per_epoch_is_refused(tmp_path, capsys):
    # add_scalar("loss/train", l, global_step) with add_scalar("loss/val", v, epoch):
    # pairing them would read epoch e's validation with training step e.
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for epoch in range(30):
        for s in range(50):
            writer.add_scalar("loss/train", 2.0 / (1 + epoch), epoch * 50 + s)
        writer.add_scalar("loss/val", 2.1 / (1 + epoch), epoch)
    writer.close()
    code, out, err = _run_cli([str(tmp_path)], capsys)
    assert code == 1 and out == ""
    assert "logged at steps 0..29" in err and "steps 0..1499" in err and "same step counter" in err


def _tensorboard_file_run(logdir, train, val, first_step=0):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(logdir))
    for e, (t, v) in enumerate(zip(train, val), start=first_step):
        writer.add_scalar("loss/train", t, e)
        writer.add_scalar("loss/val", v, e)
    writer.close()
    return max(os.listdir(logdir))  # the newest event file (time-stamped names)


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_rerun_into_the_same_directory_replaces_the_old_run(tmp_path, capsys):
    import time

    old_train, old_val, _ = _early_stop_curves()
    old = _tensorboard_file_run(tmp_path, old_train, old_val)
    time.sleep(1.1)  # event file names start with the time in seconds
    new_train, new_val = [2.0, 1.5, 1.2, 1.0, 0.9, 0.85], [2.1, 1.6, 1.3, 1.1, 1.0, 0.95]
    new = _tensorboard_file_run(tmp_path, new_train, new_val)
    assert new != old
    c = load_curves(str(tmp_path))
    np.testing.assert_allclose(c.train, new_train, rtol=1e-6)
    assert c.epochs == list(range(6))
    assert len(c.notes) == 1 and old in c.notes[0] and new in c.notes[0] and "rerun" in c.notes[0]
    code, out, err = _run_cli([str(tmp_path)], capsys)
    assert code == 0, err
    assert "6 epochs" in out and "note: " in out


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_resumed_run_is_merged(tmp_path):
    # A run resumed from a checkpoint writes a new event file that goes on from
    # a later step: both files are one run, the newer values win where they overlap.
    import time

    train, val, _ = _early_stop_curves()
    _tensorboard_file_run(tmp_path, train[:12], val[:12])
    time.sleep(1.1)
    _tensorboard_file_run(tmp_path, train[10:], val[10:], first_step=10)
    c = load_curves(str(tmp_path))
    assert c.epochs == list(range(len(train))) and not c.notes
    np.testing.assert_allclose(c.train, train, rtol=1e-6)


@pytest.mark.parametrize("start", [0, 1])
def test_csv_without_header_epoch_and_loss_columns(tmp_path, start):
    # (epoch, loss) rows, not (train, val): the first column counts up by one.
    train, _, _ = _early_stop_curves()
    path = _write_csv(tmp_path / "h.csv", None, [(start + e, t) for e, t in enumerate(train)])
    c = load_curves(path)
    assert c.val is None and c.epochs == list(range(start, start + len(train)))
    np.testing.assert_allclose(c.train, train, rtol=1e-12)


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_rerun_that_has_not_logged_validation_yet_drops_the_old_validation(tmp_path):
    # The new run's training loss must not pair with the old run's validation loss.
    import time

    old_train, old_val, _ = _early_stop_curves()
    _tensorboard_file_run(tmp_path, old_train, old_val)
    time.sleep(1.1)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for e in range(8):
        writer.add_scalar("loss/train", 2.0 - 0.1 * e, e)
    writer.close()
    c = load_curves(str(tmp_path))
    assert c.val is None and c.epochs == list(range(8)) and len(c.notes) == 1


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_validation_per_step_with_train_per_epoch_is_refused(tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for epoch in range(30):
        writer.add_scalar("loss/train", 2.0 / (1 + epoch), epoch)
        writer.add_scalar("loss/val", 2.1 / (1 + epoch), 50 * epoch + 49)
    writer.close()
    code, out, err = _run_cli([str(tmp_path)], capsys)
    assert code == 1 and "same step counter" in err


def test_csv_without_header_step_and_loss_columns(tmp_path):
    train, _, _ = _early_stop_curves()
    path = _write_csv(tmp_path / "s.csv", None, [(10 * (e + 1), t) for e, t in enumerate(train)])
    c = load_curves(path)
    assert c.val is None and c.epochs == [10 * (e + 1) for e in range(len(train))]


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_damage_is_found_wherever_it_falls(tmp_path):
    # Cases from a fuzz of corruptions: a flipped bit in a length field (a walk
    # by lengths then skips records), scalars logged without a step (step 0
    # again and again), histograms after the last scalar.
    import struct

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "src"))
    for e in range(100):
        writer.add_scalar("loss/train", 1.0 / (e + 1), e)
        writer.add_scalar("loss/val", 1.1 / (e + 1), e)
        writer.add_scalar("time/epoch_s", 1.0)
    for e in range(50):
        writer.add_histogram("weights", torch.arange(10.0) * e, e)
    writer.close()
    (name,) = os.listdir(tmp_path / "src")
    data = (tmp_path / "src" / name).read_bytes()
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    middle, last = starts[150], starts[-1]  # a scalar record at epoch ~50; the last histogram

    def damaged(at: int, mask: int) -> bytes:
        return data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :]

    for label, blob, error in [
        ("length bit", damaged(middle, 0x40), True),
        ("payload bit", damaged(middle + 20, 0x04), True),
        ("last length bit", damaged(last, 0x08), False),
        ("last payload bit", damaged(last + 30, 0x01), False),
    ]:
        case = tmp_path / label.replace(" ", "_") / name
        case.parent.mkdir()
        case.write_bytes(blob)
        if error:
            with pytest.raises(CurveError, match="damaged record"):
                load_curves(str(case.parent))
        else:  # nothing of the curves after the damage: read whole
            c = load_curves(str(case.parent))
            assert len(c.train) == 100, label


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard")
def test_tensorboard_restart_event_is_not_damage(tmp_path):
    # TF1's Supervisor writes SessionLog.START on a restart; the reader then
    # drops the records of the steps it replaces: intact records it does not
    # hold, which are not a sign of damage.
    from tensorboard.compat.proto import event_pb2
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for e in range(20):
        writer.add_scalar("loss/train", 1.0 / (e + 1), e)
    start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
    writer.file_writer.add_event(event_pb2.Event(step=10, wall_time=1e9, session_log=start))
    writer.close()
    c = load_curves(str(tmp_path))
    assert len(c.train) == 10 and not c.notes
