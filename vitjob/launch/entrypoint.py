"""``vitjob launch``: from a pod's environment to one training process per card.

1. Read the pod layout (task index, pods, cards per pod, peer hosts) — ``podenv``.
2. Ascend: use an operator-mounted completed ``hccl.json``, else build this pod's piece from the
   device plugin's annotation (or ``/etc/hccn.conf``), gather all pieces through pod 0's rendezvous
   and write the identical rank table on every pod; children get ``RANK_TABLE_FILE``, ``RANK_SIZE``,
   ``RANK_ID``, ``DEVICE_ID``, ``ASCEND_DEVICE_ID``.
   GPU/CPU: MindSpore's dynamic cluster — pod 0 also runs the scheduler; children get ``MS_ROLE``,
   ``MS_NODE_ID``, ``MS_WORKER_NUM``, ``MS_SCHED_HOST`` (pod 0's DNS name), ``MS_SCHED_PORT``
   (and ``CUDA_VISIBLE_DEVICES`` on GPU).
3. Run the children under the ``supervisor`` and exit with its verdict.

``VITJOB_SCHED_COMMAND`` replaces the scheduler child's command (tests run a trivial process there).

With ``VITJOB_SIMULATE_DEVICE=cpu`` (the local backend's ``--hw ascend``) the rank-table path runs for
real and the children then compute on the CPU through a dynamic cluster.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from vitjob import constants as c
from vitjob.errors import RankTableError, UsageError
from vitjob.launch import podenv, rendezvous
from vitjob.launch.ranktable import build_rank_table, check_table, rank_size, read_completed_table
from vitjob.launch.supervisor import ChildSpec, Outcome, Supervisor, install_signal_forwarding

log = logging.getLogger(__name__)


def gather_rank_table(env: dict[str, str], pod: podenv.PodEnv, timeout_s: float) -> dict[str, Any]:
    operator_table = Path(env.get(c.ENV_OPERATOR_RANK_TABLE, c.OPERATOR_RANK_TABLE))
    table = read_completed_table(operator_table)
    if table is not None:
        log.info("using the completed rank table mounted at %s", operator_table)
        check_table(table, str(operator_table))
    else:
        piece = podenv.ascend_piece(env, pod)
        table = build_rank_table([piece]) if pod.num_pods == 1 else _rendezvous(pod, piece, timeout_s)
    servers = table["server_list"]
    if len(servers) != pod.num_pods or pod.index >= len(servers):
        raise RankTableError(
            f"the rank table has {len(servers)} server(s) but the job has {pod.num_pods} pod(s) "
            f"(this is task index {pod.index})"
        )
    if rank_size(table) != pod.world_size:
        raise RankTableError(
            f"the rank table lists {rank_size(table)} device(s) but the job runs {pod.num_pods} pod(s) x "
            f"{pod.cards_per_pod} process(es) = {pod.world_size}"
        )
    return table


def _rendezvous(pod: podenv.PodEnv, piece: Any, timeout_s: float) -> dict[str, Any]:
    if pod.index != 0:
        return rendezvous.exchange(pod.hosts[0], pod.rdzv_port, piece, timeout_s)
    server = rendezvous.RendezvousServer(pod.rdzv_port, pod.num_pods, timeout_s).serve()
    log.info("serving the rank-table rendezvous on port %d for %d pods", pod.rdzv_port, pod.num_pods)
    try:
        # Pod 0 reaches its own server over loopback: no dependence on its DNS record being published yet.
        return rendezvous.exchange("127.0.0.1", pod.rdzv_port, piece, timeout_s)
    finally:
        server.close()


def cluster_env(pod: podenv.PodEnv, local_rank: int) -> dict[str, str]:
    """Dynamic-cluster variables of one worker."""
    rank = pod.first_rank + local_rank
    return {
        "MS_ROLE": "MS_WORKER", "MS_NODE_ID": str(rank), "MS_WORKER_NUM": str(pod.world_size),
        "MS_SCHED_HOST": pod.hosts[0], "MS_SCHED_PORT": str(pod.sched_port),
        "RANK_ID": str(rank), "RANK_SIZE": str(pod.world_size), "DEVICE_ID": str(local_rank),
    }


def scheduler_child(pod: podenv.PodEnv, base: dict[str, str], device: str) -> ChildSpec:
    env = dict(base, MS_ROLE="MS_SCHED", MS_WORKER_NUM=str(pod.world_size), MS_SCHED_HOST=pod.hosts[0],
               MS_SCHED_PORT=str(pod.sched_port), VITJOB_SCHED_DEVICE=device)
    override = base.get(c.ENV_SCHED_COMMAND, "").strip()
    argv = shlex.split(override) if override else [sys.executable, "-m", "vitjob.launch.scheduler"]
    return ChildSpec("sched", argv, env, required=False)


def gpu_for(env: dict[str, str], local_rank: int) -> str:
    """The GPU of one process: the ``local_rank``-th of ``CUDA_VISIBLE_DEVICES`` if the pod has one set."""
    preset = [d.strip() for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if not preset:
        return str(local_rank)
    if local_rank >= len(preset):
        raise UsageError(f"CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']!r} lists {len(preset)} GPU(s), "
                         f"fewer than the pod's processes")
    return preset[local_rank]


def plan_children(env: dict[str, str], pod: podenv.PodEnv, command: list[str], workdir: Path,
                  timeout_s: float) -> list[ChildSpec]:
    simulate = env.get(c.ENV_SIMULATE_DEVICE)
    children: list[ChildSpec] = []
    if pod.hw == "ascend":
        base = env if simulate else podenv.load_cann_env(env)
        table = gather_rank_table(base, pod, timeout_s)
        workdir.mkdir(parents=True, exist_ok=True)
        table_file = workdir / "hccl.json"
        table_file.write_text(json.dumps(table, indent=2) + "\n")
        server = table["server_list"][pod.index]
        log.info("rank table: %d servers, %d devices, written to %s", len(table["server_list"]),
                 rank_size(table), table_file)
        if simulate and pod.world_size > 1 and pod.index == 0:
            children.append(scheduler_child(pod, env, simulate))
        for local, dev in enumerate(server["device"]):
            child = dict(base, RANK_TABLE_FILE=str(table_file), RANK_SIZE=str(rank_size(table)),
                         RANK_ID=str(dev["rank_id"]), DEVICE_ID=str(dev["device_id"]),
                         ASCEND_DEVICE_ID=str(dev["device_id"]))
            if simulate and pod.world_size > 1:
                ms_env = cluster_env(pod, local)
                child.update({k: v for k, v in ms_env.items()
                              if k not in ("RANK_ID", "DEVICE_ID", "RANK_SIZE")})
                child["MS_NODE_ID"] = str(dev["rank_id"])
            children.append(ChildSpec(f"rank {dev['rank_id']}", command, child))
        return children
    if pod.world_size > 1 and pod.index == 0:
        children.append(scheduler_child(pod, env, simulate or pod.hw))
    for local in range(pod.cards_per_pod):
        child = dict(env)
        if pod.world_size > 1:
            child.update(cluster_env(pod, local))
        if pod.hw == "gpu" and not simulate:
            child["CUDA_VISIBLE_DEVICES"] = gpu_for(env, local)
            child["DEVICE_ID"] = "0"
        children.append(ChildSpec(f"rank {pod.first_rank + local}", command, child))
    return children


def launch(command: list[str], hw: str | None = None, cards_per_pod: int | None = None,
           timeout_s: float = c.DEFAULT_RDZV_TIMEOUT_S, workdir: Path | None = None,
           grace_s: float = 10.0) -> Outcome:
    if not command:
        raise UsageError("no command to run: `vitjob launch [options] -- COMMAND ...`")
    env = dict(os.environ)
    pod = podenv.read_pod_env(env, hw, cards_per_pod)
    workdir = workdir or Path(env.get(c.ENV_WORKDIR) or f"/tmp/vitjob-launch-{os.getpid()}")
    log.info("pod %d of %d, %d card(s) per pod (%s), ranks %d-%d of %d", pod.index, pod.num_pods,
             pod.cards_per_pod, pod.hw, pod.first_rank, pod.first_rank + pod.cards_per_pod - 1,
             pod.world_size)
    children = plan_children(env, pod, command, workdir, timeout_s)
    supervisor = Supervisor(children, grace_s=grace_s)
    install_signal_forwarding(supervisor)
    outcome = supervisor.run()
    (log.info if outcome.exit_code == 0 else log.error)("%s", outcome.summary)
    return outcome
