"""The networks.  Each is a `Network`: a config, data inputs for the inference and training
graphs, and ONE forward description used by both."""

from __future__ import annotations

import dataclasses

from ..context import BuildContext
from ..graph import Graph, Value


class Network:
    """Interface every network implements.

    name:      file stem in onnx/models/
    task:      "eps" (noise prediction, MSE loss) or "classify" (logits, cross-entropy)
    seed:      seed of the parameter initialisation
    config:    a dataclass; all architecture values, written to the manifest
    """

    name: str
    task: str
    seed: int
    config: object

    def config_dict(self) -> dict:
        d = dataclasses.asdict(self.config)
        d.pop("name", None)
        d.pop("seed", None)
        return d

    def infer_inputs(self, g: Graph) -> dict[str, Value]:
        raise NotImplementedError

    def train_inputs(self, g: Graph) -> dict[str, Value]:
        raise NotImplementedError

    def forward(self, ctx: BuildContext, inputs: dict[str, Value]) -> dict[str, Value]:
        raise NotImplementedError

    def metadata(self) -> dict[str, str]:
        return {}

    @property
    def has_dropout(self) -> bool:
        return getattr(self.config, "dropout", 0.0) > 0.0


def get(name: str) -> Network:
    """A bundled network by name: toy2d, unet_small, afhq64, classifier."""
    import importlib

    table = {
        "toy2d": ("toy2d", "Toy2D", "Toy2DConfig"),
        "unet_small": ("unet", "UNet", "UNET_SMALL"),
        "afhq64": ("unet", "UNet", "AFHQ64"),
        "classifier": ("classifier", "Classifier", "CLASSIFIER"),
    }
    if name not in table:
        raise KeyError(f"unknown network {name!r}; known: {', '.join(table)}")
    mod, cls, cfg = table[name]
    m = importlib.import_module(f"{__name__}.{mod}")
    config = getattr(m, cfg)
    return getattr(m, cls)(config() if isinstance(config, type) else config)


BUNDLED = ("toy2d", "unet_small", "afhq64", "classifier")
