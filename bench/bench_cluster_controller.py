"""The pipeline controller against the REAL control plane: API requests and CPU per VitJob pipeline.

Starts (or reuses) `./dev.sh cluster up`, adds a KWOK node and the two PVCs in a fresh namespace,
submits ``--pipelines`` VitJobs with ``vitjob submit --then eval,export,infer310`` (the first one's
requests counted: the submit row), then runs ``vitjob.controller.loop.Controller`` in this process while
every stage's pods are ended with exit code 0 as soon as they run (KWOK's pod-exit stage), until every
VitJob is Completed. Unlike ``bench_controller.py`` (the fake API server, which completes a job at
once), real Volcano moves each job through Pending → Running → Completed, and the controller records
each phase it sees in the VitJob's status: this is what a cluster costs.

Requests are counted at urllib3 (the kubernetes client's transport), by method and resource (``get
pods/log``: the train stage's progress reads, ``vitjob.controller.loop``); CPU is
the user+system time of the controller's threads (read from /proc before they stop), not the
driver's (the main thread, which runs kubectl and parses its output).

Run: ``python bench/bench_cluster_controller.py [--pipelines 5]`` (prints a table; the cluster is left
running, the namespace and node are removed).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO))

from cluster_testing import Kube, start_cluster, wait_for  # noqa: E402

from bench.common import counting_requests  # noqa: E402

STAGES = ("train", "eval", "export", "infer310")
_RESOURCE = re.compile(
    r"/(vitjobs|jobs|events|leases|pods|podgroups|namespaces|queues|nodes|customresourcedefinitions)"
    r"(/[^/]+)?(/status|/log)?$"
)


def resource_of(method: str, path: str, query: str) -> str:
    match = _RESOURCE.search(path)
    kind = (match.group(1) + (match.group(3) or "")) if match else path
    verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method)
    if verb is None:
        verb = "watch" if "watch=true" in query else ("get" if match and match.group(2) else "list")
    return f"{verb} {kind}"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def threads_cpu_s(exclude: int) -> float:
    """User+system CPU of this process's threads but ``exclude`` (the driver: the main thread)."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        if int(task.name) == exclude:
            continue
        with contextlib.suppress(FileNotFoundError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / CLK_TCK


def vitjob_phases(kube: Kube, ns: str) -> dict[str, str]:
    items = kube.get("vitjobs.vitjob.io", namespace=ns)["items"]
    return {o["metadata"]["name"]: (o.get("status") or {}).get("phase", "") for o in items}


def end_running_pods(kube: Kube, ns: str, ended: set[str]) -> None:
    for pod in kube.get("pods", namespace=ns)["items"]:
        name = pod["metadata"]["name"]
        if pod["status"].get("phase") == "Running" and name not in ended:
            kube.end_pod(ns, name, 0)
            ended.add(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipelines", type=int, default=5, help="VitJobs run through all four stages")
    args = parser.parse_args()
    from vitjob.cli import main as vitjob_main
    from vitjob.controller.loop import Controller, ControllerOptions
    from vitjob.kube.client import RetryPolicy, connect

    kube = start_cluster()
    os.environ["KUBECONFIG"] = str(kube.kubeconfig)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    node = f"bench-cpu-{ns}"
    kube.kubectl("create", "namespace", ns)
    kube.kubectl("apply", "--server-side", "-f", str(REPO / "charts" / "vitjob" / "crds"))
    kube.add_pvcs(ns)
    kube.add_node(node, {})
    names = [f"p{i}" for i in range(args.pipelines)]
    try:
        for i, name in enumerate(names):
            argv = ["submit", "--hw", "cpu", "--cards", "1", "--name", name,
                    "--then", "eval,export,infer310", "--backend", "kubernetes", "-n", ns]
            with counting_requests(resource_of) as seen, contextlib.redirect_stdout(io.StringIO()):
                assert vitjob_main(argv) == 0
            if i == 0:
                submit = dict(seen)
        stop = threading.Event()
        api, _ = connect(None, None, ns, RetryPolicy(), 30.0)
        options = ControllerOptions(namespace=ns, health_port=None, resync_s=30.0)
        controller = Controller(api, ns, options)
        ended: set[str] = set()
        main_tid = threading.get_native_id()
        with counting_requests(resource_of) as seen:
            t0 = time.monotonic()
            thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
            thread.start()
            try:
                def done() -> bool:
                    end_running_pods(kube, ns, ended)
                    return set(vitjob_phases(kube, ns).values()) == {"Completed"}

                wait_for(done, 120 * len(STAGES), "every VitJob Completed", every_s=0.5)
                wall, cpu = time.monotonic() - t0, threads_cpu_s(exclude=main_tid)
            finally:
                stop.set()
                thread.join(30)
        counts = dict(seen)
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        kube.kubectl("delete", "node", node, "--wait=false", check=False)
        kube.kubectl("delete", "pv", "-l", "vitjob.io/e2e=true", "--wait=false", check=False)
    n = len(names)
    startup = {k: v for k, v in counts.items() if k.startswith(("list ", "watch "))}
    per = {k: v / n for k, v in sorted(counts.items()) if k not in startup}
    print(f"vitjob controller against the real control plane ({n} pipelines of 4 stages, KWOK pods)")
    print(f"\nsubmit --then (one pipeline): {sum(submit.values())} requests")
    for k, v in sorted(submit.items()):
        print(f"  {k:28} {v}")
    print("\ncontroller, per pipeline")
    for k, v in per.items():
        print(f"  {k:28} {v:.2f}")
    print(f"  {'requests/pipeline':28} {sum(per.values()):.2f}")
    print(f"  {'list+watch (start, re-watch)':28} {sum(startup.values())}")
    print(f"  {'CPU ms/pipeline':28} {1000 * cpu / n:.1f}  (controller threads)")
    print(f"  {'wall s':28} {wall:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
