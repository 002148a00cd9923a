"""Training parity of libdpm's bundled training graphs against PyTorch (float32).

The same initial weights (the bundled NAME.weights.bin) and the same batches (x0, t, eps,
labels) go through
  - PyTorch: the functional networks of torchref.py, torch.optim.Adam (lr 1e-3), float32;
  - PyTorch in float64: the control, i.e. how far float32 rounding alone moves the result;
  - libdpm's training-step graph (NAME.train.onnx) in ONNX Runtime, float32.
It compares the forward output (inference graph), the loss, every gradient (recovered from
Adam's first moment after step 1: m = (1 - beta1) g) and the Adam-updated weights after 1, 10
and 100 steps (toy2d) or 1 step (the small U-Net, with dropout active: torchref.Dropout
reproduces the graph's masks). It prints the table, and with --fixture writes the reference
values that tests/training_parity.rs checks on every `make test`, without PyTorch.

usage: python onnx/parity.py [--fixture tests/data/parity]   (scripts/parity sets up torch)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import onnxruntime as ort
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from dpmgen.nets import unet  # noqa: E402
from torchref import Dropout, toy2d_out, unet_out  # noqa: E402

F = torch.nn.functional
MODELS = os.path.join(HERE, "models")
LR = 1e-3
T = 1000
BETAS = torch.linspace(1e-4, 0.02, T, dtype=torch.float32)
ABAR = torch.cumprod(1.0 - BETAS, dim=0)
ort.set_default_logger_severity(3)


def manifest(name):
    with open(os.path.join(MODELS, f"{name}.json")) as f:
        return json.load(f)


def initial(man):
    raw = np.fromfile(os.path.join(MODELS, man["weights_file"]), dtype="<f4")
    out, off = {}, 0
    for p in man["params"]:
        n = int(np.prod(p["shape"]))
        out[p["name"]] = raw[off:off + n].reshape(p["shape"]).copy()
        off += n
    return out


def add_noise(x0, t, eps, dtype):
    """x_t with the float32 schedule of the reference (alpha = sqrt(cumprod(1 - beta)))."""
    a = ABAR.sqrt()[t].to(dtype)
    s = (1.0 - ABAR).sqrt()[t].to(dtype)
    shape = (-1,) + (1,) * (x0.dim() - 1)
    return a.view(shape) * x0 + s.view(shape) * eps


class TorchRun:
    """PyTorch training on given batches: float32 (the reference) or float64 (the control)."""

    def __init__(self, net, cfg, init, dtype, dropout_seed=None):
        self.net, self.cfg, self.dtype = net, cfg, dtype
        self.P = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in init.items()}
        self.opt = torch.optim.Adam(self.P.values(), lr=LR)
        self.dropout_seed, self.k = dropout_seed, 0
        self.grads = self.drop = None

    def step(self, b):
        self.k += 1
        d = self.dtype
        x0, eps = torch.tensor(b["x0"], dtype=d), torch.tensor(b["eps"], dtype=d)
        t = torch.tensor(b["t"], dtype=torch.int64)
        xt = add_noise(x0, t, eps, d)
        if self.net == "toy2d":
            out = toy2d_out(self.cfg, self.P, xt, t.to(d))
        else:
            drop = self.drop = Dropout(self.cfg.dropout, self.dropout_seed, self.k)
            out = unet_out(self.cfg, self.P, xt, t.to(d), torch.tensor(b["labels"]), drop)
        loss = F.mse_loss(out, eps)
        self.opt.zero_grad()
        loss.backward()
        self.grads = {k: v.grad.detach().double().numpy().copy() for k, v in self.P.items()}
        self.opt.step()
        return float(loss.detach())

    def params(self):
        return {k: v.detach().double().numpy().copy() for k, v in self.P.items()}


class OrtRun:
    """libdpm's training-step graph in ONNX Runtime (the same graph libdpm runs)."""

    def __init__(self, name, init, dropout_seed=None):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(os.path.join(MODELS, f"{name}.train.onnx"), so,
                                         providers=["CPUExecutionProvider"])
        self.outs = [o.name for o in self.sess.get_outputs()]
        self.names = list(init)
        self.st = {f"p.{n}": v.astype(np.float32) for n, v in init.items()}
        for n, v in init.items():
            self.st[f"m.{n}"] = np.zeros_like(v, np.float32)
            self.st[f"v.{n}"] = np.zeros_like(v, np.float32)
        self.dropout_seed, self.k = dropout_seed, 0
        self.grads = None

    def step(self, b):
        self.k += 1
        x0 = torch.tensor(b["x0"], dtype=torch.float32)
        eps = torch.tensor(b["eps"], dtype=torch.float32)
        xt = add_noise(x0, torch.tensor(b["t"]), eps, torch.float32)
        feed = dict(self.st)
        feed.update(x_t=xt.numpy(), t=np.asarray(b["t"], np.float32), eps=eps.numpy(),
                    lr=np.array(LR, np.float32), step=np.array(self.k, np.float32))
        if "labels" in b:
            feed["labels"] = np.asarray(b["labels"], np.int64)
        if self.dropout_seed is not None:
            feed["dropout_seed"] = np.array(self.dropout_seed, np.int64)
        res = dict(zip(self.outs, self.sess.run(None, feed)))
        self.st = {k: res[k.replace(".", "_out.", 1)] for k in self.st}
        if self.k == 1:  # m_1 = (1 - beta1) g_1
            self.grads = {n: self.st[f"m.{n}"].astype(np.float64) / 0.1 for n in self.names}
        return float(res["loss"])

    def params(self):
        return {n: self.st[f"p.{n}"].astype(np.float64) for n in self.names}


def forward_check(name, init, x, t, labels=None):
    """max |ORT inference graph - PyTorch float32| on the initial weights."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(MODELS, f"{name}.onnx"), so,
                                providers=["CPUExecutionProvider"])
    feed = {"x": x.astype(np.float32), "t": t.astype(np.float32)}
    if labels is not None:
        feed["labels"] = labels.astype(np.int64)
    ours = sess.run(None, feed)[0]
    P = {k: torch.tensor(v) for k, v in init.items()}
    tt = torch.tensor(t, dtype=torch.float32)
    if name == "toy2d":
        ref = toy2d_out(NET_CFG["toy2d"], P, torch.tensor(x), tt)
    else:
        ref = unet_out(NET_CFG[name], P, torch.tensor(x), tt, torch.tensor(labels))
    ref = ref.detach().numpy()
    return float(np.abs(ours - ref).max() / np.abs(ref).max()), ref


class _Toy2dCfg:
    dims = [2, 128, 128, 128, 2]
    temb_features = 256
    max_period = 10000.0


NET_CFG = {"toy2d": _Toy2dCfg(), "unet_small": unet.UNET_SMALL}


def flat(d, names):
    return np.concatenate([d[n].ravel() for n in names])


def rel(a, b, scale):
    return float(np.linalg.norm(a - b) / scale)


def toy2d_batches(rng, n_steps, b):
    """Swiss-roll points (normalized as docs/workflow.md, section 5), t uniform in 0..999, standard-normal eps."""
    out = []
    for _ in range(n_steps):
        u = rng.uniform(1.5 * np.pi, 4.5 * np.pi, b)
        x0 = np.stack([u * np.cos(u), u * np.sin(u)], 1) / 7.5 * 2.0
        out.append({"x0": x0.astype(np.float32), "t": rng.integers(0, T, b),
                    "eps": rng.standard_normal((b, 2)).astype(np.float32)})
    return out


def samples(v, g1, k):
    """k indices of a tensor to record: spread over it, among entries whose step-1 gradient is
    well above Adam's eps (an entry with |g| ~ 1e-8 moves by an arbitrary fraction of lr)."""
    v, g1 = v.ravel(), np.abs(g1.ravel())
    ok = np.flatnonzero(g1 > 1e-3 * g1.max() + 1e-6)
    if ok.size == 0:
        return []
    return sorted(set(ok[np.linspace(0, ok.size - 1, min(k, ok.size)).astype(int)].tolist()))


def toy2d(fixture):
    man = manifest("toy2d")
    names = [p["name"] for p in man["params"]]
    init = initial(man)
    batches = toy2d_batches(np.random.default_rng(20261202), 100, 16)
    t32, t64, o = (TorchRun("toy2d", NET_CFG["toy2d"], init, torch.float32),
                   TorchRun("toy2d", NET_CFG["toy2d"], init, torch.float64), OrtRun("toy2d", init))
    p0 = flat(init, names).astype(np.float64)
    rows, snaps, losses = [], {}, []
    for k, b in enumerate(batches, 1):
        l32, l64, lo = t32.step(b), t64.step(b), o.step(b)
        losses.append((l32, l64, lo))
        if k == 1:
            g32, g64, go = (flat(r.grads, names) for r in (t32, t64, o))
            gs = np.abs(g64).max()
            rows.append(("toy2d gradients, step 1 (max |diff| / max |g|)",
                         float(np.abs(g32 - g64).max() / gs), float(np.abs(go - g64).max() / gs),
                         float(np.abs(go - g32).max() / gs)))
            grads = {n: t32.grads[n] for n in names}
        if k in (1, 10, 100):
            a32, a64, ao = (flat(r.params(), names) for r in (t32, t64, o))
            moved = np.linalg.norm(a64 - p0)
            rows.append((f"toy2d weights after {k} steps (|diff| / |p_k - p_0|)",
                         rel(a32, a64, moved), rel(ao, a64, moved), rel(ao, a32, moved)))
            snaps[k] = t32.params()
    L = np.array(losses)
    rows.insert(0, ("toy2d loss, 100 steps (max rel diff)",
                    float(np.abs(L[:, 0] - L[:, 1]).max() / L[:, 1].min()),
                    float(np.abs(L[:, 2] - L[:, 1]).max() / L[:, 1].min()),
                    float(np.abs(L[:, 2] - L[:, 0]).max() / L[:, 0].min())))
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((64, 2)).astype(np.float32), rng.integers(0, T, 64)
    fwd, ref = forward_check("toy2d", init, x, t)
    rows.insert(0, ("toy2d forward output (max |diff| / max |out|)", None, fwd, None))
    if fixture:
        tensors = []
        for n in names:
            idx = samples(init[n], grads[n], 24)
            tensors.append({"name": n, "index": idx,
                            "grad_norm": float(np.linalg.norm(grads[n])),
                            "grad": [float(grads[n].ravel()[i]) for i in idx],
                            **{f"p{k}": [float(snaps[k][n].ravel()[i]) for i in idx]
                               for k in (1, 10, 100)}})
        write(fixture, "toy2d", {
            "network": "toy2d", "weights_sha256": man["weights_sha256"], "lr": LR,
            "batch": 16, "forward": {"x": x.ravel().tolist(), "t": t.tolist(),
                                     "out": ref.ravel().tolist()},
            "batches": [{"x0": b["x0"].ravel().tolist(), "t": b["t"].tolist(),
                         "eps": b["eps"].ravel().tolist()} for b in batches],
            "loss": L[:, 0].tolist(), "tensors": tensors})
    return rows


def unet_small(fixture):
    man = manifest("unet_small")
    names = [p["name"] for p in man["params"]]
    init = initial(man)
    cfg = NET_CFG["unet_small"]
    rng = np.random.default_rng(7)
    # Multiples of 1/64: exact in float32 and short in the fixture.
    b = {"x0": (np.round(rng.uniform(-1, 1, (2, 3, 32, 32)) * 64) / 64).astype(np.float32),
         "t": np.array([37, 802]), "labels": np.array([2, 0]),
         "eps": (np.round(rng.standard_normal((2, 3, 32, 32)) * 64) / 64).astype(np.float32)}
    seed = 11
    t32 = TorchRun("unet", cfg, init, torch.float32, seed)
    t64 = TorchRun("unet", cfg, init, torch.float64, seed)
    o = OrtRun("unet_small", init, seed)
    l32, l64, lo = t32.step(b), t64.step(b), o.step(b)
    g32, g64, go = (flat(r.grads, names) for r in (t32, t64, o))
    gs = np.abs(g64).max()
    p0 = flat(init, names).astype(np.float64)
    a32, a64, ao = (flat(r.params(), names) for r in (t32, t64, o))
    moved = np.linalg.norm(a64 - p0)
    # Per tensor, relative to the tensor's own scale; tensors whose gradient is zero in exact
    # arithmetic (the attention key bias: softmax ignores it) are left out.
    live = [n for n in names if np.abs(t64.grads[n]).max() > 1e-6 * gs]
    worst = max(live, key=lambda n: np.abs(o.grads[n] - t64.grads[n]).max()
                / np.abs(t64.grads[n]).max())
    x = rng.uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    fwd, ref = forward_check("unet_small", init, x, np.array([5, 900]), np.array([1, 3]))
    rows = [("unet_small forward output (max |diff| / max |out|)", None, fwd, None),
            ("unet_small loss, 1 step, dropout on (rel diff)", abs(l32 - l64) / l64,
             abs(lo - l64) / l64, abs(lo - l32) / l32),
            ("unet_small gradients (max |diff| / max |g|)", float(np.abs(g32 - g64).max() / gs),
             float(np.abs(go - g64).max() / gs), float(np.abs(go - g32).max() / gs)),
            (f"  worst tensor, relative to its own max |g|: {worst}", None,
             float(np.abs(o.grads[worst] - t64.grads[worst]).max()
                   / np.abs(t64.grads[worst]).max()), None),
            ("unet_small weights after 1 step (|diff| / |p_1 - p_0|)", rel(a32, a64, moved),
             rel(ao, a64, moved), rel(ao, a32, moved))]
    masks = t32.drop.masks
    dropped = float(np.mean([1.0 - m.float().mean().item() for m in masks]))
    rows.append((f"  dropout: {len(masks)} sites, dropped fraction {dropped:.4f}", None, None,
                 None))
    if fixture:
        tensors = []
        for n in names:
            idx = samples(init[n], t32.grads[n], 6)
            tensors.append({"name": n, "index": idx,
                            "grad_norm": float(np.linalg.norm(t32.grads[n])),
                            "grad": [float(t32.grads[n].ravel()[i]) for i in idx],
                            "p1": [float(t32.params()[n].ravel()[i]) for i in idx]})
        write(fixture, "unet_small", {
            "network": "unet_small", "weights_sha256": man["weights_sha256"], "lr": LR,
            "batch": 2, "dropout_seed": seed,
            "batches": [{"x0": b["x0"].ravel().tolist(), "t": b["t"].tolist(),
                         "eps": b["eps"].ravel().tolist(), "labels": b["labels"].tolist()}],
            "loss": [l32], "tensors": tensors})
    return rows


def _round(o):
    if isinstance(o, float):
        return float(f"{o:.9g}")
    if isinstance(o, dict):
        return {k: _round(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_round(v) for v in o]
    return o


def write(folder, name, obj):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.json")
    # float32 values need 9 significant digits to round-trip.
    text = json.dumps(_round(obj), separators=(",", ":"))
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path} ({os.path.getsize(path) // 1024} KiB)")


def freq_note():
    from dpmgen.layers import sinusoidal_frequencies
    ours = sinusoidal_frequencies(256)
    ref = torch.exp(-math.log(10000) * torch.arange(0, 128, dtype=torch.float32) / 128).numpy()
    return int((ours != ref).sum()), float(np.abs(ours - ref).max())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixture", help="write the reference values here (tests/data/parity)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    rows = toy2d(a.fixture) + unet_small(a.fixture)
    print(f"\n{'quantity':62s} {'torch32-torch64':>16s} {'libdpm-torch64':>15s} "
          f"{'libdpm-torch32':>15s}")
    fmt = lambda v: f"{v:15.2e}" if v is not None else f"{'':>15s}"  # noqa: E731
    for name, a32, ao, ao32 in rows:
        print(f"{name:62s} {fmt(a32)} {fmt(ao)} {fmt(ao32)}")
    n, d = freq_note()
    print(f"\nsinusoidal frequencies: {n} of 128 differ from PyTorch's float32 exp by one ulp "
          f"(max {d:.1e}); torchref uses the generator's values so the rest compares arithmetic.")


if __name__ == "__main__":
    main()
