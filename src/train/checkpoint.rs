//! Training checkpoints: parameters, optimizer state, EMA, loss history, step and the
//! configuration in one versioned, checksummed file, written atomically.
//!
//! Layout (little-endian): magic `DPMCKPT\0`, u32 version (1), u32 header length, the header
//! (JSON: network, weights_sha256, step, config, lengths), the loss history (f32), the state
//! tensors (f32: params, Adam m, Adam v, then EMA if kept, each in manifest order), and a CRC-32
//! of everything before it. A truncated or corrupt file is refused; since writes go to a
//! temporary file renamed into place, a crash during a write leaves the previous checkpoint.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::TrainConfig;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"DPMCKPT\0";
const VERSION: u32 = 1;

/// What a checkpoint's header records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    /// Network name.
    pub network: String,
    /// Identity of the network build (the manifest's weights_sha256).
    pub weights_sha256: String,
    /// Optimizer steps done.
    pub step: u64,
    /// The training configuration.
    pub config: TrainConfig,
    /// Number of loss values stored.
    pub losses: usize,
    /// Values per state tensor set (all parameters).
    pub values: usize,
    /// Number of state sets stored (3: p, m, v; 4 with EMA).
    pub sets: usize,
}

/// A checkpoint in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Header.
    pub header: Header,
    /// Loss of every step so far.
    pub losses: Vec<f32>,
    /// State sets, each `header.values` long: params, m, v (, ema).
    pub state: Vec<Vec<f32>>,
}

fn corrupt(path: &Path, why: &str) -> Error {
    Error::Model {
        path: path.into(),
        reason: format!("not a valid libdpm checkpoint: {why}; nothing was loaded"),
    }
}

impl Checkpoint {
    /// Serialises to bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let header = serde_json::to_vec(&self.header)
            .map_err(|e| Error::InvalidArgument(format!("checkpoint header: {e}")))?;
        let n: usize = self.state.iter().map(Vec::len).sum();
        let mut b = Vec::with_capacity(24 + header.len() + 4 * (self.losses.len() + n));
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&(header.len() as u32).to_le_bytes());
        b.extend_from_slice(&header);
        for v in self.losses.iter().chain(self.state.iter().flatten()) {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        Ok(b)
    }

    /// Writes atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_atomic(path, &self.to_bytes()?)
    }

    /// Reads and verifies a checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        // A regular file only (a FIFO would block), of at most the largest state libdpm
        // writes (the sum of the model's external data cap and the moments: 4x that).
        let b = crate::fsutil::read_regular(path, 4 * crate::onnx_file::MAX_WEIGHT_BYTES)?;
        Self::from_bytes(&b, path)
    }

    /// Parses and verifies checkpoint bytes (`path` is for messages).
    pub fn from_bytes(b: &[u8], path: &Path) -> Result<Self> {
        if b.len() < 20 || &b[..8] != MAGIC {
            return Err(corrupt(path, "wrong magic or too short"));
        }
        let (body, tail) = b.split_at(b.len() - 4);
        let crc = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        if crc32fast::hash(body) != crc {
            return Err(corrupt(path, "checksum mismatch (truncated or damaged)"));
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
        let version = u32_at(8);
        if version != VERSION {
            return Err(corrupt(
                path,
                &format!("version {version}, this libdpm reads {VERSION}"),
            ));
        }
        let hl = u32_at(12) as usize;
        let rest = body
            .get(16..)
            .ok_or_else(|| corrupt(path, "truncated header"))?;
        if rest.len() < hl {
            return Err(corrupt(path, "truncated header"));
        }
        let header: Header = serde_json::from_slice(&rest[..hl])
            .map_err(|e| corrupt(path, &format!("bad header: {e}")))?;
        let data = &rest[hl..];
        let want = header
            .losses
            .checked_add(
                header
                    .values
                    .checked_mul(header.sets)
                    .ok_or_else(|| corrupt(path, "sizes overflow"))?,
            )
            .ok_or_else(|| corrupt(path, "sizes overflow"))?;
        if data.len() != 4 * want {
            return Err(corrupt(
                path,
                &format!(
                    "{} payload bytes, the header announces {}",
                    data.len(),
                    4 * want
                ),
            ));
        }
        let mut vals = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        let losses: Vec<f32> = vals.by_ref().take(header.losses).collect();
        let state = (0..header.sets)
            .map(|_| vals.by_ref().take(header.values).collect())
            .collect();
        Ok(Self {
            header,
            losses,
            state,
        })
    }
}
