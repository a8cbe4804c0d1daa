"""What a job's pods leave behind for later, read from outside the cluster: the logs they kept on the
output volume (``vitjob.keptlogs``) and rank 0's last published checkpoint (``vitjob.launch.checkpoints``).

Only pods can mount a PersistentVolumeClaim, so ``read_kept_logs`` starts one short-lived reader pod
(``vitjob.render.manifests.render_log_reader``: the job's image, placement and security contexts, the
claim mounted read-only, no API token), waits for it to end, returns what it printed and deletes it —
also when the wait fails, so no reader is left behind. ``keeps_logs`` says whether a job was rendered
to keep them; ``last_checkpoint`` reads rank 0's ``vitjob.io/last-checkpoint`` annotation.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from vitjob import constants as c
from vitjob.errors import BackendError, JobNotFoundError, RenderError, UsageError
from vitjob.kube.client import Api
from vitjob.kube.errors import Op
from vitjob.kube.kinds import container_status, create_object, pod_rank
from vitjob.kube.logs import read_log
from vitjob.progress import parse_checkpoint_annotation
from vitjob.render.manifests import render_log_reader

log = logging.getLogger(__name__)

# Waiting reasons that will not pass by themselves: the reader's image cannot be had.
STUCK_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"})


def keeps_logs(job: dict[str, Any]) -> bool:
    """Whether Volcano Job ``job``'s pods keep their logs on the output volume (``VITJOB_LOG_DIR`` set)."""
    try:
        env = job["spec"]["tasks"][0]["template"]["spec"]["containers"][0].get("env") or []
    except (KeyError, IndexError, TypeError):
        return False
    return any(e.get("name") == c.ENV_LOG_DIR for e in env)


def last_checkpoint(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Rank 0's ``vitjob.io/last-checkpoint`` (step, epoch, time), None when it published none."""
    for pod in pods:
        if pod_rank(pod) == 0:
            annotations = pod["metadata"].get("annotations") or {}
            return parse_checkpoint_annotation(annotations.get(c.ANNOTATION_LAST_CHECKPOINT))
    return None


def read_kept_logs(
    api: Api,
    job: dict[str, Any],
    attempt: int,
    *,
    pod: str | None = None,
    timeout_s: float = 120.0,
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """The lines of attempt ``attempt`` that Volcano Job ``job``'s pods (or only ``pod``) kept."""
    if attempt < 1:
        raise UsageError(f"--attempt counts each pod's runs from 1; got {attempt}")
    try:
        reader = render_log_reader(job, attempt, pod, deadline_s=max(30, int(timeout_s)))
    except RenderError as exc:
        raise UsageError(str(exc)) from exc
    ns = reader["metadata"]["namespace"]
    created = create_object(api, reader)
    name = created["metadata"]["name"]
    log.debug("started %s/%s to read attempt %d of %s", ns, name, attempt, job["metadata"]["name"])
    try:
        done = _wait_for_end(api, ns, name, timeout_s, poll_s, clock)
        lines = [line for _, line in read_log(api, done, ns)]
    finally:
        with contextlib.suppress(Exception):
            api.call(Op("delete", "pods", "", ns, name), api.core.delete_namespaced_pod, name, ns,
                     grace_period_seconds=0)
    if done["status"].get("phase") != "Succeeded":
        why = next((ln.removeprefix("error: ") for ln in reversed(lines) if ln.startswith("error:")), "")
        raise JobNotFoundError(why or f"the log reader pod {name} failed: " + " | ".join(lines[-3:]))
    return lines


def _wait_for_end(
    api: Api, ns: str, name: str, timeout_s: float, poll_s: float, clock: Callable[[], float]
) -> dict[str, Any]:
    deadline = clock() + timeout_s
    while True:
        op = Op("get", "pods", "", ns, name)
        got: dict[str, Any] = api.call(op, api.core.read_namespaced_pod, name, ns)
        phase = (got.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return got
        waiting = (container_status(got).get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_REASONS:
            raise BackendError(
                f"the log reader pod {ns}/{name} cannot start: {waiting['reason']}: "
                f"{waiting.get('message', '')}".rstrip(": ")
            )
        if clock() > deadline:
            raise BackendError(
                f"the log reader pod {ns}/{name} did not finish in {timeout_s:.0f}s (phase {phase}); "
                "see `kubectl describe pod` while it exists"
            )
        time.sleep(poll_s)
