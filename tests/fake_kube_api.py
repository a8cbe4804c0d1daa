"""FAKE Kubernetes API server for tests — not a real API server, and not for production use.

Kept only for what a real API server will not do on demand: 5xx answers and slow or cut streams
(``fail``), 410 on a watch (``expire_watches``), a server that never answers, fifty followers at once,
and exact request counts. Everything a real server and Volcano do is tested against them in
``tests/e2e`` (the real control plane of ``./dev.sh cluster up``); the fake had several of those wrong
(a 403 webhook denial where the server answers 400, ``state.reason`` that Volcano never writes, a
text/plain pod-log Accept that a real server refuses with 406).

``FakeKubeAPI`` is a threaded HTTP server on 127.0.0.1 that the real ``kubernetes`` client talks to
through a generated kubeconfig (``write_kubeconfig``). It implements the slice of the API that vitjob
uses, with the API server's wire behaviour:

- objects: get/list/create (incl. ``generateName``)/replace/delete/merge-patch with ``uid``,
  ``creationTimestamp`` and a cluster-wide ``resourceVersion``; a ``metadata.resourceVersion`` in a
  PUT or merge patch is a precondition (409 Conflict when stale); label selectors (``=``, ``!=``,
  exists, ``in``/``notin``) and simple field selectors; ConfigMaps and ``coordination.k8s.io/v1``
  Leases among the core kinds; deleting an object deletes its dependents (``ownerReferences`` by
  uid) at once, as the garbage collector's background propagation would shortly after;
- watch streams (chunked JSON lines) that resume from a ``resourceVersion`` and answer an expired
  one with an ``ERROR`` event carrying a 410 ``Expired`` Status (``expire_watches``);
- pod logs with ``follow``, ``previous``, ``tailLines``, ``timestamps``, ``sinceTime`` and
  ``sinceSeconds``; a follow stream ends when its container instance ends, like the kubelet's;
- CRD discovery (``customresourcedefinitions``) from the YAML files in a CRD folder; Volcano
  resources are only served while the Volcano Job CRD is "installed", VitJobs while theirs is (the
  group of a CRD not installed answers a plain-text "404 page not found", an unknown path a Status
  "the server could not find the requested resource", as the real server does);
- the status subresource of VitJobs: ``…/status`` writes change only ``status``, writes of the object
  keep it, and ``status`` in a create is dropped; a spec change bumps ``metadata.generation``;
- validation of Volcano Jobs against the CRD's openAPIV3Schema (422 ``Invalid`` with field paths);
- 401 for a wrong bearer token, 403 for denied verbs (``deny``), injected failures (``fail``).

Every request is recorded (``requests``: method, path, query, body) so tests can assert on what the
client sent. Tests drive job and pod state through methods (``add_pod``, ``set_pod_running``,
``append_log``, ``restart_pod``, ``finish_pod``, ``set_job_phase``, ``add_event``…).

What it does not do (a real cluster would): run any controller (no pods appear by themselves; the
garbage collection above is the only one), defaulting from the CRD, strategic merge patch
semantics (treated as a JSON merge patch), TLS, pagination, bookmarks, protobuf.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import dataclasses
import datetime as dt
import functools
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

TOKEN = "fake-token"
USER = "system:serviceaccount:ci:vitjob-tests"
VOLCANO_JOB_CRD = "jobs.batch.volcano.sh"
VITJOB_CRD = "vitjobs.vitjob.io"


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    crd: str | None = None  # served only while this CRD is installed
    status_subresource: bool = False  # status changes only through .../status; spec only without

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES = [
    Resource("", "v1", "pods", "Pod", True),
    Resource("", "v1", "configmaps", "ConfigMap", True),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "services", "Service", True),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    Resource("", "v1", "events", "Event", True),
    Resource("", "v1", "namespaces", "Namespace", False),
    Resource("", "v1", "nodes", "Node", False),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    Resource("batch.volcano.sh", "v1alpha1", "jobs", "Job", True, VOLCANO_JOB_CRD),
    Resource("bus.volcano.sh", "v1alpha1", "commands", "Command", True, VOLCANO_JOB_CRD),
    Resource("scheduling.volcano.sh", "v1beta1", "podgroups", "PodGroup", True, VOLCANO_JOB_CRD),
    Resource("scheduling.volcano.sh", "v1beta1", "queues", "Queue", False, VOLCANO_JOB_CRD),
    Resource("vitjob.io", "v1alpha1", "vitjobs", "VitJob", True, VITJOB_CRD, status_subresource=True),
]
_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    content_type: str = ""
    user_agent: str = ""  # tells apart several clients of one fake (e.g. controller replicas)
    code: int | None = None  # the HTTP status answered (None while the request is being handled)

    @property
    def verb(self) -> str:
        """The Kubernetes verb (get, list, watch, create, update, patch, delete)."""
        return _verb(self.method, self.path, self.query)


@dataclass
class _LogInstance:
    """One run of a container: its lines with their (fake kubelet) timestamps in ns."""

    lines: list[tuple[int, str]] = field(default_factory=list)
    ended: bool = False


class _Gone(Exception):
    """Raised inside a stream handler to drop the connection abruptly."""


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _verb(method: str, path: str, query: dict[str, str]) -> str:
    if method == "GET":
        if query.get("watch") in ("true", "1"):
            return "watch"
        parsed = _parse_path(path)
        return "get" if parsed and parsed[2] else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method)


def _parse_path(path: str) -> tuple[Resource, str | None, str | None, str | None] | None:
    """``path`` → (resource, namespace, name, subresource), or None when not a resource path."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    elif len(rest) in (1, 2) and rest[0] == "namespaces" and not group:
        return _BY_PATH[("", "v1", "namespaces")], None, (rest[1] if len(rest) == 2 else None), None
    if not rest or len(rest) > 3:
        return None
    res = _BY_PATH.get((group, version, rest[0]))
    if res is None:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    return res, namespace, name, sub


# ----------------------------------------------------------------------------------------- selectors
_SET_RE = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(sel: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in sel:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in _split_selector(selector):
        term = term.strip()
        if m := _SET_RE.match(term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            ok = labels.get(key) in values if op == "in" else labels.get(key) not in values
        elif "!=" in term:
            key, value = term.split("!=", 1)
            ok = labels.get(key.strip()) != value.strip()
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            ok = labels.get(key.strip()) == value.strip()
        elif term.startswith("!"):
            ok = term[1:].strip() not in labels
        else:
            ok = term in labels
        if not ok:
            return False
    return True


def _field(obj: dict, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def field_selector_matches(selector: str, obj: dict) -> bool:
    for term in _split_selector(selector):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if _field(obj, key.strip()) == value.strip():
                return False
        else:
            key, value = term.replace("==", "=").split("=", 1)
            if _field(obj, key.strip()) != value.strip():
                return False
    return True


# ----------------------------------------------------------------------------------- CRD validation
def _k8s_path(path: Iterator[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _cause(err: Any) -> tuple[str, str, str]:
    """A jsonschema error → (field path, reason, message) worded like the API server's."""
    path = _k8s_path(err.absolute_path)
    v, val = err.validator, err.instance
    if v == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        fpath = f"{path}.{missing[0]}" if path and missing else (missing[0] if missing else path)
        return fpath, "FieldValueRequired", "Required value"
    if v == "enum":
        allowed = ", ".join(json.dumps(x) for x in err.validator_value)
        return (
            path,
            "FieldValueNotSupported",
            f"Unsupported value: {json.dumps(val)}: supported values: {allowed}",
        )
    if v == "type":
        return (
            path,
            "FieldValueTypeInvalid",
            (
                f"Invalid value: {json.dumps(type(val).__name__)}: {path} in body must be of type "
                f"{err.validator_value}: "
                f"{json.dumps(val)}"
            ),
        )
    words = {
        "minimum": "should be greater than or equal to",
        "maximum": "should be less than or equal to",
        "maxLength": "should be at most",
        "minLength": "should be at least",
        "pattern": "should match",
        "minItems": "should have at least",
    }
    what = words.get(v, f"fails {v}")
    return (
        path,
        "FieldValueInvalid",
        f"Invalid value: {json.dumps(val)}: {path} in body {what} {err.validator_value}",
    )


@functools.cache
def _load_crds(crd_dir: str) -> dict[str, dict]:
    """CRD name → CRD, from every YAML file in ``crd_dir`` (parsed once per process: they are big)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crds = {}
    for path in sorted(Path(crd_dir).glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=loader)
        crds[crd["metadata"]["name"]] = crd
    return crds


@functools.cache
def _crd_validator(crd_json: str) -> _CrdValidator:
    return _CrdValidator(json.loads(crd_json))


class _CrdValidator:
    def __init__(self, crd: dict):
        from jsonschema import Draft4Validator  # OpenAPI v3.0 schemas use draft-4 keyword semantics

        versions = {v["name"]: v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]}
        self.kind = crd["spec"]["names"]["kind"]
        self.group = crd["spec"]["group"]
        self.validators = {v: Draft4Validator(s) for v, s in versions.items()}

    def check(self, obj: dict, version: str) -> None:
        validator = self.validators.get(version)
        if validator is None:
            return
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        if not errors:
            return
        name = obj.get("metadata", {}).get("name", "")
        causes = [dict(zip(("field", "reason", "message"), _cause(e), strict=True)) for e in errors]
        listed = "; ".join(f"{c['field']}: {c['message']}" for c in causes) if len(causes) > 1 else ""
        message = f'{self.kind}.{self.group} "{name}" is invalid: ' + (
            f"[{listed}]" if listed else f"{causes[0]['field']}: {causes[0]['message']}"
        )
        raise ApiError(
            422, "Invalid", message, {"name": name, "group": self.group, "kind": self.kind, "causes": causes}
        )


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


def _rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _parse_time_ns(text: str) -> int:
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        raise ApiError(400, "BadRequest", f'parsing time "{text}" as RFC3339: cannot parse')
    base = dt.datetime.fromisoformat(m.group(1) + (m.group(3).replace("Z", "+00:00")))
    frac = int((m.group(2) or "0").ljust(9, "0")[:9])
    return int(base.timestamp()) * 1_000_000_000 + frac


# ----------------------------------------------------------------------------------------- the fake
class FakeKubeAPI:
    """The fake API server plus the handle tests use to change cluster state."""

    def __init__(self, crd_dir: Path | None = None, *, volcano_installed: bool = True):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.requests: list[RecordedRequest] = []
        self.rv = 0
        self.compacted_rv = 0  # watches from a resourceVersion below this get 410 Gone
        self.store: dict[Resource, dict[tuple[str, str], dict]] = {r: {} for r in RESOURCES}
        self.history: list[tuple[int, Resource, str, dict]] = []
        self.logs: dict[str, list[_LogInstance]] = {}  # pod uid → container runs
        self.denied: set[tuple[str, str, str | None]] = set()  # (verb, plural, namespace)
        # [method, path regex, code, times left, query, reason, message]
        self.failures: list[list[Any]] = []
        self.crd_files: dict[str, dict] = {}
        self.validators: dict[str, _CrdValidator] = {}
        self.watch_epoch = 0  # bumped by expire_watches(): open watches send 410 and close
        self.log_epoch = 0  # bumped by drop_log_streams(): open follows are cut mid-stream
        self.stopping = False
        self.open_follows: dict[str, int] = {}  # pod name → log follow streams open now
        self._last_ts = 0
        self.token = TOKEN  # the bearer token the fake accepts
        if crd_dir is not None:
            self.crd_files = copy.deepcopy(_load_crds(str(crd_dir)))
        for name, crd in self.crd_files.items():
            if volcano_installed or not name.endswith(".volcano.sh"):
                self.install_crd(crd)
        self.create("", "namespaces", {"metadata": {"name": "default"}})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-kube-api")

    # ---------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeKubeAPI:
        self.thread.start()
        return self

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def write_kubeconfig(
        self, path: Path, *, namespace: str = "default", token: str = TOKEN, context: str = "fake"
    ) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": context,
            "clusters": [{"name": "fake-cluster", "cluster": {"server": self.url}}],
            "users": [{"name": "fake-user", "user": {"token": token}}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": "fake-cluster", "user": "fake-user", "namespace": namespace},
                }
            ],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # ------------------------------------------------------------------------ request records
    def record(self, req: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(req)

    def requests_matching(
        self, method: str | None = None, path: str | None = None, verb: str | None = None
    ) -> list[RecordedRequest]:
        with self.lock:
            reqs = list(self.requests)
        return [
            r
            for r in reqs
            if (method is None or r.method == method)
            and (path is None or re.search(path, r.path))
            and (verb is None or r.verb == verb)
        ]

    def clear_requests(self) -> None:
        with self.lock:
            self.requests.clear()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        """Block until ``predicate()`` (checked on every state change); AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what}"
                self.changed.wait(timeout=min(left, 0.05))

    def following(self, pod: str) -> bool:
        with self.lock:
            return self.open_follows.get(pod, 0) > 0

    # ------------------------------------------------------------------------ fault injection
    def deny(self, verb: str, plural: str, namespace: str | None = None) -> None:
        """RBAC: answer ``verb`` on ``plural`` (in ``namespace``, or anywhere) with 403."""
        self.denied.add((verb, plural, namespace))

    def fail(
        self,
        method: str,
        path_regex: str,
        code: int,
        times: int = 1,
        *,
        query: dict[str, str] | None = None,
        reason: str = "",
        message: str = "",
    ) -> None:
        """Answer the next ``times`` matching requests with HTTP ``code`` (``query``: only requests with
        these query parameters, e.g. ``{"watch": "true"}``; ``reason``/``message``: the Status's)."""
        with self.lock:
            self.failures.append([method, path_regex, code, times, query or {}, reason, message])

    def expire_watches(self) -> None:
        """Compact history: open watches get a 410 ERROR event, old resourceVersions become invalid."""
        with self.lock:
            self.compacted_rv = self.rv
            self.watch_epoch += 1
            self.changed.notify_all()

    def drop_log_streams(self) -> None:
        """Cut every open log follow stream mid-stream (as a broken connection would)."""
        with self.lock:
            self.log_epoch += 1
            self.changed.notify_all()

    def install_crd(self, crd: dict) -> None:
        with self.lock:
            self.create("apiextensions.k8s.io", "customresourcedefinitions", copy.deepcopy(crd))
            if crd["spec"]["group"] == "batch.volcano.sh":
                self.validators["batch.volcano.sh/jobs"] = _crd_validator(json.dumps(crd, sort_keys=True))

    # --------------------------------------------------------------------------- object store
    def _resource(self, group: str, plural: str) -> Resource:
        return next(r for r in RESOURCES if r.group == group and r.plural == plural)

    def served(self, res: Resource) -> bool:
        return (
            res.crd is None
            or ("", res.crd)
            in self.store[_BY_PATH[("apiextensions.k8s.io", "v1", "customresourcedefinitions")]]
        )

    def _bump(self, res: Resource, kind: str, obj: dict) -> dict:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, res, kind, copy.deepcopy(obj)))
        self.changed.notify_all()
        return obj

    def create(self, group: str, plural: str, obj: dict, namespace: str | None = None) -> dict:
        res = self._resource(group, plural)
        with self.lock:
            meta = obj.setdefault("metadata", {})
            if res.namespaced:
                meta["namespace"] = namespace or meta.get("namespace") or "default"
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            key = (meta.get("namespace", ""), meta["name"])
            if key in self.store[res]:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{res.plural}{"." + res.group if res.group else ""} "{meta["name"]}" already exists',
                    {"name": meta["name"], "group": res.group, "kind": res.plural},
                )
            obj.setdefault("apiVersion", res.api_version)
            obj.setdefault("kind", res.kind)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            meta["generation"] = 1
            self.store[res][key] = obj
            return copy.deepcopy(self._bump(res, "ADDED", obj))

    def get(self, group: str, plural: str, name: str, namespace: str = "") -> dict | None:
        res = self._resource(group, plural)
        with self.lock:
            obj = self.store[res].get((namespace if res.namespaced else "", name))
            return copy.deepcopy(obj) if obj else None

    def update(
        self, group: str, plural: str, name: str, namespace: str, mutate: Callable[[dict], None]
    ) -> dict:
        res = self._resource(group, plural)
        with self.lock:
            obj = self.store[res][(namespace if res.namespaced else "", name)]
            mutate(obj)
            return copy.deepcopy(self._bump(res, "MODIFIED", obj))

    def delete(self, group: str, plural: str, name: str, namespace: str = "") -> dict:
        res = self._resource(group, plural)
        with self.lock:
            key = (namespace if res.namespaced else "", name)
            obj = self.store[res].pop(key, None)
            if obj is None:
                raise ApiError(
                    404,
                    "NotFound",
                    f'{res.plural}{"." + res.group if res.group else ""} "{name}" not found',
                    {"name": name, "group": res.group, "kind": res.plural},
                )
            if res.plural == "pods":
                for inst in self.logs.get(obj["metadata"]["uid"], []):
                    inst.ended = True
            if res.plural == "jobs" and res.group == "batch.volcano.sh":  # what GC would do for us
                for (ns, pod_name), pod in list(self.store[self._resource("", "pods")].items()):
                    if (
                        ns == namespace
                        and pod["metadata"].get("labels", {}).get("volcano.sh/job-name") == name
                    ):
                        self.delete("", "pods", pod_name, ns)
            self._bump(res, "DELETED", obj)
            self._collect_dependents(obj["metadata"]["uid"])
            return copy.deepcopy(obj)

    def _collect_dependents(self, owner_uid: str) -> None:
        """The garbage collector, background propagation, done at once: delete every object whose
        ownerReferences name ``owner_uid`` (and so on, recursively)."""
        for res in RESOURCES:
            for (ns, name), obj in list(self.store[res].items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == owner_uid for ref in refs) and (ns, name) in self.store[res]:
                    self.delete(res.group, res.plural, name, ns)

    def list(
        self, res: Resource, namespace: str | None, label_selector: str = "", field_selector: str = ""
    ) -> list[dict]:
        with self.lock:
            return [
                copy.deepcopy(o)
                for (ns, _), o in sorted(self.store[res].items())
                if (namespace is None or ns == namespace)
                and label_selector_matches(label_selector, o["metadata"].get("labels") or {})
                and (not field_selector or field_selector_matches(field_selector, o))
            ]

    # ------------------------------------------------------------------ cluster-state helpers
    def add_queue(self, name: str = "default", state: str = "Open") -> dict:
        return self.create(
            "scheduling.volcano.sh",
            "queues",
            {"metadata": {"name": name}, "spec": {"weight": 1}, "status": {"state": state}},
        )

    def add_node(self, name: str, allocatable: dict[str, str]) -> dict:
        return self.create(
            "",
            "nodes",
            {"metadata": {"name": name}, "status": {"allocatable": allocatable, "capacity": allocatable}},
        )

    def set_job_phase(
        self,
        namespace: str,
        name: str,
        phase: str,
        *,
        reason: str = "",
        message: str = "",
        retry_count: int | None = None,
    ) -> dict:
        def mutate(job: dict) -> None:
            status = job.setdefault("status", {})
            status["state"] = {
                "phase": phase,
                "reason": reason,
                "message": message,
                "lastTransitionTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            if retry_count is not None:
                status["retryCount"] = retry_count

        return self.update("batch.volcano.sh", "jobs", name, namespace, mutate)

    def add_pod(
        self, namespace: str, job_name: str, index: int, *, task: str = "worker", node: str = ""
    ) -> dict:
        """A pod as Volcano's job controller creates it (Pending, container waiting)."""
        job = self.get("batch.volcano.sh", "jobs", job_name, namespace)
        job_uid = job["metadata"]["uid"] if job else "unknown"
        container = "main"
        if job:
            for t in job["spec"].get("tasks", []):
                if t.get("name") == task:
                    container = t["template"]["spec"]["containers"][0]["name"]
        pod = {
            "metadata": {
                "name": f"{job_name}-{task}-{index}",
                "labels": {
                    "volcano.sh/job-name": job_name,
                    "volcano.sh/task-spec": task,
                    "volcano.sh/task-index": str(index),
                    "volcano.sh/job-namespace": namespace,
                },
                "annotations": {"scheduling.k8s.io/group-name": f"{job_name}-{job_uid}"},
                "ownerReferences": [
                    {
                        "apiVersion": "batch.volcano.sh/v1alpha1",
                        "kind": "Job",
                        "name": job_name,
                        "uid": job_uid,
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "containers": [{"name": container, "image": "fake"}],
                "nodeName": node,
                "restartPolicy": "OnFailure",
            },
            "status": {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": container,
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "ContainerCreating"}},
                    }
                ],
            },
        }
        created = self.create("", "pods", pod, namespace)
        with self.lock:
            self.logs[created["metadata"]["uid"]] = [_LogInstance()]
        return created

    def _pod_update(self, namespace: str, pod: str, mutate: Callable[[dict, dict], None]) -> dict:
        def outer(obj: dict) -> None:
            mutate(obj, obj["status"]["containerStatuses"][0])

        return self.update("", "pods", pod, namespace, outer)

    def set_pod_waiting(self, namespace: str, pod: str, reason: str, message: str = "") -> dict:
        def mutate(obj: dict, cs: dict) -> None:
            cs["state"] = {"waiting": {"reason": reason, "message": message}}

        return self._pod_update(namespace, pod, mutate)

    def set_pod_running(self, namespace: str, pod: str, node: str = "node-1") -> dict:
        def mutate(obj: dict, cs: dict) -> None:
            obj["spec"]["nodeName"] = obj["spec"].get("nodeName") or node
            obj["status"]["phase"] = "Running"
            cs["ready"] = True
            cs["state"] = {"running": {"startedAt": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}

        return self._pod_update(namespace, pod, mutate)

    def _now_ns(self) -> int:
        self._last_ts = max(time.time_ns(), self._last_ts + 1000)
        return self._last_ts

    def append_log(self, namespace: str, pod: str, lines: list[str]) -> None:
        with self.lock:
            obj = self.get("", "pods", pod, namespace)
            assert obj is not None, f"no pod {namespace}/{pod}"
            inst = self.logs[obj["metadata"]["uid"]][-1]
            assert not inst.ended, f"container of {pod} is not running"
            inst.lines.extend((self._now_ns(), line) for line in lines)
            self.changed.notify_all()

    def restart_pod(self, namespace: str, pod: str, exit_code: int = 137, reason: str = "Error") -> dict:
        """The container exits and the kubelet starts it again (restartCount + 1)."""
        with self.lock:
            obj = self.get("", "pods", pod, namespace)
            assert obj is not None
            runs = self.logs[obj["metadata"]["uid"]]
            runs[-1].ended = True
            runs.append(_LogInstance())

            def mutate(o: dict, cs: dict) -> None:
                cs["lastState"] = {"terminated": {"exitCode": exit_code, "reason": reason}}
                cs["restartCount"] = cs.get("restartCount", 0) + 1
                cs["state"] = {
                    "running": {"startedAt": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
                }

            return self._pod_update(namespace, pod, mutate)

    def finish_pod(
        self, namespace: str, pod: str, exit_code: int = 0, *, reason: str = "", message: str = ""
    ) -> dict:
        with self.lock:
            obj = self.get("", "pods", pod, namespace)
            assert obj is not None
            self.logs[obj["metadata"]["uid"]][-1].ended = True

            def mutate(o: dict, cs: dict) -> None:
                o["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"
                cs["ready"] = False
                term = {
                    "exitCode": exit_code,
                    "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                }
                if message:
                    term["message"] = message
                cs["state"] = {"terminated": term}

            return self._pod_update(namespace, pod, mutate)

    def add_event(
        self, namespace: str, kind: str, name: str, reason: str, message: str, type_: str = "Warning"
    ) -> dict:
        return self.create(
            "",
            "events",
            {
                "metadata": {"generateName": f"{name}."},
                "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
                "reason": reason,
                "message": message,
                "type": type_,
                "count": 1,
                "lastTimestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            namespace,
        )

    # ------------------------------------------------------------------------------- logs
    def log_lines(
        self, namespace: str, pod_name: str, query: dict[str, str]
    ) -> tuple[str, _LogInstance, int]:
        """Validate a log request → (uid, container run, first line index to send)."""
        with self.lock:
            pod = self.store[self._resource("", "pods")].get((namespace, pod_name))
            if pod is None:
                raise ApiError(
                    404, "NotFound", f'pods "{pod_name}" not found', {"name": pod_name, "kind": "pods"}
                )
            containers = [c["name"] for c in pod["spec"]["containers"]]
            container = query.get("container") or (containers[0] if len(containers) == 1 else "")
            if container not in containers:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {pod_name}, choose one of: {containers}",
                )
            uid = pod["metadata"]["uid"]
            runs = self.logs.get(uid, [])
            cs = pod["status"]["containerStatuses"][0]
            if query.get("previous") == "true":
                if len(runs) < 2:
                    raise ApiError(
                        400,
                        "BadRequest",
                        f'previous terminated container "{container}" in pod "{pod_name}" not found',
                    )
                inst = runs[-2]
            else:
                if "waiting" in cs["state"] and cs.get("restartCount", 0) == 0:
                    reason = cs["state"]["waiting"].get("reason", "ContainerCreating")
                    raise ApiError(
                        400,
                        "BadRequest",
                        f'container "{container}" in pod "{pod_name}" is waiting to start: {reason}',
                    )
                inst = runs[-1]
            start = 0
            if "sinceTime" in query:
                since = _parse_time_ns(query["sinceTime"])
                start = next((i for i, (ts, _) in enumerate(inst.lines) if ts >= since), len(inst.lines))
            elif "sinceSeconds" in query:
                since = time.time_ns() - int(query["sinceSeconds"]) * 1_000_000_000
                start = next((i for i, (ts, _) in enumerate(inst.lines) if ts >= since), len(inst.lines))
            if "tailLines" in query:
                start = max(start, len(inst.lines) - int(query["tailLines"]))
            return uid, inst, start


def _make_handler(api: FakeKubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = (
            True  # headers and body go out as separate writes: no 40 ms delayed-ACK stalls
        )

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        # ---------------------------------------------------------------------- plumbing
        recorded: RecordedRequest | None = None  # the request being answered, as recorded

        def send_response(self, code: int, message: str | None = None) -> None:
            if self.recorded is not None:
                self.recorded.code = code
            super().send_response(code, message)

        def _send_json(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_text(self, code: int, text: str) -> None:
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _start_stream(self, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _end_stream(self) -> None:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _handle(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            body: Any = None
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
            req = RecordedRequest(
                self.command,
                url.path,
                query,
                body,
                self.headers.get("Content-Type", ""),
                self.headers.get("User-Agent", ""),
            )
            # The record keeps a snapshot: the store keeps (and later changes) ``body`` itself.
            self.recorded = dataclasses.replace(req, body=copy.deepcopy(body))
            api.record(self.recorded)
            try:
                self._dispatch(req)
            except ApiError as err:
                self._send_json(err.code, err.status())
            except (BrokenPipeError, ConnectionResetError):
                pass
            except _Gone:
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        # ---------------------------------------------------------------------- routing
        def _dispatch(self, req: RecordedRequest) -> None:
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            with api.lock:
                for failure in api.failures:
                    method, path_regex, code, left, query, reason, message = failure
                    if (
                        method == req.method
                        and re.search(path_regex, req.path)
                        and left > 0
                        and all(req.query.get(k) == v for k, v in query.items())
                    ):
                        failure[3] -= 1
                        raise ApiError(
                            code,
                            reason or ("InternalError" if code >= 500 else "BadRequest"),
                            message or f"injected failure {code}",
                        )
            parsed = _parse_path(req.path)
            if parsed is not None and not api.served(parsed[0]):
                # A group no installed CRD serves: the real server's mux answers in plain text.
                return self._send_text(404, "404 page not found\n")
            if parsed is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            res, ns, name, sub = parsed
            verb = req.verb
            plural = res.plural + (f"/{sub}" if sub else "")
            if (verb, plural, ns) in api.denied or (verb, plural, None) in api.denied:
                in_ns = f' in the namespace "{ns}"' if ns else " at the cluster scope"
                raise ApiError(
                    403,
                    "Forbidden",
                    f"{res.plural}{'.' + res.group if res.group else ''}{' ' + repr(name) if name else ''}"
                    f' is forbidden: User "{USER}" cannot {verb} resource "{plural}" in API group '
                    f'"{res.group}"{in_ns}',
                    {"name": name or "", "group": res.group, "kind": res.plural},
                )
            if sub == "log":
                return self._logs(ns or "", name or "", req.query)
            if req.method == "GET" and name is None:
                if verb == "watch":
                    return self._watch(res, ns, req.query)
                items = api.list(
                    res, ns, req.query.get("labelSelector", ""), req.query.get("fieldSelector", "")
                )
                return self._send_json(
                    200,
                    {
                        "kind": f"{res.kind}List",
                        "apiVersion": res.api_version,
                        "metadata": {"resourceVersion": str(api.rv)},
                        "items": items,
                    },
                )
            if req.method == "GET":
                obj = api.get(res.group, res.plural, name or "", ns or "")
                if obj is None:
                    raise ApiError(
                        404,
                        "NotFound",
                        f'{res.plural}{"." + res.group if res.group else ""} "{name}" not found',
                        {"name": name, "group": res.group, "kind": res.plural},
                    )
                return self._send_json(200, obj)
            if req.method == "POST" and name is None:
                return self._create(res, ns, req.body)
            if req.method == "DELETE" and name:
                obj = api.delete(res.group, res.plural, name, ns or "")
                return self._send_json(200, obj)
            if req.method in ("PATCH", "PUT") and name:
                return self._modify(res, ns or "", name, req, sub)
            raise ApiError(405, "MethodNotAllowed", f"{req.method} is not supported on {req.path}")

        def _create(self, res: Resource, ns: str | None, body: Any) -> None:
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
            if body.get("kind") not in (None, res.kind):
                raise ApiError(
                    400,
                    "BadRequest",
                    f"the API version in the data ({body.get('apiVersion')}) "
                    f"does not match the expected API version ({res.api_version})",
                )
            if res.plural == "jobs" and res.group == "batch.volcano.sh":
                validator = api.validators.get("batch.volcano.sh/jobs")
                if validator:
                    validator.check(body, res.version)
            if res.status_subresource:
                body.pop("status", None)  # the API server ignores status on create
            if ns and api.get("", "namespaces", ns) is None and res.plural != "namespaces":
                raise ApiError(
                    404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"}
                )
            self._send_json(201, api.create(res.group, res.plural, body, ns))

        def _modify(self, res: Resource, ns: str, name: str, req: RecordedRequest, sub: str | None) -> None:
            if api.get(res.group, res.plural, name, ns) is None:
                raise ApiError(
                    404,
                    "NotFound",
                    f'{res.plural} "{name}" not found',
                    {"name": name, "group": res.group, "kind": res.plural},
                )
            if req.method == "PATCH" and "json-patch" in req.content_type:
                raise ApiError(415, "UnsupportedMediaType", "the fake supports merge patches only")

            def mutate(obj: dict) -> None:
                if req.method == "PUT":
                    want = req.body["metadata"].get("resourceVersion")
                    if want and want != obj["metadata"]["resourceVersion"]:
                        raise ApiError(
                            409,
                            "Conflict",
                            f'Operation cannot be fulfilled on {res.plural} "{name}": '
                            "the object has been modified; please apply your changes to the latest "
                            "version and try again",
                        )
                    new = copy.deepcopy(req.body)
                else:
                    want = ((req.body or {}).get("metadata") or {}).get("resourceVersion")
                    if want and want != obj["metadata"]["resourceVersion"]:  # a patch's precondition
                        raise ApiError(
                            409,
                            "Conflict",
                            f'Operation cannot be fulfilled on {res.plural} "{name}": '
                            "the object has been modified; please apply your changes to the latest "
                            "version and try again",
                        )
                    new = _merge_patch(obj, req.body)
                for key in ("uid", "creationTimestamp", "namespace", "name"):
                    new["metadata"][key] = obj["metadata"][key]
                if res.status_subresource:  # .../status writes only status; the object, all but it
                    if sub == "status":
                        new = {**copy.deepcopy(obj), "status": new.get("status")}
                    else:
                        new["status"] = copy.deepcopy(obj.get("status"))
                        if new.get("spec") != obj.get("spec"):
                            new["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
                    new = {k: v for k, v in new.items() if v is not None}
                obj.clear()
                obj.update(new)

            self._send_json(200, api.update(res.group, res.plural, name, ns, mutate))

        # ---------------------------------------------------------------------- streams
        def _watch(self, res: Resource, ns: str | None, query: dict[str, str]) -> None:
            label_sel, field_sel = query.get("labelSelector", ""), query.get("fieldSelector", "")
            deadline = time.monotonic() + int(query.get("timeoutSeconds") or 1800)
            with api.lock:
                epoch = api.watch_epoch
                rv_text = query.get("resourceVersion", "")
                if rv_text in ("", "0"):
                    pending = [("ADDED", o) for o in api.list(res, ns, label_sel, field_sel)]
                    since = api.rv
                else:
                    since = int(rv_text)
                    pending = []
            self._start_stream("application/json")
            if since and since < api.compacted_rv:
                return self._watch_gone(since)
            for kind, obj in pending:
                self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
            with api.lock:  # history is ordered by resourceVersion: scan only what is new
                pos = bisect.bisect_right([h[0] for h in api.history], since)
            while True:
                with api.lock:
                    new, pos = api.history[pos:], len(api.history)
                    events = [
                        (kind, obj)
                        for _, r, kind, obj in new
                        if r is res
                        and (ns is None or obj["metadata"].get("namespace") == ns)
                        and label_selector_matches(label_sel, obj["metadata"].get("labels") or {})
                        and (not field_sel or field_selector_matches(field_sel, obj))
                    ]
                    if not new:
                        if api.stopping or time.monotonic() > deadline:
                            break
                        if api.watch_epoch != epoch:
                            return self._watch_gone(since)
                        api.changed.wait(timeout=0.5)
                        continue
                    since = new[-1][0]
                for kind, obj in events:
                    self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
            self._end_stream()

        def _watch_gone(self, since: int) -> None:
            status = ApiError(
                410, "Expired", f"too old resource version: {since} ({api.compacted_rv})"
            ).status()
            self._chunk(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
            self._end_stream()

        def _logs(self, ns: str, name: str, query: dict[str, str]) -> None:
            _uid, inst, pos = api.log_lines(ns, name, query)
            stamps = query.get("timestamps") == "true"

            def fmt(entries: list[tuple[int, str]]) -> bytes:
                return "".join(
                    f"{_rfc3339(ts)} {line}\n" if stamps else f"{line}\n" for ts, line in entries
                ).encode()

            if query.get("follow") != "true":
                data = fmt(inst.lines[pos:])
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self._start_stream("text/plain")
            epoch = api.log_epoch
            with api.lock:
                api.open_follows[name] = api.open_follows.get(name, 0) + 1
                api.changed.notify_all()
            try:
                self._follow(inst, pos, fmt, epoch)
            finally:
                with api.lock:
                    api.open_follows[name] -= 1

        def _follow(
            self, inst: _LogInstance, pos: int, fmt: Callable[[list[tuple[int, str]]], bytes], epoch: int
        ) -> None:
            while True:
                with api.lock:
                    batch = inst.lines[pos:]
                    pos += len(batch)
                    if not batch:
                        if inst.ended or api.stopping:
                            break
                        if api.log_epoch != epoch:
                            raise _Gone()
                        api.changed.wait(timeout=0.5)
                        continue
                self._chunk(fmt(batch))
            self._end_stream()

    return Handler
