"""API requests the kubernetes backend makes per job, for 1, 8 and 16 pods, against the FAKE API server.

Counts (not timings): what ``submit`` sends, what ``status`` sends (Pending: with the scheduling
reasons; Running; Failed: with the failed pod's last log lines), and for ``logs -f``: the requests
to start following, the requests per minute while lines stream, and the requests to finish when the
job ends. Run: ``python bench/bench_kube_api.py [--window 3]`` (needs ../shared/crds or $VITJOB_CRD).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_kube_api import FakeKubeAPI
from kube_testing import crd_dir, volcano_job

import vitjob.backends.kubernetes.backend as kube
from vitjob.kube.logs import FollowOptions


def count(fake: FakeKubeAPI, action) -> int:
    before = len(fake.requests)
    action()
    return len(fake.requests) - before


def measure(pods: int, window_s: float, tmp: Path) -> dict[str, float]:
    fake = FakeKubeAPI(crd_dir()).start()
    try:
        fake.add_queue("default")
        for i in range(pods):
            fake.add_node(f"node-{i}", {"huawei.com/Ascend910": "8"})
        backend = kube.KubernetesBackend(kubeconfig=fake.write_kubeconfig(tmp / f"kc{pods}"),
                                         follow=FollowOptions(end_grace_s=2.0))
        name = f"bench-{pods}"
        row: dict[str, float] = {"pods": pods}
        row["submit"] = count(fake, lambda: backend.submit([volcano_job(name, replicas=pods)]))
        fake.set_job_phase("default", name, "Pending")
        for i in range(pods):
            fake.add_pod("default", name, i)
        fake.add_event("default", "Pod", f"{name}-worker-0", "FailedScheduling", "0/3 nodes are available")
        row["status Pending"] = count(fake, lambda: backend.status(name))

        lines: list[str] = []
        follower = threading.Thread(target=lambda: lines.extend(backend.logs(name, follow=True)), daemon=True)
        start = len(fake.requests)
        follower.start()
        fake.set_job_phase("default", name, "Running")
        for i in range(pods):
            fake.set_pod_running("default", f"{name}-worker-{i}")
        fake.wait_for(lambda: all(fake.following(f"{name}-worker-{i}") for i in range(pods)), timeout=60,
                      what="all pods followed")
        row["follow start"] = len(fake.requests) - start
        steady = len(fake.requests)
        t0, n = time.monotonic(), 0
        while time.monotonic() - t0 < window_s:
            for i in range(pods):
                fake.append_log("default", f"{name}-worker-{i}", [f"step {n}"])
            n += 1
            time.sleep(0.01)
        row["follow /min"] = (len(fake.requests) - steady) * 60.0 / window_s
        row["status Running"] = count(fake, lambda: backend.status(name))
        end = len(fake.requests)
        fake.finish_pod("default", f"{name}-worker-0", 1, message="boom")
        for i in range(1, pods):
            fake.finish_pod("default", f"{name}-worker-{i}")
        fake.set_job_phase("default", name, "Failed")
        follower.join(60)
        row["follow end"] = len(fake.requests) - end
        row["lines ok"] = float(len(lines) == n * pods)
        row["status Failed"] = count(fake, lambda: backend.status(name))
        return row
    finally:
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=3.0, help="seconds of streaming to measure")
    args = parser.parse_args()
    cols = ["pods", "submit", "status Pending", "status Running", "status Failed", "follow start",
            "follow /min", "follow end", "lines ok"]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(p, args.window, Path(tmp)) for p in (1, 8, 16)]
    print(" | ".join(f"{c:>14}" for c in cols))
    for row in rows:
        print(" | ".join(f"{row[c]:>14.0f}" if c != "lines ok" else f"{'yes' if row[c] else 'NO':>14}"
                         for c in cols))


if __name__ == "__main__":
    main()
