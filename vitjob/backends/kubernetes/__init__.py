"""The Kubernetes backend: Volcano Jobs through the Kubernetes API, split by concern (``status``,
``reads``, ``keptlogs``, ``lifecycle``, ``preflight``, ``submit``, ``why``, ``logs``), composed by
``backend.KubernetesBackend``; pipelines stored as VitJob resources (``store``). Built on the client
layer ``vitjob.kube``."""
