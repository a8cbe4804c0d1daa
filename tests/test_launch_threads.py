"""``vitjob launch`` gives each process its share of the pod's CPUs, read back from the running processes.

Each test starts ``vitjob launch`` with a CPU limit the test sets up for real — a cgroup with a CPU quota
(as root), a scheduler affinity, or none — and children that import MindSpore, apply the thread settings
the way ``vitjob train`` and the scheduler do (``vitjob.cputhreads.apply_cpu_threads``), report their
pid and MindSpore's dataset worker count (capped at the host's cores, which MindSpore requires), and
wait. The test then reads each child's
``/proc/PID/environ`` (``VITJOB_CPU_THREADS``, ``OMP_NUM_THREADS``), ``/proc/PID/cgroup`` and
``/proc/PID/status`` (``Cpus_allowed_list``) before letting them end. The expected share is the test's
own arithmetic on the limit it set: k CPUs over n processes, at least one thread; the scheduler one.

The parsing of cgroup files (v1 and v2, a container without a cgroup namespace, nested quotas) is
checked on hand-written ``/proc`` and cgroup trees in the kernel's documented formats.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vitjob import cputhreads
from vitjob.errors import UsageError
from vitjob.launch import cpus

LAUNCH = [sys.executable, "-c", "import sys; from vitjob.cli import main; sys.exit(main(sys.argv[1:]))",
          "launch", "--hw", "cpu"]
HOST_CORES = os.cpu_count() or 1
# A child: applies the thread settings as vitjob's processes do, reports, waits for TEST_RELEASE.
PROBE = (
    "import json, os, pathlib, time\n"
    "import mindspore as ms\n"
    "from vitjob.cputhreads import apply_cpu_threads, bind_to_cores\n"
    "apply_cpu_threads()\n"
    "import threading\n"
    "release = pathlib.Path(os.environ['TEST_RELEASE'])\n"
    "# a thread started before binding, as joining MindSpore's cluster starts its communication threads\n"
    "threading.Thread(target=lambda: [time.sleep(0.05) for _ in range(2400) if not release.exists()],\n"
    "                 daemon=True).start()\n"
    "if os.environ.get('MS_ROLE') != 'MS_SCHED': bind_to_cores()  # as vitjob train does once joined\n"
    "print(json.dumps({'pid': os.getpid(), 'role': os.environ.get('MS_ROLE'),\n"
    "                  'dataset_workers': ms.dataset.config.get_num_parallel_workers()}), flush=True)\n"
    "end = time.time() + 120\n"
    "while not pathlib.Path(os.environ['TEST_RELEASE']).exists() and time.time() < end: time.sleep(0.05)\n"
)


@dataclass
class Child:
    role: str  # MS_WORKER, MS_SCHED or "" (a single process)
    dataset_workers: int  # as the child's MindSpore reports it
    environ: dict[str, str]  # /proc/PID/environ
    cgroup: str  # /proc/PID/cgroup
    cpus_allowed: str  # Cpus_allowed_list of /proc/PID/status
    thread_cpus: set[str]  # the Cpus_allowed_list of each of its threads (/proc/PID/task/*/status)


def pod_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VITJOB_", "VC_", "VK_", "MS_", "RANK_", "OMP_"))}
    env.update(VITJOB_NUM_PODS="1", VITJOB_WORKDIR=str(tmp_path / "work"), PYTHONUNBUFFERED="1",
               VITJOB_SCHED_COMMAND=f"{sys.executable} -c {shlex.quote(PROBE)}",
               TEST_RELEASE=str(tmp_path / "release"), **extra)
    return env


def _proc_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _status_field(pid: int, name: str) -> str:
    return _status_field_of(Path(f"/proc/{pid}/status"), name)


def _thread_cpus(pid: int) -> set[str]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            found.add(_status_field_of(task / "status", "Cpus_allowed_list"))
    return found


def _status_field_of(path: Path, name: str) -> str:
    for line in path.read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path} has no {name}")


def run_pod(tmp_path: Path, cards: int, env: dict[str, str],
            preexec: Callable[[], None] | None = None) -> tuple[list[Child], str]:
    """Run a pod of ``cards`` processes; every child as read from /proc while it runs, and the pod's log."""
    expected = cards + (1 if cards > 1 else 0)  # a scheduler beside two or more workers
    launch = subprocess.Popen([*LAUNCH, "--cards-per-pod", str(cards), "--", sys.executable, "-c", PROBE],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=preexec)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in launch.stdout or []], daemon=True)
    reader.start()
    children: list[Child] = []
    try:
        deadline = time.monotonic() + 180
        while len(children) < expected:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                launch.kill()
                raise AssertionError(f"{len(children)} of {expected} children reported: "
                                     f"{launch.communicate()[1][-2000:]}") from None
            body = line.split("] ", 1)[-1]
            if body.startswith("{"):
                report = json.loads(body)
                pid = report["pid"]
                children.append(Child(report["role"] or "", report["dataset_workers"], _proc_environ(pid),
                                      Path(f"/proc/{pid}/cgroup").read_text(),
                                      _status_field(pid, "Cpus_allowed_list"), _thread_cpus(pid)))
    finally:
        Path(env["TEST_RELEASE"]).touch()
        _, stderr = launch.communicate(timeout=60)
    assert launch.returncode == 0, stderr[-2000:]
    return children, stderr


def threads_of(child: Child) -> tuple[str | None, str | None, int]:
    """(VITJOB_CPU_THREADS, OMP_NUM_THREADS) of the child's environment, and its dataset workers."""
    env = child.environ
    return env.get("VITJOB_CPU_THREADS"), env.get("OMP_NUM_THREADS"), child.dataset_workers


# ------------------------------------------------------------------------------------- real processes
@dataclass(frozen=True)
class CgroupUnderTest:
    path: Path
    version: int


@pytest.fixture
def cgroup_one_cpu() -> Iterator[CgroupUnderTest]:
    """A real cgroup limited to one CPU (quota = period), removed afterwards."""
    name = f"vitjob-test-{os.getpid()}"
    v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")
    if os.geteuid() != 0:
        pytest.skip("creating a cgroup with a CPU quota needs root")
    v2_controllers = v2 / "cgroup.subtree_control"
    if (v1 / "cpu.cfs_quota_us").is_file():
        group = CgroupUnderTest(v1 / name, 1)
    elif v2_controllers.is_file() and "cpu" in v2_controllers.read_text().split():
        group = CgroupUnderTest(v2 / name, 2)
    else:
        pytest.skip("no cgroup v1 cpu controller nor cgroup v2 with cpu enabled under /sys/fs/cgroup")
    try:
        group.path.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup at {group.path}: {exc}")
    try:
        if group.version == 1:
            (group.path / "cpu.cfs_period_us").write_text("100000")
            (group.path / "cpu.cfs_quota_us").write_text("100000")
        else:
            (group.path / "cpu.max").write_text("100000 100000")
        yield group
    finally:
        for _ in range(100):
            with contextlib.suppress(OSError):
                group.path.rmdir()
                break
            time.sleep(0.1)


def test_a_cgroup_quota_of_one_cpu_gives_the_process_one_thread(tmp_path: Path,
                                                               cgroup_one_cpu: CgroupUnderTest) -> None:
    procs = cgroup_one_cpu.path / "cgroup.procs"

    def enter() -> None:
        procs.write_text(str(os.getpid()))

    children, log = run_pod(tmp_path, 1, pod_env(tmp_path), preexec=enter)
    [child] = children
    assert f"/{cgroup_one_cpu.path.name}" in child.cgroup  # the child runs under the quota
    assert threads_of(child) == ("1", "1", 1)
    assert "CPU threads: 1 per process for 1 process(es) on 1 CPUs (cgroup v" in log


def test_an_affinity_of_one_core_gives_the_process_one_thread(tmp_path: Path) -> None:
    if HOST_CORES < 2:
        pytest.skip("needs a machine with two cores or more")
    children, log = run_pod(tmp_path, 1, pod_env(tmp_path), preexec=lambda: os.sched_setaffinity(0, {0}))
    [child] = children
    assert child.cpus_allowed == "0"
    assert threads_of(child) == ("1", "1", 1)
    assert "CPU threads: 1 per process for 1 process(es) on 1 CPUs (affinity 0)" in log


def test_processes_of_a_pod_share_its_cores_and_the_scheduler_gets_one(tmp_path: Path) -> None:
    children, log = run_pod(tmp_path, 2, pod_env(tmp_path))
    workers = [c for c in children if c.role == "MS_WORKER"]
    [sched] = [c for c in children if c.role == "MS_SCHED"]
    share = str(max(1, HOST_CORES // 2))
    assert len(workers) == 2
    assert [threads_of(w) for w in workers] == [(share, share, int(share))] * 2
    assert threads_of(sched) == ("1", "1", 1)
    assert f"CPU threads: {share} per process for 2 process(es) on {HOST_CORES} CPUs" in log
    # Every core of the machine, no cpuset of the pod's own and no VITJOB_CPU_PIN: nothing is bound.
    every = f"0-{HOST_CORES - 1}" if HOST_CORES > 1 else "0"
    assert all("VITJOB_CPU_CORES" not in c.environ for c in children)
    assert all(c.thread_cpus == {every} for c in children)
    assert "CPU binding: none (the pod may run on every core of the node" in log
    # MindSpore's heartbeats stay on: switched off (MS_DISABLE_HEARTBEAT=1) its exit-time teardown
    # crashed with SIGSEGV in 2 of 5 two-process runs here.
    assert all("MS_DISABLE_HEARTBEAT" not in c.environ for c in children)


def test_a_pod_that_is_given_the_machine_binds_each_process_to_cores_of_its_own(tmp_path: Path) -> None:
    if HOST_CORES < 2:
        pytest.skip("needs a machine with two cores or more")
    children, log = run_pod(tmp_path, 2, pod_env(tmp_path, VITJOB_CPU_PIN="1"))
    workers = sorted((c for c in children if c.role == "MS_WORKER"), key=lambda c: int(c.environ["RANK_ID"]))
    [sched] = [c for c in children if c.role == "MS_SCHED"]
    share = HOST_CORES // 2
    wanted = [list(range(i * share, (i + 1) * share)) for i in range(2)]  # sorted cores, in rank order
    texts = [str(w[0]) if len(w) == 1 else f"{w[0]}-{w[-1]}" for w in wanted]
    assert [w.environ.get("VITJOB_CPU_CORES") for w in workers] == [",".join(map(str, w)) for w in wanted]
    # every thread of each worker (MindSpore's pools included) runs on its own cores only
    assert [w.thread_cpus for w in workers] == [{t} for t in texts]
    every = f"0-{HOST_CORES - 1}"
    assert "VITJOB_CPU_CORES" not in sched.environ and sched.thread_cpus == {every}  # it mostly waits
    line = f"CPU binding: process 0 on core {texts[0]}, process 1 on core {texts[1]} (VITJOB_CPU_PIN=1)"
    assert line in log


def test_the_pods_own_settings_win(tmp_path: Path) -> None:
    children, log = run_pod(tmp_path, 2, pod_env(tmp_path, VITJOB_CPU_THREADS="3", OMP_NUM_THREADS="5",
                                                 VITJOB_CPU_PIN="0"))
    workers = [c for c in children if c.role == "MS_WORKER"]
    [sched] = [c for c in children if c.role == "MS_SCHED"]
    # MindSpore refuses more dataset workers than the host has cores
    assert [threads_of(w) for w in workers] == [("3", "5", min(3, HOST_CORES))] * 2
    assert threads_of(sched) == ("1", "5", 1)
    assert "CPU threads: 3 per process, as VITJOB_CPU_THREADS sets it" in log
    assert all("VITJOB_CPU_CORES" not in c.environ for c in children)
    assert "CPU binding: none (VITJOB_CPU_PIN=0)" in log


# ------------------------------------------------------------------------------------ reading cgroups
MOUNTINFO_V1 = (
    "25 20 0:22 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
    "26 20 0:23 {root} {mount} rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu,cpuacct\n"
)
MOUNTINFO_V2 = "30 20 0:26 {root} {mount} rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"


def fake_proc(tmp_path: Path, mountinfo: str, cgroup: str) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir(parents=True)
    (proc / "mountinfo").write_text(mountinfo)
    (proc / "cgroup").write_text(cgroup)
    return proc


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v1_quota_of_the_own_cgroup_and_the_tighter_parent(tmp_path: Path) -> None:
    mount = tmp_path / "cg" / "cpu,cpuacct"
    own = "4:memory:/x\n3:cpu,cpuacct:/kube/pod1/c\n"
    proc = fake_proc(tmp_path, MOUNTINFO_V1.format(root="/", mount=mount), own)
    for level, quota in (("", "-1"), ("kube", "-1"), ("kube/pod1", "250000"), ("kube/pod1/c", "-1")):
        write(mount / level / "cpu.cfs_quota_us", quota + "\n")
        write(mount / level / "cpu.cfs_period_us", "100000\n")
    limit = cpus.cgroup_cpu_limit(proc)
    assert limit is not None and limit[0] == 2.5 and "250000/100000" in limit[1] and "pod1" in limit[1]
    write(mount / "kube/pod1/c" / "cpu.cfs_quota_us", "150000\n")
    assert cpus.cgroup_cpu_limit(proc)[0] == 1.5  # type: ignore[index]


def test_v1_container_without_a_cgroup_namespace_reads_the_mounted_root(tmp_path: Path) -> None:
    # Docker without cgroupns: /proc/self/cgroup names the host's path, the mount root is that path.
    mount = tmp_path / "cg" / "cpu"
    mountinfo = MOUNTINFO_V1.format(root="/docker/abc", mount=mount)
    proc = fake_proc(tmp_path, mountinfo, "3:cpu,cpuacct:/docker/abc\n")
    write(mount / "cpu.cfs_quota_us", "50000\n")
    write(mount / "cpu.cfs_period_us", "100000\n")
    assert cpus.cgroup_cpu_limit(proc)[0] == 0.5  # type: ignore[index]
    other = fake_proc(tmp_path / "b", mountinfo, "3:cpu:/elsewhere\n")
    assert cpus.cgroup_cpu_limit(other)[0] == 0.5  # type: ignore[index]


def test_v2_cpu_max(tmp_path: Path) -> None:
    mount = tmp_path / "cg2"
    proc = fake_proc(tmp_path, MOUNTINFO_V2.format(root="/", mount=mount), "0::/kubepods/pod2\n")
    write(mount / "cpu.max", "max 100000\n")
    write(mount / "kubepods/pod2" / "cpu.max", "max 100000\n")
    assert cpus.cgroup_cpu_limit(proc) is None
    write(mount / "kubepods/pod2" / "cpu.max", "300000 100000\n")
    limit = cpus.cgroup_cpu_limit(proc)
    assert limit is not None and limit[0] == 3.0 and limit[1].startswith("cgroup v2 cpu.max 300000 100000")


def test_budget_is_the_smallest_limit_and_the_share_at_least_one() -> None:
    assert cpus.threads_per_process(8, 2) == 4
    assert cpus.threads_per_process(2.5, 2) == 1
    assert cpus.threads_per_process(0.5, 1) == 1
    budget = cpus.CpuBudget(6.0, "test")
    assert cpus.plan_threads({}, 3, budget).per_process == 2
    assert cpus.plan_threads({"VITJOB_CPU_THREADS": "5"}, 3, budget).per_process == 5
    assert cpus.plan_threads({"VITJOB_CPU_THREADS": "none"}, 3, budget).per_process == 2
    assert cpus.thread_env({"OMP_NUM_THREADS": "7"}, 2) == {"VITJOB_CPU_THREADS": "2"}


# ------------------------------------------------------------------------------------- binding plans
FULL = cpus.CpuBudget(4.0, "4 visible cores")


def test_binding_only_inside_cores_the_pod_owns() -> None:
    pin = {"VITJOB_CPU_PIN": "1"}
    # asked for: disjoint slices of the affinity, in order
    assert cpus.plan_pinning(pin, 2, 2, FULL, [0, 1, 2, 3], 4).cores == ((0, 1), (2, 3))
    # a cpuset of the pod's own (the kubelet's static CPU manager policy): bound inside it unasked
    own = cpus.CpuBudget(2.0, "affinity 4-5")
    plan = cpus.plan_pinning({}, 2, 1, own, [4, 5], 8)
    assert plan == cpus.PinPlan(((4,), (5,)), "the pod's own cpuset 4-5")
    # the node's every core, or a CPU quota on cores it shares with other pods: not bound unasked
    every = cpus.plan_pinning({}, 2, 2, FULL, [0, 1, 2, 3], 4)
    assert every.cores is None and "every core of the node" in every.reason
    quota = cpus.CpuBudget(2.0, "cgroup v2 cpu.max 200000 100000")
    shared = cpus.plan_pinning({}, 2, 1, quota, list(range(8)), 8)
    assert shared.cores is None and "a quota (cgroup v2 cpu.max 200000 100000)" in shared.reason
    assert cpus.plan_pinning(pin, 2, 1, quota, list(range(8)), 8).cores == ((0,), (1,))  # asked for
    # never: too few cores, one process, switched off
    few = cpus.plan_pinning(pin, 3, 1, FULL, [0, 1], 4)
    assert few.cores is None and few.reason == "3 processes x 1 threads need 3 cores, the pod may use 2"
    assert cpus.plan_pinning(pin, 1, 4, FULL, [0, 1, 2, 3], 4).cores is None
    assert cpus.plan_pinning({"VITJOB_CPU_PIN": "0"}, 2, 1, own, [4, 5], 8).cores is None


def test_an_unknown_binding_setting_says_what_to_set() -> None:
    with pytest.raises(UsageError, match=r"VITJOB_CPU_PIN='yes' is not understood: set it to 1 .* 0 .* auto"):
        cpus.plan_pinning({"VITJOB_CPU_PIN": "yes"}, 2, 1, FULL, [0, 1, 2, 3], 4)


def test_cores_from_the_environment() -> None:
    assert cputhreads.cores_from_env({"VITJOB_CPU_CORES": "2,3"}) == (2, 3)
    assert cputhreads.cores_from_env({"VITJOB_CPU_CORES": "0"}) == (0,)
    assert cputhreads.cores_from_env({"VITJOB_CPU_CORES": "1-3"}) is None  # not a form launch writes
    assert cputhreads.cores_from_env({}) is None
