"""Names and numbers shared by the manifests, the launcher and the backends.

This module owns every name vitjob shares between its modules and with the cluster, each under one
name: Volcano API coordinates, label and annotation keys, accelerator resource names and node labels,
the environment-variable names of the pod contract, default ports and mount paths. Nothing else
defines these literals or aliases them, so a template, ``vitjob launch``, the backends and the
controller can never disagree on a name. (``vitjob.kube.kinds`` holds the tables of kinds built from
them; tuning numbers used by one module, such as its timeouts, stay in that module.)
"""

from __future__ import annotations

from typing import Final

# --- Volcano Job API (batch.volcano.sh_jobs.yaml) -------------------------------------------------
VOLCANO_GROUP: Final = "batch.volcano.sh"
VOLCANO_VERSION: Final = "v1alpha1"
VOLCANO_API_VERSION: Final = f"{VOLCANO_GROUP}/{VOLCANO_VERSION}"
VOLCANO_PLURAL: Final = "jobs"
VOLCANO_KIND: Final = "Job"
VOLCANO_CRD_NAME: Final = f"{VOLCANO_PLURAL}.{VOLCANO_GROUP}"
# The scheduler every pod of a vitjob job is placed by (gang scheduling).
VOLCANO_SCHEDULER: Final = "volcano"
# Label Volcano's job controller puts on every pod of a job: `kubectl logs -l volcano.sh/job-name=<job>`.
VOLCANO_JOB_NAME_LABEL: Final = "volcano.sh/job-name"
# Label Volcano puts on every pod: the pod's index within its task.
VOLCANO_TASK_INDEX_LABEL: Final = "volcano.sh/task-index"
# Label Volcano puts on every pod: the name of the pod's task.
VOLCANO_TASK_SPEC_LABEL: Final = "volcano.sh/task-spec"
# Volcano's other APIs vitjob calls: bus (commands: AbortJob) and scheduling (PodGroups, Queues).
VOLCANO_BUS_GROUP: Final = "bus.volcano.sh"
VOLCANO_BUS_VERSION: Final = "v1alpha1"
VOLCANO_COMMANDS_PLURAL: Final = "commands"
VOLCANO_SCHEDULING_GROUP: Final = "scheduling.volcano.sh"
VOLCANO_SCHEDULING_VERSION: Final = "v1beta1"
VOLCANO_PODGROUPS_PLURAL: Final = "podgroups"
VOLCANO_QUEUES_PLURAL: Final = "queues"
# Volcano's pod naming: <job>-<task>-<index> (Volcano helpers.PodNameFmt).
VOLCANO_POD_NAME_FORMAT: Final = "{job}-{task}-{index}"

# --- The one task of every vitjob job and its container -------------------------------------------
TASK_NAME: Final = "worker"
CONTAINER_NAME: Final = "vitjob"

# --- Recommended Kubernetes labels (app.kubernetes.io/*) and vitjob's own ------------------------
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
# Value of LABEL_NAME and LABEL_MANAGED_BY on everything vitjob creates.
APP_NAME: Final = "vitjob"
LABEL_PREFIX: Final = "vitjob.io/"
# Hardware kind of the job (ascend, gpu, cpu): `vitjob status` reads it back.
LABEL_HW: Final = LABEL_PREFIX + "hw"
# Number of accelerator cards (or CPU processes) the job uses, as a decimal string.
LABEL_CARDS: Final = LABEL_PREFIX + "cards"
# Annotation `vitjob submit` puts on the Volcano Job: JSON list of the objects it created beside the
# Job (`vitjob delete` deletes them with it).
ANNOTATION_SUPPORTING_OBJECTS: Final = LABEL_PREFIX + "supporting-objects"
# Annotation `vitjob suspend` puts on the Volcano Job it aborted: when (`vitjob resume` removes it).
ANNOTATION_SUSPENDED: Final = LABEL_PREFIX + "suspended"
# Label keys vitjob sets itself; user-supplied labels may not override them.
RESERVED_LABEL_PREFIXES: Final = ("app.kubernetes.io/", LABEL_PREFIX, "volcano.sh/", "ring-controller.atlas")

# --- Ascend (Huawei MindCluster) ------------------------------------------------------------------
ASCEND910_RESOURCE: Final = "huawei.com/Ascend910"
ASCEND310_RESOURCE: Final = "huawei.com/Ascend310"
# Node label set by the Ascend device plugin, and the values that select 910 / 310 nodes.
ACCELERATOR_NODE_LABEL: Final = "accelerator"
ASCEND910_NODE_VALUE: Final = "huawei-Ascend910"
ASCEND310_NODE_VALUE: Final = "huawei-Ascend310"
# Job and pod label MindCluster (ascend-for-volcano, Ascend Operator) keys 910 training jobs on.
RING_CONTROLLER_LABEL: Final = "ring-controller.atlas"
RING_CONTROLLER_ASCEND910: Final = "ascend-910"
# Most Ascend 910 cards one pod (= one node) may use, and the card counts allowed in a single pod.
ASCEND_CARDS_PER_NODE: Final = 8
ASCEND_SINGLE_POD_CARDS: Final = (1, 2, 4, 8)
# Host paths the Ascend runtime needs inside the container.
ASCEND_DRIVER_PATH: Final = "/usr/local/Ascend/driver"
HCCN_CONF_PATH: Final = "/etc/hccn.conf"
# Downward-API volume: the pod's annotations (device-plugin allocation) and name, read by `vitjob launch`.
PODINFO_DIR: Final = "/etc/vitjob/podinfo"
PODINFO_ANNOTATIONS_FILE: Final = "annotations"
PODINFO_NAME_FILE: Final = "name"

# --- NVIDIA ---------------------------------------------------------------------------------------
NVIDIA_GPU_RESOURCE: Final = "nvidia.com/gpu"
DEFAULT_GPUS_PER_POD: Final = 8

# --- Volumes and paths ----------------------------------------------------------------------------
DATA_MOUNT_PATH: Final = "/data"
OUTPUT_MOUNT_PATH: Final = "/output"
SHM_MOUNT_PATH: Final = "/dev/shm"
# Scratch under a read-only root filesystem: an emptyDir here and one over the image user's home
# (vitjob.images.HOME_DIR: HOME and the working directory), see vitjob.render.manifests.volumes.
TMP_MOUNT_PATH: Final = "/tmp"
DEFAULT_DATA_PVC: Final = "vitjob-data"
DEFAULT_OUTPUT_PVC: Final = "vitjob-output"
# Where files from Volcano's svc plugin appear (worker.host lists every pod's hostname).
VOLCANO_SVC_DIR: Final = "/etc/volcano"

# --- Environment of the container (the pod contract read by `vitjob launch`) ----------------------
ENV_JOB_NAME: Final = "VITJOB_JOB_NAME"
ENV_TASK: Final = "VITJOB_TASK"
ENV_HW: Final = "VITJOB_HW"
ENV_STAGE: Final = "VITJOB_STAGE"
ENV_CARDS_PER_POD: Final = "VITJOB_CARDS_PER_POD"
ENV_NUM_PODS: Final = "VITJOB_NUM_PODS"
ENV_DATA_DIR: Final = "VITJOB_DATA_DIR"
ENV_OUTPUT_DIR: Final = "VITJOB_OUTPUT_DIR"
ENV_SCHED_PORT: Final = "MS_SCHED_PORT"
ENV_RDZV_PORT: Final = "VITJOB_RDZV_PORT"
ENV_PYTHONUNBUFFERED: Final = "PYTHONUNBUFFERED"
# Where a stage's command writes its outputs line (vitjob.outputs): the container's terminationMessagePath.
ENV_TERMINATION_LOG: Final = "VITJOB_TERMINATION_LOG"
TERMINATION_LOG_PATH: Final = "/dev/termination-log"
# Read by `vitjob render`/`submit` on this machine: default for --crd (a Volcano CRD file or directory).
ENV_CRD_PATH: Final = "VITJOB_CRD"
# Set by Volcano's env plugin (pod index within the task) and svc plugin (peer host names).
ENV_VC_TASK_INDEX: Final = "VC_TASK_INDEX"
ENV_VC_WORKER_HOSTS: Final = "VC_WORKER_HOSTS"
ENV_VC_WORKER_NUM: Final = "VC_WORKER_NUM"
# Prefixes of variables a user may not set through `env`: vitjob and Volcano own them.
RESERVED_ENV_PREFIXES: Final = ("VITJOB_", "VC_", "VK_")

# --- Ports ----------------------------------------------------------------------------------------
# MindSpore dynamic-cluster scheduler port (msrun's default master port).
DEFAULT_SCHED_PORT: Final = 8118
# Rank-table rendezvous served by pod 0 over the job's headless service.
DEFAULT_RDZV_PORT: Final = 29400
SCHED_PORT_NAME: Final = "ms-sched"
RDZV_PORT_NAME: Final = "rdzv"

# --- What a job can be ---------------------------------------------------------------------------
HW_KINDS: Final = ("ascend", "gpu", "cpu")
STAGES: Final = ("train", "eval", "export", "infer310")
# Stages that are one-card jobs reading the training output.
SINGLE_CARD_STAGES: Final = ("eval", "export", "infer310")
# Image kind (vitjob.images.default_image) of 310 inference on Ascend.
ASCEND310_IMAGE_KIND: Final = "ascend310"
IMAGE_PULL_POLICIES: Final = ("IfNotPresent", "Always", "Never")

# --- Default CPU/memory requests per card (or CPU process); `cpu`/`memory` in a spec override ------
DEFAULT_CPU_PER_CARD: Final = {"ascend": 8, "gpu": 8, "cpu": 2}
DEFAULT_MEMORY_GI_PER_CARD: Final = {"ascend": 32, "gpu": 32, "cpu": 8}

# --- Job defaults ---------------------------------------------------------------------------------
DEFAULT_NAMESPACE: Final = "default"
DEFAULT_PRESET: Final = "vit-b16"
DEFAULT_MAX_RETRY: Final = 3
# Finished jobs are garbage-collected by Volcano a week after they end (logs are gone with the pods).
DEFAULT_TTL_SECONDS_AFTER_FINISHED: Final = 7 * 24 * 3600
# Kubernetes version the pod templates are validated for by default (kubernetes-validate schemas).
DEFAULT_K8S_VERSION: Final = "1.30"
# Kubernetes name limits: DNS-1123/1035 labels and label values.
MAX_NAME_LENGTH: Final = 63
# DNS-1123 subdomains (PVC, queue and PriorityClass names).
MAX_SUBDOMAIN_LENGTH: Final = 253
MAX_INT32: Final = 2**31 - 1
# Most GPUs a pod of a gpu job may use (gpus_per_pod).
MAX_GPUS_PER_POD: Final = 64
# Ports a job's pods may listen on (sched_port, rdzv_port): unprivileged ones.
MIN_PORT: Final = 1024
MAX_PORT: Final = 65535

# --- The VitJob custom resource (charts/vitjob/crds/vitjob.io_vitjobs.yaml, vitjob.api.schema) ---------
VITJOB_GROUP: Final = "vitjob.io"
VITJOB_VERSION: Final = "v1alpha1"
VITJOB_API_VERSION: Final = f"{VITJOB_GROUP}/{VITJOB_VERSION}"
VITJOB_KIND: Final = "VitJob"
VITJOB_PLURAL: Final = "vitjobs"
VITJOB_SINGULAR: Final = "vitjob"
# Volcano's Job CRD already has the short names vcjob and vj: `kubectl get vj` lists Volcano Jobs.
VITJOB_SHORT_NAMES: Final = ("vit",)
VITJOB_CRD_NAME: Final = f"{VITJOB_PLURAL}.{VITJOB_GROUP}"

# --- Pipelines (train → eval → export → infer310) and their controller (vitjob.pipeline) ---------
# A pipeline NAME is the VitJob NAME; its stage S runs as the Volcano Job NAME-S, owned by the VitJob.
# LABEL_COMPONENT value of VitJobs (stage jobs carry their stage there).
PIPELINE_COMPONENT: Final = "pipeline"
# "true" on a VitJob while `vitjob submit` creates its first stage itself (nobody else does meanwhile).
ANNOTATION_SUBMITTING: Final = LABEL_PREFIX + "submitting"
# Default poll interval of `vitjob pipeline run --wait` (seconds).
DEFAULT_PIPELINE_POLL_S: Final = 5.0
# The controller: its name (Deployment, ServiceAccount, Role, Lease), health port and lease timings
# (client-go's defaults: a leader that cannot renew for RENEW_DEADLINE stops acting before the lease,
# LEASE_DURATION, can expire for the others).
CONTROLLER_NAME: Final = "vitjob-controller"
CONTROLLER_COMPONENT: Final = "controller"
# LABEL_COMPONENT value of the pod `vitjob logs --attempt` starts to read kept logs off the output volume.
LOG_READER_COMPONENT: Final = "log-reader"
DEFAULT_HEALTH_PORT: Final = 8080
DEFAULT_LEASE_DURATION_S: Final = 15.0
DEFAULT_RENEW_DEADLINE_S: Final = 10.0
DEFAULT_RETRY_PERIOD_S: Final = 2.0
# Every pipeline is re-reconciled this often even without watch events (level-based safety net).
DEFAULT_RESYNC_S: Final = 60.0
# The controller reads a running train stage's progress (one GET of rank 0's log tail) and writes it to
# the VitJob's status.progress at most this often per pipeline.
DEFAULT_PROGRESS_INTERVAL_S: Final = 30.0
LEASE_GROUP: Final = "coordination.k8s.io"
LEASE_VERSION: Final = "v1"
# The controller's identity in the Lease (the Deployment sets it to the pod name).
ENV_CONTROLLER_ID: Final = "VITJOB_CONTROLLER_ID"

# --- `vitjob launch` (vitjob.launch) --------------------------------------------------------------
# Ascend device-plugin pod annotation with the pod's allocated NPUs (JSON "Instance"); older releases
# used the atlas.* key.
ASCEND_DEVICE_ANNOTATIONS: Final = (
    "ascend.kubectl.kubernetes.io/ascend-910-configuration",
    "ascend.kubectl.kubernetes.io/ascend-npu-configuration",
    "atlas.kubectl.kubernetes.io/ascend-910-configuration",
)
# Where Ascend Operator / hccl-controller mount a rank table they generate (used when completed).
OPERATOR_RANK_TABLE: Final = "/user/serverid/devindex/config/hccl.json"
# NPUs visible to the container (set by the Ascend docker runtime), e.g. "0,1,2,3".
ENV_ASCEND_VISIBLE_DEVICES: Final = "ASCEND_VISIBLE_DEVICES"
# Chips the CANN runtime lets a process use, numbered 0..n-1 in list order (msrun_launcher.md).
ENV_ASCEND_RT_VISIBLE_DEVICES: Final = "ASCEND_RT_VISIBLE_DEVICES"
# Set by the local backend: run the accelerator code path (rank tables…) but compute on this device.
ENV_SIMULATE_DEVICE: Final = "VITJOB_SIMULATE_DEVICE"
# Overrides of the paths `vitjob launch` reads (tests and the local backend).
ENV_VOLCANO_DIR: Final = "VITJOB_VOLCANO_DIR"
ENV_PODINFO_DIR: Final = "VITJOB_PODINFO_DIR"
ENV_HCCN_CONF: Final = "VITJOB_HCCN_CONF"
ENV_OPERATOR_RANK_TABLE: Final = "VITJOB_OPERATOR_RANK_TABLE"
ENV_WORKDIR: Final = "VITJOB_WORKDIR"
# The pod's own IP and its node's IP (downward API status.podIP / status.hostIP, set in the pod template):
# MindSpore's MS_SCHED_HOST must be an IP literal, and the rank table records both per server.
ENV_POD_IP: Final = "VITJOB_POD_IP"
ENV_HOST_IP: Final = "VITJOB_HOST_IP"
FIELD_POD_IP: Final = "status.podIP"
FIELD_HOST_IP: Final = "status.hostIP"
# The pod's name and namespace (downward API metadata.name / metadata.namespace): where `vitjob launch`
# keeps its log (vitjob.keptlogs) and which pod rank 0 annotates with its last checkpoint.
ENV_POD_NAME: Final = "VITJOB_POD_NAME"
ENV_POD_NAMESPACE: Final = "VITJOB_POD_NAMESPACE"
FIELD_POD_NAME: Final = "metadata.name"
FIELD_POD_NAMESPACE: Final = "metadata.namespace"
# Where `vitjob launch` keeps every run's log (vitjob.keptlogs): <output>/<pipeline>/logs as rendered.
ENV_LOG_DIR: Final = "VITJOB_LOG_DIR"
# "1" in a training pod of a job with publish_checkpoints: rank 0's pod sets ANNOTATION_LAST_CHECKPOINT.
ENV_PUBLISH_CHECKPOINTS: Final = "VITJOB_PUBLISH_CHECKPOINTS"
ANNOTATION_LAST_CHECKPOINT: Final = "vitjob.io/last-checkpoint"
KEPT_LOGS_DIR: Final = "logs"
# A hosts file (/etc/hosts format) `vitjob launch` resolves peer names in before the system resolver
# (the local backend's shared-host mode, where pods cannot have their own /etc/hosts).
ENV_HOSTS_FILE: Final = "VITJOB_HOSTS_FILE"
# Local backend pod networking: "auto" (own network namespaces when root with iproute2, else the shared
# host), "netns" (required) or "shared-host"; the namespaces take /24s of LOCAL_POD_NETWORK.
ENV_LOCAL_NETWORK: Final = "VITJOB_LOCAL_NETWORK"
LOCAL_NETWORK_MODES: Final = ("auto", "netns", "shared-host")
LOCAL_POD_NETWORK: Final = "10.244.0.0/16"
# Replaces the scheduler child's command (`python -m vitjob.launch.scheduler`), split like a shell line:
# tests use a trivial process instead of a MindSpore scheduler.
ENV_SCHED_COMMAND: Final = "VITJOB_SCHED_COMMAND"
# Set by `vitjob launch` for each worker of a cluster its pod holds whole: the file the worker writes when
# its work is complete (vitjob's CLI, after a command succeeds), so the launch can end the cluster without
# MindSpore's teardown (vitjob.launch.supervisor).
ENV_DONE_FILE: Final = "VITJOB_DONE_FILE"
# How long pods wait for each other (rank-table rendezvous, scheduler), seconds.
DEFAULT_RDZV_TIMEOUT_S: Final = 600.0
# CANN environment scripts `vitjob launch` loads on Ascend when present.
CANN_ENV_SCRIPTS: Final = (
    "/usr/local/Ascend/ascend-toolkit/set_env.sh",
    "/usr/local/Ascend/nnae/set_env.sh",
)
