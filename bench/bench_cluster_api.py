"""API requests that `vitjob submit` and `vitjob status` send to the REAL API server (the dev cluster).

Starts (or reuses) `./dev.sh cluster up`, adds one KWOK node with 8 NPUs and the two PVCs in a fresh
namespace, then runs the CLI in this process with every HTTP request counted at urllib3 (the
kubernetes client's transport), by method and path. Rows: submit of an 8-card Ascend train job;
status while it is Pending (gang waiting: PodGroup and events read), and Running.

Run: ``python bench/bench_cluster_api.py`` (prints a table; the cluster is left running).
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO))

from cluster_testing import start_cluster, wait_for  # noqa: E402

from bench.common import counting_requests  # noqa: E402


def count_requests(argv: list[str]) -> tuple[int, collections.Counter]:
    """Run ``vitjob ARGV`` in this process; return its exit code and the requests it sent."""
    from vitjob.cli import main

    with counting_requests() as seen, contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, seen


def main() -> int:
    kube = start_cluster()
    kubeconfig = kube.kubeconfig
    os.environ["KUBECONFIG"] = str(kubeconfig)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", ns)
    kube.add_pvcs(ns)
    node = f"bench-npu-{ns}"
    backend = ["--backend", "kubernetes", "-n", ns]
    rows = []
    try:
        code, sub = count_requests(["submit", "--hw", "ascend", "--cards", "8", "--name", "b", *backend])
        assert code == 0
        rows.append(("submit (ascend, 8 cards)", sub))
        # no node yet: Volcano keeps the PodGroup Pending and records why (pods come once it is Inqueue)
        wait_for(lambda: kube.get("podgroups", namespace=ns)["items"], 60, "the PodGroup")
        time.sleep(3)
        code, pending = count_requests(["status", "b-train", *backend])
        rows.append(("status, Pending (no node)", pending))
        kube.add_node(node, {"huawei.com/Ascend910": "8"})
        wait_for(
            lambda: any(
                p["status"].get("phase") == "Running" for p in kube.pods(ns, "volcano.sh/job-name=b-train")
            ),
            90,
            "Running",
        )
        code, running = count_requests(["status", "b-train", *backend])
        rows.append(("status, Running", running))
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        kube.kubectl("delete", "node", node, "--wait=false", check=False)
        kube.kubectl("delete", "pv", "-l", "vitjob.io/e2e=true", "--wait=false", check=False)
    print(f"{'command':32} {'requests':>8}  by request")
    for what, seen in rows:
        detail = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in sorted(seen.items()))
        print(f"{what:32} {sum(seen.values()):>8}  {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
