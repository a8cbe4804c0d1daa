"""Turning a ``JobSpec`` into Kubernetes objects: the Jinja2 templates of ``manifests/`` with the quoting
guard (every user string reaches YAML through ``q``/``num``/``block``) in ``manifests``, and offline
validation of rendered objects against the Kubernetes and Volcano schemas in ``validate``."""
