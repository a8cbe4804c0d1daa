"""Leader election through a ``coordination.k8s.io/v1`` Lease (``LeaseElector``), as client-go does it:
one of several replicas of a controller acts, the others stand by and take over when its Lease expires."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from vitjob import constants as c
from vitjob.errors import ConflictError, ResourceNotFoundError, VitjobError
from vitjob.kube.client import Api
from vitjob.kube.errors import Op
from vitjob.kube.times import micro_time_text

log = logging.getLogger(__name__)

LEASES = "leases"


class LeaseElector:
    """Leader election through a ``coordination.k8s.io/v1`` Lease, as client-go does it.

    The holder renews ``spec.renewTime`` every ``retry_period_s``. Another candidate takes over only
    when it has seen the Lease unchanged for ``lease_duration_s`` by its own clock (no clock-skew
    trust), writing with the Lease's resourceVersion so that only one of several candidates wins.
    """

    def __init__(
        self,
        api: Api,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration_s: float,
        renew_deadline_s: float,
        retry_period_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.api, self.name, self.namespace, self.identity = api, name, namespace, identity
        self.lease_duration_s, self.renew_deadline_s = lease_duration_s, renew_deadline_s
        self.retry_period_s, self.clock = retry_period_s, clock
        self._seen_version: str | None = None
        self._seen_at = 0.0
        self.transitions = 0

    # one attempt
    def try_acquire_or_renew(self) -> bool:
        """Take or renew the Lease once; True when this replica holds it afterwards."""
        lease = self._read()
        now = self.clock()
        if lease is None:
            return self._create()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        version = lease["metadata"].get("resourceVersion")
        if version != self._seen_version:
            self._seen_version, self._seen_at = version, now
        if holder and holder != self.identity and now - self._seen_at < self.lease_duration_s:
            return False  # another replica holds a live lease
        mine = holder == self.identity
        lease["spec"] = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration_s)),
            "renewTime": micro_time_text(),
            "acquireTime": spec.get("acquireTime") if mine else micro_time_text(),
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if mine else 1),
        }
        if not mine:
            log.info("taking over Lease %s/%s from %r", self.namespace, self.name, holder or "nobody")
        return self._replace(lease)

    def campaign(self, stop: threading.Event, tick: Callable[[], None] = lambda: None) -> bool:
        """Try every ``retry_period_s`` until this replica leads (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            tick()
            try:
                if self.try_acquire_or_renew():
                    log.info(
                        "became leader (Lease %s/%s, identity %s)", self.namespace, self.name, self.identity
                    )
                    return True
            except VitjobError as exc:
                log.warning("leader election: %s", exc)
            stop.wait(self.retry_period_s)
        return False

    def hold(self, stop: threading.Event, lost: threading.Event) -> None:
        """Renew until ``stop``; set ``lost`` when no renewal succeeded for ``renew_deadline_s``."""
        last_ok = self.clock()
        while not stop.wait(self.retry_period_s):
            try:
                ok = self.try_acquire_or_renew()
            except VitjobError as exc:
                log.warning("renewing the Lease failed: %s", exc)
                ok = False
            if ok:
                last_ok = self.clock()
            elif self.clock() - last_ok >= self.renew_deadline_s:
                log.error(
                    "could not renew Lease %s/%s for %.1f s: stopping all work and standing by",
                    self.namespace,
                    self.name,
                    self.renew_deadline_s,
                )
                lost.set()
                return

    def release(self) -> None:
        """Give the Lease up (holder "") so another replica takes over without waiting."""
        try:
            lease = self._read()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {
                **lease["spec"],
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": micro_time_text(),
            }
            self._replace(lease)
            log.info("released Lease %s/%s", self.namespace, self.name)
        except VitjobError as exc:
            log.warning("could not release the Lease (the others take over when it expires): %s", exc)

    # requests
    def _read(self) -> dict[str, Any] | None:
        api = self.api
        coord = coordination_api(api.client)
        op = Op("get", LEASES, c.LEASE_GROUP, self.namespace, self.name)
        try:
            lease: dict[str, Any] = api.call(op, coord.read_namespaced_lease, self.name, self.namespace)
            return lease
        except ResourceNotFoundError:
            return None

    def _create(self) -> bool:
        api = self.api
        now = micro_time_text()
        body = {
            "apiVersion": f"{c.LEASE_GROUP}/{c.LEASE_VERSION}",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {c.LABEL_MANAGED_BY: c.APP_NAME, c.LABEL_COMPONENT: c.CONTROLLER_COMPONENT},
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.lease_duration_s)),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            api.call(
                Op("create", LEASES, c.LEASE_GROUP, self.namespace),
                coordination_api(api.client).create_namespaced_lease,
                self.namespace,
                body,
            )
            return True
        except ConflictError:
            return False

    def _replace(self, lease: dict[str, Any]) -> bool:
        api = self.api
        try:
            api.call(
                Op("update", LEASES, c.LEASE_GROUP, self.namespace, self.name),
                coordination_api(api.client).replace_namespaced_lease,
                self.name,
                self.namespace,
                lease,
            )
        except ConflictError:
            return False  # another replica wrote first
        self._seen_version = None
        return True


def coordination_api(api_client: Any) -> Any:
    """The kubernetes client's CoordinationV1Api over ``api_client``."""
    from kubernetes import client

    return client.CoordinationV1Api(api_client)
