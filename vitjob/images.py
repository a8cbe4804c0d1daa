"""Default container images: the one place their names, tags and user are defined.

``images/build.sh`` reads these (``python -m vitjob.images``) and the manifests and Helm chart use
the same values, so a build and a render can never disagree on an image name. ``USER_ID`` and
``HOME_DIR`` are the images' non-root user ``vitjob`` (``images/versions.env`` VITJOB_UID, which
build.sh passes to every Dockerfile; ``tests/test_pod_security.py`` checks that they agree): the pods
run as that user, with an emptyDir over its home directory.
"""

from __future__ import annotations

import sys

from vitjob.version import __version__

REGISTRY = "docker.io/vitjob"
TAG = __version__
# UID and GID of the images' user `vitjob` (USER VITJOB_UID:VITJOB_UID), and its home = WORKDIR.
USER_ID = 1000
HOME_DIR = "/home/vitjob"

# hardware kind -> image repository (under REGISTRY)
REPOSITORIES: dict[str, str] = {
    "ascend": "vitjob-ascend",
    "gpu": "vitjob-gpu",
    "cpu": "vitjob-cpu",
    "ascend310": "vitjob-ascend310-infer",
}


def default_image(kind: str, registry: str = REGISTRY, tag: str = TAG) -> str:
    """Full image reference for a hardware kind (``ascend``, ``gpu``, ``cpu``, ``ascend310``)."""
    try:
        repo = REPOSITORIES[kind]
    except KeyError:
        known = ", ".join(sorted(REPOSITORIES))
        raise ValueError(f"no default image for {kind!r}; known kinds: {known}") from None
    return f"{registry}/{repo}:{tag}"


def main(argv: list[str]) -> int:
    """Print ``KIND=IMAGE`` lines (for shell scripts): ``python -m vitjob.images [REGISTRY [TAG]]``."""
    registry = argv[0] if argv else REGISTRY
    tag = argv[1] if len(argv) > 1 else TAG
    for kind in REPOSITORIES:
        print(f"{kind}={default_image(kind, registry, tag)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
