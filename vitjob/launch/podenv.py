"""What Volcano and the device plugin give a pod, read from the environment and mounted files.

Every path can be overridden through an environment variable (``VITJOB_VOLCANO_DIR``,
``VITJOB_PODINFO_DIR``, ``VITJOB_HCCN_CONF``, ``VITJOB_OPERATOR_RANK_TABLE``) so the local backend and
tests exercise exactly this code.

Device ids: the rank table holds *physical* chip ids (MindSpore ``rank_table.md``: ``device_id`` is "the
physical serial number of the card"), while a process inside a container selects its chip by the
*logical* id the runtime gives it. MindCluster's own start script for rank-table jobs exports
``DEVICE_ID``/``ASCEND_DEVICE_ID`` = the card's position 0..n-1 in the pod and ``RANK_ID`` from the table
(Ascend/mindxdl-deploy ``samples/train/basic-training/ranktable/train_start.sh``), and with
``ASCEND_RT_VISIBLE_DEVICES`` the runtime numbers the listed chips 0..n-1 in list order (MindSpore
``msrun_launcher.md``: the devices visible to a process must agree with the rank table). So a container
given chips 4-7 runs ``set_device(0..3)`` while its rank-table entries say ``device_id`` 4-7:
``logical_device_ids``.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vitjob import constants as c
from vitjob.errors import RankTableError, UsageError
from vitjob.launch.ranktable import (
    PodPiece,
    parse_downward_annotations,
    piece_from_annotation,
    piece_from_hccn,
)


@dataclass(frozen=True)
class PodEnv:
    hw: str
    index: int  # Volcano task index of this pod
    num_pods: int
    cards_per_pod: int
    hosts: list[str]  # every pod's host name, by index
    sched_port: int
    rdzv_port: int

    @property
    def world_size(self) -> int:
        return self.num_pods * self.cards_per_pod

    @property
    def first_rank(self) -> int:
        return self.index * self.cards_per_pod


def _int_env(env: dict[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer") from None


def task_key(task: str) -> str:
    """How Volcano's svc plugin spells a task in its keys: ``-`` becomes ``_``."""
    return task.replace("-", "_")


def read_hosts(env: dict[str, str], task: str, num_pods: int | None) -> list[str]:
    """Peer host names: ``/etc/volcano/<task>.host`` (svc plugin), else ``VC_<TASK>_HOSTS``, else localhost.

    ``num_pods`` None: as many pods as host names.
    """
    host_file = Path(env.get(c.ENV_VOLCANO_DIR, c.VOLCANO_SVC_DIR)) / f"{task_key(task)}.host"
    hosts_var = f"VC_{task_key(task).upper()}_HOSTS"
    if host_file.is_file():
        hosts = [h.strip() for h in host_file.read_text().splitlines() if h.strip()]
    else:
        hosts = [h.strip() for h in env.get(hosts_var, "").split(",") if h.strip()]
    if not hosts:
        if num_pods is not None and num_pods > 1:
            raise UsageError(
                f"{num_pods} pods but no peer host list: expected {host_file} or {hosts_var} "
                "(Volcano's svc plugin provides both)"
            )
        hosts = ["127.0.0.1"]
    if num_pods is not None and len(hosts) < num_pods:
        raise UsageError(f"{num_pods} pods but only {len(hosts)} host names in {host_file}: {hosts}")
    return hosts


def read_pod_env(env: dict[str, str], hw: str | None, cards_per_pod: int | None) -> PodEnv:
    hw = hw or env.get(c.ENV_HW, "cpu")
    if hw not in c.HW_KINDS:
        raise UsageError(f"--hw must be one of {', '.join(c.HW_KINDS)}, not {hw!r}")
    cards = cards_per_pod if cards_per_pod is not None else _int_env(env, c.ENV_CARDS_PER_POD, 1)
    task = env.get(c.ENV_TASK) or c.TASK_NAME
    num_var = f"VC_{task_key(task).upper()}_NUM"
    num_pods: int | None = None
    if env.get(c.ENV_NUM_PODS):
        num_pods = _int_env(env, c.ENV_NUM_PODS, 1)
    elif env.get(num_var):
        num_pods = _int_env(env, num_var, 1)
    index = _int_env(env, c.ENV_VC_TASK_INDEX, 0)
    if cards <= 0 or (num_pods is not None and (num_pods <= 0 or not 0 <= index < num_pods)):
        raise UsageError(f"bad pod layout: task index {index}, {num_pods} pods, {cards} cards per pod")
    hosts = read_hosts(env, task, num_pods)
    if num_pods is None:  # no count given: the svc plugin's host list says how many pods there are
        num_pods = len(hosts)
        if not 0 <= index < num_pods:
            raise UsageError(f"bad pod layout: task index {index} but {num_pods} host name(s): {hosts}")
    return PodEnv(
        hw=hw, index=index, num_pods=num_pods, cards_per_pod=cards, hosts=hosts,
        sched_port=_int_env(env, c.ENV_SCHED_PORT, c.DEFAULT_SCHED_PORT),
        rdzv_port=_int_env(env, c.ENV_RDZV_PORT, c.DEFAULT_RDZV_PORT),
    )


def pod_name(env: dict[str, str]) -> str:
    name_file = Path(env.get(c.ENV_PODINFO_DIR, c.PODINFO_DIR)) / c.PODINFO_NAME_FILE
    if name_file.is_file():
        return name_file.read_text().strip()
    return env.get("HOSTNAME") or socket.gethostname()


def visible_devices(env: dict[str, str], cards: int) -> list[int]:
    """``ASCEND_VISIBLE_DEVICES`` (``0,1,2,3`` or ranges ``0-3``), else devices 0..cards-1."""
    raw = env.get(c.ENV_ASCEND_VISIBLE_DEVICES, "")
    if not raw.strip():
        return list(range(cards))
    ids: set[int] = set()
    try:
        for item in raw.replace(" ", "").split(","):
            if not item:
                continue
            first, sep, last = item.partition("-")
            lo, hi = (int(first), int(last)) if sep else (int(item), int(item))
            if lo < 0 or hi < lo:
                raise ValueError(item)
            ids.update(range(lo, hi + 1))
    except ValueError:
        raise UsageError(f"{c.ENV_ASCEND_VISIBLE_DEVICES}={raw!r} is not a list of device ids") from None
    return sorted(ids)


def logical_device_ids(env: dict[str, str], physical: list[int]) -> dict[int, int]:
    """Physical chip id -> the id this container's processes pass to ``set_device`` (see the module doc).

    With ``ASCEND_RT_VISIBLE_DEVICES`` set: the chip's position in that list. Without it: its position
    among the pod's chips in ascending order (the container sees only its allocated chips; how the
    driver numbers them inside the container is taken from MindCluster's script, unverified here).
    """
    raw = env.get(c.ENV_ASCEND_RT_VISIBLE_DEVICES, "").strip()
    if not raw:
        return {dev: i for i, dev in enumerate(sorted(physical))}
    try:
        listed = [int(item) for item in raw.replace(" ", "").split(",") if item]
    except ValueError:
        raise UsageError(f"{c.ENV_ASCEND_RT_VISIBLE_DEVICES}={raw!r} is not a comma-separated list of "
                         "device ids") from None
    missing = [dev for dev in physical if dev not in listed]
    if missing:
        raise RankTableError(f"the rank table gives this pod devices {sorted(physical)} but "
                             f"{c.ENV_ASCEND_RT_VISIBLE_DEVICES}={raw} hides {missing}: the devices visible "
                             "to the processes must agree with the rank table")
    return {dev: listed.index(dev) for dev in physical}


def _hccn_text(path: Path) -> str | None:
    """``/etc/hccn.conf`` if it holds anything: the pod template mounts it ``FileOrCreate``, so on a node
    without one the kubelet creates an empty file."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return text if text.strip() else None


def ascend_piece(env: dict[str, str], pod: PodEnv, pod_ip: str = "") -> PodPiece:
    """This pod's devices: the device plugin's annotation, else /etc/hccn.conf + the visible devices.

    The pod must hold exactly ``cards_per_pod`` devices: every rank and the world size are planned from it.
    """
    name = pod_name(env)
    annotations_file = Path(env.get(c.ENV_PODINFO_DIR, c.PODINFO_DIR)) / c.PODINFO_ANNOTATIONS_FILE
    visible = None
    if env.get(c.ENV_ASCEND_VISIBLE_DEVICES, "").strip():
        visible = visible_devices(env, pod.cards_per_pod)
    piece: PodPiece | None = None
    source = ""
    if annotations_file.is_file():
        annotations = parse_downward_annotations(annotations_file.read_text())
        for key in c.ASCEND_DEVICE_ANNOTATIONS:
            if key in annotations:
                piece = piece_from_annotation(pod.index, name, annotations[key], visible, pod_ip=pod_ip)
                source = f"annotation {key}"
                break
    hccn = Path(env.get(c.ENV_HCCN_CONF, c.HCCN_CONF_PATH))
    hccn_text = _hccn_text(hccn) if piece is None else None
    if hccn_text is not None:
        # rank_table.md: "server_id represents the IP address of the current machine".
        host_ip = env.get(c.ENV_HOST_IP, "").strip()
        piece = piece_from_hccn(pod.index, name, host_ip or pod_ip or pod.hosts[pod.index], hccn_text,
                                visible or list(range(pod.cards_per_pod)), pod_ip=pod_ip, host_ip=host_ip)
        source = str(hccn)
    if piece is None:
        raise UsageError(
            f"pod {name}: no Ascend device allocation found — neither the device plugin's annotation in "
            f"{annotations_file} nor a non-empty {hccn}. Is the Ascend device plugin installed and the pod "
            f"requesting {c.ASCEND910_RESOURCE}?"
        )
    if len(piece.devices) != pod.cards_per_pod:
        raise RankTableError(
            f"pod {name}: {source} gives {len(piece.devices)} device(s) "
            f"{[d.device_id for d in piece.devices]} but the pod runs {pod.cards_per_pod} process(es) "
            "(--cards-per-pod)"
        )
    return piece


def load_cann_env(env: dict[str, str]) -> dict[str, str]:
    """Environment after sourcing CANN's ``set_env.sh`` (library and operator paths), if installed."""
    for script in c.CANN_ENV_SCRIPTS:
        if Path(script).is_file():
            try:
                out = subprocess.run(
                    ["bash", "-c", f'source "{script}" >/dev/null 2>&1; env -0'], env=env,
                    capture_output=True, check=True,
                ).stdout
            except (OSError, subprocess.CalledProcessError) as exc:
                raise UsageError(f"could not load the CANN environment from {script}: {exc}") from exc
            return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    return env
