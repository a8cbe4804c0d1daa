"""Why a Volcano Job waits or failed, from the records Volcano and the kubelet keep: the lines
``vitjob status`` shows under a job.

``explain`` adds them to a job's status: for a waiting job (``pending_reasons``) the root cause first
(``vitjob.kube.diagnosis.root_causes``, computed from the nodes, claims, queue and the pods on the
nodes), then the pods' waits, then the scheduler's notes (events, PodGroup conditions) with duplicates
folded, then the PodGroup's phase; for a failed or restarting one (``failure_reasons``) the exit codes,
the job controller's events and the first failed pod's last log lines; a suspension by ``vitjob
suspend``; and where the logs of earlier runs were kept. This module makes the reads;
``vitjob.kube.diagnosis`` turns plain objects into lines.

Volcano never writes ``status.state.reason``/``message`` (job_controller_actions.go), and its
capacity/proportion/overcommit plugins record why a PodGroup waits as *Normal* events with reason
``Unschedulable`` (only the scheduler cache's per-pod notes are Warnings), so both event types count;
the PodGroup's phase and conditions say whether it was admitted to its queue at all.
"""

from __future__ import annotations

import logging
from typing import Any

from vitjob.api.status import JobPhase, JobStatus
from vitjob.backends.kubernetes.keptlogs import keeps_logs
from vitjob.backends.kubernetes.reads import claim_names, list_or_none, nodes_or_none, queue_or_none
from vitjob.constants import ANNOTATION_SUSPENDED, VOLCANO_SCHEDULING_GROUP, VOLCANO_SCHEDULING_VERSION
from vitjob.errors import AuthError, VitjobError
from vitjob.kube.client import Api
from vitjob.kube.diagnosis import device_requests, fold_notes, image_problem, oom_note, root_causes
from vitjob.kube.errors import Op
from vitjob.kube.kinds import container_status, pod_rank
from vitjob.kube.logs import read_log

log = logging.getLogger(__name__)

# Normal events that explain a wait: Volcano's capacity/proportion/overcommit plugins record a waiting
# PodGroup as Normal "Unschedulable"; "Evict" is the scheduler cache's note on a preempted PodGroup.
PENDING_EVENT_REASONS = frozenset({"Unschedulable", "FailedScheduling", "Evict"})
# Normal events that explain an end: the job controller's "ExecuteAction" ("Start to execute action
# RestartJob", "Job failed on action RestartJob for retry limit reached"); it never writes state.reason.
FAILURE_EVENT_REASONS = frozenset({"ExecuteAction", "Evict"})
# Events about the job's objects listed at most (distinct reason and message).
MAX_EVENTS = 5


def explain(api: Api, status: JobStatus, job: dict[str, Any], pods: list[dict[str, Any]], ns: str) -> None:
    """Add to ``status`` (of ``job`` and its ``pods``) the reasons it waits, failed or was suspended,
    and the scheduler's raw notes (``vitjob status -v``)."""
    name = job["metadata"]["name"]
    if status.phase in (JobPhase.PENDING, JobPhase.UNKNOWN) or any(p.phase == "Pending" for p in status.pods):
        reasons, notes = pending_reasons(api, job, pods, ns)
        status.reasons += reasons
        status.scheduler_notes += notes
    if status.phase in (JobPhase.FAILED, JobPhase.TERMINATED, JobPhase.ABORTED) or any(
        p.phase == "Failed" or p.exit_code not in (None, 0) for p in status.pods
    ):  # a container that exited non-zero says why even while its pod still runs or restarts
        status.reasons += failure_reasons(api, job, pods, ns)
    suspended = (job["metadata"].get("annotations") or {}).get(ANNOTATION_SUSPENDED)
    if suspended and status.phase in (JobPhase.ABORTING, JobPhase.ABORTED):
        status.reasons.insert(
            0,
            f"suspended by `vitjob suspend` at {suspended}: `vitjob resume {name}` runs it again and "
            "training continues from its last checkpoint",
        )
    if keeps_logs(job) and (
        status.retry_count or any(p.restarts or p.exit_code not in (None, 0) for p in status.pods)
    ):
        status.reasons.append(
            f"each run of each pod kept its log on the output volume: `vitjob logs {name} --attempt N` "
            "(N = 1 for the first run) prints it, also after Volcano deleted the pods"
        )


def pending_reasons(
    api: Api, job: dict[str, Any], pods: list[dict[str, Any]], ns: str
) -> tuple[list[str], list[str]]:
    """Why the job waits: the root cause first (``vitjob.kube.diagnosis.root_causes``: a missing
    claim, no node for the selector, not enough cards, pods larger than the nodes), then the pods'
    waits, then the scheduler's notes with duplicates folded, then the PodGroup's phase; and, second,
    every raw note (``vitjob status -v``)."""
    notes: list[str] = []
    if not job.get("status"):
        notes.append(
            "the Volcano controller has not processed the job yet (no status): check that the "
            "volcano-controllers and volcano-scheduler pods are running"
        )
    pg_name, pg = podgroup(api, job, ns, notes)
    phase_note = []
    if pg is not None:
        pg_status = pg.get("status") or {}
        phase = pg_status.get("phase") or "Pending"
        if phase in ("Pending", "Inqueue"):
            what = ("not admitted to its queue yet" if phase == "Pending"
                    else "admitted to its queue; waiting for all its pods to fit at once (gang)")
            phase_note.append(f"PodGroup {pg_name} {phase}: {what}")
        for cond in pg_status.get("conditions") or []:
            if cond.get("status") == "True" and cond.get("type") != "Scheduled":
                text = f"PodGroup {cond.get('type')}: {cond.get('reason', '')}: {cond.get('message', '')}"
                notes.append(text.rstrip(": "))
    names = {job["metadata"]["name"], pg_name} | {p["metadata"]["name"] for p in pods}
    notes += event_reasons(api, ns, names, normal_reasons=PENDING_EVENT_REASONS)
    waits = []
    for pod in pods:
        waiting = (container_status(pod).get("state") or {}).get("waiting") or {}
        if waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            text = image_problem(pod, waiting) or (
                f"pod {pod['metadata']['name']}: {waiting['reason']}: {waiting.get('message', '')}"
            )
            waits.append(text.rstrip(": "))
    causes = root_causes(
        job,
        ns,
        nodes=nodes_or_none(api),
        claims=claim_names(api, ns),
        # what the nodes' cards are used by: only for a job that asks for cards (a cluster-wide list)
        node_pods=list_or_none(
            api,
            Op("list", "pods"),
            api.core.list_pod_for_all_namespaces,
            field_selector="spec.nodeName!=",
        ) if device_requests(job)[1] else None,
        queue=queue_or_none(api, (job.get("spec") or {}).get("queue") or "default"),
        event_messages=notes,
    )
    # the PodGroup's phase last: whether the queue admitted the job at all
    return causes + waits + fold_notes(notes) + phase_note, phase_note + notes


def podgroup(api: Api, job: dict[str, Any], ns: str, notes: list[str]) -> tuple[str, dict[str, Any] | None]:
    """The job's PodGroup (``<job>-<uid>``, or ``<job>`` for jobs from before Volcano 1.5) and its name;
    None when there is none or we may not read PodGroups (then a line saying so is added to ``notes``)."""
    pg_name = f"{job['metadata']['name']}-{job['metadata']['uid']}"
    for candidate in (pg_name, job["metadata"]["name"]):
        try:
            pg = api.get_or_none(
                Op("get", "podgroups", VOLCANO_SCHEDULING_GROUP, ns, candidate),
                api.custom.get_namespaced_custom_object,
                VOLCANO_SCHEDULING_GROUP,
                VOLCANO_SCHEDULING_VERSION,
                ns,
                "podgroups",
                candidate,
            )
        except AuthError:
            notes.append("(may not read PodGroups here, so the queue/gang state is not shown; "
                         "`kubectl auth can-i get podgroups.scheduling.volcano.sh` says why)")
            return pg_name, None
        if pg is not None:
            return candidate, pg
    return pg_name, None


def event_reasons(api: Api, ns: str, names: set[str], *, normal_reasons: frozenset[str]) -> list[str]:
    """Recent events about these objects, newest first, at most ``MAX_EVENTS`` distinct: every Warning,
    and the Normal ones whose reason is in ``normal_reasons``. Without permission to list events: a note."""
    try:
        events = api.call(Op("list", "events", "", ns), api.core.list_namespaced_event, ns)["items"]
    except AuthError:
        return ["(may not list events here, so Volcano's scheduling notes are not shown)"]
    events = [
        e for e in events
        if (e.get("involvedObject") or {}).get("name") in names
        and (e.get("type") == "Warning" or e.get("reason") in normal_reasons)
    ]
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "", reverse=True)
    seen: set[str] = set()
    reasons = []
    for ev in events:
        key = f"{ev.get('reason')}:{ev.get('message')}"
        if key in seen or len(seen) >= MAX_EVENTS:
            continue
        seen.add(key)
        obj = ev["involvedObject"]
        message = ev.get("message", "").strip()
        reasons.append(f"{ev.get('reason')} ({obj.get('kind')} {obj['name']}): {message}")
    return reasons


def failure_reasons(api: Api, job: dict[str, Any], pods: list[dict[str, Any]], ns: str) -> list[str]:
    """Why the job ended or restarts: the pods' terminated containers (exit codes, as the kubelet
    reported them), the job controller's events, and the first failed pod's last log lines."""
    reasons: list[str] = []
    state = (job.get("status") or {}).get("state") or {}
    if state.get("reason") or state.get("message"):  # no Volcano controller writes these today
        reasons.append(f"job: {state.get('reason', '')}: {state.get('message', '')}".rstrip(": "))
    failed = []
    for pod in sorted(pods, key=lambda p: (pod_rank(p) or 0, p["metadata"]["name"])):
        cs = container_status(pod)
        for when, term in (
            ("", (cs.get("state") or {}).get("terminated")),
            (" (previous run)", (cs.get("lastState") or {}).get("terminated")),
        ):
            if term and term.get("exitCode", 0) != 0:
                msg = (term.get("message") or "").strip()
                reasons.append(
                    f"pod {pod['metadata']['name']}{when} exited with code {term['exitCode']} "
                    f"({term.get('reason', 'Error')}{oom_note(pod, term)})" + (f": {msg}" if msg else "")
                )
                failed.append((pod, bool(when)))
                break
    reasons += event_reasons(api, ns, {job["metadata"]["name"]}, normal_reasons=FAILURE_EVENT_REASONS)
    if failed:
        pod, previous = failed[0]
        try:
            lines = read_log(api, pod, ns, previous=previous, tail=10)
        except VitjobError as exc:
            log.debug("cannot read the logs of %s: %s", pod["metadata"]["name"], exc)
            lines = []
        if lines:
            reasons.append(
                f"last log lines of {pod['metadata']['name']}:\n"
                + "\n".join(f"  | {line}" for _, line in lines)
            )
    return reasons
