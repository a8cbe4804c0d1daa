"""Default container images: the one place their names and tags are defined.

``images/build.sh`` reads these (``python -m vitjob.images``) and the manifests and Helm chart use
the same values, so a build and a render can never disagree on an image name.
"""

from __future__ import annotations

import sys

from vitjob import __version__

REGISTRY = "docker.io/vitjob"
TAG = __version__

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
