"""What submit checks on the cluster before it creates anything.

Failures (``PreflightError``, with the fix): Volcano is not installed (no Volcano Job CRD), the
namespace or the queue does not exist, the queue is not Open. Warnings (the job would wait Pending; a
claim or a node may appear after submitting): claims the pods mount that do not exist, no node for
their node selector, not enough accelerators on the nodes. The objects are validated against the
cluster's own Volcano Job CRD (``vitjob.render.validate``). A read RBAC forbids skips its check.
"""

from __future__ import annotations

import logging
from typing import Any

from vitjob.backends.kubernetes.reads import claim_names, get_queue, nodes_or_none
from vitjob.constants import VOLCANO_CRD_NAME
from vitjob.errors import AuthError, PreflightError, ResourceNotFoundError
from vitjob.kube.client import Api
from vitjob.kube.diagnosis import allocatable, device_requests, missing_claim_problems, selector_problem
from vitjob.kube.errors import Op

log = logging.getLogger(__name__)


def volcano_crd(api: Api) -> dict[str, Any] | None:
    """The cluster's Volcano Job CRD (None when we may not read CRDs); ``PreflightError`` without one."""
    op = Op("get", "customresourcedefinitions", "apiextensions.k8s.io", None, VOLCANO_CRD_NAME)
    try:
        crd: dict[str, Any] = api.call(op, api.ext.read_custom_resource_definition, VOLCANO_CRD_NAME)
    except ResourceNotFoundError:
        raise PreflightError(
            f"Volcano is not installed in this cluster: the API server {api.server} has no "
            f"CustomResourceDefinition {VOLCANO_CRD_NAME}; install Volcano "
            "(https://volcano.sh/en/docs/installation/) "
            "or run on this machine with --backend local"
        ) from None
    except AuthError as exc:
        log.warning(
            "cannot read the Volcano Job CRD, skipping validation against the cluster's schema: %s", exc
        )
        return None
    return crd


def check_cluster(api: Api, job: dict[str, Any], ns: str) -> list[str]:
    """Namespace and queue must exist; the warnings (with numbers) about what would keep the job Pending."""
    try:
        api.call(Op("get", "namespaces", "", None, ns), api.core.read_namespace, ns)
    except ResourceNotFoundError:
        raise PreflightError(
            f"namespace {ns!r} does not exist: create it (`kubectl create namespace {ns}`) "
            "or choose another with --namespace"
        ) from None
    except AuthError:
        log.debug("may not read namespace %s; skipping the check", ns)
    queue_name = (job.get("spec") or {}).get("queue") or "default"
    try:
        q: dict[str, Any] | None = get_queue(api, queue_name)
    except ResourceNotFoundError:
        raise PreflightError(
            f"Volcano queue {queue_name!r} does not exist: list queues with "
            "`kubectl get queues.scheduling.volcano.sh` and pick one with --queue"
        ) from None
    except AuthError:
        q = None
        log.debug("may not read queue %s; skipping the check", queue_name)
    state = ((q or {}).get("status") or {}).get("state")
    if state and state != "Open":
        raise PreflightError(
            f"Volcano queue {queue_name!r} is {state}: jobs are only accepted by Open queues; "
            "ask the cluster admin to open it or pick another --queue"
        )
    return placement_warnings(api, job, ns) + device_warnings(api, job)


def placement_warnings(api: Api, job: dict[str, Any], ns: str) -> list[str]:
    """Claims the pods mount that do not exist, and no node for their node selector: the job would
    wait Pending (a claim may be created after submitting, so these warn and do not fail)."""
    warnings = []
    claims = claim_names(api, ns)
    if claims is not None:
        warnings += missing_claim_problems(job, claims, ns)
    nodes = nodes_or_none(api)
    if nodes is not None:
        for task in (job.get("spec") or {}).get("tasks") or []:
            problem = selector_problem((task.get("template") or {}).get("spec") or {}, nodes)
            if problem:
                warnings.append(problem)
                break
    return [f"{w} (the job will stay Pending until then)" for w in warnings]


def device_warnings(api: Api, job: dict[str, Any]) -> list[str]:
    """The accelerators the job asks for against the nodes' allocatable ones: none on any node, fewer
    than the job in all, or fewer on the largest node than one pod asks for."""
    per_pod, total = device_requests(job)
    if not total:
        return []
    try:
        nodes = api.call(Op("list", "nodes"), api.core.list_node)["items"]
    except AuthError:
        log.debug("may not list nodes; skipping the device capacity check")
        return []
    warnings = []
    for resource, want in sorted(total.items()):
        have = [allocatable(n, resource) for n in nodes]
        with_dev = [h for h in have if h > 0]
        if not with_dev:
            warnings.append(
                f"no node advertises {resource} (0 of {len(nodes)} nodes): the job will stay "
                "Pending until the device plugin reports it on some node"
            )
            continue
        if sum(with_dev) < want:
            warnings.append(
                f"the job requests {_num(want)} {resource} in total but the cluster's "
                f"{len(with_dev)} node(s) with it have {_num(sum(with_dev))} allocatable: it will stay "
                "Pending"
            )
        if per_pod.get(resource, 0) > max(with_dev):
            warnings.append(
                f"each pod requests {_num(per_pod[resource])} {resource} but the largest node has "
                f"{_num(max(with_dev))} allocatable: no pod can be scheduled"
            )
    for w in warnings:
        log.debug("preflight: %s", w)
    return warnings


def validate(objects: list[dict[str, Any]], crd: dict[str, Any] | None) -> None:
    """Check the objects against the cluster's own Volcano Job CRD (raises ``ValidationError``); nothing
    to check against when it could not be read (None)."""
    if crd is None:
        return
    from vitjob.render.validate import validate_objects

    validate_objects(objects, crd_source=[crd])


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
