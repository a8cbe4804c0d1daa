"""HCCL rank tables (version "1.0") built from each pod's device allocation, and a pod's place in one.

A *piece* is one pod's contribution: its task index, server id, pod and node IPs and devices
(``device_id``, ``device_ip``). ``build_rank_table(pieces)`` gives the same table on every pod that
builds from the same pieces. All values in the table are strings, as HCCL expects.

The rules, and where each comes from:

- **Server order and rank ids.** MindSpore's ``rank_table.md`` (mindspore-ai/docs,
  ``tutorials/source_en/parallel/rank_table.md``, "Multi-Machine Multi-Card"): "it is required that the
  order of rank_id is consistent with the dictionary order of server_id". So servers are sorted by
  ``server_id`` as strings and ranks are numbered along that order — *not* by task index: the device
  plugin's ``server_id`` is the pod UID (MindCluster ``ascend-device-plugin``), a random string, so task
  index and server order generally differ. Within a server, devices go by ``device_id`` (the device
  plugin lists them that way), ranks consecutive.
- **Fields per server.** ``server_id``, ``device[]`` (``device_id``, ``device_ip``, ``rank_id``) and
  ``host_nic_ip: "reserve"`` as in ``rank_table.md``; ``host_ip`` (the node) and ``container_ip`` (the pod
  IP) as Ascend Operator writes them (MindCluster ``ascend-operator/pkg/ranktable/common/server.go``
  ``Server``; ``docs/en/scheduling/api/hccl.json_file_description.md``: "container_ip": "Pod IP").
- **A table someone else wrote** (Ascend Operator, ConfigMap ``rings-config-<job>``): its servers are
  sorted by rank (``common.go`` ``GatherServerList``), ``rank_id = hccl/rankIndex * len(devices) + i``. A
  pod therefore never assumes "server i is task index i": ``own_server`` finds it by ``server_id`` (the
  device plugin annotation's, unique per pod) or else by ``container_ip`` (its pod IP).
- **Atlas A3** needs version "1.2" (``super_device_id`` per device, ``super_pod_list``; same MindCluster
  doc) and Atlas 350/850/950 version "2.0": both are refused with a clear message (not supported here).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitjob.errors import RankTableError

RANK_TABLE_VERSION = "1.0"
# Fields only Atlas A3 (super-pod) allocations and tables carry (hccl.json_file_description.md, v1.2).
_A3_DEVICE_FIELDS = ("super_device_id",)
_A3_MESSAGE = (
    "Atlas A3 (super-pod) rank tables (version 1.2, with super_device_id/super_pod_list) are not supported "
    "by `vitjob launch`; run on Atlas training / A2 nodes (rank table version 1.0)"
)


@dataclass(frozen=True)
class Device:
    device_id: int  # physical chip id (rank_table.md: "the physical serial number of the card")
    device_ip: str


@dataclass(frozen=True)
class PodPiece:
    """One pod's allocation: ``index`` is its Volcano task index; IPs may be empty when unknown."""

    index: int
    pod_name: str
    server_id: str
    devices: tuple[Device, ...] = field(default_factory=tuple)
    pod_ip: str = ""  # -> the server's container_ip
    host_ip: str = ""  # the node's IP -> the server's host_ip

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index, "pod_name": self.pod_name, "server_id": self.server_id,
            "pod_ip": self.pod_ip, "host_ip": self.host_ip,
            "devices": [{"device_id": str(d.device_id), "device_ip": d.device_ip} for d in self.devices],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PodPiece:
        try:
            return cls(
                index=int(data["index"]), pod_name=str(data["pod_name"]), server_id=str(data["server_id"]),
                devices=tuple(Device(int(d["device_id"]), str(d["device_ip"])) for d in data["devices"]),
                pod_ip=str(data.get("pod_ip") or ""), host_ip=str(data.get("host_ip") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RankTableError(f"malformed rank-table piece {data!r}: {exc}") from exc


def _check_ip(pod: str, device_id: Any, ip: str) -> None:
    if ip == "-1":
        raise RankTableError(
            f"pod {pod}: device {device_id} has device_ip -1 — the device plugin could not read the NPU's "
            "network address. Check `hccn_tool -i <id> -ip -g` on the node and /etc/hccn.conf."
        )
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise RankTableError(
            f"pod {pod}: device {device_id} has device_ip {ip!r}, not an IP address"
        ) from None


def _device_label(i: int, entry: Any) -> str:
    """How an error names an annotation's device: its ``device_id`` if readable, else its position."""
    if isinstance(entry, dict) and "device_id" in entry:
        return str(entry["device_id"])
    return f"#{i} (no device_id)"


def piece_from_annotation(index: int, pod_name: str, annotation: str,
                          visible: list[int] | None = None, pod_ip: str = "") -> PodPiece:
    """Parse the device plugin's ``ascend-910-configuration`` JSON for pod ``pod_name``.

    Every error names the pod, and the device where one is at fault.
    """
    try:
        data = json.loads(annotation)
    except (json.JSONDecodeError, TypeError) as exc:
        raise RankTableError(
            f"pod {pod_name}: malformed Ascend device annotation (not JSON: {exc}): {str(annotation)[:200]!r}"
        ) from exc
    if not isinstance(data, dict):
        raise RankTableError(f"pod {pod_name}: malformed Ascend device annotation (not a JSON object): "
                             f"{annotation[:200]!r}")
    raw_devices = data.get("devices")
    if not isinstance(raw_devices, list):
        raise RankTableError(f"pod {pod_name}: malformed Ascend device annotation (no \"devices\" list): "
                             f"{annotation[:200]!r}")
    server_id = str(data.get("server_id") or data.get("host_ip") or data.get("server_ip") or "")
    host_ip = str(data.get("host_ip") or data.get("server_ip") or "")
    devices: list[Device] = []
    for i, d in enumerate(raw_devices):
        label = _device_label(i, d)
        if not isinstance(d, dict) or "device_id" not in d or "device_ip" not in d:
            raise RankTableError(f"pod {pod_name}: device {label}: malformed entry in the Ascend device "
                                 f"annotation (needs device_id and device_ip): {d!r}")
        if any(d.get(key) not in (None, "") for key in _A3_DEVICE_FIELDS):
            raise RankTableError(f"pod {pod_name}: device {label} has super_device_id: {_A3_MESSAGE}")
        try:
            device_id = int(d["device_id"])
        except (TypeError, ValueError):
            device_id = -1
        if device_id < 0 or isinstance(d["device_id"], bool):
            raise RankTableError(f"pod {pod_name}: device {label}: device_id {d['device_id']!r} is not a "
                                 "device number")
        device_ip = str(d["device_ip"])
        _check_ip(pod_name, device_id, device_ip)
        if any(dev.device_id == device_id for dev in devices):
            raise RankTableError(
                f"pod {pod_name}: device {device_id} appears twice in the Ascend device annotation"
            )
        devices.append(Device(device_id, device_ip))
    if not devices:
        raise RankTableError(f"pod {pod_name}: the Ascend device annotation lists no devices")
    if not server_id:
        raise RankTableError(f"pod {pod_name}: the Ascend device annotation has no server_id/host_ip")
    if visible is not None and sorted(d.device_id for d in devices) != sorted(visible):
        raise RankTableError(
            f"pod {pod_name}: the annotation allocates devices {[d.device_id for d in devices]} but the "
            f"container sees {visible}"
        )
    return PodPiece(index, pod_name, server_id, tuple(sorted(devices, key=lambda d: d.device_id)),
                    pod_ip=pod_ip, host_ip=host_ip)


_HCCN_LINE = re.compile(r"^\s*address_(\d+)\s*=\s*(\S+)\s*$")


def piece_from_hccn(index: int, pod_name: str, server_id: str, hccn_conf: str,
                    visible: list[int], pod_ip: str = "", host_ip: str = "") -> PodPiece:
    """Fallback: NPU addresses from ``/etc/hccn.conf`` (``address_N=IP``) for the visible devices."""
    addresses = {int(m.group(1)): m.group(2)
                 for line in hccn_conf.splitlines() if (m := _HCCN_LINE.match(line))}
    missing = [d for d in visible if d not in addresses]
    if missing:
        raise RankTableError(f"pod {pod_name}: /etc/hccn.conf has no address_N for devices {missing}")
    for d in visible:
        _check_ip(pod_name, d, addresses[d])
    return PodPiece(index, pod_name, server_id, tuple(Device(d, addresses[d]) for d in sorted(visible)),
                    pod_ip=pod_ip, host_ip=host_ip)


def build_rank_table(pieces: list[PodPiece]) -> dict[str, Any]:
    """The version-1.0 table: servers in dictionary order of ``server_id`` (rank_table.md), devices by id,
    ranks numbered in that order."""
    if not pieces:
        raise RankTableError("no pods to build a rank table from")
    indices = [p.index for p in pieces]
    if len(set(indices)) != len(indices):
        raise RankTableError(f"two pods claim the same task index: {sorted(indices)}")
    by_server: dict[str, PodPiece] = {}
    for piece in pieces:
        other = by_server.setdefault(piece.server_id, piece)
        if other is not piece:
            raise RankTableError(
                f"pods {other.pod_name} and {piece.pod_name} report the same server_id {piece.server_id!r}: "
                "HCCL needs one server entry per pod. With a device plugin that uses the node IP as "
                "server_id, place one pod per node (the job's anti-affinity does) or upgrade MindCluster's "
                "device plugin (it uses the pod UID)"
            )
    servers = []
    rank = 0
    for server_id in sorted(by_server):
        piece = by_server[server_id]
        devices = []
        for dev in sorted(piece.devices, key=lambda d: d.device_id):
            devices.append({"device_id": str(dev.device_id), "device_ip": dev.device_ip,
                            "rank_id": str(rank)})
            rank += 1
        server: dict[str, Any] = {"server_id": piece.server_id}
        if piece.host_ip:
            server["host_ip"] = piece.host_ip
        if piece.pod_ip:
            server["container_ip"] = piece.pod_ip
        server.update({"device": devices, "host_nic_ip": "reserve"})
        servers.append(server)
    return {
        "status": "completed",
        "version": RANK_TABLE_VERSION,
        "server_count": str(len(servers)),
        "server_list": servers,
    }


def own_server(table: dict[str, Any], server_id: str = "", pod_ip: str = "") -> int:
    """Index in ``server_list`` of this pod's server: by ``server_id`` (the annotation's, unique per pod)
    when it matches exactly one server, else by ``container_ip`` (the pod IP)."""
    servers = table["server_list"]
    for key, value in (("server_id", server_id), ("container_ip", pod_ip)):
        if not value:
            continue
        matches = [i for i, s in enumerate(servers) if str(s.get(key, "")) == value]
        if len(matches) == 1:
            return matches[0]
    listed = [(s.get("server_id"), s.get("container_ip")) for s in servers]
    raise RankTableError(
        f"this pod (server_id {server_id or '?'}, pod IP {pod_ip or '?'}) is not in the rank table's "
        f"server_list, or not unambiguously: (server_id, container_ip) = {listed}. The table was written "
        "for other pods (a stale hccl.json from a previous run?)"
    )


def rank_of(table: dict[str, Any], server_index: int, device_id: int) -> int:
    """Global rank of a device of the ``server_index``-th server."""
    for dev in table["server_list"][server_index]["device"]:
        if int(dev["device_id"]) == device_id:
            return int(dev["rank_id"])
    raise RankTableError(f"device {device_id} is not in server {server_index} of the rank table")


def rank_size(table: dict[str, Any]) -> int:
    return sum(len(s["device"]) for s in table["server_list"])


def read_completed_table(path: Path) -> dict[str, Any] | None:
    """An operator-mounted ``hccl.json`` if it exists and says ``completed``, else None."""
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return table if isinstance(table, dict) and table.get("status") == "completed" else None


def check_table(table: dict[str, Any], source: str) -> None:
    """A completed version-1.0 table someone else wrote (the Ascend operator) has what launch reads."""
    version = str(table.get("version", RANK_TABLE_VERSION))
    if version == "1.2" or "super_pod_list" in table:
        raise RankTableError(f"the rank table {source} is version {version}: {_A3_MESSAGE}")
    if version != RANK_TABLE_VERSION:
        raise RankTableError(f"the rank table {source} is version {version!r}; `vitjob launch` reads version "
                             f"{RANK_TABLE_VERSION} (Atlas training / A2 server_list tables) only")
    try:
        servers = table["server_list"]
        if not isinstance(servers, list) or not servers:
            raise ValueError("server_list is empty")
        for server in servers:
            for dev in server["device"]:
                if any(key in dev for key in _A3_DEVICE_FIELDS):
                    raise RankTableError(f"the rank table {source} has super_device_id: {_A3_MESSAGE}")
                int(dev["device_id"]), int(dev["rank_id"]), str(dev["device_ip"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RankTableError(f"the rank table {source} is not a usable version-1.0 table "
                             f"({exc.__class__.__name__}: {exc})") from exc


_GO_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34, "'": 39}


def go_unquote(quoted: str) -> str:
    """Inverse of Go's ``strconv.Quote``: every escape Go writes (``\\n``, ``\\"``, ``\\xFF``, ``\\u00e9``,
    ``\\U0001F600``, octal ``\\377``). Raises ValueError if ``quoted`` is not one double-quoted literal."""
    if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
        raise ValueError(f"not a double-quoted string: {quoted[:40]!r}")
    body, out, i = quoted[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch == '"':
            raise ValueError("unescaped quote inside a quoted string")
        if ch != "\\":
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError("string ends in a lone backslash")
        esc = body[i + 1]
        if esc in _GO_SIMPLE_ESCAPES:
            out.append(_GO_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc == "x":
            digits = body[i + 2:i + 4]
            if len(digits) != 2:
                _bad(body[i:i + 4])
            out.append(int(digits, 16))
            i += 4
        elif esc in "uU":
            width = 4 if esc == "u" else 8
            digits = body[i + 2:i + 2 + width]
            if len(digits) != width:
                _bad(body[i:i + 2 + width])
            out += chr(int(digits, 16)).encode("utf-8", "surrogatepass")
            i += 2 + width
        elif esc in "01234567":
            digits = body[i + 1:i + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                _bad(body[i:i + 4])
            out.append(int(digits, 8))
            i += 4
        else:
            _bad(body[i:i + 2])
    return out.decode("utf-8", errors="replace")


def _bad(escape: str) -> None:
    raise ValueError(f"invalid escape {escape!r}")


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` (what ``%q`` writes): printable characters as is, the rest escaped."""
    parts = ['"']
    reverse = {v: k for k, v in _GO_SIMPLE_ESCAPES.items() if k != "'"}
    for ch in text:
        code = ord(ch)
        if code in reverse and (ch in '"\\' or not ch.isprintable()):
            parts.append("\\" + reverse[code])
        elif ch.isprintable():
            parts.append(ch)
        elif code < 0x80:
            parts.append(f"\\x{code:02x}")
        elif code < 0x10000:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(f"\\U{code:08x}")
    parts.append('"')
    return "".join(parts)


def parse_downward_annotations(text: str) -> dict[str, str]:
    """The downward-API ``annotations`` file: one ``key="value"`` per line, values quoted as Go's ``%q``
    (kubelet's ``fieldpath.FormatMap``), so newlines and quotes inside a value are escapes."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        if "=" not in line:
            continue
        key, _, raw = line.partition("=")
        raw = raw.strip()
        try:
            result[key.strip()] = go_unquote(raw)
        except ValueError:
            result[key.strip()] = raw.strip('"')
    return result


def format_downward_annotations(annotations: dict[str, str]) -> str:
    """What kubelet writes for ``metadata.annotations`` (the local backend writes pods' annotation files)."""
    return "".join(f"{k}={go_quote(v)}\n" for k, v in sorted(annotations.items()))
