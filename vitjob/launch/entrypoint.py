"""``vitjob launch``: from a pod's environment to one training process per card.

1. Read the pod layout (task index, pods, cards per pod, peer hosts) — ``podenv``.
2. Addresses — ``addresses``: pod 0 uses its own pod IP (downward API ``status.podIP``); the other pods
   resolve pod 0's svc-plugin name, retrying until ``--rdzv-timeout``. MindSpore, the rendezvous and
   the rank table get IP literals only.
3. Ascend: use an operator-mounted completed ``hccl.json``, else build this pod's piece from the
   device plugin's annotation (or ``/etc/hccn.conf``), gather all pieces through pod 0's rendezvous
   and write the identical rank table on every pod; find this pod's server in it (``own_server``) and
   give each child ``RANK_TABLE_FILE``, ``RANK_SIZE``, ``RANK_ID`` (the table's) and ``DEVICE_ID`` /
   ``ASCEND_DEVICE_ID`` (the logical id of the chip inside the container, ``podenv.logical_device_ids``).
   GPU/CPU: MindSpore's dynamic cluster — pod 0 also runs the scheduler; children get ``MS_ROLE``,
   ``MS_NODE_ID``, ``MS_WORKER_NUM``, ``MS_SCHED_HOST`` (pod 0's IP), ``MS_SCHED_PORT``, ``MS_WORKER_IP``
   (their pod's IP), ``MS_TOPO_TIMEOUT`` (the rendezvous timeout: a cluster that cannot form fails
   instead of waiting MindSpore's default 30 minutes), ``MS_RETRY_INTERVAL_LOWER``/``UPPER`` (1 s
   heartbeats for clusters of up to 64 workers: ``retry_intervals``) and, on GPU,
   ``CUDA_VISIBLE_DEVICES``.
4. CPU threads — ``cpus``: the pod's CPU budget (cgroup quota, affinity, visible cores) is divided among
   its training processes; each gets ``VITJOB_CPU_THREADS`` and ``OMP_NUM_THREADS`` (MindSpore's CPU
   kernels, OpenMP, input-pipeline workers), the scheduler one thread. Values the pod sets win. Where
   the pod owns its cores, each training process is given cores of its own (``cpus.plan_pinning``,
   ``VITJOB_CPU_PIN``) in ``VITJOB_CPU_CORES``, and binds itself there once it has joined the cluster
   (``vitjob.cputhreads.bind_to_cores``). The choices are logged.
5. Run the children under the ``supervisor`` and exit with its verdict. When this pod holds the whole
   MindSpore cluster (one pod), each worker gets a done file (``VITJOB_DONE_FILE``, written by vitjob's
   CLI when a command succeeds) and the cluster ends once every worker has written it, without
   MindSpore's teardown (``with_done_files``).

``VITJOB_SCHED_COMMAND`` replaces the scheduler child's command (tests run a trivial process there).

With ``VITJOB_SIMULATE_DEVICE=cpu`` (the local backend's ``--hw ascend``) the rank-table path runs for
real and the children then compute on the CPU through a dynamic cluster.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vitjob import constants as c
from vitjob.cputhreads import ENV_CPU_CORES, env_text
from vitjob.errors import RankTableError, UsageError
from vitjob.launch import addresses, cpus, podenv, rendezvous
from vitjob.launch.checkpoints import publisher_from_env
from vitjob.launch.ranktable import build_rank_table, check_table, own_server, rank_size, read_completed_table
from vitjob.launch.supervisor import ChildSpec, Outcome, Supervisor, TextSink, install_signal_forwarding

log = logging.getLogger(__name__)

SCHEDULER_ROLE = "the MindSpore scheduler"


@dataclass(frozen=True)
class Addresses:
    """The IP literals one pod works with."""

    own: str  # this pod's IP
    pod0: str  # pod 0's IP: MindSpore scheduler and rank-table rendezvous


def pod_addresses(env: dict[str, str], pod: podenv.PodEnv, timeout_s: float) -> Addresses:
    """This pod's and pod 0's IPs; a name that never resolves fails after ``timeout_s``, naming it.

    A single-pod job talks over loopback: every process is in the same network namespace. Off Ascend,
    pod 0's address counts once its MindSpore scheduler accepts connections there: after a restart, DNS
    may still give the previous attempt's address (``addresses.resolve_reachable``)."""
    if pod.num_pods == 1:
        return Addresses("127.0.0.1", "127.0.0.1")
    own = addresses.own_ip(env, pod.hosts[pod.index], timeout_s)
    if pod.index == 0:
        return Addresses(own, own)
    what = "pod 0 (MindSpore scheduler, rank-table rendezvous)"
    if pod.hw == "ascend":  # pod 0 serves the rank-table rendezvous first (or nothing: an operator's table)
        return Addresses(own, addresses.resolve(pod.hosts[0], timeout_s, env, what=what))
    pod0 = addresses.resolve_reachable(pod.hosts[0], pod.sched_port, timeout_s, env, what=what)
    return Addresses(own, pod0)


def _annotation_server_id(env: dict[str, str], pod: podenv.PodEnv) -> str:
    """The device plugin's server_id for this pod if its annotation is readable (identifies it in an
    operator's table), else ""."""
    try:
        return podenv.ascend_piece(env, pod).server_id
    except (RankTableError, UsageError):
        return ""


def gather_rank_table(env: dict[str, str], pod: podenv.PodEnv, timeout_s: float,
                      rdzv_host: str = "127.0.0.1", pod_ip: str = "") -> tuple[dict[str, Any], int]:
    """The job's rank table and the index of this pod's server in its ``server_list``."""
    operator_table = Path(env.get(c.ENV_OPERATOR_RANK_TABLE, c.OPERATOR_RANK_TABLE))
    table = read_completed_table(operator_table)
    if table is not None:
        log.info("using the completed rank table mounted at %s", operator_table)
        check_table(table, str(operator_table))
        server_id = _annotation_server_id(env, pod)
    else:
        piece = podenv.ascend_piece(env, pod, pod_ip)
        server_id = piece.server_id
        if pod.num_pods == 1:
            table = build_rank_table([piece])
        else:
            table = _rendezvous(pod, piece, timeout_s, rdzv_host)
    servers = table["server_list"]
    if len(servers) != pod.num_pods:
        raise RankTableError(
            f"the rank table has {len(servers)} server(s) but the job has {pod.num_pods} pod(s) "
            f"(this is task index {pod.index})"
        )
    if rank_size(table) != pod.world_size:
        raise RankTableError(
            f"the rank table lists {rank_size(table)} device(s) but the job runs {pod.num_pods} pod(s) x "
            f"{pod.cards_per_pod} process(es) = {pod.world_size}"
        )
    if len(servers) == 1 and not server_id and not pod_ip:
        return table, 0
    return table, own_server(table, server_id, pod_ip)


def _rendezvous(pod: podenv.PodEnv, piece: Any, timeout_s: float, host: str) -> dict[str, Any]:
    if pod.index != 0:
        return rendezvous.exchange(host, pod.rdzv_port, piece, timeout_s)
    server = rendezvous.RendezvousServer(pod.rdzv_port, pod.num_pods, timeout_s).serve()
    log.info("serving the rank-table rendezvous on port %d for %d pods", pod.rdzv_port, pod.num_pods)
    try:
        # Pod 0 reaches its own server over loopback: no dependence on its DNS record being published yet.
        return rendezvous.exchange("127.0.0.1", pod.rdzv_port, piece, timeout_s)
    finally:
        server.close()


def cluster_env(pod: podenv.PodEnv, local_rank: int, ips: Addresses, timeout_s: float,
                base: dict[str, str]) -> dict[str, str]:
    """Dynamic-cluster variables of one worker (``dynamic_cluster.md``)."""
    rank = pod.first_rank + local_rank
    return {
        "MS_ROLE": "MS_WORKER", "MS_NODE_ID": str(rank), "MS_WORKER_NUM": str(pod.world_size),
        "MS_SCHED_HOST": ips.pod0, "MS_SCHED_PORT": str(pod.sched_port), "MS_WORKER_IP": ips.own,
        "MS_TOPO_TIMEOUT": topo_timeout(base, timeout_s),
        "RANK_ID": str(rank), "RANK_SIZE": str(pod.world_size), "DEVICE_ID": str(local_rank),
        **retry_intervals(base, pod.world_size),
    }


# MindSpore's heartbeat and message-retry interval, drawn from [MS_RETRY_INTERVAL_LOWER,
# MS_RETRY_INTERVAL_UPPER] seconds (default 3-5). A worker learns that the cluster is complete at its next
# heartbeat, and every worker's heartbeat thread finishes its sleep before the process may exit: the
# interval is paid at start and at exit. Measured here (2 CPU workers, one pod, 5 runs each): from the
# last registration to the last worker joined, 3.5-6.5 s (4 runs of 5: 6.5 s) with 3-5 s, 0.5-3.5 s with
# 1 s (the rest is MindSpore's fixed 3 s wait for a peer's address). Up to FAST_RETRY_MAX_WORKERS
# workers send their heartbeats every second (a few messages a second to the scheduler); larger clusters
# keep MindSpore's defaults, which exist to spread thousands of nodes' messages.
FAST_RETRY_INTERVAL_S = 1
FAST_RETRY_MAX_WORKERS = 64


def retry_intervals(base: dict[str, str], world_size: int) -> dict[str, str]:
    """``MS_RETRY_INTERVAL_LOWER``/``UPPER`` of one cluster process: 1 s for a cluster of up to
    ``FAST_RETRY_MAX_WORKERS`` workers unless the pod sets either, else nothing (MindSpore's defaults)."""
    keys = ("MS_RETRY_INTERVAL_LOWER", "MS_RETRY_INTERVAL_UPPER")
    if world_size > FAST_RETRY_MAX_WORKERS or any(base.get(k) for k in keys):
        return {}
    return dict.fromkeys(keys, str(FAST_RETRY_INTERVAL_S))


def topo_timeout(env: dict[str, str], timeout_s: float) -> str:
    """``MS_TOPO_TIMEOUT`` (seconds the cluster may take to form): the pod's own value, else the rendezvous
    timeout."""
    return env.get("MS_TOPO_TIMEOUT") or str(max(1, math.ceil(timeout_s)))


def scheduler_child(pod: podenv.PodEnv, base: dict[str, str], device: str, ips: Addresses,
                    timeout_s: float) -> ChildSpec:
    env = dict(base, MS_ROLE="MS_SCHED", MS_WORKER_NUM=str(pod.world_size), MS_SCHED_HOST=ips.pod0,
               MS_SCHED_PORT=str(pod.sched_port), MS_TOPO_TIMEOUT=topo_timeout(base, timeout_s),
               VITJOB_SCHED_DEVICE=device, **retry_intervals(base, pod.world_size))
    # The pod's VITJOB_CPU_THREADS is meant for its training processes: the scheduler needs one thread.
    env[cpus.ENV_CPU_THREADS] = str(cpus.SCHEDULER_THREADS)
    env.update(cpus.thread_env(base, cpus.SCHEDULER_THREADS))
    override = base.get(c.ENV_SCHED_COMMAND, "").strip()
    argv = shlex.split(override) if override else [sys.executable, "-m", "vitjob.launch.scheduler"]
    return ChildSpec("sched", argv, env, required=False, role=SCHEDULER_ROLE)


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
                  timeout_s: float, threads: int | None = None,
                  pinning: cpus.PinPlan | None = None) -> list[ChildSpec]:
    """Every process of this pod; each training process gets ``threads`` CPU threads (None: the pod's
    share, ``cpus.plan_threads``) and, with ``pinning``, the cores it is bound to."""
    if threads is None:
        threads = cpus.plan_threads(env, pod.cards_per_pod).per_process
    bound = pinning.cores if pinning is not None else None
    per_worker = cpus.thread_env(env, threads)
    simulate = env.get(c.ENV_SIMULATE_DEVICE)
    distributed = pod.world_size > 1 and (pod.hw != "ascend" or bool(simulate))
    children: list[ChildSpec] = []
    ips = pod_addresses(env, pod, timeout_s) if pod.num_pods > 1 or distributed else None
    if pod.hw == "ascend":
        base = env if simulate else podenv.load_cann_env(env)
        table, index = gather_rank_table(base, pod, timeout_s, ips.pod0 if ips else "127.0.0.1",
                                         ips.own if ips else base.get(c.ENV_POD_IP, ""))
        workdir.mkdir(parents=True, exist_ok=True)
        table_file = workdir / "hccl.json"
        table_file.write_text(json.dumps(table, indent=2) + "\n")
        server = table["server_list"][index]
        logical = podenv.logical_device_ids(base, [int(d["device_id"]) for d in server["device"]])
        log.info("rank table: %d servers, %d devices, written to %s; this pod is server %d (%s), ranks %s",
                 len(table["server_list"]), rank_size(table), table_file, index, server["server_id"],
                 ",".join(str(d["rank_id"]) for d in server["device"]))
        if distributed and pod.index == 0:
            assert ips is not None
            children.append(scheduler_child(pod, env, str(simulate), ips, timeout_s))
        for local, dev in enumerate(server["device"]):
            device = str(logical[int(dev["device_id"])])
            child = dict(base, RANK_TABLE_FILE=str(table_file), RANK_SIZE=str(rank_size(table)),
                         RANK_ID=str(dev["rank_id"]), DEVICE_ID=device, ASCEND_DEVICE_ID=device, **per_worker)
            if distributed:
                assert ips is not None
                ms_env = cluster_env(pod, 0, ips, timeout_s, env)
                child.update({k: v for k, v in ms_env.items()
                              if k not in ("RANK_ID", "DEVICE_ID", "RANK_SIZE")})
                child["MS_NODE_ID"] = str(dev["rank_id"])
            child.update(_cores(bound, local))
            children.append(ChildSpec(f"rank {dev['rank_id']}", command, child))
        return children
    if distributed and pod.index == 0:
        assert ips is not None
        children.append(scheduler_child(pod, env, simulate or pod.hw, ips, timeout_s))
    for local in range(pod.cards_per_pod):
        child = dict(env, **per_worker)
        if distributed:
            assert ips is not None
            child.update(cluster_env(pod, local, ips, timeout_s, env))
        if pod.hw == "gpu" and not simulate:
            child["CUDA_VISIBLE_DEVICES"] = gpu_for(env, local)
            child["DEVICE_ID"] = "0"
        child.update(_cores(bound, local))
        children.append(ChildSpec(f"rank {pod.first_rank + local}", command, child))
    return children


def with_done_files(children: list[ChildSpec], pod: podenv.PodEnv, folder: Path) -> list[ChildSpec]:
    """``children`` with a done file for each worker when this pod holds a whole MindSpore cluster (one
    pod, the scheduler among its children): the supervisor then ends the cluster as soon as every worker
    has finished its work, without MindSpore's teardown. Stale files of an earlier run are removed."""
    if pod.num_pods != 1 or not any(child.role == SCHEDULER_ROLE for child in children):
        return children
    folder.mkdir(parents=True, exist_ok=True)
    planned = []
    for child in children:
        if not child.required:
            planned.append(child)
            continue
        done = folder / (child.label.replace(" ", "-") + ".done")
        done.unlink(missing_ok=True)
        planned.append(replace(child, env=dict(child.env, **{c.ENV_DONE_FILE: str(done)}), done_file=done))
    return planned


def _cores(bound: tuple[tuple[int, ...], ...] | None, local: int) -> dict[str, str]:
    """``VITJOB_CPU_CORES`` of the ``local``-th training process when the pod binds them."""
    if bound is None or local >= len(bound):
        return {}
    return {ENV_CPU_CORES: env_text(bound[local])}


def launch(command: list[str], hw: str | None = None, cards_per_pod: int | None = None,
           timeout_s: float = c.DEFAULT_RDZV_TIMEOUT_S, workdir: Path | None = None,
           grace_s: float = 10.0, out: TextSink | None = None) -> Outcome:
    """Run ``command`` once per card of this pod (see the module docstring); every child's output goes to
    ``out`` (default stdout) prefixed with its rank."""
    if not command:
        raise UsageError("no command to run: `vitjob launch [options] -- COMMAND ...`")
    env = dict(os.environ)
    pod = podenv.read_pod_env(env, hw, cards_per_pod)
    workdir = workdir or Path(env.get(c.ENV_WORKDIR) or f"/tmp/vitjob-launch-{os.getpid()}")
    log.info("pod %d of %d, %d card(s) per pod (%s), world size %d", pod.index, pod.num_pods,
             pod.cards_per_pod, pod.hw, pod.world_size)
    threads = cpus.plan_threads(env, pod.cards_per_pod)
    log.info("%s", threads.describe())
    pinning = cpus.plan_pinning(env, pod.cards_per_pod, threads.per_process, threads.budget,
                                cpus.affinity_cpus(), os.cpu_count() or 1)
    log.info("%s", pinning.describe())
    children = plan_children(env, pod, command, workdir, timeout_s, threads.per_process, pinning)
    children = with_done_files(children, pod, workdir / "done")
    publisher = publisher_from_env(env, pod.index)
    supervisor = Supervisor(children, out=out, grace_s=grace_s, on_line=publisher.line if publisher else None)
    install_signal_forwarding(supervisor)
    try:
        outcome = supervisor.run()
    finally:
        if publisher is not None:
            publisher.close()
    (log.info if outcome.exit_code == 0 else log.error)("%s", outcome.summary)
    return outcome
