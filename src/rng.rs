//! Counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
//!
//! Every random value is a pure function of (seed, sample index, stream, position): sample `i`
//! of seed `s` gets the same initial noise and the same ancestral noise whatever the batch
//! size, the order of evaluation or the number of threads. Streams separate the uses: stream 0
//! is the initial noise x_T, stream `k >= 1` the noise injected by solver step `k - 1`; other
//! subsystems (training) use their own stream tags.

/// Per-row identity of a batch's samples: row `r` is sample `samples[r]` of seed `seeds[r]`.
/// Its initial noise and its ancestral noise depend on nothing else, so samples do not depend
/// on how they are batched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleIds {
    /// Seed of each row.
    pub seeds: Vec<u64>,
    /// Sample index of each row.
    pub samples: Vec<u64>,
}

impl SampleIds {
    /// Rows `first..first + rows` of one seed (sample indices wrap around at 2^64).
    pub fn range(seed: u64, first: u64, rows: usize) -> Self {
        Self {
            seeds: vec![seed; rows],
            samples: (0..rows as u64).map(|i| first.wrapping_add(i)).collect(),
        }
    }
}

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// One Philox4x32-10 block: 128-bit counter, 64-bit key -> 128 random bits.
pub fn philox4x32(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (ctr, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// Uniform in the open interval (0, 1) from 32 random bits (never 0, so `ln` is finite).
#[inline]
fn open01(u: u32) -> f64 {
    (f64::from(u) + 0.5) / 4_294_967_296.0
}

/// Standard-normal values for one sample: fills `out` with the normals of
/// (seed, sample, stream), position 0 onwards. Box-Muller on pairs of 32-bit words.
pub fn fill_normal(seed: u64, sample: u64, stream: u32, out: &mut [f32]) {
    let key = [seed as u32, (seed >> 32) as u32];
    for (block, chunk) in out.chunks_mut(4).enumerate() {
        let r = philox4x32(
            [block as u32, sample as u32, (sample >> 32) as u32, stream],
            key,
        );
        let mut z = [0f32; 4];
        for p in 0..2 {
            let (u1, u2) = (open01(r[2 * p]), open01(r[2 * p + 1]));
            let rad = (-2.0 * u1.ln()).sqrt();
            let ang = std::f64::consts::TAU * u2;
            z[2 * p] = (rad * ang.cos()) as f32;
            z[2 * p + 1] = (rad * ang.sin()) as f32;
        }
        chunk.copy_from_slice(&z[..chunk.len()]);
    }
}

/// Uniform values in [0, 1) for one (seed, sample, stream), 32 bits of resolution each.
pub fn fill_uniform(seed: u64, sample: u64, stream: u32, out: &mut [f64]) {
    let key = [seed as u32, (seed >> 32) as u32];
    for (block, chunk) in out.chunks_mut(4).enumerate() {
        let r = philox4x32(
            [block as u32, sample as u32, (sample >> 32) as u32, stream],
            key,
        );
        for (o, &w) in chunk.iter_mut().zip(&r) {
            *o = f64::from(w) / 4_294_967_296.0;
        }
    }
}

/// Fills a batch: row `r` (width `dim`) gets the normals of sample `first_sample + r`.
pub fn fill_normal_rows(seed: u64, first_sample: u64, stream: u32, dim: usize, out: &mut [f32]) {
    if dim == 0 {
        return;
    }
    for (r, row) in out.chunks_mut(dim).enumerate() {
        fill_normal(seed, first_sample + r as u64, stream, row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known-answer vectors of the Random123 distribution (kat_vectors, philox4x32 10 rounds).
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn normals_have_unit_moments_and_are_prefix_stable() {
        let mut v = vec![0f32; 200_000];
        fill_normal(7, 3, 0, &mut v);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.01,
            "{mean} {var}"
        );
        let mut head = vec![0f32; 7];
        fill_normal(7, 3, 0, &mut head);
        assert_eq!(&head[..], &v[..7]);
        let mut other = vec![0f32; 7];
        fill_normal(7, 4, 0, &mut other);
        assert_ne!(head, other);
    }
}
