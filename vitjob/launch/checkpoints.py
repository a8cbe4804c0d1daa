"""Publishing rank 0's last checkpoint on its own pod: the ``vitjob.io/last-checkpoint`` annotation.

Rank 0's training process writes a ``vitjob-progress … event=checkpoint`` line (``vitjob.progress``) each
time a checkpoint is on disk; ``vitjob launch`` sees the line as it relays it and merge-patches the pod's
annotation to ``{"step": S, "epoch": E, "time": "<UTC, RFC 3339>"}``. ``vitjob status`` shows it ("last
checkpoint 2m ago, step 120"), and so can any tool that wants to know what a restart would lose (e.g.
checkpoint-aware preemption), without reading the volume.

Only where the job was rendered with ``publish_checkpoints`` (``VITJOB_PUBLISH_CHECKPOINTS=1``: the pods
then run as the job's ServiceAccount, whose Role may get and patch rank 0's pod only) and only in pod 0.
Patching happens on a thread of its own, newest value first, so a slow API server never holds up the
training output; a failed patch is logged once as a warning and never stops the pod.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from vitjob import constants as c
from vitjob.progress import checkpoint_annotation, parse_line

log = logging.getLogger(__name__)

RANK0_LABEL = "rank 0"  # the supervisor's label of rank 0's process (vitjob.launch.entrypoint)
MERGE_PATCH = "application/merge-patch+json"

Patch = Callable[[dict[str, Any]], None]


class CheckpointPublisher:
    """Turns rank 0's checkpoint lines into annotation patches (``line`` is the supervisor's hook)."""

    def __init__(self, patch: Patch, clock: Callable[[], float] = time.time) -> None:
        self._patch = patch
        self._clock = clock
        self._pending: dict[str, Any] | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._warned = False
        self.published = 0
        self._thread = threading.Thread(target=self._run, name="checkpoint-publisher", daemon=True)
        self._thread.start()

    def line(self, label: str, line: str) -> None:
        if label != RANK0_LABEL or "event=checkpoint" not in line:
            return
        progress = parse_line(line)
        if progress is None or progress.event != "checkpoint":
            return
        value = checkpoint_annotation(progress, self._clock())
        body = {"metadata": {"annotations": {c.ANNOTATION_LAST_CHECKPOINT: value}}}
        with self._cond:
            self._pending = body  # a newer checkpoint replaces one not yet published
            self._cond.notify()

    def close(self, timeout_s: float = 10.0) -> None:
        """Publish what is pending (the last checkpoint matters most), then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                body, self._pending = self._pending, None
                if body is None:
                    return
            try:
                self._patch(body)
                self.published += 1
            except Exception as exc:  # never the pod's end: the annotation is a convenience
                if not self._warned:
                    log.warning("cannot annotate this pod with its last checkpoint: %s", exc)
                    self._warned = True
                else:
                    log.debug("cannot annotate this pod with its last checkpoint: %s", exc)


def pod_patcher(namespace: str, pod: str) -> Patch:
    """A merge patch of pod ``pod`` through the in-cluster API (the pod's ServiceAccount token)."""
    from vitjob.kube.client import RetryPolicy, connect
    from vitjob.kube.errors import Op

    holder: dict[str, Any] = {}

    def patch(body: dict[str, Any]) -> None:
        if "api" not in holder:  # connected on first use, on the publisher's thread
            holder["api"], _ = connect(None, None, namespace, RetryPolicy(attempts=3), 10.0)
        api = holder["api"]
        op = Op("patch", "pods", "", namespace, pod)
        api.call(op, api.core.patch_namespaced_pod, pod, namespace, body, _content_type=MERGE_PATCH)

    return patch


def publisher_from_env(env: Mapping[str, str], pod_index: int) -> CheckpointPublisher | None:
    """A publisher for pod 0 of a job rendered with ``publish_checkpoints``; None elsewhere."""
    if env.get(c.ENV_PUBLISH_CHECKPOINTS) != "1" or pod_index != 0:
        return None
    name, namespace = env.get(c.ENV_POD_NAME), env.get(c.ENV_POD_NAMESPACE)
    if not (name and namespace):
        log.warning("not publishing checkpoints: %s or %s is not set", c.ENV_POD_NAME, c.ENV_POD_NAMESPACE)
        return None
    log.info("publishing each checkpoint as the %s annotation of pod %s", c.ANNOTATION_LAST_CHECKPOINT, name)
    return CheckpointPublisher(pod_patcher(namespace, name))
