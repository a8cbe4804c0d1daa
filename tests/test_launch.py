"""``vitjob launch`` end to end with trivial children (tiny Python/bash commands, no MindSpore).

Each test runs ``vitjob launch`` as its own process with the pod environment Volcano would give it
(paths overridden through the ``VITJOB_*`` variables), and the scheduler child replaced through
``VITJOB_SCHED_COMMAND``. Checked: the environment of every child, the ``[rank N]`` prefix, the Ascend rank
table gathered by two concurrent pods, failure propagation and SIGTERM forwarding with no process of the
launch's tree surviving (psutil).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from vitjob import constants as c
from vitjob.launch.ranktable import format_downward_annotations

LAUNCH = [
    sys.executable,
    "-c",
    "import sys; from vitjob.cli import main; sys.exit(main(sys.argv[1:]))",
    "launch",
]
ENV_KEYS = [
    "MS_WORKER_IP",
    "MS_TOPO_TIMEOUT",
    "RANK_ID",
    "RANK_SIZE",
    "DEVICE_ID",
    "ASCEND_DEVICE_ID",
    "MS_ROLE",
    "MS_NODE_ID",
    "MS_WORKER_NUM",
    "MS_SCHED_HOST",
    "MS_SCHED_PORT",
    "CUDA_VISIBLE_DEVICES",
    "RANK_TABLE_FILE",
    "VITJOB_SCHED_DEVICE",
    "VITJOB_DONE_FILE",
    "MS_RETRY_INTERVAL_LOWER",
    "MS_RETRY_INTERVAL_UPPER",
]
# Prints the child's cluster variables as one JSON line (after TEST_MARKER exists, when set).
DUMP_ENV = (
    "import json, os, pathlib, time\n"
    "m = os.environ.get('TEST_MARKER')\n"
    "end = time.time() + 20\n"
    "while m and not pathlib.Path(m).exists() and time.time() < end: time.sleep(0.02)\n"
    f"print(json.dumps({{k: os.environ.get(k) for k in {ENV_KEYS!r}}}))\n"
)
# The stand-in scheduler: records its environment, creates the marker the workers wait for, stays up.
FAKE_SCHED = (
    "import json, os, pathlib, time\n"
    f"env = {{k: os.environ.get(k) for k in {ENV_KEYS!r}}}\n"
    "pathlib.Path(os.environ['TEST_SCHED_OUT']).write_text(json.dumps(env))\n"
    "pathlib.Path(os.environ['TEST_MARKER']).touch()\n"
    "print('scheduler up', flush=True)\n"
    "time.sleep(60)\n"
)
PREFIX = re.compile(r"^\[(rank \d+|sched)\] ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pod_ip(index: int) -> str:
    """Pod ``index``'s address: a loopback address of its own (the whole 127/8 answers on Linux)."""
    return f"127.0.0.{index + 2}"


def pod_env(
    tmp_path: Path, *, index: int = 0, pods: int = 1, hosts: list[str] | None = None, **extra: str
) -> dict[str, str]:
    """What the rendered pod template and Volcano give pod ``index``: its pod IP (downward API), the
    svc plugin's host names, and a hosts file (``VITJOB_HOSTS_FILE``) that resolves those names."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VITJOB_", "VC_", "VK_", "MS_", "RANK_", "CUDA_", "ASCEND_", "DEVICE_ID"))
    }
    volcano = tmp_path / "volcano"
    volcano.mkdir(exist_ok=True)
    (volcano / "worker.host").write_text(
        "\n".join(hosts or [f"job-worker-{i}.job" for i in range(pods)]) + "\n"
    )
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text("".join(f"{pod_ip(i)} job-worker-{i}.job job-worker-{i}\n" for i in range(pods)))
    env.update(
        {
            c.ENV_POD_IP: pod_ip(index),
            c.ENV_HOSTS_FILE: str(hosts_file),
            c.ENV_VC_TASK_INDEX: str(index),
            c.ENV_NUM_PODS: str(pods),
            c.ENV_VOLCANO_DIR: str(volcano),
            c.ENV_SCHED_PORT: "23456",
            c.ENV_PODINFO_DIR: str(tmp_path / f"podinfo-{index}"),
            c.ENV_WORKDIR: str(tmp_path / f"work-{index}"),
            c.ENV_OPERATOR_RANK_TABLE: str(tmp_path / "no-hccl.json"),
            c.ENV_HCCN_CONF: str(tmp_path / "no-hccn.conf"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def run_launch(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAUNCH, *args], env=env, capture_output=True, text=True, timeout=timeout)


def child_envs(stdout: str) -> dict[str, dict[str, Any]]:
    """label -> the JSON a child printed; every stdout line must carry its child's prefix."""
    result = {}
    for line in stdout.splitlines():
        m = PREFIX.match(line)
        assert m, f"unprefixed output line: {line!r}"
        body = line[m.end() :]
        if body.startswith("{"):
            result[m.group(1)] = json.loads(body)
    return result


# --------------------------------------------------------------------------- GPU / CPU: dynamic cluster
def test_cpu_pod0_env_prefix_and_scheduler(tmp_path: Path) -> None:
    marker, sched_out = tmp_path / "sched-ready", tmp_path / "sched.json"
    env = pod_env(
        tmp_path,
        index=0,
        pods=2,
        TEST_MARKER=str(marker),
        TEST_SCHED_OUT=str(sched_out),
        VITJOB_SCHED_COMMAND=f"{sys.executable} -c {shlex.quote(FAKE_SCHED)}",
    )
    proc = run_launch(["--hw", "cpu", "--cards-per-pod", "2", "--", sys.executable, "-c", DUMP_ENV], env)
    assert proc.returncode == 0, proc.stderr
    envs = child_envs(proc.stdout)
    assert "[sched] scheduler up" in proc.stdout.splitlines()
    assert set(envs) == {"rank 0", "rank 1"}
    for rank in (0, 1):
        e = envs[f"rank {rank}"]
        assert e["MS_ROLE"] == "MS_WORKER" and e["MS_NODE_ID"] == str(rank) and e["RANK_ID"] == str(rank)
        assert e["MS_WORKER_NUM"] == "4" and e["RANK_SIZE"] == "4"  # 2 pods x 2 cards
        # MindSpore takes IP literals only: pod 0 hands out its own pod IP (downward API status.podIP).
        assert e["MS_SCHED_HOST"] == pod_ip(0) and e["MS_SCHED_PORT"] == "23456"
        assert e["MS_WORKER_IP"] == pod_ip(0)
        assert e["MS_TOPO_TIMEOUT"] == "600"  # the rendezvous timeout bounds cluster formation too
        assert e["CUDA_VISIBLE_DEVICES"] is None
        # Pod 0 of 2 does not hold the whole cluster: its workers end through MindSpore's teardown.
        assert e["VITJOB_DONE_FILE"] is None
        assert e["MS_RETRY_INTERVAL_LOWER"] == e["MS_RETRY_INTERVAL_UPPER"] == "1"  # 1 s heartbeats
    sched = json.loads(sched_out.read_text())
    assert sched["MS_ROLE"] == "MS_SCHED" and sched["MS_WORKER_NUM"] == "4"
    assert sched["MS_SCHED_HOST"] == pod_ip(0) and sched["MS_SCHED_PORT"] == "23456"
    assert sched["MS_TOPO_TIMEOUT"] == "600"
    assert sched["MS_NODE_ID"] is None and sched["VITJOB_SCHED_DEVICE"] == "cpu"
    assert sched["MS_RETRY_INTERVAL_LOWER"] == sched["MS_RETRY_INTERVAL_UPPER"] == "1"
    assert "all 2 process(es) finished" in proc.stderr.splitlines()[-1]


@contextlib.contextmanager
def pod0_scheduler_port(env: dict[str, str]):
    """A socket listening where pod 0's MindSpore scheduler would (pod 1 waits until it answers)."""
    with socket.socket() as s:
        s.bind((pod_ip(0), int(env[c.ENV_SCHED_PORT])))
        s.listen()
        yield


def test_retry_intervals_are_the_pods_own_or_mindspores_for_a_large_cluster() -> None:
    from vitjob.launch.entrypoint import FAST_RETRY_MAX_WORKERS, retry_intervals

    fast = {"MS_RETRY_INTERVAL_LOWER": "1", "MS_RETRY_INTERVAL_UPPER": "1"}
    assert retry_intervals({}, 2) == retry_intervals({}, FAST_RETRY_MAX_WORKERS) == fast
    assert retry_intervals({}, FAST_RETRY_MAX_WORKERS + 1) == {}  # MindSpore's 3-5 s
    assert retry_intervals({"MS_RETRY_INTERVAL_UPPER": "9"}, 2) == {}  # the pod's own (the rest default)


# Joins the MindSpore cluster as ``vitjob train`` does, then ends.
JOIN = "from vitjob.vit.runtime import set_up; print('joined as rank', set_up('cpu').rank, flush=True)"
# What MindSpore 2.10 logs (INFO) of the retry interval it read when its collective library starts; its
# heartbeat thread reads the same two variables but does not log them.
SAID_INTERVAL = "Interval of retry allgather hostname lower and upper are "


@pytest.mark.slow
@pytest.mark.parametrize(("pod_sets", "expected"), [({}, "1 and 1"), (
    {"MS_RETRY_INTERVAL_LOWER": "2", "MS_RETRY_INTERVAL_UPPER": "3"}, "2 and 3")], ids=["launch", "pod"])
def test_mindspore_reads_the_retry_interval_launch_sets(
    tmp_path: Path, pod_sets: dict[str, str], expected: str
) -> None:
    """The real MindSpore says which retry interval its workers read (INFO log, GLOG_v=1)."""
    env = pod_env(tmp_path, GLOG_v="1", **pod_sets)
    env[c.ENV_SCHED_PORT] = str(free_port())
    proc = run_launch(["--hw", "cpu", "--cards-per-pod", "2", "--", sys.executable, "-c", JOIN], env,
                      timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    for rank in (0, 1):
        assert f"[rank {rank}] joined as rank {rank}" in lines
        said = [line for line in lines if line.startswith(f"[rank {rank}] ") and SAID_INTERVAL in line]
        assert said and all(line.endswith(SAID_INTERVAL + expected) for line in said), said


def test_cpu_pod1_has_no_scheduler(tmp_path: Path) -> None:
    env = pod_env(
        tmp_path, index=1, pods=2, VITJOB_SCHED_COMMAND=f"{sys.executable} -c 'raise SystemExit(9)'"
    )
    with pod0_scheduler_port(env):
        proc = run_launch(["--hw", "cpu", "--cards-per-pod", "2", "--", sys.executable, "-c", DUMP_ENV], env)
    assert proc.returncode == 0, proc.stderr
    envs = child_envs(proc.stdout)
    assert set(envs) == {"rank 2", "rank 3"}  # no sched: its command would have failed the pod
    assert [envs[f"rank {r}"]["MS_NODE_ID"] for r in (2, 3)] == ["2", "3"]
    # Pod 1 resolved pod 0's svc-plugin name to its address; its workers advertise their own pod IP.
    assert envs["rank 3"]["MS_SCHED_HOST"] == pod_ip(0) and envs["rank 3"]["MS_WORKER_IP"] == pod_ip(1)


def test_pod0_name_that_never_resolves_fails_naming_it(tmp_path: Path) -> None:
    env = pod_env(tmp_path, index=1, pods=2, VITJOB_SCHED_COMMAND="sleep 30")
    (tmp_path / "hosts").write_text(f"{pod_ip(1)} job-worker-1.job\n")  # pod 0 has no record (yet)
    start = time.monotonic()
    proc = run_launch(
        [
            "--hw",
            "cpu",
            "--cards-per-pod",
            "1",
            "--rdzv-timeout",
            "1.5",
            "--",
            sys.executable,
            "-c",
            DUMP_ENV,
        ],
        env,
    )
    assert time.monotonic() - start < 15
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "'job-worker-0.job' did not resolve to an address within 2 s" in last, last
    assert "pod 0 (MindSpore scheduler, rank-table rendezvous)" in last
    assert "[rank 1]" not in proc.stdout  # no worker started with a name MindSpore cannot parse


@pytest.mark.parametrize(("preset", "expected"), [(None, ["0", "1"]), ("4,5", ["4", "5"])])
def test_gpu_one_device_per_process(tmp_path: Path, preset: str | None, expected: list[str]) -> None:
    extra = {"CUDA_VISIBLE_DEVICES": preset} if preset else {}
    env = pod_env(tmp_path, VITJOB_SCHED_COMMAND="sleep 30", **extra)
    proc = run_launch(["--hw", "gpu", "--cards-per-pod", "2", "--", sys.executable, "-c", DUMP_ENV], env)
    assert proc.returncode == 0, proc.stderr
    envs = child_envs(proc.stdout)
    assert [envs[f"rank {r}"]["CUDA_VISIBLE_DEVICES"] for r in (0, 1)] == expected
    assert [envs[f"rank {r}"]["DEVICE_ID"] for r in (0, 1)] == ["0", "0"]
    assert [envs[f"rank {r}"]["MS_NODE_ID"] for r in (0, 1)] == ["0", "1"]


def test_single_process_gets_no_cluster(tmp_path: Path) -> None:
    env = pod_env(tmp_path, VITJOB_SCHED_COMMAND=f"{sys.executable} -c 'raise SystemExit(9)'")
    proc = run_launch(["--hw", "cpu", "--", sys.executable, "-c", DUMP_ENV + "print('two\\nlines')"], env)
    assert proc.returncode == 0, proc.stderr
    assert child_envs(proc.stdout)["rank 0"]["MS_ROLE"] is None
    assert proc.stdout.splitlines()[-2:] == ["[rank 0] two", "[rank 0] lines"]


# --------------------------------------------------------------------------- Ascend: rank table via 2 pods
ASCEND_CHILD = (
    "import hashlib, json, os, pathlib\n"
    "table = pathlib.Path(os.environ['RANK_TABLE_FILE']).read_bytes()\n"
    "print(json.dumps({'sha': hashlib.sha256(table).hexdigest(), 'table': os.environ['RANK_TABLE_FILE'],\n"
    f"                  **{{k: os.environ.get(k) for k in {ENV_KEYS!r}}}}}))\n"
)


def write_podinfo(env: dict[str, str], index: int, devices: list[int], server_id: str = "") -> None:
    info = Path(env[c.ENV_PODINFO_DIR])
    info.mkdir(parents=True, exist_ok=True)
    (info / c.PODINFO_NAME_FILE).write_text(f"job-worker-{index}\n")
    instance = {
        "pod_name": f"job-worker-{index}",
        "server_id": server_id or f"uid-{index}",
        "host_ip": "127.0.0.1",
        "devices": [{"device_id": str(d), "device_ip": f"192.0.2.{10 * index + d + 1}"} for d in devices],
    }
    (info / c.PODINFO_ANNOTATIONS_FILE).write_text(
        format_downward_annotations(
            {c.ASCEND_DEVICE_ANNOTATIONS[0]: json.dumps(instance), "note": 'say "hi"\nbye'}
        )
    )


@pytest.mark.parametrize("simulate", ["", "cpu"], ids=["ascend", "simulated"])
def test_ascend_two_pods_gather_the_identical_table(tmp_path: Path, simulate: str) -> None:
    port = free_port()
    procs = []
    devices = {0: [3, 2], 1: [1, 0]}  # as the device plugin might list them (unsorted)
    # Pod UIDs as server ids: pod 0's sorts after pod 1's, so pod 1 holds ranks 0-1 (rank_table.md).
    uids = {0: "uid-b", 1: "uid-a"}
    for index in (1, 0):  # pod 1 first: it must wait for pod 0's rendezvous (found by name)
        extra = {c.ENV_SIMULATE_DEVICE: simulate, "VITJOB_SCHED_COMMAND": "sleep 30"} if simulate else {}
        env = pod_env(tmp_path, index=index, pods=2, VITJOB_RDZV_PORT=str(port), **extra)
        write_podinfo(env, index, devices[index], uids[index])
        procs.append(
            (
                index,
                subprocess.Popen(
                    [
                        *LAUNCH,
                        "--hw",
                        "ascend",
                        "--cards-per-pod",
                        "2",
                        "--rdzv-timeout",
                        "30",
                        "--",
                        sys.executable,
                        "-c",
                        ASCEND_CHILD,
                    ],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
        time.sleep(0.3)
    outs = {}
    for index, proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outs[index] = child_envs(out)
    tables = [(tmp_path / f"work-{i}" / "hccl.json").read_bytes() for i in (0, 1)]
    assert tables[0] == tables[1]
    sha = hashlib.sha256(tables[0]).hexdigest()
    table = json.loads(tables[0])
    assert table["server_count"] == "2"
    assert [(s["server_id"], s["container_ip"]) for s in table["server_list"]] == [
        ("uid-a", pod_ip(1)),
        ("uid-b", pod_ip(0)),
    ]
    assert [[d["device_id"] for d in s["device"]] for s in table["server_list"]] == [["0", "1"], ["2", "3"]]
    assert set(outs[1]) == {"rank 0", "rank 1"} and set(outs[0]) == {"rank 2", "rank 3"}
    # DEVICE_ID is the chip's id inside the pod (0..n-1), the table keeps the physical id.
    expected_device = {0: "0", 1: "1", 2: "0", 3: "1"}
    for index in (0, 1):
        for label, e in outs[index].items():
            rank = int(label.split()[1])
            assert e["sha"] == sha and e["table"] == str(tmp_path / f"work-{index}" / "hccl.json")
            assert e["RANK_ID"] == str(rank) and e["RANK_SIZE"] == "4"
            assert e["DEVICE_ID"] == e["ASCEND_DEVICE_ID"] == expected_device[rank]
            if simulate:
                assert (
                    e["MS_ROLE"] == "MS_WORKER" and e["MS_NODE_ID"] == str(rank) and e["MS_WORKER_NUM"] == "4"
                )
            else:
                assert e["MS_ROLE"] is None


def test_ascend_missing_pod_times_out_naming_it(tmp_path: Path) -> None:
    env = pod_env(tmp_path, index=0, pods=3, hosts=["127.0.0.1"] * 3, VITJOB_RDZV_PORT=str(free_port()))
    write_podinfo(env, 0, [0])
    start = time.monotonic()
    proc = run_launch(["--hw", "ascend", "--cards-per-pod", "1", "--rdzv-timeout", "1.5", "--", "true"], env)
    assert time.monotonic() - start < 20
    assert proc.returncode == 1
    assert "missing task indices [1, 2]" in proc.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    ("rt_visible", "expected"),
    [("", ["0", "1", "2", "3"]), ("6,7,4,5", ["2", "3", "0", "1"])],
    ids=["container-given-4-7", "rt-visible-6,7,4,5"],
)
def test_ascend_container_given_chips_4_to_7(tmp_path: Path, rt_visible: str, expected: list[str]) -> None:
    extra = {c.ENV_ASCEND_RT_VISIBLE_DEVICES: rt_visible} if rt_visible else {}
    env = pod_env(tmp_path, **extra)
    write_podinfo(env, 0, [6, 4, 7, 5])
    proc = run_launch(
        ["--hw", "ascend", "--cards-per-pod", "4", "--", sys.executable, "-c", ASCEND_CHILD], env
    )
    assert proc.returncode == 0, proc.stderr
    envs = child_envs(proc.stdout)
    table = json.loads((tmp_path / "work-0" / "hccl.json").read_text())
    assert [d["device_id"] for d in table["server_list"][0]["device"]] == ["4", "5", "6", "7"]  # physical
    assert [envs[f"rank {r}"]["RANK_ID"] for r in range(4)] == ["0", "1", "2", "3"]
    assert [envs[f"rank {r}"]["DEVICE_ID"] for r in range(4)] == expected  # what set_device gets
    assert [envs[f"rank {r}"]["ASCEND_DEVICE_ID"] for r in range(4)] == expected


def test_ascend_bad_annotation_fails_naming_pod_and_device(tmp_path: Path) -> None:
    env = pod_env(tmp_path, index=0, pods=1)
    info = Path(env[c.ENV_PODINFO_DIR])
    info.mkdir()
    (info / c.PODINFO_NAME_FILE).write_text("job-worker-0\n")
    (info / c.PODINFO_ANNOTATIONS_FILE).write_text(
        format_downward_annotations(
            {
                c.ASCEND_DEVICE_ANNOTATIONS[0]: (
                    '{"server_id": "u", "devices": [{"device_id": "0", "device_ip": "10.0.0.1"}, '
                    '{"device_id": "1", "device_ip": "-1"}]}'
                )
            }
        )
    )
    proc = run_launch(["--hw", "ascend", "--cards-per-pod", "2", "--", "true"], env)
    assert proc.returncode == 1
    assert "pod job-worker-0: device 1 has device_ip -1" in proc.stderr


# --------------------------------------------------------------------------- failures, signals, orphans
def tree_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def wait_for_tree(pid: int, sleeps: int, timeout: float = 20) -> list[psutil.Process]:
    """The launch's descendants once ``sleeps`` ``sleep 1000`` processes run among them."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        tree = tree_of(pid)
        found = 0
        for p in tree:
            with contextlib.suppress(psutil.Error):
                found += p.cmdline()[:2] == ["sleep", "1000"]
        if found >= sleeps:
            return tree
        time.sleep(0.05)
    raise AssertionError(f"the launch's process tree never had {sleeps} sleeps: {tree_of(pid)}")


def assert_all_gone(procs: list[psutil.Process], timeout: float = 5) -> None:
    end = time.monotonic() + timeout
    alive: list[psutil.Process] = procs
    while time.monotonic() < end:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:  # is_running checks create time
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return
        time.sleep(0.05)
    for p in alive:
        p.kill()
    raise AssertionError(f"orphans survived the launch: {alive}")


FAIL_ON_GO = (
    'while [ ! -e "$TEST_GO" ]; do sleep 0.05; done; echo "ValueError: batch 7 is empty"; echo bye; exit 3'
)


@pytest.mark.parametrize(
    "sibling",
    [
        "sleep 1000",
        "bash -c 'sleep 1000 & wait'",  # a grandchild
        "bash -c '(trap \"\" TERM; exec sleep 1000) & wait'",  # a grandchild that ignores SIGTERM
    ],
    ids=["child", "grandchild", "term-ignoring-grandchild"],
)
def test_failing_child_stops_the_others_and_leaves_no_orphans(tmp_path: Path, sibling: str) -> None:
    go = tmp_path / "go"
    script = f'if [ "$RANK_ID" = 1 ]; then {FAIL_ON_GO}; else exec {sibling}; fi'
    env = pod_env(tmp_path, VITJOB_SCHED_COMMAND="sleep 1000", TEST_GO=str(go))
    launch = subprocess.Popen(
        [*LAUNCH, "--hw", "cpu", "--cards-per-pod", "2", "--grace-period", "2", "--", "bash", "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        tree = wait_for_tree(launch.pid, sleeps=2)  # rank 0's sleep and the scheduler stand-in
        start = time.monotonic()
        go.touch()
        _out, err = launch.communicate(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        launch.kill()
    assert launch.returncode == 3, err
    assert elapsed < 6, elapsed
    summary = err.strip().splitlines()[-1]
    assert summary.startswith(
        "vitjob launch: rank 1 failed with exit code 3 (last error line: ValueError: batch 7 is empty); "
        "stopped 2 other process(es)"
    ), summary
    assert_all_gone(tree)


# The scheduler stand-in: prints what MindSpore's scheduler prints when MS_SCHED_HOST is no IP, then exits.
FAILING_SCHED = (
    "import sys, time\n"
    "time.sleep(0.5)\n"
    "print('[ERROR] DISTRIBUTED(1,7f,python):2026-01-01-00:00:00.0 "
    "[mindspore/ccsrc/cluster/rpc/tcp/socket_operation.cc:305] GetSockAddr] Parse ip failed, url: x:1')\n"
    "print('RuntimeError: Failed to initialize distributed job cluster')\n"
    "print('- C++ Call Stack: (For framework developers)')\n"
    "sys.exit(7)\n"
)


def test_failing_scheduler_ends_the_pod_naming_it_and_why(tmp_path: Path) -> None:
    env = pod_env(tmp_path, pods=2, VITJOB_SCHED_COMMAND=f"{sys.executable} -c {shlex.quote(FAILING_SCHED)}")
    start = time.monotonic()
    proc = run_launch(["--hw", "cpu", "--cards-per-pod", "2", "--", "sleep", "1000"], env)
    assert time.monotonic() - start < 15
    assert proc.returncode == 7
    assert proc.stderr.strip().splitlines()[-1] == (
        "vitjob launch: sched (the MindSpore scheduler) failed with exit code 7 (last error line: "
        "RuntimeError: Failed to initialize distributed job cluster); stopped 2 other process(es)"
    )


def test_killed_scheduler_ends_the_pod(tmp_path: Path) -> None:
    env = pod_env(tmp_path, pods=2, VITJOB_SCHED_COMMAND="sleep 1000")
    launch = subprocess.Popen(
        [*LAUNCH, "--hw", "cpu", "--cards-per-pod", "2", "--", "sleep", "1000"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        tree = wait_for_tree(launch.pid, sleeps=3)
        sched = next(p for p in tree if p.cmdline()[:2] == ["sleep", "1000"])  # started first
        start = time.monotonic()
        sched.kill()
        _out, err = launch.communicate(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        launch.kill()
    assert launch.returncode == 137 and elapsed < 15, (launch.returncode, elapsed)
    assert err.strip().splitlines()[-1] == (
        "vitjob launch: sched (the MindSpore scheduler) failed with exit code signal SIGKILL "
        "(killed by SIGKILL); stopped 2 other process(es)"
    )
    assert_all_gone(tree)


def test_helper_that_ends_early_does_not_leave_the_pod_waiting() -> None:
    from vitjob.launch.supervisor import ChildSpec, Supervisor

    out = io.StringIO()
    children = [
        ChildSpec("sched", ["true"], dict(os.environ), required=False, role="the MindSpore scheduler"),
        ChildSpec("rank 0", ["sleep", "1000"], dict(os.environ)),
    ]
    start = time.monotonic()
    outcome = Supervisor(children, out=out, grace_s=1, helper_grace_s=1.0).run(poll_s=0.05)
    assert time.monotonic() - start < 6
    assert outcome.exit_code == 1
    assert outcome.summary == (
        "sched (the MindSpore scheduler): ended (exit code 0) 1 s ago while the workers still run; they "
        "cannot finish without it; stopped 1 other process(es)"
    )


# A worker whose work succeeds through vitjob's CLI, then hangs at exit as MindSpore's teardown waits (an
# atexit handler that sleeps).
DONE_THEN_HANG = (
    "import atexit, sys, time\n"
    "from vitjob.cli import main\n"
    "atexit.register(time.sleep, 1000)\n"
    "code = main(['data', 'digits', '--out', sys.argv[1] + '/' + __import__('os').environ['RANK_ID']])\n"
    "print('work done', flush=True)\n"
    "sys.exit(code)\n"
)


def test_one_pod_cluster_ends_once_every_worker_has_done_its_work(tmp_path: Path) -> None:
    env = pod_env(tmp_path, VITJOB_SCHED_COMMAND="sleep 1000")
    launch = subprocess.Popen(
        [*LAUNCH, "--hw", "cpu", "--cards-per-pod", "2", "--", sys.executable, "-c", DONE_THEN_HANG,
         str(tmp_path / "data")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        tree = wait_for_tree(launch.pid, sleeps=1)  # the scheduler stand-in
        out, err = launch.communicate(timeout=60)  # without the done files: 1000 s at exit
    finally:
        launch.kill()
    assert launch.returncode == 0, err
    assert err.strip().splitlines()[-1] == "vitjob launch: all 2 process(es) finished"
    lines = out.splitlines()
    for rank in (0, 1):  # each worker's output up to its done file reached the pod's log
        assert any(line.startswith(f"[rank {rank}] wrote digits to ") for line in lines), out
        assert (tmp_path / "data" / str(rank) / "cifar-10-batches-bin").is_dir()
        done = tmp_path / "work-0" / "done" / f"rank-{rank}.done"
        assert done.read_text().strip().isdigit()  # the worker's pid
    assert_all_gone(tree)


def test_one_worker_done_and_one_failing_fails_the_pod(tmp_path: Path) -> None:
    script = 'if [ "$RANK_ID" = 1 ]; then sleep 0.5; echo "ValueError: no data"; exit 3; fi; ' \
             'echo > "$VITJOB_DONE_FILE"; sleep 1000'
    env = pod_env(tmp_path, VITJOB_SCHED_COMMAND="sleep 1000")
    args = ["--hw", "cpu", "--cards-per-pod", "2", "--grace-period", "1", "--", "bash", "-c", script]
    proc = run_launch(args, env, timeout=30)
    assert proc.returncode == 3, proc.stderr
    assert "rank 1 failed with exit code 3 (last error line: ValueError: no data)" in proc.stderr


def test_cli_reports_done_only_when_its_command_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vitjob.cli import main

    done = tmp_path / "done" / "rank-0.done"
    monkeypatch.setenv(c.ENV_DONE_FILE, str(done))
    assert main(["eval", "--ckpt", str(tmp_path / "missing.ckpt"), "--data", str(tmp_path)]) != 0
    assert not done.exists()
    with monkeypatch.context() as patched:  # a command that returns a failing exit code
        patched.setattr("vitjob.cli.vit._cmd_digits", lambda _args: 4)
        assert main(["data", "digits", "--out", str(tmp_path / "digits")]) == 4
    assert not done.exists()
    assert main(["data", "digits", "--out", str(tmp_path / "digits")]) == 0
    assert done.read_text().strip() == str(os.getpid())


def test_sigterm_is_forwarded_and_leaves_no_orphans(tmp_path: Path) -> None:
    # Each child traps SIGTERM to say so, then exits; its grandchild sleep dies with the process group.
    child = "trap 'echo got TERM; exit 0' TERM; sleep 1000 & wait"
    env = pod_env(tmp_path, VITJOB_SCHED_COMMAND="sleep 1000")
    launch = subprocess.Popen(
        [*LAUNCH, "--hw", "cpu", "--cards-per-pod", "2", "--", "bash", "-c", child],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        tree = wait_for_tree(launch.pid, sleeps=3)
        start = time.monotonic()
        launch.send_signal(signal.SIGTERM)
        out, err = launch.communicate(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        launch.kill()
    assert launch.returncode == 143, err
    assert elapsed < 6
    assert "[rank 0] got TERM" in out.splitlines() and "[rank 1] got TERM" in out.splitlines()
    assert "received SIGTERM" in err.strip().splitlines()[-1]
    assert_all_gone(tree)


def _running(argv: list[str]) -> list[psutil.Process]:
    """Live processes (zombies aside) with exactly this command line, whoever their parent is now."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["cmdline"] == argv and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def test_command_that_cannot_start(tmp_path: Path) -> None:
    # A command line no other process has: an orphan is found by it, since its parent is no longer the
    # launcher once the launcher has exited.
    stand_in = ["sleep", f"1000.{int.from_bytes(os.urandom(4), 'big'):010d}"]
    control = subprocess.Popen(stand_in)  # the lookup does find such a process when one is alive
    try:
        assert [p.pid for p in _running(stand_in)] == [control.pid]
    finally:
        control.kill()
        control.wait()
    assert _running(stand_in) == []
    env = pod_env(tmp_path, VITJOB_SCHED_COMMAND=shlex.join(stand_in))
    launch = subprocess.Popen(
        [*LAUNCH, "--hw", "cpu", "--cards-per-pod", "2", "--", str(tmp_path / "no-such")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _out, err = launch.communicate(timeout=30)
    assert launch.returncode == 127
    assert re.search(r"rank 0: cannot run .*no-such.*No such file", err.strip().splitlines()[-1])
    # The scheduler stand-in, started first (Popen returns once its exec succeeded), did not survive.
    assert _running(stand_in) == []


def test_no_command_and_bad_cards(tmp_path: Path) -> None:
    env = pod_env(tmp_path)
    proc = run_launch(["--hw", "cpu"], env)
    assert proc.returncode == 2 and "no command to run" in proc.stderr
    proc = run_launch(["--hw", "cpu", "--cards-per-pod", "0", "--", "true"], env)
    assert proc.returncode == 2 and "bad pod layout" in proc.stderr


# --------------------------------------------------------------------------- kept logs (vitjob.keptlogs)
def test_every_run_keeps_its_own_log_on_the_volume(tmp_path: Path) -> None:
    """Each run of the pod writes a new attempt file holding what the pod printed (its stdout lines as
    the kubelet would log them, the launcher's own lines and its summary); ``vitjob.keptlogs`` prints
    one attempt back. The pod's captured output is the independent record compared against."""
    kept = tmp_path / "volume" / "logs"
    env = pod_env(
        tmp_path,
        VITJOB_SCHED_COMMAND=f"{sys.executable} -c 'raise SystemExit(9)'",
        **{c.ENV_LOG_DIR: str(kept), c.ENV_JOB_NAME: "job", c.ENV_POD_NAME: "job-worker-0"},
    )
    runs = []
    for code in (3, 0):  # a failed run, then the restart
        script = f"print('run ending with {code}'); print('second line'); raise SystemExit({code})"
        runs.append(run_launch(["--hw", "cpu", "--", sys.executable, "-c", script], env))
        assert runs[-1].returncode == code, runs[-1].stderr
    files = sorted((kept / "job" / "job-worker-0").iterdir())
    assert [f.name for f in files] == ["attempt-1.log", "attempt-2.log"]
    for run, path in zip(runs, files, strict=True):
        text = path.read_text().splitlines()
        # Every stdout line of the run, in order, and the stderr lines vitjob wrote (log records, summary).
        assert [ln for ln in text if ln.startswith("[rank 0] ")] == run.stdout.splitlines()
        summary = run.stderr.splitlines()[-1]
        assert summary in text and summary.startswith("vitjob launch: ")
    assert "failed with exit code 3" in files[0].read_text()
    assert "run ending with 0" in files[1].read_text() and "run ending with 3" not in files[1].read_text()

    printed = subprocess.run(
        [sys.executable, "-m", "vitjob.keptlogs", str(kept), "job", "--attempt", "1"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert printed == [f"[job-worker-0] {ln}" for ln in files[0].read_text().splitlines()]
    missing = subprocess.run(
        [sys.executable, "-m", "vitjob.keptlogs", str(kept), "job", "--attempt", "3"],
        capture_output=True, text=True,
    )
    assert missing.returncode == 1
    assert "no logs of attempt 3 of job job" in missing.stderr and "attempts kept: 1, 2" in missing.stderr


def test_a_volume_that_cannot_keep_the_log_does_not_stop_the_pod(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    env = pod_env(
        tmp_path,
        VITJOB_SCHED_COMMAND=f"{sys.executable} -c 'raise SystemExit(9)'",
        **{c.ENV_LOG_DIR: str(blocked), c.ENV_JOB_NAME: "job", c.ENV_POD_NAME: "job-worker-0"},
    )
    proc = run_launch(["--hw", "cpu", "--", sys.executable, "-c", "print('fine')"], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[rank 0] fine"]
    assert "warning: not keeping this run's log under" in proc.stderr
