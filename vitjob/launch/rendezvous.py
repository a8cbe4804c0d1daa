"""Rank-table rendezvous: how the pods of a job gather each other's device allocations.

Design choice: **pod 0 serves a tiny TCP rendezvous on the job's headless service** (Volcano's svc
plugin gives every pod a DNS name, published before readiness; the other pods connect to the address
that name resolves to, ``addresses.resolve``); every pod, pod 0 included, sends its piece and receives
the complete table once all pieces have arrived. The alternative — each pod reading its peers'
annotations through the Kubernetes API — needs a Role and a service-account token in every training pod
and an API round-trip per peer; the rendezvous needs neither, works identically in the local backend
(pods in their own network namespaces, or sharing the host) and fails with a precise message: after the
timeout, the error names the pods whose pieces never arrived. A pod that restarts simply sends its piece
again.

Wire format: one JSON line each way — ``{"piece": {...}}`` then ``{"table": {...}}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Any

from vitjob import constants as c
from vitjob.errors import RankTableError
from vitjob.launch.ranktable import PodPiece, build_rank_table

log = logging.getLogger(__name__)

# A piece is well under 2 KiB even for 16 devices; a longer line is not ours.
_MAX_LINE = 1 << 20
# How long past its own timeout a pod waits for pod 0's answer once connected.
_ANSWER_GRACE_S = 10.0


class _Gather:
    """Pieces by task index; the table once complete, or the error that ended the wait."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.pieces: dict[int, PodPiece] = {}
        self.table: dict[str, Any] | None = None
        self.error: str | None = None
        self._line: bytes | None = None
        self.cond = threading.Condition()

    def add(self, piece: PodPiece) -> None:
        with self.cond:
            if not 0 <= piece.index < self.expected:
                raise RankTableError(
                    f"pod {piece.pod_name} has task index {piece.index}, outside 0..{self.expected - 1}"
                )
            if self.table is not None and self.pieces.get(piece.index) != piece:
                # The table is already in the other pods' hands: it cannot change any more.
                raise RankTableError(
                    f"pod {piece.pod_name} (task index {piece.index}) sent a different device allocation "
                    "after the rank table was completed; restart the whole job"
                )
            self.pieces[piece.index] = piece  # a pod that sends again (restart, retry) replaces its piece
            if len(self.pieces) == self.expected and self.table is None and self.error is None:
                try:
                    self.table = build_rank_table(list(self.pieces.values()))
                except RankTableError as exc:
                    self.error = str(exc)
            self.cond.notify_all()

    def wait(self, deadline: float) -> dict[str, Any]:
        with self.cond:
            while self.table is None and self.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.error = self.missing_message()
                    self.cond.notify_all()
                    break
                self.cond.wait(min(left, 1.0))
            if self.error:
                raise RankTableError(self.error)
            assert self.table is not None
            return self.table

    def table_line(self, deadline: float) -> bytes:
        """The answer to every pod, encoded once: ``{"table": ...}`` and a newline."""
        table = self.wait(deadline)
        with self.cond:
            if self._line is None:
                self._line = (json.dumps({"table": table}) + "\n").encode()
            return self._line

    def missing_message(self) -> str:
        missing = sorted(set(range(self.expected)) - set(self.pieces))
        return (
            f"rank-table rendezvous timed out: {len(self.pieces)} of {self.expected} pods reported; "
            f"missing task indices {missing}. Check those pods' status and logs (`vitjob status`), or raise "
            "--rdzv-timeout."
        )


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    # Every pod connects at about the same moment: the default backlog of 5 would drop SYNs at scale.
    request_queue_size = 1024


class RendezvousServer:
    """Serves the rendezvous on ``port`` (pod 0). ``serve()`` starts it in a background thread."""

    def __init__(self, port: int, expected: int, timeout_s: float, host: str = "0.0.0.0") -> None:
        self.gather = _Gather(expected)
        self.deadline = time.monotonic() + timeout_s
        self._active = 0
        self._idle = threading.Condition()
        gather, deadline, server = self.gather, self.deadline, self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                with server._idle:
                    server._active += 1
                try:
                    try:
                        msg = json.loads(self.rfile.readline(_MAX_LINE))
                        gather.add(PodPiece.from_json(msg["piece"]))
                        line = gather.table_line(deadline)
                    except (RankTableError, ValueError, KeyError, TypeError, AttributeError) as exc:
                        error = str(exc)
                        if not isinstance(exc, RankTableError):
                            error = f"{exc.__class__.__name__}: {exc}"
                        line = (json.dumps({"error": error}) + "\n").encode()
                    with contextlib.suppress(OSError):  # that pod went away; it will ask again
                        self.wfile.write(line)
                finally:
                    with server._idle:
                        server._active -= 1
                        server._idle.notify_all()

        try:
            self._server = _Server((host, port), Handler)
        except OSError as exc:
            raise RankTableError(f"cannot serve the rank-table rendezvous on {host}:{port}: "
                                 f"{exc.strerror or exc} (set {c.ENV_RDZV_PORT} to a free port)") from exc
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="rdzv")

    def serve(self) -> RendezvousServer:
        self._thread.start()
        return self

    def close(self, drain_s: float = 5.0) -> None:
        """Stop accepting, then give the answers still being written (to the other pods) time to leave."""
        if self._thread.is_alive():  # shutdown() waits for serve_forever(), forever if it never ran
            self._server.shutdown()
        self._server.server_close()
        end = time.monotonic() + drain_s
        with self._idle:
            while self._active and time.monotonic() < end:
                self._idle.wait(max(end - time.monotonic(), 0.01))


def exchange(host: str, port: int, piece: PodPiece, timeout_s: float,
             sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Send this pod's piece to pod 0 and return the complete table (retrying until ``timeout_s``).

    Once connected, the answer is awaited a little past ``timeout_s`` so that pod 0's verdict (which names
    the pods still missing) arrives rather than a bare socket timeout.
    """
    deadline = time.monotonic() + timeout_s
    last_error = "no attempt"
    sent = False
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.settimeout(max(deadline - time.monotonic(), 1.0) + _ANSWER_GRACE_S)
                sock.sendall((json.dumps({"piece": piece.to_json()}) + "\n").encode())
                sent = True
                line = sock.makefile("rb").readline()
            if not line:
                last_error = "connection closed without an answer"
            else:
                reply = json.loads(line)
                if "error" in reply:
                    raise RankTableError(reply["error"])
                return reply["table"]
        except (OSError, ValueError, KeyError, TypeError) as exc:  # pod 0 not resolvable/listening yet
            last_error = f"{exc.__class__.__name__}: {exc}" if not isinstance(exc, OSError) else str(exc)
        sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))
    if sent:
        raise RankTableError(
            f"the rank-table rendezvous on {host}:{port} did not complete within {timeout_s:.0f} s "
            f"({last_error}); pod 0's log names the pods that never reported"
        )
    raise RankTableError(
        f"could not reach the rank-table rendezvous on {host}:{port} within {timeout_s:.0f} s "
        f"({last_error}); pod 0 serves it — check that it is running"
    )
