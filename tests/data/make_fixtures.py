#!/usr/bin/env python3
"""Writes the small ONNX test fixtures of libdpm's integration tests and benches.

Run from the repository root with the set-up's Python:

    .venv/bin/python tests/data/make_fixtures.py

The output is deterministic (fixed weights or a seeded generator, no timestamps), and each
file is small (< 1 MB). The Rust tests (tests/onnx_model.rs) recompute the same functions
with the constants below, so keep the two in step when changing one.

Fixtures:
  affine2d.onnx       x f32 [batch,2], t f32 [tb] -> out = x @ W + t[:,None] * c
  cond_image.onnx     x f32 [batch,3,8,8], t i64 [batch], labels i64 [batch]
                      -> out = 0.5 x + 1e-3 float(t) + emb[labels] (per channel)
  conv64.onnx         x f32 [batch,3,64,64], t f32 [tb], labels i64 [batch]; 3x3 convs
                      3->32->32->3 with ReLU and a time/label bias (for benchmarks)
  bad_dtype.onnx      x is float64
  bad_names.onnx      inputs named foo / bar
  dynamic_dims.onnx   x [batch, n], n dynamic
  extra_input.onnx    an extra required input z
  bad_out_shape.onnx  out [batch,3] for x [batch,2]
  t_2d.onnx           t of rank 2
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # ONNX Runtime 1.31 accepts IR versions up to 11; 8 goes with opset 17.
HERE = os.path.dirname(os.path.abspath(__file__))

# affine2d constants (also in tests/onnx_model.rs)
AFFINE_W = np.array([[0.5, -0.25], [0.125, 0.75]], dtype=np.float32)
AFFINE_C = np.array([1e-3, -2e-3], dtype=np.float32)
# cond_image constants (also in tests/onnx_model.rs): row k is the bias of label k (0 = null)
COND_EMB = np.array(
    [[0.0, 0.0, 0.0], [0.25, -0.5, 0.125], [-0.375, 0.0625, 0.5], [0.75, 0.25, -0.25]],
    dtype=np.float32,
)


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def const_i64(name, values):
    return init(name, np.array(values, dtype=np.int64))


def model(nodes, inputs, outputs, inits, meta, name):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    m = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="libdpm-test-fixtures",
        producer_version="1",
    )
    m.ir_version = IR_VERSION
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, str(v)
    onnx.checker.check_model(m, full_check=True)
    return m


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


F32, I64, F64 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.DOUBLE
EPS_META = {"dpm.prediction": "eps", "dpm.schedule": "linear", "dpm.num_train_timesteps": 1000}


def affine2d(x_shape=("batch", 2), t_shape=("tb",), x_elem=F32, names=("x", "t"), extra=None,
             out_shape=("batch", 2), name="affine2d"):
    """out = x @ W + t[:,None] * c, with variations for the error fixtures."""
    xn, tn = names
    nodes = []
    x_in = xn
    if x_elem != F32:
        nodes.append(helper.make_node("Cast", [xn], ["xf"], to=F32))
        x_in = "xf"
    nodes += [
        helper.make_node("MatMul", [x_in, "W"], ["xw"]),
        helper.make_node("Reshape", [tn, "t_col_shape"], ["t_col"]),
        helper.make_node("Mul", ["t_col", "c"], ["tc"]),
        helper.make_node("Add", ["xw", "tc"], ["sum"]),
    ]
    inits = [init("W", AFFINE_W), init("c", AFFINE_C), const_i64("t_col_shape", [-1, 1])]
    last = "sum"
    inputs = [vi(xn, x_elem, list(x_shape)), vi(tn, F32, list(t_shape))]
    if extra is not None:
        inputs.append(vi(extra, F32, [1]))
        nodes.append(helper.make_node("Add", [last, extra], ["sum_z"]))
        last = "sum_z"
    if out_shape[-1] != x_shape[-1]:
        # widen to the (wrong) output width by concatenating the first column
        nodes.append(helper.make_node("Slice", [last, "s0", "s1", "s_ax"], ["first_col"]))
        nodes.append(helper.make_node("Concat", [last, "first_col"], ["wide"], axis=1))
        inits += [const_i64("s0", [0]), const_i64("s1", [1]), const_i64("s_ax", [1])]
        last = "wide"
    nodes.append(helper.make_node("Identity", [last], ["out"]))
    return model(nodes, inputs, [vi("out", F32, list(out_shape))], inits, EPS_META, name)


def cond_image():
    nodes = [
        helper.make_node("Mul", ["x", "half"], ["hx"]),
        helper.make_node("Cast", ["t"], ["tf"], to=F32),
        helper.make_node("Mul", ["tf", "milli"], ["ts"]),
        helper.make_node("Reshape", ["ts", "t4_shape"], ["t4"]),
        helper.make_node("Gather", ["emb", "labels"], ["e"], axis=0),
        helper.make_node("Reshape", ["e", "e4_shape"], ["e4"]),
        helper.make_node("Add", ["hx", "t4"], ["a"]),
        helper.make_node("Add", ["a", "e4"], ["out"]),
    ]
    inits = [
        init("half", np.float32(0.5)),
        init("milli", np.float32(1e-3)),
        const_i64("t4_shape", [-1, 1, 1, 1]),
        const_i64("e4_shape", [-1, 3, 1, 1]),
        init("emb", COND_EMB),
    ]
    inputs = [vi("x", F32, ["batch", 3, 8, 8]), vi("t", I64, ["batch"]), vi("labels", I64, ["batch"])]
    meta = dict(EPS_META, **{"dpm.num_classes": 3})
    return model(nodes, inputs, [vi("out", F32, ["batch", 3, 8, 8])], inits, meta, "cond_image")


def t_2d():
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Mul", ["t", "c"], ["tc"]),
        helper.make_node("Add", ["xw", "tc"], ["out"]),
    ]
    inputs = [vi("x", F32, ["batch", 2]), vi("t", F32, ["batch", 1])]
    inits = [init("W", AFFINE_W), init("c", AFFINE_C)]
    return model(nodes, inputs, [vi("out", F32, ["batch", 2])], inits, EPS_META, "t_2d")


def conv64():
    """An image-sized network for the benches: cost like a small U-Net block, outputs O(1)."""
    rng = np.random.default_rng(20240607)
    ch, k, classes = 32, 3, 3

    def conv_w(cout, cin, gain):
        fan_in = cin * k * k
        return (rng.standard_normal((cout, cin, k, k)) * gain / np.sqrt(fan_in)).astype(np.float32)

    w1, b1 = conv_w(ch, 3, np.sqrt(2.0)), np.zeros(ch, np.float32)
    w2, b2 = conv_w(ch, ch, np.sqrt(2.0)), np.zeros(ch, np.float32)
    w3, b3 = conv_w(3, ch, 1.0), np.zeros(3, np.float32)
    t_vec = (rng.standard_normal(ch) * 1e-3).astype(np.float32)  # t in 0..999 -> O(1)
    emb = (rng.standard_normal((classes + 1, ch)) * 0.5).astype(np.float32)
    emb[0] = 0.0
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], pads=[1, 1, 1, 1]),
        # time/label bias: t[:,None] * t_vec + emb[labels], as [rows, ch, 1, 1]
        helper.make_node("Reshape", ["t", "col"], ["t_col"]),
        helper.make_node("Mul", ["t_col", "t_vec"], ["tb"]),
        helper.make_node("Gather", ["emb", "labels"], ["lb"], axis=0),
        helper.make_node("Add", ["tb", "lb"], ["bias"]),
        helper.make_node("Reshape", ["bias", "b4_shape"], ["bias4"]),
        helper.make_node("Add", ["h1", "bias4"], ["h1b"]),
        helper.make_node("Relu", ["h1b"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["h2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["out"], pads=[1, 1, 1, 1]),
    ]
    inits = [
        init("w1", w1), init("b1", b1), init("w2", w2), init("b2", b2), init("w3", w3), init("b3", b3),
        init("t_vec", t_vec), init("emb", emb), const_i64("col", [-1, 1]), const_i64("b4_shape", [-1, ch, 1, 1]),
    ]
    inputs = [vi("x", F32, ["batch", 3, 64, 64]), vi("t", F32, ["tb"]), vi("labels", I64, ["batch"])]
    meta = dict(EPS_META, **{"dpm.num_classes": classes})
    return model(nodes, inputs, [vi("out", F32, ["batch", 3, 64, 64])], inits, meta, "conv64")


def main():
    fixtures = {
        "affine2d": affine2d(),
        "cond_image": cond_image(),
        "conv64": conv64(),
        "bad_dtype": affine2d(x_elem=F64, name="bad_dtype"),
        "bad_names": affine2d(names=("foo", "bar"), name="bad_names"),
        "dynamic_dims": affine2d(x_shape=("batch", "n"), out_shape=("batch", "n"), name="dynamic_dims"),
        "extra_input": affine2d(extra="z", name="extra_input"),
        "bad_out_shape": affine2d(out_shape=("batch", 3), name="bad_out_shape"),
        "t_2d": t_2d(),
    }
    for name, m in fixtures.items():
        path = os.path.join(HERE, name + ".onnx")
        data = m.SerializeToString(deterministic=True)
        assert len(data) < 1 << 20, f"{name}: {len(data)} bytes"
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
        print(f"wrote {os.path.relpath(path)} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
