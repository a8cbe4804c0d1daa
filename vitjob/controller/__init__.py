"""The in-cluster pipeline controller (``vitjob controller``): a watch-fed cache of VitJobs and their
stage jobs (``cache``), the reconcile loop with leader election (``loop``) and its health endpoints
(``health``). Built on ``vitjob.kube`` and ``vitjob.pipeline``, never on the CLI."""
