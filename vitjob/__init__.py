"""vitjob: run the MindSpore ViT-B/16 CIFAR-10 workflow on Kubernetes/Volcano and locally.

The folders, each with one responsibility (README.md "Layout" says more):
- ``vitjob.api``: the job spec (model, checks, values parsing), status types, and the schemas from them.
- ``vitjob.render``: a spec → Kubernetes objects (templates in ``manifests/``, the quoting guard) and
  their offline validation against the Volcano CRD and Kubernetes schemas.
- ``vitjob.pipeline``: pipeline records, the pure reconcile step, the runner, the store protocol.
- ``vitjob.kube``: the Kubernetes client layer (requests, errors, watches, logs, leases, work queue).
- ``vitjob.backends``: where jobs run (``local`` processes, ``kubernetes``) behind one interface with
  submit plans (dry run); ``vitjob.client.Client`` (``vitjob.Client``) is the public API over them.
- ``vitjob.controller``: the in-cluster pipeline controller, built on ``kube`` and ``pipeline``.
- ``vitjob.cli``: the ``vitjob`` command line; parses, calls the ``Client``, prints.
- ``vitjob.vit``, ``vitjob.launch``, ``vitjob.progress``, ``vitjob.infer310``: what runs inside a pod.
- ``vitjob.constants``, ``vitjob.errors``, ``vitjob.images``, ``vitjob.logsetup``, ``vitjob.version``:
  shared names, the exception hierarchy, image names, logging set-up, the version.
- ``vitjob.generate``: the one generator of the committed generated files.

Heavy dependencies (MindSpore, kubernetes) are imported inside the functions that need them, so
``import vitjob`` and commands such as ``vitjob render`` stay fast.
"""

from importlib import import_module
from typing import Any

from vitjob.version import __version__

__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> Any:
    """``vitjob.Client``, imported on first use so that ``import vitjob`` (every pod) stays light."""
    if name == "Client":  # by name: every module imports this package, which must import none of them
        return import_module("vitjob.client").Client
    raise AttributeError(f"module 'vitjob' has no attribute {name!r}")
