"""`submit --then` stores a VitJob, advanced by `vitjob controller` processes holding only the chart's RBAC.

Each controller runs with a ServiceAccount token (TokenRequest API) of the ServiceAccount that
`vitjob controller --render` (the chart's controller objects) creates, bound to exactly that Role,
so a rule missing from the Role fails here as it would in a cluster. What users see of the VitJob is
read with kubectl: its printer columns, its status subresource, its Events, and that deleting it
garbage-collects its Volcano Jobs (kube-controller-manager's garbage collector).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from cluster_testing import Kube, Vitjob, wait_for

STAGES = ("train", "eval", "export", "infer310")


def sa_kubeconfig(kube: Kube, namespace: str, out: Path, account: str = "vitjob-controller") -> Path:
    """A kubeconfig that authenticates as a ServiceAccount (a bound token; default: the controller's)."""
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    token = kube.kubectl(
        "create", "token", account, "-n", namespace, "--duration=2h"
    ).stdout.strip()
    ca = cluster.get("certificate-authority-data")
    entry = {"server": cluster["server"]}
    if ca:
        entry["certificate-authority-data"] = ca
    else:
        entry["certificate-authority"] = cluster["certificate-authority"]
    out.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "dev", "cluster": entry}],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [
                    {"name": "sa", "context": {"cluster": "dev", "user": "sa", "namespace": namespace}}
                ],
                "current-context": "sa",
            }
        )
    )
    return out


def start_controller(kubeconfig: Path, namespace: str, identity: str, log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "vitjob"
    return subprocess.Popen(
        [
            str(exe),
            "controller",
            "-n",
            namespace,
            "--leader-elect",
            "--identity",
            identity,
            "--health-port",
            "0",
            "--lease-duration",
            "4",
            "--renew-deadline",
            "3",
            "--retry-period",
            "1",
            "--kubeconfig",
            str(kubeconfig),
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )


def leader(kube: Kube, namespace: str) -> str | None:
    leases = kube.get("leases", namespace=namespace)["items"]
    for lease in leases:
        holder = (lease.get("spec") or {}).get("holderIdentity")
        if holder:
            return holder
    return None


def stage_jobs(kube: Kube, namespace: str) -> dict[str, int]:
    jobs = kube.get("vcjob", namespace=namespace)["items"]
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j["metadata"]["name"]] = counts.get(j["metadata"]["name"], 0) + 1
    return counts


def controller_setup(kube: Kube, namespace: str, nodes: Any, vitjob: Vitjob, tmp_path: Path) -> Path:
    """The claims, one KWOK cpu node, and the controller's RBAC exactly as `vitjob controller --render`
    writes it (no Deployment; the CRD is per session); the kubeconfig of its ServiceAccount's token."""
    kube.add_pvcs(namespace)
    nodes("e2e-cpu-0", {})
    rbac = [
        o
        for o in yaml.safe_load_all(
            vitjob("controller", "--render", "-n", namespace, backend=False, check=True).stdout
        )
        if o and o["kind"] not in ("Deployment", "CustomResourceDefinition")
    ]
    kube.apply(rbac)
    return sa_kubeconfig(kube, namespace, tmp_path / "sa.kubeconfig")


def test_pipeline_runs_four_stages_with_two_least_privilege_controllers(
    kube, namespace, nodes, vitjob: Vitjob, tmp_path
):
    kc = controller_setup(kube, namespace, nodes, vitjob, tmp_path)
    denied = kube.kubectl("--kubeconfig", str(kc), "get", "nodes", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), (
        "the token must be least-privilege"
    )

    sub = vitjob(
        "submit", "--hw", "cpu", "--cards", "1", "--name", "pl", "--then", "eval,export,infer310", check=True
    )
    assert "pl" in sub.stdout
    table = kube.kubectl("get", "vitjobs", "-n", namespace).stdout.splitlines()
    columns = ["NAME", "STAGE", "PHASE", "CARDS", "HARDWARE", "PROGRESS", "ETA", "AGE"]
    assert table[0].split() == columns, table
    assert table[1].split()[:5] == ["pl", "train", "Running", "1", "cpu"], table
    controllers = {
        f"c{i}": start_controller(kc, namespace, f"c{i}", tmp_path / f"c{i}.log") for i in range(2)
    }
    try:
        for i, stage in enumerate(STAGES):
            job = f"pl-{stage}"
            pods = wait_for(
                lambda j=job: [
                    p
                    for p in kube.pods(namespace, f"volcano.sh/job-name={j}")
                    if p["status"].get("phase") == "Running"
                ],
                120,
                f"stage {stage}'s pod Running (controller logs: {tmp_path})",
            )
            if i == 1:  # kill the acting controller between stages: the other replica takes over
                holder = wait_for(lambda: leader(kube, namespace), 30, "a leader")
                controllers[holder].send_signal(signal.SIGKILL)
                controllers[holder].wait(10)
            for p in pods:
                kube.end_pod(namespace, p["metadata"]["name"], 0)
            wait_for(
                lambda j=job: (
                    (kube.get("vcjob", j, namespace).get("status") or {}).get("state", {}).get("phase")
                    == "Completed"
                ),
                90,
                f"{job} Completed",
            )
        status = wait_for(
            lambda: (
                (s := vitjob("pipeline", "status", "pl", "-o", "json")).returncode == 0
                and "Completed" in s.stdout
                and s
            ),
            90,
            "pipeline Completed",
        )
        observed = json.loads(status.stdout)
        assert observed["phase"] == "Completed", observed
        counts = stage_jobs(kube, namespace)
        assert counts == {f"pl-{s}": 1 for s in STAGES}, counts
        short = kube.kubectl("get", "vit", "pl", "-n", namespace, "--no-headers").stdout.split()
        assert short[:5] == ["pl", "infer310", "Completed", "1", "cpu"], short
        vj = kube.get("vitjobs.vitjob.io", "pl", namespace)
        stages = vj["status"]["stages"]
        assert [(e["name"], e["job"], e["state"], e["phase"]) for e in stages] == [
            (s, f"pl-{s}", "Completed", "Completed") for s in STAGES
        ]
        assert all(e["startTime"] <= e["completionTime"] for e in stages)
        conditions = {x["type"]: x["status"] for x in vj["status"]["conditions"]}
        assert conditions == {
            "Running": "False", "Completed": "True", "Failed": "False", "Suspended": "False"
        }
        events = kube.kubectl(
            "get", "events", "-n", namespace, "-o", "json",
            "--field-selector", "involvedObject.kind=VitJob,involvedObject.name=pl",
        ).stdout
        reasons = [e["reason"] for e in json.loads(events)["items"]]
        assert reasons.count("StageCreated") >= 1 and "Completed" in reasons, reasons
        for job in counts:  # every stage job is owned by the VitJob
            refs = kube.get("vcjob", job, namespace)["metadata"]["ownerReferences"]
            assert [(r["kind"], r["name"], r["uid"]) for r in refs] == [
                ("VitJob", "pl", vj["metadata"]["uid"])
            ], refs
        alive = [name for name, c in controllers.items() if c.poll() is None]
        assert len(alive) == 1, f"one controller was killed, the other must still run: {alive}"
        logs = "".join((tmp_path / f"c{i}.log").read_text() for i in range(2))
        assert "forbidden" not in logs.lower(), logs[-2000:]

        # Deleting the VitJob garbage-collects its Volcano Jobs (and with them their pods).
        kube.kubectl("delete", "vitjob", "pl", "-n", namespace)
        wait_for(lambda: stage_jobs(kube, namespace) == {}, 90, "the VitJob's jobs garbage-collected")
    finally:
        for c in controllers.values():
            if c.poll() is None:
                c.terminate()
                try:
                    c.wait(10)
                except subprocess.TimeoutExpired:
                    c.kill()


def _vitjob_status(kube: Kube, namespace: str, name: str) -> dict:
    return (kube.get("vitjobs.vitjob.io", name, namespace).get("status")) or {}


def _job_phase(kube: Kube, namespace: str, job: str) -> str | None:
    found = kube.get_or_none("vcjob", job, namespace)
    return ((found or {}).get("status") or {}).get("state", {}).get("phase") if found else None


def test_pipeline_conflict_cancel_replace_deleted_stage_and_delete(kube, namespace, nodes, vitjob: Vitjob):
    """The CLI's own pipeline commands, no controller: a second submit conflicts; `pipeline cancel`
    records the VitJob Failed and has Volcano abort the running stage; `--replace` starts over with a
    new VitJob; a stage job deleted by hand fails the pipeline and is not recreated; `pipeline delete`."""
    kube.add_pvcs(namespace)
    nodes("e2e-cpu-0", {})
    submit = ("submit", "--hw", "cpu", "--cards", "1", "--name", "pc", "--then", "eval")
    vitjob(*submit, check=True)
    first_uid = kube.get("vitjobs.vitjob.io", "pc", namespace)["metadata"]["uid"]
    wait_for(lambda: kube.pods(namespace, "volcano.sh/job-name=pc-train"), 60, "pc-train's pod")

    again = vitjob(*submit)
    assert again.returncode == 1 and "pipeline 'pc' already exists" in again.stderr, again.stderr

    cancel = vitjob("pipeline", "cancel", "pc", check=True)
    assert "asked to abort pc-train" in cancel.stdout, cancel.stdout
    st = _vitjob_status(kube, namespace, "pc")
    assert st["phase"] == "Failed" and st["reason"].startswith("cancelled with `vitjob pipeline cancel`"), st
    wait_for(lambda: _job_phase(kube, namespace, "pc-train") == "Aborted", 60, "Volcano aborting pc-train")

    vitjob(*submit, "--replace", check=True)
    replaced = kube.get("vitjobs.vitjob.io", "pc", namespace)
    assert replaced["metadata"]["uid"] != first_uid
    assert replaced["status"]["phase"] == "Running"
    assert [(e["name"], e["state"]) for e in replaced["status"]["stages"]] == [("train", "Created")]
    wait_for(lambda: _job_phase(kube, namespace, "pc-train") in ("Pending", "Running"), 60, "a new pc-train")

    kube.kubectl("delete", "vcjob", "pc-train", "-n", namespace, "--wait=true")
    run = vitjob("pipeline", "run", "pc", "--wait", "--poll", "0.5", "--timeout", "60")
    assert run.returncode == 1, (run.stdout, run.stderr)
    st = _vitjob_status(kube, namespace, "pc")
    assert st["phase"] == "Failed", st
    assert "job pc-train was deleted while the pipeline was running" in st["reason"], st
    assert kube.get_or_none("vcjob", "pc-train", namespace) is None, "a deleted stage job is not recreated"

    deleted = vitjob("pipeline", "delete", "pc", check=True)
    assert "deleted pipeline pc" in deleted.stdout
    assert kube.get_or_none("vitjobs.vitjob.io", "pc", namespace) is None
