"""The committed files in onnx/models/: deterministic regeneration, the I/O contract, loading
in ONNX Runtime with full optimizations, parameter counts, and afhq64 at batch 1."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest

from dpmgen import export, nets
from dpmgen import init as I
from helpers import MODELS, ort_session, run_ort

SMALL = ["toy2d", "unet_small", "classifier"]
ALL = SMALL + ["afhq64"]
GEN = MODELS.parent / "gen.py"


def manifest(name):
    return json.loads((MODELS / f"{name}.json").read_text())


def graphs(name):
    files = [f"{name}.onnx", f"{name}.train.onnx"]
    if manifest(name)["task"] == "eps":
        files.append(f"{name}.train_ema.onnx")
    return files


def test_regeneration_is_byte_identical(tmp_path):
    """`gen.py all` is deterministic: regenerating reproduces every committed file."""
    for name in ALL:
        written = export.emit(nets.get(name), tmp_path, weights=name != "afhq64")
        for p in written:
            committed = MODELS / p.name
            assert committed.exists(), f"{p.name} is not committed"
            assert p.read_bytes() == committed.read_bytes(), f"{p.name} differs: run gen.py all"
    expected = {p.name for p in tmp_path.iterdir()}
    present = {p.name for p in MODELS.iterdir() if p.suffix in (".onnx", ".json", ".bin")}
    present.discard("afhq64.weights.bin")  # may be generated locally (git-ignored)
    assert present == expected
    for p in MODELS.iterdir():
        if p.name != "afhq64.weights.bin":
            assert p.stat().st_size < 20 * 2 ** 20, f"{p.name} is too large to commit"


@pytest.mark.parametrize("name", ALL)
def test_graphs_pass_onnx_checker(name):
    for f in graphs(name):
        if f == "afhq64.onnx":
            continue  # needs its weights file next to it: checked in the afhq64 test
        onnx.checker.check_model(str(MODELS / f))
        model = onnx.load(MODELS / f, load_external_data=False)
        assert model.opset_import[0].version == manifest(name)["opset"]


@pytest.mark.parametrize("name", SMALL)
def test_ort_loads_and_runs_bundled_graphs(name):
    man = manifest(name)
    from dpmgen.bench import feeds_for

    weights = I.read_weights(MODELS / f"{name}.weights.bin", export.param_specs(nets.get(name)))
    rng = np.random.default_rng(0)
    sess = ort_session(MODELS / f"{name}.onnx")
    out = run_ort(sess, feeds_for(man["inference"], man, weights, 3, rng, hw=16))
    assert all(np.isfinite(v).all() for v in out.values())
    for f in graphs(name)[1:]:
        key = "train_ema" if "ema" in f else "train"
        sess = ort_session(MODELS / f)
        out = run_ort(sess, feeds_for(man[key], man, weights, 3, rng, hw=16))
        assert np.isfinite(out["loss"]) and out["loss"] > 0


@pytest.mark.parametrize("name", ALL)
def test_manifest_and_weights_layout(name):
    man = manifest(name)
    specs = export.param_specs(nets.get(name))
    assert man["format"] == 1 and man["network"] == name
    assert [p["name"] for p in man["params"]] == [s.name for s in specs]
    off = 0
    for p, s in zip(man["params"], specs):
        assert p["shape"] == list(s.shape) and p["offset"] == off
        assert p["length"] == 4 * int(np.prod(s.shape))
        off += p["length"]
    assert man["weights_bytes"] == off
    assert man["num_params"] == off // 4
    wfile = MODELS / f"{name}.weights.bin"
    if name != "afhq64":
        data = wfile.read_bytes()
        assert len(data) == off
        assert hashlib.sha256(data).hexdigest() == man["weights_sha256"]
    # The inference graph's external data points at the same offsets.
    model = onnx.load(MODELS / f"{name}.onnx", load_external_data=False)
    ext = {t.name: {e.key: e.value for e in t.external_data} for t in model.graph.initializer
           if t.data_location == onnx.TensorProto.EXTERNAL}
    assert set(ext) == {p["name"] for p in man["params"]}
    for p in man["params"]:
        e = ext[p["name"]]
        assert e["location"] == f"{name}.weights.bin"
        assert int(e["offset"]) == p["offset"] and int(e["length"]) == p["length"]


def _dims(vi):
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", ALL)
def test_io_contract(name):
    man = manifest(name)
    model = onnx.load(MODELS / f"{name}.onnx", load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["dpm.format"] == "1" and meta["dpm.network"] == name
    ins = {i.name: i for i in model.graph.input}
    outs = [o.name for o in model.graph.output]
    specs = export.param_specs(nets.get(name))
    if man["task"] == "classify":
        assert list(ins) == ["x"] and outs == ["logits", "features"]
        assert _dims(ins["x"]) == ["batch", 3, "height", "width"]
        tr_data = ["x_t", "labels", "lr", "step"]
    else:
        for k, v in {"dpm.prediction": "eps", "dpm.schedule": "linear", "dpm.beta_start": "0.0001",
                     "dpm.beta_end": "0.02", "dpm.num_train_timesteps": "1000"}.items():
            assert meta[k] == v
        assert outs == ["out"]
        assert _dims(ins["t"]) == ["tb"]
        if name == "toy2d":
            assert list(ins) == ["x", "t"] and _dims(ins["x"]) == ["batch", 2]
            tr_data = ["x_t", "t", "eps", "lr", "step"]
        else:
            c = man["config"]
            assert list(ins) == ["x", "t", "labels"]
            assert _dims(ins["x"]) == ["batch", 3, c["resolution"], c["resolution"]]
            assert ins["labels"].type.tensor_type.elem_type == onnx.TensorProto.INT64
            assert meta["dpm.num_classes"] == str(c["num_classes"])
            assert meta["dpm.channels"] == "3" and meta["dpm.resolution"] == str(c["resolution"])
            tr_data = ["x_t", "t", "labels", "eps", "lr", "step"]
    names = [s.name for s in specs]
    for key in ("train", "train_ema"):
        if key not in man:
            continue
        tm = onnx.load(MODELS / man[key]["file"])
        state = ["p", "m", "v"] + (["e"] if key == "train_ema" else [])
        want = [f"{pre}.{n}" for pre in state for n in names] + tr_data
        got = [i.name for i in tm.graph.input]
        assert got[:len(want)] == want
        optional = {t.name for t in tm.graph.initializer}
        assert set(got[len(want):]) <= optional  # the rest have defaults
        want_out = ["loss"] + [f"{pre}_out.{n}" for pre in state for n in names] + ["grad_norm"]
        assert [o.name for o in tm.graph.output] == want_out
        assert [i["name"] for i in man[key]["inputs"]] == got


def test_toy2d_layer_list():
    """2 -> 128 -> 128 -> 128 -> 2, each layer an fc and a 256 -> h -> h time MLP."""
    specs = export.param_specs(nets.get("toy2d"))
    want = []
    for i, (a, b) in enumerate([(2, 128), (128, 128), (128, 128), (128, 2)]):
        want += [(f"layers.{i}.fc.weight", (b, a)), (f"layers.{i}.fc.bias", (b,)),
                 (f"layers.{i}.time_embedding.mlp.0.weight", (b, 256)),
                 (f"layers.{i}.time_embedding.mlp.0.bias", (b,)),
                 (f"layers.{i}.time_embedding.mlp.2.weight", (b, b)),
                 (f"layers.{i}.time_embedding.mlp.2.bias", (b,))]
    assert [(s.name, s.shape) for s in specs] == want
    assert sum(s.numel for s in specs) == 182410


def test_afhq64_parameter_count():
    """docs/workflow.md, section 6: about 58.8 M parameters."""
    n = sum(s.numel for s in export.param_specs(nets.get("afhq64")))
    assert n == 58_755_331
    assert round(n / 1e6, 1) == 58.8


def test_initialisation():
    w = export.initial_weights(nets.get("toy2d"))
    for k, v in w.items():
        fan_in = v.shape[-1] if v.ndim == 2 else {2: 2, 128: 128}.get(v.shape[0], None)
        if v.ndim == 2:
            assert np.abs(v).max() <= 1 / math.sqrt(fan_in)
    u = export.initial_weights(nets.get("unet_small"))
    assert np.abs(u["tail.2.weight"]).max() < 1e-5
    assert np.abs(u["downblocks.0.block2.3.weight"]).max() < 1e-5
    assert np.abs(u["head.bias"]).max() == 0
    assert np.all(u["tail.0.weight"] == 1)
    emb = u["class_embedding.weight"]
    assert abs(emb.std() - 1) < 0.1
    fan = 3 * 9 + 32 * 9
    assert np.abs(u["head.weight"]).max() <= math.sqrt(6 / fan) + 1e-7


@pytest.mark.parametrize("name", ["toy2d", "unet_small"])
def test_t_broadcast(name):
    """t of shape [1] broadcasts over the batch and equals t repeated per row."""
    man = manifest(name)
    from dpmgen.bench import feeds_for

    weights = I.read_weights(MODELS / f"{name}.weights.bin", export.param_specs(nets.get(name)))
    sess = ort_session(MODELS / f"{name}.onnx")
    feeds = feeds_for(man["inference"], man, weights, 4, np.random.default_rng(1))
    feeds["t"] = np.array([417.5], np.float32)
    a = run_ort(sess, feeds)["out"]
    b = run_ort(sess, {**feeds, "t": np.full(4, 417.5, np.float32)})["out"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_inference_matches_training_forward():
    """The training graph's loss equals the loss recomputed from the inference graph."""
    from dpmgen.bench import feeds_for

    for name in ("toy2d", "classifier"):
        man = manifest(name)
        weights = I.read_weights(MODELS / f"{name}.weights.bin",
                                 export.param_specs(nets.get(name)))
        tf = feeds_for(man["train"], man, weights, 5, np.random.default_rng(2), hw=16)
        loss = run_ort(ort_session(MODELS / f"{name}.train.onnx"), tf)["loss"]
        inf = ort_session(MODELS / f"{name}.onnx")
        if name == "toy2d":
            out = run_ort(inf, {"x": tf["x_t"], "t": tf["t"]})["out"]
            ref = np.mean((out.astype(np.float64) - tf["eps"]) ** 2)
        else:
            logits = run_ort(inf, {"x": tf["x_t"]})["logits"].astype(np.float64)
            ls = logits - logits.max(1, keepdims=True)
            ls = ls - np.log(np.exp(ls).sum(1, keepdims=True))
            ref = -np.mean(ls[np.arange(5), tf["labels"] - 1])
        assert abs(loss - ref) <= 1e-5 * abs(ref), name


def test_afhq64_builds_loads_and_steps_at_batch_1(tmp_path):
    """afhq64: `gen.py init` writes the weights the manifest describes; the inference graph
    and the training step run at batch 1 with full optimizations."""
    man = manifest("afhq64")
    wfile = tmp_path / "afhq64.weights.bin"
    subprocess.run([sys.executable, str(GEN), "init", "afhq64", "--out", str(wfile)],
                   check=True, capture_output=True)
    h = hashlib.sha256()
    with open(wfile, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    assert h.hexdigest() == man["weights_sha256"]
    assert wfile.stat().st_size == man["weights_bytes"]
    shutil.copy(MODELS / "afhq64.onnx", tmp_path)
    onnx.checker.check_model(str(tmp_path / "afhq64.onnx"))
    from dpmgen.bench import feeds_for

    weights = I.read_weights(wfile, export.param_specs(nets.get("afhq64")))
    rng = np.random.default_rng(0)
    sess = ort_session(tmp_path / "afhq64.onnx")
    out = run_ort(sess, feeds_for(man["inference"], man, weights, 1, rng))["out"]
    assert out.shape == (1, 3, 64, 64) and np.isfinite(out).all()
    del sess
    sess = ort_session(MODELS / "afhq64.train.onnx")
    feeds = feeds_for(man["train"], man, weights, 1, rng)
    names = ["loss", "grad_norm", "p_out.head.weight", "v_out.tail.2.bias"]
    res = dict(zip(names, sess.run(names, feeds)))
    assert np.isfinite(res["loss"]) and 0.5 < res["loss"] < 2.0  # ~1 for an untrained net
    assert np.isfinite(res["grad_norm"]) and res["grad_norm"] > 0
    assert not np.array_equal(res["p_out.head.weight"], weights["head.weight"])
    assert np.any(res["v_out.tail.2.bias"] > 0)
