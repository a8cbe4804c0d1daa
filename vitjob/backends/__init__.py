"""Backends run rendered Volcano Jobs: ``local`` (processes on this machine) and ``kubernetes``.

``get_backend(name, **options)`` returns one; both implement ``vitjob.backends.base.Backend``.
``pipeline_store(backend)`` returns the ``vitjob.pipeline.model.PipelineStore`` that runs pipelines on it.
Backend modules are imported only when chosen, so the kubernetes client is never loaded for
local runs (and vice versa).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from vitjob.backends.base import Backend
from vitjob.errors import BackendError, UsageError
from vitjob.pipeline.model import PipelineStore

log = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "local", "kubernetes")


def get_backend(name: str | None = None, **options: Any) -> Backend:
    """Return the backend called ``name`` built with the options it accepts.

    ``None``/``"auto"`` picks ``kubernetes`` when a kubeconfig (``kubeconfig=`` option,
    ``$KUBECONFIG`` or ``~/.kube/config``) or an in-cluster service account exists, else ``local``.
    Options a backend does not take (e.g. ``local_root`` for kubernetes) are dropped with a debug
    log, so the CLI can pass everything it parsed. ``None`` values are dropped too.
    """
    from vitjob.kube.client import in_cluster_available, kubeconfig_available

    options = {k: v for k, v in options.items() if v is not None}
    chosen = name or "auto"
    if chosen == "auto":
        has_cluster = bool(options.get("kubeconfig")) or kubeconfig_available() or in_cluster_available()
        chosen = "kubernetes" if has_cluster else "local"
        log.debug("backend auto → %s", chosen)
    if chosen == "kubernetes":
        from vitjob.backends.kubernetes.backend import KubernetesBackend

        return KubernetesBackend(**_accepted(KubernetesBackend, options))
    if chosen == "local":
        try:
            from vitjob.backends.local.backend import LocalBackend
        except ImportError as exc:
            raise BackendError(f"the local backend is not available in this installation ({exc}); "
                               "use --backend kubernetes") from None

        return LocalBackend(**_accepted(LocalBackend, options))
    raise UsageError(f"unknown backend {name!r}: choose one of {', '.join(BACKEND_NAMES)}")


def pipeline_store(backend: Backend) -> PipelineStore:
    """The ``vitjob.pipeline.model.PipelineStore`` of ``backend``: the VitJob store for the Kubernetes
    backend, the file store for the local one."""
    store = backend.pipeline_store()
    if store is not None:
        return store
    raise BackendError(
        f"the {backend.name} backend cannot run pipelines (it does not implement "
        "vitjob.pipeline.model.PipelineStore); use --backend kubernetes or --backend local"
    )


def _accepted(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``options`` that ``cls.__init__`` takes by name (all, if it has ``**kwargs``)."""
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        named = {p.name for p in params}
        return {k: v for k, v in options.items() if k in named or k not in _OTHER_BACKEND_OPTIONS}
    names = {p.name for p in params}
    dropped = sorted(set(options) - names)
    if dropped:
        log.debug("%s ignores options %s", cls.__name__, dropped)
    return {k: v for k, v in options.items() if k in names}


# Options that belong to one backend only; never passed to another one's **kwargs.
_OTHER_BACKEND_OPTIONS = frozenset({"kubeconfig", "context", "namespace", "local_root"})
