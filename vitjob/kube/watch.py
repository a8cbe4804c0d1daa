"""Watches: ``list_watch`` lists, then watches from the list's resourceVersion, resumes after a dropped
stream and re-lists after 410 Gone; ``watch_named`` follows one object by name (``watch_volcano_job``:
a Volcano Job); ``StreamHolder`` lets another thread stop a watch by closing its open stream.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from vitjob.constants import VOLCANO_GROUP, VOLCANO_PLURAL, VOLCANO_VERSION
from vitjob.kube.client import Api, close_quietly, iter_lines, stream_errors
from vitjob.kube.errors import Expired, Op, api_error

log = logging.getLogger(__name__)

DEFAULT_WATCH_TIMEOUT_S = 300  # server-side timeoutSeconds of a watch before it is renewed


class StreamHolder:
    """Keeps the open response of a watch so another thread can close it to stop the watch."""

    def __init__(self) -> None:
        self.resp: Any = None

    def set(self, resp: Any) -> None:
        self.resp = resp

    def close(self) -> None:
        if self.resp is not None:
            close_quietly(self.resp)


def list_watch(
    api: Api,
    op: Op,
    list_fn: Callable[..., Any],
    args: tuple[Any, ...],
    stop: threading.Event,
    holder: StreamHolder | None = None,
    deadline: float | None = None,
    *,
    watch_timeout_s: float = DEFAULT_WATCH_TIMEOUT_S,
    pause_s: float = 0.5,
    **selectors: Any,
) -> Iterator[tuple[str, Any]]:
    """("SYNC", items) after every (re)list, then (event type, object) for each watch event.

    ``list_fn(*args, **selectors)`` is a client list method (e.g. ``api.core.list_namespaced_pod``);
    ``op`` is its list ``Op``. Ends when ``stop`` is set (close ``holder`` to unblock a waiting read) or
    at ``deadline`` (``time.monotonic()``). A broken stream is resumed from the last resourceVersion
    after ``pause_s``; BOOKMARK events only advance it.
    """
    rv: str | None = None
    watch_op = Op("watch", op.plural, op.group, op.namespace)
    while not stop.is_set():
        if rv is None:
            listed = api.call(op, list_fn, *args, **selectors)
            rv = listed["metadata"]["resourceVersion"]
            yield "SYNC", listed["items"]
        timeout = watch_timeout_s
        if deadline is not None:
            timeout = max(1, min(timeout, int(deadline - time.monotonic()) + 1))
        try:
            resp = api.call(
                watch_op,
                list_fn,
                *args,
                stream=True,
                read_timeout=timeout + 30.0,
                watch=True,
                resource_version=rv,
                timeout_seconds=timeout,
                allow_watch_bookmarks=True,
                **selectors,
            )
        except Expired:
            log.debug("%s: HTTP 410 for resourceVersion %s; re-listing", watch_op.what(), rv)
            rv = None
            continue
        if holder is not None:
            holder.set(resp)
            if stop.is_set():  # stopped while the watch was opening: close() missed this stream
                close_quietly(resp)
                return
        try:
            for line in iter_lines(resp):
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        raise Expired()
                    raise api_error(watch_op, obj.get("code") or 500, json.dumps(obj), api.server)
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                if event.get("type") != "BOOKMARK":
                    yield event["type"], obj
                if stop.is_set():
                    return
        except Expired:
            log.debug("%s: resourceVersion %s expired (410 Gone); re-listing", watch_op.what(), rv)
            rv = None
        except stream_errors() as exc:
            if stop.is_set():
                return
            log.debug("%s: stream interrupted (%s); resuming from %s", watch_op.what(), exc, rv)
            time.sleep(pause_s)
        if deadline is not None and time.monotonic() >= deadline:
            return


def watch_named(
    api: Api,
    op: Op,
    list_fn: Callable[..., Any],
    args: tuple[Any, ...],
    name: str,
    stop: threading.Event,
    holder: StreamHolder | None = None,
    deadline: float | None = None,
    *,
    watch_timeout_s: float = DEFAULT_WATCH_TIMEOUT_S,
    pause_s: float = 0.5,
) -> Iterator[dict[str, Any] | None]:
    """The object ``name`` each time it changes (first: as listed); None when it is (or was) absent."""
    for kind, obj in list_watch(
        api,
        op,
        list_fn,
        args,
        stop,
        holder,
        deadline,
        watch_timeout_s=watch_timeout_s,
        pause_s=pause_s,
        field_selector=f"metadata.name={name}",
    ):
        if kind == "SYNC":
            yield obj[0] if obj else None
        elif kind == "DELETED":
            yield None
        else:
            yield obj


def watch_volcano_job(
    api: Api,
    namespace: str,
    name: str,
    stop: threading.Event,
    holder: StreamHolder | None = None,
    deadline: float | None = None,
    *,
    watch_timeout_s: float = DEFAULT_WATCH_TIMEOUT_S,
    pause_s: float = 0.5,
) -> Iterator[dict[str, Any] | None]:
    """The Volcano Job ``namespace/name`` each time it changes; None when it is (or was) absent."""
    return watch_named(
        api,
        Op("list", VOLCANO_PLURAL, VOLCANO_GROUP, namespace),
        api.custom.list_namespaced_custom_object,
        (VOLCANO_GROUP, VOLCANO_VERSION, namespace, VOLCANO_PLURAL),
        name,
        stop,
        holder,
        deadline,
        watch_timeout_s=watch_timeout_s,
        pause_s=pause_s,
    )
