"""Why a job's pods cannot run, in one line each, from their spec and status and the nodes.

Owns the root-cause lines ``vitjob status`` puts first, computed from plain objects (parsed JSON):

- ``root_causes``: why a Pending job waits, most basic first: claims that do not exist
  (``missing_claim_problems``), no node for the node selector or all of them cordoned
  (``selector_problem``), not enough free cards on the nodes and in the queue (``card_problem``), and
  ``fit_problems``; ``fold_notes`` folds the scheduler's repeated notes into one line each;

- ``fit_problems``: a pod that asks for more CPU, memory or accelerators than any node it may run on has
  allocatable, or a gang whose pods together ask for more than those nodes have (Volcano schedules all
  of a job's pods at once or none);
- ``image_problem``: a container waiting on its image (``ErrImageNeverPull``, ``ImagePullBackOff``, …),
  naming the image and the node;
- ``oom_note``: the memory limit a container was killed at (``OOMKilled``);
- ``device_requests``: the accelerators a job asks for, per pod and in all (submit's preflight).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
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


def device_requests(job: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """The accelerators a Volcano Job asks for: (the largest pod's, the total over all replicas), by
    resource name (a limit stands for its request: device plugins' resources have both equal)."""
    per_pod: dict[str, float] = {}
    total: dict[str, float] = {}
    for task in (job.get("spec") or {}).get("tasks") or []:
        pod_need: dict[str, float] = {}
        for c in ((task.get("template") or {}).get("spec") or {}).get("containers") or []:
            res = c.get("resources") or {}
            for key, value in {**(res.get("requests") or {}), **(res.get("limits") or {})}.items():
                if key.startswith(DEVICE_PREFIXES):
                    pod_need[key] = pod_need.get(key, 0) + quantity(value)
        for key, value in pod_need.items():
            per_pod[key] = max(per_pod.get(key, 0), value)
            total[key] = total.get(key, 0) + value * int(task.get("replicas") or 0)
    return per_pod, total


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


def fit_problems(job: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]]) -> list[str]:
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


# --- why a Pending job waits: the root cause first ---------------------------------------------------
# Flags that choose a claim, by the name of the volume vitjob renders for it (vitjob.render.manifests).
CLAIM_FLAGS: dict[str, str] = {"data": "--data-pvc", "output": "--output-pvc"}
MISSING_CLAIM = re.compile(r'persistentvolumeclaim "([^"]+)" not found')
ORIGIN_REASON = re.compile(r"Origin reason is [^:]+: (.*)$", re.S)


def _pod_specs(job: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], int]]:
    """Each task's pod spec and replica count."""
    return [
        (((task.get("template") or {}).get("spec") or {}), int(task.get("replicas") or 0))
        for task in (job.get("spec") or {}).get("tasks") or []
    ]


def claim_volumes(job: Mapping[str, Any]) -> dict[str, str]:
    """The claims the job's pods mount: claim name → volume name."""
    out: dict[str, str] = {}
    for spec, _ in _pod_specs(job):
        for volume in spec.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                out.setdefault(claim, volume.get("name", ""))
    return out


def missing_claim_problems(job: Mapping[str, Any], claims: Iterable[str], namespace: str) -> list[str]:
    """One line per PersistentVolumeClaim the pods mount that is not in ``claims`` (the namespace's)."""
    have = set(claims)
    problems = []
    for claim, volume in claim_volumes(job).items():
        if claim in have:
            continue
        flag = CLAIM_FLAGS.get(volume)
        fix = f"pass {flag} NAME with an existing claim" if flag else "change the claim"
        problems.append(
            f'PersistentVolumeClaim "{claim}" does not exist in namespace {namespace}: the pods cannot '
            f"start without it; create it (`kubectl get pvc -n {namespace}` lists the claims) or {fix}"
        )
    return problems


def claims_missing_in_events(messages: Iterable[str]) -> list[str]:
    """Claim names the scheduler reported missing (``persistentvolumeclaim "X" not found``), in order."""
    found: list[str] = []
    for message in messages:
        for claim in MISSING_CLAIM.findall(message):
            if claim not in found:
                found.append(claim)
    return found


def _node_labels(node: Mapping[str, Any]) -> Mapping[str, str]:
    return (node.get("metadata") or {}).get("labels") or {}


def _cordoned(node: Mapping[str, Any]) -> bool:
    return bool((node.get("spec") or {}).get("unschedulable"))


def selector_problem(pod_spec: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]]) -> str | None:
    """Why no node can take the pod by its labels: the selector's labels no node has, or the matching
    nodes all cordoned. None when some schedulable node matches."""
    selector: Mapping[str, str] = pod_spec.get("nodeSelector") or {}
    if not nodes:
        return "the cluster has no nodes: add one (the pods cannot be scheduled anywhere)"
    matching = [n for n in nodes if _labels_match(selector, n)]
    if matching and not all(_cordoned(n) for n in matching):
        return None
    if not matching:
        absent = [
            f"{k}={v}" for k, v in selector.items() if not any(_node_labels(n).get(k) == v for n in nodes)
        ]
        if absent:
            keys = ", ".join(k.split("=", 1)[0] for k in absent)
            return (
                f"no node has the label{'s' if len(absent) > 1 else ''} {', '.join(absent)} of the pods' "
                f"node selector ({len(nodes)} node(s) checked): label a node (`kubectl label node NODE "
                f"{' '.join(absent)}`) or change the selector (--set node_selector.KEY=VALUE; {keys})"
            )
        wanted = ", ".join(f"{k}={v}" for k, v in selector.items())
        return (
            f"no node has all the labels {wanted} of the pods' node selector together: label one node "
            "with all of them or change the selector (--set node_selector.KEY=VALUE)"
        )
    names = ", ".join(sorted(n["metadata"]["name"] for n in matching)[:3])
    which = f"with the labels {', '.join(f'{k}={v}' for k, v in selector.items())} " if selector else ""
    return (
        f"every node {which}is cordoned (unschedulable: {names}): `kubectl uncordon NODE`, or add a node"
    )


def node_usage(pods: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """What the pods bound to each node ask for (pods that ended free theirs): node → resource → amount."""
    used: dict[str, dict[str, float]] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for resource, amount in pod_requests(pod.get("spec") or {}).items():
            used.setdefault(node, {})[resource] = used.setdefault(node, {}).get(resource, 0.0) + amount
    return used


def card_problem(
    job: Mapping[str, Any],
    nodes: Sequence[Mapping[str, Any]],
    used: Mapping[str, Mapping[str, float]],
    queue: Mapping[str, Any] | None,
) -> str | None:
    """Not enough accelerator cards for the gang: cards asked (per pod and in all) against what is free
    on the largest node the pods may run on, on all of them, and in the job's Volcano queue."""
    for spec, _ in _pod_specs(job):
        for resource, want in sorted(pod_requests(spec).items()):
            if not resource.startswith(DEVICE_PREFIXES) or want <= 0:
                continue
            total = sum(pod_requests(s).get(resource, 0.0) * r for s, r in _pod_specs(job))
            where = candidate_nodes(spec, nodes)
            free = {
                n["metadata"]["name"]: allocatable(n, resource) - (used.get(n["metadata"]["name"]) or {}).get(
                    resource, 0.0)
                for n in where
            }
            largest_name, largest = max(free.items(), key=lambda kv: kv[1], default=("", 0.0))
            q_name = ((queue or {}).get("metadata") or {}).get("name", "default")
            capability = ((queue or {}).get("spec") or {}).get("capability") or {}
            allocated = ((queue or {}).get("status") or {}).get("allocated") or {}
            q_free = (quantity(capability[resource]) - quantity(allocated.get(resource, "0"))
                      if resource in capability else None)
            if want <= largest and total <= sum(free.values()) and (q_free is None or total <= q_free):
                continue
            queue_text = (f"queue {q_name} has {_amount(resource, q_free)} free of its capability"
                          if q_free is not None else f"queue {q_name} sets no limit on it")
            on_largest = f"{_amount(resource, largest)} free on the largest node it may run on" + (
                f" ({largest_name})" if largest_name else "")
            return (
                f"not enough {resource}: the job asks for {_amount(resource, total)} "
                f"({_amount(resource, want)} per pod, all pods at once), {on_largest}, "
                f"{_amount(resource, sum(free.values()))} on the {len(free)} node(s) it may run on, and "
                f"{queue_text}: lower --cards, free cards, or add nodes"
            )
    return None


def root_causes(
    job: Mapping[str, Any],
    namespace: str,
    *,
    nodes: Sequence[Mapping[str, Any]] | None,
    claims: Iterable[str] | None,
    node_pods: Iterable[Mapping[str, Any]] | None,
    queue: Mapping[str, Any] | None,
    event_messages: Iterable[str] = (),
) -> list[str]:
    """Why a Pending job's pods cannot run, most basic first, one line each with the fix: claims that do
    not exist, no node for the node selector, not enough cards, pods larger than the nodes. ``None`` for
    what may not be read (claims fall back to the scheduler's events)."""
    messages = list(event_messages)
    if claims is not None:
        causes = missing_claim_problems(job, claims, namespace)
    else:
        reported = set(claims_missing_in_events(messages))
        causes = missing_claim_problems(job, set(claim_volumes(job)) - reported, namespace)
    if nodes is None:
        return causes
    placement = None
    for spec, _ in _pod_specs(job):
        placement = selector_problem(spec, nodes)
        if placement:
            causes.append(placement)
            break
    if placement is None:
        cards = card_problem(job, nodes, node_usage(node_pods or ()), queue)
        if cards:
            causes.append(cards)
        # a device line of fit_problems says less than the card line
        causes += [p for p in fit_problems(job, nodes) if not (cards and any(d in p for d in DEVICE_PREFIXES))
                   ]
    return causes


def fold_notes(lines: Iterable[str]) -> list[str]:
    """The scheduler's notes with duplicates folded: Volcano repeats one origin reason in the PodGroup's
    condition, its Unschedulable event, the pod's FailedScheduling and the job's PodGroupPending. Lines
    whose core (the origin reason, else the text after the first ``): ``) is the same are one line."""
    out: list[str] = []
    seen: set[str] = set()
    for line in lines:
        origin = ORIGIN_REASON.search(line)
        core = origin[1] if origin else line.split("): ", 1)[-1]
        core = core.strip().rstrip(".")
        if any(core in s or s in core for s in seen if s):
            continue
        seen.add(core)
        out.append(line)
    return out
