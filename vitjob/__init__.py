"""vitjob: run the MindSpore ViT-B/16 CIFAR-10 workflow on Kubernetes/Volcano and locally.

Package map (one module per concept):
- ``vitjob.vit``: the training code every pod runs (model, data, npz conversion, train/eval/export).
- ``vitjob.spec``, ``vitjob.render``, ``vitjob.validate``: the typed job spec, rendering of the
  templates in ``manifests/``, and validation against the Volcano CRD and Kubernetes schemas.
- ``vitjob.constants``, ``vitjob.images``: every shared name (labels, env vars, ports) and image name.
- ``vitjob.launch``: pod start-up (rank tables, rendezvous, dynamic cluster, one process per card).
- ``vitjob.backends``: where jobs run (``local`` processes, ``kubernetes``) behind one interface.
- ``vitjob.pipeline``, ``vitjob.controller``: follow-up stages as a reconcile loop, in the cluster or here.
- ``vitjob.infer310``, ``vitjob.plot``: the Ascend-310 stage's ``.bin`` contract; training curves.
- ``vitjob.errors``: the exception hierarchy every command maps to a message and an exit code.
- ``vitjob.cli``: the ``vitjob`` command line; each sub-module registers the commands of one concept.

Heavy dependencies (MindSpore, kubernetes) are imported inside the functions that need them, so
``import vitjob`` and commands such as ``vitjob render`` stay fast.
"""

__version__ = "0.1.0"
