"""Training: the ``vitjob train`` stage.

One call trains one run directory (see ``checkpoints``). Re-running the same command resumes from
the latest checkpoint — this is how a restarted cluster job continues after a failure. A checkpoint
holds every parameter of the training step cell: model weights, optimizer moments, ``global_step``
(which indexes the learning-rate array) and, with loss scaling, the scale and its counters; loading
it is strict (exact names and shapes, or an error listing the differences). Per-epoch sample order is a
seeded permutation and a resumed epoch skips the batches already trained, so a resumed run sees the
batches (and, with one data worker, the augmentations) it would have seen without the interruption:
on CPU it ends bit-identical to a straight run (tests/test_train.py). ``best.ckpt`` is chosen on a
validation split held out of the training images; the test split is evaluated once, at the end. In a
MindSpore cluster (prepared by ``vitjob launch``) every rank trains its shard with averaged gradients;
rank 0 alone writes.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitjob.errors import CheckpointError, UsageError
from vitjob.progress import ProgressWriter
from vitjob.vit import checkpoints as ck
from vitjob.vit.config import Preset, get_preset
from vitjob.vit.data import Split, create_dataset, dataset_info, load_split, split_validation
from vitjob.vit.runtime import Runtime, set_up, sum_over_ranks

log = logging.getLogger(__name__)

OPTIMIZERS = ("momentum", "adamw")


@dataclass
class TrainOptions:
    data: Path
    output: Path
    preset: str = "vit-tiny"
    epochs: int | None = None
    batch_size: int | None = None  # per device
    lr: float | None = None  # peak learning rate for the global batch
    optimizer: str | None = None
    weight_decay: float | None = None
    warmup_epochs: float | None = None
    grad_clip: float | None = None
    pretrained: Path | None = None
    head: str = "zero"
    device: str = "cpu"
    amp: str = "auto"
    mode: str = "graph"
    seed: int = 1
    save_steps: int = 0  # also checkpoint every N steps (0: at epoch end only)
    keep: int = 2
    eval_interval: int = 1  # evaluate on the validation split every N epochs (0: only at the end)
    val_fraction: float = 0.1  # of the training images, held out to choose best.ckpt (0: best = last)
    log_steps: int = 0  # 0: about 10 lines per epoch
    num_workers: int | None = None
    hflip: bool | None = None  # None: from the data set's dataset.json
    random_crop: bool | None = None  # None: from the data set's dataset.json
    max_steps: int | None = None  # stop after this global step (benchmarks, tests)
    progress: bool | None = None  # None: a bar when stdout is a terminal
    # every rank writes OUT/rank-weights/rank-<r>.ckpt at the end, and rank-<r>.json: the steps it ran in
    # each epoch (checks)
    save_rank_weights: bool = False


@dataclass
class Plan:
    """Everything derived from the options before training starts."""

    preset: Preset
    optimizer: str
    epochs: int
    batch_size: int
    world_size: int
    steps_per_epoch: int
    peak_lr: float
    weight_decay: float
    warmup_steps: int
    grad_clip: float
    lr: np.ndarray = field(repr=False)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size


def make_plan(opts: TrainOptions, train_size: int, world_size: int) -> Plan:
    from vitjob.vit.schedule import warmup_cosine

    preset = get_preset(opts.preset)
    r = preset.recipe
    optimizer = opts.optimizer or r.optimizer
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, not {optimizer!r}")
    epochs = opts.epochs if opts.epochs is not None else r.epochs
    batch = opts.batch_size or r.batch_size
    if epochs <= 0 or batch <= 0:
        raise UsageError("--epochs and --batch-size must be positive")
    steps_per_epoch = (train_size // world_size) // batch
    if steps_per_epoch == 0:
        raise UsageError(
            f"{train_size} training images cannot fill one batch of {batch} on each of {world_size} "
            "processes: lower --batch-size"
        )
    peak = opts.lr if opts.lr is not None else r.base_lr * batch * world_size / r.base_batch
    warmup = round(
        (opts.warmup_epochs if opts.warmup_epochs is not None else r.warmup_epochs) * steps_per_epoch
    )
    total = epochs * steps_per_epoch
    lr = warmup_cosine(total, peak, warmup, peak * r.min_lr_ratio)
    return Plan(
        preset=preset,
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch,
        world_size=world_size,
        steps_per_epoch=steps_per_epoch,
        peak_lr=peak,
        weight_decay=opts.weight_decay if opts.weight_decay is not None else r.weight_decay,
        warmup_steps=warmup,
        grad_clip=opts.grad_clip if opts.grad_clip is not None else r.grad_clip,
        lr=lr,
    )


def build_optimizer(net: Any, plan: Plan) -> Any:
    from mindspore import Tensor, nn

    from vitjob.vit.optim import AdamW
    from vitjob.vit.schedule import param_groups

    groups = param_groups(net.trainable_params(), plan.weight_decay)
    lr = Tensor(plan.lr)
    if plan.optimizer == "momentum":
        return nn.Momentum(groups, learning_rate=lr, momentum=0.9)
    return AdamW(groups, learning_rate=lr, beta1=0.9, beta2=0.999, eps=1e-8)


def build_train_step(net: Any, optimizer: Any, plan: Plan, amp_level: str) -> Any:
    """One optimisation step as a cell: forward, backward, gradient all-reduce, clip, update.

    O0/O3 use a plain step with global-norm clipping; O1/O2 use MindSpore's dynamic loss scaling.
    """
    import mindspore as ms
    from mindspore import Tensor, nn, ops

    from vitjob.vit.optim import clip_by_global_norm

    loss_fn = nn.CrossEntropyLoss(label_smoothing=plan.preset.recipe.label_smoothing)
    with_loss = nn.WithLossCell(net, loss_fn)
    if amp_level in ("O1", "O2"):
        scale = nn.DynamicLossScaleUpdateCell(loss_scale_value=2.0**16, scale_factor=2, scale_window=1000)
        return nn.TrainOneStepWithLossScaleCell(with_loss, optimizer, scale_sense=scale)

    clip = float(plan.grad_clip)

    class ClippedStep(nn.TrainOneStepCell):
        def __init__(self, network: Any, optimizer: Any) -> None:
            super().__init__(network, optimizer)
            self.clip_norm = Tensor(clip, ms.float32)
            self.clip_map = ops.HyperMap()

        def construct(self, *inputs: Any) -> Any:
            loss = self.network(*inputs)
            sens = ops.fill(loss.dtype, loss.shape, self.sens)
            grads = self.grad(self.network, self.weights)(*inputs, sens)
            grads = self.grad_reducer(grads)
            if clip > 0:
                grads = clip_by_global_norm(grads, self.clip_norm, self.clip_map)
            return ops.depend(loss, self.optimizer(grads))

    return ClippedStep(with_loss, optimizer)


def training_state(step_cell: Any) -> list[dict[str, Any]]:
    """Every parameter of the training step cell, for a resumable checkpoint.

    That is the model weights, the optimizer's moments, ``global_step`` (which indexes the learning-rate
    array) and bias-correction powers, and with a loss-scale cell its scale and overflow counters.
    """
    return [{"name": p.name, "data": p} for p in step_cell.get_parameters()]


def restore_training_state(step_cell: Any, optimizer: Any, path: Path, plan: Plan, step: int) -> None:
    """Load ``path`` into every parameter of ``step_cell``, then check it continues this plan at ``step``."""
    from mindspore import nn

    ck.restore_all(step_cell, ck.load_params(path), str(path))
    global_step = int(optimizer.global_step.asnumpy().reshape(-1)[0])
    # With dynamic loss scaling an overflowing step skips the optimizer, so its counter may lag behind.
    lags = isinstance(step_cell, nn.TrainOneStepWithLossScaleCell)
    if global_step > step or (global_step != step and not lags):
        raise CheckpointError(
            f"{path} holds optimizer step {global_step} but state.json says step {step}: the run directory "
            "is inconsistent; delete state.json and ckpt/ to start the run afresh"
        )
    # The per-step learning-rate array is a parameter of the optimizer (indexed by global_step).
    saved = {p.name: p for p in step_cell.get_parameters()}["learning_rate"].asnumpy().reshape(-1)
    if saved.shape != plan.lr.shape or not np.array_equal(saved, plan.lr):
        raise UsageError(
            f"{path} was written with another learning-rate schedule (--lr, --warmup-epochs, --batch-size "
            "or the number of processes differ): resume with the run's original settings, or use another "
            "--output"
        )


def load_pretrained(net: Any, path: Path, head: str) -> None:
    """Initialise from a Google ``.npz`` or a MindSpore ``.ckpt`` (head replaced when shapes differ)."""
    import mindspore as ms

    from vitjob.vit.npz import load_npz

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"pretrained weights {path} not found")
    if path.suffix == ".npz":
        params = {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in load_npz(path, net.config, head).items()}
    else:
        params = ck.load_params(path)
    model_shapes = {p.name: tuple(p.shape) for p in net.get_parameters()}
    for name in ("head.weight", "head.bias"):
        if name in params and tuple(params[name].shape) != model_shapes[name]:
            log.info("pretrained %s has shape %s: replaced by a new head", name, tuple(params[name].shape))
            del params[name]
    missing = [n for n in model_shapes if n not in params and not n.startswith("head.")]
    if missing:
        raise CheckpointError(f"{path} lacks {len(missing)} model parameters, e.g. {', '.join(missing[:3])}")
    ck.load_into(net, params, str(path), strict_model=False)
    log.info("loaded pretrained weights from %s", path)


def evaluate_split(net: Any, split: Split, image_size: int, batch_size: int, workers: int | None,
                   rt: Runtime | None = None) -> dict:
    """Top-1 accuracy of ``net`` on every sample of ``split`` (no augmentation, no dropped batch).

    With a ``rt`` of several ranks it is a collective: every rank scores every ``world_size``-th sample
    from its rank on (their weights are the same) and the counts are summed over the ranks, so each rank
    returns the accuracy on the whole split in a fraction of the time one rank would take.

    The images go in batches of exactly ``batch_size``, the last filled up with blank images that no
    prediction matches (``pad_to_batches``): a batch of another size would compile the network once more
    (about a second for vit-tiny, more for larger models). ``even_batch`` picks a size that needs few.
    """
    rank, world = (rt.rank, rt.world_size) if rt is not None else (0, 1)
    part = split if world == 1 else Split(split.images[rank::world], split.labels[rank::world])
    correct = 0
    if len(part):
        net.set_train(False)
        dataset = create_dataset(
            pad_to_batches(part, batch_size), batch_size=batch_size, image_size=image_size, training=False,
            num_workers=workers,
        )
        for images, labels in dataset.create_tuple_iterator(num_epochs=1):
            pred = net(images).asnumpy().argmax(axis=1)
            correct += int((pred == labels.asnumpy()).sum())  # a blank image's label, -1, never matches
        net.set_train(True)
    if rt is not None:  # one rank: its own count
        correct = round(sum_over_ranks(rt, [correct])[0])
    return {"accuracy": correct / len(split), "top1_correct": correct, "samples": len(split)}


def even_batch(images: int, at_most: int) -> int:
    """The smallest batch size that takes ``images`` in as few batches as batches of ``at_most`` do."""
    batches = -(-images // at_most)
    return -(-images // batches)


PAD_LABEL = -1  # the label of a blank image added by ``pad_to_batches``: no class, no prediction equals it


def pad_to_batches(split: Split, batch_size: int) -> Split:
    """``split`` followed by as many blank (all-zero) images, labelled ``PAD_LABEL``, as fill its last
    batch."""
    missing = -len(split) % batch_size
    if missing == 0:
        return split
    blank = np.zeros((missing, *split.images.shape[1:]), dtype=split.images.dtype)
    labels = np.concatenate([split.labels.astype(np.int32), np.full(missing, PAD_LABEL, dtype=np.int32)])
    return Split(np.concatenate([split.images, blank]), labels)


class Reporter:
    """Progress on rank 0: a bar per epoch on a terminal, otherwise progress lines on stdout
    (``vitjob.progress``: what ``vitjob status`` reads back from the pod's log)."""

    def __init__(self, enabled: bool, use_bar: bool, steps_per_epoch: int, writer: Any = None) -> None:
        self.enabled = enabled
        self.use_bar = enabled and use_bar
        self.steps_per_epoch = steps_per_epoch
        self.writer = writer if enabled and not self.use_bar else None
        self._bar: Any = None
        self._task: Any = None

    def start_epoch(self, epoch: int, epochs: int, done: int) -> None:
        if not self.use_bar:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn(f"epoch {epoch + 1}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=self.steps_per_epoch, completed=done, info="")

    def resumed(self, step: int, epoch: int) -> None:
        if self.writer is not None and step > 0:
            self.writer.resumed(step, epoch)

    def checkpoint(self, step: int, epoch: int) -> None:
        if self.writer is not None:
            self.writer.checkpoint(step, epoch)

    def step(self, step: int, epoch: int, loss: float, info: str, is_log_step: bool) -> None:
        """Global step ``step`` of (1-based) ``epoch`` is done with ``loss``."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=1, info=info)
        elif self.writer is not None:
            self.writer.step(step, epoch, loss, emit=is_log_step)

    def end_epoch(self, message: str, step: int, epoch: int, accuracy: float | None) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self.enabled:
            log.info("%s", message)
        if self.writer is not None:
            self.writer.epoch_end(step, epoch, accuracy)


def train(opts: TrainOptions) -> dict[str, Any]:
    """Train (or resume) a run; return a summary (final accuracy, best, steps, timings)."""
    import mindspore as ms

    from vitjob.vit.model import build_model

    rt = set_up(opts.device, opts.amp, opts.mode, opts.seed)
    train_split, val_split = split_validation(load_split(opts.data, "train"), opts.val_fraction)
    test_split = load_split(opts.data, "test")
    info = dataset_info(opts.data)
    hflip = info.get("hflip", True) if opts.hflip is None else opts.hflip
    random_crop = info.get("random_crop", True) if opts.random_crop is None else opts.random_crop
    plan = make_plan(opts, len(train_split), rt.world_size)
    cfg = plan.preset.model
    out = Path(opts.output)
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)

    net = build_model(cfg)
    state = ck.load_state(out)
    if state is not None and (state.preset != plan.preset.name or state.total_steps != plan.total_steps):
        raise UsageError(
            f"{out} holds a run of preset {state.preset} with {state.total_steps} steps, but these settings "
            f"give preset {plan.preset.name} with {plan.total_steps} steps. Use another --output, or the "
            "run's original settings to resume it."
        )
    if (state is None or state.latest is None) and opts.pretrained:
        load_pretrained(net, opts.pretrained, opts.head)
    if rt.amp_level != "O0":
        net = ms.amp.auto_mixed_precision(net, rt.amp_level)
    optimizer = build_optimizer(net, plan)
    step_cell = build_train_step(net, optimizer, plan, rt.amp_level)
    step_cell.set_train(True)

    start_step = 0
    if state is not None and state.latest is not None:
        restore_training_state(step_cell, optimizer, out / state.latest, plan, state.step)
        start_step = state.step
        log.info("resuming %s from step %d (epoch %d) of %d", out, start_step, state.epoch, plan.total_steps)
    elif state is None:
        state = ck.RunState(
            preset=plan.preset.name,
            num_classes=cfg.num_classes,
            image_size=cfg.image_size,
            total_steps=plan.total_steps,
        )
    if rt.is_main:
        log.info(
            "training %s: %d images, %d epochs x %d steps, batch %d x %d processes, %s lr %.2e, "
            "amp %s, device %s",
            plan.preset.name,
            len(train_split),
            plan.epochs,
            plan.steps_per_epoch,
            plan.batch_size,
            rt.world_size,
            plan.optimizer,
            plan.peak_lr,
            rt.amp_level,
            rt.device,
        )
    use_bar = opts.progress if opts.progress is not None else sys.stdout.isatty()
    writer = ProgressWriter(sys.stdout, plan.epochs, plan.total_steps, plan.global_batch, start_step)
    reporter = Reporter(rt.is_main, use_bar, plan.steps_per_epoch, writer)
    reporter.resumed(start_step, min(start_step // plan.steps_per_epoch + 1, plan.epochs))
    log_steps = opts.log_steps or max(1, plan.steps_per_epoch // 10)
    # One evaluation batch size for the run, so validation and test share one compiled network: the most
    # even split of a rank's validation images into batches of at most 256 (and of at least the training
    # batch, 32 or more).
    eval_batch = min(256, max(plan.batch_size, 32))
    if val_split is not None:
        eval_batch = even_batch(-(-len(val_split) // rt.world_size), eval_batch)
    stop_at = min(plan.total_steps, opts.max_steps) if opts.max_steps else plan.total_steps
    n_used = (len(train_split) // rt.world_size) * rt.world_size
    step = start_step
    t_start = time.time()
    step_times: list[float] = []
    data_waits: list[float] = []
    last_eval: dict[str, Any] | None = None
    epoch_steps: dict[int, int] = {}  # epoch (1-based) -> steps this process ran in it

    def checkpoint(epoch: int) -> None:
        if not rt.is_main:
            return
        name = f"{ck.CKPT_DIR}/step-{step:08d}.ckpt"
        ck.save_ckpt_atomic(training_state(step_cell), out / name)
        state.checkpoints = [c for c in state.checkpoints if c != name] + [name]
        while len(state.checkpoints) > max(opts.keep, 1):
            (out / state.checkpoints.pop(0)).unlink(missing_ok=True)
        state.step, state.epoch = step, epoch
        ck.save_state(out, state)
        reporter.checkpoint(step, min(step // plan.steps_per_epoch + 1, plan.epochs))

    for epoch in range(step // plan.steps_per_epoch, plan.epochs):
        if step >= stop_at:
            break
        ms.dataset.config.set_seed(opts.seed * 1000 + epoch)
        order = np.random.default_rng(opts.seed * 1000 + epoch).permutation(len(train_split))[:n_used]
        dataset = create_dataset(
            train_split,
            batch_size=plan.batch_size,
            image_size=cfg.image_size,
            training=True,
            hflip=hflip,
            random_crop=random_crop,
            num_shards=rt.world_size,
            shard_id=rt.rank,
            num_workers=opts.num_workers,
            order=order,
        )
        done_in_epoch = step - epoch * plan.steps_per_epoch
        epoch_start = step
        if done_in_epoch:
            dataset = dataset.skip(done_in_epoch)
        reporter.start_epoch(epoch, plan.epochs, done_in_epoch)
        window_t, window_n, losses, waits = time.time(), 0, [], []
        fetch_t = time.time()
        for images, labels in dataset.create_tuple_iterator(num_epochs=1):
            t0 = time.time()
            waits.append(t0 - fetch_t)  # time spent waiting for the input pipeline
            out_loss = step_cell(images, labels)
            loss = float((out_loss[0] if isinstance(out_loss, tuple) else out_loss).asnumpy())
            step_times.append(time.time() - t0)
            data_waits.append(waits[-1])
            step += 1
            window_n += 1
            losses.append(loss)
            is_log = step % log_steps == 0 or step == stop_at
            img_s = window_n * plan.global_batch / max(time.time() - window_t, 1e-9)
            lr = float(plan.lr[step - 1])
            reporter.step(step, epoch + 1, loss, f"loss {loss:.4f} lr {lr:.2e} {img_s:.0f} img/s", is_log)
            if is_log and rt.is_main:
                ck.append_metrics(
                    out,
                    {
                        "step": step,
                        "epoch": epoch + 1,
                        "loss": float(np.mean(losses)),
                        "lr": lr,
                        "img_s": img_s,
                        "data_wait_ms": 1000 * float(np.mean(waits)),
                        "time": time.time(),
                    },
                )
                window_t, window_n, losses, waits = time.time(), 0, [], []
            if opts.save_steps and step % opts.save_steps == 0 and step % plan.steps_per_epoch:
                checkpoint(epoch)
            if step >= stop_at:
                break
            fetch_t = time.time()
        epoch_steps[epoch + 1] = step - epoch_start
        epoch_done = step % plan.steps_per_epoch == 0
        checkpoint(epoch + 1 if epoch_done else epoch)
        want_eval = epoch_done and (
            (opts.eval_interval and (epoch + 1) % opts.eval_interval == 0) or step >= plan.total_steps
        )
        msg = f"epoch {epoch + 1}/{plan.epochs} done at step {step}"
        if want_eval and val_split is not None:  # every rank scores its share (a collective)
            last_eval = evaluate_split(net, val_split, cfg.image_size, eval_batch, opts.num_workers, rt)
            acc, n_ok, n = last_eval["accuracy"], last_eval["top1_correct"], last_eval["samples"]
            msg += f": validation accuracy {acc:.4f} ({n_ok}/{n})"
            if rt.is_main:
                ck.append_metrics(
                    out, {"step": step, "epoch": epoch + 1, "val_accuracy": acc, "time": time.time()}
                )
                if _improves(acc, state.best):
                    ck.save_ckpt_atomic(net, out / ck.BEST_FILE)
                    state.best = {"file": ck.BEST_FILE, "val_accuracy": acc, "step": step}
                    ck.save_state(out, state)
        accuracy = last_eval["accuracy"] if want_eval and last_eval else None
        reporter.end_epoch(msg, step, epoch + 1, accuracy)

    if opts.save_rank_weights:
        ck.save_ckpt_atomic(net, out / "rank-weights" / f"rank-{rt.rank}.ckpt")
        ck.write_json_atomic(
            out / "rank-weights" / f"rank-{rt.rank}.json",
            {"rank": rt.rank, "resumed_from": start_step, "epoch_steps": epoch_steps},
        )
    test_eval = None
    if step >= plan.total_steps:
        # nothing to choose on: the last weights are the best
        if rt.is_main and val_split is None and (state.best or {}).get("step") != step:
            ck.save_ckpt_atomic(net, out / ck.BEST_FILE)
            state.best = {"file": ck.BEST_FILE, "val_accuracy": None, "step": step}
            ck.save_state(out, state)
        # The test split is evaluated once, on the final weights, never to choose anything; every rank
        # scores its share (a collective).
        test_eval = evaluate_split(net, test_split, cfg.image_size, eval_batch, opts.num_workers, rt)
        if rt.is_main and step > start_step:
            ck.append_metrics(
                out, {"step": step, "test_accuracy": test_eval["accuracy"], "time": time.time()}
            )
    elapsed = time.time() - t_start
    steps_run = step - start_step
    summary = {
        "preset": plan.preset.name,
        "steps": step,
        "total_steps": plan.total_steps,
        "resumed_from": start_step,
        "rank": rt.rank,
        "world_size": rt.world_size,
        "seconds": elapsed,
        "img_s": steps_run * plan.global_batch / elapsed if steps_run and elapsed > 0 else 0.0,
        "step_ms_median": 1000 * float(np.median(step_times[1:] or step_times or [0.0])),
        "data_wait_ms_median": 1000 * float(np.median(data_waits[1:] or data_waits or [0.0])),
        "accuracy": test_eval["accuracy"] if test_eval else None,  # final weights, test split
        "val_accuracy": last_eval["accuracy"] if last_eval else None,
        "best": state.best,
        "output": str(out),
    }
    if rt.is_main:
        _warn_if_input_bound(summary)
        summary["curves"] = _plot_curves(out)
        log.info(
            "finished at step %d/%d in %.1f s; test accuracy %s",
            step,
            plan.total_steps,
            elapsed,
            f"{summary['accuracy']:.4f}" if summary["accuracy"] is not None else "n/a",
        )
    return summary


def _improves(accuracy: float, best: dict[str, Any] | None) -> bool:
    """Whether a validation ``accuracy`` beats the best so far (one chosen without validation never does)."""
    # A tie goes to the later checkpoint: as accurate on validation, and trained further.
    return best is None or best.get("val_accuracy") is None or accuracy >= best["val_accuracy"]


def _plot_curves(out: Path) -> str | None:
    """``OUT/curves.png`` (loss, learning rate, accuracy against step); a failure is only logged."""
    from vitjob.errors import VitjobError

    try:
        from vitjob.plot import plot_run

        return str(plot_run(out))
    except (VitjobError, ImportError, OSError) as exc:
        log.warning("training curves not plotted: %s", exc)
        return None


def _warn_if_input_bound(summary: dict[str, Any]) -> None:
    """Say so when steps wait on the input pipeline for more than a fifth of their compute time."""
    wait, step_ms = summary["data_wait_ms_median"], summary["step_ms_median"]
    if step_ms > 0 and wait > 0.2 * step_ms:
        log.warning(
            "the input pipeline is the bottleneck: steps wait %.0f ms for data and compute for %.0f ms; "
            "raise --num-workers (up to one per core) or use fewer transforms",
            wait,
            step_ms,
        )
