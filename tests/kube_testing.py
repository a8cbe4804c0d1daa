"""Helpers shared by the tests that run vitjob against the FAKE Kubernetes API (fake_kube_api.py).

``fake_cluster`` starts the fake with Volcano's CRDs (skipping the test, with the reason, when the
CRD folder is absent) and the chart's VitJob CRD, an Open ``default`` queue and two 8-NPU nodes;
``volcano_job`` builds a minimal valid Volcano Job the way ``vitjob render`` would label it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fake_kube_api import FakeKubeAPI

import vitjob.backends.kubernetes.backend as kube
from vitjob.kube.client import RetryPolicy
from vitjob.kube.logs import FollowOptions

_SHARED_CRDS = Path(__file__).resolve().parents[2] / "shared" / "crds"
VITJOB_CRD_FILE = Path(__file__).resolve().parents[1] / "charts/vitjob/crds/vitjob.io_vitjobs.yaml"


def crd_dir() -> Path:
    """Volcano's CRD YAMLs: ``$VITJOB_CRD`` when it is a directory, else ``../shared/crds``."""
    env = os.environ.get("VITJOB_CRD")
    return Path(env) if env and Path(env).is_dir() else _SHARED_CRDS


@contextmanager
def fake_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, volcano_installed: bool = True, nodes: int = 2
) -> Iterator[FakeKubeAPI]:
    crds = crd_dir()
    if not (crds / "batch.volcano.sh_jobs.yaml").is_file():
        pytest.skip(
            f"Volcano CRDs not found in {crds}: set VITJOB_CRD to a directory holding "
            "batch.volcano.sh_jobs.yaml (from volcano-sh/volcano config/crd/volcano/bases)"
        )
    fake = FakeKubeAPI(crds, volcano_installed=volcano_installed).start()
    try:
        fake.install_crd(vitjob_crd())
        if volcano_installed:
            fake.add_queue("default")
        for i in range(nodes):
            fake.add_node(f"node-{i}", {"huawei.com/Ascend910": "8", "cpu": "192", "memory": "1536Gi"})
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        # Fast retries and short follow grace periods: the tests stay in seconds.
        monkeypatch.setattr(kube, "DEFAULT_RETRY", RetryPolicy(attempts=3, backoff_s=0.01))
        monkeypatch.setattr(kube, "DEFAULT_FOLLOW", FollowOptions(end_grace_s=3.0, pod_recheck_s=0.5))
        yield fake
    finally:
        fake.stop()


def volcano_job(
    name: str,
    *,
    replicas: int = 2,
    cards: int = 8,
    namespace: str | None = None,
    queue: str | None = None,
    stage: str = "train",
    hw: str = "ascend",
) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/managed-by": "vitjob",
        "app.kubernetes.io/component": stage,
        "vitjob.io/hw": hw,
        "vitjob.io/cards": str(replicas * cards),
    }
    container: dict[str, Any] = {"name": "vitjob", "image": "vitjob:test", "command": ["vitjob", "launch"]}
    if cards:
        container["resources"] = {
            "limits": {"huawei.com/Ascend910": str(cards)},
            "requests": {"huawei.com/Ascend910": str(cards)},
        }
    job: dict[str, Any] = {
        "apiVersion": "batch.volcano.sh/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "schedulerName": "volcano",
            "minAvailable": replicas,
            "maxRetry": 3,
            "tasks": [
                {
                    "name": "worker",
                    "replicas": replicas,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"restartPolicy": "OnFailure", "containers": [container]},
                    },
                }
            ],
        },
    }
    if namespace:
        job["metadata"]["namespace"] = namespace
    if queue:
        job["spec"]["queue"] = queue
    return job


class Collector:
    """Consume an iterator of lines in a thread (e.g. ``backend.logs(follow=True)``)."""

    def __init__(self, make: Callable[[], Iterator[str]]):
        self.lines: list[str] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(make,), daemon=True)
        self.thread.start()

    def _run(self, make: Callable[[], Iterator[str]]) -> None:
        try:
            for line in make():
                self.lines.append(line)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout: float = 20.0) -> list[str]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still following after {timeout}s; got {self.lines[-5:]}"
        if self.error:
            raise self.error
        return self.lines


def pipeline_definition(name: str, then: tuple[str, ...] = ("eval", "export", "infer310"), **spec: Any):
    """A ``PipelineDefinition`` of small CPU jobs (``vitjob submit --hw cpu --then …`` would render)."""
    from vitjob.api.spec import JobSpec
    from vitjob.pipeline.define import define_pipeline

    return define_pipeline(JobSpec(name=name, hw="cpu", cards=1, **spec), then)


def seed_pipeline(fake: FakeKubeAPI, definition: Any, namespace: str = "default") -> dict[str, Any]:
    """Put a pipeline on the fake cluster the way ``submit --then`` does (the VitJob, the first stage's
    job owned by it, then Running with that stage Created), without the client round trips: for
    tests of many pipelines."""
    from vitjob.pipeline.define import stage_objects
    from vitjob.pipeline.model import PipelineRecord
    from vitjob.render.manifests import render_vitjob

    vitjob = render_vitjob(
        name=definition.name,
        namespace=namespace,
        part_of=definition.part_of,
        spec=definition.spec,
        submitting=True,
    )
    first = definition.stages[0]
    created = fake.create("vitjob.io", "vitjobs", vitjob, namespace)
    owner = {"apiVersion": "vitjob.io/v1alpha1", "kind": "VitJob", "name": definition.name,
             "uid": created["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    record = PipelineRecord(definition.name, namespace, definition.part_of, definition.stages, {},
                            spec=definition.spec)
    for obj in stage_objects(record, first):
        obj["metadata"]["namespace"] = namespace
        obj["metadata"]["ownerReferences"] = [owner]
        fake.create("batch.volcano.sh", "jobs", obj, namespace)

    def started(obj: dict[str, Any]) -> None:  # in this order, as submit does: see create_pipeline
        obj["status"] = {
            "phase": "Running",
            "stage": first,
            "stages": [{"name": first, "job": definition.job_name(first), "state": "Created",
                        "phase": "Pending"}],
        }

    return fake.update("vitjob.io", "vitjobs", definition.name, namespace, started)


def vitjob_crd() -> dict[str, Any]:
    """The VitJob CRD as the chart ships it (``charts/vitjob/crds``)."""
    import yaml

    return yaml.safe_load(VITJOB_CRD_FILE.read_text())
