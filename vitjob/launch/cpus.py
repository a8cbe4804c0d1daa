"""How many CPUs a pod owns, and how many threads each of its processes gets.

This module owns:
- reading this process's CPU budget: the cgroup CPU quota (v2 ``cpu.max``; v1 ``cpu.cfs_quota_us`` /
  ``cpu.cfs_period_us``), the tightest one on the path from the process's cgroup up to the mount's root,
  found through ``/proc/self/cgroup`` and ``/proc/self/mountinfo`` as container runtimes mount it; the
  scheduler affinity (``sched_getaffinity``: a cpuset or ``taskset``); else the visible cores. The budget
  is the smallest of them. MindSpore itself sizes its thread pools from the host's core count
  (``std::thread::hardware_concurrency``), whatever the pod's limit;
- dividing the budget among a pod's training processes (``threads_per_process``);
- the environment that carries each process's share: ``VITJOB_CPU_THREADS`` (read back by
  ``vitjob.cputhreads``: ``apply_cpu_threads`` gives it to MindSpore's CPU kernels, and the input pipeline
  uses it for its workers) and ``OMP_NUM_THREADS``. A value the pod already sets wins;
- which cores each training process binds itself to (``plan_pinning``, ``VITJOB_CPU_PIN``): MindSpore's
  CPU runtime keeps a few busy threads per process whatever it is told, and two processes sharing every
  core push each other's threads around; bound to disjoint cores they do not. It binds only inside cores
  the pod owns: a cpuset of its own (the kubelet's static CPU manager, ``taskset``), or the whole machine
  when whoever starts the pod says so with ``VITJOB_CPU_PIN=1`` (the local backend, for a job of one pod).
  On a shared node without a cpuset, binding every pod's first process to the same first core would be
  worse than none, so it does not bind there.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vitjob.cputhreads import ENV_CPU_THREADS, threads_from_env
from vitjob.errors import UsageError

ENV_OMP_THREADS = "OMP_NUM_THREADS"
ENV_CPU_PIN = "VITJOB_CPU_PIN"  # "1": bind each training process to cores of its own; "0": never; "auto"
_PIN_MODES = {"1": "on", "true": "on", "on": "on", "0": "off", "false": "off", "off": "off", "auto": "auto",
              "": "auto"}
SCHEDULER_THREADS = 1  # MindSpore's scheduler only serves the cluster's topology


@dataclass(frozen=True)
class CpuBudget:
    """The CPUs this process may use, and where that number comes from."""

    cpus: float
    source: str  # e.g. "cgroup v1 quota 150000/100000 us", "affinity 0-3", "8 visible cores"


@dataclass(frozen=True)
class ThreadPlan:
    """The threads of each process of a pod, and why."""

    budget: CpuBudget
    processes: int
    per_process: int  # MindSpore CPU kernels, OpenMP and input-pipeline workers of one process
    user_set: bool  # the pod's own VITJOB_CPU_THREADS decided it

    def describe(self) -> str:
        """One line for the pod's log."""
        if self.user_set:
            return (f"CPU threads: {self.per_process} per process, as {ENV_CPU_THREADS} sets it "
                    f"(the pod has {_cpus_text(self.budget.cpus)} CPUs: {self.budget.source})")
        return (f"CPU threads: {self.per_process} per process for {self.processes} process(es) on "
                f"{_cpus_text(self.budget.cpus)} CPUs ({self.budget.source}); the scheduler gets "
                f"{SCHEDULER_THREADS}")


def _cpus_text(cpus: float) -> str:
    return f"{cpus:g}"


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` (``"max 100000"``: no limit → None)."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    period = int(fields[1]) if len(fields) > 1 else 100000
    return int(fields[0]) / period if period > 0 else None


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` (quota -1 → None)."""
    quota, period = int(quota_text.strip()), int(period_text.strip())
    return quota / period if quota > 0 and period > 0 else None


@dataclass(frozen=True)
class CgroupMount:
    version: int  # 1 or 2
    root: str  # the cgroup path mounted at ``mount_point``
    mount_point: Path


def cgroup_mounts(mountinfo: str) -> list[CgroupMount]:
    """The cgroup v2 mounts and the v1 mounts of the ``cpu`` controller in ``/proc/self/mountinfo``."""
    mounts = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        root, mount_point = fields[3], Path(fields[4].replace("\\040", " "))
        if tail[0] == "cgroup2":
            mounts.append(CgroupMount(2, root, mount_point))
        elif tail[0] == "cgroup" and "cpu" in tail[2].split(","):
            mounts.append(CgroupMount(1, root, mount_point))
    return mounts


def cgroup_paths(proc_cgroup: str) -> dict[int, str]:
    """This process's cgroup path per version from ``/proc/self/cgroup`` (v1: the ``cpu`` controller's)."""
    paths: dict[int, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "" and parts[0] == "0":
            paths.setdefault(2, path)
        elif "cpu" in controllers.split(","):
            paths[1] = path
    return paths


def _levels(mount: CgroupMount, path: str) -> list[Path]:
    """The cgroup directories from the process's own up to the mount point (a path outside the mounted
    root, as in a container without a cgroup namespace, leaves only the mount point)."""
    root = mount.root.rstrip("/")
    if path != root and not path.startswith(root + "/"):
        return [mount.mount_point]
    rel = path[len(root):].strip("/")
    parts = rel.split("/") if rel else []
    return [mount.mount_point.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def level_limit(version: int, level: Path) -> tuple[float, str] | None:
    """The CPU quota one cgroup directory sets, and how it reads; None without one."""
    if version == 2:
        text = _read(level / "cpu.max")
        limit = parse_cpu_max(text) if text is not None else None
        return (limit, f"cgroup v2 cpu.max {text.strip()} ({level})") if limit and text else None
    quota, period = _read(level / "cpu.cfs_quota_us"), _read(level / "cpu.cfs_period_us")
    if quota is None or period is None:
        return None
    limit = parse_cfs(quota, period)
    return (limit, f"cgroup v1 quota {quota.strip()}/{period.strip()} us ({level})") if limit else None


def cgroup_cpu_limit(proc: Path = Path("/proc/self")) -> tuple[float, str] | None:
    """The tightest cgroup CPU quota of the process whose ``/proc`` entry is ``proc``, and where it is set."""
    mountinfo, own = _read(proc / "mountinfo"), _read(proc / "cgroup")
    if mountinfo is None or own is None:
        return None
    paths = cgroup_paths(own)
    limits = [
        found
        for mount in cgroup_mounts(mountinfo) if mount.version in paths
        for level in _levels(mount, paths[mount.version])
        if (found := level_limit(mount.version, level)) is not None
    ]
    return min(limits, key=lambda item: item[0]) if limits else None


def affinity_cpus() -> list[int] | None:
    """The cores this process may run on (``sched_getaffinity``), None where the OS has no such call."""
    getter = getattr(os, "sched_getaffinity", None)
    return sorted(getter(0)) if getter is not None else None


def _ranges(cores: list[int]) -> str:
    spans: list[str] = []
    start = prev = cores[0]
    for core in [*cores[1:], -2]:
        if core != prev + 1:
            spans.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = core
        prev = core
    return ",".join(spans)


def pod_cpus(proc: Path = Path("/proc/self")) -> CpuBudget:
    """This process's CPU budget: the smallest of its cgroup quota, its affinity and the visible cores."""
    visible = os.cpu_count() or 1
    budget = CpuBudget(float(visible), f"{visible} visible cores")
    cores = affinity_cpus()
    if cores and len(cores) < budget.cpus:
        budget = CpuBudget(float(len(cores)), f"affinity {_ranges(cores)}")
    quota = cgroup_cpu_limit(proc)
    if quota is not None and quota[0] < budget.cpus:
        budget = CpuBudget(quota[0], quota[1])
    return budget


def threads_per_process(cpus: float, processes: int) -> int:
    """Each of ``processes``' whole share of ``cpus`` (at least one thread)."""
    return max(1, math.floor(cpus / max(processes, 1) + 1e-9))


def plan_threads(env: Mapping[str, str], processes: int, budget: CpuBudget | None = None) -> ThreadPlan:
    """The threads of each of a pod's ``processes`` training processes: the pod's own
    ``VITJOB_CPU_THREADS`` if it sets one, else their share of ``budget`` (``pod_cpus()`` by default)."""
    budget = budget or pod_cpus()
    user = threads_from_env(env)
    if user is not None:
        return ThreadPlan(budget, processes, user, True)
    return ThreadPlan(budget, processes, threads_per_process(budget.cpus, processes), False)


def thread_env(env: Mapping[str, str], threads: int) -> dict[str, str]:
    """The variables a child needs to run ``threads`` threads, leaving out those ``env`` already sets."""
    wanted = {ENV_CPU_THREADS: str(threads), ENV_OMP_THREADS: str(threads)}
    return {k: v for k, v in wanted.items() if not env.get(k, "").strip()}


@dataclass(frozen=True)
class PinPlan:
    """The cores each training process is bound to (None: none is bound), and why."""

    cores: tuple[tuple[int, ...], ...] | None
    reason: str

    def describe(self) -> str:
        """One line for the pod's log."""
        if self.cores is None:
            return f"CPU binding: none ({self.reason})"
        each = ", ".join(f"process {i} on core {_ranges(list(cores))}" for i, cores in enumerate(self.cores))
        return f"CPU binding: {each} ({self.reason})"


def pin_mode(env: Mapping[str, str]) -> str:
    """``VITJOB_CPU_PIN`` as ``on``, ``off`` or ``auto`` (unset)."""
    raw = env.get(ENV_CPU_PIN, "").strip().lower()
    if raw not in _PIN_MODES:
        raise UsageError(f"{ENV_CPU_PIN}={env[ENV_CPU_PIN]!r} is not understood: set it to 1 (bind each "
                         f"training process to cores of its own), 0 (never bind) or auto, or unset it")
    return _PIN_MODES[raw]


def plan_pinning(env: Mapping[str, str], processes: int, per_process: int, budget: CpuBudget,
                 cores: list[int] | None, host_cores: int) -> PinPlan:
    """Disjoint cores for each of ``processes`` processes of ``per_process`` threads, out of ``cores`` (the
    pod's affinity), when ``VITJOB_CPU_PIN`` asks for it or the pod owns a cpuset of its own (``auto``)."""
    mode = pin_mode(env)
    if mode == "off":
        return PinPlan(None, f"{ENV_CPU_PIN}={env[ENV_CPU_PIN].strip()}")
    if processes < 2:
        return PinPlan(None, "one process")
    if not cores:
        return PinPlan(None, "this system cannot bind processes to cores")
    need = processes * per_process
    if len(cores) < need:
        return PinPlan(None, f"{processes} processes x {per_process} threads need {need} cores, "
                             f"the pod may use {len(cores)}")
    if mode == "auto":
        if budget.cpus < len(cores):
            return PinPlan(None, f"the pod's CPUs are a quota ({budget.source}) on cores it shares; "
                                 f"{ENV_CPU_PIN}=1 binds anyway")
        if len(cores) >= host_cores:
            return PinPlan(None, f"the pod may run on every core of the node, not a cpuset of its own; "
                                 f"{ENV_CPU_PIN}=1 binds anyway")
        reason = f"the pod's own cpuset {_ranges(cores)}"
    else:
        reason = f"{ENV_CPU_PIN}={env[ENV_CPU_PIN].strip()}"
    slices = tuple(tuple(cores[i * per_process:(i + 1) * per_process]) for i in range(processes))
    return PinPlan(slices, reason)
