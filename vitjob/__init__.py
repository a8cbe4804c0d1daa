"""vitjob: run the MindSpore ViT-B/16 CIFAR-10 workflow on Kubernetes/Volcano and locally.

Package map (one module per concept):
- ``vitjob.errors``: the exception hierarchy every command maps to a message and an exit code.
- ``vitjob.vit``: the training code every pod runs (model, data, npz conversion, train/eval/export).
- ``vitjob.cli``: the ``vitjob`` command line; each sub-module registers the commands of one concept.

Heavy dependencies (MindSpore, kubernetes) are imported inside the functions that need them, so
``import vitjob`` and commands such as ``vitjob render`` stay fast.
"""

__version__ = "0.1.0"
