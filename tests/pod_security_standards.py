"""The Kubernetes Pod Security Standards as documented, checked on a pod spec — independent of vitjob.

The rules are the tables of https://kubernetes.io/docs/concepts/security/pod-security-standards/ for
Kubernetes v1.35 (the version the dev cluster runs), written here from that page, with the allowed
values confirmed in the policy checks of the real admission plugin (k8s.io/pod-security-admission
v0.35.3, policy/check_*.go: the ``image`` volume type, host probes from 1.34, the sysctls of 1.32).
Nothing here reads vitjob's templates or render code: a pod that passes passed the documented rules.

``violations(metadata, spec, level)`` returns one line per violated control, naming it as the page does
("Running as Non-root: …"), for ``baseline`` or ``restricted`` (restricted includes every baseline
control). Simplification, on the strict side: the relaxations the page grants to pods in a user
namespace (``hostUsers: false``: runAsNonRoot, runAsUser and procMount in baseline) and to Windows pods
are not applied, so this check never passes a pod the standard refuses.

The e2e tier checks the same pods against the real thing: the API server's PodSecurity admission with
the namespaces enforcing ``restricted``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

BASELINE = "baseline"
RESTRICTED = "restricted"
LEVELS = (BASELINE, RESTRICTED)

# Baseline, "Capabilities": adding any capability outside this set is forbidden.
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
# Baseline, "Sysctls": the safe subset (v1.35: the 1.0, 1.27, 1.29 and 1.32 additions).
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
})
# Baseline, "SELinux": the allowed seLinuxOptions.type values ("" = undefined).
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
# Restricted, "Volume Types": the only inline volume sources allowed.
RESTRICTED_VOLUME_SOURCES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim",
    "projected", "secret",
})
# Restricted, "Capabilities": the only capability that may be added back.
RESTRICTED_ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SECCOMP_ALLOWED = ("RuntimeDefault", "Localhost")
APPARMOR_TYPES = ("RuntimeDefault", "Localhost")
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every container of the pod (init, regular, ephemeral) with a path such as ``containers[0]``."""
    for key in CONTAINER_LISTS:
        for index, container in enumerate(spec.get(key) or []):
            yield f"{key}[{index}]", container


def _sc(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("securityContext") or {}


def baseline_violations(metadata: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    pod_sc = _sc(spec)
    found: list[str] = []
    # HostProcess
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("HostProcess: spec.securityContext.windowsOptions.hostProcess is true")
    for where, ctr in containers(spec):
        if (_sc(ctr).get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"HostProcess: {where}.securityContext.windowsOptions.hostProcess is true")
    # Host Namespaces
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            found.append(f"Host Namespaces: spec.{key} is true")
    for where, ctr in containers(spec):
        sc = _sc(ctr)
        # Privileged Containers
        if sc.get("privileged"):
            found.append(f"Privileged Containers: {where}.securityContext.privileged is true")
        # Capabilities
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            found.append(f"Capabilities: {where} adds {sorted(added - BASELINE_CAPABILITIES)}")
        # Host Ports
        for port in ctr.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"Host Ports: {where} hostPort {port['hostPort']}")
        # Host Probes / Lifecycle Hooks (v1.34+)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            for handler in ("httpGet", "tcpSocket"):
                if ((ctr.get(probe) or {}).get(handler) or {}).get("host"):
                    found.append(f"Host Probes / Lifecycle Hooks: {where}.{probe}.{handler}.host is set")
        for hook in ("postStart", "preStop"):
            for handler in ("httpGet", "tcpSocket"):
                if (((ctr.get("lifecycle") or {}).get(hook) or {}).get(handler) or {}).get("host"):
                    found.append(
                        f"Host Probes / Lifecycle Hooks: {where}.lifecycle.{hook}.{handler}.host is set")
        # /proc Mount Type
        if sc.get("procMount") not in (None, "Default"):
            found.append(f"/proc Mount Type: {where}.securityContext.procMount is {sc['procMount']!r}")
    # HostPath Volumes
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            found.append(f"HostPath Volumes: volume {volume.get('name')!r} is a hostPath")
    # AppArmor, SELinux and Seccomp: pod level and every container
    levels = [("spec", pod_sc)] + [(where, _sc(ctr)) for where, ctr in containers(spec)]
    for where, sc in levels:
        apparmor = (sc.get("appArmorProfile") or {}).get("type")
        if apparmor is not None and apparmor not in APPARMOR_TYPES:
            found.append(f"AppArmor: {where}.securityContext.appArmorProfile.type is {apparmor!r}")
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES:
            found.append(f"SELinux: {where}.securityContext.seLinuxOptions.type is {selinux['type']!r}")
        for key in ("user", "role"):
            if selinux.get(key):
                found.append(f"SELinux: {where}.securityContext.seLinuxOptions.{key} is set")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"Seccomp: {where}.securityContext.seccompProfile.type is Unconfined")
    for key, value in (metadata.get("annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION_PREFIX) and value not in ("", "runtime/default") \
                and not value.startswith("localhost/"):
            found.append(f"AppArmor: annotation {key} is {value!r}")
    # Sysctls
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"Sysctls: {sysctl.get('name')!r} is not a safe sysctl")
    return found


def restricted_violations(metadata: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    pod_sc = _sc(spec)
    found = baseline_violations(metadata, spec)
    # Volume Types
    for volume in spec.get("volumes") or []:
        sources = set(volume) - {"name"}
        if not sources or not sources <= RESTRICTED_VOLUME_SOURCES:
            found.append(f"Volume Types: volume {volume.get('name')!r} is {sorted(sources)}")
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type") in SECCOMP_ALLOWED
    # Running as Non-root user
    if pod_sc.get("runAsUser") == 0:
        found.append("Running as Non-root user: spec.securityContext.runAsUser is 0")
    for where, ctr in containers(spec):
        sc = _sc(ctr)
        # Privilege Escalation: must be set to false on every container
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(
                f"Privilege Escalation: {where}.securityContext.allowPrivilegeEscalation is not false")
        # Running as Non-root: pod-level true (a container may not say false), or every container true
        if sc.get("runAsNonRoot") is False or not (pod_non_root or sc.get("runAsNonRoot") is True):
            found.append(f"Running as Non-root: {where} may run as root (runAsNonRoot is not true)")
        if sc.get("runAsUser") == 0:
            found.append(f"Running as Non-root user: {where}.securityContext.runAsUser is 0")
        # Seccomp: RuntimeDefault or Localhost, at pod level or on every container
        own = (sc.get("seccompProfile") or {}).get("type")
        if not (own in SECCOMP_ALLOWED or (own is None and pod_seccomp)):
            found.append(f"Seccomp: {where} has no RuntimeDefault or Localhost seccomp profile")
        # Capabilities: drop ALL; add back only NET_BIND_SERVICE
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"Capabilities: {where} does not drop ALL")
        extra = set(caps.get("add") or []) - RESTRICTED_ADDABLE_CAPABILITIES
        if extra:
            found.append(f"Capabilities: {where} adds {sorted(extra)}")
    return found


def violations(metadata: dict[str, Any], spec: dict[str, Any], level: str = RESTRICTED) -> list[str]:
    """The controls of ``level`` that the pod (its ``metadata`` and ``spec``) violates; empty: it passes."""
    if level == BASELINE:
        return baseline_violations(metadata, spec)
    if level == RESTRICTED:
        return restricted_violations(metadata, spec)
    raise ValueError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")


def pod_templates(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The pods an object creates, as (where, metadata, spec): a Pod itself, a workload's template, each
    task template of a Volcano Job."""
    kind = obj.get("kind")
    name = (obj.get("metadata") or {}).get("name", "")
    if kind == "Pod":
        return [(f"Pod {name}", obj.get("metadata") or {}, obj["spec"])]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        if obj.get("apiVersion") == "batch.volcano.sh/v1alpha1":
            return [(f"Volcano Job {name} task {t['name']}", t["template"].get("metadata") or {},
                     t["template"]["spec"]) for t in obj["spec"]["tasks"]]
        template = obj["spec"]["template"]
        return [(f"{kind} {name}", template.get("metadata") or {}, template["spec"])]
    return []
