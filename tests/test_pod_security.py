"""Every pod vitjob renders against the Pod Security Standards, checked by ``pod_security_standards``
(the documented rules, written independently of the templates), and the user the pods run as.

- Each stage x hardware x size of the render matrix, a spec with every option, and the controller
  Deployment pass ``restricted``; the only pods that do not are ``hw: ascend`` with
  ``ascend_host_mounts`` (hostPath driver and hccn.conf), which fail baseline on "HostPath Volumes"
  alone and are labelled ``privileged`` by ``vitjob.render.manifests.pod_security_level``.
- The check itself fails on each injected violation (one per control), so a pass means something.
- The same pods, and the injected violations, through the real admission checks: ``tests/psacheck``
  (Go, k8s.io/pod-security-admission v0.35.3, what the API server's PodSecurity plugin runs) gives the
  same verdict as the documented rules for every pod and level.
- The security keys of the spec reach the pods; the images' user (``images/versions.env`` VITJOB_UID,
  the Dockerfiles' defaults, their WORKDIR) is ``vitjob.images``'s.
The chart's pods (controller Deployment, helm test pod) are checked in tests/test_chart.py, the admission
plugin of a real API server in the e2e tier (namespaces enforcing ``restricted``).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from pod_security_admission import verdicts
from pod_security_standards import BASELINE, RESTRICTED, pod_templates, violations
from test_render import CASES, OPTIONS

from vitjob import images
from vitjob.api.spec import JobSpec
from vitjob.api.values import load_spec
from vitjob.render.manifests import (
    PRIVILEGED,
    parse_document,
    pod_security_level,
    render_controller_documents,
    render_objects,
)

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"


def rendered_pods(spec: JobSpec) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    pods = [pod for obj in render_objects(spec) for pod in pod_templates(obj)]
    assert pods, "the job renders no pod"
    return pods


def controller_pods(**options: Any) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    objects = [parse_document(d) for d in render_controller_documents(namespace="ml", **options)]
    pods = [pod for obj in objects for pod in pod_templates(obj)]
    assert len(pods) == 1, "the controller is one Deployment"
    return pods


HOST_PATH_VOLUMES = {"train": ["hccn-conf", "ascend-driver"], "eval": ["hccn-conf", "ascend-driver"],
                     "export": ["hccn-conf", "ascend-driver"], "infer310": ["ascend-driver"]}


# --- every rendered pod -----------------------------------------------------------------------------
@pytest.mark.parametrize(("stage", "hw", "cards"), CASES)
def test_stage_pods_pass_restricted_except_ascend_host_mounts(stage, hw, cards):
    spec = JobSpec(name="vit", hw=hw, cards=cards, stage=stage)
    for where, metadata, pod in rendered_pods(spec):
        found = violations(metadata, pod, RESTRICTED)
        if hw != "ascend":
            assert found == [], where
            assert pod_security_level(spec) == RESTRICTED
            continue
        # hw ascend mounts node paths by default: hostPath is what keeps it from restricted and from
        # baseline, and nothing else.
        names = HOST_PATH_VOLUMES[stage]
        assert found == [f"HostPath Volumes: volume {n!r} is a hostPath" for n in names] + [
            f"Volume Types: volume {n!r} is ['hostPath']" for n in names], where
        assert violations(metadata, pod, BASELINE) == found[: len(names)], where
        assert pod_security_level(spec) == PRIVILEGED


@pytest.mark.parametrize(("stage", "cards"), [(s, n) for s, hw, n in CASES if hw == "ascend"])
def test_ascend_pods_without_host_mounts_pass_restricted(stage, cards):
    spec = JobSpec(name="vit", hw="ascend", cards=cards, stage=stage, ascend_host_mounts=False)
    assert pod_security_level(spec) == RESTRICTED
    for where, metadata, pod in rendered_pods(spec):
        assert violations(metadata, pod, RESTRICTED) == [], where
        assert not [v for v in pod["volumes"] if "hostPath" in v]
        if stage != "infer310":  # the device plugin's annotation still reaches launch (downward API)
            assert "podinfo" in {v["name"] for v in pod["volumes"]}


def test_a_spec_with_every_option_passes_restricted_without_host_mounts():
    spec = JobSpec(**OPTIONS, ascend_host_mounts=False, run_as_user=2000, run_as_group=3000, fs_group=4000,
                   supplemental_groups=[1001, 44], read_only_root_filesystem=False)
    for where, metadata, pod in rendered_pods(spec):
        assert violations(metadata, pod, RESTRICTED) == [], where


@pytest.mark.parametrize("all_namespaces", [False, True])
def test_controller_pod_passes_restricted_as_the_image_user(all_namespaces):
    ((where, metadata, pod),) = controller_pods(all_namespaces=all_namespaces)
    assert violations(metadata, pod, RESTRICTED) == [], where
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == images.USER_ID
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "volumes" not in pod  # it writes no file: no scratch


# --- the check fails on what it must refuse -----------------------------------------------------------
def _first_container(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["containers"][0]


def _csc(pod: dict[str, Any]) -> dict[str, Any]:
    return _first_container(pod).setdefault("securityContext", {})


INJECTIONS = {
    "runAsNonRoot false": (lambda p: p["securityContext"].update(runAsNonRoot=False), "Running as Non-root:"),
    "runAsNonRoot unset": (lambda p: p["securityContext"].pop("runAsNonRoot"), "Running as Non-root:"),
    "container runAsNonRoot false": (lambda p: _csc(p).update(runAsNonRoot=False), "Running as Non-root:"),
    "runAsUser 0": (lambda p: p["securityContext"].update(runAsUser=0), "Running as Non-root user:"),
    "container runAsUser 0": (lambda p: _csc(p).update(runAsUser=0), "Running as Non-root user:"),
    "no seccomp": (lambda p: p["securityContext"].pop("seccompProfile"), "Seccomp:"),
    "seccomp Unconfined": (lambda p: _csc(p).update(seccompProfile={"type": "Unconfined"}), "Seccomp:"),
    "privilege escalation unset": (lambda p: _csc(p).pop("allowPrivilegeEscalation"),
                                   "Privilege Escalation:"),
    "privilege escalation true": (lambda p: _csc(p).update(allowPrivilegeEscalation=True),
                                  "Privilege Escalation:"),
    "capabilities not dropped": (lambda p: _csc(p).pop("capabilities"), "Capabilities:"),
    "NET_RAW added": (lambda p: _csc(p)["capabilities"].update(add=["NET_RAW"]), "Capabilities:"),
    "CHOWN added": (lambda p: _csc(p)["capabilities"].update(add=["CHOWN"]), "Capabilities:"),
    "privileged": (lambda p: _csc(p).update(privileged=True), "Privileged Containers:"),
    "hostNetwork": (lambda p: p.update(hostNetwork=True), "Host Namespaces:"),
    "hostPID": (lambda p: p.update(hostPID=True), "Host Namespaces:"),
    "hostIPC": (lambda p: p.update(hostIPC=True), "Host Namespaces:"),
    "hostPort": (lambda p: _first_container(p)["ports"][0].update(hostPort=8118), "Host Ports:"),
    "hostPath": (lambda p: p["volumes"].append({"name": "x", "hostPath": {"path": "/"}}),
                 "HostPath Volumes:"),
    "nfs volume": (lambda p: p["volumes"].append({"name": "x", "nfs": {"server": "s", "path": "/"}}),
                   "Volume Types:"),
    "unsafe sysctl": (lambda p: p["securityContext"].update(
        sysctls=[{"name": "kernel.msgmax", "value": "1"}]), "Sysctls:"),
    "procMount Unmasked": (lambda p: _csc(p).update(procMount="Unmasked"), "/proc Mount Type:"),
    "SELinux type": (lambda p: p["securityContext"].update(seLinuxOptions={"type": "spc_t"}), "SELinux:"),
    "AppArmor Unconfined": (lambda p: _csc(p).update(appArmorProfile={"type": "Unconfined"}), "AppArmor:"),
    "hostProcess": (lambda p: _csc(p).update(windowsOptions={"hostProcess": True}), "HostProcess:"),
    "probe host": (lambda p: _first_container(p).update(
        livenessProbe={"httpGet": {"host": "10.0.0.1", "path": "/", "port": 80}}), "Host Probes"),
    "init container as root": (lambda p: p.update(initContainers=[{"name": "i", "image": "busybox"}]),
                               "Privilege Escalation: initContainers[0]"),
}


@pytest.mark.parametrize("injection", list(INJECTIONS))
def test_the_check_refuses_each_injected_violation(injection):
    ((_, metadata, pod),) = rendered_pods(JobSpec(name="vit", hw="cpu", cards=2))
    assert violations(metadata, pod, RESTRICTED) == []
    broken = copy.deepcopy(pod)
    inject, control = INJECTIONS[injection]
    inject(broken)
    found = violations(metadata, broken, RESTRICTED)
    assert any(line.startswith(control) for line in found), found


def test_the_check_refuses_an_apparmor_annotation():
    ((_, metadata, pod),) = rendered_pods(JobSpec(name="vit", hw="cpu"))
    key = "container.apparmor.security.beta.kubernetes.io/vitjob"
    annotated = {**metadata, "annotations": {key: "unconfined"}}
    assert [v for v in violations(annotated, pod, BASELINE) if v.startswith("AppArmor:")]
    allowed = {**metadata, "annotations": {key: "localhost/p"}}
    assert violations(allowed, pod, RESTRICTED) == []


def test_the_check_allows_what_the_standard_allows():
    """Values the page allows stay allowed: NET_BIND_SERVICE, Localhost seccomp on the container only,
    every restricted volume source, a safe sysctl."""
    ((_, metadata, pod),) = rendered_pods(JobSpec(name="vit", hw="cpu"))
    allowed = copy.deepcopy(pod)
    _csc(allowed)["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    allowed["securityContext"].pop("seccompProfile")
    _csc(allowed)["seccompProfile"] = {"type": "Localhost", "localhostProfile": "p.json"}
    allowed["securityContext"]["sysctls"] = [{"name": "net.ipv4.ip_local_port_range", "value": "1024 2048"}]
    allowed["volumes"] += [{"name": "s", "secret": {"secretName": "s"}},
                           {"name": "p", "projected": {"sources": []}}]
    assert violations(metadata, allowed, RESTRICTED) == []


# --- what the spec's security keys render -------------------------------------------------------------
def test_defaults_run_as_the_image_user_with_a_read_only_root_and_scratch():
    ((_, _, pod),) = rendered_pods(JobSpec(name="vit", hw="gpu", cards=8))
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
        "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
    }
    # Every directory the processes write is a volume: MindSpore's and vitjob's scratch (/tmp: launch's
    # Ascend rank table, Python's tempfile), HOME (~/.cache, ~/.config/matplotlib, ~/ascend/log) and the
    # working directory (kernel_meta/, rank_*/), /dev/shm, and the output claim.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    home = {e["name"]: e.get("value") for e in container["env"]}["HOME"]
    assert home == container["workingDir"] == images.HOME_DIR
    for path in ("/tmp", home, "/dev/shm"):
        assert "emptyDir" in volumes[mounts[path]], path
    assert "persistentVolumeClaim" in volumes[mounts["/output"]]


def test_the_security_keys_reach_the_pods(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text("run_as_user: 2000\nrun_as_group: 3000\nsupplemental_groups: [1001, 44]\n",
                      encoding="utf-8")
    spec = load_spec({"name": "vit", "hw": "ascend", "cards": 8}, values,
                     ["fs_group=null", "read_only_root_filesystem=false", "ascend_host_mounts=false"])
    ((_, metadata, pod),) = rendered_pods(spec)
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 2000, "runAsGroup": 3000, "supplementalGroups": [1001, 44],
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is False
    assert violations(metadata, pod, RESTRICTED) == []


def test_null_user_and_group_leave_them_to_the_image_and_stay_non_root():
    spec = JobSpec(name="vit", hw="cpu", run_as_user=None, run_as_group=None, fs_group=None)
    ((_, metadata, pod),) = rendered_pods(spec)
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert violations(metadata, pod, RESTRICTED) == []


@pytest.mark.parametrize(("values", "message"), [
    ({"run_as_user": 0}, "run_as_user: 0 is not allowed; use a non-root UID"),
    ({"fs_group": -1}, "fs_group: -1 is not allowed"),
    ({"supplemental_groups": [5, -2]}, "supplemental_groups: -2 not allowed"),
    ({"read_only_root_filesystem": "no"}, "read_only_root_filesystem: expected a boolean"),
])
def test_bad_security_values_are_refused(values, message):
    with pytest.raises(Exception, match=re.escape(message)):
        JobSpec(name="vit", hw="cpu", **values)


# --- the images' user: one value ----------------------------------------------------------------------
def test_the_images_user_is_vitjob_images_user():
    pinned = dict(line.split("=", 1) for line in (IMAGES / "versions.env").read_text().splitlines()
                  if line and not line.startswith("#"))
    assert int(pinned["VITJOB_UID"]) == images.USER_ID
    dockerfiles = sorted(IMAGES.glob("*/Dockerfile"))
    assert len(dockerfiles) == 4
    for dockerfile in dockerfiles:
        final = dockerfile.read_text()
        final = final[final.rindex("\nFROM "):]
        assert f"ARG VITJOB_UID={images.USER_ID}\n" in final, dockerfile
        assert "\nUSER ${VITJOB_UID}:${VITJOB_UID}\n" in final, dockerfile
        assert re.findall(r"^WORKDIR (\S+)$", final, re.MULTILINE) == [images.HOME_DIR], dockerfile
        assert "--create-home" in final and '--uid "${VITJOB_UID}"' in final, dockerfile


# --- the real admission checks (the psacheck fixture: conftest.py, pod_security_admission) -----------
def all_rendered_pods() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    pods = []
    for stage, hw, cards in CASES:
        for host_mounts in (True, False):
            spec = JobSpec(name="vit", hw=hw, cards=cards, stage=stage, ascend_host_mounts=host_mounts)
            for _, metadata, pod in rendered_pods(spec):
                pods.append((f"{stage}-{hw}-{cards}-host-mounts-{host_mounts}", metadata, pod))
    spec = JobSpec(**OPTIONS, run_as_user=None, run_as_group=None, fs_group=None, supplemental_groups=[44],
                   ascend_host_mounts=False)
    pods += [("options", metadata, pod) for _, metadata, pod in rendered_pods(spec)]
    for scope in (False, True):
        pods += [(f"controller-all-namespaces-{scope}", metadata, pod)
                 for _, metadata, pod in controller_pods(all_namespaces=scope)]
    return pods


def test_the_real_admission_checks_agree_on_every_rendered_pod(psacheck: Path) -> None:
    pods = all_rendered_pods()
    real = verdicts(psacheck, pods)
    for name, metadata, pod in pods:
        verdict = real[name]
        hostpath = "ascend" in name and name.endswith("host-mounts-True")
        assert (verdict["restricted"] == []) is not hostpath, (name, verdict)
        assert (verdict["baseline"] == []) is not hostpath, (name, verdict)
        if hostpath:  # the hostPath volumes and nothing else
            assert [r.split(":")[0] for r in verdict["baseline"]] == ["hostPath volumes"], verdict
            assert [r.split(":")[0] for r in verdict["restricted"]] == ["restricted volume types"], verdict
        for level in (BASELINE, RESTRICTED):
            assert bool(violations(metadata, pod, level)) == bool(verdict[level]), (name, level, verdict)


def test_the_real_admission_checks_refuse_each_injected_violation_as_the_rules_do(psacheck: Path) -> None:
    ((_, metadata, pod),) = rendered_pods(JobSpec(name="vit", hw="cpu", cards=2))
    pods = [("unchanged", metadata, pod)]
    for name, (inject, _) in INJECTIONS.items():
        broken = copy.deepcopy(pod)
        inject(broken)
        pods.append((name, metadata, broken))
    key = "container.apparmor.security.beta.kubernetes.io/vitjob"
    pods.append(("apparmor annotation", {**metadata, "annotations": {key: "unconfined"}}, pod))
    real = verdicts(psacheck, pods)
    assert real["unchanged"] == {"baseline": [], "restricted": []}
    for name, injected, spec in pods[1:]:
        verdict = real[name]
        assert verdict["restricted"], f"the admission checks allow {name}"
        for level in (BASELINE, RESTRICTED):
            assert bool(violations(injected, spec, level)) == bool(verdict[level]), (name, level, verdict)
