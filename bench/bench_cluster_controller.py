"""The pipeline controller against the REAL control plane: API requests and CPU per VitJob pipeline,
and the controller at scale (``--scale``).

Reuses the running ``./dev.sh cluster up`` cluster (or starts one), adds a KWOK node and the two PVCs
in a fresh namespace, submits ``--pipelines`` VitJobs with ``vitjob submit --then eval,export,infer310``
(the first one's requests counted: the submit row), then runs ``vitjob.controller.loop.Controller`` in
this process while every stage's pods are ended with exit code 0 as soon as they run (KWOK's pod-exit
stage), until every VitJob is Completed. Unlike ``bench_controller.py`` (the fake API server, which
completes a job at once), real Volcano moves each job through Pending → Running → Completing →
Completed, and the controller records what it sees in the VitJob's status: this is what a cluster costs.

Requests are counted at urllib3 (the kubernetes client's transport), by method and resource; every
request but the list and watch requests of the controller's two watches (VitJobs, Volcano Jobs) counts
for the pipelines, among them ``list pods`` (a completed stage's outputs) and ``get pods/log`` (the
train stage's progress). CPU is the user+system time of the controller's threads (read from /proc
before they stop), not the driver's (the main thread, which runs kubectl and parses its output).
``--profile FILE`` runs each controller thread under cProfile, timed by the thread's CPU clock (so
waiting for the API server counts nothing), writes the merged stats to FILE and prints the top
functions (cProfile slows Python code down: take CPU figures from runs without it).

``--scale N`` (with ``--running M``): N VitJobs on the real control plane, N - M of them Completed
(created with a Completed status, as a controller leaves them) and M submitted and running their train
stage (KWOK pods Running), then ``vitjob controller`` started as its own process: the time from its
start to /readyz (caches synced) and to every running pipeline's first reconcile recorded on the API
server (its train job's phase Running in the VitJob's status), its RSS and CPU; then the M pipelines
run through all four stages (pods ended as above) and its requests per pipeline are read from its
/metrics. CPU seconds of kube-apiserver, etcd, Volcano's controller and scheduler and KWOK are printed
for each step (read from /proc: the cluster runs on this machine).

Run: ``python bench/bench_cluster_controller.py [--pipelines 20] [--profile FILE]`` or
``python bench/bench_cluster_controller.py --scale 1000 --running 100`` (prints a table; the cluster is
left running, the namespace and node are removed). Run under ``flock /tmp/vitjob-e2e.lock`` where
others use the cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO))

from cluster_testing import CLUSTER_PY, Kube, start_cluster, wait_for  # noqa: E402

from bench.common import counting_requests  # noqa: E402

STAGES = ("train", "eval", "export", "infer310")
_RESOURCE = re.compile(
    r"/(vitjobs|jobs|events|leases|pods|podgroups|namespaces|queues|nodes|customresourcedefinitions)"
    r"(/[^/]+)?(/status|/log)?$"
)
# The controller's two watches: their list and watch requests are start-up (and re-watch) cost.
WATCHES = ("list vitjobs", "watch vitjobs", "list jobs", "watch jobs")
# Every stage's pods on the KWOK node (label type=kwok): the cluster may have a real node too, which
# would run the image for real.
KWOK_ONLY = ("--set", "node_selector.type=kwok")
# The cluster's processes whose CPU time --scale reports (/proc/PID/comm, at most 15 characters).
CLUSTER_PROCESSES = (
    "kube-apiserver", "etcd", "vc-controller-m", "vc-scheduler", "vc-webhook-mana", "kwok-controller"
)


def resource_of(method: str, path: str, query: str) -> str:
    match = _RESOURCE.search(path)
    kind = (match.group(1) + (match.group(3) or "")) if match else path
    verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method)
    if verb is None:
        verb = "watch" if "watch=true" in query else ("get" if match and match.group(2) else "list")
    return f"{verb} {kind}"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(stat: Path) -> int:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)


def threads_cpu_s(exclude: int) -> float:
    """User+system CPU of this process's threads but ``exclude`` (the driver: the main thread)."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        if int(task.name) == exclude:
            continue
        with contextlib.suppress(FileNotFoundError):
            total += _cpu_ticks(task / "stat")
    return total / CLK_TCK


def process_cpu_s(pid: int) -> float:
    """User+system CPU of process ``pid`` (0.0 once it is gone)."""
    try:
        return _cpu_ticks(Path(f"/proc/{pid}/stat")) / CLK_TCK
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """``field`` of /proc/PID/status (VmRSS: resident now; VmHWM: its peak) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def cluster_pids() -> dict[str, int]:
    """comm → pid of the cluster's processes on this machine (``CLUSTER_PROCESSES``)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                comm = (proc / "comm").read_text().strip()
                if comm in CLUSTER_PROCESSES:
                    found[comm] = int(proc.name)
    return found


def cluster_cpu(pids: dict[str, int]) -> dict[str, float]:
    return {comm: process_cpu_s(pid) for comm, pid in pids.items()}


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> str:
    return ", ".join(f"{k} {after[k] - before.get(k, 0.0):.1f}" for k in sorted(after))


def connect_cluster() -> Kube:
    """The running development cluster as it is (KWOK pods run no image, so the CPU image of this
    checkout is not rebuilt), or ``start_cluster()`` when none runs."""
    status = subprocess.run([sys.executable, str(CLUSTER_PY), "status"], capture_output=True, text=True)
    lines = status.stdout.strip().splitlines()
    if status.returncode != 0 or not lines or not lines[-1].startswith("KUBECONFIG="):
        return start_cluster()
    build = subprocess.run(
        [sys.executable, str(CLUSTER_PY), "build"], capture_output=True, text=True, check=True
    )
    return Kube(Path(lines[-1].removeprefix("KUBECONFIG=")), Path(build.stdout.strip().splitlines()[-1]))


def vitjob_phases(kube: Kube, ns: str) -> dict[str, str]:
    items = kube.get("vitjobs.vitjob.io", namespace=ns)["items"]
    return {o["metadata"]["name"]: (o.get("status") or {}).get("phase", "") for o in items}


def end_running_pods(kube: Kube, ns: str, ended: set[str]) -> None:
    """End every Running pod not ended yet with exit code 0 (``Kube.end_pod``'s annotation, one kubectl
    call for all of them)."""
    names = [
        pod["metadata"]["name"]
        for pod in kube.get("pods", namespace=ns)["items"]
        if pod["status"].get("phase") == "Running" and pod["metadata"]["name"] not in ended
    ]
    if names:
        kube.kubectl("annotate", "--overwrite", "pod", *names, "-n", ns, "vitjob.io/exit-code=0")
        ended.update(names)


def submit_pipelines(names: list[str], ns: str) -> dict[str, int]:
    """``vitjob submit --then eval,export,infer310`` of each name; the first one's requests."""
    from vitjob.cli import main as vitjob_main

    submit: dict[str, int] = {}
    for i, name in enumerate(names):
        argv = ["submit", "--hw", "cpu", "--cards", "1", "--name", name, *KWOK_ONLY,
                "--then", "eval,export,infer310", "--backend", "kubernetes", "-n", ns]
        with counting_requests(resource_of) as seen, contextlib.redirect_stdout(io.StringIO()):
            assert vitjob_main(argv) == 0
        if i == 0:
            submit = dict(seen)
    return submit


def run_until_completed(
    kube: Kube, ns: str, what: str, timeout_s: float, completed: Callable[[], bool] | None = None
) -> None:
    """End every Running pod (exit code 0) until ``completed()`` (default: every VitJob of ``ns`` is
    Completed)."""
    ended: set[str] = set()

    def done() -> bool:
        end_running_pods(kube, ns, ended)
        if completed is not None:
            return completed()
        return set(vitjob_phases(kube, ns).values()) == {"Completed"}

    wait_for(done, timeout_s, what, every_s=0.5)


@contextlib.contextmanager
def profiled_threads(into: list[cProfile.Profile]) -> Iterator[None]:
    """Run every thread started inside the block under its own cProfile profiler (kept in ``into``)."""
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profiler = cProfile.Profile(time.thread_time)  # CPU time: waiting for the network counts 0
        into.append(profiler)
        profiler.enable()
        try:
            original(self)
        finally:
            profiler.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    try:
        yield
    finally:
        threading.Thread.run = original  # type: ignore[method-assign]


def print_profile(profilers: list[cProfile.Profile], path: str) -> None:
    stats = pstats.Stats(*profilers)  # type: ignore[arg-type]
    stats.dump_stats(path)
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(path, stream=out).strip_dirs().sort_stats(order).print_stats(30)
        print(f"\ncProfile of the controller threads, by {order} (all threads merged; {path})")
        print(out.getvalue().split("\n", 4)[-1] if "function calls" in out.getvalue() else out.getvalue())


def run_through(kube: Kube, ns: str, pipelines: int, profile: str | None) -> int:
    """The per-pipeline figures: ``pipelines`` VitJobs through four stages, the controller in-process."""
    from vitjob.controller.loop import Controller, ControllerOptions
    from vitjob.kube.client import RetryPolicy, connect

    names = [f"p{i}" for i in range(pipelines)]
    submit = submit_pipelines(names, ns)
    stop = threading.Event()
    api, _ = connect(None, None, ns, RetryPolicy(), 30.0)
    options = ControllerOptions(namespace=ns, health_port=None, resync_s=30.0)
    controller = Controller(api, ns, options)
    main_tid = threading.get_native_id()
    profilers: list[cProfile.Profile] = []
    # (the driver starts no thread meanwhile: every thread profiled is the controller's)
    with counting_requests(resource_of) as seen, (
        profiled_threads(profilers) if profile else contextlib.nullcontext()
    ):
        t0 = time.monotonic()
        thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
        thread.start()
        try:
            run_until_completed(kube, ns, "every VitJob Completed", 120 * len(STAGES))
            wall, cpu = time.monotonic() - t0, threads_cpu_s(exclude=main_tid)
        finally:
            stop.set()
            thread.join(30)
    counts = dict(seen)
    n = len(names)
    startup = {k: v for k, v in counts.items() if k in WATCHES}
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
    print(f"  {'CPU ms/pipeline':28} {1000 * cpu / n:.1f}  (controller threads"
          f"{', under cProfile' if profile else ''})")
    print(f"  {'reconciles/pipeline':28} {controller.stats.reconciles / n:.1f}")
    print(f"  {'wall s':28} {wall:.1f}")
    if profile:
        print_profile(profilers, profile)
    return 0


# ----------------------------------------------------------------------------------------- scale
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def request_counts(metrics: str) -> dict[str, float]:
    """``verb resource`` → count, from ``vitjob_controller_api_requests_total`` in /metrics text."""
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        m = re.match(r'vitjob_controller_api_requests_total\{(.*)\} (\S+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            key = f"{labels['verb']} {labels['resource'].split('.')[0]}"  # plural[/sub].group → plural
            counts[key] = counts.get(key, 0.0) + float(m.group(2))
    return counts


def create_completed(api: Any, ns: str, names: list[str]) -> None:
    """VitJobs with a Completed status (every stage Completed), as a controller leaves them: a create
    and a status write each (no Events, no jobs: nothing of theirs is left to reconcile)."""
    from vitjob.api.spec import JobSpec
    from vitjob.api.status import PipelinePhase, StageState
    from vitjob.backends.kubernetes.store import record_from_vitjob, status_after
    from vitjob.kube.times import time_text
    from vitjob.pipeline.define import define_pipeline
    from vitjob.pipeline.model import UpdatePipeline
    from vitjob.render.manifests import render_vitjob

    coords = ("vitjob.io", "v1alpha1", ns, "vitjobs")
    done = UpdatePipeline(
        {s: StageState.COMPLETED for s in STAGES},
        PipelinePhase.COMPLETED,
        f"all {len(STAGES)} stages completed ({', '.join(STAGES)})",
        job_phases={s: "Completed" for s in STAGES},
        outputs={"eval": {"accuracy": 0.9876, "top1_correct": 9876, "samples": 10000}},
    )

    def one(name: str) -> None:
        spec = JobSpec(name=name, hw="cpu", cards=1, namespace=ns, node_selector={"type": "kwok"})
        definition = define_pipeline(spec, STAGES[1:])
        body = render_vitjob(name=name, namespace=ns, part_of=definition.part_of, spec=definition.spec)
        created = json.loads(api.custom.create_namespaced_custom_object(
            *coords, body, _preload_content=False).data)
        status = status_after(record_from_vitjob(created), done, time_text())
        api.custom.patch_namespaced_custom_object_status(
            *coords, name, {"status": status}, _preload_content=False,
            _content_type="application/merge-patch+json",
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))


def statuses(api: Any, ns: str, names: set[str]) -> list[dict[str, Any]]:
    """The status of each VitJob of ``ns`` named in ``names`` (one list request, selected by their
    instance label: not the other VitJobs, so that the driver's polling loads the API server less)."""
    from vitjob.constants import LABEL_INSTANCE

    selector = f"{LABEL_INSTANCE} in ({','.join(sorted(names))})"
    listed = json.loads(api.custom.list_namespaced_custom_object(
        "vitjob.io", "v1alpha1", ns, "vitjobs", label_selector=selector, _preload_content=False
    ).data)["items"]
    return [o.get("status") or {} for o in listed if o["metadata"]["name"] in names]


def recorded_running(api: Any, ns: str, names: set[str]) -> int:
    """How many of ``names`` record their train job's phase as Running (or later) in their status."""
    return sum(
        1 for st in statuses(api, ns, names)
        if (st.get("stages") or [{}])[0].get("phase") not in (None, "Pending")
    )


def scale(kube: Kube, ns: str, total: int, running: int) -> int:
    """``total`` VitJobs, ``running`` of them running; ``vitjob controller`` as its own process."""
    from vitjob.kube.client import RetryPolicy, connect

    api, _ = connect(None, None, ns, RetryPolicy(), 30.0)
    pids = cluster_pids()
    c0 = cluster_cpu(pids)
    t = time.monotonic()
    create_completed(api, ns, [f"done{i}" for i in range(total - running)])
    created_s = time.monotonic() - t
    c1 = cluster_cpu(pids)
    live = [f"run{i}" for i in range(running)]
    t = time.monotonic()
    submit_pipelines(live, ns)
    submitted_s = time.monotonic() - t
    wait_for(lambda: len([p for p in kube.get("pods", namespace=ns)["items"]
                          if p["status"].get("phase") == "Running"]) == running,
             60 + running, f"the {running} train pods Running")
    c2 = cluster_cpu(pids)
    port = free_port()
    exe = Path(sys.executable).parent / "vitjob"
    cmd = [str(exe), "controller", "-n", ns, "--health-port", str(port), "--health-host", "127.0.0.1",
           "--resync", "30"]
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    # Its INFO lines go to a file: a pipe that nobody reads meanwhile would block it.
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=kube.env(), stdout=subprocess.DEVNULL, stderr=log, text=True)
        try:
            wait_for(lambda: http_get(base + "/readyz")[0] == 200, 300, "the controller ready", every_s=0.05)
            ready_s, ready_rss = time.monotonic() - t0, memory_mib(proc.pid)
            names = set(live)
            wait_for(lambda: recorded_running(api, ns, names) == running, 300,
                     "every running pipeline reconciled", every_s=0.1)
            reconciled_s, reconciled_rss = time.monotonic() - t0, memory_mib(proc.pid)
            start_cpu = process_cpu_s(proc.pid)
            start_requests = request_counts(http_get(base + "/metrics")[1])
            c3 = cluster_cpu(pids)
            t = time.monotonic()
            run_until_completed(
                kube, ns, "every running VitJob Completed", 120 * len(STAGES) + 10 * running,
                lambda: all(st.get("phase") == "Completed" for st in statuses(api, ns, names)),
            )
            through_s = time.monotonic() - t
            c4 = cluster_cpu(pids)
            end_requests = request_counts(http_get(base + "/metrics")[1])
            end_cpu, peak = process_cpu_s(proc.pid), memory_mib(proc.pid, "VmHWM")
            end_rss = memory_mib(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.seek(0)
            err = log.read()
    errors = [line for line in err.splitlines() if line.startswith("error:") or "Traceback" in line]
    per = {k: v / running for k, v in sorted(end_requests.items()) if k not in WATCHES}
    print(f"vitjob controller at scale on the real control plane: {total} VitJobs "
          f"({total - running} Completed, {running} running through 4 stages, KWOK pods)")
    print(f"\n  {'create the Completed ones s':34} {created_s:.1f}  (2 requests each, 8 threads)")
    print(f"  {'submit the running ones s':34} {submitted_s:.1f}")
    print(f"  {'start → /readyz (synced) s':34} {ready_s:.2f}  (RSS {ready_rss:.0f} MiB)")
    print(f"  {'start → all first reconciles s':34} {reconciled_s:.2f}  (RSS {reconciled_rss:.0f} MiB; "
          f"{running} Running phases recorded)")
    print(f"  {'controller CPU s at that point':34} {start_cpu:.2f}")
    startup = ", ".join(f"{k} {v:.0f}" for k, v in sorted(start_requests.items()))
    print(f"  {'start-up requests':34} {startup}")
    print(f"  {'run-through wall s':34} {through_s:.1f}")
    print(f"  {'controller CPU ms/pipeline':34} {1000 * (end_cpu - start_cpu) / running:.1f}  "
          "(run-through only)")
    print(f"  {'RSS at the end / peak MiB':34} {end_rss:.0f} / {peak:.0f}")
    print("\n  requests per running pipeline (start-up write included)")
    for k, v in per.items():
        print(f"    {k:32} {v:.2f}")
    print(f"    {'requests/pipeline':32} {sum(per.values()):.2f}")
    watches = sum(v for k, v in end_requests.items() if k in WATCHES)
    print(f"    {'list+watch (start, re-watch)':32} {watches:.0f}")
    print("\n  cluster CPU s (" + ", ".join(sorted(pids)) + ")")
    print(f"    creating the Completed VitJobs:  {cpu_delta(c0, c1)}")
    print(f"    submitting, pods to Running:     {cpu_delta(c1, c2)}")
    print(f"    controller start-up:             {cpu_delta(c2, c3)}")
    print(f"    run-through:                     {cpu_delta(c3, c4)}")
    if "kube-apiserver" in pids:
        print(f"    kube-apiserver RSS now MiB:      {memory_mib(pids['kube-apiserver']):.0f}")
    if errors:
        print(f"\n  controller errors ({len(errors)}): " + " | ".join(errors[:5]))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipelines", type=int, default=5, help="VitJobs run through all four stages")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the controller threads into FILE")
    parser.add_argument("--scale", type=int, metavar="N", help="N VitJobs present (see the module doc)")
    parser.add_argument("--running", type=int, default=100, help="--scale: of them, running (default 100)")
    args = parser.parse_args()
    if args.scale is not None and not 0 < args.running <= args.scale:
        parser.error("--running must be between 1 and --scale")

    kube = connect_cluster()
    os.environ["KUBECONFIG"] = str(kube.kubeconfig)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    node = f"bench-cpu-{ns}"
    kube.kubectl("create", "namespace", ns)
    kube.kubectl("apply", "--server-side", "-f", str(REPO / "charts" / "vitjob" / "crds"))
    kube.add_pvcs(ns)
    kube.add_node(node, {})
    run: Callable[[], int]
    if args.scale is not None:
        run = lambda: scale(kube, ns, args.scale, args.running)  # noqa: E731
    else:
        run = lambda: run_through(kube, ns, args.pipelines, args.profile)  # noqa: E731
    try:
        return run()
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        kube.kubectl("delete", "node", node, "--wait=false", check=False)
        pvs = [f"{ns}-{claim}" for claim in ("vitjob-data", "vitjob-output")]  # add_pvcs' names
        kube.kubectl("delete", "pv", *pvs, "--wait=false", check=False)


if __name__ == "__main__":
    sys.exit(main())
