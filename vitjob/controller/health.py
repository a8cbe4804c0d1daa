"""The controller's health endpoint: ``/healthz`` (its loops are alive) and ``/readyz`` (it is ready to
act), for the Deployment's probes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, str]]


class HealthServer:
    """``/healthz`` and ``/readyz`` on ``host:port``, answered by ``healthy`` and ``ready``: each returns
    whether all is well (200, else 503) and a line saying why."""

    def __init__(self, healthy: Check, ready: Check, host: str, port: int):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                checks = {"/healthz": healthy, "/readyz": ready}
                check = checks.get(self.path.split("?")[0])
                if check is None:
                    self._answer(404, "not found: use /healthz or /readyz\n")
                    return
                ok, text = check()
                self._answer(200 if ok else 503, text + "\n")

            def _answer(self, code: int, text: str) -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
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
        log.info("health endpoint on http://%s:%d/healthz and /readyz", *self.address)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
