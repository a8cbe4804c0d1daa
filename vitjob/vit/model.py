"""The Vision Transformer in MindSpore, with the ModelZoo seed's parameter names.

Pre-norm blocks, a class token, learned position embeddings, LayerNorm eps 1e-6 and tanh-GELU, as in
the original ViT. Attribute names are fixed by the seed's checkpoints
(``transformer.encoder.layer.{i}.attn.query.weight`` …): renaming one breaks checkpoint loading.
No I/O here; initialisers are separate functions so pretrained loading can skip them.
"""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common import initializer as init

from vitjob.vit.config import ViTConfig


def _dropout(rate: float) -> nn.Cell:
    return nn.Dropout(p=rate) if rate > 0 else nn.Identity()


def _dense(in_dim: int, out_dim: int) -> nn.Dense:
    # Xavier-uniform weights and zero bias, as the reference JAX implementation initialises Dense layers.
    return nn.Dense(in_dim, out_dim, weight_init=init.XavierUniform(), bias_init="zeros")


class Attention(nn.Cell):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.hidden_size // cfg.num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.query = _dense(cfg.hidden_size, cfg.hidden_size)
        self.key = _dense(cfg.hidden_size, cfg.hidden_size)
        self.value = _dense(cfg.hidden_size, cfg.hidden_size)
        self.out = _dense(cfg.hidden_size, cfg.hidden_size)
        self.attn_dropout = _dropout(cfg.attention_dropout_rate)
        self.proj_dropout = _dropout(cfg.attention_dropout_rate)
        self.softmax = nn.Softmax(axis=-1)
        self.qk = ops.BatchMatMul(transpose_b=True)
        self.pv = ops.BatchMatMul()

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def construct(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q = self._heads(self.query(x))
        k = self._heads(self.key(x))
        v = self._heads(self.value(x))
        probs = self.attn_dropout(self.softmax(self.qk(q, k) * self.scale))
        ctx = self.pv(probs, v).transpose(0, 2, 1, 3).reshape(b, n, c)
        return self.proj_dropout(self.out(ctx))


class Mlp(nn.Cell):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.fc1 = _dense(cfg.hidden_size, cfg.mlp_dim)
        self.fc2 = _dense(cfg.mlp_dim, cfg.hidden_size)
        self.act_fn = nn.GELU(approximate=True)
        self.dropout = _dropout(cfg.dropout_rate)

    def construct(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.dropout(self.act_fn(self.fc1(x)))))


class Embeddings(nn.Cell):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        p = cfg.patch_size
        self.patch_embeddings = nn.Conv2d(
            3,
            cfg.hidden_size,
            kernel_size=p,
            stride=p,
            pad_mode="valid",
            has_bias=True,
            weight_init=init.XavierUniform(),
            bias_init="zeros",
        )
        self.position_embeddings = Parameter(
            init.initializer(
                init.TruncatedNormal(0.02), (1, cfg.num_patches + 1, cfg.hidden_size), ms.float32
            )
        )
        self.cls_token = Parameter(init.initializer("zeros", (1, 1, cfg.hidden_size), ms.float32))
        self.dropout = _dropout(cfg.dropout_rate)

    def construct(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        x = self.patch_embeddings(x)  # (B, C, H/p, W/p)
        x = x.reshape(b, x.shape[1], -1).transpose(0, 2, 1)  # (B, N, C)
        cls = ops.broadcast_to(self.cls_token.astype(x.dtype), (b, 1, x.shape[2]))
        x = ops.concat((cls, x), axis=1) + self.position_embeddings.astype(x.dtype)
        return self.dropout(x)


class Block(nn.Cell):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm((cfg.hidden_size,), epsilon=cfg.layer_norm_eps)
        self.ffn_norm = nn.LayerNorm((cfg.hidden_size,), epsilon=cfg.layer_norm_eps)
        self.ffn = Mlp(cfg)
        self.attn = Attention(cfg)

    def construct(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.attention_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class Encoder(nn.Cell):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.layer = nn.CellList([Block(cfg) for _ in range(cfg.num_layers)])
        self.encoder_norm = nn.LayerNorm((cfg.hidden_size,), epsilon=cfg.layer_norm_eps)

    def construct(self, x: Tensor) -> Tensor:
        for block in self.layer:
            x = block(x)
        return self.encoder_norm(x)


class Transformer(nn.Cell):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)

    def construct(self, x: Tensor) -> Tensor:
        return self.encoder(self.embeddings(x))


class VisionTransformer(nn.Cell):
    """Image batch ``(B, 3, H, W)`` float32 → logits ``(B, num_classes)`` from the class token."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.transformer = Transformer(cfg)
        # Zero-initialised head, as the paper does when fine-tuning.
        self.head = nn.Dense(cfg.hidden_size, cfg.num_classes, weight_init="zeros", bias_init="zeros")

    def construct(self, x: Tensor) -> Tensor:
        return self.head(self.transformer(x)[:, 0])


def build_model(cfg: ViTConfig) -> VisionTransformer:
    return VisionTransformer(cfg)


def count_parameters(net: nn.Cell) -> int:
    return int(sum(np.prod(p.shape) for p in net.get_parameters()))


def flops_per_image(cfg: ViTConfig) -> int:
    """Forward-pass FLOPs (2 per multiply-add) of one image: matmuls and the patch convolution."""
    n = cfg.num_patches + 1
    d = cfg.hidden_size
    patch = 2 * cfg.num_patches * d * 3 * cfg.patch_size**2
    per_layer = 2 * n * (4 * d * d + 2 * d * cfg.mlp_dim) + 2 * 2 * n * n * d
    return patch + cfg.num_layers * per_layer + 2 * d * cfg.num_classes
