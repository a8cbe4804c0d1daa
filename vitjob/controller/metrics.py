"""The controller's Prometheus metrics, served at ``/metrics`` on its health port (``health``).

Each ``Controller`` has its own ``CollectorRegistry`` (never the process-wide default one), so several
controllers in one process (tests, benchmarks) count apart. What is measured:

- ``vitjob_controller_reconciles_total{result}``: reconciles of a pipeline by how they ended:
  ``success`` (actions applied or none needed), ``conflict`` (a stale record: read again and retried),
  ``error`` (retried with backoff);
- ``vitjob_controller_reconcile_duration_seconds``: how long one reconcile took (a histogram);
- ``vitjob_controller_workqueue_depth``: pipelines waiting in the work queue (ready and delayed);
- ``vitjob_controller_workqueue_retries_total``: pipelines put back into the queue after a failure or
  a conflict;
- ``vitjob_controller_leader``: 1 while this replica leads (acts), else 0;
- ``vitjob_controller_api_requests_total{verb,resource,code}``: the controller's requests to the API
  server by verb (``watch`` for watch requests), resource and HTTP status code (``<error>``: no answer);
- ``vitjob_controller_progress_reads_total{result}``: reads of rank 0's progress (``found``/``none``);
- ``vitjob_vitjobs{namespace,phase}``: the VitJobs the controller's cache holds, by phase (every phase
  of each namespace it holds one in, 0 included); empty while it does not lead.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from vitjob.api.status import PipelinePhase
from vitjob.kube.errors import Op

# Seconds: a reconcile from the cache takes milliseconds; one that creates a stage job, a request or two.
RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PhaseCollector(Collector):
    """``vitjob_vitjobs{namespace,phase}`` from the (namespace, phase) of each VitJob, read at scrape time."""

    def __init__(self, phases: Callable[[], Iterable[tuple[str, str]]]):
        self.phases = phases

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "vitjob_vitjobs", "VitJobs in the controller's cache, by namespace and phase",
            labels=["namespace", "phase"],
        )
        counts = Tally(self.phases())
        for namespace in sorted({ns for ns, _ in counts}):
            for phase in PipelinePhase:
                family.add_metric([namespace, str(phase)], counts.get((namespace, str(phase)), 0))
        yield family


class ControllerMetrics:
    """The metrics of one controller, in their own registry.

    Args:
        queue_depth: how many pipelines wait in the work queue now.
        is_leader: whether this replica leads now.
        phases: (namespace, phase) of each VitJob in the cache now.
    """

    def __init__(
        self,
        queue_depth: Callable[[], int],
        is_leader: Callable[[], bool],
        phases: Callable[[], Iterable[tuple[str, str]]],
    ):
        self.registry = CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "vitjob_controller_reconciles", "Reconciles of a pipeline, by result", ["result"], registry=r
        )
        self.reconcile_seconds = Histogram(
            "vitjob_controller_reconcile_duration_seconds", "Time one reconcile of a pipeline took",
            buckets=RECONCILE_BUCKETS, registry=r,
        )
        depth = Gauge("vitjob_controller_workqueue_depth", "Pipelines waiting in the work queue", registry=r)
        depth.set_function(lambda: float(queue_depth()))
        self.retries = Counter(
            "vitjob_controller_workqueue_retries", "Pipelines queued again after a failure or a conflict",
            registry=r,
        )
        leader = Gauge("vitjob_controller_leader", "1 while this replica leads, else 0", registry=r)
        leader.set_function(lambda: 1.0 if is_leader() else 0.0)
        self.api_requests = Counter(
            "vitjob_controller_api_requests", "Requests to the API server, by verb, resource and status code",
            ["verb", "resource", "code"], registry=r,
        )
        self.progress_reads = Counter(
            "vitjob_controller_progress_reads", "Reads of rank 0's training progress, by result",
            ["result"], registry=r,
        )
        for result in ("success", "conflict", "error"):
            self.reconciles.labels(result)  # present at 0 from the start
        for result in ("found", "none"):
            self.progress_reads.labels(result)
        r.register(PhaseCollector(phases))

    def observe_request(self, op: Op, code: str) -> None:
        """An ``vitjob.kube.client.Observer``: count one answer from the API server."""
        self.api_requests.labels(op.verb, op.resource, code).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
