"""Cross-check against PyTorch autograd on the same weights, when PyTorch is installed (it is
not a dependency; without it this module is skipped).

Independent PyTorch (functional) versions of toy2d, the U-Net and the classifier compute the
loss and its gradients in float64; the generator's training graph (float64, onnx.reference)
must agree to |err| <= 1e-9 * max|g| + 1e-7 * |g|.  Dropout is disabled here (PyTorch's mask
stream differs by design)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from dpmgen.nets import classifier, toy2d, unet  # noqa: E402
from dpmgen.train_step import build_train_graph  # noqa: E402
from helpers import assert_close, run_ref  # noqa: E402
from nets_util import train_feeds  # noqa: E402


def timestep(t, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None] * freqs[None].to(t.dtype)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def lin(P, name, x):
    return F.linear(x, P[f"{name}.weight"], P[f"{name}.bias"])


def conv(P, name, x, stride=1):
    w = P[f"{name}.weight"]
    return F.conv2d(x, w, P[f"{name}.bias"], stride=stride, padding=w.shape[-1] // 2)


def gn(P, name, x, groups):
    return F.group_norm(x, groups, P[f"{name}.weight"], P[f"{name}.bias"], eps=1e-5)


def toy2d_out(cfg, P, x, t):
    feats = timestep(t, cfg.temb_features, cfg.max_period)
    h = x
    n = len(cfg.dims) - 1
    for i in range(n):
        y = lin(P, f"layers.{i}.fc", h)
        a = lin(P, f"layers.{i}.time_embedding.mlp.2",
                F.silu(lin(P, f"layers.{i}.time_embedding.mlp.0", feats)))
        h = a * y
        if i < n - 1:
            h = F.relu(h)
    return h


def attention(P, name, x, groups):
    b, c, hh, ww = x.shape
    h = gn(P, f"{name}.group_norm", x, groups)
    q = conv(P, f"{name}.proj_q", h).permute(0, 2, 3, 1).reshape(b, hh * ww, c)
    k = conv(P, f"{name}.proj_k", h).reshape(b, c, hh * ww)
    v = conv(P, f"{name}.proj_v", h).permute(0, 2, 3, 1).reshape(b, hh * ww, c)
    w = F.softmax(torch.bmm(q, k) * (c ** -0.5), dim=-1)
    h = torch.bmm(w, v).reshape(b, hh, ww, c).permute(0, 3, 1, 2)
    return x + conv(P, f"{name}.proj", h)


def resblock(cfg, P, name, x, temb_act, cin, cout, attn):
    G = cfg.norm_groups
    h = conv(P, f"{name}.block1.2", F.silu(gn(P, f"{name}.block1.0", x, G)))
    h = h + lin(P, f"{name}.temb_proj.1", temb_act)[:, :, None, None]
    h = conv(P, f"{name}.block2.3", F.silu(gn(P, f"{name}.block2.0", h, G)))
    h = h + (conv(P, f"{name}.shortcut", x) if cin != cout else x)
    return attention(P, f"{name}.attn", h, G) if attn else h


def unet_out(cfg, P, x, t, labels):
    temb = lin(P, "time_embedding.mlp.2",
               F.silu(lin(P, "time_embedding.mlp.0", timestep(t, cfg.temb_features))))
    if cfg.num_classes:
        temb = temb + P["class_embedding.weight"][labels]
    ta = F.silu(temb)
    h = conv(P, "head", x)
    hs, chs, now, i = [h], [cfg.ch], cfg.ch, 0
    for level, mult in enumerate(cfg.ch_mult):
        out = cfg.ch * mult
        for _ in range(cfg.num_res_blocks):
            h = resblock(cfg, P, f"downblocks.{i}", h, ta, now, out, level in cfg.attn)
            now = out
            hs.append(h)
            chs.append(now)
            i += 1
        if level != len(cfg.ch_mult) - 1:
            h = conv(P, f"downblocks.{i}.main", h, stride=2)
            hs.append(h)
            chs.append(now)
            i += 1
    h = resblock(cfg, P, "middleblocks.0", h, ta, now, now, True)
    h = resblock(cfg, P, "middleblocks.1", h, ta, now, now, False)
    i = 0
    for level, mult in reversed(list(enumerate(cfg.ch_mult))):
        out = cfg.ch * mult
        for _ in range(cfg.num_res_blocks + 1):
            c_skip = chs.pop()
            h = resblock(cfg, P, f"upblocks.{i}", torch.cat([h, hs.pop()], dim=1), ta,
                         now + c_skip, out, level in cfg.attn)
            now = out
            i += 1
        if level != 0:
            h = conv(P, f"upblocks.{i}.main", F.interpolate(h, scale_factor=2, mode="nearest"))
            i += 1
    return conv(P, "tail.2", F.silu(gn(P, "tail.0", h, cfg.norm_groups)))


def classifier_logits(cfg, P, x):
    G = cfg.norm_groups
    h = F.silu(gn(P, "stem.norm", conv(P, "stem.conv", x), G))
    for i in range(len(cfg.widths) - 1):
        h = F.silu(gn(P, f"stages.{i}.norm1", conv(P, f"stages.{i}.down", h, stride=2), G))
        h = F.silu(gn(P, f"stages.{i}.norm2", conv(P, f"stages.{i}.conv", h), G))
    return lin(P, "head", h.mean(dim=(2, 3)))


NETS = {
    "toy2d": toy2d.Toy2D(toy2d.Toy2DConfig()),
    "unet_tiny": unet.UNet(unet.tiny(dropout=0.0)),
    "classifier_tiny": classifier.Classifier(classifier.tiny()),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_gradients_match_pytorch(name):
    net = NETS[name]
    g, ctx = build_train_graph(net, np.float64, expose_grads=True)
    feeds = train_feeds(net, g, ctx.specs, np.random.default_rng(9))
    ours = run_ref(g.to_model(), feeds)
    P = {s.name: torch.tensor(feeds[f"p.{s.name}"], dtype=torch.float64, requires_grad=True)
         for s in ctx.specs}
    T = {k: torch.tensor(v) for k, v in feeds.items() if not k.startswith(("p.", "m.", "v."))}
    cfg = net.config
    if name == "toy2d":
        loss = F.mse_loss(toy2d_out(cfg, P, T["x_t"], T["t"]), T["eps"])
    elif name.startswith("unet"):
        loss = F.mse_loss(unet_out(cfg, P, T["x_t"], T["t"], T.get("labels")), T["eps"])
    else:
        loss = F.cross_entropy(classifier_logits(cfg, P, T["x_t"]), T["labels"] - 1)
    loss.backward()
    assert abs(loss.item() - float(ours["loss"])) <= 1e-10 * max(1.0, abs(loss.item()))
    for s in ctx.specs:
        assert_close(ours[f"g.{s.name}"], P[s.name].grad.numpy(), rtol=1e-7, atol_rel=1e-9,
                     atol_abs=1e-12, what=f"{name} {s.name}")
