"""Networks for the user's own data (dpmgen/custom.py, `gen.py custom`): gradient checks for
several class counts, channel counts and resolutions, the closed-form parameter count, spec
validation, deterministic output, and one ORT training step on the written files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

from dpmgen import custom, export
from dpmgen.train_step import build_train_graph
from helpers import assert_close, ort_session, run_ort, run_ref
from nets_util import train_feeds

GEN = Path(__file__).resolve().parent.parent / "gen.py"


def unet_spec(resolution, channels, classes, width=4, depth=2, attention=(1,), dropout=0.1,
              res_blocks=1):
    return {"network": "unet", "name": "unet", "resolution": resolution, "channels": channels,
            "classes": classes, "width": width, "depth": depth, "attention": list(attention),
            "res_blocks": res_blocks, "dropout": dropout, "seed": 5}


# K = 1, 2, 10 (and 0), C = 1, 3, R = 16, 24, 32: tiny widths keep float64 reference runs short.
GRAD_SPECS = {
    "k1_c3_r16": unet_spec(16, 3, 1),
    "k2_c1_r24": unet_spec(24, 1, 2, attention=()),
    "k10_c3_r32": unet_spec(32, 3, 10, depth=3, attention=(2,)),
    "k0_c1_r16": unet_spec(16, 1, 0, dropout=0.0),
    "mlp": {"network": "mlp", "name": "mlp", "dim": 2, "width": 8, "depth": 2, "seed": 3},
}


@pytest.mark.parametrize("name", sorted(GRAD_SPECS))
def test_custom_gradients_match_finite_differences(name):
    net = custom.network(GRAD_SPECS[name])
    g_loss, ctx = build_train_graph(net, np.float64, loss_only=True)
    g_step, _ = build_train_graph(net, np.float64, expose_grads=True)
    rng = np.random.default_rng(3)
    feeds = train_feeds(net, g_step, ctx.specs, rng, batch=2)
    loss_feeds = {v.name: feeds[v.name] for v in g_loss.inputs if v.name in feeds}
    out = run_ref(g_step.to_model(), feeds)
    grads = {s.name: out[f"g.{s.name}"] for s in ctx.specs}
    ev = ReferenceEvaluator(g_loss.to_model())

    def loss_at(delta, h):
        f = dict(loss_feeds)
        for k, d in delta.items():
            f[f"p.{k}"] = loss_feeds[f"p.{k}"] + h * d
        return float(ev.run(["loss"], f)[0])

    gnorm = float(np.sqrt(sum((g ** 2).sum() for g in grads.values())))
    assert gnorm > 0
    # One direction over all parameters, one over the class embedding / first layer.
    directions = [{s.name: rng.standard_normal(s.shape) for s in ctx.specs}]
    first = ctx.specs[0]
    directions.append({first.name: rng.standard_normal(first.shape)})
    emb = [s for s in ctx.specs if s.name == "class_embedding.weight"]
    if emb:
        directions.append({emb[0].name: rng.standard_normal(emb[0].shape)})
    h = 1e-5
    for d in directions:
        fd = (loss_at(d, h) - loss_at(d, -h)) / (2 * h)
        an = float(sum((grads[k] * v).sum() for k, v in d.items()))
        dnorm = float(np.sqrt(sum((v ** 2).sum() for v in d.values())))
        assert abs(fd - an) <= 1e-6 * abs(an) + 1e-8 * gnorm * dnorm, (name, list(d)[:2], fd, an)
    # The float32 graph in ORT agrees with the float64 gradients.
    g32, _ = build_train_graph(net, np.float32, expose_grads=True)
    feeds32 = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in feeds.items()}
    got = run_ort(ort_session(g32.to_model()), feeds32)
    for s in ctx.specs:
        assert_close(got[f"g.{s.name}"], grads[s.name], rtol=2e-3, atol_rel=2e-4, atol_abs=1e-7,
                     what=f"{name} g.{s.name}")


COUNT_SPECS = [
    unet_spec(32, 3, 3, width=32, depth=3),  # unet_small's architecture
    unet_spec(16, 1, 10, width=16, depth=2, attention=()),
    unet_spec(24, 3, 1, width=8, depth=4, attention=(0, 3), res_blocks=2),
    unet_spec(64, 1, 0, width=12, depth=3),
    {"network": "mlp", "name": "mlp", "dim": 2, "width": 128, "depth": 3, "seed": 1},
    {"network": "mlp", "name": "mlp", "dim": 2, "width": 7, "depth": 1, "seed": 1},
]


@pytest.mark.parametrize("i", range(len(COUNT_SPECS)))
def test_parameter_count_matches_the_formula(i):
    spec = COUNT_SPECS[i]
    specs = export.param_specs(custom.network(spec))
    assert sum(s.numel for s in specs) == custom.param_count(spec)


def test_unet_small_and_toy2d_counts():
    assert custom.param_count(COUNT_SPECS[0]) == 1_143_139
    assert custom.param_count(COUNT_SPECS[4]) == 182_410


@pytest.mark.parametrize("change,msg", [
    ({"channels": 2}, "channels"),
    ({"resolution": 30, "depth": 3}, "divisible"),
    ({"attention": [2]}, "attention"),
    ({"dropout": 1.0}, "dropout"),
    ({"width": 0}, "width"),
    ({"classes": -1}, "classes"),
    ({"extra": 1}, "unknown"),
])
def test_bad_specs_are_refused(change, msg):
    spec = {**unet_spec(16, 3, 2), **change}
    with pytest.raises(ValueError, match=msg):
        custom.network(spec)


def test_gen_custom_is_deterministic_and_trains(tmp_path):
    spec = json.dumps(unet_spec(16, 1, 2, width=8))
    for out in ("a", "b"):
        subprocess.run([sys.executable, str(GEN), "custom", "--spec", spec, "--out",
                        str(tmp_path / out)], check=True, capture_output=True)
    for f in sorted((tmp_path / "a").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name
    man = json.loads((tmp_path / "a" / "unet.json").read_text())
    assert man["num_params"] == custom.param_count(json.loads(spec))
    assert man["metadata"]["dpm.num_classes"] == "2"
    assert man["metadata"]["dpm.channels"] == "1"
    # One step of the written training graph in ORT: finite loss, parameters change.
    w = np.fromfile(tmp_path / "a" / "unet.weights.bin", dtype="<f4")
    sess = ort.InferenceSession(str(tmp_path / "a" / "unet.train.onnx"),
                                providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds, off = {}, 0
    for p in man["params"]:
        n = int(np.prod(p["shape"], dtype=np.int64))
        feeds[f"p.{p['name']}"] = w[off:off + n].reshape(p["shape"])
        feeds[f"m.{p['name']}"] = np.zeros(p["shape"], np.float32)
        feeds[f"v.{p['name']}"] = np.zeros(p["shape"], np.float32)
        off += n
    x = rng.standard_normal((3, 1, 16, 16)).astype(np.float32)
    feeds.update({"x_t": x, "t": np.array([1.0, 500.0, 999.0], np.float32),
                  "labels": np.array([0, 1, 2], np.int64), "eps": x,
                  "lr": np.array(1e-3, np.float32), "step": np.array(1.0, np.float32)})
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    assert np.isfinite(out["loss"])
    first = man["params"][0]["name"]
    assert not np.array_equal(out[f"p_out.{first}"], feeds[f"p.{first}"])


def test_gen_custom_reports_a_bad_spec(tmp_path):
    r = subprocess.run([sys.executable, str(GEN), "custom", "--spec",
                        json.dumps(unet_spec(16, 2, 2)), "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "channels must be 1 or 3" in r.stderr
