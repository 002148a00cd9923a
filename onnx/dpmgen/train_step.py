"""The training-step graph: forward, loss, reverse-mode gradients, optional global-norm
clipping, Adam/AdamW, optional EMA, all as ordinary ONNX operators.

Inputs (in this order):
    p.<param>...            parameters (manifest order)
    m.<param>...            Adam first moments
    v.<param>...            Adam second moments
    e.<param>...            EMA copy (EMA variant only)
    x_t, t, [labels], eps   (diffusion nets)  |  x_t, labels (classifier)
    lr                      float32 scalar, learning rate of this step
    step                    float32 scalar, 1-based Adam step (bias correction; dropout masks)
  optional (inputs with a default initializer; feed only to override):
    dropout_seed            int64 scalar, default 0 (nets with dropout)
    beta1, beta2, adam_eps, weight_decay, clip_norm    float32 scalars
    ema_decay               float32 scalar (EMA variant)
Outputs: loss, p_out.*, m_out.*, v_out.*, [e_out.*], grad_norm (global L2 norm of the raw
gradients, before clipping); test builds may add g.<param> (the raw gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .autodiff import backward
from .context import BuildContext
from .graph import Graph, Value
from .nets import Network
from .ops import elementwise as E
from .ops import nn as N
from .ops import reduce as R


@dataclass(frozen=True)
class AdamDefaults:
    """Defaults of the optional scalar inputs (PyTorch's Adam defaults; no clipping)."""

    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.0  # decoupled (AdamW); 0 = plain Adam as in the reference
    clip_norm: float = 0.0  # 0 disables global-norm clipping
    ema_decay: float = 0.9999

    def as_dict(self, ema: bool) -> dict:
        d = {k: getattr(self, k) for k in ("beta1", "beta2", "adam_eps", "weight_decay",
                                            "clip_norm")}
        if ema:
            d["ema_decay"] = self.ema_decay
        return d


# Parameter tensors with at least this many elements get their own optimizer nodes; smaller
# ones share flat vectors (see build_train_graph).  Measured with ONNX Runtime 1.31.1: on CPU
# per-tensor and flat updates cost the same (toy2d, unet_small); on the CUDA provider (H200)
# concatenating and splitting all afhq64 parameters took ~3.6 s of a 3.7 s step (Concat and
# Split of hundreds of tensors are slow kernels there), so large tensors stay whole.  At 2^16
# toy2d keeps one flat vector and afhq64 has 0.5% of its values in one.
CHUNK_THRESHOLD = 1 << 16


def loss_fn(net: Network, ctx: BuildContext, data: dict[str, Value]) -> Value:
    """MSE between predicted and true noise (mean over all elements, as F.mse_loss), or the
    mean softmax cross-entropy for the classifier (labels 1..K index logits 0..K-1)."""
    outs = net.forward(ctx, data)
    if net.task == "eps":
        d = E.sub(outs["out"], data["eps"])
        return R.reduce_mean(E.square(d))
    logits = outs["logits"]
    k = logits.shape[1]
    g = ctx.g
    idx = g.node1("Sub", [data["labels"], g.const(np.array(1, np.int64))], data["labels"].shape,
                  dtype=np.int64)
    target = N.one_hot(idx, k, logits.dtype)
    ll = R.reduce_sum(E.mul(N.log_softmax(logits, axis=1), target), axes=[1])
    return E.neg(R.reduce_mean(ll))


def build_train_graph(net: Network, float_dtype=np.float32, ema: bool = False,
                      expose_grads: bool = False, defaults: AdamDefaults = AdamDefaults(),
                      loss_only: bool = False,
                      chunk_threshold: int = CHUNK_THRESHOLD) -> tuple[Graph, BuildContext]:
    """Build the training-step graph of `net`.  `loss_only` stops after the loss (used by the
    finite-difference tests); `expose_grads` adds the raw gradients as outputs g.<param>."""
    fdt = np.dtype(float_dtype)
    g = Graph(f"{net.name}_train" + ("_ema" if ema else ""), fdt)
    ctx = BuildContext(g, "train")
    data = net.train_inputs(g)
    lr = g.input("lr", ())
    step = g.input("step", ())
    data_names = [v.name for v in data.values()] + ["lr", "step"]
    optional = []
    if net.has_dropout:
        ctx.dropout_seed = g.input_with_default("dropout_seed", np.array(0, np.int64))
        ctx.dropout_step = step
        optional.append("dropout_seed")
    loss = loss_fn(net, ctx, data)
    params = [ctx.params[s.name] for s in ctx.specs]
    names = [s.name for s in ctx.specs]
    if loss_only:
        g.output(loss, "loss")
        _order_inputs(g, names, [], data_names, optional)
        return g, ctx

    hyper = {k: g.input_with_default(k, np.array(v, fdt))
             for k, v in defaults.as_dict(ema).items()}
    optional += list(hyper)
    moments = [g.input(f"m.{n}", p.shape) for n, p in zip(names, params)]
    seconds = [g.input(f"v.{n}", p.shape) for n, p in zip(names, params)]
    emas = [g.input(f"e.{n}", p.shape) for n, p in zip(names, params)] if ema else []

    grads = backward(g, loss, params)

    with g.no_grad(), g.scope("adam"):
        raw = E.raw
        # Parameters are updated in chunks: each large tensor on its own (no copies), all small
        # tensors (biases, norms, ...) concatenated into flat vectors (a dozen nodes instead
        # of a dozen per tensor: kernel launches on GPU, per-node cost on CPU).
        chunks = _chunks([s.numel for s in ctx.specs], chunk_threshold)

        def gather(vals, chunk):
            if len(chunk) == 1:
                return vals[chunk[0]]
            parts = [g.node1("Reshape", [vals[i], g.ints([-1])], (ctx.specs[i].numel,))
                     for i in chunk]
            total = sum(ctx.specs[i].numel for i in chunk)
            return g.node1("Concat", parts, (total,), axis=0)

        def scatter(vec, chunk):
            if len(chunk) == 1:
                return [vec]
            sizes = [ctx.specs[i].numel for i in chunk]
            parts = g.node("Split", [vec, g.ints(sizes)], [(n,) for n in sizes], axis=0)
            return [g.node1("Reshape", [part, g.ints(params[i].shape)], params[i].shape)
                    for part, i in zip(parts, chunk)]

        G = [gather(grads, c) for c in chunks]
        # Global L2 norm of the gradient; clip factor min(1, c / (norm + 1e-6)) as
        # torch.nn.utils.clip_grad_norm_, or 1 when clip_norm <= 0.
        sq = [raw("ReduceSumSquare", x, shape=(), keepdims=0) for x in G]
        norm = raw("Sqrt", sq[0] if len(sq) == 1 else g.node1("Sum", sq, ()))
        coef = raw("Div", hyper["clip_norm"], raw("Add", norm, g.scalar(1e-6)))
        coef = raw("Min", coef, g.scalar(1.0))
        on = raw("Greater", hyper["clip_norm"], g.scalar(0.0), dtype=np.bool_)
        coef = raw("Where", on, coef, g.scalar(1.0))
        # Scalars (bias corrections etc.), then the elementwise update.
        b1, b2 = hyper["beta1"], hyper["beta2"]
        one = g.scalar(1.0)
        bc1 = raw("Sub", one, raw("Pow", b1, step))
        bc2 = raw("Sub", one, raw("Pow", b2, step))
        step_size = raw("Div", lr, bc1)
        inv_sqrt_bc2 = raw("Reciprocal", raw("Sqrt", bc2))
        decay = raw("Sub", one, raw("Mul", lr, hyper["weight_decay"]))
        gscale1 = raw("Mul", coef, raw("Sub", one, b1))  # (1 - b1) * clip
        gscale2 = raw("Mul", raw("Mul", coef, coef), raw("Sub", one, b2))  # (1 - b2) * clip^2
        outs_p, outs_m, outs_v, outs_e = ([None] * len(params) for _ in range(4))
        for chunk, Gc in zip(chunks, G):
            P, M, V = gather(params, chunk), gather(moments, chunk), gather(seconds, chunk)
            M2 = raw("Add", raw("Mul", M, b1), raw("Mul", Gc, gscale1))
            V2 = raw("Add", raw("Mul", V, b2), raw("Mul", raw("Mul", Gc, Gc), gscale2))
            denom = raw("Add", raw("Mul", raw("Sqrt", V2), inv_sqrt_bc2), hyper["adam_eps"])
            P2 = raw("Sub", raw("Mul", P, decay), raw("Mul", raw("Div", M2, denom), step_size))
            results = [(outs_p, P2), (outs_m, M2), (outs_v, V2)]
            if ema:
                d = hyper["ema_decay"]
                E2 = raw("Add", raw("Mul", gather(emas, chunk), d),
                         raw("Mul", P2, raw("Sub", one, d)))
                results.append((outs_e, E2))
            for dest, vec in results:
                for i, part in zip(chunk, scatter(vec, chunk)):
                    dest[i] = part
        if not ema:
            outs_e = []

    g.output(loss, "loss")
    for prefix, vals in (("p_out", outs_p), ("m_out", outs_m), ("v_out", outs_v),
                         ("e_out", outs_e)):
        for n, val in zip(names, vals):
            g.output(val, f"{prefix}.{n}")
    g.output(norm, "grad_norm")
    if expose_grads:
        for n, gr in zip(names, grads):
            g.output(gr, f"g.{n}")
    _order_inputs(g, names, ["m", "v"] + (["e"] if ema else []), data_names, optional)
    return g, ctx


def _chunks(sizes, threshold: int) -> list[list[int]]:
    """Indices grouped for the update: tensors of >= threshold elements alone, the rest
    together (in order)."""
    big = [[i] for i, n in enumerate(sizes) if n >= threshold]
    small = [i for i, n in enumerate(sizes) if n < threshold]
    return big + ([small] if small else [])


def _order_inputs(g: Graph, names, state_prefixes, data_names, optional) -> None:
    """Put graph inputs in the documented order (they were created in build order)."""
    order = [f"p.{n}" for n in names]
    for pre in state_prefixes:
        order += [f"{pre}.{n}" for n in names]
    order += data_names + optional
    by_name = {v.name: v for v in g.inputs}
    if sorted(by_name) != sorted(order):
        raise AssertionError(f"input mismatch: {set(by_name) ^ set(order)}")
    g.inputs = [by_name[n] for n in order]
