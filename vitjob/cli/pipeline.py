"""Commands for pipelines (``vitjob submit … --then``): ``pipeline run``, ``pipeline status``,
``pipeline retry``, ``pipeline cancel``, ``pipeline delete`` and ``controller``.

``pipeline run NAME --wait`` drives a pipeline from this machine with the same reconcile loop the
in-cluster controller runs; ``controller`` is that controller (``--render`` prints its Deployment
and least-privilege RBAC instead of running it). Exit codes: 0 Completed (or running, without
``--wait``), 1 Failed, 2 usage errors and ``--timeout``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from vitjob import constants as c
from vitjob.api.status import PipelinePhase
from vitjob.cli.common import add_backend_arguments, client_from_args, format_pipeline, print_pipeline
from vitjob.client import Client
from vitjob.errors import UsageError
from vitjob.pipeline.model import PipelineRecord

log = logging.getLogger("vitjob")

# Seconds one request of the controller may take (the kubernetes backend's default too).
REQUEST_TIMEOUT_S = 30.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipeline",
        help="run or show a pipeline (vitjob submit … --then eval,export,infer310)",
        description="Pipelines chain stage jobs: train → eval → export → infer310. On a cluster a "
        "pipeline is a VitJob (`kubectl get vitjobs`, `kubectl describe vitjob NAME` for its Events); "
        "on the local backend, a record under --local-root.",
    )
    psub = p.add_subparsers(dest="pipeline_command", metavar="SUBCOMMAND", required=True)
    run = psub.add_parser(
        "run",
        help="advance a pipeline from this machine (what the controller does in the cluster)",
        description="Reconcile the pipeline once, or with --wait until it Completes or Fails. Safe to "
        "run beside a controller or another `pipeline run`: each stage job is created once.",
    )
    run.add_argument("name", help="pipeline name (the --name given to submit)")
    run.add_argument("--wait", action="store_true", help="keep going until the pipeline ends")
    run.add_argument(
        "--timeout", type=float, default=None, help="with --wait: give up after SECONDS (exit 2)"
    )
    run.add_argument(
        "--poll", type=float, default=c.DEFAULT_PIPELINE_POLL_S, help="seconds between checks (--wait)"
    )
    status = psub.add_parser("status", help="show a pipeline's phase and each stage's job and phase")
    status.add_argument("name", help="pipeline name")
    status.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    retry = psub.add_parser(
        "retry",
        help="rerun a Failed pipeline from its failed stage (earlier stages are not rerun)",
        description="Ask for a retry: the pipeline's spec.retry is increased by one (on a cluster "
        "`kubectl patch vitjob NAME --type merge -p '{\"spec\":{\"retry\":N}}'` does the same, N one "
        "more than status.retries). The controller (or `vitjob pipeline run NAME --wait`) then reruns "
        "the first stage not Completed as a new job <name>-<stage>-r<n> with the same inputs and "
        "outputs and goes on with the chain; status.stages keeps every attempt. When a gate stopped "
        "the pipeline, the next stage starts if the gates (changed with --gate) now hold.",
    )
    retry.add_argument("name", help="pipeline name")
    retry.add_argument(
        "--gate",
        action="append",
        default=None,
        metavar="STAGE.OUTPUT>=N",
        help="replace the pipeline's gates with these (repeatable; see `vitjob submit --help`)",
    )
    retry.add_argument("--no-gates", action="store_true", help="remove the pipeline's gates")
    retry.add_argument("--stage-retries", type=int, default=None, metavar="N",
                       help="replace the number of automatic retries of a failed stage")
    retry.add_argument(
        "--wait",
        action="store_true",
        help="then advance the pipeline from here until it ends (the local backend always does)",
    )
    retry.add_argument(
        "--timeout", type=float, default=None, help="with --wait: give up after SECONDS (exit 2)"
    )
    retry.add_argument(
        "--poll", type=float, default=c.DEFAULT_PIPELINE_POLL_S, help="seconds between checks (--wait)"
    )
    cancel = psub.add_parser(
        "cancel",
        help="stop a pipeline: no further stage starts, its running stage job is aborted",
        description="Record the pipeline as Failed (cancelled) so that no controller or `pipeline run` "
        "starts another stage, then abort its stage jobs that are still running. The jobs and the "
        "pipeline stay listed (`vitjob pipeline delete NAME` removes them).",
    )
    cancel.add_argument("name", help="pipeline name")
    delete = psub.add_parser(
        "delete",
        help="cancel a pipeline, then delete its stage jobs and the pipeline itself",
        description="Cancel the pipeline, delete each of its stage jobs (with the objects submit created "
        "for them), then the stored pipeline.",
    )
    delete.add_argument("name", help="pipeline name")
    for q in (run, status, retry, cancel, delete):
        add_backend_arguments(q)
    run.set_defaults(func=_cmd_run)
    retry.set_defaults(func=_cmd_retry)
    status.set_defaults(func=_cmd_status)
    cancel.set_defaults(func=_cmd_cancel)
    delete.set_defaults(func=_cmd_delete)
    _register_controller(sub)


# ------------------------------------------------------------------------------------- pipeline
def _cmd_run(args: argparse.Namespace) -> int:
    return _run(client_from_args(args), args.name, args.wait, args.poll, args.timeout)


def _run(client: Client, name: str, wait: bool, poll: float, timeout: float | None) -> int:
    seen: dict[str, str] = {}

    def report(record: PipelineRecord) -> None:
        for stage in record.stages:
            state = str(record.progress.get(stage, ""))
            key = f"{stage}#{record.attempt(stage)}"
            if state and seen.get(key) != state:
                job = record.job_names[stage]
                print(f"pipeline {record.name}: stage {stage} {state} (job {job})", flush=True)
            seen[key] = state

    record = client.run_pipeline(name, wait=wait, poll_s=poll, timeout_s=timeout, on_step=report)
    print(format_pipeline(client.pipeline(record.name)))
    if record.phase == PipelinePhase.FAILED:
        return 1
    return 0


def _cmd_retry(args: argparse.Namespace) -> int:
    if args.no_gates and args.gate:
        raise UsageError("pass either --gate or --no-gates, not both")
    gates = [] if args.no_gates else args.gate
    client = client_from_args(args)
    record = client.retry_pipeline(args.name, gates=gates, stage_retries=args.stage_retries)
    print(f"pipeline {args.name}: retry {record.spec.get('retry')} asked for", flush=True)
    if args.wait or client.backend.name == "local":
        return _run(client, args.name, True, args.poll, args.timeout)
    print(f"the controller carries it out; `vitjob pipeline status {args.name}` shows it, "
          f"`vitjob pipeline run {args.name} --wait` does it from here")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    print_pipeline(client_from_args(args).pipeline(args.name), args.output)
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    aborted = client_from_args(args).cancel_pipeline(args.name)
    jobs = f"; asked to abort {', '.join(aborted)}" if aborted else "; no stage job was running"
    print(f"cancelled pipeline {args.name}{jobs} (`vitjob pipeline delete {args.name}` removes it)")
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    deleted = client_from_args(args).delete_pipeline(args.name)
    jobs = f" and its jobs {', '.join(deleted)}" if deleted else " (it had no stage jobs left)"
    print(f"deleted pipeline {args.name}{jobs}")
    return 0


# ----------------------------------------------------------------------------------- controller
def _register_controller(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "controller",
        help="run the pipeline controller (in the cluster: a Deployment, see --render)",
        description="Watch VitJobs (vitjob.io/v1alpha1: `kubectl get vitjobs`) and their Volcano Jobs, and "
        "run each VitJob's stages: create the next stage's job when one completes, write the VitJob's "
        "status and Events. State lives on the cluster: restart it at any time. With --leader-elect "
        "several replicas may run; one acts. The VitJob CRD must be installed (--render prints it).",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", default=None, help="namespace to watch (default: the context's)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    p.add_argument("--leader-elect", action="store_true", help="elect one active replica through a Lease")
    p.add_argument(
        "--health-port",
        type=int,
        default=c.DEFAULT_HEALTH_PORT,
        help=f"port of /healthz and /readyz (default {c.DEFAULT_HEALTH_PORT}; 0: any free port)",
    )
    p.add_argument("--health-host", default="0.0.0.0", help="address of the health endpoint")
    p.add_argument(
        "--identity", default="", help=f"name in the Lease (default ${c.ENV_CONTROLLER_ID} or host)"
    )
    p.add_argument("--lease-name", default=c.CONTROLLER_NAME, help="the Lease's name")
    p.add_argument(
        "--lease-namespace",
        default=None,
        help="the Lease's namespace (default: the context's); with --render -A: the controller's namespace",
    )
    p.add_argument("--lease-duration", type=float, default=c.DEFAULT_LEASE_DURATION_S, metavar="S")
    p.add_argument("--renew-deadline", type=float, default=c.DEFAULT_RENEW_DEADLINE_S, metavar="S")
    p.add_argument("--retry-period", type=float, default=c.DEFAULT_RETRY_PERIOD_S, metavar="S")
    p.add_argument(
        "--resync",
        type=float,
        default=c.DEFAULT_RESYNC_S,
        metavar="S",
        help="reconcile every pipeline at least this often",
    )
    p.add_argument(
        "--progress-interval",
        type=float,
        default=c.DEFAULT_PROGRESS_INTERVAL_S,
        metavar="S",
        help="read a running train stage's progress (one request) and write it to the VitJob's "
        f"status.progress at most this often per pipeline (default {c.DEFAULT_PROGRESS_INTERVAL_S:g})",
    )
    p.add_argument(
        "--render",
        action="store_true",
        help="print the VitJob CRD and the controller's Deployment, ServiceAccount and RBAC as YAML; "
        "run nothing (`| kubectl apply -f -` installs them; the CRD needs cluster-admin)",
    )
    p.add_argument(
        "--no-crd",
        action="store_true",
        help="--render: leave the VitJob CRD out (it is installed already, e.g. by helm)",
    )
    p.add_argument("--image", default="", help="--render: controller image (default: the vitjob CPU image)")
    p.add_argument("--replicas", type=int, default=2, help="--render: replicas (>1 adds --leader-elect)")
    p.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    p.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    p.set_defaults(func=_cmd_controller)


def _cmd_controller(args: argparse.Namespace) -> int:
    if args.render:
        from vitjob.generate import render_crd
        from vitjob.render.manifests import render_controller_documents

        if not args.no_crd:
            sys.stdout.write(render_crd())
        docs = render_controller_documents(
            namespace=args.namespace or args.lease_namespace or c.DEFAULT_NAMESPACE,
            all_namespaces=args.all_namespaces,
            image=args.image,
            replicas=args.replicas,
            health_port=args.health_port,
            progress_interval_s=args.progress_interval,
        )
        sys.stdout.write("".join(f"---\n{d}" for d in docs))
        return 0
    from vitjob.controller.loop import Controller, ControllerOptions
    from vitjob.kube.client import RetryPolicy, connect

    options = ControllerOptions(
        namespace=args.namespace,
        all_namespaces=args.all_namespaces,
        leader_elect=args.leader_elect,
        identity=args.identity,
        lease_name=args.lease_name,
        lease_namespace=args.lease_namespace,
        lease_duration_s=args.lease_duration,
        renew_deadline_s=args.renew_deadline,
        retry_period_s=args.retry_period,
        resync_s=args.resync,
        health_host=args.health_host,
        health_port=args.health_port,
        progress_interval_s=args.progress_interval,
    )
    api, namespace = connect(args.kubeconfig, args.context, args.namespace, RetryPolicy(), REQUEST_TIMEOUT_S)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    Controller(api, namespace, options).run(stop)
    return 0
