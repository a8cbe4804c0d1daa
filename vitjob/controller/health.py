"""The controller's health endpoint: ``/healthz`` (its loops are alive) and ``/readyz`` (it is ready to
act), for the Deployment's probes, and ``/metrics`` (Prometheus' text format, ``metrics``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, str]]
# The metrics page: its body and content type.
Exposition = Callable[[], tuple[bytes, str]]
TEXT = "text/plain; charset=utf-8"


class HealthServer:
    """``/healthz`` and ``/readyz`` on ``host:port``, answered by ``healthy`` and ``ready``: each returns
    whether all is well (200, else 503) and a line saying why; ``/metrics`` answered by ``metrics``
    (404 without it)."""

    def __init__(self, healthy: Check, ready: Check, host: str, port: int, metrics: Exposition | None = None):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/metrics" and metrics is not None:
                    body, content_type = metrics()
                    self._answer(200, body, content_type)
                    return
                checks = {"/healthz": healthy, "/readyz": ready}
                check = checks.get(path)
                if check is None:
                    pages = "/healthz, /readyz" + (" or /metrics" if metrics is not None else "")
                    self._answer(404, f"not found: use {pages}\n".encode())
                    return
                ok, text = check()
                self._answer(200 if ok else 503, (text + "\n").encode())

            def _answer(self, code: int, data: bytes, content_type: str = TEXT) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("health: " + format, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="health")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()
        log.info("health endpoint on http://%s:%d/healthz, /readyz and /metrics", *self.address)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
