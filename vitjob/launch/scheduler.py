"""The MindSpore dynamic-cluster scheduler process (``MS_ROLE=MS_SCHED``) pod 0 runs beside its workers.

``init()`` in the scheduler role serves the cluster's topology until every worker has finished. It
computes nothing: ``vitjob launch`` gives it one CPU thread (``VITJOB_CPU_THREADS``), applied here.
"""

from __future__ import annotations

import os


def main() -> int:
    import mindspore as ms
    from mindspore.communication import init

    from vitjob.cputhreads import apply_cpu_threads

    apply_cpu_threads()
    device = {"gpu": "GPU", "ascend": "Ascend"}.get(os.environ.get("VITJOB_SCHED_DEVICE", "cpu"), "CPU")
    ms.set_device(device)
    init()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
