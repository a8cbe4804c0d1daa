"""``vitjob.Client`` and the submit plan behind ``--dry-run``: a dry run plans without one request to the
cluster and prints what submit would check and request; submit executes that same plan; a pipeline's
later stages are rendered from its stored spec, not stored. Against the fake API server (a real HTTP
server speaking the Kubernetes API), and the local backend."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from kube_testing import crd_dir, fake_cluster

from vitjob import Client
from vitjob.api.spec import JobSpec
from vitjob.backends.base import SubmitPlan, SubmitResult
from vitjob.cli import main
from vitjob.errors import UsageError
from vitjob.render.manifests import render_objects


@pytest.fixture
def fake(tmp_path, monkeypatch):
    with fake_cluster(tmp_path, monkeypatch) as api:
        yield api


def _spec(**values) -> JobSpec:
    return JobSpec(**{"name": "vit", "hw": "cpu", "cards": 1, **values})


def test_a_dry_run_plans_without_a_request_and_submit_executes_the_plan(fake) -> None:
    client = Client("kubernetes")
    plan = client.submit(_spec(), then=["eval"], dry_run=True)
    assert isinstance(plan, SubmitPlan)
    assert fake.requests == [], "a dry run must not reach the cluster"
    assert plan.backend == "kubernetes" and plan.job_name == "vit-train" and not plan.foreground
    assert plan.pipeline is not None and plan.pipeline.stages == ("train", "eval")
    names = [(o["kind"], o["metadata"]["name"]) for o in plan.documents()]
    assert names == [("Job", "vit-train"), ("Job", "vit-eval")]
    assert plan.requests[0].startswith("create VitJob vit in the context's namespace")
    assert plan.requests[1] == "create Job vit-train in the context's namespace"
    assert any("VitJobs" in check for check in plan.checks)

    result = client.submit(_spec(), then=["eval"])
    assert isinstance(result, SubmitResult) and result.status.name == "vit-train"
    posts = [r.path for r in fake.requests_matching("POST", "")]
    vitjob_post = next(i for i, p in enumerate(posts) if p.endswith("/vitjobs"))
    job_post = next(i for i, p in enumerate(posts) if p.endswith("/jobs"))
    assert vitjob_post < job_post, "the VitJob is stored before its first stage is created (plan order)"
    stored = fake.get("vitjob.io", "vitjobs", "vit", "default")
    assert stored["spec"]["then"] == ["eval"] and stored["spec"]["hw"] == "cpu"
    assert fake.get("batch.volcano.sh", "jobs", "vit-eval", "default") is None  # rendered when it starts
    assert "vitjob pipeline run vit --wait   # advance it from this machine" in result.next_steps


def test_cli_dry_run_prints_the_objects_on_stdout_and_the_plan_on_stderr(fake, capsys) -> None:
    code = main(["submit", "--name", "vit", "--hw", "cpu", "--backend", "kubernetes", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0 and fake.requests == []
    expected = render_objects(_spec())
    for obj in expected:  # no -n: the objects go to the context's namespace
        obj["metadata"].pop("namespace", None)
    assert [d for d in yaml.safe_load_all(out) if d] == expected
    assert (
        "# dry run: submit would create job vit-train in the backend's namespace (kubernetes backend)"
        in err.splitlines()
    )
    assert "#   1. create Job vit-train in the context's namespace" in err.splitlines()


def test_a_dry_run_refuses_an_object_the_cluster_would_refuse(fake, capsys, tmp_path: Path) -> None:
    job = render_objects(_spec())[-1]
    job["spec"]["tasks"][0]["replicas"] = "two"
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job))
    code = main(["submit", "--manifest", str(manifest), "--backend", "kubernetes", "--dry-run",
                 "--crd", str(crd_dir())])
    assert code != 0 and fake.requests == []
    assert "replicas" in capsys.readouterr().err


def test_the_local_plan_runs_in_the_foreground_and_plans_touch_nothing(tmp_path: Path) -> None:
    root = tmp_path / "local"
    client = Client("local", local_root=root)
    plan = client.submit(_spec(), then=["eval", "export"], dry_run=True)
    assert plan.backend == "local" and plan.foreground
    assert plan.requests[0] == f"write {root / 'pipelines' / 'vit'}.json (the pipeline's spec)"
    later = "then each later stage (eval, export) the same way, rendered from that spec when it starts"
    assert later in plan.requests
    assert not root.exists(), "planning wrote something"


def test_submit_arguments_are_checked_before_anything_happens(tmp_path: Path) -> None:
    client = Client("local", local_root=tmp_path)
    with pytest.raises(UsageError, match="must follow train in the order"):
        client.submit(_spec(), then=["export", "eval"], dry_run=True)
    with pytest.raises(UsageError, match="not both or neither"):
        client.submit(_spec(), objects=render_objects(_spec()), dry_run=True)
    with pytest.raises(UsageError, match="cannot be combined with --manifest"):
        client.submit(objects=render_objects(_spec()), then=["eval"], dry_run=True)
    assert not list(tmp_path.iterdir())


def test_a_stage_is_rendered_from_the_stored_spec_when_it_starts(fake) -> None:
    """One pipeline model: the eval stage created by `pipeline run` is what the spec renders now."""
    client = Client("kubernetes")
    client.submit(_spec(epochs=2), then=["eval"])
    fake.set_job_phase("default", "vit-train", "Completed")
    record = client.run_pipeline("vit", wait=False)
    assert record.progress["eval"].value == "Created"
    created = fake.get("batch.volcano.sh", "jobs", "vit-eval", "default")
    rendered = render_objects(dataclasses.replace(_spec(epochs=2), stage="eval"))[-1]
    assert created["spec"]["tasks"] == rendered["spec"]["tasks"]
    assert created["metadata"]["ownerReferences"][0]["name"] == "vit"


def test_a_spec_left_in_the_default_namespace_goes_to_the_clients(fake) -> None:
    plan = Client("kubernetes", namespace="ml").submit(_spec(), dry_run=True)
    assert plan.namespace == "ml" and plan.requests == ("create Job vit-train in ml",)
    assert all("namespace" not in o["metadata"] for o in plan.objects)  # the backend's, at submit
    chosen = Client("kubernetes", namespace="ml").submit(_spec(namespace="team-a"), dry_run=True)
    assert chosen.namespace == "team-a" and chosen.objects[-1]["metadata"]["namespace"] == "team-a"
    assert fake.requests == []
