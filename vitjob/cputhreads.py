"""The CPU-thread share of one process: ``VITJOB_CPU_THREADS``.

``vitjob launch`` (``vitjob.launch.cpus``) divides the pod's CPUs among the processes it starts and writes
each one's share into this variable; the processes read it back (``threads_from_env``) and give it to
MindSpore (``apply_cpu_threads``: its CPU-kernel thread pool and the input pipeline's workers). Without it
MindSpore sizes its pools from the host's cores, whatever the pod's CPU limit. This module is the contract
between the two sides, so that neither imports the other (the training code and the MindSpore scheduler
process on one side, the pod's start-up on the other).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)

ENV_CPU_THREADS = "VITJOB_CPU_THREADS"


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
