"""Smoke tests of the benchmark suite's helpers (the table, the machine line, output parsing, the plan).

The heavy benchmarks themselves (training, the matmul peak) are not run here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import suite  # noqa: E402
from bench.bench_train import train_command  # noqa: E402
from bench.common import (  # noqa: E402
    Row,
    format_table,
    format_value,
    last_json_line,
    machine_info,
    machine_line,
    write_results,
)


def sample_rows() -> list[Row]:
    return [
        Row(
            "train",
            "training throughput",
            "vit-tiny 32×32, batch 32/process, GRAPH, 1 process",
            95.2,
            "img/s",
            detail="336 ms/step",
            metrics={"img_s": 95.2},
        ),
        Row(
            "train", "scaling 1 → 2 processes", "vit-tiny, GRAPH", 41.0, "%", note="2 processes share 2 cores"
        ),
        Row(
            "jobs",
            "rank-table generation",
            "128 pods × 8 Ascend cards",
            None,
            "",
            note="bench/bench_ranktable.py not found: skipped",
        ),
    ]


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (None, "img/s", "—"),
        (float("nan"), "", "—"),
        (1234.56, "img/s", "1,235 img/s"),
        (6.0, "requests", "6 requests"),
        (42.26, "%", "42.3 %"),
        (3.14159, "", "3.14"),
        (0.045411, "GFLOP", "0.0454 GFLOP"),
        (0.0, "", "0"),
    ],
)
def test_format_value(value: float | None, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def test_format_table_groups_sections_and_aligns() -> None:
    machine = {
        "cpu_model": "Test CPU",
        "cores": 2,
        "memory_gib": 4.0,
        "mindspore": "2.10.0",
        "python": "3.11",
    }
    text = format_table(sample_rows(), machine)
    lines = text.splitlines()
    assert lines[0].startswith("machine: Test CPU, 2 cores, 4.0 GiB, MindSpore 2.10.0")
    assert lines[1].split() == ["benchmark", "configuration", "result", "detail"]
    assert "[train]" in lines and "[jobs]" in lines and lines.index("[train]") < lines.index("[jobs]")
    row = next(line for line in lines if line.startswith("training throughput"))
    assert "95.2 img/s" in row and "336 ms/step" in row
    # Results are right-aligned in one column.
    ends = {
        line.index(v) + len(v) for line, v in ((row, "95.2 img/s"), (lines[lines.index("[jobs]") + 1], "—"))
    }
    assert len(ends) == 1
    assert "not found: skipped" in text


def test_format_table_markdown() -> None:
    md = format_table(sample_rows(), markdown=True)
    lines = md.splitlines()
    assert lines[0] == "| benchmark | configuration | result | detail |"
    assert lines[1] == "|---|---|---:|---|"
    assert len(lines) == 2 + len(sample_rows())
    assert lines[2].startswith("| train: training throughput |")


def test_machine_info_describes_this_machine() -> None:
    info = machine_info()
    for key in (
        "cpu_model",
        "cores",
        "usable_cores",
        "memory_gib",
        "gpus",
        "mindspore",
        "python",
        "platform",
    ):
        assert key in info
    assert info["cores"] >= 1 and info["memory_gib"] > 0
    assert info["mindspore"]  # installed in the venv
    line = machine_line(info)
    assert f"{info['cores']} cores" in line and "MindSpore" in line and info["cpu_model"] in line


def test_write_results_round_trips(tmp_path: Path) -> None:
    path = write_results(
        tmp_path / "r" / "latest.json", {"cpu_model": "X", "cores": 1}, sample_rows(), {"quick": True}
    )
    doc = json.loads(path.read_text())
    assert doc["machine"]["cpu_model"] == "X" and doc["options"] == {"quick": True}
    assert doc["results"][0]["value"] == 95.2 and doc["results"][2]["value"] is None
    assert "training throughput" in doc["table"] and doc["machine_line"].startswith("X, 1 cores")


def test_last_json_line() -> None:
    assert last_json_line('noise\n{"a": 1}\n{"b": 2}\ntrailing words\n') == {"b": 2}
    assert last_json_line("no json here\n{broken\n") is None


def test_parse_key_values_of_the_controller_output() -> None:
    out = (
        "vitjob controller against the fake API server (10 pipelines of 4 stages; 100 tracked)\n\n"
        "throughput\n"
        "  create jobs/pipeline       3.00\n  requests/pipeline          7.00\n"
        "  readyz                     ready: leader; 100 pipelines tracked\n"
    )
    pairs = suite.parse_key_values(out)
    assert pairs["requests/pipeline"] == "7.00" and pairs["create jobs/pipeline"] == "3.00"
    assert pairs["readyz"].startswith("ready: leader")


def test_parse_kube_api_table() -> None:
    out = (
        "          pods |         submit | status Pending |       lines ok\n"
        "             1 |              6 |              5 |            yes\n"
        "             8 |              6 |              5 |             NO\n"
    )
    rows = suite._parse_kube_api(out)
    assert [r["pods"] for r in rows] == [1, 8]
    assert rows[0]["submit"] == 6 and rows[0]["lines ok"] == 1.0 and rows[1]["lines ok"] == 0.0
    assert suite._parse_kube_api("garbage") == []


def test_missing_script_is_a_note_not_a_crash() -> None:
    (row,) = suite.script_rows("bench_does_not_exist.py", "thing", "cfg", [], 10)
    assert row.value is None and "not found: skipped" in row.note


def test_parse_labelled_values_of_the_rank_table_output() -> None:
    out = (
        "rank table build (128 pods x 8 cards = 1024 ranks): 10.1 ms\n"
        "rank table gather through the rendezvous (128 client threads): 1,590.6 ms\n"
        "readyz: ready: leader\n"
    )
    assert suite.parse_labelled_values(out) == [
        ("rank table build (128 pods x 8 cards = 1024 ranks)", 10.1, "ms"),
        ("rank table gather through the rendezvous (128 client threads)", 1590.6, "ms"),
    ]


def test_train_plan_covers_the_matrix() -> None:
    full = suite.train_plan("cpu", quick=False, n_gpus=0)
    for preset in ("vit-tiny", "vit-b16"):
        cases = [c for c in full if c.preset == preset]
        assert {c.mode for c in cases} == {"graph", "pynative"} and {c.procs for c in cases} == {1, 2}
        assert all(c.steps >= 2 for c in cases)
    quick = suite.train_plan("cpu", quick=True, n_gpus=0)
    assert quick and all(c.preset == "vit-tiny" for c in quick)
    # One GPU: no 2-process runs (each process needs its own device); the seed's batch for vit-b16.
    gpu = suite.train_plan("gpu", quick=False, n_gpus=1)
    assert {c.procs for c in gpu} == {1} and {c.batch for c in gpu if c.preset == "vit-b16"} == {32}
    assert {c.procs for c in suite.train_plan("gpu", quick=False, n_gpus=2)} == {1, 2}


def test_train_command_uses_launch_for_two_processes(tmp_path: Path) -> None:
    one = train_command("vit-tiny", 32, 10, "graph", 1, "cpu", tmp_path, tmp_path / "o", tmp_path / "s.json")
    assert one[1:3] == ["train", "--preset"] and "--max-steps" in one and "--summary-json" in one
    two = train_command(
        "vit-tiny", 32, 10, "pynative", 2, "cpu", tmp_path, tmp_path / "o", tmp_path / "s.json"
    )
    assert two[1] == "launch" and two[two.index("--cards-per-pod") + 1] == "2"
    inner = two[two.index("--") + 1 :]
    assert inner[1] == "train" and inner[inner.index("--mode") + 1] == "pynative"


def test_python_m_bench_reference_section(tmp_path: Path) -> None:
    """The suite end to end on its cheapest section: prints the table and saves the JSON."""
    out = tmp_path / "latest.json"
    md = tmp_path / "table.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "reference", "--output", str(out), "--markdown", str(md)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("machine: ") and "seed README (published, not measured)" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["machine"]["cores"] >= 1 and doc["options"]["sections"] == ["reference"]
    v100 = next(r for r in doc["results"] if "V100, 1 GPU" in r["config"])
    assert v100["value"] == pytest.approx(32 * 1000 / 467)
    assert md.read_text().startswith("machine: ")


def test_unknown_section_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "unknown section" in proc.stderr
