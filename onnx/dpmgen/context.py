"""The context a network's forward description runs in.

A network is written once, as a forward function over layers that declare their parameters
through `ctx.param`.  The same function builds
- the inference graph (mode "infer"): parameters are initializers stored as ONNX external data
  in NAME.weights.bin at the manifest offsets, dropout is the identity;
- the training graph (mode "train"): parameters are graph inputs `p.<name>`, dropout is active;
- a spec-only pass (mode "spec") that just collects the parameter list.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from onnx import TensorProto

from .graph import Graph, Value
from .init import Init, ParamSpec
from .ops import nn


class BuildContext:
    def __init__(self, g: Graph, mode: str, weights_file: str | None = None):
        if mode not in ("infer", "train", "spec"):
            raise ValueError(mode)
        self.g = g
        self.mode = mode
        self.weights_file = weights_file
        self.specs: list[ParamSpec] = []
        self.params: dict[str, Value] = {}
        self._offset = 0
        # Dropout: set by the training-step builder (int64 seed scalar, float step scalar).
        self.dropout_seed: Value | None = None
        self.dropout_step: Value | None = None
        self.dropout_layers = 0

    @property
    def training(self) -> bool:
        return self.mode == "train"

    def param(self, name: str, shape: Sequence[int], init: Init) -> Value:
        """Declare a parameter (declaration order = manifest order) and return its Value."""
        if name in self.params:
            raise ValueError(f"parameter {name} declared twice")
        spec = ParamSpec(name, tuple(int(d) for d in shape), init)
        self.specs.append(spec)
        g = self.g
        if self.mode == "infer":
            t = TensorProto()
            t.data_type = TensorProto.FLOAT
            t.dims.extend(spec.shape)
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", self.weights_file), ("offset", str(self._offset)),
                         ("length", str(spec.nbytes))):
                entry = t.external_data.add()
                entry.key, entry.value = k, v
            v = g.initializer(name, spec.shape, np.float32, t)
        else:
            v = g.input(f"p.{name}", spec.shape, g.fdt)
        self._offset += spec.nbytes
        self.params[name] = v
        return v

    def dropout(self, x: Value, rate: float) -> Value:
        """Dropout in training graphs (each call site gets its own salt), identity otherwise."""
        if not self.training or rate <= 0.0:
            return x
        if self.dropout_seed is None:
            raise ValueError("training graph with dropout needs a seed (train_step sets it)")
        self.dropout_layers += 1
        key = nn.dropout_key(self.dropout_seed, self.dropout_step, self.dropout_layers)
        return nn.dropout(x, rate, key)
