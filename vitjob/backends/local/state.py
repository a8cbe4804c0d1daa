"""A local job's state file (``<local-root>/jobs/<job>/state.json``): its name, the cancel and suspend
markers, and reading it as a ``JobStatus``. Written by the runner, read by every command from any shell.
A job ``vitjob suspend`` stopped is Aborted with ``suspended`` set (``vitjob resume`` runs it again)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from vitjob.api.status import JobPhase, JobStatus, PodStatus
from vitjob.backends.local.network import process_alive

STATE_FILE = "state.json"
CANCEL_FILE = "cancel"
SUSPEND_FILE = "suspend"


# The file of a local pod that stands for its container's terminationMessagePath (vitjob.outputs).
TERMINATION_LOG = "termination-log"


def termination_log(job_dir: Path, pod: str) -> Path:
    """Where the local pod ``pod`` of the job in ``job_dir`` writes its termination message."""
    return job_dir / "pods" / pod / TERMINATION_LOG


def write_state(job_dir: Path, state: dict[str, Any]) -> None:
    """Replace ``job_dir``'s state file atomically (readers never see half a file)."""
    path = job_dir / STATE_FILE
    tmp = path.with_name(".state.json.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def status_from_state(state: dict[str, Any]) -> JobStatus:
    """The job status a state file records (a running job whose runner process is gone: Failed)."""
    phase = JobPhase(state["phase"])
    reasons = list(state.get("reasons", []))
    pid = state.get("runner_pid")
    if not phase.is_terminal and pid and not process_alive(pid):
        phase = JobPhase.FAILED
        reasons.append(f"the local runner (pid {pid}) is gone: the submitting process was killed")
    return JobStatus(
        name=state["name"],
        namespace=state.get("namespace", ""),
        phase=phase,
        retry_count=state.get("retry_count", 0),
        stage=state.get("stage", ""),
        hw=state.get("hw", ""),
        cards=state.get("cards", 0),
        age_s=time.time() - state.get("created", time.time()),
        pods=[PodStatus(**p) for p in state.get("pods", [])],
        reasons=reasons,
    )
