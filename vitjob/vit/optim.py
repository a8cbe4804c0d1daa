"""The update of a training step: AdamW with bias correction on MindSpore's fused ``AdamWeightDecay``
kernel (every device MindSpore targets, CPU included), and global-norm gradient clipping.

MindSpore 2.10's ``nn.AdamWeightDecay`` has no bias correction (a small ViT trained from scratch with
it barely moves in the first hundreds of steps) and ``mint.optim.AdamW`` has no CPU kernel. ``AdamW`` is
the textbook decoupled-weight-decay Adam (Loshchilov & Hutter) on top of ``nn.Optimizer``, so it takes
the same parameter groups and per-step learning-rate arrays as MindSpore's optimizers:

    m ← β1·m + (1-β1)·g,   v ← β2·v + (1-β2)·g²
    w ← w - lr·( (m/c1) / (√(v/c2) + ε) + λ·w ),   c1 = 1-β1^t, c2 = 1-β2^t

It runs as one fused ``AdamWeightDecay`` kernel per tensor, which computes
``w ← w - lr'·( m/(√v + ε') + λ'·w )`` without bias correction. The correction is folded into the step's
scalars: with ``s = √c2``, ``lr' = lr·s/c1``, ``ε' = ε·s`` and ``λ' = λ·c1/s`` the two updates are the
same expression (``(m/c1)/(√v/s + ε) = (s/c1)·m/(√v + ε·s)`` and ``lr'·λ' = lr·λ``), so only float
rounding differs: tests/test_optim.py checks every step against the formula above in float64 numpy.
β1^t and β2^t are kept as float32 parameters (``beta1_power``, ``beta2_power``: checkpointed).

``clip_by_global_norm`` scales every gradient by ``clip / max(‖g‖, clip)``, ‖g‖ the norm of all of them
together: one multiplication per tensor by a factor computed once (MindSpore's deprecated
``ops.clip_by_global_norm`` multiplies and divides each tensor); a large tensor's sum of squares is one
matrix product (``PRODUCT_SUM_MIN_SIZE``).
"""

from __future__ import annotations

from typing import Any

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops


def _fused_step(opt: Any, beta1: Tensor, beta2: Tensor, eps: Tensor, lr: Tensor, decay: Tensor,
                param: Parameter, m: Parameter, v: Parameter, grad: Tensor) -> Any:
    return opt(param, m, v, lr, beta1, beta2, eps, decay, ops.cast(grad, param.dtype))


# A float32 gradient of at least this many elements has its sum of squares computed as the product of the
# flattened tensor with itself (one matrix-product kernel reading it once, on every core) instead of
# Square then ReduceSum (which writes and reads back a temporary of the tensor's size): vit-b16's 200
# gradients, 85.8M values, 274-290 ms -> 183-190 ms here, the whole of the clipping's cost above the
# floor. Below it the two kernels cost the same (vit-tiny's 72 gradients: 3.2 ms either way) and stay, so
# small models' numbers do not change. Both sums are float32 and as close to the float64 sum (1.7e-7
# relative on vit-b16).
PRODUCT_SUM_MIN_SIZE = 1 << 17
_ROW_TIMES_ITSELF = ops.MatMul(transpose_b=True)


def _square_sum(grad: Tensor) -> Tensor:
    if grad.dtype == ms.float32 and grad.size >= PRODUCT_SUM_MIN_SIZE:  # both known when compiling
        row = ops.reshape(grad, (1, -1))
        return ops.reshape(_ROW_TIMES_ITSELF(row, row), ())
    total = ops.reduce_sum(ops.square(grad))
    return total if total.dtype == ms.float32 else ops.cast(total, ms.float32)  # decided when compiling


def _scale(factor: Tensor, grad: Tensor) -> Tensor:
    scaled = grad * factor
    return scaled if scaled.dtype == grad.dtype else ops.cast(scaled, grad.dtype)


def clip_by_global_norm(grads: Any, clip_norm: Tensor, hyper_map: Any) -> Any:
    """``grads`` scaled by ``clip_norm / max(global norm, clip_norm)`` (unchanged when the norm is below).

    ``hyper_map`` is an ``ops.HyperMap()`` of the calling cell (graph mode builds it in ``__init__``)."""
    norm = ops.sqrt(ops.addn(hyper_map(_square_sum, grads)))
    factor = clip_norm / ops.maximum(norm, clip_norm)
    return hyper_map(ops.partial(_scale, factor), grads)


def constant_decays(weight_decay: Any) -> tuple[float, ...] | None:
    """The per-parameter weight decays of an optimizer as floats when they are constants, else None."""
    values = weight_decay if isinstance(weight_decay, tuple) else (weight_decay,)
    if not all(isinstance(w, Tensor) for w in values):
        return None  # a schedule (Cell): computed per step
    return tuple(float(w.asnumpy().reshape(-1)[0]) for w in values)


class AdamW(nn.Optimizer):
    def __init__(
        self,
        params: Any,
        learning_rate: Any,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(learning_rate, params, weight_decay)
        self.beta1 = Tensor(beta1, ms.float32)
        self.beta2 = Tensor(beta2, ms.float32)
        self.eps = Tensor(eps, ms.float32)
        self.moments1 = self.parameters.clone(prefix="adam_m", init="zeros")
        self.moments2 = self.parameters.clone(prefix="adam_v", init="zeros")
        self.beta1_power = Parameter(Tensor(1.0, ms.float32), name="beta1_power")
        self.beta2_power = Parameter(Tensor(1.0, ms.float32), name="beta2_power")
        self.fused = ops.AdamWeightDecay()
        self.map = ops.HyperMap()
        # Constant decays (the usual case): scale each distinct value once per step, not once per tensor.
        decays = constant_decays(self.weight_decay)
        self.constant_decay = decays is not None
        self.decay_values = tuple(sorted(set(decays))) if decays is not None else ()
        self.decay_slots = tuple(self.decay_values.index(w) for w in decays) if decays is not None else ()

    def _scaled_decays(self, scale: Tensor) -> Any:
        """λ' of every parameter (a tuple for groups, one tensor otherwise)."""
        if self.constant_decay:
            distinct: tuple[Any, ...] = ()
            for value in self.decay_values:
                distinct += (value * scale,)
            if not self.is_group:
                return distinct[0]
            per_param: tuple[Any, ...] = ()
            for slot in self.decay_slots:
                per_param += (distinct[slot],)
            return per_param
        weight_decay = self.get_weight_decay()
        if self.is_group:
            return self.map(ops.partial(ops.mul, scale), weight_decay)
        return weight_decay * scale

    def construct(self, gradients: Any) -> Any:
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        b1p = self.beta1_power * self.beta1
        b2p = self.beta2_power * self.beta2
        ops.assign(self.beta1_power, b1p)
        ops.assign(self.beta2_power, b2p)
        bc1 = 1.0 - b1p
        root_bc2 = ops.sqrt(1.0 - b2p)
        eps = self.eps * root_bc2
        decay = self._scaled_decays(bc1 / root_bc2)
        if self.is_group_lr:
            lr = self.map(ops.partial(ops.mul, root_bc2 / bc1), lr)
            return self.map(ops.partial(_fused_step, self.fused, self.beta1, self.beta2, eps), lr, decay,
                            self.parameters, self.moments1, self.moments2, gradients)
        lr = lr * root_bc2 / bc1
        if self.is_group:
            return self.map(ops.partial(_fused_step, self.fused, self.beta1, self.beta2, eps, lr), decay,
                            self.parameters, self.moments1, self.moments2, gradients)
        return self.map(ops.partial(_fused_step, self.fused, self.beta1, self.beta2, eps, lr, decay),
                        self.parameters, self.moments1, self.moments2, gradients)
