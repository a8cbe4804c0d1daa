"""The CPU-thread share of one process: ``VITJOB_CPU_THREADS``, and its cores: ``VITJOB_CPU_CORES``.

``vitjob launch`` (``vitjob.launch.cpus``) divides the pod's CPUs among the processes it starts and writes
each one's share into this variable; the processes read it back (``threads_from_env``) and give it to
MindSpore (``apply_cpu_threads``: its CPU-kernel thread pool and the input pipeline's workers). Without it
MindSpore sizes its pools from the host's cores, whatever the pod's CPU limit. This module is the contract
between the two sides, so that neither imports the other (the training code and the MindSpore scheduler
process on one side, the pod's start-up on the other).

Where ``vitjob launch`` binds the training processes to cores of their own, it writes each one's cores into
``VITJOB_CPU_CORES`` (``0`` or ``2,3``); the process binds every one of its threads there
(``bind_to_cores``) once it has joined the cluster. Binding later rather than at the process's start
matters: importing MindSpore and forming the cluster are short bursts of many threads that run faster
spread over every core, while the training steps run faster with each process on its own cores.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)

ENV_CPU_THREADS = "VITJOB_CPU_THREADS"
ENV_CPU_CORES = "VITJOB_CPU_CORES"


def threads_from_env(env: Mapping[str, str]) -> int | None:
    """``VITJOB_CPU_THREADS`` as a positive int, None when unset or unusable."""
    raw = env.get(ENV_CPU_THREADS, "").strip()
    if not raw.isdigit() or int(raw) <= 0:
        return None
    return int(raw)


def apply_cpu_threads(env: Mapping[str, str] | None = None) -> int | None:
    """Give MindSpore's CPU kernels and the input pipeline ``VITJOB_CPU_THREADS`` threads; returns the
    number, or None when the variable is unset (MindSpore's defaults stay). Call before anything runs."""
    import mindspore as ms
    from mindspore.device_context.cpu import op_tuning

    threads = threads_from_env(os.environ if env is None else env)
    if threads is None:
        return None
    try:
        op_tuning.threads_num(threads)
    except RuntimeError:  # set already in this process (it can be set once)
        log.debug("MindSpore's CPU kernel threads were set already; keeping them")
    # MindSpore refuses more dataset workers than the host has cores.
    ms.dataset.config.set_num_parallel_workers(min(threads, os.cpu_count() or 1))
    log.debug("CPU threads: %d (%s)", threads, ENV_CPU_THREADS)
    return threads


def cores_from_env(env: Mapping[str, str]) -> tuple[int, ...] | None:
    """``VITJOB_CPU_CORES`` (``"0"``, ``"2,3"``) as core numbers, None when unset or unusable."""
    raw = env.get(ENV_CPU_CORES, "").strip()
    parts = [p.strip() for p in raw.split(",")] if raw else []
    if not parts or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def bind_to_cores(env: Mapping[str, str] | None = None) -> tuple[int, ...] | None:
    """Bind every thread of this process (and so every thread it starts later) to ``VITJOB_CPU_CORES``;
    returns the cores, or None when the variable is unset or the system cannot bind."""
    cores = cores_from_env(os.environ if env is None else env)
    setter = getattr(os, "sched_setaffinity", None)
    if cores is None or setter is None:
        return None
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            setter(tid, cores)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
        except OSError as exc:
            log.warning("cannot bind to cores %s (%s): running unbound", env_text(cores), exc)
            return None
    log.info("bound to core(s) %s (%s)", env_text(cores), ENV_CPU_CORES)
    return cores


def env_text(cores: tuple[int, ...]) -> str:
    """Cores as ``VITJOB_CPU_CORES`` writes them."""
    return ",".join(str(core) for core in cores)
