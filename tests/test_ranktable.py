"""HCCL rank tables (version 1.0): built from per-pod device allocations and gathered through the real
rendezvous (one ``RendezvousServer`` and one client thread per pod), the errors that name the pod and
device, the /etc/hccn.conf fallback, an operator-mounted table, the downward-API annotations file and
``vitjob rank-table``. No MindSpore, no child processes: fast.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from vitjob import constants as c
from vitjob.cli import main
from vitjob.errors import RankTableError, UsageError
from vitjob.launch import podenv, rendezvous
from vitjob.launch.entrypoint import gather_rank_table
from vitjob.launch.ranktable import (
    Device,
    PodPiece,
    build_rank_table,
    format_downward_annotations,
    go_quote,
    go_unquote,
    own_server,
    parse_downward_annotations,
    piece_from_annotation,
    piece_from_hccn,
)

ANNOTATION_KEY = c.ASCEND_DEVICE_ANNOTATIONS[0]


def device_ip(index: int, device: int) -> str:
    return f"10.{index // 256}.{index % 256}.{device + 1}"


def annotation(
    index: int, cards: int, *, first_device: int = 0, shuffle: bool = False, server_id: str | None = None
) -> str:
    """What the Ascend device plugin writes for pod ``index`` (devices possibly not sorted)."""
    ids = list(range(first_device, first_device + cards))
    if shuffle:
        random.Random(index).shuffle(ids)
    return json.dumps(
        {
            "pod_name": f"job-worker-{index}",
            "server_id": server_id or f"uid-{index:04d}",
            "host_ip": "192.0.2.1",
            "super_pod_id": 0,
            "devices": [{"device_id": str(d), "device_ip": device_ip(index, d)} for d in ids],
        }
    )


def make_piece(index: int, cards: int, **kwargs: Any) -> PodPiece:
    return piece_from_annotation(index, f"job-worker-{index}", annotation(index, cards, **kwargs))


def gather(
    pieces: list[PodPiece], timeout_s: float = 30.0, *, stagger: bool = False
) -> list[str | Exception]:
    """Every pod's outcome of a real rendezvous: the table as the pod writes it (JSON text), or the error."""
    server = rendezvous.RendezvousServer(0, len(pieces), timeout_s, host="127.0.0.1").serve()
    results: list[str | Exception] = [RuntimeError("no answer")] * len(pieces)

    def pod(slot: int, piece: PodPiece, delay: float) -> None:
        time.sleep(delay)
        try:
            table = rendezvous.exchange("127.0.0.1", server.port, piece, timeout_s)
            results[slot] = json.dumps(table, indent=2) + "\n"
        except Exception as exc:  # recorded and asserted on by the test
            results[slot] = exc

    rng = random.Random(len(pieces))
    threads = [
        threading.Thread(target=pod, args=(i, p, rng.uniform(0, 0.2) if stagger else 0.0))
        for i, p in enumerate(pieces)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 20)
    server.close()
    return results


def assert_valid_table(text: str, pods: int, cards: int) -> None:
    table = json.loads(text)
    assert table["status"] == "completed"
    assert table["version"] == "1.0"
    assert table["server_count"] == str(pods)
    assert len(table["server_list"]) == pods
    rank = 0
    for index, server in enumerate(table["server_list"]):
        assert server["server_id"] == f"uid-{index:04d}"  # servers by task index
        assert [d["device_id"] for d in server["device"]] == [str(d) for d in range(cards)]  # by device id
        for dev in server["device"]:
            assert dev == {
                "device_id": dev["device_id"],
                "device_ip": device_ip(index, int(dev["device_id"])),
                "rank_id": str(rank),
            }
            rank += 1
        for value in [server["server_id"], *(v for d in server["device"] for v in d.values())]:
            assert isinstance(value, str)
    assert rank == pods * cards


# --------------------------------------------------------------------------- layouts, gathered for real
LAYOUTS = [(1, 1), (1, 2), (1, 4), (1, 8), (2, 8), (16, 8), (128, 8)]


@pytest.mark.parametrize(("pods", "cards"), LAYOUTS, ids=[f"{p}x{n}" for p, n in LAYOUTS])
def test_rank_table_identical_on_every_pod(pods: int, cards: int) -> None:
    pieces = [make_piece(i, cards, shuffle=True) for i in range(pods)]
    random.Random(pods * cards).shuffle(pieces)  # threads start (and pieces arrive) out of task order
    results = gather(pieces, stagger=pods <= 16)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    assert len({hashlib.sha256(str(r).encode()).hexdigest() for r in results}) == 1  # byte-identical
    assert_valid_table(str(results[0]), pods, cards)
    # The same pieces built locally (the single-pod path) give the same table.
    assert json.dumps(build_rank_table(pieces), indent=2) + "\n" == results[0]


def test_restarted_pod_resending_its_piece_is_not_duplicated() -> None:
    pieces = [make_piece(i, 2) for i in range(3)]
    server = rendezvous.RendezvousServer(0, 3, 10.0, host="127.0.0.1").serve()
    try:
        # Pod 1 sends its piece, then dies before the answer (restart) ...
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall((json.dumps({"piece": pieces[1].to_json()}) + "\n").encode())
        deadline = time.monotonic() + 5
        while 1 not in server.gather.pieces and time.monotonic() < deadline:
            time.sleep(0.01)
        assert set(server.gather.pieces) == {1}
        # ... and sends it again after the restart, alongside the others.
        results: dict[int, dict[str, Any]] = {}
        threads = [
            threading.Thread(
                target=lambda p=p: results.__setitem__(
                    p.index, rendezvous.exchange("127.0.0.1", server.port, p, 10.0)
                )
            )
            for p in pieces
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        # Sent again after completion (a retry whose answer was lost): the same table, nothing added.
        again = rendezvous.exchange("127.0.0.1", server.port, pieces[2], 5.0)
    finally:
        server.close()
    assert len(results) == 3 and all(r == results[0] for r in results.values())
    assert again == results[0]
    assert results[0]["server_count"] == "3" and len(results[0]["server_list"]) == 3
    assert [d["rank_id"] for s in results[0]["server_list"] for d in s["device"]] == [
        str(r) for r in range(6)
    ]


def test_a_changed_piece_after_completion_is_refused() -> None:
    pieces = [make_piece(i, 1) for i in range(2)]
    results = gather(pieces)
    assert all(isinstance(r, str) for r in results)
    g = rendezvous._Gather(2)
    for p in pieces:
        g.add(p)
    changed = PodPiece(1, "job-worker-1", "uid-0001", (Device(0, "10.9.9.9"),))
    with pytest.raises(RankTableError, match=r"job-worker-1 \(task index 1\) sent a different"):
        g.add(changed)
    g.add(pieces[1])  # the identical piece again is fine
    assert g.table is not None and g.table["server_list"][1]["device"][0]["device_ip"] == device_ip(1, 0)


def test_missing_pod_times_out_naming_the_missing_task_indices() -> None:
    pieces = [make_piece(i, 2) for i in (0, 2, 3)]  # pods 1 and 4 never start
    server = rendezvous.RendezvousServer(0, 5, 1.5, host="127.0.0.1").serve()
    errors: list[BaseException] = []

    def pod(p: PodPiece) -> None:
        try:
            rendezvous.exchange("127.0.0.1", server.port, p, 1.5)
        except RankTableError as exc:
            errors.append(exc)

    start = time.monotonic()
    threads = [threading.Thread(target=pod, args=(p,)) for p in pieces]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    server.close()
    assert time.monotonic() - start < 6
    assert len(errors) == 3
    for exc in errors:
        assert "missing task indices [1, 4]" in str(exc) and "3 of 5 pods" in str(exc)


def test_pod_0_unreachable_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    start = time.monotonic()
    with pytest.raises(
        RankTableError, match=rf"could not reach the rank-table rendezvous on 127.0.0.1:{port}"
    ):
        rendezvous.exchange("127.0.0.1", port, make_piece(1, 1), 1.0)
    assert time.monotonic() - start < 4


def test_garbage_on_the_rendezvous_port_gets_an_error_answer() -> None:
    server = rendezvous.RendezvousServer(0, 2, 5.0, host="127.0.0.1").serve()
    try:
        for junk in (
            b"not json\n",
            b"[1, 2]\n",
            b'{"piece": {"index": 0}}\n',
            b'{"piece": {"index": 7, "pod_name": "x", "server_id": "s", "devices": []}}\n',
        ):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(junk)
                reply = json.loads(sock.makefile("rb").readline())
            assert "error" in reply, junk
        assert server.gather.pieces == {}
    finally:
        server.close()


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(RankTableError, match=rf"cannot serve .* on 127.0.0.1:{port}: .*VITJOB_RDZV_PORT"):
            rendezvous.RendezvousServer(port, 2, 1.0, host="127.0.0.1")


def test_server_socket_option_does_not_leak_to_other_servers() -> None:
    import socketserver

    before = socketserver.ThreadingTCPServer.allow_reuse_address
    rendezvous.RendezvousServer(0, 1, 1.0, host="127.0.0.1").close()
    assert socketserver.ThreadingTCPServer.allow_reuse_address == before


# --------------------------------------------------------------------------- errors naming pod and device
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"server_id": "u", "devices": [{"device_id": "3", "device_ip": "-1"}]}',
            r"pod p-7: device 3 has device_ip -1",
        ),
        (
            '{"server_id": "u", "devices": [{"device_id": "5", "device_ip": "10.0.0.300"}]}',
            r"pod p-7: device 5 has device_ip '10.0.0.300', not an IP address",
        ),
        (
            '{"server_id": "u", "devices": [{"device_id": "2", "device_ip": "npu-2"}]}',
            r"pod p-7: device 2 .*not an IP",
        ),
        ('{"server_id": "u", "devices": [{"device_id": "2"}]}', r"pod p-7: device 2: malformed entry"),
        (
            '{"server_id": "u", "devices": [{"device_ip": "10.0.0.1"}]}',
            r"pod p-7: device #0 \(no device_id\)",
        ),
        (
            '{"server_id": "u", "devices": [{"device_id": "x1", "device_ip": "10.0.0.1"}]}',
            r"pod p-7: device x1: device_id",
        ),
        ('{"server_id": "u", "devices": ["0"]}', r"pod p-7: device #0 .*malformed entry"),
        (
            '{"server_id": "u", "devices": [{"device_id": "1", "device_ip": "10.0.0.1"}, '
            '{"device_id": "1", "device_ip": "10.0.0.2"}]}',
            r"pod p-7: device 1 appears twice",
        ),
        ('{"server_id": "u", "devices": []}', r"pod p-7: .*lists no devices"),
        ('{"server_id": "u"}', r"pod p-7: malformed .*no \"devices\" list"),
        ('{"server_id": "u", "devices": {"0": "10.0.0.1"}}', r"pod p-7: malformed .*no \"devices\" list"),
        (
            '{"server_id": "u", "devices": [{"device_id": "0", "device_ip": "10.0.0.1"',
            r"pod p-7: malformed .*not JSON",
        ),
        ("[]", r"pod p-7: malformed .*not a JSON object"),
        ('{"devices": [{"device_id": "0", "device_ip": "10.0.0.1"}]}', r"pod p-7: .*no server_id"),
    ],
)
def test_bad_annotation_names_pod_and_device(text: str, expected: str) -> None:
    with pytest.raises(RankTableError, match=expected):
        piece_from_annotation(7, "p-7", text)


def test_annotation_falls_back_to_host_ip_and_sorts_devices() -> None:
    text = json.dumps(
        {
            "host_ip": "192.0.2.9",
            "devices": [
                {"device_id": "3", "device_ip": "10.0.0.4"},
                {"device_id": "1", "device_ip": "10.0.0.2"},
            ],
        }
    )
    piece = piece_from_annotation(0, "p", text, visible=[3, 1])
    assert piece.server_id == "192.0.2.9"
    assert [d.device_id for d in piece.devices] == [1, 3]
    with pytest.raises(
        RankTableError,
        match=r"pod p: the annotation allocates devices \[3, 1\] but the container "
        r"sees \[0, 1\]",
    ):
        piece_from_annotation(0, "p", text, visible=[0, 1])


def test_duplicate_task_index_is_refused() -> None:
    with pytest.raises(RankTableError, match="same task index"):
        build_rank_table([make_piece(0, 1), make_piece(0, 1)])


# --------------------------------------------------------------------------- the documented rules
# MindSpore rank_table.md's two-server example (its masked addresses filled in with documentation ranges),
# with the per-server host_ip and container_ip that Ascend Operator writes (MindCluster
# docs/en/scheduling/api/hccl.json_file_description.md). Written here by hand from those two documents.
DOCUMENTED_TABLE = json.loads(
    """
{
  "version": "1.0",
  "server_count": "2",
  "server_list": [
    {
      "server_id": "192.0.2.10",
      "host_ip": "192.0.2.10",
      "container_ip": "10.244.1.7",
      "device": [
        {"device_id": "0", "device_ip": "198.18.1.6", "rank_id": "0"},
        {"device_id": "1", "device_ip": "198.18.2.6", "rank_id": "1"}],
      "host_nic_ip": "reserve"
    },
    {
      "server_id": "192.0.2.9",
      "host_ip": "192.0.2.9",
      "container_ip": "10.244.0.5",
      "device": [
        {"device_id": "0", "device_ip": "198.18.1.8", "rank_id": "2"},
        {"device_id": "1", "device_ip": "198.18.2.8", "rank_id": "3"}],
      "host_nic_ip": "reserve"
    }
  ],
  "status": "completed"
}
"""
)


def test_table_matches_the_documented_format_and_orders_servers_by_server_id() -> None:
    # Task index 0 runs on 192.0.2.9, which sorts *after* 192.0.2.10 as a string: rank_table.md wants the
    # rank ids in the dictionary order of server_id, so pod 0 gets ranks 2 and 3.
    pod0 = piece_from_annotation(
        0,
        "job-worker-0",
        json.dumps(
            {
                "server_id": "192.0.2.9",
                "host_ip": "192.0.2.9",
                "devices": [
                    {"device_id": "1", "device_ip": "198.18.2.8"},
                    {"device_id": "0", "device_ip": "198.18.1.8"},
                ],
            }
        ),
        pod_ip="10.244.0.5",
    )
    pod1 = piece_from_hccn(
        1,
        "job-worker-1",
        "192.0.2.10",
        "address_0=198.18.1.6\naddress_1=198.18.2.6\n",
        [0, 1],
        pod_ip="10.244.1.7",
        host_ip="192.0.2.10",
    )
    table = build_rank_table([pod0, pod1])
    assert table == DOCUMENTED_TABLE
    assert own_server(table, "192.0.2.9", "10.244.0.5") == 1  # task index 0 is the second server


def test_pod_uid_server_ids_that_sort_unlike_the_task_index() -> None:
    # The device plugin's server_id is the pod UID: random, so its order has nothing to do with the index.
    uids = [
        "f3a9c1d2-0000-4000-8000-000000000000",
        "0b7e4f11-0000-4000-8000-000000000000",
        "7c2d9e55-0000-4000-8000-000000000000",
    ]
    pieces = [make_piece(i, 2, server_id=uid) for i, uid in enumerate(uids)]
    for i, piece in enumerate(pieces):
        pieces[i] = PodPiece(
            piece.index,
            piece.pod_name,
            piece.server_id,
            piece.devices,
            pod_ip=f"10.244.0.{i + 2}",
            host_ip="192.0.2.1",
        )
    results = gather(pieces)
    table = json.loads(str(results[0]))
    assert all(r == results[0] for r in results)
    assert [s["server_id"] for s in table["server_list"]] == sorted(uids)
    ranks = [int(d["rank_id"]) for s in table["server_list"] for d in s["device"]]
    assert ranks == list(range(6))  # rank ids follow the server order
    # Each pod finds its own server by server_id (or by pod IP), not at position == task index.
    positions = [own_server(table, p.server_id, "") for p in pieces]
    assert positions == [2, 0, 1]
    assert [own_server(table, "", p.pod_ip) for p in pieces] == positions
    assert [table["server_list"][pos]["container_ip"] for pos in positions] == [p.pod_ip for p in pieces]
    assert all(s["host_ip"] == "192.0.2.1" for s in table["server_list"])


def test_own_server_in_an_operator_table_sorted_by_rank(tmp_path: Path) -> None:
    # Ascend Operator sorts servers by rank (hccl/rankIndex), server_id = pod UID: task index 0 can be
    # anywhere. This pod (task index 0) is "uid-b" at 10.244.3.9, the table's second server.
    operator = {
        "status": "completed",
        "version": "1.0",
        "server_count": "2",
        "server_list": [
            {
                "server_id": "uid-a",
                "host_ip": "192.0.2.1",
                "container_ip": "10.244.2.4",
                "device": [{"device_id": "0", "device_ip": "10.8.0.1", "rank_id": "0"}],
            },
            {
                "server_id": "uid-b",
                "host_ip": "192.0.2.2",
                "container_ip": "10.244.3.9",
                "device": [{"device_id": "0", "device_ip": "10.8.0.2", "rank_id": "1"}],
            },
        ],
    }
    (tmp_path / "hccl.json").write_text(json.dumps(operator))
    env = pod_env(
        tmp_path,
        index=0,
        pods=2,
        cards=1,
        annotations=None,
        VITJOB_OPERATOR_RANK_TABLE=str(tmp_path / "hccl.json"),
    )
    pod = podenv.read_pod_env(env, "ascend", None)
    assert gather_rank_table(env, pod, 1.0, pod_ip="10.244.3.9") == (operator, 1)
    # With the device plugin's annotation readable, its server_id identifies the pod.
    env = pod_env(
        tmp_path,
        index=0,
        pods=2,
        cards=1,
        annotations={ANNOTATION_KEY: annotation(0, 1, server_id="uid-b")},
        VITJOB_OPERATOR_RANK_TABLE=str(tmp_path / "hccl.json"),
    )
    assert gather_rank_table(env, pod, 1.0) == (operator, 1)
    # A pod the table does not list (a stale table from another run of the job) is told so.
    with pytest.raises(RankTableError, match=r"not in the rank table's server_list.*stale hccl.json"):
        own_server(operator, "uid-z", "10.244.9.9")


def test_duplicate_server_id_is_refused() -> None:
    with pytest.raises(
        RankTableError,
        match=r"job-worker-0 and job-worker-1 report the same server_id "
        r"'192.0.2.1'.*one pod per node",
    ):
        build_rank_table([make_piece(0, 1, server_id="192.0.2.1"), make_piece(1, 1, server_id="192.0.2.1")])


def test_atlas_a3_is_refused(tmp_path: Path) -> None:
    a3_device = (
        '{"server_id": "u", "devices": [{"device_id": "0", "device_ip": "10.0.0.1", '
        '"super_device_id": "37748736"}]}'
    )
    with pytest.raises(
        RankTableError, match=r"pod p: device 0 has super_device_id: Atlas A3 .*not supported"
    ):
        piece_from_annotation(0, "p", a3_device)
    a3_table = {
        "status": "completed",
        "version": "1.2",
        "server_count": "1",
        "server_list": [
            {
                "server_id": "u",
                "host_ip": "192.0.2.1",
                "device": [
                    {"device_id": "0", "device_ip": "10.0.0.1", "super_device_id": "37748736", "rank_id": "0"}
                ],
            }
        ],
        "super_pod_list": [{"super_pod_id": "0", "server_list": [{"server_id": "u"}]}],
    }
    (tmp_path / "hccl.json").write_text(json.dumps(a3_table))
    env = pod_env(tmp_path, cards=1, annotations=None, VITJOB_OPERATOR_RANK_TABLE=str(tmp_path / "hccl.json"))
    with pytest.raises(RankTableError, match=r"is version 1.2: Atlas A3 \(super-pod\) rank tables"):
        gather_rank_table(env, podenv.read_pod_env(env, "ascend", None), 1.0)
    (tmp_path / "hccl.json").write_text(
        json.dumps({"status": "completed", "version": "2.0", "rank_list": []})
    )
    with pytest.raises(RankTableError, match=r"version '2.0'; `vitjob launch` reads version 1.0"):
        gather_rank_table(env, podenv.read_pod_env(env, "ascend", None), 1.0)


@pytest.mark.parametrize(
    ("rt_visible", "expected"),
    [
        ("", {4: 0, 5: 1, 6: 2, 7: 3}),
        ("4,5,6,7", {4: 0, 5: 1, 6: 2, 7: 3}),
        ("6,7,4,5", {6: 0, 7: 1, 4: 2, 5: 3}),
    ],
    ids=["container-given-4-7", "rt-visible-4-7", "rt-visible-reordered"],
)
def test_set_device_id_of_chips_4_to_7(rt_visible: str, expected: dict[int, int]) -> None:
    env = {c.ENV_ASCEND_RT_VISIBLE_DEVICES: rt_visible} if rt_visible else {}
    assert podenv.logical_device_ids(env, [7, 5, 4, 6]) == expected


def test_rt_visible_devices_hiding_a_chip_of_the_table_is_refused() -> None:
    with pytest.raises(RankTableError, match=r"devices \[4, 5\] but ASCEND_RT_VISIBLE_DEVICES=4 hides \[5\]"):
        podenv.logical_device_ids({c.ENV_ASCEND_RT_VISIBLE_DEVICES: "4"}, [4, 5])


# --------------------------------------------------------------------------- pod environment (podenv)
def pod_env(
    tmp_path: Path,
    *,
    index: int = 0,
    pods: int = 1,
    cards: int = 2,
    annotations: dict[str, str] | None,
    hccn: str | None = None,
    **extra: str,
) -> dict[str, str]:
    info = tmp_path / f"podinfo-{index}"
    info.mkdir(exist_ok=True)
    (info / c.PODINFO_NAME_FILE).write_text(f"job-worker-{index}\n")
    if annotations is not None:
        (info / c.PODINFO_ANNOTATIONS_FILE).write_text(format_downward_annotations(annotations))
    volcano = tmp_path / "volcano"
    volcano.mkdir(exist_ok=True)
    (volcano / "worker.host").write_text("".join(f"job-worker-{i}.job\n" for i in range(pods)))
    env = {
        c.ENV_VC_TASK_INDEX: str(index),
        c.ENV_NUM_PODS: str(pods),
        c.ENV_CARDS_PER_POD: str(cards),
        c.ENV_PODINFO_DIR: str(info),
        c.ENV_VOLCANO_DIR: str(volcano),
        c.ENV_HCCN_CONF: str(tmp_path / "no-hccn.conf"),
        c.ENV_OPERATOR_RANK_TABLE: str(tmp_path / "no-hccl.json"),
    }
    if hccn is not None:
        (tmp_path / "hccn.conf").write_text(hccn)
        env[c.ENV_HCCN_CONF] = str(tmp_path / "hccn.conf")
    env.update(extra)
    return env


def test_ascend_piece_from_the_downward_api_annotation(tmp_path: Path) -> None:
    env = pod_env(
        tmp_path,
        cards=2,
        annotations={
            "other/annotation": 'with "quotes"\nand a newline',
            ANNOTATION_KEY: annotation(0, 2, shuffle=True),
        },
    )
    pod = podenv.read_pod_env(env, "ascend", None)
    piece = podenv.ascend_piece(env, pod)
    assert piece.pod_name == "job-worker-0" and piece.server_id == "uid-0000"
    assert piece.devices == (Device(0, device_ip(0, 0)), Device(1, device_ip(0, 1)))
    # The older atlas.* key works too.
    env = pod_env(tmp_path, cards=2, annotations={c.ASCEND_DEVICE_ANNOTATIONS[2]: annotation(0, 2)})
    assert podenv.ascend_piece(env, pod) == piece


def test_ascend_piece_device_count_must_match_cards_per_pod(tmp_path: Path) -> None:
    env = pod_env(tmp_path, cards=4, annotations={ANNOTATION_KEY: annotation(0, 2)})
    pod = podenv.read_pod_env(env, "ascend", None)
    with pytest.raises(
        RankTableError, match=r"pod job-worker-0: .* gives 2 device\(s\) \[0, 1\] but the pod runs 4"
    ):
        podenv.ascend_piece(env, pod)


def test_ascend_visible_devices_mismatch(tmp_path: Path) -> None:
    env = pod_env(
        tmp_path, cards=2, annotations={ANNOTATION_KEY: annotation(0, 2)}, ASCEND_VISIBLE_DEVICES="2,3"
    )
    pod = podenv.read_pod_env(env, "ascend", None)
    with pytest.raises(
        RankTableError,
        match=r"pod job-worker-0: the annotation allocates devices \[0, 1\] but the "
        r"container sees \[2, 3\]",
    ):
        podenv.ascend_piece(env, pod)
    env["ASCEND_VISIBLE_DEVICES"] = "0-1"  # the runtime's range form
    assert [d.device_id for d in podenv.ascend_piece(env, pod).devices] == [0, 1]


HCCN = (
    "# written by hccn_tool\naddress_0=10.1.0.1\nnetmask_0=255.255.255.0\naddress_1=10.1.0.2\n"
    "address_2 = 10.1.0.3\naddress_3=10.1.0.4\naddress_5=-1\n"
)


def test_hccn_conf_fallback(tmp_path: Path) -> None:
    # An annotations file without the device-plugin key: /etc/hccn.conf (path from VITJOB_HCCN_CONF).
    env = pod_env(
        tmp_path,
        index=1,
        pods=2,
        cards=2,
        annotations={"unrelated": "x"},
        hccn=HCCN,
        ASCEND_VISIBLE_DEVICES="2,3",
        VITJOB_HOST_IP="192.0.2.21",
    )
    pod = podenv.read_pod_env(env, "ascend", None)
    piece = podenv.ascend_piece(env, pod, pod_ip="10.244.1.3")
    assert piece.index == 1 and piece.pod_name == "job-worker-1"
    # rank_table.md: server_id is "the IP address of the current machine" (downward API status.hostIP).
    assert piece.server_id == piece.host_ip == "192.0.2.21" and piece.pod_ip == "10.244.1.3"
    assert piece.devices == (Device(2, "10.1.0.3"), Device(3, "10.1.0.4"))
    # No ASCEND_VISIBLE_DEVICES: devices 0..cards-1.
    del env["ASCEND_VISIBLE_DEVICES"]
    assert [d.device_ip for d in podenv.ascend_piece(env, pod).devices] == ["10.1.0.1", "10.1.0.2"]
    # The pod template mounts the file FileOrCreate: on a node without one it is empty, i.e. absent.
    (tmp_path / "hccn.conf").write_text("")
    with pytest.raises(UsageError, match=r"no Ascend device allocation found .*non-empty"):
        podenv.ascend_piece(env, pod)


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        ("4", r"pod job-worker-0: /etc/hccn.conf has no address_N for devices \[4\]"),
        ("5", r"pod job-worker-0: device 5 has device_ip -1"),
    ],
)
def test_hccn_conf_errors(tmp_path: Path, visible: str, expected: str) -> None:
    env = pod_env(tmp_path, cards=1, annotations=None, hccn=HCCN, ASCEND_VISIBLE_DEVICES=visible)
    with pytest.raises(RankTableError, match=expected):
        podenv.ascend_piece(env, podenv.read_pod_env(env, "ascend", None))


def test_no_allocation_at_all_is_a_usage_error(tmp_path: Path) -> None:
    env = pod_env(tmp_path, cards=1, annotations=None)
    with pytest.raises(UsageError, match=r"pod job-worker-0: no Ascend device allocation found"):
        podenv.ascend_piece(env, podenv.read_pod_env(env, "ascend", None))


def test_piece_from_hccn_directly() -> None:
    piece = piece_from_hccn(3, "p", "srv", "address_1=10.0.0.2\naddress_0=10.0.0.1\n", [1, 0])
    assert piece.devices == (Device(0, "10.0.0.1"), Device(1, "10.0.0.2")) and piece.server_id == "srv"


def test_operator_mounted_completed_table_is_used_as_is(tmp_path: Path) -> None:
    operator = {
        "status": "completed",
        "version": "1.0",
        "server_count": "2",
        "server_list": [
            {
                "server_id": "pod-uid-a",
                "host_ip": "192.0.2.1",
                "container_ip": "10.244.0.5",
                "device": [{"device_id": "4", "device_ip": "10.8.0.4", "rank_id": "0"}],
            },
            {
                "server_id": "pod-uid-b",
                "host_ip": "192.0.2.2",
                "container_ip": "10.244.1.5",
                "device": [{"device_id": "6", "device_ip": "10.8.0.6", "rank_id": "1"}],
            },
        ],
    }
    (tmp_path / "hccl.json").write_text(json.dumps(operator))
    # No annotation and no hccn.conf: only the operator's table can be the source.
    env = pod_env(
        tmp_path,
        index=1,
        pods=2,
        cards=1,
        annotations=None,
        VITJOB_OPERATOR_RANK_TABLE=str(tmp_path / "hccl.json"),
    )
    pod = podenv.read_pod_env(env, "ascend", None)
    assert gather_rank_table(env, pod, 1.0, pod_ip="10.244.1.5") == (operator, 1)
    # The operator's table must fit the job.
    env[c.ENV_NUM_PODS] = "3"
    (tmp_path / "volcano" / "worker.host").write_text("a\nb\nc\n")
    with pytest.raises(RankTableError, match=r"has 2 server\(s\) but the job has 3 pod\(s\)"):
        gather_rank_table(env, podenv.read_pod_env(env, "ascend", None), 1.0)
    (tmp_path / "hccl.json").write_text(
        json.dumps({"status": "completed", "server_list": [{"device": [{}]}]})
    )
    with pytest.raises(RankTableError, match=r"not a usable version-1\.0 table"):
        gather_rank_table(env, podenv.read_pod_env(env, "ascend", None), 1.0)


def test_initializing_operator_table_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "hccl.json").write_text('{"status":"initializing"}')
    env = pod_env(
        tmp_path,
        cards=2,
        annotations={ANNOTATION_KEY: annotation(0, 2)},
        VITJOB_OPERATOR_RANK_TABLE=str(tmp_path / "hccl.json"),
    )
    table, index = gather_rank_table(env, podenv.read_pod_env(env, "ascend", None), 1.0)
    assert table["status"] == "completed" and table["server_list"][0]["server_id"] == "uid-0000"
    assert index == 0


def test_read_pod_env_layouts(tmp_path: Path) -> None:
    volcano = tmp_path / "volcano"
    volcano.mkdir()
    (volcano / "my_task.host").write_text("a.j\nb.j\nc.j\n")  # svc plugin: '-' becomes '_'
    env = {c.ENV_VOLCANO_DIR: str(volcano), c.ENV_TASK: "my-task", c.ENV_VC_TASK_INDEX: "2"}
    pod = podenv.read_pod_env(env, "cpu", 2)
    assert (pod.num_pods, pod.hosts, pod.first_rank, pod.world_size) == (3, ["a.j", "b.j", "c.j"], 4, 6)
    env["VC_MY_TASK_NUM"] = "2"
    with pytest.raises(UsageError, match="bad pod layout"):
        podenv.read_pod_env(env, "cpu", 2)
    with pytest.raises(UsageError, match="bad pod layout"):
        podenv.read_pod_env({c.ENV_VOLCANO_DIR: str(tmp_path / "none")}, "cpu", 0)
    hosts_env = {
        c.ENV_VOLCANO_DIR: str(tmp_path / "none"),
        "VC_WORKER_HOSTS": "x.j,y.j",
        "VC_WORKER_NUM": "2",
        c.ENV_VC_TASK_INDEX: "1",
    }
    assert podenv.read_pod_env(hosts_env, "gpu", 1).hosts == ["x.j", "y.j"]
    with pytest.raises(UsageError, match="no peer host list"):
        podenv.read_pod_env({c.ENV_VOLCANO_DIR: str(tmp_path / "none"), c.ENV_NUM_PODS: "2"}, "cpu", 1)


# --------------------------------------------------------------------------- downward-API annotations file
KUBELET_FILE = (
    # As kubelet's fieldpath.FormatMap writes it: key=%q, sorted, no final newline.
    'ascend.kubectl.kubernetes.io/ascend-910-configuration="{\\"pod_name\\":\\"job-worker-0\\",\\"server_id\\":'
    '\\"uid-0\\",\\"devices\\":[{\\"device_id\\":\\"0\\",\\"device_ip\\":\\"10.0.0.1\\"}]}"\n'
    'kubernetes.io/config.seen="2024-01-01T00:00:00.000000000Z"\n'
    'note="tab\\there \\"quoted\\" back\\\\slash\\nline2 caf\u00e9 \\x01 \\u200b \\a\\v \\U0001f600 \\377"'
)


def test_parse_kubelet_annotations_file() -> None:
    parsed = parse_downward_annotations(KUBELET_FILE)
    assert json.loads(parsed[ANNOTATION_KEY])["devices"][0]["device_ip"] == "10.0.0.1"
    assert parsed["kubernetes.io/config.seen"] == "2024-01-01T00:00:00.000000000Z"
    assert parsed["note"] == (
        'tab\there "quoted" back\\slash\nline2 caf\u00e9 \x01 \u200b \a\v \U0001f600 \ufffd'
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plain",
        'with "quotes"',
        "multi\nline\r\n",
        "back\\slash\\n not a newline",
        "tab\t\x00\x1b\x7f",
        "caf\u00e9 \u4e2d\u6587 \U0001f600 \u200b\u2028",
        annotation(3, 8),
        "key=value=more",
    ],
)
def test_downward_annotations_round_trip(value: str) -> None:
    annotations = {"a.io/x": value, ANNOTATION_KEY: annotation(0, 2), "z": "last"}
    text = format_downward_annotations(annotations)
    assert parse_downward_annotations(text) == annotations
    assert len(text.splitlines()) == 3  # one line per annotation, whatever the value holds
    assert go_unquote(go_quote(value)) == value


def test_go_quote_matches_go() -> None:
    # strconv.Quote: printable runes as is, named escapes, \x for other ASCII controls, \u beyond.
    assert go_quote('a"b\\c\n\t\x01\x7f\u00e9\u200b') == '"a\\"b\\\\c\\n\\t\\x01\\x7f\u00e9\\u200b"'
    for bad in ('"\\q"', '"\\x4"', '"abc', '"a"b"', '"\\'):
        with pytest.raises(ValueError):
            go_unquote(bad)


# --------------------------------------------------------------------------- vitjob rank-table
def test_cli_rank_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = []
    for i in range(2):
        f = tmp_path / f"pod{i}.json"
        f.write_text(annotation(i, 8, shuffle=True))
        files.append(str(f))
    # A pod's whole downward-API annotations file works too.
    f = tmp_path / "pod2.annotations"
    f.write_text(format_downward_annotations({"other": "x", ANNOTATION_KEY: annotation(2, 8)}))
    files.append(str(f))
    out = tmp_path / "hccl.json"
    assert main(["rank-table", "--pod-info", *files, "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert_valid_table(out.read_text(), 3, 8)
    assert main(["rank-table", "--pod-info", *files]) == 0
    assert capsys.readouterr().out == out.read_text()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            '{"pod_name": "w-1", "server_id": "u", "devices": [{"device_id": "6", "device_ip": "-1"}]}',
            "pod w-1: device 6 has device_ip -1",
        ),
        ('{"server_id": "u", "devices": [{"device_id": "0", "device_ip": "1.2.3.4"', "pod bad: malformed"),
        ("just text\n", "pod bad: .*holds neither"),
    ],
)
def test_cli_rank_table_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    good = tmp_path / "good.json"
    good.write_text(annotation(0, 1))
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["rank-table", "--pod-info", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vitjob rank-table: error: ") and len(err.strip().splitlines()) == 1
    import re

    assert re.search(expected, err), err
    assert main(["rank-table", "--pod-info", str(tmp_path / "missing.json")]) == 2
