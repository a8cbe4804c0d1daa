"""The local backend: a Volcano Job's pods as processes on this machine (``backend``: the Backend API
and job state files; ``network``: per-job network namespaces so pods find each other by name;
``store``: pipelines as JSON files)."""
