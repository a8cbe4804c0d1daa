"""Shared helpers of the benchmark suite: the machine description, result rows, the table, JSON output.

Nothing here imports MindSpore: the machine description reads ``/proc``, ``os`` and package metadata,
so the table of a run can be formatted (and tested) without the heavy benchmarks.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
MINDSPORE_DISTS = ("mindspore", "mindspore-gpu", "mindspore-ascend", "mindspore-dev")


@dataclass
class Row:
    """One line of the table. ``value`` is None when the benchmark was skipped or failed (see ``note``)."""

    section: str
    name: str
    config: str
    value: float | None
    unit: str
    detail: str = ""
    note: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def mindspore_version() -> str | None:
    """The installed MindSpore distribution and version (without importing it), or None."""
    for dist in MINDSPORE_DISTS:
        try:
            return f"{metadata.version(dist)}" + ("" if dist == "mindspore" else f" ({dist})")
        except metadata.PackageNotFoundError:
            continue
    return None


def gpus() -> list[str]:
    """Names and memory of the NVIDIA GPUs ``nvidia-smi`` lists (empty without one)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def machine_info() -> dict[str, Any]:
    """What the numbers came from: CPU model, cores, memory, GPUs, MindSpore, Python, load average."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    mem = _memory_gib()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count() or 1,
        "usable_cores": usable,
        "memory_gib": round(mem, 1) if mem is not None else None,
        "gpus": gpus(),
        "mindspore": mindspore_version(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1_5_15": load,
    }


def machine_line(info: dict[str, Any]) -> str:
    """One line for a README: ``Intel Xeon …, 2 cores, 23.4 GiB, MindSpore 2.10.0 …``."""
    parts = [info.get("cpu_model") or "unknown CPU", f"{info.get('cores')} cores"]
    if info.get("usable_cores") and info["usable_cores"] != info.get("cores"):
        parts[-1] += f" ({info['usable_cores']} usable)"
    if info.get("memory_gib") is not None:
        parts.append(f"{info['memory_gib']:.1f} GiB")
    parts.extend(info.get("gpus") or [])
    parts.append(f"MindSpore {info.get('mindspore') or 'not installed'}")
    parts.append(f"Python {info.get('python')}")
    if info.get("loadavg_1_5_15"):
        parts.append(f"load average {info['loadavg_1_5_15'][0]:.1f} at start")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------- table


def format_value(value: float | None, unit: str = "") -> str:
    """A number with sensible precision: 3 significant digits below 100, integers above."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    magnitude = abs(value)
    if magnitude >= 100 or value == int(value):
        text = f"{value:,.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def format_table(rows: list[Row], machine: dict[str, Any] | None = None, markdown: bool = False) -> str:
    """The rows as one aligned text table (or a Markdown table), grouped by section."""
    header = ("benchmark", "configuration", "result", "detail")
    cells: list[tuple[str, ...]] = []
    sections: list[int] = []  # indexes of rows that start a new section
    current = None
    for row in rows:
        if row.section != current:
            sections.append(len(cells))
            current = row.section
        detail = "; ".join(x for x in (row.detail, row.note) if x)
        cells.append(
            (
                f"{row.section}: {row.name}" if markdown else row.name,
                row.config,
                format_value(row.value, row.unit),
                detail,
            )
        )
    lines: list[str] = []
    if machine is not None:
        lines.append(f"machine: {machine_line(machine)}")
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---", "---", "---:", "---"]) + "|")
        for cell in cells:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cell) + " |")
        return "\n".join(lines) + "\n"
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header[:3])]
    fmt = f"{{:<{widths[0]}}}  {{:<{widths[1]}}}  {{:>{widths[2]}}}  {{}}"
    lines.append(fmt.format(*header).rstrip())
    lines.append("-" * (sum(widths) + 6 + len(header[3])))
    section_names = iter(dict.fromkeys(r.section for r in rows))
    for index, cell in enumerate(cells):
        if index in sections:
            lines.append(f"[{next(section_names)}]")
        lines.append(fmt.format(*cell).rstrip())
    return "\n".join(lines) + "\n"


def write_results(path: Path, machine: dict[str, Any], rows: list[Row], options: dict[str, Any]) -> Path:
    """Save the run as JSON (atomically): machine, options, rows, and the printed table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": machine,
        "machine_line": machine_line(machine),
        "options": options,
        "results": [asdict(r) for r in rows],
        "table": format_table(rows),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------- subprocesses


def tool_env() -> dict[str, str]:
    """Environment for child benchmarks: this interpreter's ``bin`` first on PATH (``vitjob``, ``python``)."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def last_json_line(text: str) -> dict[str, Any] | None:
    """The last line of ``text`` that parses as a JSON object (how the bench scripts report)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def request_line(method: str, path: str, query: str) -> str:
    """``METHOD /path``: how ``counting_requests`` names a request by default."""
    return f"{method} {path}"


@contextmanager
def counting_requests(key: Callable[[str, str, str], str] = request_line) -> Iterator[Counter]:
    """Count every HTTP request this process sends through urllib3 (the kubernetes client's transport)
    while inside the block, by ``key(method, path, query)``."""
    import urllib3

    seen: Counter = Counter()
    original = urllib3.connectionpool.HTTPConnectionPool.urlopen

    def count(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        path, _, query = url.partition("?")
        seen[key(method, path, query)] += 1
        return original(self, method, url, *args, **kwargs)

    urllib3.connectionpool.HTTPConnectionPool.urlopen = count
    try:
        yield seen
    finally:
        urllib3.connectionpool.HTTPConnectionPool.urlopen = original
