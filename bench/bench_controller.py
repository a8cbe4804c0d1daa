"""The pipeline controller: API requests and CPU time per pipeline, memory with 1,000 pipelines tracked.

The controller runs as its own process (``vitjob controller``, as in the cluster) against the FAKE
API server in this process, so its CPU time and memory are its own (read from /proc). Pipelines are
seeded as ``submit --then`` leaves them; a stand-in for Volcano completes every job the controller
creates. Rows:

- requests/pipeline: what the controller sent for one train → eval → export → infer310 pipeline
  (after its start-up list+watch), by verb;
- CPU ms/pipeline: the controller's user+system CPU over those pipelines, divided by their number;
- RSS with 1,000 pipelines tracked, minus an idle controller's RSS, per pipeline.

Run: ``python bench/bench_controller.py [--pipelines 100] [--tracked 1000]`` (needs ../shared/crds or
$VITJOB_CRD). CRD validation in the fake is switched off: it is the fake's cost, not the controller's.
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_kube_api import FakeKubeAPI
from kube_testing import crd_dir, pipeline_definition, seed_pipeline, vitjob_crd

JOBS = "/apis/batch.volcano.sh/v1alpha1/namespaces/default/jobs"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ControllerProcess:
    """``vitjob controller`` in a child process, with its health port and /proc readings."""

    def __init__(self, kubeconfig: Path):
        self.port = free_port()
        code = "import sys; from vitjob.cli import main; sys.exit(main(sys.argv[1:]))"
        args = ["controller", "-n", "default", "--health-host", "127.0.0.1", "--health-port", str(self.port),
                "--resync", "600"]
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self, timeout_s: float = 120) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as resp:
                    return resp.read().decode().strip()
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("controller not ready")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def resource(path: str) -> str:
    kind = next((p for p in ("vitjobs", "jobs", "events", "leases") if f"/{p}" in path), path)
    return kind + "/status" if path.endswith("/status") else kind


def new_fake(tmp: Path, name: str) -> tuple[FakeKubeAPI, Path]:
    fake = FakeKubeAPI(crd_dir()).start()
    fake.install_crd(vitjob_crd())
    fake.add_queue("default")
    fake.validators.clear()
    return fake, fake.write_kubeconfig(tmp / name)


def complete(fake: FakeKubeAPI, name: str) -> None:
    fake.set_job_phase("default", name, "Running")
    fake.set_job_phase("default", name, "Completed")


def measure_throughput(n: int, tmp: Path) -> dict[str, float]:
    fake, kubeconfig = new_fake(tmp, "kc-throughput")
    try:
        names = [f"p{i}" for i in range(n)]
        for name in names:
            seed_pipeline(fake, pipeline_definition(name))
        ctl = ControllerProcess(kubeconfig)
        ctl.wait_ready()
        startup = len(fake.requests)
        cpu0, t0 = ctl.cpu_s(), time.monotonic()
        stop = threading.Event()

        def volcano() -> None:
            seen = startup
            while not stop.is_set():
                with fake.lock:
                    new, seen = fake.requests[seen:], len(fake.requests)
                for r in new:
                    if r.method == "POST" and r.path == JOBS:  # recorded before it is stored: wait
                        name = r.body["metadata"]["name"]
                        fake.wait_for(lambda n=name: fake.get("batch.volcano.sh", "jobs", n, "default")
                                      is not None, what=name)
                        complete(fake, name)
                stop.wait(0.005)

        helper = threading.Thread(target=volcano, daemon=True)
        helper.start()
        for name in names:
            complete(fake, f"{name}-train")
        fake.wait_for(
            lambda: all(
                (fake.get("vitjob.io", "vitjobs", x, "default").get("status") or {}).get("phase")
                == "Completed" for x in names),
            timeout=600, what="all pipelines Completed")
        wall, cpu = time.monotonic() - t0, ctl.cpu_s() - cpu0
        stop.set()
        helper.join()
        ctl.stop()
        verbs = collections.Counter(f"{r.verb} {resource(r.path)}" for r in fake.requests[startup:])
        row = {f"{k}/pipeline": v / n for k, v in sorted(verbs.items())}
        row["requests/pipeline"] = (len(fake.requests) - startup) / n
        row["start-up requests"] = startup
        row["CPU ms/pipeline"] = 1000 * cpu / n
        row["wall s"] = wall
        return row
    finally:
        fake.stop()


def measure_memory(tracked: int, tmp: Path) -> dict[str, float]:
    fake, kubeconfig = new_fake(tmp, "kc-idle")
    try:
        idle = ControllerProcess(kubeconfig)
        idle.wait_ready()
        time.sleep(0.5)
        idle_rss = idle.rss_mib()
        idle.stop()
    finally:
        fake.stop()
    fake, kubeconfig = new_fake(tmp, "kc-memory")
    try:
        t0 = time.monotonic()
        for i in range(tracked):
            seed_pipeline(fake, pipeline_definition(f"m{i}"))
        seeded = time.monotonic() - t0
        ctl = ControllerProcess(kubeconfig)
        t1 = time.monotonic()
        ready = ctl.wait_ready()
        sync_s = time.monotonic() - t1
        time.sleep(0.5)
        rss = ctl.rss_mib()
        ctl.stop()
    finally:
        fake.stop()
    return {
        "pipelines tracked": tracked,
        "idle RSS MiB": idle_rss,
        "RSS MiB": rss,
        "KiB/pipeline": (rss - idle_rss) * 1024 / tracked,
        "start+sync s": sync_s,
        "(seeding s)": seeded,
        "readyz": ready,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipelines", type=int, default=100, help="pipelines run through all stages")
    parser.add_argument("--tracked", type=int, default=1000, help="pipelines tracked for the memory row")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("throughput", measure_throughput(args.pipelines, Path(tmp))),
                ("memory", measure_memory(args.tracked, Path(tmp)))]
    print(f"vitjob controller against the fake API server ({args.pipelines} pipelines of 4 stages; "
          f"{args.tracked} tracked)")
    width = max(len(k) for _, row in rows for k in row)
    for title, row in rows:
        print(f"\n{title}")
        for key, value in row.items():
            text = f"{value:.2f}" if isinstance(value, float) else str(value)
            print(f"  {key.ljust(width)}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
