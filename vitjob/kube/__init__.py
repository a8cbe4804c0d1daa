"""The Kubernetes client layer every vitjob module that talks to a cluster goes through.

One module per concept; nothing here knows about backends, pipelines, the controller or the CLI
(``vitjob.kube`` imports only ``vitjob.errors``, ``vitjob.constants`` and the ``kubernetes`` client):

- ``vitjob.kube.errors``: ``Op`` (what a request does, for messages) and the ONE mapping from API
  answers and transport failures to ``vitjob.errors`` exceptions;
- ``vitjob.kube.client``: ``Api`` (``.call(op, fn, *args, **kw)`` with retries and backoff, ``.core``,
  ``.custom``, ``.ext``, ``.pod_log``), ``RetryPolicy``, ``connect`` (kubeconfig / in-cluster), and
  helpers for streamed responses;
- ``vitjob.kube.kinds``: API coordinates (Volcano, Kubernetes labels), the table of object kinds vitjob
  creates with their create/replace/read/delete calls, Volcano phase text, pod accessors, quantities,
  a Volcano Job read or listed, an object created;
- ``vitjob.kube.watch``: ``list_watch`` (list, then watch from the resourceVersion, re-list on
  410 Gone), ``watch_named`` (``watch_volcano_job``) and ``StreamHolder`` (stop a watch from another
  thread);
- ``vitjob.kube.logs``: pod log timestamps, ``read_log`` and ``JobFollower`` (``logs -f`` of every pod
  of a Volcano Job, nothing lost or repeated across reconnects and restarts).

``kubernetes`` and ``urllib3`` are imported lazily, inside functions, so ``import vitjob`` stays fast.
"""
