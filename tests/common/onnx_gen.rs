//! A small ONNX model writer for tests and the `hostile_models` fuzz target: just enough of
//! the `onnx.proto` wire format (field numbers as in onnx.proto) to build models with odd
//! shapes, dtypes, subgraphs, huge dims and external data, without Python.
#![allow(dead_code)]

/// ONNX element types used here (TensorProto.DataType).
pub const FLOAT: u64 = 1;
/// int64.
pub const INT64: u64 = 7;
/// bool.
pub const BOOL: u64 = 9;
/// double.
pub const DOUBLE: u64 = 11;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_varint(out: &mut Vec<u8>, num: u64, v: u64) {
    varint(out, num << 3);
    varint(out, v);
}

fn field_bytes(out: &mut Vec<u8>, num: u64, b: &[u8]) {
    varint(out, (num << 3) | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A dimension of a declared shape.
#[derive(Clone, Debug)]
pub enum Dim {
    /// A fixed size (may be anything, including 0 or negative, for hostile models).
    Fixed(i64),
    /// A named dynamic dimension.
    Param(String),
}

/// `Dim::Param("B")`.
pub fn dyn_dim(name: &str) -> Dim {
    Dim::Param(name.into())
}

/// A graph input or output: ValueInfoProto with a tensor type; `shape: None` = no shape.
pub fn value_info(name: &str, elem: u64, shape: Option<&[Dim]>) -> Vec<u8> {
    let mut tensor = Vec::new();
    field_varint(&mut tensor, 1, elem);
    if let Some(dims) = shape {
        let mut s = Vec::new();
        for d in dims {
            let mut dim = Vec::new();
            match d {
                Dim::Fixed(v) => field_varint(&mut dim, 1, *v as u64),
                Dim::Param(p) => field_bytes(&mut dim, 2, p.as_bytes()),
            }
            field_bytes(&mut s, 1, &dim);
        }
        field_bytes(&mut tensor, 2, &s);
    }
    let mut ty = Vec::new();
    field_bytes(&mut ty, 1, &tensor);
    let mut v = Vec::new();
    field_bytes(&mut v, 1, name.as_bytes());
    field_bytes(&mut v, 2, &ty);
    v
}

/// A TensorProto with inline data (`raw` little-endian bytes).
pub fn tensor_raw(name: &str, elem: u64, dims: &[i64], raw: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        field_varint(&mut t, 1, d as u64);
    }
    field_varint(&mut t, 2, elem);
    field_bytes(&mut t, 8, name.as_bytes());
    field_bytes(&mut t, 9, raw);
    t
}

/// A float TensorProto with inline values.
pub fn tensor_f32(name: &str, dims: &[i64], v: &[f32]) -> Vec<u8> {
    let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    tensor_raw(name, FLOAT, dims, &raw)
}

/// A TensorProto whose data lives in an external file: `entries` are the external_data
/// key/value pairs (location, offset, length) as given, unchecked.
pub fn tensor_external(name: &str, elem: u64, dims: &[i64], entries: &[(&str, &str)]) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        field_varint(&mut t, 1, d as u64);
    }
    field_varint(&mut t, 2, elem);
    field_bytes(&mut t, 8, name.as_bytes());
    for (k, v) in entries {
        let mut e = Vec::new();
        field_bytes(&mut e, 1, k.as_bytes());
        field_bytes(&mut e, 2, v.as_bytes());
        field_bytes(&mut t, 13, &e);
    }
    field_varint(&mut t, 14, 1);
    t
}

/// A node attribute.
pub enum Attr {
    /// A graph (e.g. If's then_branch).
    Graph(Vec<u8>),
    /// A tensor (e.g. Constant's value).
    Tensor(Vec<u8>),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f32),
}

/// A NodeProto.
pub fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, Attr)]) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        field_bytes(&mut n, 1, i.as_bytes());
    }
    for o in outputs {
        field_bytes(&mut n, 2, o.as_bytes());
    }
    field_bytes(&mut n, 4, op.as_bytes());
    for (name, a) in attrs {
        let mut ap = Vec::new();
        field_bytes(&mut ap, 1, name.as_bytes());
        match a {
            Attr::Float(f) => {
                varint(&mut ap, (2 << 3) | 5);
                ap.extend_from_slice(&f.to_le_bytes());
                field_varint(&mut ap, 20, 1);
            }
            Attr::Int(i) => {
                field_varint(&mut ap, 3, *i as u64);
                field_varint(&mut ap, 20, 2);
            }
            Attr::Tensor(t) => {
                field_bytes(&mut ap, 5, t);
                field_varint(&mut ap, 20, 4);
            }
            Attr::Graph(g) => {
                field_bytes(&mut ap, 6, g);
                field_varint(&mut ap, 20, 5);
            }
        }
        field_bytes(&mut n, 5, &ap);
    }
    n
}

/// A GraphProto.
pub fn graph(
    name: &str,
    nodes: &[Vec<u8>],
    inputs: &[Vec<u8>],
    outputs: &[Vec<u8>],
    inits: &[Vec<u8>],
) -> Vec<u8> {
    let mut g = Vec::new();
    for n in nodes {
        field_bytes(&mut g, 1, n);
    }
    field_bytes(&mut g, 2, name.as_bytes());
    for i in inits {
        field_bytes(&mut g, 5, i);
    }
    for i in inputs {
        field_bytes(&mut g, 11, i);
    }
    for o in outputs {
        field_bytes(&mut g, 12, o);
    }
    g
}

/// A ModelProto (IR 8, opset 17) with `dpm.*` style metadata.
pub fn model(graph: &[u8], metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut m = Vec::new();
    field_varint(&mut m, 1, 8);
    field_bytes(&mut m, 2, b"libdpm-tests");
    field_bytes(&mut m, 7, graph);
    let mut opset = Vec::new();
    field_bytes(&mut opset, 1, b"");
    field_varint(&mut opset, 2, 17);
    field_bytes(&mut m, 8, &opset);
    for (k, v) in metadata {
        let mut e = Vec::new();
        field_bytes(&mut e, 1, k.as_bytes());
        field_bytes(&mut e, 2, v.as_bytes());
        field_bytes(&mut m, 14, &e);
    }
    m
}

/// The usual inputs of a 2D model: `x` float [B, 2] and `t` float [B].
pub fn xt_inputs(dim: i64) -> Vec<Vec<u8>> {
    vec![
        value_info("x", FLOAT, Some(&[dyn_dim("B"), Dim::Fixed(dim)])),
        value_info("t", FLOAT, Some(&[dyn_dim("B")])),
    ]
}

/// The usual output: `out` float [B, dim].
pub fn out_output(dim: i64) -> Vec<u8> {
    value_info("out", FLOAT, Some(&[dyn_dim("B"), Dim::Fixed(dim)]))
}

/// `out = x * w` for a 2D model whose weight `w` [2] comes out of an `If` on a constant
/// true condition; the then-branch holds `w` as the initializer `then_init` (e.g. with
/// external data), the else-branch holds ones.
pub fn if_branch_model(then_init: Vec<u8>) -> Vec<u8> {
    let then_g = graph(
        "then",
        &[node("Identity", &["W"], &["wo"], &[])],
        &[],
        &[value_info("wo", FLOAT, Some(&[Dim::Fixed(2)]))],
        &[then_init],
    );
    let else_g = graph(
        "else",
        &[node("Identity", &["W1"], &["wo1"], &[])],
        &[],
        &[value_info("wo1", FLOAT, Some(&[Dim::Fixed(2)]))],
        &[tensor_f32("W1", &[2], &[1.0, 1.0])],
    );
    let g = graph(
        "if_model",
        &[
            node(
                "If",
                &["cond"],
                &["w"],
                &[
                    ("then_branch", Attr::Graph(then_g)),
                    ("else_branch", Attr::Graph(else_g)),
                ],
            ),
            node("Mul", &["x", "w"], &["out"], &[]),
        ],
        &xt_inputs(2),
        &[out_output(2)],
        &[tensor_raw("cond", BOOL, &[], &[1])],
    );
    model(&g, &[])
}

/// `out = x * w` with `w` [2] a main-graph initializer given as `init`.
pub fn mul_model(init: Vec<u8>) -> Vec<u8> {
    let g = graph(
        "mul_model",
        &[node("Mul", &["x", "W"], &["out"], &[])],
        &xt_inputs(2),
        &[out_output(2)],
        &[init],
    );
    model(&g, &[])
}

/// `out = x * 0 + c` (a model whose output is the constant `c` everywhere), with `x` of
/// `dims` (batch first).
pub fn constant_model(dims: &[Dim], c: f32) -> Vec<u8> {
    let g = graph(
        "constant",
        &[
            node("Mul", &["x", "zero"], &["z"], &[]),
            node("Add", &["z", "c"], &["out"], &[]),
        ],
        &[
            value_info("x", FLOAT, Some(dims)),
            value_info("t", FLOAT, Some(&[dyn_dim("B")])),
        ],
        &[value_info("out", FLOAT, Some(dims))],
        &[tensor_f32("zero", &[], &[0.0]), tensor_f32("c", &[], &[c])],
    );
    model(&g, &[])
}

/// `out = Identity(x)` with `x` and `out` declared as `dims`.
pub fn identity_model(dims: &[Dim]) -> Vec<u8> {
    let g = graph(
        "identity",
        &[
            node("Identity", &["x"], &["out"], &[]),
            // `t` must be used for ONNX Runtime to keep it as an input; a side output does it.
            node("Identity", &["t"], &["t_out"], &[]),
        ],
        &[
            value_info("x", FLOAT, Some(dims)),
            value_info("t", FLOAT, Some(&[dyn_dim("B")])),
        ],
        &[
            value_info("out", FLOAT, Some(dims)),
            value_info("t_out", FLOAT, Some(&[dyn_dim("B")])),
        ],
        &[],
    );
    model(&g, &[])
}

/// A class-conditional 2D model: `out = x * 0 + emb[labels]` (`emb` row k for label k,
/// 0 = null), inputs x [B,2], t [B], labels int64 [B].
pub fn cond_constant_model(emb: &[[f32; 2]]) -> Vec<u8> {
    let flat: Vec<f32> = emb.iter().flatten().copied().collect();
    let g = graph(
        "cond_constant",
        &[
            node(
                "Gather",
                &["emb", "labels"],
                &["e"],
                &[("axis", Attr::Int(0))],
            ),
            node("Mul", &["x", "zero"], &["z"], &[]),
            node("Add", &["z", "e"], &["out"], &[]),
        ],
        &[
            value_info("x", FLOAT, Some(&[dyn_dim("B"), Dim::Fixed(2)])),
            value_info("t", FLOAT, Some(&[dyn_dim("B")])),
            value_info("labels", INT64, Some(&[dyn_dim("B")])),
        ],
        &[out_output(2)],
        &[
            tensor_f32("emb", &[emb.len() as i64, 2], &flat),
            tensor_f32("zero", &[], &[0.0]),
        ],
    );
    model(&g, &[("dpm.num_classes", &(emb.len() - 1).to_string())])
}
