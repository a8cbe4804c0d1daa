"""Pipelines: train → eval → export → infer310 as a chain of stage jobs, driven by a reconcile loop.

``vitjob submit … --then eval,export,infer310`` stores a pipeline (the run's spec, with the progress
recorded beside it) and starts its first stage; every later stage is rendered from the stored spec when
it starts, by every store alike (``define.stage_objects``). From then on the pipeline
advances by itself through ``reconcile``, run either by the in-cluster controller
(``vitjob.controller``) or by ``vitjob pipeline run NAME --wait``; both are the same code.

The design follows an operator's discipline:

- ``reconcile(observed)`` is a pure function of what the backend shows now (the stored pipeline
  record plus the stage jobs that exist) and returns the actions to take. No memory carries over
  between calls, so a restart at any moment neither duplicates nor skips a stage.
- Stage S of pipeline NAME is always the job ``NAME-S``: an existing job counts as created (the
  backend answers "already exists" and that is success), so two runners racing cannot create two.
- Progress is recorded on the pipeline (``StageState`` per stage, the pipeline's phase and reason),
  one write per cycle. A stage recorded as created whose job is gone was deleted behind the
  pipeline's back: the pipeline is marked Failed and says so; the job is never recreated silently.
- A Completed stage creates the next one; a Failed/Aborted/Terminated stage marks the pipeline
  Failed with the job's reason and stops; all stages Completed marks it Completed.

Modules: ``model`` (records, actions, the ``PipelineStore`` protocol), ``define`` (``--then``, the
VitJob spec, each stage's spec and objects), ``reconcile`` (the pure step), ``runner`` (apply, run,
cancel, delete), ``view`` (rows for people). Backends take part through ``PipelineStore``
(``vitjob.backends.kubernetes.store`` over VitJob resources, ``vitjob.backends.local.store`` over
files); this package imports no backend, no client layer and no CLI.
"""
