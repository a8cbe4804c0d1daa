"""The job spec's fields and what derives from them: what one vitjob stage job is, unchecked.

``SpecModel`` is a frozen dataclass holding what the user asked for (raw values, no defaults filled
from other fields) plus properties that derive the job's shape: job name, pod count, cards per pod,
image, node selector and resources. ``vitjob.api.checks`` checks a ``SpecModel``; ``vitjob.api.spec.JobSpec``
is the model that runs those checks when it is made (so the checks and the model do not import each other).

Naming rule: ``name`` is the pipeline's base name and the job for stage S is always ``<name>-<S>``
(``--name vit --stage train`` gives the Volcano Job ``vit-train``, pods ``vit-train-worker-<i>``), so
the stages of one pipeline never collide. ``pipeline`` (default: ``name``) is the ``part-of`` label
and the output directory ``/output/<pipeline>``; set it to run a stage on another pipeline's output.

Strings in ``env`` values, ``extra_args`` and ``pretrained`` reach the container as given; Kubernetes
then expands ``$(VAR)`` references to the container's variables in them (write ``$$(`` for a literal
``$(``), which is how the stage commands receive ``$(VITJOB_DATA_DIR)``.

Pod security: the pods pass the Kubernetes Pod Security Standard ``restricted`` (non-root, seccomp
RuntimeDefault, no privilege escalation, every capability dropped, a read-only root filesystem); the
keys ``run_as_user``, ``run_as_group``, ``fs_group``, ``supplemental_groups`` and
``read_only_root_filesystem`` tune it (defaults: the image's user, ``vitjob.images.USER_ID``). Only
``hw: ascend`` with ``ascend_host_mounts`` (the default) mounts node paths (hostPath), which needs the
``privileged`` level (``vitjob.render.manifests.pod_security_level``).

Its checks are ``vitjob.api.checks`` (with the field tables of ``vitjob.api.rules``); values files,
CLI flags and ``--set`` become a ``JobSpec`` through ``vitjob.api.values.load_spec``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vitjob import constants as c
from vitjob.images import USER_ID, default_image


@dataclass(frozen=True, kw_only=True)
class SpecModel:
    """One stage job of the ViT workflow, as the user asked for it (see the module docstring)."""

    name: str
    hw: str
    stage: str = "train"
    attempt: int = 1  # set by a pipeline: attempt n > 1 of a stage is the job <name>-<stage>-r<n>
    cards: int = 1
    namespace: str = c.DEFAULT_NAMESPACE
    image: str = ""  # "" -> vitjob.images.default_image for the hardware
    image_pull_policy: str = "IfNotPresent"
    data_pvc: str = c.DEFAULT_DATA_PVC
    data_subpath: str = ""
    output_pvc: str = c.DEFAULT_OUTPUT_PVC
    queue: str = ""  # "" -> Volcano's default queue
    priority_class: str = ""
    preset: str = c.DEFAULT_PRESET
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    pretrained: str = ""  # relative -> under the data directory; absolute -> kept
    extra_args: list[str] = field(default_factory=list)
    max_retry: int = c.DEFAULT_MAX_RETRY
    ttl_seconds_after_finished: int | None = c.DEFAULT_TTL_SECONDS_AFTER_FINISHED
    node_selector: dict[str, str | None] = field(default_factory=dict)  # merged over the hw default
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    cpu: str = ""  # CPU request per pod; "" -> DEFAULT_CPU_PER_CARD x cards in the pod
    memory: str = ""  # memory request per pod; "" -> DEFAULT_MEMORY_GI_PER_CARD x cards in the pod
    cpu_limit: str = ""  # "" -> no CPU limit (no CFS quota)
    memory_limit: str = ""  # "" -> no memory limit
    gpus_per_pod: int = c.DEFAULT_GPUS_PER_POD
    cards_per_pod: int | None = None  # hw cpu only; None -> all processes in one pod
    pipeline: str = ""  # "" -> name
    k8s_version: str = c.DEFAULT_K8S_VERSION
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    sched_port: int = c.DEFAULT_SCHED_PORT
    rdzv_port: int = c.DEFAULT_RDZV_PORT
    run_as_user: int | None = USER_ID  # None -> the image's USER (runAsNonRoot still holds)
    run_as_group: int | None = USER_ID
    fs_group: int | None = USER_ID  # None -> no fsGroup (volumes keep their owners)
    supplemental_groups: list[int] = field(default_factory=list)
    read_only_root_filesystem: bool = True
    ascend_host_mounts: bool = True  # hw ascend: hostPath driver and hccn.conf (Pod Security privileged)
    publish_checkpoints: bool = False  # train: rank 0 annotates its pod with its last checkpoint (RBAC)

    # --- derived shape ------------------------------------------------------------------------
    @property
    def job_name(self) -> str:
        """The Volcano Job's name: ``<name>-<stage>``, ``<name>-<stage>-r<n>`` for a pipeline's attempt n > 1
        of the stage (``vitjob pipeline retry``)."""
        return f"{self.name}-{self.stage}" + (f"-r{self.attempt}" if self.attempt > 1 else "")

    @property
    def pipeline_name(self) -> str:
        """The ``part-of`` label and output directory name (``pipeline`` or else ``name``)."""
        return self.pipeline or self.name

    @property
    def total_cards(self) -> int:
        """Cards this job uses: ``cards`` for training, 1 for eval/export/infer310."""
        return 1 if self.stage in c.SINGLE_CARD_STAGES else self.cards

    @property
    def pod_cards(self) -> int:
        """Cards (processes) in each pod; ``vitjob launch`` starts one process per card."""
        return pod_cards_for(self.job_hw, self.total_cards, self.gpus_per_pod, self.cards_per_pod)

    @property
    def num_pods(self) -> int:
        """Pods of the job: all of them must run at once (gang scheduling)."""
        return max(1, self.total_cards // self.pod_cards)

    @property
    def runs_on_ascend310(self) -> bool:
        return self.stage == "infer310" and self.hw == "ascend"

    @property
    def runs_on_ascend910(self) -> bool:
        return self.hw == "ascend" and not self.runs_on_ascend310

    @property
    def job_hw(self) -> str:
        """The hardware the job's pods run on: ``hw``, except infer310 of a gpu pipeline, which has no
        GPU runner and runs as a CPU job (CPU image, CPU runner, no GPU requested)."""
        return "cpu" if self.hw == "gpu" and self.stage == "infer310" else self.hw

    @property
    def uses_gpu(self) -> bool:
        return self.job_hw == "gpu"

    @property
    def effective_image(self) -> str:
        if self.image:
            return self.image
        return default_image(c.ASCEND310_IMAGE_KIND if self.runs_on_ascend310 else self.job_hw)

    @property
    def effective_node_selector(self) -> dict[str, str]:
        """The hw default (``accelerator: huawei-Ascend910``…) with ``node_selector`` merged over it;
        a ``null`` value in the values file removes a default key."""
        merged: dict[str, str | None] = dict(default_node_selector(self))
        merged.update(self.node_selector)
        return {key: value for key, value in merged.items() if value is not None}

    @property
    def cpu_request(self) -> str:
        return self.cpu or str(c.DEFAULT_CPU_PER_CARD[self.job_hw] * self.pod_cards)

    @property
    def memory_request(self) -> str:
        return self.memory or f"{c.DEFAULT_MEMORY_GI_PER_CARD[self.job_hw] * self.pod_cards}Gi"

    def pod_name(self, index: int) -> str:
        """Volcano's name for pod ``index`` of this job."""
        return c.VOLCANO_POD_NAME_FORMAT.format(job=self.job_name, task=c.TASK_NAME, index=index)


def pod_cards_for(hw: str, cards: int, gpus_per_pod: int, cards_per_pod: int | None) -> int:
    """Cards in each pod for a job of ``cards`` cards (no validation: see ``cards_problems``)."""
    if hw == "ascend":
        return min(cards, c.ASCEND_CARDS_PER_NODE)
    if hw == "gpu":
        return min(cards, max(gpus_per_pod, 1))
    return min(cards, cards_per_pod or cards) or 1


def default_node_selector(spec: SpecModel) -> dict[str, str]:
    if spec.runs_on_ascend310:
        return {c.ACCELERATOR_NODE_LABEL: c.ASCEND310_NODE_VALUE}
    if spec.runs_on_ascend910:
        return {c.ACCELERATOR_NODE_LABEL: c.ASCEND910_NODE_VALUE}
    return {}


# Every spec key (a JobSpec field), and those a VitJob keeps in its metadata instead of its spec
# (vitjob.api.schema, vitjob.pipeline).
# ``attempt`` is no spec key: a pipeline sets it for each attempt of a stage (vitjob.pipeline.define).
ATTEMPT_KEYS: tuple[str, ...] = ("attempt",)
SPEC_KEYS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(SpecModel) if f.name not in ATTEMPT_KEYS
)
METADATA_KEYS: tuple[str, ...] = ("name", "namespace")
