"""Pod start-up: ``vitjob launch`` turns a pod's environment into a running data-parallel job.

- ``ranktable``: the HCCL rank table (version 1.0) from per-pod device allocations (pure functions).
- ``rendezvous``: how the pods of a job gather each other's pieces (pod 0 serves, all pods ask).
- ``addresses``: IP literals for MindSpore and the rendezvous (own pod IP, pod 0's name resolved).
- ``podenv``: what Volcano gives a pod (task index, peer hosts) and the Ascend allocation it reads.
- ``supervisor``: one child process per card, prefixed output, failure propagation, signal forwarding.
- ``entrypoint``: the ``vitjob launch`` command tying them together.
"""
