"""Build the inference graph and the manifest of a network, and write the bundled files:

    NAME.onnx            inference graph, weights as external data in NAME.weights.bin
    NAME.train.onnx      training step
    NAME.train_ema.onnx  training step that also updates an EMA copy (diffusion nets)
    NAME.weights.bin     initial parameters, float32 little-endian, manifest order
    NAME.json            manifest (see onnx/README.md)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx

from . import init as I
from .context import BuildContext
from .graph import OPSET, Graph
from .nets import Network
from .train_step import AdamDefaults, build_train_graph

FORMAT = 1

SCHEDULE_META = {
    "dpm.prediction": "eps",
    "dpm.schedule": "linear",
    "dpm.beta_start": "0.0001",
    "dpm.beta_end": "0.02",
    "dpm.num_train_timesteps": "1000",
}


def metadata(net: Network) -> dict[str, str]:
    meta = {"dpm.format": str(FORMAT), "dpm.network": net.name}
    if net.task == "eps":
        meta.update(SCHEDULE_META)
    else:
        meta["dpm.task"] = "classify"
    meta.update(net.metadata())
    return meta


def build_inference_graph(net: Network) -> tuple[Graph, BuildContext]:
    g = Graph(net.name)
    ctx = BuildContext(g, "infer", weights_file=f"{net.name}.weights.bin")
    outs = net.forward(ctx, net.infer_inputs(g))
    for k, v in outs.items():
        g.output(v, k)
    g.metadata.update(metadata(net))
    return g, ctx


def param_specs(net: Network) -> list[I.ParamSpec]:
    g = Graph(net.name)
    ctx = BuildContext(g, "spec")
    net.forward(ctx, net.infer_inputs(g))
    return ctx.specs


def _io(vals) -> list[dict]:
    return [{"name": v.name, "dtype": str(v.dtype), "shape": list(v.shape)} for v in vals]


def _train_section(net: Network, tg: Graph, ema: bool, file: str) -> dict:
    defaults = AdamDefaults()
    inits = {t.name: t for t in tg.initializers}
    exact = defaults.as_dict(ema=True)  # decimal values, not their float32 roundings
    inputs = []
    for v in tg.inputs:
        entry = _io([v])[0]
        if v.name in inits:
            entry["optional"] = True
            entry["default"] = exact.get(v.name, onnx.numpy_helper.to_array(inits[v.name]).item())
        inputs.append(entry)
    groups = ["p", "m", "v"] + (["e"] if ema else [])
    sec = {
        "file": file,
        "param_inputs": [f"{p}.<param>" for p in groups],
        "param_outputs": ["p_out.<param>", "m_out.<param>", "v_out.<param>"]
        + (["e_out.<param>"] if ema else []),
        "inputs": inputs,
        "outputs": _io(tg.outputs),
        "loss": "mse_eps" if net.task == "eps" else "cross_entropy",
        "optimizer": {
            "type": "adamw",
            "defaults": defaults.as_dict(ema),
            "fed_as_optional_inputs": True,
            "formula": "g *= clip; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; "
                       "p = p (1 - lr wd) - (lr / (1 - b1^step)) m / (sqrt(v) / "
                       "sqrt(1 - b2^step) + eps); clip = min(1, clip_norm / (||g|| + 1e-6)) "
                       "if clip_norm > 0 else 1",
        },
    }
    if ema:
        sec["ema"] = {"inputs": "e.<param>", "outputs": "e_out.<param>",
                      "formula": "e = d e + (1 - d) p_out", "decay_input": "ema_decay",
                      "default_decay": defaults.ema_decay}
    if net.has_dropout:
        sec["dropout"] = {
            "rate": net.config.dropout,
            "seed_input": "dropout_seed",
            "seed_dtype": "int64",
            "default_seed": 0,
            "scheme": "keep = squares32(counter = element index, key = mix(dropout_seed, step, "
                      "site)) >= rate * 2^32, computed in-graph with uint64 Add/Mul/Div only "
                      "(dpmgen/ops/nn.py); bit-identical on every provider for a given "
                      "(dropout_seed, step, batch contents' shape); independent of thread "
                      "count; row b's mask does not depend on the batch size",
        }
    else:
        sec["dropout"] = None
    if net.task == "classify":
        sec["label_base"] = 1
    return sec


def manifest(net: Network, ig: Graph, ictx: BuildContext, trains: dict[str, Graph]) -> dict:
    specs = ictx.specs
    man = {
        "format": FORMAT,
        "network": net.name,
        "task": net.task,
        "config": net.config_dict(),
        "seed": net.seed,
        "opset": OPSET,
        "weights_file": f"{net.name}.weights.bin",
        "num_params": int(sum(s.numel for s in specs)),
        "weights_bytes": int(sum(s.nbytes for s in specs)),
        "weights_sha256": I.weights_sha256(specs, net.seed),
        "params": I.layout(specs),
        "metadata": metadata(net),
        "inference": {"file": f"{net.name}.onnx", "inputs": _io(ig.inputs),
                      "outputs": _io(ig.outputs)},
    }
    for key, (file, tg) in trains.items():
        man[key] = _train_section(net, tg, key == "train_ema", file)
    return man


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def emit(net: Network, out_dir, weights: bool = True) -> list[Path]:
    """Write all files of `net` into out_dir; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ig, ictx = build_inference_graph(net)
    trains = {"train": (f"{net.name}.train.onnx", build_train_graph(net)[0])}
    if net.task == "eps":
        trains["train_ema"] = (f"{net.name}.train_ema.onnx", build_train_graph(net, ema=True)[0])
    for key, (_, tg) in trains.items():
        tg.metadata.update(metadata(net))
        tg.metadata["dpm.graph"] = key
    written = []
    path = out_dir / f"{net.name}.onnx"
    _write_bytes(path, ig.to_model().SerializeToString())
    written.append(path)
    for file, tg in trains.values():
        path = out_dir / file
        _write_bytes(path, tg.to_model().SerializeToString())
        written.append(path)
    man = manifest(net, ig, ictx, trains)
    path = out_dir / f"{net.name}.json"
    _write_bytes(path, (json.dumps(man, indent=1) + "\n").encode())
    written.append(path)
    if weights:
        path = out_dir / f"{net.name}.weights.bin"
        I.write_weights(path, ictx.specs, net.seed)
        written.append(path)
    return written


def initial_weights(net: Network) -> dict[str, np.ndarray]:
    return {s.name: a for s, a in I.init_params(param_specs(net), net.seed)}
