"""Backends run rendered Volcano Jobs: ``local`` (processes on this machine) and ``kubernetes``.

``get_backend(name, **options)`` returns one; both implement ``vitjob.backends.base.Backend``.
"""
