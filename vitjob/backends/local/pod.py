"""One local "pod": a container's command run as a process in its own session, its output pumped to
its log file (and to the terminal or an observer), stopped with SIGTERM then SIGKILL as the kubelet does."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO


class LocalPod:
    """A pod's process, its log file, and how often it was restarted."""

    def __init__(self, name: str, index: int, argv: list[str], env: dict[str, str], log_file: Path) -> None:
        self.name, self.index, self.argv, self.env, self.log_file = name, index, argv, env, log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.pump: threading.Thread | None = None
        self.restarts = 0

    def start(
        self,
        out: IO[str] | None,
        prefix: bool,
        lock: threading.Lock,
        on_line: Callable[[str, str], None] | None = None,
    ) -> None:
        if self.log_file.exists():
            os.replace(self.log_file, self.log_file.with_suffix(".previous.log"))
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.pump = threading.Thread(target=self._pump, args=(out, prefix, lock, on_line), daemon=True)
        self.pump.start()

    def _pump(
        self,
        out: IO[str] | None,
        prefix: bool,
        lock: threading.Lock,
        on_line: Callable[[str, str], None] | None,
    ) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log_file, "a") as fh:
            for raw in iter(self.proc.stdout.readline, b""):
                line = raw.decode(errors="replace")
                fh.write(line)
                fh.flush()
                if out is not None or on_line is not None:
                    with lock:
                        if out is not None:
                            out.write(f"[{self.name}] {line}" if prefix else line)
                            out.flush()
                        if on_line is not None:
                            on_line(self.name, line.rstrip("\n"))

    def kill(self, grace_s: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def pod_phase(pod: LocalPod) -> str:
    """The pod's Kubernetes phase, from its process."""
    if pod.proc is None:
        return "Pending"
    code = pod.proc.poll()
    return "Running" if code is None else ("Succeeded" if code == 0 else "Failed")
