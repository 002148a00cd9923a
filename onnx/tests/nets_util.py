"""Tiny network instances and feeds for the whole-network tests."""

from __future__ import annotations

import numpy as np

from dpmgen import init as I
from dpmgen.nets import classifier, toy2d, unet


def tiny_nets():
    """name -> Network; small enough for float64 reference evaluation."""
    return {
        "toy2d": toy2d.Toy2D(toy2d.Toy2DConfig()),  # the real one: only MLPs
        "unet_tiny": unet.UNet(unet.tiny()),
        "unet_tiny_noclass_nodrop": unet.UNet(unet.tiny(name="unet_tiny_nc", num_classes=0,
                                                        dropout=0.0, attn=[0])),
        "classifier_tiny": classifier.Classifier(classifier.tiny()),
    }


def concrete(shape, batch, hw=8):
    return tuple(batch if d == "batch" else hw if d in ("height", "width") else d
                 for d in shape)


def train_feeds(net, graph, specs, rng, batch=3, dtype=np.float64, perturb=0.05, hw=8):
    """Feeds for a training graph: parameters = reference init + small noise (so that zero and
    1e-5-gain tensors still carry signal), random moments and data."""
    init = {s.name: a for s, a in I.init_params(specs, net.seed)}
    feeds = {}
    for v in graph.inputs:
        n = v.name
        pre, _, rest = n.partition(".")
        shape = concrete(v.shape, batch, hw)
        if pre == "p":
            feeds[n] = init[rest].astype(np.float64) + perturb * rng.standard_normal(shape)
        elif pre == "m":
            feeds[n] = 0.01 * rng.standard_normal(shape)
        elif pre in ("v", "e"):
            feeds[n] = (0.01 * rng.standard_normal(shape)) ** 2 + 1e-6 if pre == "v" else \
                rng.standard_normal(shape)
        elif n == "t":
            feeds[n] = rng.uniform(0, 999, shape)
        elif n == "labels":
            lo = 1 if net.task == "classify" else 0
            feeds[n] = rng.integers(lo, net.config.num_classes + 1, shape)
        elif n == "lr":
            feeds[n] = np.array(1e-3)
        elif n == "step":
            feeds[n] = np.array(3.0)
        elif n == "dropout_seed":
            feeds[n] = np.array(42, np.int64)
        elif v.dtype == np.int64:
            continue
        elif n in ("beta1", "beta2", "adam_eps", "weight_decay", "clip_norm", "ema_decay"):
            continue  # keep the graph defaults
        else:
            feeds[n] = rng.standard_normal(shape)
    return {k: (a.astype(dtype) if a.dtype == np.float64 else a) for k, a in feeds.items()}
