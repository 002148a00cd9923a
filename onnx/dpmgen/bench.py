"""Timing of the bundled graphs in ONNX Runtime (CPU provider, full optimizations).

Used by `gen.py bench` and quoted in onnx/README.md.  This module (only) needs onnxruntime.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_BATCH = {"toy2d": 128, "unet_small": 16, "classifier": 64, "afhq64": 1}


def _session(path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _concrete(shape, batch, hw):
    return [batch if d == "batch" else 1 if d == "tb" else hw if d in ("height", "width") else d
            for d in shape]


def feeds_for(section: dict, man: dict, weights: dict, batch: int, rng, hw: int = 32,
              t_rows: int | None = None) -> dict:
    """Random data feeds (and the given parameters) for a manifest graph section."""
    feeds = {}
    k = man["config"].get("num_classes", 0)
    for i in section["inputs"]:
        n = i["name"]
        pre, _, rest = n.partition(".")
        if pre == "p":
            feeds[n] = weights[rest]
        elif pre in ("m", "v", "e"):
            feeds[n] = np.zeros_like(weights[rest]) if pre != "e" else weights[rest]
        elif i.get("optional"):
            continue
        elif n == "t":
            feeds[n] = rng.uniform(0, 999, t_rows or batch).astype(np.float32)
        elif n == "labels":
            lo = 1 if man["task"] == "classify" else 0
            feeds[n] = rng.integers(lo, k + 1, batch).astype(np.int64)
        elif n == "lr":
            feeds[n] = np.array(1e-4, np.float32)
        elif n == "step":
            feeds[n] = np.array(1.0, np.float32)
        else:
            feeds[n] = rng.standard_normal(_concrete(i["shape"], batch, hw)).astype(np.float32)
    return feeds


def _time(sess, feeds, iters: int) -> dict:
    for _ in range(2):
        sess.run(None, feeds)
    wall, cpu = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        sess.run(None, feeds)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"min_ms": 1e3 * min(wall), "median_ms": 1e3 * statistics.median(wall),
            "cpu_ms": 1e3 * statistics.median(cpu)}


def run(name: str, models, batch: int | None = None, threads: int = 2, iters: int = 10,
        hw: int = 32) -> dict:
    from . import export, nets

    models = Path(models)
    man = json.loads((models / f"{name}.json").read_text())
    batch = batch or DEFAULT_BATCH.get(name, 16)
    net = nets.get(name)
    weights = export.initial_weights(net)
    rng = np.random.default_rng(0)
    out = {"network": name, "batch": batch, "threads": threads}
    with tempfile.TemporaryDirectory() as tmp:
        inf = models / f"{name}.onnx"
        if not (models / f"{name}.weights.bin").exists():
            shutil.copy(inf, tmp)
            export.I.write_weights(Path(tmp) / f"{name}.weights.bin", export.param_specs(net),
                                   net.seed)
            inf = Path(tmp) / f"{name}.onnx"
        t0 = time.perf_counter()
        s_inf = _session(inf, threads)
        s_train = _session(models / f"{name}.train.onnx", threads)
        out["load_s"] = time.perf_counter() - t0
        out["infer"] = _time(s_inf, feeds_for(man["inference"], man, weights, batch, rng, hw),
                             iters)
        if "t" in [i["name"] for i in man["inference"]["inputs"]]:
            out["infer_t1"] = _time(s_inf, feeds_for(man["inference"], man, weights, batch, rng,
                                                     hw, t_rows=1), iters)
        out["train"] = _time(s_train, feeds_for(man["train"], man, weights, batch, rng, hw),
                             iters)
    out["ratio"] = out["train"]["min_ms"] / out["infer"]["min_ms"]
    return out


def format_result(r: dict) -> str:
    lines = [f"{r['network']}: batch {r['batch']}, {r['threads']} threads, "
             f"sessions loaded in {r['load_s']:.1f} s"]
    for key, label in (("infer", "inference (t per row)"), ("infer_t1", "inference (t [1])"),
                       ("train", "training step")):
        if key in r:
            v = r[key]
            lines.append(f"  {label:22s} min {v['min_ms']:8.1f} ms  median {v['median_ms']:8.1f} ms"
                         f"  cpu {v['cpu_ms']:8.1f} ms")
    lines.append(f"  train / inference = {r['ratio']:.2f}")
    return "\n".join(lines)
