"""A work queue of object keys, as client-go's: each key at most once in the queue, so a burst of events
for one object makes one piece of work; ``add_after`` for delayed retries. Thread-safe."""

from __future__ import annotations

import heapq
import threading
import time

Key = tuple[str, str]  # (namespace, name)


class WorkQueue:
    """Pipeline keys to reconcile, each at most once in the queue; delayed retries."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: dict[Key, None] = {}  # insertion-ordered set
        self._delayed: list[tuple[float, Key]] = []

    def add(self, key: Key) -> None:
        with self._cond:
            self._ready[key] = None
            self._cond.notify()

    def add_after(self, key: Key, delay_s: float) -> None:
        with self._cond:
            heapq.heappush(self._delayed, (time.monotonic() + delay_s, key))
            self._cond.notify()

    def get(self, timeout_s: float) -> Key | None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    self._ready[heapq.heappop(self._delayed)[1]] = None
                if self._ready:
                    key = next(iter(self._ready))
                    del self._ready[key]
                    return key
                wake = min([deadline, *(d for d, _ in self._delayed[:1])])
                if now >= deadline:
                    return None
                self._cond.wait(max(0.0, wake - now))

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)
