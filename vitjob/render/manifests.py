"""Rendering a ``JobSpec`` into Kubernetes objects through the Jinja2 templates in ``manifests/``.

This module owns the template environment and the render context. The templates (shipped as the
package data ``vitjob/manifests``) are the single source of every object vitjob creates; this module
computes the values they place (names, labels, env, resources, volumes, security contexts) and
nothing else.

Pod security: every pod vitjob renders (stage jobs, controller) passes the Pod Security Standard
``restricted`` (https://kubernetes.io/docs/concepts/security/pod-security-standards/): it runs as the
image's non-root user (``vitjob.images.USER_ID``) with seccomp ``RuntimeDefault``, no privilege
escalation, every capability dropped and a read-only root filesystem, whose scratch is emptyDirs at
``/tmp`` and over the user's home (``HOME`` and the working directory: MindSpore and CANN write
``kernel_meta/``, ``rank_*/`` and ``~/ascend/log`` there, matplotlib ``~/.cache`` and ``~/.config``,
``vitjob launch`` the Ascend rank table under ``/tmp``). The one exception is ``hw: ascend`` with
``ascend_host_mounts``: its hostPath volumes (NPU driver, ``/etc/hccn.conf``) need the ``privileged``
level (``pod_security_level``).

Injection safety: the environment uses ``StrictUndefined`` and a ``finalize`` hook that refuses any
``{{ … }}`` output not produced by the ``q`` (YAML double-quoted string), ``num`` (integer) or
``block`` (a nested mapping or list whose strings go through ``q`` and integers through ``num``)
filters, so a user string can only reach the YAML as one escaped scalar: parsing gives back exactly
the string, never an extra field.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

import jinja2
import yaml

from vitjob import constants as c
from vitjob.api.spec import JobSpec
from vitjob.errors import RenderError
from vitjob.images import HOME_DIR, USER_ID

log = logging.getLogger(__name__)

# Templates rendered for every job, in creation order: supporting objects first, the Volcano Job last.
TEMPLATES: tuple[str, ...] = ("job-rbac.yaml.j2", "volcano-job.yaml.j2")
_DOCUMENT_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)
_PLAIN_SAFE = re.compile(r'^[ -~]*$')
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlScalar(str):
    """Text that a quoting filter produced: the only kind of ``{{ … }}`` output templates may emit."""

    __slots__ = ()


def yaml_quote(value: Any) -> YamlScalar:
    """A YAML double-quoted scalar that parses back to exactly ``value``.

    Everything outside printable ASCII is escaped (``\\uXXXX``/``\\UXXXXXXXX``), so line breaks,
    tabs, NEL/LS/PS and BOMs cannot fold or end the scalar; ``"`` and ``\\`` are backslash-escaped.
    """
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable
    if not isinstance(value, str):
        raise RenderError(f"template bug: the q filter got {type(value).__name__} {value!r}, not a string")
    if _PLAIN_SAFE.fullmatch(value) and '"' not in value and "\\" not in value:
        return YamlScalar(f'"{value}"')
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return YamlScalar("".join(out))


def yaml_int(value: Any) -> YamlScalar:
    """A YAML integer scalar; refuses anything that is not an ``int`` (bool included)."""
    if isinstance(value, jinja2.Undefined):
        str(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RenderError(f"template bug: the num filter got {type(value).__name__} {value!r}, not an int")
    return YamlScalar(str(value))


def yaml_scalar(value: Any) -> YamlScalar:
    """A JSON scalar as YAML: strings through ``yaml_quote``, integers, booleans and null as YAML's
    words, floats so that YAML 1.1 (PyYAML) reads them back as floats (``1e-05`` → ``1.0e-05``)."""
    if isinstance(value, jinja2.Undefined):
        str(value)
    if value is None:
        return YamlScalar("null")
    if isinstance(value, bool):
        return YamlScalar("true" if value else "false")
    if isinstance(value, int):
        return yaml_int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RenderError(f"template bug: got {value!r}, which JSON lacks")
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        return YamlScalar(f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text)
    if isinstance(value, str):
        return yaml_quote(value)
    raise RenderError(f"template bug: cannot write {type(value).__name__} {value!r} as YAML")


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Plain words YAML 1.1 or 1.2 read as booleans or null: such keys are quoted.
_YAML_WORDS = frozenset({"y", "yes", "n", "no", "on", "off", "true", "false", "null"})


def yaml_block(value: Any, indent: int) -> YamlScalar:
    """A mapping or list as block YAML, every line indented by ``indent``: strings go through
    ``yaml_quote``, other scalars through ``yaml_scalar``. Keys stay plain when they are identifiers
    YAML cannot misread, and are quoted otherwise."""
    if isinstance(value, jinja2.Undefined):
        str(value)
    if not isinstance(value, dict | list) or not value:
        raise RenderError(f"template bug: the block filter got {type(value).__name__} {value!r}")
    return YamlScalar("\n".join(_block_lines(value, indent)))


def _block_key(key: Any) -> str:
    if not isinstance(key, str):
        raise RenderError(f"template bug: the block filter got the key {key!r}, not a string")
    if _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS:
        return key
    return yaml_quote(key)


def _block_flow(value: Any) -> str:
    if isinstance(value, dict | list):
        if value:
            raise RenderError("template bug: a non-empty collection in flow position")
        return "{}" if isinstance(value, dict) else "[]"
    return yaml_scalar(value)


def _block_lines(value: dict[str, Any] | list[Any], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{_block_key(key)}:")
                lines.extend(_block_lines(item, indent + 2))
            else:
                lines.append(f"{pad}{_block_key(key)}: {_block_flow(item)}")
        return lines
    for item in value:
        if isinstance(item, dict | list) and item:
            nested = _block_lines(item, indent + 2)
            lines.append(f"{pad}- {nested[0][indent + 2:]}")
            lines.extend(nested[1:])
        else:
            lines.append(f"{pad}- {_block_flow(item)}")
    return lines


def _finalize(value: Any) -> Any:
    if isinstance(value, YamlScalar):
        return value
    raise RenderError(
        f"template bug: {{{{ … }}}} printed {type(value).__name__} {value!r} without the q or num filter"
    )


@functools.cache
def template_environment() -> jinja2.Environment:
    """The Jinja2 environment over the packaged ``manifests`` directory (cached)."""
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    env.filters["q"] = yaml_quote
    env.filters["num"] = yaml_int
    env.filters["block"] = yaml_block
    return env


def manifests_dir() -> Any:
    """The packaged templates (``vitjob/manifests``, a link to ``manifests/`` in a checkout)."""
    return resources.files("vitjob").joinpath("manifests")


def _load_template(name: str) -> str:
    path = manifests_dir().joinpath(name)
    try:
        text: str = path.read_text(encoding="utf-8")
        return text
    except FileNotFoundError:
        raise RenderError(
            f"template {name} not found in {path}: the vitjob installation is incomplete; "
            "reinstall vitjob (its wheel ships vitjob/manifests/*.j2)"
        ) from None


# --- render context ---------------------------------------------------------------------------


def build_context(spec: JobSpec) -> dict[str, Any]:
    """Every value the templates place, computed from ``spec``."""
    data_dir = c.DATA_MOUNT_PATH + (f"/{spec.data_subpath}" if spec.data_subpath else "")
    return {
        "api_version": c.VOLCANO_API_VERSION,
        "kind": c.VOLCANO_KIND,
        "job_name": spec.job_name,
        "namespace": spec.namespace,
        "labels": labels(spec),
        "annotations": dict(spec.annotations),
        "scheduler": c.VOLCANO_SCHEDULER,
        "num_pods": spec.num_pods,
        "queue": spec.queue,
        "priority_class": spec.priority_class,
        "max_retry": spec.max_retry,
        "ttl_seconds_after_finished": spec.ttl_seconds_after_finished,
        "task_name": c.TASK_NAME,
        "node_selector": spec.effective_node_selector,
        "tolerations": [normalized_toleration(t) for t in spec.tolerations],
        "anti_affinity_label": c.LABEL_INSTANCE if spec.runs_on_ascend910 else "",
        "container_name": c.CONTAINER_NAME,
        "image": spec.effective_image,
        "image_pull_policy": spec.image_pull_policy,
        "launch_command": launch_command(spec),
        "stage": spec.stage,
        "preset": spec.preset,
        "device": spec.job_hw,
        "data_ref": f"$({c.ENV_DATA_DIR})",
        "output_ref": f"$({c.ENV_OUTPUT_DIR})",
        "epochs": "" if spec.epochs is None else str(spec.epochs),
        "batch_size": "" if spec.batch_size is None else str(spec.batch_size),
        "lr": "" if spec.lr is None else repr(float(spec.lr)),
        "pretrained": pretrained_arg(spec),
        "export_format": "MINDIR,AIR" if spec.hw == "ascend" else "MINDIR",
        "infer_runner": "ascend310" if spec.runs_on_ascend310 else "cpu",
        "extra_args": list(spec.extra_args),
        "env": container_env(spec, data_dir),
        "termination_log": c.TERMINATION_LOG_PATH,
        # Downward API: the pod's own IP and its node's (MindSpore's MS_SCHED_HOST takes IPs only), its
        # name and namespace (the kept log's file, the pod rank 0 annotates with its last checkpoint).
        "field_env": [
            (c.ENV_POD_IP, c.FIELD_POD_IP),
            (c.ENV_HOST_IP, c.FIELD_HOST_IP),
            (c.ENV_POD_NAME, c.FIELD_POD_NAME),
            (c.ENV_POD_NAMESPACE, c.FIELD_POD_NAMESPACE),
        ],
        "ports": [(c.SCHED_PORT_NAME, spec.sched_port), (c.RDZV_PORT_NAME, spec.rdzv_port)],
        "requests": resource_requests(spec),
        "limits": resource_limits(spec),
        "volumes": volumes(spec),
        "working_dir": HOME_DIR,
        "checkpoint_role": checkpoint_role(spec),
        "pod_security_context": pod_security_context(spec),
        "container_security_context": container_security_context(spec),
    }


def labels(spec: JobSpec) -> dict[str, str]:
    """Labels of the Job and of its pod template (Volcano adds ``volcano.sh/job-name`` to pods)."""
    result = {
        c.LABEL_NAME: c.APP_NAME,
        c.LABEL_INSTANCE: spec.job_name,
        c.LABEL_COMPONENT: spec.stage,
        c.LABEL_MANAGED_BY: c.APP_NAME,
        c.LABEL_PART_OF: spec.pipeline_name,
        c.LABEL_HW: spec.job_hw,
        c.LABEL_CARDS: str(spec.total_cards),
    }
    if spec.runs_on_ascend910:
        result[c.RING_CONTROLLER_LABEL] = c.RING_CONTROLLER_ASCEND910
    result.update(spec.labels)
    return result


def checkpoint_role(spec: JobSpec) -> dict[str, str]:
    """Names of the ServiceAccount and Role (and RoleBinding) that let rank 0 of a training job with
    ``publish_checkpoints`` annotate its own pod; ``{}`` when the job publishes nothing."""
    if not (spec.publish_checkpoints and spec.stage == "train"):
        return {}
    return {
        "service_account": spec.job_name,
        "role": f"{spec.job_name}-checkpoint",
        "pod": c.VOLCANO_POD_NAME_FORMAT.format(job=spec.job_name, task=c.TASK_NAME, index=0),
    }


def launch_command(spec: JobSpec) -> list[str]:
    """``vitjob launch`` starts one process per card of the pod, each running the stage command."""
    return ["vitjob", "launch", "--hw", spec.job_hw, "--cards-per-pod", str(spec.pod_cards), "--"]


def pretrained_arg(spec: JobSpec) -> str:
    """A relative ``pretrained`` path is under the data directory; an absolute one is kept."""
    if not spec.pretrained or spec.pretrained.startswith("/"):
        return spec.pretrained
    return f"$({c.ENV_DATA_DIR})/{spec.pretrained}"


def container_env(spec: JobSpec, data_dir: str) -> list[tuple[str, str]]:
    env = [
        (c.ENV_JOB_NAME, spec.job_name),
        (c.ENV_TASK, c.TASK_NAME),
        (c.ENV_HW, spec.job_hw),
        (c.ENV_STAGE, spec.stage),
        (c.ENV_CARDS_PER_POD, str(spec.pod_cards)),
        (c.ENV_NUM_PODS, str(spec.num_pods)),
        (c.ENV_DATA_DIR, data_dir),
        (c.ENV_OUTPUT_DIR, f"{c.OUTPUT_MOUNT_PATH}/{spec.pipeline_name}"),
        # Every run of every pod keeps its log here too (vitjob.keptlogs; `vitjob logs --attempt N`).
        (c.ENV_LOG_DIR, f"{c.OUTPUT_MOUNT_PATH}/{spec.pipeline_name}/{c.KEPT_LOGS_DIR}"),
    ]
    if checkpoint_role(spec):  # rank 0 annotates its pod with each checkpoint (vitjob.launch.checkpoints)
        env.append((c.ENV_PUBLISH_CHECKPOINTS, "1"))
    env += [
        (c.ENV_SCHED_PORT, str(spec.sched_port)),
        (c.ENV_RDZV_PORT, str(spec.rdzv_port)),
        (c.ENV_PYTHONUNBUFFERED, "1"),
        # The stage command's outputs line (vitjob.outputs) goes to the container's termination message.
        (c.ENV_TERMINATION_LOG, c.TERMINATION_LOG_PATH),
        # The home emptyDir, whatever user the pod runs as (a UID without a passwd entry gets HOME=/).
        ("HOME", HOME_DIR),
    ]
    env.extend(spec.env.items())
    return env


# --- pod security ---------------------------------------------------------------------------------
# Pod Security Standards levels (https://kubernetes.io/docs/concepts/security/pod-security-standards/).
RESTRICTED = "restricted"
PRIVILEGED = "privileged"
SECCOMP_PROFILE: dict[str, str] = {"type": "RuntimeDefault"}


def mounts_node_paths(spec: JobSpec) -> bool:
    """Whether the pods mount paths of the node (hostPath: the Ascend driver and ``/etc/hccn.conf``)."""
    return spec.hw == "ascend" and spec.ascend_host_mounts


def pod_security_level(spec: JobSpec) -> str:
    """The strictest Pod Security Standard level the job's pods pass: ``restricted``, except pods that
    mount node paths, which every level but ``privileged`` forbids (baseline: "HostPath Volumes")."""
    return PRIVILEGED if mounts_node_paths(spec) else RESTRICTED


def security_context_for_pod(
    user: int | None,
    group: int | None,
    fs_group: int | None = None,
    supplemental_groups: tuple[int, ...] = (),
) -> dict[str, Any]:
    """A pod's ``securityContext``: non-root, these user and groups (None: the image's), seccomp
    RuntimeDefault.

    ``fsGroup`` makes the kubelet give the volumes that support ownership (not hostPath) to that group,
    group-writable; ``OnRootMismatch`` does it only when the volume's root does not match already, not
    for every file of a large output volume at each pod start."""
    context: dict[str, Any] = {"runAsNonRoot": True}
    if user is not None:
        context["runAsUser"] = user
    if group is not None:
        context["runAsGroup"] = group
    if fs_group is not None:
        context["fsGroup"] = fs_group
        context["fsGroupChangePolicy"] = "OnRootMismatch"
    if supplemental_groups:
        context["supplementalGroups"] = list(supplemental_groups)
    context["seccompProfile"] = dict(SECCOMP_PROFILE)
    return context


def security_context_for_container(read_only_root_filesystem: bool = True) -> dict[str, Any]:
    """A container's ``securityContext``: no privilege escalation, no capabilities, read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root_filesystem,
        "capabilities": {"drop": ["ALL"]},
    }


def client_pod_security_context() -> dict[str, Any]:
    """The ``securityContext`` of the pods that only talk to the API server (the controller, the chart's
    ``helm test`` pod): the image's user, seccomp RuntimeDefault."""
    return security_context_for_pod(USER_ID, USER_ID)


def client_container_security_context() -> dict[str, Any]:
    """Their container's: they write no file (strace of `vitjob controller` and `vitjob pipeline status`
    showed none), so a read-only root filesystem without scratch volumes."""
    return security_context_for_container()


def pod_security_context(spec: JobSpec) -> dict[str, Any]:
    """A stage job pod's ``securityContext``, from the spec's user and groups."""
    return security_context_for_pod(
        spec.run_as_user, spec.run_as_group, spec.fs_group, tuple(spec.supplemental_groups)
    )


def container_security_context(spec: JobSpec) -> dict[str, Any]:
    """A stage job container's ``securityContext`` (root filesystem read-only unless the spec says not)."""
    return security_context_for_container(spec.read_only_root_filesystem)


def accelerator(spec: JobSpec) -> tuple[str, int] | None:
    """The extended resource and count each pod asks for, if any."""
    if spec.runs_on_ascend310:
        return c.ASCEND310_RESOURCE, spec.pod_cards
    if spec.runs_on_ascend910:
        return c.ASCEND910_RESOURCE, spec.pod_cards
    if spec.uses_gpu:
        return c.NVIDIA_GPU_RESOURCE, spec.pod_cards
    return None


def resource_requests(spec: JobSpec) -> dict[str, str]:
    requests = {"cpu": spec.cpu_request, "memory": spec.memory_request}
    device = accelerator(spec)
    if device and device[0] != c.NVIDIA_GPU_RESOURCE:  # Ascend: requests == limits (device plugin)
        requests[device[0]] = str(device[1])
    return requests


def resource_limits(spec: JobSpec) -> dict[str, str]:
    """Accelerators are limited (requests == limits); CPU and memory only when the spec sets a limit
    (``cpu_limit``: CFS quota, ``memory_limit``: the kernel kills the pod above it, OOMKilled)."""
    device = accelerator(spec)
    limits = {device[0]: str(device[1])} if device else {}
    if spec.cpu_limit:
        limits["cpu"] = spec.cpu_limit
    if spec.memory_limit:
        limits["memory"] = spec.memory_limit
    return limits


def volumes(spec: JobSpec) -> list[dict[str, Any]]:
    """Volumes with their mounts; ``kind`` picks the template branch. PVCs stay plain claims (the
    local backend maps each claimName to a directory); the data claim is read-only as a volume too,
    so that the kubelet never changes its files' ownership for ``fsGroup``. ``tmp`` and ``home`` are
    the scratch of a read-only root filesystem."""
    result: list[dict[str, Any]] = [
        {"kind": "pvc", "name": "data", "claim": spec.data_pvc, "path": c.DATA_MOUNT_PATH, "read_only": True},
        {"kind": "pvc", "name": "output", "claim": spec.output_pvc, "path": c.OUTPUT_MOUNT_PATH,
         "read_only": False},
        {"kind": "shm", "name": "dshm", "path": c.SHM_MOUNT_PATH, "read_only": False},
        {"kind": "scratch", "name": "tmp", "path": c.TMP_MOUNT_PATH, "read_only": False},
        {"kind": "scratch", "name": "home", "path": HOME_DIR, "read_only": False},
    ]
    if spec.runs_on_ascend910:
        result.append({
            "kind": "podinfo", "name": "podinfo", "path": c.PODINFO_DIR, "read_only": True,
            "annotations_file": c.PODINFO_ANNOTATIONS_FILE, "name_file": c.PODINFO_NAME_FILE,
        })
    if not mounts_node_paths(spec):
        return result
    if spec.runs_on_ascend910:
        # Only a fallback for the device plugin's annotation: FileOrCreate lets the pod start on a node
        # without the file (the kubelet then creates an empty one, which `vitjob launch` ignores).
        result.append({"kind": "host", "name": "hccn-conf", "host_path": c.HCCN_CONF_PATH,
                       "type": "FileOrCreate", "path": c.HCCN_CONF_PATH, "read_only": True})
    result.append({"kind": "host", "name": "ascend-driver", "host_path": c.ASCEND_DRIVER_PATH,
                   "type": "Directory", "path": c.ASCEND_DRIVER_PATH, "read_only": True})
    return result


def normalized_toleration(toleration: dict[str, Any]) -> dict[str, Any]:
    """A toleration with its ``operator`` spelled out (Kubernetes' default is ``Equal``)."""
    return {"operator": "Equal", **toleration}


# --- rendering --------------------------------------------------------------------------------


def render_yaml(spec: JobSpec) -> str:
    """The multi-document YAML stream of every object of ``spec`` (Volcano Job last)."""
    return "".join(f"---\n{text}" for text in render_documents(spec))


def render_documents(spec: JobSpec) -> list[str]:
    """The YAML text of each object, in creation order, without ``---`` separators."""
    return render_templates(TEMPLATES, build_context(spec))


def render_objects(spec: JobSpec) -> list[dict[str, Any]]:
    """The parsed objects of ``spec`` in creation order: supporting objects first, the Job last."""
    return [parse_document(text) for text in render_documents(spec)]


def parse_document(text: str) -> dict[str, Any]:
    try:
        obj = yaml.load(text, Loader=_YAML_LOADER)  # CSafeLoader or SafeLoader
    except yaml.YAMLError as exc:
        raise RenderError(f"a template produced invalid YAML ({exc}); this is a vitjob bug") from exc
    if not isinstance(obj, dict):
        raise RenderError(f"a template produced {type(obj).__name__}, not an object; this is a vitjob bug")
    return obj


def object_file_name(obj: dict[str, Any]) -> str:
    """``<kind>-<name>.yaml`` in lower case: the file ``render -o DIR`` writes for an object."""
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


# --- pipelines and their controller -----------------------------------------------------------
VITJOB_TEMPLATE = "vitjob.yaml.j2"
EVENT_TEMPLATE = "event.yaml.j2"
LOG_READER_TEMPLATE = "log-reader-pod.yaml.j2"
VOLCANO_COMMAND_TEMPLATE = "volcano-command.yaml.j2"
# The controller's objects in creation order (`vitjob controller --render`).
CONTROLLER_TEMPLATES: tuple[str, ...] = (
    "controller-serviceaccount.yaml.j2",
    "controller-role.yaml.j2",
    "controller-rolebinding.yaml.j2",
    "controller-deployment.yaml.j2",
    "controller-service.yaml.j2",
)
# Rendered only where Prometheus Operator's CRD exists: the chart's controller.service_monitor.
CONTROLLER_SERVICE_MONITOR_TEMPLATE = "controller-servicemonitor.yaml.j2"


def render_vitjob(
    *,
    name: str,
    namespace: str,
    part_of: str,
    spec: Mapping[str, Any],
    submitting: bool = False,
) -> dict[str, Any]:
    """The VitJob of a run: ``spec`` is its spec values (``vitjob.pipeline.define.resource_spec``);
    ``submitting`` marks it as having its first stage created by ``vitjob submit``."""
    context = {
        "api_version": c.VITJOB_API_VERSION,
        "kind": c.VITJOB_KIND,
        "name": name,
        "namespace": namespace,
        "labels": {
            c.LABEL_NAME: c.APP_NAME,
            c.LABEL_INSTANCE: name,
            c.LABEL_COMPONENT: c.PIPELINE_COMPONENT,
            c.LABEL_MANAGED_BY: c.APP_NAME,
            c.LABEL_PART_OF: part_of,
        },
        "annotations": {c.ANNOTATION_SUBMITTING: "true"} if submitting else {},
        "spec": dict(spec),
    }
    (obj,) = [parse_document(text) for text in render_templates((VITJOB_TEMPLATE,), context)]
    return obj


def render_event(
    *,
    namespace: str,
    involved: Mapping[str, str],
    kind: str,
    reason: str,
    message: str,
    component: str,
    now: str,
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (apiVersion, kind, name, namespace, uid); ``kind`` is
    Normal or Warning; the message is cut to the API server's 1 kB limit."""
    context = {
        "generate_name": f"{involved['name']}.",
        "namespace": namespace,
        "involved": dict(involved),
        "type": kind,
        "reason": reason,
        "message": message if len(message) <= 1024 else message[:1021] + "...",
        "component": component,
        "now": now,
    }
    (obj,) = [parse_document(text) for text in render_templates((EVENT_TEMPLATE,), context)]
    return obj


def render_volcano_command(job: Mapping[str, Any], action: str, reason: str, message: str) -> dict[str, Any]:
    """A Volcano bus Command running ``action`` (AbortJob, ResumeJob) on Volcano Job ``job``."""
    meta = job["metadata"]
    context = {
        "api_version": f"{c.VOLCANO_BUS_GROUP}/{c.VOLCANO_BUS_VERSION}",
        "generate_name": f"{meta['name'][:40]}-{action.lower()}-",
        "namespace": meta["namespace"],
        "owner": {"apiVersion": c.VOLCANO_API_VERSION, "kind": c.VOLCANO_KIND, "name": meta["name"],
                  "uid": meta["uid"]},
        "action": action,
        "reason": reason,
        "message": message,
    }
    (obj,) = [parse_document(text) for text in render_templates((VOLCANO_COMMAND_TEMPLATE,), context)]
    return obj


def render_log_reader(job: Mapping[str, Any], attempt: int, pod: str | None = None,
                      deadline_s: int = 300) -> dict[str, Any]:
    """The pod that prints attempt ``attempt`` of the logs Volcano Job ``job``'s pods kept on its output
    volume (``vitjob logs --attempt``): the job's image, security contexts and placement, the output
    claim mounted read-only. ``RenderError`` when the job was rendered without kept logs."""
    meta = job["metadata"]
    template = job["spec"]["tasks"][0]["template"]
    pod_spec = template["spec"]
    container = pod_spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    log_dir = env.get(c.ENV_LOG_DIR)
    mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
    claims = [v for v in pod_spec.get("volumes", []) if "persistentVolumeClaim" in v]
    output = next(
        (v for v in claims if mounts.get(v["name"], {}).get("mountPath") == c.OUTPUT_MOUNT_PATH), None
    )
    if not log_dir or output is None:
        raise RenderError(
            f"job {meta['name']} keeps no logs of its attempts: it was rendered without {c.ENV_LOG_DIR} "
            "or an output volume (by a vitjob older than 0.1.0's kept logs)"
        )
    command = ["python", "-m", "vitjob.keptlogs", log_dir, meta["name"], "--attempt", str(attempt)]
    command += ["--pod", pod] if pod else []
    context = {
        "generate_name": f"{meta['name'][:40]}-logs-",
        "namespace": meta.get("namespace") or "default",
        "labels": {
            c.LABEL_NAME: c.APP_NAME,
            c.LABEL_INSTANCE: meta["name"],
            c.LABEL_COMPONENT: c.LOG_READER_COMPONENT,
            c.LABEL_MANAGED_BY: c.APP_NAME,
        },
        "deadline_s": deadline_s,
        "node_selector": dict(pod_spec.get("nodeSelector") or {}),
        "affinity": pod_spec.get("affinity") or {},
        "tolerations": list(pod_spec.get("tolerations") or []),
        "pod_security_context": pod_spec.get("securityContext") or {},
        "container_security_context": container.get("securityContext") or {},
        "image": container["image"],
        "image_pull_policy": container.get("imagePullPolicy") or "IfNotPresent",
        "command": command,
        "mount_path": c.OUTPUT_MOUNT_PATH,
        "claim": output["persistentVolumeClaim"]["claimName"],
    }
    (obj,) = [parse_document(text) for text in render_templates((LOG_READER_TEMPLATE,), context)]
    return obj


def build_controller_context(
    *,
    namespace: str,
    all_namespaces: bool = False,
    image: str = "",
    image_pull_policy: str = "IfNotPresent",
    replicas: int = 2,
    health_port: int = c.DEFAULT_HEALTH_PORT,
    progress_interval_s: float = c.DEFAULT_PROGRESS_INTERVAL_S,
) -> dict[str, Any]:
    """Values of the controller templates. ``replicas`` > 1 turns on leader election."""
    from vitjob.images import default_image

    command = ["vitjob", "controller", "--health-port", str(health_port)]
    command += ["--progress-interval", f"{progress_interval_s:g}"]
    command += ["--all-namespaces"] if all_namespaces else ["--namespace", namespace]
    if replicas > 1:
        command.append("--leader-elect")
    selector = {c.LABEL_NAME: c.APP_NAME, c.LABEL_COMPONENT: c.CONTROLLER_COMPONENT}
    return {
        "name": c.CONTROLLER_NAME,
        "namespace": namespace,
        "all_namespaces": all_namespaces,
        "role_kind": "ClusterRole" if all_namespaces else "Role",
        "binding_kind": "ClusterRoleBinding" if all_namespaces else "RoleBinding",
        "lease_role_name": c.CONTROLLER_NAME + "-leader-election",
        "lease_name": c.CONTROLLER_NAME,
        "labels": {**selector, c.LABEL_INSTANCE: c.CONTROLLER_NAME, c.LABEL_MANAGED_BY: c.APP_NAME},
        "selector_labels": selector,
        "replicas": replicas,
        "container_name": c.CONTROLLER_COMPONENT,
        "image": image or default_image("cpu"),
        "image_pull_policy": image_pull_policy,
        "command": command,
        "identity_env": c.ENV_CONTROLLER_ID,
        "health_port": health_port,
        "metrics_path": "/metrics",
        # vitjob's own image, as its user: not a render option.
        "pod_security_context": client_pod_security_context(),
        "container_security_context": client_container_security_context(),
    }


def render_controller_documents(**options: Any) -> list[str]:
    """The YAML text of the controller's objects (``build_controller_context`` options)."""
    return render_templates(CONTROLLER_TEMPLATES, build_controller_context(**options))


def render_controller_service_monitor(**options: Any) -> str:
    """The YAML text of the controller's ServiceMonitor (``monitoring.coreos.com/v1``, Prometheus
    Operator's), which scrapes its Service's ``/metrics`` (``build_controller_context`` options)."""
    [document] = render_templates((CONTROLLER_SERVICE_MONITOR_TEMPLATE,), build_controller_context(**options))
    return document


def render_templates(names: tuple[str, ...], context: dict[str, Any]) -> list[str]:
    env = template_environment()
    documents: list[str] = []
    for name in names:
        try:
            text = env.get_template(name).render(context)
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {name}: {exc}") from exc
        documents.extend(d.strip("\n") + "\n" for d in _DOCUMENT_SEPARATOR.split(text) if d.strip())
    return documents
