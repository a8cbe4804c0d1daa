"""The README's snippet "A real cluster on this machine" runs as written against the dev cluster: the
data set, the hostPath volumes and their claims, ``vitjob submit`` of a pipeline whose train stage runs
on the real node, and ``vitjob logs -f`` until it ends. Only its last line, ``./dev.sh cluster down``, is
left out: the cluster is shared by the whole e2e tier."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cluster_testing import REPO, Kube

README = REPO / "README.md"
SECTION = "## A real cluster on this machine"


def cluster_snippet() -> list[str]:
    """The first bash block of the README's section on the dev cluster, line by line."""
    section = README.read_text(encoding="utf-8").split(SECTION, 1)[1]
    return section.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()


def clean(kube: Kube) -> None:
    """What the snippet creates in the default namespace and the cluster (it names them itself)."""
    for args in (
        ("delete", "vitjob", "vit", "-n", "default"),
        ("delete", "jobs.batch.volcano.sh", *(f"vit-{s}" for s in ("train", "eval", "export", "infer310")),
         "-n", "default"),
        ("delete", "pvc", "vitjob-data", "vitjob-output", "-n", "default"),
        ("delete", "pv", "digits", "out"),
    ):
        kube.kubectl(*args, "--ignore-not-found", "--wait=true", check=False, timeout=120)


def test_the_readme_cluster_snippet_runs_as_written(kube: Kube, namespace: str, real_node: str) -> None:
    lines = cluster_snippet()
    assert lines[-1].startswith("./dev.sh cluster down"), lines[-1]
    script = "\n".join(lines[:-1])
    env = kube.env(PATH=f"{kube.bins}:{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin")
    clean(kube)
    try:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env, text=True,
                              capture_output=True, timeout=780)
        assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
        job = kube.get("jobs.batch.volcano.sh", "vit-train", "default")
        assert job["status"]["state"]["phase"] == "Completed", job["status"]
        assert "warning:" not in proc.stderr, proc.stderr  # the snippet makes everything submit checks
    finally:
        clean(kube)
