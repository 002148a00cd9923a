"""libdpm against PyTorch on the same GPU (issue 19): one run, one report.

The same U-Net (libdpm's afhq64 network, 58.8 M parameters, with the same weights file) in
PyTorch eager fp32 (onnx/torchref.py, an independent functional implementation) against
libdpm's `dpm` CLI on the CUDA provider:

- the training step at batch 16 (Adam, MSE on the noise; libdpm with its state on the device
  and, for reference, on the host; with and without TF32);
- guided sampling throughput: DPM-Solver-2 and DPM-Solver++(2M), 20 NFE, classifier-free
  guidance w = 7.5 (two U-Net rows per image and evaluation), batch 64 and 256; libdpm also
  with --tf32 on and each --conv-search. diffusers is used for DPM-Solver++(2M) when it is
  installed (DPMSolverMultistepScheduler); otherwise (the device image has no diffusers) a
  hand-written loop that does the same work per step: one guided U-Net evaluation and the
  second-order multistep update in data prediction;
- toy2d training, CPU against CUDA;
- resume bit-identity on the provider: a toy2d run stopped and resumed against one never
  stopped, and device against host state.

Writes OUT/report.md (markdown tables) and OUT/results.json. Every measurement that fails is
reported as failed, and the rest still run. `--quick` shrinks everything for a dry run of the
script itself on a CPU (scripts/gpu-check with GPU_CHECK_PROVIDER=cpu GPU_CHECK_QUICK=1): the
network becomes unet_small, batches and step counts tiny. Numbers from a dry run mean nothing.

Usage: python3 onnx/gpu_compare.py --out DIR --dpm target/release/dpm [--provider cuda] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "onnx"))


_RAW: dict = {}


def load_net(name: str, device):
    """The network's config (the generator's) and its parameters from the weights file, as
    fresh tensors on `device` (names as in the manifest, which torchref reads)."""
    import torch
    from dpmgen import nets

    man = json.loads((ROOT / "onnx/models" / f"{name}.json").read_text())
    if name not in _RAW:
        _RAW[name] = np.fromfile(ROOT / "onnx/models" / man["weights_file"], dtype="<f4")
    raw = _RAW[name]
    P = {}
    for p in man["params"]:
        o, n = p["offset"] // 4, p["length"] // 4
        P[p["name"]] = torch.from_numpy(raw[o:o + n].reshape(p["shape"]).copy()).to(device)
    return nets.get(name).config, P, man


def alpha_bar(device):
    import torch
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, 0).to(device)


def sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def torch_train_step(name, device, batch, steps, tf32):
    """Median ms per Adam step of the U-Net at `batch` (eager, after two warm-up steps)."""
    import torch
    from torchref import unet_out
    F = torch.nn.functional
    set_tf32(tf32)
    cfg, P, _ = load_net(name, device)
    for v in P.values():
        v.requires_grad_(True)
    opt = torch.optim.Adam(list(P.values()), lr=2e-4)
    ab = alpha_bar(device).float()
    res = cfg.resolution
    g = torch.Generator(device=device).manual_seed(0)

    def drop(h):
        return F.dropout(h, cfg.dropout, training=True)

    times = []
    for k in range(steps + 2):
        x0 = torch.randn(batch, cfg.in_channels, res, res, device=device, generator=g)
        eps = torch.randn(x0.shape, device=device, generator=g)
        t = torch.randint(0, 1000, (batch,), device=device, generator=g)
        labels = torch.randint(0, cfg.num_classes + 1, (batch,), device=device, generator=g)
        a = ab[t][:, None, None, None]
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(unet_out(cfg, P, x_t, t.float(), labels,
                                   drop if cfg.dropout > 0 else None), eps)
        loss.backward()
        opt.step()
        sync(device)
        if k >= 2:
            times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def set_tf32(on: bool):
    import torch
    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cuda.matmul.allow_tf32 = on


def torch_sample(name, device, solver, batch, nfe, w, tf32):
    """ms per image of guided sampling (after one warm-up evaluation at the batch size)."""
    import torch
    from torchref import unet_out
    set_tf32(tf32)
    cfg, P, _ = load_net(name, device)
    ab = alpha_bar(device)
    res = cfg.resolution
    g = torch.Generator(device=device).manual_seed(1)
    labels = torch.randint(1, cfg.num_classes + 1, (batch,), device=device, generator=g)
    both = torch.cat([labels, torch.zeros_like(labels)])

    def eps_at(x, t):
        """Guided noise prediction: cond and uncond rows in one batch of 2 * batch."""
        tt = torch.full((2 * batch,), float(t), device=device)
        e = unet_out(cfg, P, torch.cat([x, x]), tt, both)
        c, u = e[:batch], e[batch:]
        return u + w * (c - u)

    def lam(t):
        a = ab[t]
        return 0.5 * torch.log(a / (1 - a))

    def coefs(t):
        a = ab[t]
        return a.sqrt().float(), (1 - a).sqrt().float()

    x = torch.randn(batch, cfg.in_channels, res, res, device=device, generator=g)
    with torch.inference_mode():
        eps_at(x, 999)  # warm-up (cuDNN plans, allocator)
        sync(device)
        t0 = time.perf_counter()
        if solver == "dpm++2m":
            x = dpmpp_2m(x, eps_at, coefs, lam, nfe, device)
        else:
            x = dpm_solver_2(x, eps_at, coefs, lam, nfe // 2)
        sync(device)
        dt = time.perf_counter() - t0
    assert torch.isfinite(x).all(), "non-finite samples"
    return 1e3 * dt / batch


def timesteps(n):
    return [int(round(v)) for v in np.linspace(999, 0, n + 1)]


def dpmpp_2m(x, eps_at, coefs, lam, steps, device):
    """DPM-Solver++(2M) (Lu et al. 2022, algorithm 2; diffusers' DPMSolverMultistepScheduler
    with solver_order=2, midpoint, lower-order final step), data prediction."""
    try:
        from diffusers import DPMSolverMultistepScheduler  # noqa: F401
        # The loop below is the scheduler's update; diffusers' own object would only add
        # host-side bookkeeping per step, which is part of what is measured: use it if present.
        return dpmpp_2m_diffusers(x, eps_at, steps)
    except ImportError:
        pass
    ts = timesteps(steps)
    prev_x0, prev_h = None, None
    for i in range(steps):
        s, t = ts[i], ts[i + 1]
        a_s, s_s = coefs(s)
        x0 = (x - s_s * eps_at(x, s)) / a_s
        a_t, s_t = coefs(t)
        h = (lam(t) - lam(s)).float()
        if prev_x0 is None or i == steps - 1:
            d = x0
        else:
            r = prev_h / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
        x = (s_t / s_s) * x - a_t * torch_expm1(-h) * d
        prev_x0, prev_h = x0, h
    return x


def torch_expm1(h):
    import torch
    return torch.expm1(h)


def dpmpp_2m_diffusers(x, eps_at, steps):
    from diffusers import DPMSolverMultistepScheduler
    sch = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                                      beta_schedule="linear", solver_order=2,
                                      algorithm_type="dpmsolver++", lower_order_final=True)
    sch.set_timesteps(steps, device=x.device)
    for t in sch.timesteps:
        x = sch.step(eps_at(x, int(t)), t, x).prev_sample
    return x


def dpm_solver_2(x, eps_at, coefs, lam, steps):
    """DPM-Solver-2 (Lu et al. 2022, algorithm 1, r = 1/2), noise prediction: two
    evaluations per step."""
    ts = timesteps(steps)
    lams = {}

    def lam_f(t):
        if t not in lams:
            lams[t] = float(lam(t))
        return lams[t]

    for i in range(steps):
        s, t = ts[i], ts[i + 1]
        ls, lt = lam_f(s), lam_f(t)
        # The midpoint in lambda, mapped back to the nearest discrete timestep.
        lm = 0.5 * (ls + lt)
        u = min(range(t, s + 1), key=lambda k: abs(lam_f(k) - lm)) if s - t > 1 else s
        a_s, s_s = coefs(s)
        a_u, s_u = coefs(u)
        a_t, s_t = coefs(t)
        e_s = eps_at(x, s)
        h1 = lam_f(u) - ls
        x_u = (a_u / a_s) * x - s_u * math.expm1(h1) * e_s
        e_u = eps_at(x_u, u)
        h = lt - ls
        x = (a_t / a_s) * x - s_t * math.expm1(h) * e_u
    return x


# ---- libdpm through its CLI --------------------------------------------------------------------

def run(cmd, env_extra=None, timeout=900):
    env = dict(os.environ)
    env.update(env_extra or {})
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()[-400:]}")
    return p.stdout + p.stderr


def number(pattern, text):
    m = re.search(pattern, text)
    if not m:
        raise RuntimeError(f"no '{pattern}' in output: {text.strip()[-300:]}")
    return float(m.group(1))


def dpm_sample(a, out, solver, batch, nfe, extra=()):
    """libdpm's steady-state ms per image: `dpm sample` times its whole generation, whose first
    batch pays the warm-up (cuDNN's algorithm search, the arena's growth), so it runs one batch
    and then two, and the second batch's time is the difference."""
    def ms_total(num):
        text = run([a.dpm, "sample", "--model", str(ROOT / "onnx/models" / f"{a.network}.onnx"),
                    "--provider", a.provider, "--solver", solver, "--nfe", str(nfe),
                    "--guidance", "7.5", "--num", str(num), "--batch", str(batch),
                    "--out", str(out), *extra])
        return number(r"([0-9.]+) ms per sample", text) * num
    one = ms_total(batch)
    return (ms_total(2 * batch) - one) / batch


def dpm_train_step(a, network, provider, steps, placement, extra=()):
    """libdpm's median ms per step (dry run: one warm-up step, then `steps` timed)."""
    preset = "toy2d" if network == "toy2d" else "afhq64"
    cmd = [a.dpm, "train", "--preset", preset, "--network", network, "--provider", provider,
           "--dry-run", "--measure-steps", str(steps), *extra]
    if network != "toy2d":
        cmd += ["--data", "shapes", "--batch", str(a.train_batch)]
    text = run(cmd, {"DPM_TRAIN_STATE": placement})
    return number(r"time/step:\s+([0-9.]+) ms", text)


def resume_identity(a, out, placement):
    """toy2d: 2k steps at once vs k + k resumed, on the provider: same weights, bit for bit?"""
    k = a.resume_steps
    env = {"DPM_TRAIN_STATE": placement}
    base = [a.dpm, "train", "--preset", "toy2d", "--provider", a.provider,
            "--checkpoint-every", str(k)]
    run(base + ["--steps", str(2 * k), "--out", str(out / "whole")], env)
    run(base + ["--steps", str(k), "--out", str(out / "split")], env)
    run(base + ["--steps", str(2 * k), "--resume", "--out", str(out / "split")], env)
    files = ["model/toy2d.weights.bin", "model_raw/toy2d.weights.bin", "loss.csv"]
    same = all((out / "whole" / f).read_bytes() == (out / "split" / f).read_bytes()
               for f in files)
    return same, out / "whole"


# ---- the run --------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--dpm", required=True)
    ap.add_argument("--provider", default="cuda")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    import torch
    a.out.mkdir(parents=True, exist_ok=True)
    gpu = a.provider.startswith("cuda")
    device = torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")
    if a.quick:
        a.network, a.train_batch, batches, nfe, train_steps = "unet_small", 2, [2, 4], 4, 2
        a.resume_steps, toy_steps = 10, 20
    else:
        a.network, a.train_batch, batches, nfe, train_steps = "afhq64", 16, [64, 256], 20, 10
        a.resume_steps, toy_steps = 100, 200
    R = {"provider": a.provider, "torch_device": str(device), "network": a.network,
         "quick": a.quick, "torch": torch.__version__, "rows": {}}
    if device.type == "cuda":
        R["gpu"] = torch.cuda.get_device_name(0)
    try:
        import diffusers
        R["diffusers"] = diffusers.__version__
    except ImportError:
        R["diffusers"] = None

    def measure(section, label, fn):
        t0 = time.perf_counter()
        try:
            v = fn()
        except Exception as e:  # every failure is a row of the report, not the end of the run
            v = f"failed: {type(e).__name__}: {str(e)[:300]}"
            traceback.print_exc()
        R["rows"].setdefault(section, []).append([label, v])
        print(f"[compare] {section} | {label}: {v} ({time.perf_counter() - t0:.1f} s)",
              flush=True)
        return v

    net, b, p = a.network, a.train_batch, a.provider
    # 1. Training step.
    sec = f"{net} training step, batch {b} (ms/step, median)"
    measure(sec, "PyTorch eager fp32", lambda: torch_train_step(net, device, b, train_steps, False))
    if device.type == "cuda":
        measure(sec, "PyTorch eager, TF32 allowed",
                lambda: torch_train_step(net, device, b, train_steps, True))
    measure(sec, f"libdpm {p}, state on the device",
            lambda: dpm_train_step(a, net, p, train_steps, "device"))
    measure(sec, f"libdpm {p}, state on the host (earlier scheme)",
            lambda: dpm_train_step(a, net, p, train_steps, "host"))
    if gpu:
        measure(sec, f"libdpm {p}, state on the device, --tf32 on",
                lambda: dpm_train_step(a, net, p, train_steps, "device", ["--tf32", "on"]))

    # 2. Guided sampling.
    for solver in ["dpm++2m", "dpm2"]:
        for batch in batches:
            sec = f"{net} guided sampling, {solver}, {nfe} NFE, w = 7.5, batch {batch} (ms/image)"
            measure(sec, "PyTorch eager fp32" + (" (diffusers)" if R["diffusers"] and
                                                 solver == "dpm++2m" else ""),
                    lambda: torch_sample(net, device, solver, batch, nfe, 7.5, False))
            measure(sec, f"libdpm {p}",
                    lambda: dpm_sample(a, a.out / "s", solver, batch, nfe))
            # The variants at the smaller batch and for one solver only: GPU time is scarce
            # (issue 19), and they change the kernels, not the solver.
            if batch == batches[0] and solver == "dpm++2m":
                if device.type == "cuda":
                    measure(sec, "PyTorch eager, TF32 allowed",
                            lambda: torch_sample(net, device, solver, batch, nfe, 7.5, True))
                measure(sec, f"libdpm {p} --tf32 on",
                        lambda: dpm_sample(a, a.out / "s", solver, batch, nfe, ["--tf32", "on"]))
                for cs in ["heuristic", "default"]:
                    measure(sec, f"libdpm {p} --conv-search {cs}",
                            lambda: dpm_sample(a, a.out / "s", solver, batch, nfe,
                                               ["--conv-search", cs]))

    # 3. toy2d training, CPU against the provider.
    sec = "toy2d training, batch 128 (ms/step, median)"
    measure(sec, "libdpm cpu", lambda: dpm_train_step(a, "toy2d", "cpu", toy_steps, "device"))
    if gpu:
        for pl in ["device", "host"]:
            measure(sec, f"libdpm {p}, state on the {pl}",
                    lambda: dpm_train_step(a, "toy2d", p, toy_steps, pl))

    # 4. Resume bit-identity on the provider, and device against host state.
    sec = f"toy2d resume on {p}: {2 * a.resume_steps} steps at once vs resumed halfway"
    whole = {}

    def resume(pl):
        same, d = resume_identity(a, a.out / f"resume_{pl}", pl)
        whole[pl] = d
        return "bit-identical" if same else "DIFFERENT"

    for pl in ["device", "host"]:
        measure(sec, f"state on the {pl}", lambda: resume(pl))

    def across():
        f = "model_raw/toy2d.weights.bin"
        return ("bit-identical" if (whole["device"] / f).read_bytes() ==
                (whole["host"] / f).read_bytes() else "DIFFERENT")
    measure(sec, "device state vs host state, final weights", across)

    (a.out / "results.json").write_text(json.dumps(R, indent=1))
    (a.out / "report.md").write_text(report(R))
    print(f"[compare] wrote {a.out / 'report.md'}")
    failed = [r for rows in R["rows"].values() for r in rows
              if isinstance(r[1], str) and r[1].startswith("failed")]
    return 1 if failed else 0


def report(R) -> str:
    lines = [f"# libdpm vs PyTorch, same machine ({R.get('gpu', R['torch_device'])})", "",
             f"provider {R['provider']}, network {R['network']}, torch {R['torch']}, "
             f"diffusers {R['diffusers'] or 'not installed (hand-written DPM-Solver++(2M))'}"
             + (", QUICK DRY RUN: the numbers mean nothing" if R["quick"] else ""), ""]
    for sec, rows in R["rows"].items():
        lines += [f"## {sec}", "", "| run | value | vs first row |", "|---|---:|---:|"]
        ref = rows[0][1] if rows and isinstance(rows[0][1], float) else None
        for label, v in rows:
            if isinstance(v, float):
                rel = f"{v / ref:.2f}x" if ref else ""
                lines.append(f"| {label} | {v:.2f} | {rel} |")
            else:
                lines.append(f"| {label} | {v} | |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
