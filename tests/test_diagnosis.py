"""vitjob.kube.diagnosis on objects as the API server returns them: rendered jobs (vitjob's own templates)
against nodes with known allocatable amounts, and container states as the kubelet writes them. The real
node's e2e tests (tests/e2e/test_e2e_real_node.py) check the same lines from a real cluster."""

from __future__ import annotations

from typing import Any

import pytest

from vitjob.api.values import load_spec
from vitjob.kube.diagnosis import (
    fit_problems,
    fold_notes,
    image_problem,
    oom_note,
    root_causes,
)
from vitjob.render.manifests import render_objects


def job(**spec: Any) -> dict[str, Any]:
    objs = render_objects(load_spec({"name": "fit", "hw": "cpu", **spec}))
    return next(o for o in objs if o["kind"] == "Job")


def node(name: str, cpu: str, memory: str = "24Gi", labels: dict[str, str] | None = None, **extra) -> dict:
    alloc = {"cpu": cpu, "memory": memory, "pods": "110", **extra}
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {},
        "status": {"allocatable": alloc, "capacity": alloc},
    }


def test_a_pod_larger_than_every_node_is_one_line_with_both_amounts():
    problems = fit_problems(
        job(cards=1, cpu="3", memory="1Gi"), [node("small", "2"), node("smaller", "1500m")]
    )
    assert problems == [
        "does not fit: each pod asks for 3 CPU cores (cpu) but the largest node it may run on has 2 "
        "allocatable (small): lower the request (--cpu) or add a larger node"
    ]


def test_a_gang_larger_than_the_nodes_together_says_so():
    # 2 pods x 2 cores at once, on one 2-core node: each pod fits, the gang does not.
    problems = fit_problems(job(cards=2, cards_per_pod=1, cpu="2", memory="1Gi"), [node("n", "2")])
    assert problems == [
        "does not fit: the job's pods ask for 4 CPU cores (cpu) in all, at once (gang), but the 1 node(s) "
        "they may run on have 2 allocatable: lower --cpu or --cards, or add nodes"
    ]


def test_a_job_that_fits_has_no_problem_and_cordoned_nodes_do_not_count():
    spec = {"cards": 2, "cards_per_pod": 1, "cpu": "900m", "memory": "3Gi"}
    assert fit_problems(job(**spec), [node("n", "2")]) == []
    cordoned = node("n", "2")
    cordoned["spec"]["unschedulable"] = True
    assert fit_problems(job(**spec), [cordoned])[0].startswith(
        "does not fit: each pod asks for 0.9 CPU cores"
    )


def test_memory_and_the_node_selector_of_ascend_pods():
    ascend = job(hw="ascend", cards=8)
    plain = node("cpu-only", "192", "1Ti")
    assert any(
        "huawei.com/Ascend910" in p and "has 0 allocatable" in p for p in fit_problems(ascend, [plain])
    )
    chips = node(
        "npu", "192", "1Ti", labels={"accelerator": "huawei-Ascend910"}, **{"huawei.com/Ascend910": "8"}
    )
    assert fit_problems(ascend, [chips]) == []
    big = job(cards=1, cpu="1", memory="64Gi")
    assert fit_problems(big, [node("n", "2", "24Gi")]) == [
        "does not fit: each pod asks for 64Gi memory (memory) but the largest node it may run on has 24Gi "
        "allocatable (n): lower the request (--memory) or add a larger node"
    ]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (
            "ErrImageNeverPull",
            "pod p-0: ErrImageNeverPull: image reg/x:1 (pull policy Never) is not on node n1: load it there "
            'or allow pulls (Container image "reg/x:1" is not present with pull policy of Never)',
        ),
        (
            "ImagePullBackOff",
            "pod p-0: ImagePullBackOff: image reg/x:1 (pull policy Never) cannot be pulled on node n1: check "
            'its name and registry (Container image "reg/x:1" is not present with pull policy of Never)',
        ),
    ],
)
def test_image_waits_name_the_image_the_policy_and_the_node(reason, expected):
    pod = {
        "metadata": {"name": "p-0"},
        "spec": {"nodeName": "n1", "containers": [{"image": "reg/x:1", "imagePullPolicy": "Never"}]},
    }
    message = 'Container image "reg/x:1" is not present with pull policy of Never'
    assert image_problem(pod, {"reason": reason, "message": message}) == expected
    assert image_problem(pod, {"reason": "CrashLoopBackOff"}) is None


def test_oom_note_names_the_memory_limit():
    limited = {"spec": {"containers": [{"resources": {"limits": {"memory": "300Mi"}}}]}}
    assert oom_note(limited, {"reason": "OOMKilled", "exitCode": 137}) == (
        ": killed by the kernel over its memory limit 300Mi"
    )
    assert oom_note(limited, {"reason": "Error", "exitCode": 137}) == ""
    assert "no memory limit" in oom_note({"spec": {"containers": [{}]}}, {"reason": "OOMKilled"})


# --- why a Pending job waits: root cause first. Event texts are what Volcano 1.15's scheduler and job
# controller wrote on the dev cluster for a job whose data claim did not exist (`kubectl get events -o
# yaml`), formatted as vitjob.backends.kubernetes.why.event_reasons lists them (newest first).
PG = "nopvc-train-d6599ccb-d71e-42ec-a018-a0f774f31de9"
ORIGIN = (
    "1/1 tasks in gang unschedulable: pod group is not ready, 1 Pending, 1 minAvailable; Pending: 1 "
    'Unschedulable. Origin reason is nopvc-train-worker-0: 0/1 nodes are unavailable: 1 plugin VolumeZone '
    'pre-predicates failed persistentvolumeclaim "vitjob-data" not found.'
)
NOTES = [
    f"PodGroup Unschedulable: NotEnoughResources: {ORIGIN}",
    f"Unschedulable (PodGroup {PG}): {ORIGIN}",
    "FailedScheduling (Pod nopvc-train-worker-0): 0/1 nodes are unavailable: 1 plugin VolumeZone "
    'pre-predicates failed persistentvolumeclaim "vitjob-data" not found.',
    f"PodGroupPending (Job nopvc-train): PodGroup adm:nopvc-train unschedulable, reason: {ORIGIN}",
    f"Unschedulable (PodGroup {PG}): 0/0 tasks in gang unschedulable: pod group is not ready, 1 minAvailable",
]


def cordoned(n: dict) -> dict:
    n["spec"]["unschedulable"] = True
    return n


def bound_pod(node_name: str, **requests: str) -> dict:
    return {
        "metadata": {"name": f"on-{node_name}"},
        "spec": {"nodeName": node_name, "containers": [{"resources": {"requests": requests}}]},
        "status": {"phase": "Running"},
    }


def causes(j: dict, nodes: list[dict], claims=("vitjob-data", "vitjob-output"), pods=(), queue=None,
           notes=()) -> list[str]:
    return root_causes(j, "ml", nodes=nodes, claims=claims, node_pods=pods, queue=queue,
                       event_messages=notes)


def test_a_missing_claim_leads_with_its_flag_before_the_scheduler_notes():
    found = causes(job(cpu="1", memory="1Gi"), [node("n", "4")], claims=["vitjob-output"], notes=NOTES)
    assert found == [
        'PersistentVolumeClaim "vitjob-data" does not exist in namespace ml: the pods cannot start without '
        "it; create it (`kubectl get pvc -n ml` lists the claims) or pass --data-pvc NAME with an existing "
        "claim"
    ]
    output = causes(job(cpu="1", memory="1Gi", output_pvc="out"), [node("n", "4")], claims=["vitjob-data"])
    assert output[0].startswith('PersistentVolumeClaim "out" does not exist') and "--output-pvc" in output[0]


def test_without_leave_to_list_claims_the_scheduler_events_name_the_missing_one():
    found = causes(job(cpu="1", memory="1Gi"), [node("n", "4")], claims=None, notes=NOTES)
    assert len(found) == 1 and found[0].startswith('PersistentVolumeClaim "vitjob-data" does not exist')


def test_the_scheduler_notes_fold_to_one_line_per_cause():
    assert fold_notes(NOTES) == [NOTES[0], NOTES[4]]


def test_a_selector_no_node_matches_names_the_label():
    nodes = [node("kwok-a", "64", "512Gi", **{"huawei.com/Ascend910": "8"})]  # no accelerator label
    found = causes(job(hw="ascend", cards=8), nodes)
    assert found[0] == (
        "no node has the label accelerator=huawei-Ascend910 of the pods' node selector (1 node(s) checked): "
        "label a node (`kubectl label node NODE accelerator=huawei-Ascend910`) or change the selector "
        "(--set node_selector.KEY=VALUE; accelerator)"
    )
    # labels that exist on different nodes but never together
    split = [node("a", "8", labels={"disk": "ssd"}), node("b", "8", labels={"zone": "z1"})]
    found = causes(job(cpu="1", memory="1Gi", node_selector={"disk": "ssd", "zone": "z1"}), split)
    assert found[0].startswith("no node has all the labels disk=ssd, zone=z1")
    # the matching node exists but is cordoned
    found = causes(job(cpu="1", memory="1Gi"), [cordoned(node("vitjob-node", "2"))])
    assert found == [
        "every node is cordoned (unschedulable: vitjob-node): `kubectl uncordon NODE`, or add a node"
    ]


ASCEND = {"accelerator": "huawei-Ascend910"}


def test_not_enough_cards_gives_asked_and_free_on_the_largest_node_and_in_the_queue():
    nodes = [node(f"npu-{i}", "256", "2Ti", ASCEND, **{"huawei.com/Ascend910": "8"}) for i in range(2)]
    busy = [bound_pod("npu-0", **{"huawei.com/Ascend910": "8"}),
            bound_pod("npu-1", **{"huawei.com/Ascend910": "4"})]
    found = causes(job(hw="ascend", cards=16), nodes, pods=busy)
    assert found == [
        "not enough huawei.com/Ascend910: the job asks for 16 (8 per pod, all pods at once), 4 free on the "
        "largest node it may run on (npu-1), 4 on the 2 node(s) it may run on, and queue default sets no "
        "limit on it: lower --cards, free cards, or add nodes"
    ]
    # the nodes are free, the queue is not
    queue = {"metadata": {"name": "team"}, "spec": {"capability": {"huawei.com/Ascend910": "8"}},
             "status": {"allocated": {"huawei.com/Ascend910": "0"}}}
    found = causes(job(hw="ascend", cards=16), nodes, queue=queue)
    assert found[0].startswith("not enough huawei.com/Ascend910: the job asks for 16") and (
        "queue team has 8 free of its capability" in found[0]
    )
    assert causes(job(hw="ascend", cards=16), nodes) == []  # 2 free nodes, no queue limit: it fits
