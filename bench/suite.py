"""The benchmark suite behind ``python -m bench``: runs every benchmark, prints one table, saves JSON.

Sections (``--only`` picks some):

- ``model``: forward FLOPs per image of each preset (``vitjob.vit.model.flops_per_image``);
- ``peak``: the measured matrix-multiply peak (``bench_matmul.py``), the denominator of MFU;
- ``train``: training img/s of ``vit-tiny`` (32×32) and ``vit-b16`` (224×224), GRAPH vs PYNATIVE,
  1 and 2 data-parallel processes (``bench_train.py``), with achieved FLOP/s (3 × forward FLOPs per
  image: forward + backward), MFU, and the 1 → 2 process scaling efficiency;
- ``pipeline``: input-pipeline img/s with 1 worker and one per core (``bench_pipeline.py``) next to
  the training step's consumption rate — flagged when the pipeline is the bottleneck;
- ``jobs``: render + validate ms/job (``bench_render.py``), rank-table generation for 128 × 8 cards
  (``bench_ranktable.py``), API requests per job (``bench_kube_api.py``) and per pipeline
  (``bench_controller.py``); a missing script is skipped with a note;
- ``reference``: the seed's published figures (not measured here), for comparison.

Every benchmark runs in a child process: a failure becomes a row with a note, never a lost table,
and MindSpore's process-wide state (mode, device) never leaks from one measurement to the next.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    RESULTS_DIR,
    Row,
    format_table,
    format_value,
    gpus,
    last_json_line,
    machine_info,
    machine_line,
    tool_env,
    write_results,
)

BENCH = REPO / "bench"
SECTIONS = ("model", "peak", "train", "pipeline", "jobs", "reference")
# The seed's README (ModelZoo vit_base, CIFAR-10, batch 32 per device, 60 epochs): published, not measured.
SEED_FIGURES = (
    ("Ascend 910, 1 card", 157.0, 1, "98.99 % (2 cards)"),
    ("Ascend 910, 8 cards", 174.0, 8, ""),
    ("V100, 1 GPU", 467.0, 1, "98.84 %"),
    ("V100, 8 GPUs", 469.0, 8, "98.83 %"),
)
SEED_BATCH = 32


@dataclass(frozen=True)
class TrainCase:
    preset: str
    batch: int
    steps: int
    mode: str
    procs: int


def train_plan(device: str, quick: bool, n_gpus: int) -> list[TrainCase]:
    """Which training runs to time; sized to keep ``python -m bench`` near 10 minutes on 2 CPU cores."""
    if device == "cpu":
        if quick:
            return [
                TrainCase("vit-tiny", 16, 3, "graph", 1),
                TrainCase("vit-tiny", 16, 3, "pynative", 1),
                TrainCase("vit-tiny", 16, 3, "graph", 2),
            ]
        tiny = [
            TrainCase("vit-tiny", 32, 10, mode, procs) for procs in (1, 2) for mode in ("graph", "pynative")
        ]
        b16 = [
            TrainCase("vit-b16", 4, 3, "graph", 1),
            TrainCase("vit-b16", 4, 3, "pynative", 1),
            TrainCase("vit-b16", 4, 3, "graph", 2),
        ]
        return tiny + b16
    # GPU/Ascend: the seed's batch of 32 for vit-b16; 2 processes only with 2 devices.
    steps_tiny, steps_b16 = (5, 4) if quick else (30, 12)
    procs = (1, 2) if n_gpus >= 2 or device == "ascend" else (1,)
    cases = [TrainCase("vit-tiny", 64, steps_tiny, mode, p) for p in procs for mode in ("graph", "pynative")]
    cases += [TrainCase("vit-b16", 32, steps_b16, mode, p) for p in procs for mode in ("graph", "pynative")]
    return cases


# ------------------------------------------------------------------------------------------ children


def run_script(script: str, args: list[str], timeout_s: float) -> tuple[str, str | None]:
    """Run ``bench/SCRIPT args``; return (stdout, error) where error is None on success."""
    path = BENCH / script
    if not path.is_file():
        return "", f"bench/{script} not found: skipped"
    cmd = [sys.executable, str(path), *args]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=tool_env(), cwd=REPO, check=False
        )
    except subprocess.TimeoutExpired:
        return "", f"bench/{script} timed out after {timeout_s:.0f} s"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return proc.stdout, f"bench/{script} failed (exit {proc.returncode}): {tail[0][:200]}"
    return proc.stdout, None


def run_json_script(
    script: str, args: list[str], timeout_s: float
) -> tuple[dict[str, Any] | None, str | None]:
    out, err = run_script(script, args, timeout_s)
    if err:
        return None, err
    result = last_json_line(out)
    return (result, None) if result is not None else (None, f"bench/{script} printed no JSON result")


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ sections


def flops_rows() -> tuple[list[Row], dict[str, int]]:
    from vitjob.vit.config import PRESETS
    from vitjob.vit.model import flops_per_image

    rows, flops = [], {}
    for name, preset in PRESETS.items():
        cfg = preset.model
        flops[name] = flops_per_image(cfg)
        rows.append(
            Row(
                "model",
                "FLOPs per image (forward)",
                f"{name} {cfg.image_size}×{cfg.image_size}, patch {cfg.patch_size}, "
                f"{cfg.num_layers} layers × {cfg.hidden_size}",
                flops[name] / 1e9,
                "GFLOP",
                detail=f"training ≈ 3× forward = {3 * flops[name] / 1e9:.3g} GFLOP/image",
                metrics={"forward_flops": flops[name]},
            )
        )
    return rows, flops


def peak_rows(device: str, quick: bool) -> tuple[list[Row], dict[str, float]]:
    dtypes = ["float32"] if device == "cpu" else ["float32", "float16"]
    sizes = "1024" if quick else "1024,2048" if device == "cpu" else "4096,8192"
    rows, peaks = [], {}
    for dtype in dtypes:
        progress(f"matmul peak, {device} {dtype}")
        result, err = run_json_script(
            "bench_matmul.py",
            ["--device", device, "--dtype", dtype, "--sizes", sizes, "--seconds", "1" if quick else "3"],
            300,
        )
        if result is None:
            rows.append(
                Row("peak", "matmul peak (MindSpore)", f"{device} {dtype}", None, "GFLOP/s", note=err or "")
            )
            continue
        peaks[dtype] = float(result["best_gflops"])
        per = ", ".join(f"{n}: {g:.0f}" for n, g in result["per_size"].items())
        rows.append(
            Row(
                "peak",
                "matmul peak (MindSpore)",
                f"{device} {dtype}, n×n, best of n",
                peaks[dtype],
                "GFLOP/s",
                detail=f"GFLOP/s by n — {per}",
                metrics=result,
            )
        )
    return rows, peaks


def _case_label(case: TrainCase, image_size: int) -> str:
    procs = "1 process" if case.procs == 1 else f"{case.procs} processes"
    return (
        f"{case.preset} {image_size}×{image_size}, batch {case.batch}/process, {case.mode.upper()}, {procs}"
    )


def train_rows(
    device: str, quick: bool, flops: dict[str, int], peaks: dict[str, float], data: Path
) -> tuple[list[Row], dict[TrainCase, dict[str, Any]]]:
    from vitjob.vit.config import PRESETS

    amp_dtype = "float32" if device == "cpu" else "float16"  # amp auto: O0 on CPU, O2 elsewhere
    peak = peaks.get(amp_dtype)
    rows: list[Row] = []
    results: dict[TrainCase, dict[str, Any]] = {}
    for case in train_plan(device, quick, len(gpus())):
        size = PRESETS[case.preset].model.image_size
        label = _case_label(case, size)
        progress(f"training: {label}, {case.steps} steps")
        args = [
            "--preset",
            case.preset,
            "--batch",
            str(case.batch),
            "--steps",
            str(case.steps),
            "--mode",
            case.mode,
            "--procs",
            str(case.procs),
            "--device",
            device,
            "--data",
            str(data),
        ]
        result, err = run_json_script("bench_train.py", args, 1200)
        if result is None:
            rows.append(Row("train", "training throughput", label, None, "img/s", note=err or ""))
            continue
        results[case] = result
        achieved = 3 * flops[case.preset] * result["img_s"] / 1e9 if result.get("img_s") else None
        # The CPU peak is the whole machine's (all cores), shared by the processes; accelerators add up.
        peak_total = peak * (1 if device == "cpu" else case.procs) if peak else None
        detail = [f"{result['step_ms_median']:.0f} ms/step (median of {result['steps'] - 1})"]
        if achieved is not None:
            detail.append(f"{format_value(achieved, 'GFLOP/s')}")
            if peak_total:
                detail.append(f"MFU {100 * achieved / peak_total:.1f} %")
        detail.append(f"wall {result['wall_s']:.0f} s incl. start-up and compilation")
        result = {
            **result,
            "achieved_gflops": achieved,
            "peak_gflops": peak_total,
            "mfu": achieved / peak_total if achieved and peak_total else None,
        }
        results[case] = result
        rows.append(
            Row(
                "train",
                "training throughput",
                label,
                result["img_s"],
                "img/s",
                detail=", ".join(detail),
                metrics=result,
            )
        )
    # Scaling efficiency: the 2-process run against twice the 1-process run.
    for case, result in results.items():
        if case.procs == 1:
            continue
        base = results.get(TrainCase(case.preset, case.batch, case.steps, case.mode, 1))
        if not base or not base.get("img_s") or not result.get("img_s"):
            continue
        eff = result["img_s"] / (case.procs * base["img_s"])
        note = ""
        cores = os.cpu_count() or 1
        if device == "cpu":
            note = (
                f"the {case.procs} processes share {cores} cores (each MindSpore process uses every core): "
                "over 50 % is a speed-up, 100 % needs a device per process"
            )
        rows.append(
            Row(
                "train",
                f"scaling 1 → {case.procs} processes",
                f"{case.preset}, {case.mode.upper()}",
                100 * eff,
                "%",
                detail=f"{result['img_s']:.3g} vs {case.procs} × {base['img_s']:.3g} img/s",
                note=note,
                metrics={"efficiency": eff},
            )
        )
    return rows, results


def pipeline_rows(quick: bool, trained: dict[TrainCase, dict[str, Any]], device: str) -> list[Row]:
    from vitjob.vit.config import PRESETS
    from vitjob.vit.data import default_workers

    per_core = default_workers()
    rows: list[Row] = []
    for preset in ("vit-b16", "vit-tiny"):
        size = PRESETS[preset].model.image_size
        runs = [(c, r) for c, r in trained.items() if c.preset == preset and c.procs == 1 and r.get("img_s")]
        fastest = max(runs, key=lambda cr: cr[1]["img_s"]) if runs else None
        batch = fastest[0].batch if fastest else (4 if preset == "vit-b16" else 32)
        images = (256 if quick else 768) if size > 32 else (1024 if quick else 4096)
        for workers in dict.fromkeys((1, per_core)):
            progress(f"data pipeline {size}×{size}, {workers} worker(s)")
            result, err = run_json_script(
                "bench_pipeline.py",
                [
                    "--image-size",
                    str(size),
                    "--batch",
                    str(batch),
                    "--workers",
                    str(workers),
                    "--images",
                    str(images),
                ],
                600,
            )
            config = f"{size}×{size} ({preset}), batch {batch}, {workers} worker" + (
                "s" if workers > 1 else ""
            )
            if workers == per_core:
                config += " (one per core: training's default)"
            if result is None:
                rows.append(Row("pipeline", "input pipeline", config, None, "img/s", note=err or ""))
                continue
            detail, note = f"no {preset} training measured: nothing to compare with", ""
            if fastest is not None:
                need = fastest[1]["img_s"]
                c = fastest[0]
                detail = f"training consumes {need:.3g} img/s ({c.mode.upper()}, 1 process, {device})"
                ratio = result["img_s"] / need
                if ratio < 1:
                    note = (
                        f"BOTTLENECK: the pipeline feeds only {100 * ratio:.0f} % of what training consumes"
                    )
                else:
                    note = f"not the bottleneck ({format_value(ratio)}× headroom)"
            rows.append(
                Row(
                    "pipeline",
                    "input pipeline",
                    config,
                    result["img_s"],
                    "img/s",
                    detail=detail,
                    note=note,
                    metrics=result,
                )
            )
    return rows


_RENDER = re.compile(r"render \+ validate: ([\d.]+) ms per job \((.*)\)")


def jobs_rows(quick: bool) -> list[Row]:
    rows: list[Row] = []
    progress("render + validate")
    jobs = 20 if quick else 200
    out, err = run_script("bench_render.py", ["--jobs", str(jobs)], 600)
    match = _RENDER.search(out)
    if err or not match:
        rows.append(
            Row(
                "jobs",
                "render + validate",
                "Volcano Job, 64 Ascend cards",
                None,
                "ms/job",
                note=err or "unexpected output of bench/bench_render.py",
            )
        )
    else:
        rows.append(
            Row(
                "jobs",
                "render + validate",
                "Volcano Job, 64 Ascend cards (8 pods)",
                float(match.group(1)),
                "ms/job",
                detail=match.group(2),
                metrics={"ms_per_job": float(match.group(1)), "jobs": jobs},
            )
        )

    progress("rank table 128 × 8")
    rows.extend(
        script_rows("bench_ranktable.py", "rank-table generation", "128 pods × 8 Ascend cards", [], 600)
    )

    progress("Kubernetes API requests per job")
    out, err = run_script("bench_kube_api.py", ["--window", "1" if quick else "3"], 600)
    parsed = _parse_kube_api(out) if not err else []
    if not parsed:
        rows.append(
            Row(
                "jobs",
                "API requests per job",
                "kubernetes backend, fake API server",
                None,
                "requests",
                note=err or "unexpected output of bench/bench_kube_api.py",
            )
        )
    for record in parsed:
        pods = int(record["pods"])
        detail = (
            f"status {record['status Pending']:.0f}/{record['status Running']:.0f}/"
            f"{record['status Failed']:.0f} (Pending/Running/Failed), logs -f start "
            f"{record['follow start']:.0f}, {record['follow /min']:.0f}/min while streaming, "
            f"end {record['follow end']:.0f}"
        )
        rows.append(
            Row(
                "jobs",
                "API requests per job: submit",
                f"{pods} pod" + ("s" if pods > 1 else ""),
                record["submit"],
                "requests",
                detail=detail,
                metrics=record,
            )
        )

    progress("controller: API requests per pipeline")
    ctl_args = ["--pipelines", "20", "--tracked", "200"] if quick else []
    rows.extend(
        script_rows(
            "bench_controller.py",
            "API requests per pipeline",
            "controller: train → eval → export → infer310",
            ctl_args,
            600,
            value_keys=("requests/pipeline",),
        )
    )
    return rows


def _parse_kube_api(out: str) -> list[dict[str, float]]:
    lines = [line for line in out.splitlines() if "|" in line]
    if len(lines) < 2:
        return []
    header = [c.strip() for c in lines[0].split("|")]
    records = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.split("|")]
        if len(cells) != len(header):
            continue
        record: dict[str, float] = {}
        for key, cell in zip(header, cells, strict=True):
            try:
                record[key] = float(cell)
            except ValueError:
                record[key] = 1.0 if cell == "yes" else 0.0
        records.append(record)
    return records if all("submit" in r and "pods" in r for r in records) else []


def parse_key_values(out: str) -> dict[str, str]:
    """``  key  value`` lines (two or more spaces between) as the controller benchmark prints them."""
    pairs: dict[str, str] = {}
    for line in out.splitlines():
        match = re.match(r"^\s+(\S.*?)\s{2,}(\S.*)$", line)
        if match:
            pairs[match.group(1)] = match.group(2).strip()
    return pairs


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


_LABELLED = re.compile(r"^\s*(?P<label>[^:]+?):\s+(?P<value>\d[\d,]*(?:\.\d+)?)\s*(?P<unit>[A-Za-z/%]+)\s*$")


def parse_labelled_values(out: str) -> list[tuple[str, float, str]]:
    """``label: 10.1 ms`` lines, as the rank-table benchmark prints them."""
    found = []
    for line in out.splitlines():
        match = _LABELLED.match(line)
        if match:
            found.append((match["label"].strip(), float(match["value"].replace(",", "")), match["unit"]))
    return found


def script_rows(
    script: str, name: str, config: str, args: list[str], timeout_s: float, value_keys: tuple[str, ...] = ()
) -> list[Row]:
    """Rows of a bench script this suite only knows by its output's shape.

    A JSON line; ``label (config): 10.1 ms`` lines (one row each, named by the label); or ``  key  value``
    lines (one row, whose value is the first of ``value_keys`` found, else the first numeric key
    mentioning ms or requests). Other output is quoted. A missing or failing script: one row, a note.
    """
    out, err = run_script(script, args, timeout_s)
    if err:
        return [Row("jobs", name, config, None, "", note=err)]
    labelled = parse_labelled_values(out) if last_json_line(out) is None else []
    if labelled:
        rows = []
        for label, value, unit in labelled:
            title, _, inner = label.partition(" (")
            rows.append(Row("jobs", title, inner.rstrip(")") or config, value, unit, metrics={label: value}))
        return rows
    found: dict[str, Any] = last_json_line(out) or parse_key_values(out)
    if not found:
        lines = [line.strip() for line in out.strip().splitlines() if line.strip()]
        detail = " / ".join(lines[-3:]) or "no output"
        return [Row("jobs", name, config, None, "", detail=detail, metrics={"output": out[-4000:]})]
    keys = [k for k in value_keys if k in found] or [
        k for k in found if ("ms" in k or "request" in k) and _number(found[k]) is not None
    ]
    key = keys[0] if keys else None
    value = _number(found[key]) if key else None
    detail = ", ".join(f"{k} {v}" for k, v in found.items() if k != key and len(str(v)) < 60)
    return [Row("jobs", name, config, value, key or "", detail=detail, metrics=found)]


def reference_rows(flops: dict[str, int]) -> list[Row]:
    rows = []
    fwd = flops.get("vit-b16")
    for where, ms_step, cards, acc in SEED_FIGURES:
        img_s = SEED_BATCH * cards * 1000.0 / ms_step
        detail = f"{ms_step:g} ms/step, batch {SEED_BATCH}/card"
        if fwd:
            detail += f", ≈ {3 * fwd * img_s / 1e12:.3g} TFLOP/s"
        if acc:
            detail += f", accuracy {acc}"
        rows.append(
            Row(
                "reference",
                "seed README (published, not measured)",
                f"vit-b16 224×224, {where}",
                img_s,
                "img/s",
                detail=detail,
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------- main


def run(device: str, quick: bool, only: tuple[str, ...], workdir: Path) -> list[Row]:
    rows: list[Row] = []
    flops: dict[str, int] = {}
    peaks: dict[str, float] = {}
    trained: dict[TrainCase, dict[str, Any]] = {}
    if {"model", "train", "reference"} & set(only):
        model_rows, flops = flops_rows()
        if "model" in only:
            rows += model_rows
    if "peak" in only or "train" in only:
        peak_r, peaks = peak_rows(device, quick)
        rows += peak_r
    if "train" in only:
        from vitjob.vit.data import write_digits

        data = workdir / "digits"
        write_digits(data)
        train_r, trained = train_rows(device, quick, flops, peaks, data)
        rows += train_r
    if "pipeline" in only:
        rows += pipeline_rows(quick, trained, device)
    if "jobs" in only:
        rows += jobs_rows(quick)
    if "reference" in only:
        rows += reference_rows(flops)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu", "ascend"),
        default="cpu",
        help="where training and the matmul peak run (default cpu)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: few steps, no vit-b16 training")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json", help="JSON results file")
    parser.add_argument("--markdown", type=Path, help="also write a Markdown table here")
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")

    machine = machine_info()
    progress(f"machine: {machine_line(machine)}")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="vitjob-bench-") as tmp:
        rows = run(args.device, args.quick, only, Path(tmp))
    with contextlib.suppress(OSError):
        machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    options = {
        "device": args.device,
        "quick": args.quick,
        "sections": list(only),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
    }
    path = write_results(args.output, machine, rows, options)
    print(format_table(rows, machine))
    print(f"({options['seconds']:.0f} s; saved to {path})")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(format_table(rows, machine, markdown=True))
    failed = [r for r in rows if r.value is None and (" failed " in r.note or "timed out" in r.note)]
    return 1 if failed else 0
