"""What vitjob knows about Kubernetes and Volcano objects: the table of kinds it creates
(``kind_info``; ``object_calls`` gives the create/replace/read/delete request of one object), the Volcano
Job's phase text, accessors of a pod's rank and main container, and resource quantities; a Volcano
Job read (``read_volcano_job``, ``get_volcano_job``) or listed (``list_volcano_jobs``) and any known
kind created (``create_object``).
Their API coordinates and label keys are names of ``vitjob.constants``, as every shared name.

Objects are plain dicts (parsed JSON), as ``vitjob.kube.client.Api.call`` returns them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from vitjob.constants import (
    VOLCANO_API_VERSION,
    VOLCANO_BUS_GROUP,
    VOLCANO_COMMANDS_PLURAL,
    VOLCANO_GROUP,
    VOLCANO_PLURAL,
    VOLCANO_PODGROUPS_PLURAL,
    VOLCANO_SCHEDULING_GROUP,
    VOLCANO_TASK_INDEX_LABEL,
    VOLCANO_VERSION,
)
from vitjob.errors import BackendError, JobNotFoundError, ResourceNotFoundError
from vitjob.kube.errors import Op

if TYPE_CHECKING:
    from vitjob.kube.client import Api

FINISHED_POD_PHASES = frozenset({"Succeeded", "Failed"})
# Volcano Job phases after which nothing runs any more (status.state.phase)
TERMINAL_JOB_PHASES = frozenset({"Completed", "Aborted", "Terminated", "Failed"})

# Core kinds vitjob creates beside a Job: kind → CoreV1Api method suffix
CORE_KINDS = {
    "ConfigMap": "config_map",
    "Secret": "secret",
    "Service": "service",
    "ServiceAccount": "service_account",
    "PersistentVolumeClaim": "persistent_volume_claim",
    "Pod": "pod",  # the short-lived reader of kept logs (vitjob.backends.kubernetes.keptlogs)
}
RBAC_GROUP = "rbac.authorization.k8s.io"
# Custom kinds: (group, kind) → plural
CUSTOM_PLURALS = {
    (VOLCANO_GROUP, "Job"): VOLCANO_PLURAL,
    (VOLCANO_SCHEDULING_GROUP, "PodGroup"): VOLCANO_PODGROUPS_PLURAL,
    (VOLCANO_BUS_GROUP, "Command"): VOLCANO_COMMANDS_PLURAL,  # AbortJob/ResumeJob (cancel, suspend)
    # Built-in groups go through the same group/version/plural paths (a job's checkpoint Role).
    (RBAC_GROUP, "Role"): "roles",
    (RBAC_GROUP, "RoleBinding"): "rolebindings",
}


class KindInfo(NamedTuple):
    group: str
    plural: str
    namespaced: bool


class ObjectCalls(NamedTuple):
    """The requests for one object, ready for ``Api.call(op, fn, …)``: ``create(body)``,
    ``replace(body)``, ``read()``, ``delete(body=DeleteOptions)``."""

    create: Callable[..., Any]
    replace: Callable[..., Any]
    read: Callable[..., Any]
    delete: Callable[..., Any]


def kind_info(obj: dict[str, Any]) -> KindInfo:
    """(group, plural, namespaced) of an object vitjob knows how to create; ``BackendError`` otherwise."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    if not group and kind in CORE_KINDS:
        return KindInfo("", CORE_KINDS[kind].replace("_", "") + "s", True)
    if (group, kind) in CUSTOM_PLURALS:
        return KindInfo(group, CUSTOM_PLURALS[(group, kind)], True)
    known = ", ".join([*CORE_KINDS, "Volcano Job", "PodGroup", "Command", "Role", "RoleBinding"])
    raise BackendError(f"cannot submit a {api_version} {kind}: vitjob creates only {known}")


def is_volcano_job(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "Job" and obj.get("apiVersion") == VOLCANO_API_VERSION


def object_calls(api: Api, obj: dict[str, Any]) -> ObjectCalls:
    """The create/replace/read/delete requests of ``obj`` (its ``metadata.namespace`` must be set).

    An explicit table rather than ``kubernetes.dynamic.DynamicClient``, measured: its API discovery
    costs GET /version, /apis and one GET per group/version used (3 to 4 more requests than a whole
    ``vitjob submit``'s 6 in a fresh process; ``api_version="v1"`` without ``prefix="api"`` even reads
    every ``*/v1`` group), or a discovery file in the shared temp dir keyed by server URL that goes
    stale (a missing kind re-reads /version, /apis and the group, then still fails); and its
    requests bypass ``Api.call``'s retries and error mapping. For six kinds that buys nothing.
    """
    group, plural, _ = kind_info(obj)
    # A generateName object has no name until created: only its create call is usable.
    ns, name = obj["metadata"].get("namespace"), obj["metadata"].get("name", "")
    if not group:
        suffix = CORE_KINDS[obj["kind"]]
        core = api.core
        return ObjectCalls(
            lambda body, **kw: getattr(core, f"create_namespaced_{suffix}")(ns, body, **kw),
            lambda body, **kw: getattr(core, f"replace_namespaced_{suffix}")(name, ns, body, **kw),
            lambda **kw: getattr(core, f"read_namespaced_{suffix}")(name, ns, **kw),
            lambda **kw: getattr(core, f"delete_namespaced_{suffix}")(name, ns, **kw),
        )
    version = obj["apiVersion"].split("/", 1)[1]
    custom = api.custom
    return ObjectCalls(
        lambda body, **kw: custom.create_namespaced_custom_object(group, version, ns, plural, body, **kw),
        lambda body, **kw: custom.replace_namespaced_custom_object(
            group, version, ns, plural, name, body, **kw
        ),
        lambda **kw: custom.get_namespaced_custom_object(group, version, ns, plural, name, **kw),
        lambda **kw: custom.delete_namespaced_custom_object(group, version, ns, plural, name, **kw),
    )


# ---------------------------------------------------------------------------------- Volcano Jobs
def volcano_phase(job: dict[str, Any]) -> str:
    """The Job's ``status.state.phase`` (``Pending`` before the Volcano controller wrote one)."""
    return ((job.get("status") or {}).get("state") or {}).get("phase") or "Pending"


# -------------------------------------------------------------------------------------------- pods
def pod_rank(pod: dict[str, Any]) -> int | None:
    """The pod's index in its task (``volcano.sh/task-index``), None without one."""
    value = (pod["metadata"].get("labels") or {}).get(VOLCANO_TASK_INDEX_LABEL)
    return int(value) if value and value.isdigit() else None


def container_status(pod: dict[str, Any]) -> dict[str, Any]:
    """The status of the pod's first (main) container; ``{}`` before the kubelet reported one."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    main = pod["spec"]["containers"][0]["name"]
    return next((c for c in statuses if c.get("name") == main), {})


def container_started(pod: dict[str, Any]) -> bool:
    """The main container runs or ran (its logs may be read)."""
    cs = container_status(pod)
    state = cs.get("state") or {}
    return "running" in state or "terminated" in state or int(cs.get("restartCount") or 0) > 0


# -------------------------------------------------------------------------------------- quantities
def quantity(text: str | int | float) -> float:
    """A Kubernetes resource quantity (``"500m"``, ``"4Gi"``, ``"1e3"``, ``8``) as a number; 0.0 when it
    is not one (``kubernetes.utils.parse_quantity`` does the parsing)."""
    from kubernetes.utils import parse_quantity

    try:
        return float(parse_quantity(text))
    except (ValueError, TypeError, ArithmeticError):
        return 0.0


def read_volcano_job(api: Api, namespace: str, name: str) -> dict[str, Any]:
    """The Volcano Job ``namespace/name`` (one GET); ``JobNotFoundError`` when it does not exist."""
    job: dict[str, Any] = api.call(
        Op("get", VOLCANO_PLURAL, VOLCANO_GROUP, namespace, name),
        api.custom.get_namespaced_custom_object,
        VOLCANO_GROUP,
        VOLCANO_VERSION,
        namespace,
        VOLCANO_PLURAL,
        name,
    )
    return job


def get_volcano_job(api: Api, namespace: str, name: str) -> dict[str, Any] | None:
    """The Volcano Job ``namespace/name``, or None when it does not exist (one GET)."""
    try:
        return read_volcano_job(api, namespace, name)
    except (ResourceNotFoundError, JobNotFoundError):
        return None


def list_volcano_jobs(api: Api, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
    """The Volcano Jobs with the labels of ``label_selector`` in ``namespace``; in every namespace for
    None (one LIST)."""
    if namespace is None:
        op = Op("list", VOLCANO_PLURAL, VOLCANO_GROUP)
        listed = api.call(op, api.custom.list_cluster_custom_object, VOLCANO_GROUP, VOLCANO_VERSION,
                          VOLCANO_PLURAL, label_selector=label_selector)
    else:
        listed = api.call(
            Op("list", VOLCANO_PLURAL, VOLCANO_GROUP, namespace),
            api.custom.list_namespaced_custom_object,
            VOLCANO_GROUP,
            VOLCANO_VERSION,
            namespace,
            VOLCANO_PLURAL,
            label_selector=label_selector,
        )
    items: list[dict[str, Any]] = listed["items"]
    return items


def create_object(api: Api, obj: dict[str, Any]) -> dict[str, Any]:
    """Create ``obj`` (a kind ``kind_info`` knows, its namespace set when namespaced); the created
    object. ``ConflictError`` when it exists already."""
    group, plural, _namespaced = kind_info(obj)
    meta = obj["metadata"]
    op = Op("create", plural, group, meta.get("namespace"), meta.get("name"))
    created: dict[str, Any] = api.call(op, object_calls(api, obj).create, obj)
    return created
