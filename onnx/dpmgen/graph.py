"""A small ONNX graph builder.

Every tensor is a `Value` with a name, a dtype and a shape whose entries are ints (static) or
strings (symbolic, e.g. "batch").  Shapes are tracked by the builder itself, not by ONNX shape
inference, because the differentiation rules need them (which axes a broadcast added, how many
elements a mean averaged) and because the networks only use a handful of operators whose shape
rules are simple.

Differentiable operators (in `dpmgen.ops`) emit their forward nodes through `Graph.node` and
record a tape entry through `Graph.record`; `dpmgen.autodiff.backward` walks that tape.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# opset 18: ReduceSum/ReduceMean take axes as an input, Split takes num_outputs; every operator
# used here has CPU and CUDA kernels in ONNX Runtime 1.31.
OPSET = 18
IR_VERSION = 9

Dim = int | str
Shape = tuple


def np_to_onnx_dtype(dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


class Value:
    """A tensor in the graph under construction."""

    __slots__ = ("graph", "name", "shape", "dtype")

    def __init__(self, graph: "Graph", name: str, shape: Sequence[Dim], dtype):
        self.graph = graph
        self.name = name
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)

    @property
    def rank(self) -> int:
        return len(self.shape)

    def numel_static(self) -> int | None:
        """Element count when every dim is static, else None."""
        n = 1
        for d in self.shape:
            if not isinstance(d, int):
                return None
            n *= d
        return n

    def __repr__(self) -> str:
        return f"Value({self.name}, {self.shape}, {self.dtype})"

    # Operator sugar: these route through the differentiable ops.
    def __add__(self, o):
        from .ops import elementwise as E
        return E.add(self, o)

    def __radd__(self, o):
        from .ops import elementwise as E
        return E.add(o, self)

    def __sub__(self, o):
        from .ops import elementwise as E
        return E.sub(self, o)

    def __rsub__(self, o):
        from .ops import elementwise as E
        return E.sub(o, self)

    def __mul__(self, o):
        from .ops import elementwise as E
        return E.mul(self, o)

    def __rmul__(self, o):
        from .ops import elementwise as E
        return E.mul(o, self)

    def __truediv__(self, o):
        from .ops import elementwise as E
        return E.div(self, o)

    def __neg__(self):
        from .ops import elementwise as E
        return E.neg(self)


@dataclass
class TapeEntry:
    """One differentiable operation: `backward(g, entry, grad_outputs, needs)` returns one
    gradient (or None) per input; `needs[i]` says whether input i wants one."""

    backward: Callable
    inputs: list
    outputs: list
    saved: dict = field(default_factory=dict)


def broadcast_shapes(a: Sequence[Dim], b: Sequence[Dim]) -> tuple:
    """Numpy broadcasting on static/symbolic shapes.  Two different symbolic names broadcast to
    the one that is not "tb" (the inference graphs' t dimension, which is 1 or batch)."""
    a, b = tuple(a), tuple(b)
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + a
    b = (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x == y:
            out.append(x)
        elif x == 1:
            out.append(y)
        elif y == 1:
            out.append(x)
        elif isinstance(x, str) or isinstance(y, str):
            out.append(y if x == "tb" else x)
        else:
            raise ValueError(f"shapes {a} and {b} do not broadcast")
    return tuple(out)


class Graph:
    """Collects nodes, inputs, outputs and initializers, and the autodiff tape."""

    def __init__(self, name: str, float_dtype=np.float32):
        self.name = name
        self.fdt = np.dtype(float_dtype)
        self.nodes: list = []
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.initializers: list = []
        self.tape: list[TapeEntry] = []
        self.recording = True
        self._counter = 0
        self._consts: dict = {}
        self._names: set[str] = set()
        self._scope: list[str] = []
        self.metadata: dict[str, str] = {}
        self.cache: dict = {}  # per-graph memo for ops (e.g. shared dropout index tensors)
        self._produced: set[str] = set()  # names written by nodes
        self._values: list[Value] = []  # node outputs, for value_info
        self._rename: dict[str, str] = {}  # node output -> graph output name
        self.doc = ""

    # ---- naming -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def scope(self, name: str):
        """Prefix the names of values created inside (makes profiles and graphs readable)."""
        self._scope.append(name)
        try:
            yield
        finally:
            self._scope.pop()

    def fresh(self, hint: str) -> str:
        self._counter += 1
        prefix = "/".join(self._scope)
        base = f"{prefix}/{hint}" if prefix else hint
        name = f"{base}_{self._counter}"
        self._names.add(name)
        return name

    def _claim(self, name: str) -> str:
        if name in self._names:
            raise ValueError(f"duplicate tensor name {name}")
        self._names.add(name)
        return name

    # ---- recording control ---------------------------------------------------------------------
    @contextlib.contextmanager
    def no_grad(self):
        """Ops emitted inside are not recorded on the tape (gradient and optimizer nodes)."""
        old = self.recording
        self.recording = False
        try:
            yield
        finally:
            self.recording = old

    def record(self, backward: Callable, inputs: Sequence, outputs: Sequence, **saved) -> None:
        if self.recording:
            self.tape.append(TapeEntry(backward, list(inputs), list(outputs), saved))

    # ---- tensors ------------------------------------------------------------------------------
    def input(self, name: str, shape: Sequence[Dim], dtype=None) -> Value:
        v = Value(self, self._claim(name), shape, dtype or self.fdt)
        self.inputs.append(v)
        return v

    def input_with_default(self, name: str, value: np.ndarray) -> Value:
        """A graph input that also has an initializer: ONNX Runtime treats it as optional
        (an "overridable initializer"), so callers feed it only to change the default."""
        value = np.asarray(value)
        v = self.input(name, value.shape, value.dtype)
        self.initializers.append(numpy_helper.from_array(value, name))
        return v

    def initializer(self, name: str, shape: Sequence[int], dtype, tensor: TensorProto) -> Value:
        """Register a prepared TensorProto (e.g. one pointing at external data)."""
        v = Value(self, self._claim(name), shape, dtype)
        tensor.name = name
        self.initializers.append(tensor)
        return v

    def const(self, array, dtype=None) -> Value:
        """An inline constant; identical constants are shared."""
        arr = np.asarray(array, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        v = self._consts.get(key)
        if v is None:
            name = self._claim(f"const_{len(self._consts)}")
            self.initializers.append(numpy_helper.from_array(arr, name))
            v = Value(self, name, arr.shape, arr.dtype)
            self._consts[key] = v
        return v

    def scalar(self, x: float, dtype=None) -> Value:
        """A 0-d constant of the graph's float type (or `dtype`)."""
        return self.const(np.array(x, dtype=dtype or self.fdt))

    def ints(self, xs: Sequence[int]) -> Value:
        return self.const(np.array(list(xs), dtype=np.int64))

    def node(self, op_type: str, inputs: Sequence, shapes: Sequence[Sequence[Dim]] | None = None,
             dtypes: Sequence | None = None, n_out: int = 1, name: str | None = None,
             **attrs) -> list[Value]:
        """Emit one ONNX node (no tape entry) and return its outputs as Values."""
        if shapes is None:
            shapes = [()] * n_out
        n_out = len(shapes)
        if dtypes is None:
            # Result dtype follows the data operand (Where's first operand is the condition).
            data = inputs[1:] if op_type == "Where" else inputs
            first = next((i for i in data if isinstance(i, Value)), None)
            dtypes = [first.dtype if first is not None else self.fdt] * n_out
        outs = [Value(self, self.fresh(name or op_type), s, d) for s, d in zip(shapes, dtypes)]
        in_names = [i.name if isinstance(i, Value) else "" for i in inputs]
        self._produced.update(o.name for o in outs)
        self._values.extend(outs)
        self.nodes.append(helper.make_node(op_type, in_names, [o.name for o in outs],
                                           name=outs[0].name + "_n", **attrs))
        return outs

    def node1(self, op_type: str, inputs: Sequence, shape: Sequence[Dim], dtype=None,
              **attrs) -> Value:
        return self.node(op_type, inputs, [shape], None if dtype is None else [dtype], **attrs)[0]

    def output(self, v: Value, name: str) -> Value:
        """Expose `v` as graph output `name`.  A node result is renamed in place (an Identity
        feeding a graph output is a real copy in ORT); graph inputs, constants and values
        exposed twice go through an Identity."""
        out = Value(self, self._claim(name), v.shape, v.dtype)
        if v.name in self._produced and v.name not in self._rename:
            self._rename[v.name] = name
        else:
            self.nodes.append(helper.make_node("Identity", [v.name], [name], name=name + "_n"))
        self.outputs.append(out)
        return out

    # ---- serialisation ------------------------------------------------------------------------
    # Symbolic dims that mean the same thing everywhere in a graph; other symbolic dims the
    # builder tracks (e.g. "2*h") are written as unknown.
    NAMED_DIMS = ("batch", "tb", "height", "width")

    @staticmethod
    def _vi(v: Value, name: str | None = None):
        dims = [d if isinstance(d, int) or d in Graph.NAMED_DIMS else None for d in v.shape]
        return helper.make_tensor_value_info(name or v.name, np_to_onnx_dtype(v.dtype), dims)

    def _value_info(self) -> list:
        """Shapes of all intermediate values, from the builder's own tracking.  ONNX shape
        inference loses the symbolic batch dim at some operators (Pad, Slice, Expand with a
        computed shape, ...) and invents fresh unknown dims from there on; ORT's session
        creation was several times slower on such graphs.  With value_info, ORT merges the
        inferred shapes into these (and checks them)."""
        outs = {v.name for v in self.outputs}
        out = []
        for v in self._values:
            name = self._rename.get(v.name, v.name)
            if name not in outs:
                out.append(self._vi(v, name))
        return out

    def _renamed_nodes(self) -> list:
        if not self._rename:
            return self.nodes
        r = self._rename
        out = []
        for n in self.nodes:
            m = onnx.NodeProto()
            m.CopyFrom(n)
            for i, x in enumerate(m.input):
                if x in r:
                    m.input[i] = r[x]
            for i, x in enumerate(m.output):
                if x in r:
                    m.output[i] = r[x]
            out.append(m)
        return out

    def to_model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self._renamed_nodes(), self.name, [self._vi(v) for v in self.inputs],
                                  [self._vi(v) for v in self.outputs], self.initializers,
                                  doc_string=self.doc or None, value_info=self._value_info())
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="dpmgen", producer_version="1")
        model.ir_version = IR_VERSION
        for k in sorted(self.metadata):
            entry = model.metadata_props.add()
            entry.key, entry.value = k, str(self.metadata[k])
        return model
