"""``vitjob logs`` on a cluster: a job's pods' logs, each line prefixed with its pod and rank.

Not followed: every selected pod's log read once, merged by the kubelet's timestamps. Followed
(``-f``): ``vitjob.kube.logs.JobFollower`` (every pod of the job as its lines arrive, until the job
ends). The logs of earlier runs kept on the output volume are ``keptlogs``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from vitjob.backends.kubernetes.reads import job_pods
from vitjob.kube.client import Api
from vitjob.kube.kinds import container_started, pod_rank, read_volcano_job
from vitjob.kube.logs import FollowOptions, JobFollower, log_prefix, read_log

log = logging.getLogger(__name__)


def job_logs(
    api: Api,
    ns: str,
    name: str,
    *,
    follow: bool,
    rank: int | None,
    pod: str | None,
    previous: bool,
    tail: int | None,
    since_s: int | None,
    follow_options: FollowOptions,
    pause_s: float,
) -> Iterator[str]:
    """The lines of job ``ns/name``'s pods (those of ``rank``/``pod`` when given), prefixed; followed
    until the job ends with ``follow``, else read once and merged by time."""
    if follow:
        follower = JobFollower(
            api,
            name,
            ns,
            rank=rank,
            pod=pod,
            tail=tail,
            since_s=since_s,
            options=follow_options,
            pause_s=pause_s,
        )
        yield from follower.run()
        return
    read_volcano_job(api, ns, name)  # JobNotFoundError rather than "no pods"
    pods = [p for p in job_pods(api, ns, name) if selected(p, rank, pod)]
    if not pods:
        log.info("job %s has no matching pods yet; `vitjob logs -f %s` waits for them", name, name)
    merged: list[tuple[int, int, str]] = []
    for i, p in enumerate(pods):
        if not previous and not container_started(p):
            log.info("pod %s has not started yet", p["metadata"]["name"])
            continue
        prefix = log_prefix(p["metadata"]["name"], pod_rank(p))
        merged += [
            (ts, i, prefix + line)
            for ts, line in read_log(api, p, ns, previous=previous, tail=tail, since_s=since_s)
        ]
    for _, _, line in sorted(merged, key=lambda t: (t[0], t[1])):
        yield line


def selected(pod: dict[str, Any], rank: int | None, name: str | None) -> bool:
    """Whether ``pod`` is of ``rank`` and named ``name`` (each None: any)."""
    return (rank is None or pod_rank(pod) == rank) and (name is None or pod["metadata"]["name"] == name)
