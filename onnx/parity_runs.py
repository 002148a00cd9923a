"""Full training runs of the reference part-1 recipe (docs/workflow.md, section 7), libdpm against PyTorch, measured side by side.

For each seed: PyTorch trains SimpleNet exactly as the reference script does
(torch.manual_seed(seed), default nn.Linear init, Adam 1e-3, batch 128, 5000 steps, sequential
batches of a 1M-point swiss roll, t = randint(0, 1000), eps = randn); libdpm trains with
`dpm train --preset toy2d --seed S` (its raw weights, model_raw/). ONE evaluator measures both:
the Chamfer distance of DPM-Solver-1 and the reference DPM-Solver-2 at 50 NFE (2048 samples,
mean of 3 sampling seeds) and of 1000-step DDPM (one sampling seed) against the first 2048
points of the reference set, and the denoising MSE on fresh data by timestep range. It also
records the size of the late updates |p_k - p_{k-1}| / |p_k| (steps 4500-5000) of PyTorch and
of libdpm's training graph run on the same batches.

usage: python onnx/parity_runs.py --seeds 0 1 2 3 4 5 [--dpm target/release/dpm] [--out DIR]
Needs torch, scikit-learn and scipy (scripts/parity sets them up); about 2 minutes per seed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from parity import NET_CFG, initial, manifest  # noqa: E402
from torchref import toy2d_out  # noqa: E402

F = torch.nn.functional
T = 1000
BETAS = torch.linspace(1e-4, 0.02, T, dtype=torch.float32)
ABAR = torch.cumprod(1.0 - BETAS, dim=0)
A32, S32 = ABAR.sqrt(), (1.0 - ABAR).sqrt()
abar = ABAR.double().numpy()
alpha, sigma = np.sqrt(abar), np.sqrt(1.0 - abar)
lam = np.log(alpha) - np.log(sigma)
RANGES = [(0, 10), (10, 100), (100, 300), (300, 700), (700, 1000)]


def swiss_roll(n, seed):
    from sklearn.datasets import make_swiss_roll
    x, _ = make_swiss_roll(n, noise=0.0, random_state=seed, hole=True)
    return x[:, [0, 2]]


def reference_init(seed):
    """PyTorch's default init in SimpleNet's construction order (TimeLinear: the time
    embedding's two Linears, then fc), after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    dims, P = NET_CFG["toy2d"].dims, {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        for name, (fi, fo) in ((f"layers.{i}.time_embedding.mlp.0", (256, b)),
                               (f"layers.{i}.time_embedding.mlp.2", (b, b)),
                               (f"layers.{i}.fc", (a, b))):
            lin = torch.nn.Linear(fi, fo)
            P[f"{name}.weight"] = lin.weight.detach().clone()
            P[f"{name}.bias"] = lin.bias.detach().clone()
    return P


def net(P):
    cfg = NET_CFG["toy2d"]
    return lambda x, t: toy2d_out(cfg, P, x, t.float())


def train_torch(seed, data, steps=5000, batch=128, lr=1e-3, late_from=4500):
    P = {k: v.requires_grad_() for k, v in reference_init(seed).items()}
    opt = torch.optim.Adam(P.values(), lr=lr)
    f, d, late, batches = net(P), torch.from_numpy(data), [], []
    for it in range(steps):
        lo = (it * batch) % (len(d) - batch + 1)
        x0 = d[lo:lo + batch]
        t = torch.randint(0, T, (batch,))
        eps = torch.randn_like(x0)
        if it >= late_from - 1:
            batches.append((x0, t, eps))
        loss = F.mse_loss(f(A32[t, None] * x0 + S32[t, None] * eps, t), eps)
        opt.zero_grad()
        loss.backward()
        old = [p.detach().clone() for p in P.values()] if it >= late_from else None
        opt.step()
        if old is not None:
            late.append(math.sqrt(sum(((p.detach() - o) ** 2).sum().item()
                                      for p, o in zip(P.values(), old)))
                        / math.sqrt(sum((p.detach() ** 2).sum().item() for p in P.values())))
    return {k: v.detach() for k, v in P.items()}, float(np.mean(late))


def ort_late_updates(seed, data, late_from=4500, steps=5000):
    """libdpm's training graph run on PyTorch's batch stream of `seed` (same arithmetic as
    libdpm's own run to 1e-6, see parity.py) from libdpm's initial weights."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(HERE, "models", "toy2d.train.onnx"), so,
                                providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    init = initial(manifest("toy2d"))
    st = {f"p.{n}": v for n, v in init.items()}
    for n, v in init.items():
        st[f"m.{n}"], st[f"v.{n}"] = np.zeros_like(v), np.zeros_like(v)
    torch.manual_seed(seed)
    reference_init(seed)  # consume the init draws, so t and eps are the reference's
    d, late = torch.from_numpy(data), []
    for it in range(steps):
        lo = (it * 128) % (len(d) - 128 + 1)
        x0 = d[lo:lo + 128]
        t = torch.randint(0, T, (128,))
        eps = torch.randn_like(x0)
        feed = dict(st)
        feed.update(x_t=(A32[t, None] * x0 + S32[t, None] * eps).numpy(),
                    t=t.float().numpy(), eps=eps.numpy(), lr=np.array(1e-3, np.float32),
                    step=np.array(it + 1, np.float32))
        res = dict(zip(outs, sess.run(None, feed)))
        new = {k: res[k.replace(".", "_out.", 1)] for k in st}
        if it >= late_from:
            dp = math.sqrt(sum(((new[k] - st[k]).astype(np.float64) ** 2).sum()
                               for k in st if k.startswith("p.")))
            pn = math.sqrt(sum((new[k].astype(np.float64) ** 2).sum()
                               for k in st if k.startswith("p.")))
            late.append(dp / pn)
        st = new
    return float(np.mean(late))


def ref_timesteps(n):
    return np.round(np.linspace(0, T - 1, n + 1)).astype(np.int64)[::-1][:-1]


def t_of_lambda(lmb):
    """The reference's lambda -> t: log alpha, linear interpolation on the continuous grid
    t in (0, 1], truncated to an index."""
    la = -0.5 * np.logaddexp(0.0, -2.0 * lmb)
    grid = np.linspace(0.0, 1.0, T + 1)[1:]
    t = np.interp(la, np.log(alpha)[::-1], grid[::-1])
    return int((t - 1.0 / T) * T)


@torch.no_grad()
def sample(f, xt, solver, nfe, gen=None):
    x = xt.clone()
    full = lambda s: torch.full((x.shape[0],), int(s))  # noqa: E731
    if solver == "ddpm":
        for t in range(T - 1, -1, -1):
            eps = f(x, full(t))
            b = float(BETAS[t])
            x = (x - (b / sigma[t]) * eps) / math.sqrt(1.0 - b)
            if t > 0:
                var = b * (1.0 - abar[t - 1]) / (1.0 - abar[t])
                x = x + math.sqrt(var) * torch.randn(x.shape, generator=gen)
        return x
    n = nfe if solver == "dpm1" else nfe // 2
    for s in ref_timesteps(n):
        t = max(int(s) - T // n, 0)
        h = lam[t] - lam[s]
        e = f(x, full(s))
        if solver == "dpm1":
            x = (alpha[t] / alpha[s]) * x - sigma[t] * math.expm1(h) * e
        else:
            m = t_of_lambda(0.5 * (lam[s] + lam[t]))
            u = (alpha[m] / alpha[s]) * x - sigma[m] * math.expm1(0.5 * h) * e
            x = (alpha[t] / alpha[s]) * x - sigma[t] * math.expm1(h) * f(u, full(m))
    return x


def chamfer(a, b):
    d = torch.cdist(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64))
    return float((d.min(1).values ** 2).sum() + (d.min(0).values ** 2).sum())


def evaluate(P, ref, fresh):
    f = net(P)
    out = {}
    for solver in ("dpm1", "dpm2"):
        cds = []
        for s in range(3):
            xt = torch.randn(2048, 2, generator=torch.Generator().manual_seed(s))
            cds.append(chamfer(sample(f, xt, solver, 50), ref))
        out[solver] = float(np.mean(cds))
    g = torch.Generator().manual_seed(0)
    out["ddpm"] = chamfer(sample(f, torch.randn(2048, 2, generator=g), "ddpm", 1000, g), ref)
    g = torch.Generator().manual_seed(7)
    x0 = torch.from_numpy(fresh)
    mse = []
    with torch.no_grad():
        for lo, hi in RANGES:
            t = torch.randint(lo, hi, (len(fresh),), generator=g)
            eps = torch.randn(len(fresh), 2, generator=g)
            mse.append(float(((f(A32[t, None] * x0 + S32[t, None] * eps, t) - eps) ** 2).mean()))
    out["mse"] = mse
    return out


def load_libdpm(path):
    man = manifest("toy2d")
    raw = np.fromfile(path, dtype="<f4")
    P, off = {}, 0
    for p in man["params"]:
        n = int(np.prod(p["shape"]))
        P[p["name"]] = torch.from_numpy(raw[off:off + n].reshape(p["shape"]).copy())
        off += n
    return P


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(6)))
    ap.add_argument("--dpm", default=os.path.join(HERE, "..", "target", "release", "dpm"))
    ap.add_argument("--out", default=os.path.join(HERE, "..", "out", "parity"))
    ap.add_argument("--late-seeds", type=int, default=2,
                    help="seeds whose late update sizes are measured (slow: one extra run each)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    raw = swiss_roll(1_000_000, 0)
    mu, sd = raw.mean(), raw.std()
    data = ((raw - mu) / sd * 2.0).astype(np.float32)
    ref = data[:2048].copy()
    fresh = ((swiss_roll(40_000, 12345) - mu) / sd * 2.0).astype(np.float32)
    rows = []
    for seed in a.seeds:
        t0 = time.time()
        P, late = train_torch(seed, data)
        r = {"impl": "pytorch", "seed": seed, **evaluate(P, ref, fresh), "late_update": late}
        rows.append(r)
        print(json.dumps(r), f"({time.time() - t0:.0f} s)", flush=True)
        t0 = time.time()
        run = os.path.join(a.out, f"libdpm_seed{seed}")
        subprocess.run([a.dpm, "train", "--preset", "toy2d", "--seed", str(seed), "--out", run],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        P = load_libdpm(os.path.join(run, "model_raw", "toy2d.weights.bin"))
        r = {"impl": "libdpm", "seed": seed, **evaluate(P, ref, fresh)}
        if seed in a.seeds[:a.late_seeds]:
            r["late_update"] = ort_late_updates(seed, data)
        rows.append(r)
        print(json.dumps(r), f"({time.time() - t0:.0f} s)", flush=True)
    with open(os.path.join(a.out, "runs.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("\n| raw weights | DPM-Solver-1 | ref. DPM-Solver-2 | DDPM-1000 | seeds < 40 (both) |"
          " MSE t<10 | MSE t>=700 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for impl in ("pytorch", "libdpm"):
        rs = [r for r in rows if r["impl"] == impl]
        col = lambda k: np.array([r[k] for r in rs])  # noqa: E731
        ms = lambda v: f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"  # noqa: E731
        ok = sum(r["dpm1"] < 40 and r["dpm2"] < 40 for r in rs)
        mse = np.array([r["mse"] for r in rs])
        print(f"| {impl} ({len(rs)} seeds) | {ms(col('dpm1'))} | {ms(col('dpm2'))} | "
              f"{ms(col('ddpm'))} | {ok}/{len(rs)} | {mse[:, 0].mean():.4f} | "
              f"{mse[:, 4].mean():.4f} |")


if __name__ == "__main__":
    main()
