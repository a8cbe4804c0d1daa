"""Google ViT-B_16.npz conversion, checked on a synthetic npz with the real key names and shapes."""

from __future__ import annotations

from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

from vitjob.cli import main
from vitjob.errors import CheckpointError
from vitjob.vit.config import get_preset
from vitjob.vit.model import build_model
from vitjob.vit.npz import convert, interpolate_posemb, load_npz

ms.set_context(mode=ms.PYNATIVE_MODE)
ms.set_device("CPU")


def synthetic_weights(table: Path, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {}
    for line in table.read_text().splitlines()[2:]:
        if not line.strip():
            continue
        key, shape = line.split("\t")[:2]
        dims = tuple(int(s) for s in shape.split("x"))
        weights[key] = (rng.standard_normal(dims) * 0.05).astype(np.float32)
    return weights


@pytest.fixture(scope="module")
def npz_file(npz_key_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("npz") / "ViT-B_16.npz"
    np.savez(path, **synthetic_weights(npz_key_table))
    return path


@pytest.fixture(scope="module")
def loaded(npz_file: Path) -> tuple[ms.nn.Cell, dict[str, np.ndarray]]:
    cfg = get_preset("vit-b16").model
    net = build_model(cfg)
    params = load_npz(npz_file, cfg, head="truncate")
    not_loaded, unexpected = ms.load_param_into_net(
        net, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in params.items()}
    )
    assert not_loaded == [] and unexpected == []
    with np.load(npz_file) as npz:
        raw = {k: npz[k] for k in npz.files}
    return net, raw


def test_every_parameter_loads_none_left_over(loaded) -> None:
    net, raw = loaded
    head = net.head.weight.asnumpy()
    np.testing.assert_array_equal(head, raw["head/kernel"].T[:10])
    np.testing.assert_array_equal(net.head.bias.asnumpy(), raw["head/bias"][:10])


def test_patch_embedding_and_first_block_match_numpy(loaded) -> None:
    net, raw = loaded
    x = np.random.default_rng(2).standard_normal((1, 3, 224, 224)).astype(np.float32)
    emb = net.transformer.embeddings(ms.Tensor(x)).asnumpy()[0]
    # numpy: patches (196, 16, 16, 3) · kernel HWIO → (196, 768), then [cls; patches] + pos
    patches = x[0].reshape(3, 14, 16, 14, 16).transpose(1, 3, 2, 4, 0).reshape(196, 16, 16, 3)
    tokens = np.einsum("nhwc,hwco->no", patches, raw["embedding/kernel"]) + raw["embedding/bias"]
    expected = np.concatenate([raw["cls"][0], tokens]) + raw["Transformer/posembed_input/pos_embedding"][0]
    np.testing.assert_allclose(emb, expected, rtol=1e-3, atol=1e-3)

    # numpy attention block 0 straight from the npz layout (in, heads, head_dim)
    a = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1"
    h = emb.astype(np.float64)
    mu = h.mean(-1, keepdims=True)
    h = (h - mu) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)
    h = (
        h * raw["Transformer/encoderblock_0/LayerNorm_0/scale"]
        + raw["Transformer/encoderblock_0/LayerNorm_0/bias"]
    )
    q, k, v = (
        np.einsum("nd,dhk->hnk", h, raw[f"{a}/{n}/kernel"]) + raw[f"{a}/{n}/bias"][:, None, :]
        for n in ("query", "key", "value")
    )
    s = q @ k.transpose(0, 2, 1) / 8.0
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    attn = np.einsum("hnk,hkd->nd", s @ v, raw[f"{a}/out/kernel"]) + raw[f"{a}/out/bias"]
    block = net.transformer.encoder.layer[0]
    got = block.attn(block.attention_norm(ms.Tensor(emb[None]))).asnumpy()[0]
    np.testing.assert_allclose(got, attn, rtol=1e-3, atol=2e-4)


def test_zero_head_and_position_embedding_interpolation(npz_key_table: Path) -> None:
    weights = synthetic_weights(npz_key_table, seed=3)
    cfg = get_preset("vit-b16", num_classes=7, image_size=384).model
    params = convert(weights, cfg, head="zero")
    assert params["head.weight"].shape == (7, 768) and not params["head.weight"].any()
    pos = params["transformer.embeddings.position_embeddings"]
    assert pos.shape == (1, 1 + 24 * 24, 768)
    np.testing.assert_array_equal(pos[0, 0], weights["Transformer/posembed_input/pos_embedding"][0, 0])
    # bilinear zoom keeps the grid's corners
    src = weights["Transformer/posembed_input/pos_embedding"][0, 1:].reshape(14, 14, 768)
    np.testing.assert_allclose(pos[0, 1:].reshape(24, 24, 768)[0, 0], src[0, 0], atol=1e-6)
    np.testing.assert_allclose(pos[0, 1:].reshape(24, 24, 768)[-1, -1], src[-1, -1], atol=1e-6)


def test_interpolate_rejects_non_square_grid() -> None:
    with pytest.raises(CheckpointError, match="square"):
        interpolate_posemb(np.zeros((1, 1 + 10, 4), np.float32), 4)


def test_wrong_keys_and_shapes_are_listed(npz_key_table: Path) -> None:
    weights = synthetic_weights(npz_key_table)
    del weights["Transformer/encoderblock_3/MlpBlock_3/Dense_0/bias"]
    weights["Transformer/encoder_norm/scale"] = np.zeros(767, np.float32)
    with pytest.raises(CheckpointError) as err:
        convert(weights, get_preset("vit-b16").model)
    text = str(err.value)
    assert "missing key Transformer/encoderblock_3/MlpBlock_3/Dense_0/bias" in text
    assert "Transformer/encoder_norm/scale: shape (767,), expected (768,)" in text


def test_convert_npz_cli_writes_a_loadable_checkpoint(npz_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cifar10.ckpt"
    assert main(["convert-npz", str(npz_file), str(out), "--num-classes", "10", "--head", "truncate"]) == 0
    params = ms.load_checkpoint(str(out))
    assert params["head.weight"].shape == (10, 768)
    assert "transformer.encoder.layer.11.attn.out.weight" in params
    assert "wrote" in capsys.readouterr().out


def test_convert_npz_cli_bad_input_writes_nothing(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, cls=np.zeros((1, 1, 768), np.float32))
    out = tmp_path / "out.ckpt"
    assert main(["convert-npz", str(bad), str(out)]) == 1
    err = capsys.readouterr().err
    assert "not a ViT checkpoint" in err and "Traceback" not in err
    assert not out.exists()
    not_npz = tmp_path / "x.npz"
    not_npz.write_text("hello")
    assert main(["convert-npz", str(not_npz), str(out)]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert not out.exists()
