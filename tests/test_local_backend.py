"""The local backend running rendered jobs for real: data-parallel training, simulated Ascend rank
tables, pods in network namespaces, fault handling and maxRetry (a killed worker resuming: test_resume.py;
the whole local pipeline: test_demo_output.py).

Marked ``slow`` (real MindSpore processes on CPU); CI runs them.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import mindspore as ms
import numpy as np
import psutil
import pytest
from ci_env import in_ci
from tiny_vit import independent_test_accuracy, independent_validation_accuracy

from vitjob import constants as c
from vitjob.api.values import load_spec
from vitjob.backends.base import JobPhase
from vitjob.backends.local.backend import LocalBackend
from vitjob.backends.local.network import NETNS, SHARED_HOST, choose_mode
from vitjob.backends.local.runner import expand_vars
from vitjob.render.manifests import render_objects

pytestmark = pytest.mark.slow


def netns_or_fail() -> None:
    """Network-namespace tests need root and iproute2: CI has both, so there their absence is a failure."""
    mode, why = choose_mode({})
    if mode != NETNS:
        if in_ci():
            pytest.fail(f"CI must run these tests as root with iproute2: {why}")
        pytest.skip(why)


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _objects(**values):
    base = {"hw": "cpu", "cards": 2, "name": "t", "preset": "vit-tiny", "epochs": 1}
    return render_objects(load_spec({**base, **values}, None, []))


def _backend(tmp_path: Path, data: Path) -> LocalBackend:
    return LocalBackend(
        local_root=tmp_path / "local", data_dir=data, output_dir=tmp_path / "out", stream=False
    )


def _same_weights(a: Path, b: Path) -> None:
    pa, pb = ms.load_checkpoint(str(a)), ms.load_checkpoint(str(b))
    assert set(pa) == set(pb)
    for name in pa:
        np.testing.assert_array_equal(pa[name].asnumpy(), pb[name].asnumpy(), err_msg=name)


def test_expand_vars_follows_kubernetes_rules() -> None:
    env = {"A": "x", "B": "$(A)"}
    assert expand_vars("$(A)/y", env) == "x/y"
    assert expand_vars("$$(A) $(MISSING)", env) == "$(A) $(MISSING)"


@pytest.mark.parametrize(
    ("hw", "cards", "extra"),
    [
        ("cpu", 2, {}),
        ("cpu", 2, {"cards_per_pod": 1}),
        ("cpu", 4, {"cards_per_pod": 2}),
        ("ascend", 2, {}),
    ],
    ids=["cpu-1pod-2cards", "cpu-2pods-1card", "cpu-2pods-2cards", "ascend-simulated-1pod-2cards"],
)
def test_data_parallel_training_ends_with_identical_weights(
    hw: str, cards: int, extra: dict, digits_dir: Path, tmp_path: Path, straight_run: Path
) -> None:
    """Every rank ends with the same weights, having trained on its share of the epoch: 1/cards of the
    batches the one-process run (conftest's ``straight_run``, same batch of 64) takes per epoch."""
    pods_wanted = cards // extra.get("cards_per_pod", cards)
    if pods_wanted > 1:
        netns_or_fail()  # the pods know each other only by name, each in its own network namespace
    backend = _backend(tmp_path, digits_dir)
    status = backend.submit(_objects(hw=hw, cards=cards, extra_args=["--save-rank-weights"], **extra))
    pods = [p.name for p in status.pods]
    assert len(pods) == pods_wanted
    logs = {p: (backend.job_dir("t-train") / "logs" / f"{p}.log").read_text() for p in pods}
    log = "".join(logs.values())
    assert status.phase == JobPhase.COMPLETED, log[-3000:]
    run = tmp_path / "out" / "t" / "train"
    for rank in range(1, cards):
        _same_weights(run / "rank-weights" / "rank-0.ckpt", run / "rank-weights" / f"rank-{rank}.ckpt")
    # Identical weights alone would also come of every rank reading the whole epoch: count the steps.
    records = [json.loads(line) for line in (straight_run / "metrics.jsonl").read_text().splitlines()]
    straight_steps = sum(1 for r in records if "loss" in r and r["epoch"] == 1)  # it logs every step
    share = (straight_steps * 64 // cards) // 64
    assert (straight_steps, share) == (21, {2: 10, 4: 5}[cards])
    for rank in range(cards):
        counted = json.loads((run / "rank-weights" / f"rank-{rank}.json").read_text())
        assert counted == {"rank": rank, "resumed_from": 0, "epoch_steps": {"1": share}}, counted
    assert json.loads((run / "state.json").read_text())["step"] == share
    # Validation and test accuracy are scored by every rank on its share of the images and summed: the
    # recorded values must be the final weights' accuracy on every image, recomputed here by hand.
    ran = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    [val] = [r["val_accuracy"] for r in ran if "val_accuracy" in r]
    [test] = [r["test_accuracy"] for r in ran if "test_accuracy" in r]
    final = run / "rank-weights" / "rank-0.ckpt"
    assert (val, test) == (independent_validation_accuracy(final, digits_dir),
                           independent_test_accuracy(final, digits_dir))
    assert all(f"[rank {r}]" in log for r in range(cards))
    assert f"batch 64 x {cards} processes" in log
    assert "test accuracy" in log
    if pods_wanted > 1:
        network = json.loads((backend.job_dir("t-train") / "state.json").read_text())["network"]
        assert network["mode"] == NETNS
        ips = [network["pods"][p]["ip"] for p in pods]
        assert len(set(ips)) == len(ips) and all(ip.startswith("10.244.") for ip in ips)
        assert [network["pods"][p]["host"] for p in pods] == [f"{p}.t-train" for p in pods]
        # Pod 1 found pod 0 by its svc-plugin name, and MindSpore got the address.
        assert f"{pods[0]}.t-train resolves to {ips[0]}" in logs[pods[1]]
        assert not [ns for ns in _namespaces() if ns in {network["pods"][p]["netns"] for p in pods}]
    if hw == "ascend":
        launch_dir = backend.job_dir("t-train") / "pods" / "t-train-worker-0" / "launch"
        table = json.loads((launch_dir / "hccl.json").read_text())
        assert table["version"] == "1.0"
        assert [d["rank_id"] for d in table["server_list"][0]["device"]] == ["0", "1"]
        assert "rank table: 1 servers, 2 devices" in log


# A worker that reaches the "scheduler" at the address launch gave it and reports what it saw. It waits
# as long as a MindSpore worker would: MS_TOPO_TIMEOUT, the rendezvous timeout launch gives the cluster
# (not a fixed deadline of its own, which a loaded machine can outlast).
PROBE = """
import json, os, socket, time
host, port = os.environ["MS_SCHED_HOST"], int(os.environ["MS_SCHED_PORT"])
deadline_s = float(os.environ["MS_TOPO_TIMEOUT"])
end = time.time() + deadline_s
while True:
    try:
        sock = socket.create_connection((host, port), timeout=5)
        break
    except OSError:
        if time.time() > end:
            raise
        time.sleep(0.1)
sock.settimeout(max(end - time.time(), 1.0))
sock.sendall(b"join\\n")
answer = sock.makefile().readline().strip()
routes = [line.split()[1] for line in open("/proc/net/route").read().splitlines()[1:]]
print(json.dumps({"rank": os.environ["RANK_ID"], "sched": host, "port": port, "answer": answer,
                  "own": os.environ["MS_WORKER_IP"], "default_route": "00000000" in routes,
                  "deadline_s": deadline_s}))
"""
# The scheduler stand-in, on MS_SCHED_HOST:MS_SCHED_PORT: like MindSpore's scheduler it answers the workers
# once all MS_WORKER_NUM have joined (so pod 0 cannot finish before pod 1's worker is in), and it serves any
# other connection too: `vitjob launch` on pod 1 first checks with a bare connection that pod 0 answers.
FAKE_SCHED = """
import os, socket, time
host = os.environ["MS_SCHED_HOST"]
srv = socket.create_server((host, int(os.environ["MS_SCHED_PORT"])))
joined = []
while len(joined) < int(os.environ["MS_WORKER_NUM"]):
    conn, _ = srv.accept()
    conn.settimeout(10)
    try:
        line = conn.makefile().readline().strip()
    except OSError:
        line = ""
    if line == "join":
        joined.append(conn)
    else:
        conn.close()
for conn in joined:
    conn.sendall(("hello from " + host + "\\n").encode())
    conn.close()
time.sleep(600)
"""


def _with_command(objects: list[dict], args: list[str], sched_command: str) -> list[dict]:
    """The rendered objects with the pods' stage command replaced (the launch command stays)."""
    job = objects[-1]
    container = job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]
    container["args"] = args
    container["env"].append({"name": c.ENV_SCHED_COMMAND, "value": sched_command})
    return objects


def _run_completed(tmp_path: Path, objects: list[dict]) -> tuple[Path, dict[str, str], dict]:
    """Submit ``objects`` (job t-train) and let it run to Completed: its directory, each pod's log,
    and the network the local backend recorded for it."""
    backend = _backend(tmp_path, tmp_path)
    status = backend.submit(objects)
    jdir = backend.job_dir("t-train")
    logs = {p.name: (jdir / "logs" / f"{p.name}.log").read_text() for p in status.pods}
    assert status.phase == JobPhase.COMPLETED, logs
    return jdir, logs, json.loads((jdir / "state.json").read_text())["network"]


@pytest.mark.parametrize("mode", [NETNS, SHARED_HOST])
def test_pods_find_each_other_by_name(mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if mode == NETNS:
        netns_or_fail()
    monkeypatch.setenv(c.ENV_LOCAL_NETWORK, mode)
    objects = _with_command(
        _objects(cards=2, cards_per_pod=1),
        ["python", "-c", PROBE],
        f"python -c {shlex.quote(FAKE_SCHED)}",
    )
    jdir, logs, network = _run_completed(tmp_path, objects)
    assert network["mode"] == mode
    seen = {
        pod: json.loads(
            next(ln for ln in text.splitlines() if ln.startswith("[rank ") and "{" in ln).split("] ", 1)[1]
        )
        for pod, text in logs.items()
    }
    pod0, pod1 = "t-train-worker-0", "t-train-worker-1"
    ip0, ip1 = network["pods"][pod0]["ip"], network["pods"][pod1]["ip"]
    assert (jdir / "volcano" / "worker.host").read_text() == f"{pod0}.t-train\n{pod1}.t-train\n"
    assert f"{pod0}.t-train resolves to {ip0}" in logs[pod1]  # found by name
    for pod, ip in ((pod0, ip0), (pod1, ip1)):
        assert seen[pod]["sched"] == ip0 and seen[pod]["answer"] == f"hello from {ip0}"
        assert seen[pod]["own"] == ip
        # The rendered pods run `vitjob launch` with its default --rdzv-timeout.
        assert seen[pod]["deadline_s"] == c.DEFAULT_RDZV_TIMEOUT_S, seen[pod]
    if mode == NETNS:
        assert ip0 != ip1 and ip0.startswith("10.244.") and ip1.startswith("10.244.")
        assert seen[pod0]["port"] == seen[pod1]["port"] == 8118  # the rendered port, in every pod
        assert not seen[pod0]["default_route"] and not seen[pod1]["default_route"]  # nothing leaves
        # Everything the job set up is gone with it.
        namespaces = {network["pods"][p]["netns"] for p in (pod0, pod1)}
        assert not namespaces & set(_namespaces())
        assert not [ns for ns in namespaces if Path("/etc/netns", ns).exists()]
        assert not [ns for ns in _namespaces() if ns == next(iter(namespaces)).split("-")[0] + "-hub"]
    else:
        assert ip0 == ip1 == "127.0.0.1" and seen[pod0]["port"] != 8118  # one port space: free ports


ASCEND_PROBE = """
import hashlib, json, os, pathlib
table = pathlib.Path(os.environ["RANK_TABLE_FILE"]).read_bytes()
print(json.dumps({"rank": os.environ["RANK_ID"], "device": os.environ["DEVICE_ID"],
                  "node": os.environ["MS_NODE_ID"], "sha": hashlib.sha256(table).hexdigest()}))
"""


def test_ascend_rank_table_gathered_across_namespaces(tmp_path: Path) -> None:
    """16 simulated cards = 2 pods x 8: the rendezvous by name across network namespaces, server ids
    that are pod UIDs (random order), and every rank where the identical table puts it."""
    netns_or_fail()
    objects = _with_command(_objects(hw="ascend", cards=16), ["python", "-c", ASCEND_PROBE], "sleep 600")
    jdir, logs, network = _run_completed(tmp_path, objects)
    tables = {p: (jdir / "pods" / p / "launch" / "hccl.json").read_bytes() for p in logs}
    assert len(set(tables.values())) == 1
    table = json.loads(next(iter(tables.values())))
    ids = [s["server_id"] for s in table["server_list"]]
    assert ids == sorted(ids) and len(set(ids)) == 2
    ranks: dict[str, int] = {}
    for pod, text in logs.items():
        (server,) = [s for s in table["server_list"] if s["container_ip"] == network["pods"][pod]["ip"]]
        expected = {d["rank_id"]: d["device_id"] for d in server["device"]}
        lines = [
            json.loads(ln.split("] ", 1)[1])
            for ln in text.splitlines()
            if ln.startswith("[rank ") and '"sha"' in ln
        ]
        assert {ln["rank"]: ln["device"] for ln in lines} == expected  # physical 0-7 = logical 0-7 here
        assert all(ln["node"] == ln["rank"] for ln in lines)
        ranks.update(dict.fromkeys([ln["rank"] for ln in lines], 1))
    assert sorted(int(r) for r in ranks) == list(range(16))


def test_killed_scheduler_ends_its_pod_within_15_s(digits_dir: Path, tmp_path: Path) -> None:
    """The MindSpore scheduler of a real 2-pod job is killed mid-training: its pod (pod 0) exits non-zero
    within 15 s, saying which process failed and why."""
    root = tmp_path / "local"
    values = tmp_path / "values.yaml"
    values.write_text("cards_per_pod: 1\nextra_args: ['--save-steps', '2']\n")
    cmd = [
        sys.executable,
        "-m",
        "vitjob",
        "submit",
        "--backend",
        "local",
        "--local-root",
        str(root),
        "--data",
        str(digits_dir),
        "--output",
        str(tmp_path / "out"),
        "--hw",
        "cpu",
        "--cards",
        "2",
        "--name",
        "k",
        "--preset",
        "vit-tiny",
        "--epochs",
        "3",
        "--max-retry",
        "1",
        "-f",
        str(values),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = tmp_path / "out" / "k" / "train" / "state.json"
    deadline = time.monotonic() + 600
    sched = pod0 = None
    try:
        while time.monotonic() < deadline and sched is None:
            assert proc.poll() is None, proc.stdout.read()[-3000:] if proc.stdout else ""
            if state.is_file() and json.loads(state.read_text())["step"] >= 2:
                tree = psutil.Process(proc.pid).children(recursive=True)
                with contextlib.suppress(psutil.Error):
                    sched = next(p for p in tree if "vitjob.launch.scheduler" in p.cmdline())
                    pod0 = sched.parent()  # the pod's process: `vitjob launch`
            time.sleep(0.2)
        assert sched is not None and pod0 is not None, "the training never reached step 2"
        assert "launch" in pod0.cmdline()
        start = time.monotonic()
        sched.kill()
        pod0.wait(timeout=60)  # not our child: psutil sees it go, the runner records its exit code
        elapsed = time.monotonic() - start
        print(f"pod 0 exited {elapsed:.2f} s after its scheduler was killed")
        assert elapsed < 15, elapsed
        LocalBackend(local_root=root, stream=False).cancel("k-train")  # no need to train on
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    reasons = LocalBackend(local_root=root, stream=False).status("k-train").reasons
    assert any(r.startswith("pod k-train-worker-0 failed with exit code 137") for r in reasons), reasons
    logs = root / "jobs" / "k-train" / "logs"
    pod0_log = "".join(
        (logs / name).read_text()
        for name in ("k-train-worker-0.previous.log", "k-train-worker-0.log")
        if (logs / name).is_file()
    )
    assert (
        "vitjob launch: sched (the MindSpore scheduler) failed with exit code signal SIGKILL "
        "(killed by SIGKILL); stopped 1 other process(es)" in pod0_log
    ), pod0_log[-3000:]


def test_exhausted_max_retry_fails_the_job_with_the_reason(tmp_path: Path, capsys) -> None:
    from vitjob.cli import main

    code = main(
        [
            "submit",
            "--backend",
            "local",
            "--local-root",
            str(tmp_path / "local"),
            "--data",
            str(tmp_path / "no-data"),
            "--output",
            str(tmp_path / "out"),
            "--hw",
            "cpu",
            "--cards",
            "1",
            "--name",
            "bad",
            "--preset",
            "vit-tiny",
            "--max-retry",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "job bad-train Failed" in out and "maxRetry 1 exhausted" in out
    status = LocalBackend(local_root=tmp_path / "local", stream=False).status("bad-train")
    assert status.retry_count == 1 and status.pods[0].exit_code == 1
    logs = "\n".join(LocalBackend(local_root=tmp_path / "local", stream=False).logs("bad-train"))
    assert "no CIFAR-10 train data" in logs
