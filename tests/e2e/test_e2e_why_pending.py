"""Why a job waits, root cause first, on the real control plane: the real Volcano scheduler and job
controller write their notes about a Pending job (PodGroup condition, Unschedulable, FailedScheduling,
PodGroupPending, all repeating one origin reason), and ``vitjob status`` must lead its ``why:`` with one
line naming the cause and the fix, fold the repeats, and keep the raw notes for ``-v``. ``submit``
warns of the same causes before creating anything it cannot run."""

from __future__ import annotations

from cluster_testing import Kube, Vitjob, wait_for

NPU = {"huawei.com/Ascend910": "8"}
MISSING_DATA = 'persistentvolumeclaim "vitjob-data" not found'


def why(text: str) -> list[str]:
    """The ``why:`` lines of ``vitjob status``, without their ``- ``."""
    section = text.split("\nwhy:\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip().removeprefix("- ") for line in section.splitlines() if line.startswith("  - ")]


def test_a_missing_claim_is_the_first_reason_and_the_repeats_are_folded(
    kube: Kube, namespace: str, nodes, vitjob: Vitjob
) -> None:
    kube.add_pvcs(namespace, ("vitjob-output",))  # the data claim is missing
    nodes("e2e-cpu", {})
    sub = vitjob("submit", "--hw", "cpu", "--cards", "1", "--name", "nopvc", "--cpu", "100m",
                 "--memory", "100Mi", check=True)
    first = f'PersistentVolumeClaim "vitjob-data" does not exist in namespace {namespace}'
    assert f"warning: {first}" in sub.stderr and "--data-pvc NAME" in sub.stderr, sub.stderr

    def scheduler_said_it() -> str | None:
        raw = vitjob("status", "nopvc-train", "-v", check=True).stdout
        return raw if raw.count(MISSING_DATA) >= 3 else None  # the scheduler's and controller's repeats

    raw = wait_for(scheduler_said_it, 90, "Volcano's notes about the missing claim")
    assert "scheduler notes (raw" in raw
    text = vitjob("status", "nopvc-train", check=True).stdout
    reasons = why(text)
    assert reasons[0].startswith(first) and reasons[0].endswith(
        "or pass --data-pvc NAME with an existing claim"), reasons
    assert sum(MISSING_DATA in r for r in reasons) == 1, reasons  # folded: one line of the scheduler's
    assert "scheduler notes" not in text


def test_no_node_with_the_selectors_label_is_named(kube: Kube, namespace: str, nodes, vitjob: Vitjob) -> None:
    kube.add_pvcs(namespace)
    nodes("e2e-cpu", {})
    sub = vitjob("submit", "--hw", "cpu", "--cards", "1", "--name", "sel", "--cpu", "100m", "--memory",
                 "100Mi", "--set", "node_selector.disk=ssd", check=True)
    line = "no node has the label disk=ssd of the pods' node selector"
    assert f"warning: {line}" in sub.stderr, sub.stderr
    text = wait_for(lambda: (t := vitjob("status", "sel-train", check=True).stdout) and "why:" in t and t,
                    60, "status saying why")
    assert why(text)[0].startswith(line) and "kubectl label node NODE disk=ssd" in why(text)[0], text


def test_not_enough_cards_gives_asked_and_free(kube: Kube, namespace: str, nodes, vitjob: Vitjob) -> None:
    kube.add_pvcs(namespace)
    node = nodes("e2e-npu", NPU)
    vitjob("submit", "--hw", "ascend", "--cards", "16", "--name", "big", check=True)
    text = wait_for(lambda: (t := vitjob("status", "big-train", check=True).stdout) and "why:" in t and t,
                    60, "status saying why")
    assert why(text)[0] == (
        "not enough huawei.com/Ascend910: the job asks for 16 (8 per pod, all pods at once), 8 free on the "
        f"largest node it may run on ({node}), 8 on the 1 node(s) it may run on, and queue default sets no "
        "limit on it: lower --cards, free cards, or add nodes"
    ), text
