//! Reading an ONNX model file and the external weight files it names, defensively, into memory
//! for ONNX Runtime.
//!
//! Given a path, ONNX Runtime would open the external data files itself: relative to the model
//! for the main graph's initializers, but relative to the *working folder* for tensors inside
//! subgraphs (an `If` branch, a `Loop` body) or in node attributes, following symlinks
//! anywhere, mapping whatever size a file has. libdpm therefore reads everything itself and
//! hands ONNX Runtime bytes only:
//! - only regular files are opened ([`crate::fsutil::open_regular`]): a FIFO, a device or a
//!   folder is refused, never read;
//! - every external-data reference, at any depth (graph initializers, subgraphs of node
//!   attributes, tensor and sparse-tensor attributes, model-local functions), must name a file
//!   inside the model's folder, symlinks resolved;
//! - only the byte range each tensor names is read, after checking it against the tensor's
//!   size (dims x element size) and the file's size, under [`MAX_WEIGHT_BYTES`] in all;
//! - the main graph's initializers go to ONNX Runtime as compact in-memory files (the ranges
//!   packed, their offsets rewritten); tensors anywhere else, which ONNX Runtime would not
//!   look up in memory, are inlined into the model as `raw_data`.
//!
//! The ONNX protobuf is walked with the field numbers of `onnx.proto` (ModelProto, GraphProto,
//! NodeProto, AttributeProto, TensorProto, SparseTensorProto, FunctionProto); fields libdpm
//! does not touch are copied byte for byte.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::{open_regular, read_regular};

/// Largest model file libdpm reads: protobuf's own 2 GiB message limit (weights above it
/// belong in external data files).
pub const MAX_MODEL_FILE_BYTES: u64 = (1 << 31) - 1;

/// Most external-data bytes one model may name in all (64 GiB): a model naming more is
/// refused before anything is read.
pub const MAX_WEIGHT_BYTES: u64 = 1 << 36;

/// Deepest nesting of graphs (subgraphs of subgraphs) libdpm follows.
pub const MAX_GRAPH_DEPTH: usize = 64;

/// A model ready for ONNX Runtime: the (possibly rewritten) model bytes and the in-memory
/// external data files its main-graph initializers name, by location.
#[derive(Debug)]
pub struct ModelBytes {
    /// The serialized ModelProto.
    pub model: Vec<u8>,
    /// `(location, bytes)` of each external data file, holding only the named ranges.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Reads the model at `path` and every external data range it names (see the module docs).
pub fn read_model(path: &Path) -> Result<ModelBytes> {
    let bytes = read_regular(path, MAX_MODEL_FILE_BYTES)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let root = dir.canonicalize().map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut w = Walker {
        model: path,
        dir,
        root,
        files: BTreeMap::new(),
        total: 0,
        depth: 0,
        scan_only: false,
        locations: Vec::new(),
    };
    let model = w.model_proto(&bytes)?.unwrap_or(bytes);
    let files = w
        .files
        .into_iter()
        .filter(|(_, f)| !f.packed.is_empty())
        .map(|(k, f)| (k, f.buf))
        .collect();
    Ok(ModelBytes { model, files })
}

/// The external data files (`location`s) an ONNX model names at any depth, in first-use
/// order, without opening any of them. Malformed input gives what could be read before the
/// damage.
pub fn external_data_files(model: &[u8]) -> Vec<String> {
    let mut w = Walker {
        model: Path::new(""),
        dir: Path::new(""),
        root: PathBuf::new(),
        files: BTreeMap::new(),
        total: 0,
        depth: 0,
        scan_only: true,
        locations: Vec::new(),
    };
    let _ = w.model_proto(model);
    w.locations
}

/// One field of a protobuf message: number, wire type, the whole field's bytes (key
/// included) and, for length-delimited fields, the payload.
struct Field<'a> {
    num: u64,
    wire: u64,
    raw: &'a [u8],
    payload: &'a [u8],
    varint: u64,
}

fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a length-delimited field.
fn put_bytes(out: &mut Vec<u8>, num: u64, payload: &[u8]) {
    put_varint(out, (num << 3) | 2);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// The fields of a message, or where it is malformed.
fn fields(b: &[u8]) -> std::result::Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let bad = || format!("malformed protobuf at byte {start}");
        let key = varint(b, &mut i).ok_or_else(bad)?;
        let (wire, num) = (key & 7, key >> 3);
        let mut payload: &[u8] = &[];
        let mut value = 0;
        match wire {
            0 => value = varint(b, &mut i).ok_or_else(bad)?,
            1 | 5 => {
                i = i
                    .checked_add(if wire == 1 { 8 } else { 4 })
                    .filter(|&e| e <= b.len())
                    .ok_or_else(bad)?
            }
            2 => {
                let n = varint(b, &mut i).ok_or_else(bad)?;
                let end = usize::try_from(n)
                    .ok()
                    .and_then(|n| i.checked_add(n))
                    .filter(|&e| e <= b.len())
                    .ok_or_else(bad)?;
                payload = &b[i..end];
                i = end;
            }
            _ => return Err(bad()),
        }
        if num == 0 {
            return Err(bad());
        }
        out.push(Field {
            num,
            wire,
            raw: &b[start..i],
            payload,
            varint: value,
        });
    }
    Ok(out)
}

/// Bytes per element of an ONNX TensorProto data type, as (numerator, denominator): 4-bit
/// types pack two elements per byte. None for strings and unknown types.
fn element_size(data_type: u64) -> Option<(u64, u64)> {
    Some(match data_type {
        2 | 3 | 9 | 17..=20 => (1, 1), // uint8, int8, bool, float8 variants
        4 | 5 | 10 | 16 => (2, 1),     // uint16, int16, float16, bfloat16
        1 | 6 | 12 => (4, 1),          // float, int32, uint32
        7 | 11 | 13 | 14 => (8, 1),    // int64, double, uint64, complex64
        15 => (16, 1),                 // complex128
        21..=23 => (1, 2),             // uint4, int4, float4e2m1
        _ => return None,
    })
}

/// An opened external data file and the compact copy of its named ranges.
struct ExtFile {
    file: std::fs::File,
    path: PathBuf,
    len: u64,
    /// The named ranges, packed: `(offset, length)` in the file -> offset in `buf`.
    packed: BTreeMap<(u64, u64), u64>,
    buf: Vec<u8>,
}

struct Walker<'a> {
    model: &'a Path,
    dir: &'a Path,
    /// The model's folder, symlinks resolved.
    root: PathBuf,
    files: BTreeMap<String, ExtFile>,
    total: u64,
    depth: usize,
    /// Only list the locations (no file is opened).
    scan_only: bool,
    locations: Vec<String>,
}

/// A new message from `b`'s fields, each kept or replaced by `edit(number, payload)` (only
/// length-delimited fields are offered); None when nothing changed.
fn rewrite(
    b: &[u8],
    mut edit: impl FnMut(u64, &[u8]) -> Result<Option<Vec<u8>>>,
    bad: impl Fn(String) -> Error,
) -> Result<Option<Vec<u8>>> {
    let fs = fields(b).map_err(&bad)?;
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for f in &fs {
        let new = if f.wire == 2 {
            edit(f.num, f.payload)?
        } else {
            None
        };
        if let Some(n) = new {
            let o = out.get_or_insert_with(|| Vec::with_capacity(b.len()));
            o.extend_from_slice(&b[copied..f.raw.as_ptr() as usize - b.as_ptr() as usize]);
            put_bytes(o, f.num, &n);
            copied = f.raw.as_ptr() as usize - b.as_ptr() as usize + f.raw.len();
        }
    }
    Ok(out.map(|mut o| {
        o.extend_from_slice(&b[copied..]);
        o
    }))
}

impl Walker<'_> {
    fn bad(&self, reason: String) -> Error {
        Error::Model {
            path: self.model.to_path_buf(),
            reason,
        }
    }

    fn model_proto(&mut self, b: &[u8]) -> Result<Option<Vec<u8>>> {
        let model = self.model.to_path_buf();
        let bad = move |r: String| Error::Model {
            path: model.clone(),
            reason: format!("not an ONNX model: {r}"),
        };
        // ModelProto: graph = 7, functions = 25.
        rewrite(
            b,
            |num, p| match num {
                7 => self.graph(p, true),
                25 => self.function(p),
                _ => Ok(None),
            },
            bad,
        )
    }

    fn sub_bad(&self) -> impl Fn(String) -> Error {
        let model = self.model.to_path_buf();
        move |r: String| Error::Model {
            path: model.clone(),
            reason: r,
        }
    }

    fn graph(&mut self, b: &[u8], main: bool) -> Result<Option<Vec<u8>>> {
        if self.depth >= MAX_GRAPH_DEPTH {
            return Err(self.bad(format!("graphs nested more than {MAX_GRAPH_DEPTH} deep")));
        }
        self.depth += 1;
        let bad = self.sub_bad();
        // GraphProto: node = 1, initializer = 5, sparse_initializer = 15.
        let r = rewrite(
            b,
            |num, p| match num {
                1 => self.node(p),
                5 => self.tensor(p, main),
                15 => self.sparse(p),
                _ => Ok(None),
            },
            bad,
        );
        self.depth -= 1;
        r
    }

    fn node(&mut self, b: &[u8]) -> Result<Option<Vec<u8>>> {
        let bad = self.sub_bad();
        // NodeProto: attribute = 5.
        rewrite(
            b,
            |num, p| {
                if num == 5 {
                    self.attribute(p)
                } else {
                    Ok(None)
                }
            },
            bad,
        )
    }

    fn attribute(&mut self, b: &[u8]) -> Result<Option<Vec<u8>>> {
        let bad = self.sub_bad();
        // AttributeProto: t = 5, g = 6, tensors = 10, graphs = 11, sparse_tensor = 22,
        // sparse_tensors = 23.
        rewrite(
            b,
            |num, p| match num {
                5 | 10 => self.tensor(p, false),
                6 | 11 => self.graph(p, false),
                22 | 23 => self.sparse(p),
                _ => Ok(None),
            },
            bad,
        )
    }

    fn sparse(&mut self, b: &[u8]) -> Result<Option<Vec<u8>>> {
        let bad = self.sub_bad();
        // SparseTensorProto: values = 1, indices = 2.
        rewrite(
            b,
            |num, p| match num {
                1 | 2 => self.tensor(p, false),
                _ => Ok(None),
            },
            bad,
        )
    }

    fn function(&mut self, b: &[u8]) -> Result<Option<Vec<u8>>> {
        let bad = self.sub_bad();
        // FunctionProto: node = 7.
        rewrite(
            b,
            |num, p| if num == 7 { self.node(p) } else { Ok(None) },
            bad,
        )
    }

    /// A TensorProto: unchanged without external data; otherwise its range is read and the
    /// tensor points into the compact in-memory file (`main`) or carries the bytes inline.
    fn tensor(&mut self, b: &[u8], main: bool) -> Result<Option<Vec<u8>>> {
        let fs = fields(b).map_err(|r| self.bad(r))?;
        // TensorProto: dims = 1, data_type = 2, name = 8, external_data = 13,
        // data_location = 14 (1 = EXTERNAL).
        let external = fs
            .iter()
            .any(|f| f.num == 14 && f.wire == 0 && f.varint == 1);
        let mut entries: Vec<(String, String)> = Vec::new();
        for f in fs.iter().filter(|f| f.num == 13 && f.wire == 2) {
            let kv = fields(f.payload).map_err(|r| self.bad(r))?;
            let get = |n| {
                kv.iter()
                    .find(|f| f.num == n && f.wire == 2)
                    .map(|f| String::from_utf8_lossy(f.payload).into_owned())
                    .unwrap_or_default()
            };
            entries.push((get(1), get(2)));
        }
        if !external && entries.is_empty() {
            return Ok(None);
        }
        let name = fs
            .iter()
            .find(|f| f.num == 8 && f.wire == 2)
            .map(|f| String::from_utf8_lossy(f.payload).into_owned())
            .unwrap_or_default();
        let entry = |k: &str| entries.iter().find(|e| e.0 == k).map(|e| e.1.as_str());
        let Some(location) = entry("location").map(str::to_string) else {
            return Err(self.bad(format!(
                "tensor '{name}' has external data without a location"
            )));
        };
        if self.scan_only {
            if !self.locations.contains(&location) {
                self.locations.push(location);
            }
            return Ok(None);
        }
        let number = |k: &str| -> Result<Option<u64>> {
            match entry(k) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    self.bad(format!(
                        "tensor '{name}': external data {k} '{v}' is not a byte count"
                    ))
                }),
            }
        };
        let offset = number("offset")?.unwrap_or(0);
        let length = number("length")?;
        let expected = self.tensor_bytes(&fs, &name)?;
        if let Some(l) = length.filter(|&l| l != expected) {
            return Err(self.bad(format!(
                "tensor '{name}' names {l} bytes of external data, but its shape and type need {expected}"
            )));
        }
        if self.total.saturating_add(expected) > MAX_WEIGHT_BYTES {
            return Err(self.bad(format!(
                "the model names more than {MAX_WEIGHT_BYTES} bytes of external data"
            )));
        }
        self.total += expected;
        let data = self.read_range(&location, offset, expected, &name, main)?;
        let mut out = Vec::with_capacity(b.len() + data.as_ref().map_or(0, Vec::len));
        for f in fs
            .iter()
            .filter(|f| f.num != 13 && f.num != 14 && f.num != 9)
        {
            out.extend_from_slice(f.raw);
        }
        match data {
            // Inline: raw_data = 9.
            Some(bytes) => put_bytes(&mut out, 9, &bytes),
            None => {
                let packed_at = self
                    .files
                    .get(&location)
                    .and_then(|f| f.packed.get(&(offset, expected)).copied())
                    .unwrap_or(0);
                for (k, v) in [
                    ("location", location.clone()),
                    ("offset", packed_at.to_string()),
                    ("length", expected.to_string()),
                ] {
                    let mut e = Vec::new();
                    put_bytes(&mut e, 1, k.as_bytes());
                    put_bytes(&mut e, 2, v.as_bytes());
                    put_bytes(&mut out, 13, &e);
                }
                put_varint(&mut out, 14 << 3);
                put_varint(&mut out, 1);
            }
        }
        Ok(Some(out))
    }

    /// The bytes a tensor's dims and data type need (checked arithmetic).
    fn tensor_bytes(&self, fs: &[Field<'_>], name: &str) -> Result<u64> {
        let mut dims = Vec::new();
        for f in fs.iter().filter(|f| f.num == 1) {
            match f.wire {
                0 => dims.push(f.varint),
                2 => {
                    let mut i = 0;
                    while i < f.payload.len() {
                        let d = varint(f.payload, &mut i)
                            .ok_or_else(|| self.bad(format!("tensor '{name}': malformed dims")))?;
                        dims.push(d);
                    }
                }
                _ => {}
            }
        }
        let dtype = fs
            .iter()
            .find(|f| f.num == 2 && f.wire == 0)
            .map_or(0, |f| f.varint);
        let (num, den) = element_size(dtype).ok_or_else(|| {
            self.bad(format!(
                "tensor '{name}' has data type {dtype}, which libdpm cannot read as external data"
            ))
        })?;
        let too_big = || self.bad(format!("tensor '{name}' has dims {dims:?}: too large"));
        let count = dims
            .iter()
            .try_fold(1u64, |a, &d| {
                // A negative int64 dim arrives as a huge varint.
                i64::try_from(d).ok().and_then(|_| a.checked_mul(d))
            })
            .ok_or_else(too_big)?;
        count
            .checked_mul(num)
            .map(|b| b.div_ceil(den))
            .ok_or_else(too_big)
    }

    /// Opens (once) the file `location` names, after checking that it stays in the model's
    /// folder.
    fn open(&mut self, location: &str) -> Result<&mut ExtFile> {
        if !self.files.contains_key(location) {
            let rel = Path::new(location);
            if location.is_empty()
                || rel.is_absolute()
                || rel.components().any(|c| !matches!(c, Component::Normal(_)))
            {
                return Err(self.bad(format!(
                    "external data location {location:?} leaves the model's folder"
                )));
            }
            let path = self.dir.join(rel);
            let real = path.canonicalize().map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?;
            if !real.starts_with(&self.root) {
                return Err(self.bad(format!(
                    "external data file {} resolves to {}, outside the model's folder",
                    path.display(),
                    real.display()
                )));
            }
            let (file, len) = open_regular(&real).map_err(|e| match e {
                Error::Io { source, .. } => Error::Io {
                    path: path.clone(),
                    source,
                },
                e => e,
            })?;
            self.files.insert(
                location.to_string(),
                ExtFile {
                    file,
                    path,
                    len,
                    packed: BTreeMap::new(),
                    buf: Vec::new(),
                },
            );
        }
        self.files
            .get_mut(location)
            .ok_or_else(|| Error::State("external file table".into()))
    }

    /// Reads `len` bytes at `offset` of `location`: returned for inlining, or (`main`) packed
    /// into the file's compact in-memory copy.
    fn read_range(
        &mut self,
        location: &str,
        offset: u64,
        len: u64,
        name: &str,
        main: bool,
    ) -> Result<Option<Vec<u8>>> {
        let model = self.model.to_path_buf();
        let f = self.open(location)?;
        let end = offset.checked_add(len).filter(|&e| e <= f.len);
        if end.is_none() {
            return Err(Error::Model {
                path: model,
                reason: format!(
                    "tensor '{name}' names bytes {offset}..{} of {}, which has {} bytes",
                    offset.saturating_add(len),
                    f.path.display(),
                    f.len
                ),
            });
        }
        let no_memory = |n: u64| Error::Model {
            path: model.clone(),
            reason: format!("cannot allocate {n} bytes for tensor '{name}'"),
        };
        let io = |e, p: &Path| Error::Io {
            path: p.to_path_buf(),
            source: e,
        };
        if main {
            if f.packed.contains_key(&(offset, len)) {
                return Ok(None);
            }
            let at = f.buf.len();
            let n = usize::try_from(len).map_err(|_| no_memory(len))?;
            f.buf.try_reserve(n).map_err(|_| no_memory(len))?;
            f.buf.resize(at + n, 0);
            f.file
                .read_exact_at(&mut f.buf[at..], offset)
                .map_err(|e| io(e, &f.path))?;
            f.packed.insert((offset, len), at as u64);
            Ok(None)
        } else {
            let n = usize::try_from(len).map_err(|_| no_memory(len))?;
            let mut v = Vec::new();
            v.try_reserve_exact(n).map_err(|_| no_memory(len))?;
            v.resize(n, 0);
            f.file
                .read_exact_at(&mut v, offset)
                .map_err(|e| io(e, &f.path))?;
            Ok(Some(v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut i = 0;
            assert_eq!(varint(&b, &mut i), Some(v));
            assert_eq!(i, b.len());
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(fields(&[0x0a, 0x05, 1, 2]).is_err()); // length past the end
        assert!(fields(&[0x0b]).is_err()); // wire type 3 (groups)
        assert!(fields(&[0x02, 0]).is_err()); // field number 0
        assert!(fields(&[0x0d, 1, 2]).is_err()); // fixed32 past the end
        assert_eq!(fields(&[0x08, 0x96, 0x01]).map(|f| f[0].varint), Ok(150));
    }

    #[test]
    fn element_sizes() {
        assert_eq!(element_size(1), Some((4, 1)));
        assert_eq!(element_size(7), Some((8, 1)));
        assert_eq!(element_size(8), None); // strings
        assert_eq!(element_size(22), Some((1, 2)));
    }
}
