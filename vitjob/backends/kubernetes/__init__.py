"""The Kubernetes backend: Volcano Jobs through the Kubernetes API (``backend``: submit plans, status
and its diagnosis, logs, wait, cancel, delete, list) and pipelines stored as VitJob resources
(``store``). Built on the client layer ``vitjob.kube``."""
