"""Cross-check against PyTorch autograd on the same weights, when PyTorch is installed (it is
not a dependency; without it this module is skipped).

Independent PyTorch (functional) versions of toy2d, the U-Net and the classifier (torchref.py)
compute the loss and its gradients in float64; the generator's training graph (float64,
onnx.reference) must agree to |err| <= 1e-9 * max|g| + 1e-7 * |g|.  Dropout is disabled here;
the float32 parity harness (parity.py) checks it with the graph's own masks."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from dpmgen.nets import classifier, toy2d, unet  # noqa: E402
from dpmgen.train_step import build_train_graph  # noqa: E402
from helpers import assert_close, run_ref  # noqa: E402
from nets_util import train_feeds  # noqa: E402
from torchref import classifier_logits, toy2d_out, unet_out  # noqa: E402


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
