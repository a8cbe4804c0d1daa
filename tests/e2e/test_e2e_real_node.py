"""The whole path on the dev cluster's real node (kubelet v1.35.3 + containerd, the CPU image built here):
`vitjob submit` → Volcano gang-schedules → the kubelet starts `vitjob launch` in the image → ranks find each
other through cluster DNS → MindSpore trains → checkpoints on a hostPath PV → a pod is deleted → Volcano
restarts the job → training resumes → Completed; the chart's controller as a pod; OOM kills, missing
images and jobs that cannot fit, as `vitjob status` tells them.

Every check reads what the real components wrote: `kubectl logs` (the kubelet's container logs), files on
the PVs, objects from the API server; accuracies are recomputed from the weights by hand
(tests/tiny_vit.py) and compared with conftest's one-process run of the same seed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_testing import REAL_NODE_IP, REPO, Kube, Vitjob, wait_for
from test_e2e_chart_and_kubectl import helm
from tiny_vit import EPOCHS, SEED, STEPS, independent_test_accuracy

from vitjob.images import default_image
from vitjob.progress import parse_line

pytestmark = pytest.mark.timeout(1500)
UID = 1000  # the images' user (vitjob.images.USER_ID)
# Sized for this 2-core, 24 GB machine: two pods of 0.9 cores fit its 2 allocatable cores.
SMALL = ("--cpu", "900m", "--memory", "3Gi")


def host_dirs(kube: Kube, namespace: str, digits_dir: Path) -> tuple[Path, Path]:
    """hostPath PVs (cluster_testing's add_pvcs) with the digits data, and an output folder the images'
    user may write (hostPath volumes ignore fsGroup)."""
    data = Path(f"/tmp/vitjob-e2e/{namespace}-vitjob-data")
    output = Path(f"/tmp/vitjob-e2e/{namespace}-vitjob-output")
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(digits_dir, data)
    for path in (data, *data.rglob("*")):  # readable by the images' user (pytest's folders are 0700)
        path.chmod(0o755 if path.is_dir() else 0o644)
    output.mkdir(parents=True, exist_ok=True)
    os.chown(output, UID, UID)
    kube.add_pvcs(namespace)
    return data, output


def values_file(tmp: Path, **values: Any) -> Path:
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def pod_log(kube: Kube, namespace: str, pod: str, *extra: str) -> str:
    return kube.kubectl("logs", pod, "-n", namespace, *extra, check=False).stdout


def progress(text: str) -> list[Any]:
    return [p for p in map(parse_line, text.splitlines()) if p is not None]


def running_on_node(kube: Kube, namespace: str, job: str, count: int) -> list[dict]:
    pods = [
        p
        for p in kube.pods(namespace, f"volcano.sh/job-name={job}")
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]
    return pods if len(pods) == count else []


def last_checkpoint(kube: Kube, namespace: str) -> dict | None:
    """Rank 0's vitjob.io/last-checkpoint annotation, parsed (None before it published one)."""
    pod = kube.get_or_none("pod", "rt-train-worker-0", namespace) or {"metadata": {}}
    text = (pod["metadata"].get("annotations") or {}).get("vitjob.io/last-checkpoint")
    return json.loads(text) if text else None


def checkpoints(run: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (run / "ckpt").glob("step-*.ckpt"))


def test_two_pods_train_restart_from_their_checkpoint_and_complete(
    kube: Kube,
    namespace: str,
    real_node: str,
    vitjob: Vitjob,
    digits_dir: Path,
    straight_run: Path,
    tmp_path: Path,
) -> None:
    """2 pods × 1 process of vit-tiny (batch 32 each: the straight run's 64), seed 7, 2 epochs."""
    _, output = host_dirs(kube, namespace, digits_dir)
    values = values_file(
        tmp_path,
        extra_args=[
            *("--seed", str(SEED), "--num-workers", "1", "--save-steps", "8", "--log-steps", "1"),
            "--save-rank-weights",
        ],
    )
    submitted = time.monotonic()
    vitjob(
        *("submit", "--hw", "cpu", "--cards", "2", "--cards-per-pod", "1", "--preset", "vit-tiny"),
        *("--name", "rt", "--epochs", str(EPOCHS), "--batch-size", "32", *SMALL, "-f", str(values)),
        "--publish-checkpoints",
        check=True,
    )
    follower = vitjob.popen("logs", "-f", "rt-train")
    first = wait_for(lambda: running_on_node(kube, namespace, "rt-train", 2), 180, "both pods Running")
    assert {p["spec"]["nodeName"] for p in first} == {real_node}
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in first}
    assert len(set(ips.values())) == 2 and all(ip.startswith("10.240.0.") for ip in ips.values()), ips
    assert REAL_NODE_IP not in ips.values()
    # Rank 0's first training step, as `kubectl logs` shows it: the time from submit to training.
    wait_for(
        lambda: any(p.event == "step" for p in progress(pod_log(kube, namespace, "rt-train-worker-0"))),
        300,
        "rank 0's first progress line",
    )
    to_first_step = time.monotonic() - submitted
    run = output / "rt" / "train"
    wait_for(lambda: checkpoints(run), 300, f"a checkpoint in {run}/ckpt")

    # Rank 1 found rank 0 by name: the svc plugin's host name, resolved by cluster DNS to rank 0's pod IP.
    rank1 = pod_log(kube, namespace, "rt-train-worker-1")
    assert f"rt-train-worker-0.rt-train resolves to {ips['rt-train-worker-0']}" in rank1, rank1[-2000:]
    before = checkpoints(run)
    seen = before[-1]
    # Rank 0 published a checkpoint on its pod, through the job's own Role (get/patch of that pod only).
    # Training goes on meanwhile and keeps only the last 2 files: the published one may be gone by now.
    published = wait_for(lambda: last_checkpoint(kube, namespace), 120, "rank 0's last-checkpoint annotation")
    written = {*before, *checkpoints(run)}
    assert published["step"] in written or published["step"] > seen, (published, before, checkpoints(run))
    uids = {p["metadata"]["uid"] for p in first}
    kube.kubectl("delete", "pod", "rt-train-worker-1", "-n", namespace, "--wait=false")

    def restarted() -> list[dict]:
        pods = running_on_node(kube, namespace, "rt-train", 2)
        return pods if not uids & {p["metadata"]["uid"] for p in pods} else []

    wait_for(restarted, 240, "both pods of the job restarted by Volcano (new pod UIDs)")
    done = vitjob("wait", "rt-train", "--timeout", "900", timeout=960)
    assert done.returncode == 0, done.stdout + done.stderr
    job = kube.get("vcjob", "rt-train", namespace)
    assert job["status"]["state"]["phase"] == "Completed", job["status"]
    assert job["status"].get("retryCount", 0) >= 1, job["status"]

    # The restarted run, read from the kubelet's log of the new rank 0: it resumed from a checkpoint at or
    # after the last one seen before the delete, and its first training step is the one after it.
    after = progress(pod_log(kube, namespace, "rt-train-worker-0"))
    assert after and after[0].event == "resume", after[:3]
    resumed = after[0].step
    # Checkpoints are written every 8 steps and at each epoch's end (21 steps an epoch).
    assert seen <= resumed < STEPS and (resumed % 8 == 0 or resumed % (STEPS // EPOCHS) == 0), (seen, resumed)
    steps = [p.step for p in after if p.event == "step"]
    assert steps[0] == resumed + 1 and steps[-1] == STEPS, steps

    # The result equals the straight run's (same seed, same global batch) within one point.
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    recorded = [r["test_accuracy"] for r in records if "test_accuracy" in r]
    acc_job = independent_test_accuracy(run / "rank-weights" / "rank-0.ckpt", digits_dir)
    acc_straight = independent_test_accuracy(straight_run / "ckpt" / f"step-{STEPS:08d}.ckpt", digits_dir)
    assert abs(acc_job - acc_straight) <= 0.01, (acc_job, acc_straight)
    assert len(recorded) == 1 and abs(recorded[0] - acc_job) < 1e-6, (recorded, acc_job)

    # The annotation names the newest checkpoint file, and `vitjob status` says so.
    assert last_checkpoint(kube, namespace)["step"] == checkpoints(run)[-1] == STEPS
    assert f"checkpoint: step {STEPS} (epoch {EPOCHS}), written " in status_text(vitjob, "rt-train")

    # The first run of the deleted pod kept its log on the output volume: what `kubectl logs` showed of
    # it before the delete is there, in order, and `vitjob logs --attempt 1` (a reader pod) prints it.
    kept_dir = output / "rt" / "logs" / "rt-train"
    attempts = sorted(p.name for p in (kept_dir / "rt-train-worker-1").iterdir())
    assert attempts == ["attempt-1.log", "attempt-2.log"], attempts
    kept = vitjob("logs", "rt-train", "--attempt", "1", "--rank", "1", check=True).stdout.splitlines()
    assert kept == [f"[rt-train-worker-1] {ln}" for ln in (kept_dir / "rt-train-worker-1" / "attempt-1.log")
                    .read_text().splitlines()]
    shown_before = [ln for ln in rank1.splitlines() if ln.startswith("[rank 1] ")]
    kept_rank1 = [ln.removeprefix("[rt-train-worker-1] ") for ln in kept]
    kept_rank1 = [ln for ln in kept_rank1 if ln.startswith("[rank 1] ")]
    assert shown_before and kept_rank1[: len(shown_before)] == shown_before, (shown_before[-3:], kept_rank1)
    readers = "app.kubernetes.io/component=log-reader"
    wait_for(lambda: not kube.pods(namespace, readers), 60, "the log reader pod deleted")

    # `vitjob logs -f` followed the kubelet's logs of both runs (it ends when the job does).
    out, err = follower.communicate(timeout=120)
    assert follower.returncode == 0, err[-2000:]
    followed = [p.step for p in progress(out) if p.event == "step"]
    assert 1 in followed and resumed + 1 in followed and STEPS in followed, followed[:5]
    assert followed.index(resumed + 1) > followed.index(1)
    print(
        f"\nsubmit to rank 0's first training step: {to_first_step:.1f} s; resumed from step {resumed} "
        f"(last checkpoint seen {seen}); test accuracy {acc_job:.4f} vs straight run {acc_straight:.4f}"
    )


def status_text(vitjob: Vitjob, job: str) -> str:
    shown = vitjob("status", job)
    return shown.stdout + shown.stderr


def container_state(kube: Kube, namespace: str, pod: str) -> dict:
    """The pod's first container status ({} while the pod or its status does not exist yet)."""
    got = kube.get_or_none("pod", pod, namespace) or {}
    return ((got.get("status") or {}).get("containerStatuses") or [{}])[0]


def test_a_pod_over_its_memory_limit_is_oom_killed_and_status_says_so(
    kube: Kube, namespace: str, real_node: str, vitjob: Vitjob, digits_dir: Path
) -> None:
    host_dirs(kube, namespace, digits_dir)
    vitjob(
        *("submit", "--hw", "cpu", "--cards", "1", "--preset", "vit-tiny", "--name", "oom"),
        *("--cpu", "500m", "--memory", "160Mi", "--memory-limit", "160Mi", "--max-retry", "1"),
        check=True,
    )

    def killed() -> dict | None:
        for pod in kube.pods(namespace, "volcano.sh/job-name=oom-train"):
            cs = (pod["status"].get("containerStatuses") or [{}])[0]
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if term:
                return term
        return None

    term = wait_for(killed, 240, "the container of oom-train terminated")
    # The kernel's verdict as the kubelet reports it (not vitjob's): exit 137, reason OOMKilled.
    assert (term["exitCode"], term["reason"]) == (137, "OOMKilled"), term
    # Shown while the kubelet restarts the container in place (job Running) as after the job failed.
    said = "exited with code 137 (OOMKilled: killed by the kernel over its memory limit 160Mi)"
    last: list[str] = []

    def status_says() -> str | None:
        last[:] = [status_text(vitjob, "oom-train")]
        return last[0] if said in last[0] else None

    try:
        wait_for(status_says, 120, "vitjob status naming the OOM kill")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status:\n{last[0] if last else ''}") from None


def test_a_missing_image_is_named_in_status(
    kube: Kube, namespace: str, real_node: str, vitjob: Vitjob, digits_dir: Path
) -> None:
    host_dirs(kube, namespace, digits_dir)
    image = "docker.io/vitjob/vitjob-cpu:not-built-here"
    vitjob(
        *("submit", "--hw", "cpu", "--cards", "1", "--preset", "vit-tiny", "--name", "img", *SMALL),
        *("--image", image, "--image-pull-policy", "Never"),
        check=True,
    )

    def waiting_on_image() -> dict | None:
        waiting = (container_state(kube, namespace, "img-train-worker-0").get("state") or {}).get("waiting")
        return waiting if waiting and waiting.get("reason") != "ContainerCreating" else None

    waiting = wait_for(
        waiting_on_image,
        180,
        "img-train-worker-0 waiting on its image",
    )
    assert waiting["reason"] == "ErrImageNeverPull", waiting
    text = status_text(vitjob, "img-train")
    assert (
        f"pod img-train-worker-0: ErrImageNeverPull: image {image} (pull policy Never) is not on node "
        f"{real_node}: load it there or allow pulls"
    ) in text, text


def test_a_job_larger_than_the_node_says_so_in_one_line(
    kube: Kube, namespace: str, real_node: str, vitjob: Vitjob, digits_dir: Path
) -> None:
    host_dirs(kube, namespace, digits_dir)
    allocatable = kube.get("node", real_node)["status"]["allocatable"]["cpu"]
    # Two pods of 2 cores each, all at once, on a node with 2 allocatable cores: it never fits.
    vitjob(
        *("submit", "--hw", "cpu", "--cards", "2", "--cards-per-pod", "1", "--preset", "vit-tiny"),
        *("--name", "big", "--cpu", "2", "--memory", "1Gi"),
        check=True,
    )
    line = (
        f"does not fit: the job's pods ask for 4 CPU cores (cpu) in all, at once (gang), but the 1 node(s) "
        f"they may run on have {allocatable} allocatable: lower --cpu or --cards, or add nodes"
    )
    text = wait_for(
        lambda: (t := status_text(vitjob, "big-train")) and line in t and t, 60, "status saying it cannot fit"
    )
    reasons = [r.strip() for r in text.split("why:", 1)[1].splitlines() if r.strip().startswith("- ")]
    assert reasons[0] == f"- {line}", reasons  # the root cause first
    assert kube.pods(namespace, "volcano.sh/job-name=big-train") == [] or all(
        not p["spec"].get("nodeName") for p in kube.pods(namespace, "volcano.sh/job-name=big-train")
    )


def test_helm_install_runs_the_controller_as_a_pod_that_drives_the_pipeline(
    kube: Kube, namespace: str, real_node: str, digits_dir: Path, tmp_path: Path
) -> None:
    """The chart's controller Deployment on the real node (in-cluster config through the `kubernetes`
    Service, its ServiceAccount token) runs train, eval, export and infer310; `helm test` runs its pod."""
    _, output = host_dirs(kube, namespace, digits_dir)
    chart = str(REPO / "charts" / "vitjob")
    sets = [
        "hw=cpu",
        "cards=1",
        "preset=vit-tiny",
        "epochs=1",
        "cpu=900m",
        "memory=3Gi",
        "then={eval,export,infer310}",
        "controller.replicas=1",
    ]
    flags = [a for s in sets for a in ("--set", s)]
    inst = helm(kube, tmp_path, "install", "vit", chart, "-n", namespace, *flags)
    assert inst.returncode == 0, inst.stderr
    controller = wait_for(
        lambda: [
            p
            for p in kube.pods(namespace, "app.kubernetes.io/component=controller")
            if p["status"].get("phase") == "Running"
        ],
        180,
        "the controller's pod Running",
    )
    assert controller[0]["spec"]["nodeName"] == real_node

    def phase() -> str:
        return (kube.get("vitjobs.vitjob.io", "vit", namespace).get("status") or {}).get("phase", "")

    wait_for(lambda: phase() in ("Completed", "Failed"), 1200, "the VitJob finished", every_s=5)
    logs = pod_log(kube, namespace, controller[0]["metadata"]["name"])
    assert phase() == "Completed", logs[-3000:]
    items = kube.get("vcjob", namespace=namespace)["items"]
    jobs = {j["metadata"]["name"]: j["status"]["state"]["phase"] for j in items}
    assert jobs == {f"vit-{s}": "Completed" for s in ("train", "eval", "export", "infer310")}, jobs
    run = output / "vit"
    assert (run / "export" / "vit_base.mindir").stat().st_size > 0
    assert "acc=" in (run / "infer310" / "acc.log").read_text()
    tested = helm(kube, tmp_path, "test", "vit", "-n", namespace, "--timeout", "300s", timeout=360)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Succeeded" in tested.stdout, tested.stdout


ASCEND = "huawei.com/Ascend910"
# What each card's process of the Ascend job prints instead of training: its environment and its table.
PRINT_TABLE = (
    "import json, os; print('RANKTABLE', json.dumps({'DEVICE_ID': os.environ['DEVICE_ID'], "
    "'RANK_ID': os.environ['RANK_ID'], 'table': json.load(open(os.environ['RANK_TABLE_FILE']))}))"
)


@pytest.fixture
def ascend_plugin(kube: Kube, real_node: str, tmp_path: Path):
    """The test device plugin (devcluster/addons) on the real kubelet's device-plugin API: 8 chips."""
    addons = Path(
        subprocess.run(
            ["bash", str(REPO / "devcluster" / "addons" / "build.sh")],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    log = (tmp_path / "device-plugin.log").open("w")
    plugin = subprocess.Popen(
        [
            str(addons / "ascend-test-device-plugin"),
            "--kubeconfig",
            str(kube.kubeconfig),
            "--node-name",
            real_node,
            "--devices",
            "8",
            # vitjob/launch/ranktable.py refuses super_device_id (Atlas A3, rank table 1.2): leave it out.
            "--super-device-id",
            "",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    kube.kubectl("label", "node", real_node, "accelerator=huawei-Ascend910", "--overwrite")
    try:
        wait_for(
            lambda: kube.get("node", real_node)["status"].get("allocatable", {}).get(ASCEND) == "8",
            60,
            f"the node advertising 8 {ASCEND} (plugin log: {tmp_path / 'device-plugin.log'})",
        )
        yield plugin
    finally:
        plugin.terminate()
        plugin.wait(15)
        kube.kubectl("label", "node", real_node, "accelerator-", check=False)


def chips(pod: dict) -> list[int]:
    real = pod["metadata"].get("annotations", {}).get("huawei.com/AscendReal", "")
    return sorted(int(d.rsplit("-", 1)[1]) for d in real.split(",") if d)


def test_an_ascend_pods_rank_table_comes_from_a_real_kubelet_allocation(
    kube: Kube, namespace: str, ascend_plugin, vitjob: Vitjob, digits_dir: Path, tmp_path: Path
) -> None:
    """A pod holding 4 chips first, then a 4-card Ascend job whose stage prints its rank table: the kubelet
    allocates the other 4 chips through the plugin, and the table, built by `vitjob launch` in the pod
    from the plugin's annotation, lists them with DEVICE_ID 0..3 in chip order."""
    host_dirs(kube, namespace, digits_dir)
    image = default_image("cpu")  # the image `cluster up` loaded into the node's containerd
    holder = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "holder", "namespace": namespace},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    "name": "hold",
                    "image": image,
                    "command": ["sleep", "3600"],
                    "resources": {"limits": {ASCEND: "4"}, "requests": {"cpu": "100m", "memory": "64Mi"}},
                }
            ],
            "nodeSelector": {"accelerator": "huawei-Ascend910"},
        },
    }
    kube.apply(holder)
    held = wait_for(
        lambda: (p := kube.get("pod", "holder", namespace))["status"].get("phase") == "Running" and chips(p),
        120,
        "the holder pod Running with 4 chips",
    )
    rendered = vitjob(
        *("render", "--hw", "ascend", "--cards", "4", "--name", "asc", "--image", image, "-n", namespace),
        *("--cpu", "500m", "--memory", "1Gi", "--set", "ascend_host_mounts=false"),
        backend=False,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    job = next(d for d in docs if d["kind"] == "Job")
    container = job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["vitjob", "launch"] and container["command"][-1] == "--", container
    container["args"] = ["python", "-c", PRINT_TABLE]
    manifest = tmp_path / "asc.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    vitjob("submit", "--manifest", str(manifest), check=True)
    done = vitjob("wait", "asc-train", "--timeout", "300", timeout=360)
    pod = kube.get("pod", "asc-train-worker-0", namespace)
    out = pod_log(kube, namespace, "asc-train-worker-0")
    assert done.returncode == 0, out[-3000:]
    allocated = chips(pod)
    assert len(allocated) == 4 and not set(allocated) & set(held), (allocated, held)
    printed = [
        json.loads(line.split("RANKTABLE ", 1)[1]) for line in out.splitlines() if "RANKTABLE " in line
    ]
    assert len(printed) == 4, out[-3000:]
    table = printed[0]["table"]
    assert all(p["table"] == table for p in printed)
    (server,) = table["server_list"]
    assert server["server_id"] == pod["metadata"]["uid"] and server["container_ip"] == pod["status"]["podIP"]
    assert [int(d["device_id"]) for d in server["device"]] == allocated
    by_device = {p["DEVICE_ID"]: p["RANK_ID"] for p in printed}
    assert by_device == {"0": "0", "1": "1", "2": "2", "3": "3"}, by_device
    if held == [0, 1, 2, 3]:  # the kubelet's usual pick: the job then holds chips 4-7 as DEVICE_ID 0-3
        assert allocated == [4, 5, 6, 7]


def test_a_suspended_job_has_no_pods_and_resumes_from_its_checkpoint(
    kube: Kube, namespace: str, real_node: str, vitjob: Vitjob, digits_dir: Path, tmp_path: Path
) -> None:
    _, output = host_dirs(kube, namespace, digits_dir)
    args = ["--seed", str(SEED), "--num-workers", "1", "--save-steps", "4", "--log-steps", "1"]
    values = values_file(tmp_path, extra_args=args)
    vitjob(
        *("submit", "--hw", "cpu", "--cards", "1", "--preset", "vit-tiny", "--name", "sus"),
        *("--epochs", "4", "--batch-size", "64", *SMALL, "-f", str(values)),
        check=True,
    )
    run = output / "sus" / "train"
    wait_for(lambda: checkpoints(run), 300, f"a checkpoint in {run}/ckpt")
    vitjob("suspend", "sus-train", check=True)

    # Volcano aborted the job: no pod of it is left, and `vitjob status` says it is suspended.
    wait_for(lambda: not kube.pods(namespace, "volcano.sh/job-name=sus-train"), 120, "the job's pods gone")
    job = wait_for(
        lambda: (j := kube.get("vcjob", "sus-train", namespace))["status"]["state"]["phase"] == "Aborted"
        and j,
        60,
        "the job Aborted",
    )
    assert "vitjob.io/suspended" in job["metadata"]["annotations"]
    assert "suspended by `vitjob suspend` at " in status_text(vitjob, "sus-train")
    at_suspend = json.loads((run / "state.json").read_text())["step"]
    assert checkpoints(run)[-1] == at_suspend, (at_suspend, checkpoints(run))

    vitjob("resume", "sus-train", check=True)
    done = vitjob("wait", "sus-train", "--timeout", "600", timeout=660)
    assert done.returncode == 0, done.stdout + done.stderr
    job = kube.get("vcjob", "sus-train", namespace)
    state = job["status"]
    assert (state["state"]["phase"], state.get("retryCount")) == ("Completed", 1), state
    assert "vitjob.io/suspended" not in (job["metadata"].get("annotations") or {})
    # The run after the resume, from the kubelet's log: it starts at the suspended checkpoint's step.
    after = progress(pod_log(kube, namespace, "sus-train-worker-0"))
    assert after and after[0].event == "resume" and after[0].step == at_suspend, after[:3]
    assert at_suspend < after[0].total_steps, "suspended after training had ended: nothing was resumed"
    steps = [p.step for p in after if p.event == "step"]
    assert steps[0] == at_suspend + 1 and steps[-1] == after[0].total_steps, steps
