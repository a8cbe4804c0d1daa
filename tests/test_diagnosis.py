"""vitjob.kube.diagnosis on objects as the API server returns them: rendered jobs (vitjob's own templates)
against nodes with known allocatable amounts, and container states as the kubelet writes them. The real
node's e2e tests (tests/e2e/test_e2e_real_node.py) check the same lines from a real cluster."""

from __future__ import annotations

from typing import Any

import pytest

from vitjob.api.values import load_spec
from vitjob.kube.diagnosis import fit_problems, image_problem, oom_note
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
