"""The retrying Kubernetes API client: ``Api`` (every request goes through ``Api.call``), ``RetryPolicy``,
``connect`` (``--kubeconfig``/``--context``, the context's namespace, or the in-cluster service account),
and the helpers for streamed responses (``iter_lines``, ``close_quietly``).

``Api.call`` retries 5xx/429 answers, timeouts and dropped connections with backoff and maps the final
failure through ``vitjob.kube.errors``; it returns parsed JSON (``_preload_content=False``: the client's
model classes are never built).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitjob.errors import ClusterConfigError, JobNotFoundError, ResourceNotFoundError
from vitjob.kube.errors import RETRYABLE_STATUS, Expired, Op, api_error, transport_error

log = logging.getLogger(__name__)

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# Told of each answer an ``Api`` gets: the request and its HTTP status code as text.
Observer = Callable[[Op, str], None]


@dataclass
class RetryPolicy:
    attempts: int = 4  # total tries for 5xx / timeouts / connection errors
    backoff_s: float = 0.5  # first delay; doubles each retry
    max_backoff_s: float = 8.0


class Api:
    """The kubernetes client objects plus ``call``: every request goes through it."""

    def __init__(self, api_client: Any, server: str, retry: RetryPolicy, timeout_s: float):
        from kubernetes import client

        self.client = api_client
        self.server = server
        self.retry = retry
        self.timeout = (min(10.0, timeout_s), timeout_s)  # (connect, read)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.ext = client.ApiextensionsV1Api(api_client)
        self.observer: Observer | None = None

    def observed(self, observer: Observer) -> Api:
        """A copy of this client (same connection pool) that tells ``observer`` of each answer it gets:
        the request's ``Op`` and the HTTP status code as text (``<error>`` when no answer came). The
        controller's metrics count its requests so; this client itself is left as it was."""
        copied = copy.copy(self)
        copied.observer = observer
        return copied

    def _observe(self, op: Op, code: str) -> None:
        if self.observer is not None:
            self.observer(op, code)

    def call(
        self,
        op: Op,
        fn: Callable[..., Any],
        *args: Any,
        stream: bool = False,
        read_timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn`` with retries; return parsed JSON (or the open response when ``stream``).

        Raises a ``vitjob.errors`` exception (``vitjob.kube.errors.api_error``/``transport_error``), or
        ``Expired`` when a watch request (``watch=True``) itself is refused with 410 Gone.
        """
        import urllib3
        from kubernetes.client.exceptions import ApiException

        kwargs["_preload_content"] = False
        kwargs.setdefault("_request_timeout", (self.timeout[0], read_timeout or self.timeout[1]))
        delay = self.retry.backoff_s
        seen = dataclasses.replace(op, verb="watch") if kwargs.get("watch") else op
        for attempt in range(1, self.retry.attempts + 1):
            try:
                resp = fn(*args, **kwargs)
                self._observe(seen, str(getattr(resp, "status", 200)))
                if stream:
                    return resp
                try:
                    data = resp.data
                finally:
                    resp.release_conn()
                return json.loads(data) if data else {}
            except ApiException as exc:
                self._observe(seen, str(exc.status or "<error>"))
                if exc.status == 410 and kwargs.get("watch"):
                    # The watch request itself refused as Gone (resourceVersion older than the API
                    # server's watch cache): the caller re-lists, as after an ERROR 410 event.
                    raise Expired() from None
                if exc.status not in RETRYABLE_STATUS or attempt == self.retry.attempts:
                    raise api_error(op, exc.status or 0, exc.body, self.server, attempt) from None
                log.debug("%s: HTTP %s, retrying in %.1fs", op.what(), exc.status, delay)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                self._observe(seen, "<error>")
                if attempt == self.retry.attempts:
                    raise transport_error(op, exc, self.server, attempt) from None
                log.debug("%s: %s, retrying in %.1fs", op.what(), type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, self.retry.max_backoff_s)
        raise AssertionError("unreachable")  # pragma: no cover

    def get_or_none(
        self, op: Op, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any] | None:
        """``call``, but None when the object does not exist (404)."""
        try:
            found: dict[str, Any] = self.call(op, fn, *args, **kwargs)
            return found
        except (ResourceNotFoundError, JobNotFoundError):
            return None

    def pod_log(
        self,
        op: Op,
        name: str,
        namespace: str,
        *,
        container: str,
        follow: bool = False,
        previous: bool = False,
        tail_lines: int | None = None,
        since_seconds: int | None = None,
        since_time: str | None = None,
        read_timeout: float | None = None,
    ) -> Any:
        """Open ``GET …/pods/NAME/log?timestamps=true``; returns the raw urllib3 response.

        ``CoreV1Api.read_namespaced_pod_log`` has no ``sinceTime`` parameter, which reconnecting
        without losing lines needs, so the request is built with the client's own serializer.
        """
        from kubernetes.client.exceptions import ApiException

        query: list[tuple[str, Any]] = [("container", container), ("timestamps", True)]
        if follow:
            query.append(("follow", True))
        if previous:
            query.append(("previous", True))
        if tail_lines is not None:
            query.append(("tailLines", tail_lines))
        if since_time is not None:
            query.append(("sinceTime", since_time))
        elif since_seconds is not None:
            query.append(("sinceSeconds", since_seconds))

        def request(_preload_content: bool = False, _request_timeout: Any = None) -> Any:
            req = self.client.param_serialize(
                method="GET",
                resource_path="/api/v1/namespaces/{namespace}/pods/{name}/log",
                path_params={"namespace": namespace, "name": name},
                query_params=query,
                # What kubectl sends: the API server answers a bare text/plain with 406 NotAcceptable
                # (it negotiates the log subresource like any other), then streams plain text anyway.
                header_params={"Accept": "application/json, */*"},
                auth_settings=["BearerToken"],
            )
            resp = self.client.call_api(*req, _request_timeout=_request_timeout)
            if not 200 <= resp.status <= 299:
                resp.read()
                raise ApiException.from_response(http_resp=resp, body=None, data=None)
            return resp.response

        return self.call(op, request, stream=True, read_timeout=read_timeout)


# ------------------------------------------------------------------------------------ connecting
def kubeconfig_available() -> bool:
    """A kubeconfig file exists ($KUBECONFIG entries or ~/.kube/config)."""
    env = os.environ.get("KUBECONFIG")
    paths = env.split(os.pathsep) if env else [os.path.expanduser("~/.kube/config")]
    return any(p and Path(p).expanduser().is_file() for p in paths)


def in_cluster_available() -> bool:
    """Running in a pod with a service-account token."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SA_DIR / "token").is_file()


def connect(
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    retry: RetryPolicy,
    timeout_s: float,
) -> tuple[Api, str]:
    """An ``Api`` from the kubeconfig (``kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``) or, without
    one, the in-cluster service account; and the namespace to use (``namespace``, else the context's or
    the service account's, else ``default``). Raises ``ClusterConfigError``."""
    from kubernetes import client, config

    cfg = client.Configuration()
    # $KUBECONFIG is read now: the client reads it once, at import time.
    path = kubeconfig or os.environ.get("KUBECONFIG") or None
    if path or kubeconfig_available():
        try:
            config.load_kube_config(
                config_file=path,
                context=context,
                client_configuration=cfg,
                persist_config=False,
            )
            contexts, active = config.list_kube_config_contexts(config_file=path)
        except (config.ConfigException, OSError, ValueError) as exc:
            raise ClusterConfigError(
                f"cannot use the kubeconfig {path or os.environ.get('KUBECONFIG') or '~/.kube/config'}"
                f": {exc}; check --kubeconfig/--context (`kubectl config get-contexts`)"
            ) from None
        chosen = next((c for c in contexts if c["name"] == context), active)
        if not namespace:
            namespace = (chosen.get("context") or {}).get("namespace") or "default"
    elif in_cluster_available():
        config.load_incluster_config(client_configuration=cfg)
        if not namespace:
            ns_file = SA_DIR / "namespace"
            namespace = ns_file.read_text().strip() if ns_file.exists() else "default"
    else:
        raise ClusterConfigError(
            "no Kubernetes configuration found: no kubeconfig "
            "(--kubeconfig, $KUBECONFIG, ~/.kube/config) "
            "and not running in a pod; pass --kubeconfig, or use --backend local"
        )
    cfg.retries = 0  # retries are ours (Api.call), with backoff and a clear final message
    cfg.connection_pool_maxsize = 64  # many concurrent watches/log streams when following jobs
    log.debug("using API server %s, namespace %s", cfg.host, namespace)
    return Api(client.ApiClient(cfg), cfg.host, retry, timeout_s), namespace


# -------------------------------------------------------------------------------- streamed answers
def iter_lines(resp: Any) -> Iterator[str]:
    """Lines of a streamed response as they arrive (a partial last line is kept until complete)."""
    buf = b""
    try:
        for chunk in resp.stream(65536, decode_content=False):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
        if buf:
            yield buf.decode(errors="replace")
    finally:
        resp.close()
        resp.release_conn()


def close_quietly(resp: Any) -> None:
    """Unblock a thread reading ``resp`` (urllib3 ≥ 2.3 ``shutdown``), then close it."""
    try:
        if hasattr(resp, "shutdown"):
            resp.shutdown()
        resp.close()
    except Exception:  # closing a stream another thread reads may raise anything; it is ending anyway
        log.debug("closing a stream raised", exc_info=True)


def stream_errors() -> tuple[type[Exception], ...]:
    """What reading a broken stream raises (for ``except``): OSError, ValueError, urllib3's HTTPError."""
    import urllib3

    return (OSError, ValueError, urllib3.exceptions.HTTPError)
