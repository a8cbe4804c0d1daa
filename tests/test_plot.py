"""``vitjob plot`` and ``vitjob.plot.plot_run``: a readable PNG from metrics.jsonl, clear errors otherwise."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from vitjob.cli import main
from vitjob.errors import DataError, UsageError
from vitjob.plot import plot_run, read_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_metrics(run_dir: Path, records: list[dict], extra_lines: tuple[str, ...] = ()) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "metrics.jsonl"
    with open(path, "w") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
        for line in extra_lines:
            fh.write(line + "\n")
    return path


def training_records(epochs: int = 3, steps_per_epoch: int = 20, log_every: int = 4) -> list[dict]:
    """Records as ``vitjob train`` writes them (the slow test below checks their keys against a real
    run's): periodic training lines, a validation accuracy per epoch, the test accuracy at the end."""
    records, t = [], 1_700_000_000.0
    total = epochs * steps_per_epoch
    for step in range(1, total + 1):
        epoch = (step - 1) // steps_per_epoch + 1
        if step % log_every == 0 or step % steps_per_epoch == 0:
            lr = 1e-3 * min(1.0, step / steps_per_epoch) * (1 - step / (total + 1))
            records.append(
                {
                    "step": step,
                    "epoch": epoch,
                    "loss": 2.3 * 0.97**step,
                    "lr": lr,
                    "img_s": 120.0,
                    "data_wait_ms": 0.5,
                    "time": t + step,
                }
            )
        if step % steps_per_epoch == 0:
            records.append(
                {"step": step, "epoch": epoch, "val_accuracy": 0.5 + 0.1 * epoch, "time": t + step + 0.5}
            )
    records.append({"step": total, "test_accuracy": 0.5 + 0.1 * epochs, "time": t + total + 1})
    return records


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_run_writes_a_readable_png(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_metrics(run, training_records())
    (run / "state.json").write_text(json.dumps({"preset": "vit-tiny"}))
    out = plot_run(run, tmp_path / "out" / "curves.png")
    assert out == tmp_path / "out" / "curves.png"
    width, height = png_size(out)
    assert 600 <= width <= 2000 and 600 <= height <= 2000
    assert out.stat().st_size > 20_000  # three panels of lines and text, not an empty canvas
    assert not list(out.parent.glob(".*.tmp"))


def test_default_output_is_curves_png_in_the_run_dir(tmp_path: Path) -> None:
    write_metrics(tmp_path, training_records(epochs=1))
    assert plot_run(tmp_path) == tmp_path / "curves.png"
    png_size(tmp_path / "curves.png")


def test_read_metrics_dedupes_resumed_steps_and_skips_a_torn_line(tmp_path: Path) -> None:
    records = training_records(epochs=2, steps_per_epoch=8, log_every=4)
    # A resumed run logs steps after its checkpoint again: the later record wins.
    resumed = [{"step": 12, "epoch": 2, "loss": 0.123, "lr": 1e-4, "img_s": 1.0, "time": 0.0}]
    write_metrics(tmp_path, records + resumed, extra_lines=('{"step": 17, "ep',))
    m = read_metrics(tmp_path)
    assert m.steps == sorted(set(m.steps)) == [4, 8, 12, 16]
    assert m.loss[m.steps.index(12)] == 0.123
    assert m.eval_steps == [8, 16]
    assert m.eval_accuracy == [pytest.approx(0.6), pytest.approx(0.7)]


def test_training_records_only_still_plot(tmp_path: Path) -> None:
    write_metrics(tmp_path, [r for r in training_records() if "loss" in r])
    png_size(plot_run(tmp_path, tmp_path / "c.png"))


def test_eval_records_only_still_plot(tmp_path: Path) -> None:
    write_metrics(tmp_path, [r for r in training_records() if "val_accuracy" in r])
    png_size(plot_run(tmp_path, tmp_path / "c.png"))


def test_an_older_run_s_eval_accuracy_is_its_validation_curve(tmp_path: Path) -> None:
    """Runs before the validation split wrote ``eval_accuracy`` (on the test split) instead."""
    records = [
        {k if k != "val_accuracy" else "eval_accuracy": v for k, v in r.items()}
        for r in training_records(epochs=2, steps_per_epoch=8)
        if "test_accuracy" not in r
    ]
    write_metrics(tmp_path, records)
    m = read_metrics(tmp_path)
    assert m.eval_steps == [8, 16] and m.eval_accuracy == [pytest.approx(0.6), pytest.approx(0.7)]


def test_missing_run_dir(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        plot_run(tmp_path / "nope")


def test_missing_metrics_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"metrics\.jsonl not found"):
        plot_run(tmp_path)


@pytest.mark.parametrize("content", ["", "\n\n", 'not json\n{"also": "no step"}\n'])
def test_empty_or_unreadable_metrics(tmp_path: Path, content: str) -> None:
    (tmp_path / "metrics.jsonl").write_text(content)
    with pytest.raises(DataError, match="nothing to plot"):
        plot_run(tmp_path)
    assert not (tmp_path / "curves.png").exists()


def test_cli_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_metrics(tmp_path / "run", training_records())
    assert main(["plot", str(tmp_path / "run"), "-o", str(tmp_path / "x.png")]) == 0
    assert f"wrote {tmp_path / 'x.png'}" in capsys.readouterr().out
    png_size(tmp_path / "x.png")


def test_cli_plot_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", str(tmp_path)]) == DataError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("vitjob plot: error:") and "metrics.jsonl not found" in err
    assert "Traceback" not in err


def _keys(records: list[dict]) -> set[tuple[str, ...]]:
    return {tuple(sorted(r)) for r in records}


@pytest.mark.slow
def test_plot_a_real_training_run(tmp_path: Path, straight_run: Path) -> None:
    """The curves of an actual ``vitjob train`` run (conftest's 2-epoch run, every step logged), whose
    records have the keys that ``training_records`` gives the tests above."""
    real = [json.loads(line) for line in (straight_run / "metrics.jsonl").read_text().splitlines()]
    assert _keys(real) == _keys(training_records())
    m = read_metrics(straight_run)
    assert m.steps == [r["step"] for r in real if "loss" in r] == list(range(1, 43))
    vals = [r for r in real if "val_accuracy" in r]
    assert m.eval_steps == [r["step"] for r in vals] == [21, 42]  # one validation per epoch
    assert m.eval_accuracy == [r["val_accuracy"] for r in vals]
    width, height = png_size(plot_run(straight_run, tmp_path / "curves.png"))
    assert 600 <= width <= 2000 and 600 <= height <= 2000
