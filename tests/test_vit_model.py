"""The ViT cells: parameter count and names of the seed, shapes, and a numpy cross-check of one block."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest

from vitjob.vit.config import get_preset
from vitjob.vit.model import build_model, count_parameters, flops_per_image

ms.set_context(mode=ms.PYNATIVE_MODE)
ms.set_device("CPU")


@pytest.fixture(scope="module")
def b16() -> ms.nn.Cell:
    return build_model(get_preset("vit-b16").model)


def test_b16_has_the_seeds_parameter_count_and_names(b16: ms.nn.Cell, npz_key_table) -> None:
    assert count_parameters(b16) == 85_806_346
    names = {p.name for p in b16.get_parameters()}
    assert len(names) == 200
    rows = [line.split("\t") for line in npz_key_table.read_text().splitlines()[2:] if line.strip()]
    seed_names = {r[2] for r in rows if r[2].startswith(("transformer.", "head."))}
    assert seed_names == names


def test_tiny_forward_shape_and_finite() -> None:
    net = build_model(get_preset("vit-tiny").model)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32))
    out = net(x).asnumpy()
    assert out.shape == (3, 10)
    assert np.isfinite(out).all()


def test_flops_count_matches_a_hand_count_for_b16() -> None:
    cfg = get_preset("vit-b16").model
    # 197 tokens, 12 layers: qkv+out 4·768², mlp 2·768·3072, attention 2·197·768 (scores and mix)
    n, d = 197, 768
    per_layer = 2 * n * (4 * d * d + 2 * d * 3072) + 4 * n * n * d
    expected = 2 * 196 * d * 3 * 16 * 16 + 12 * per_layer + 2 * d * 10
    assert flops_per_image(cfg) == expected
    assert 34e9 < expected < 36e9  # ViT-B/16 is ~17.6 GMACs per image


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + 1e-6) * g + b


def test_block_matches_a_numpy_transformer_block() -> None:
    cfg = get_preset("vit-tiny").model
    net = build_model(cfg)
    block = net.transformer.encoder.layer[0]
    p = {q.name.split("layer.0.")[1]: q.asnumpy().astype(np.float64) for q in block.get_parameters()}
    x = np.random.default_rng(1).standard_normal((2, cfg.num_patches + 1, cfg.hidden_size)).astype(np.float32)

    def dense(v: np.ndarray, name: str) -> np.ndarray:
        return v @ p[f"{name}.weight"].T + p[f"{name}.bias"]

    h = _layer_norm(x, p["attention_norm.gamma"], p["attention_norm.beta"])
    heads, hd = cfg.num_heads, cfg.hidden_size // cfg.num_heads
    q, k, v = (
        dense(h, f"attn.{n}").reshape(2, -1, heads, hd).transpose(0, 2, 1, 3)
        for n in ("query", "key", "value")
    )
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    x1 = x + dense((s @ v).transpose(0, 2, 1, 3).reshape(x.shape), "attn.out")
    f = dense(_layer_norm(x1, p["ffn_norm.gamma"], p["ffn_norm.beta"]), "ffn.fc1")
    f = 0.5 * f * (1 + np.tanh(np.sqrt(2 / np.pi) * (f + 0.044715 * f**3)))  # tanh-GELU
    expected = x1 + dense(f, "ffn.fc2")
    np.testing.assert_allclose(block(ms.Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-4)
