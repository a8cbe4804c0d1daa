"""Why a job's pods cannot run, in one line each, from their spec and status and the nodes.

Owns the root-cause lines ``vitjob status`` puts first, computed from plain objects (parsed JSON):

- ``fit_problems``: a pod that asks for more CPU, memory or accelerators than any node it may run on has
  allocatable, or a gang whose pods together ask for more than those nodes have (Volcano schedules all
  of a job's pods at once or none);
- ``image_problem``: a container waiting on its image (``ErrImageNeverPull``, ``ImagePullBackOff``, …),
  naming the image and the node;
- ``oom_note``: the memory limit a container was killed at (``OOMKilled``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vitjob.kube.kinds import quantity

# What a pod's requests are checked against, with the words a user reads.
FIT_RESOURCES: dict[str, str] = {"cpu": "CPU cores", "memory": "bytes of memory"}
DEVICE_PREFIXES = ("huawei.com/", "nvidia.com/")
IMAGE_WAIT_REASONS = frozenset(
    {"ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ImageInspectError"}
)


def pod_requests(pod_spec: Mapping[str, Any]) -> dict[str, float]:
    """What one pod asks the scheduler for: its containers' requests (a limit stands in for a missing
    request, as Kubernetes defaults it), by resource name."""
    need: dict[str, float] = {}
    for container in pod_spec.get("containers") or []:
        res = container.get("resources") or {}
        asked = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        for key, value in asked.items():
            need[key] = need.get(key, 0.0) + quantity(value)
    return need


def _labels_match(selector: Mapping[str, str], node: Mapping[str, Any]) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def candidate_nodes(
    pod_spec: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The nodes a pod may be placed on: schedulable ones whose labels match its node selector."""
    selector = pod_spec.get("nodeSelector") or {}
    return [n for n in nodes if not (n.get("spec") or {}).get("unschedulable") and _labels_match(selector, n)]


def allocatable(node: Mapping[str, Any], resource: str) -> float:
    return quantity(((node.get("status") or {}).get("allocatable") or {}).get(resource, "0"))


def _amount(resource: str, value: float) -> str:
    if resource == "memory":
        for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
            if value >= size:
                return f"{value / size:.3g}{unit}"
        return f"{value:g}"
    return f"{value:g}"


def _words(resource: str) -> str:
    if resource == "memory":
        return "memory"
    return FIT_RESOURCES.get(resource, resource)


def fit_problems(job: Mapping[str, Any], nodes: list[Mapping[str, Any]]) -> list[str]:
    """One line per resource a Volcano Job's pods can never get: a pod larger than every node it may run
    on, or a gang larger than all of them together. Empty when the job could fit the cluster as it is."""
    problems: list[str] = []
    pods: list[tuple[Mapping[str, Any], int]] = []
    for task in (job.get("spec") or {}).get("tasks") or []:
        spec = (task.get("template") or {}).get("spec") or {}
        pods.append((spec, int(task.get("replicas") or 0)))
    if not pods:
        return problems
    for resource in sorted({r for spec, _ in pods for r in pod_requests(spec)}):
        if resource not in FIT_RESOURCES and not resource.startswith(DEVICE_PREFIXES):
            continue
        total = 0.0
        usable: dict[str, float] = {}
        too_big = None
        for spec, replicas in pods:
            want = pod_requests(spec).get(resource, 0.0)
            total += want * replicas
            where = candidate_nodes(spec, nodes)
            have = {n["metadata"]["name"]: allocatable(n, resource) for n in where}
            usable.update(have)
            largest = max(have.values(), default=0.0)
            if want > largest and too_big is None:
                too_big = (want, largest, [k for k, v in have.items() if v == largest and v > 0])
        if too_big is not None:
            want, largest, names = too_big
            where_text = f" ({', '.join(sorted(names)[:3])})" if names else ""
            asked = f"{_amount(resource, want)} {_words(resource)} ({resource})"
            problems.append(
                f"does not fit: each pod asks for {asked} but the largest node it may run on has "
                f"{_amount(resource, largest)} allocatable{where_text}: lower the request "
                f"(--{_flag(resource)}) or add a larger node"
            )
        elif total > sum(usable.values()):
            in_all = _amount(resource, sum(usable.values()))
            problems.append(
                f"does not fit: the job's pods ask for {_amount(resource, total)} {_words(resource)} "
                f"({resource}) in all, at once (gang), but the {len(usable)} node(s) they may run on have "
                f"{in_all} allocatable: lower --{_flag(resource)} or --cards, or add nodes"
            )
    return problems


def _flag(resource: str) -> str:
    return resource if resource in FIT_RESOURCES else "cards"


def _main_container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    containers: list[Mapping[str, Any]] = (pod.get("spec") or {}).get("containers") or [{}]
    return containers[0]


def image_problem(pod: Mapping[str, Any], waiting: Mapping[str, Any]) -> str | None:
    """``pod P: ErrImageNeverPull: image I (pull policy Never) is not on node N: <kubelet's message>`` for
    a container waiting on its image; None for any other wait."""
    reason = waiting.get("reason")
    if reason not in IMAGE_WAIT_REASONS:
        return None
    container = _main_container(pod)
    image = container.get("image", "?")
    policy = container.get("imagePullPolicy") or "IfNotPresent"
    node = (pod.get("spec") or {}).get("nodeName") or "?"
    if reason == "ErrImageNeverPull":
        what = f"image {image} (pull policy Never) is not on node {node}: load it there or allow pulls"
    else:
        what = (
            f"image {image} (pull policy {policy}) cannot be pulled on node {node}: "
            "check its name and registry"
        )
    message = (waiting.get("message") or "").strip()
    return f"pod {pod['metadata']['name']}: {reason}: {what}" + (f" ({message})" if message else "")


def oom_note(pod: Mapping[str, Any], terminated: Mapping[str, Any]) -> str:
    """What an ``OOMKilled`` exit means for this pod (its memory limit, when it has one); else ``""``."""
    if terminated.get("reason") != "OOMKilled":
        return ""
    limit = ((_main_container(pod).get("resources") or {}).get("limits") or {}).get("memory")
    return (
        f": killed by the kernel over its memory limit {limit}"
        if limit
        else ": no memory limit is set, so its node ran out of memory"
    )
