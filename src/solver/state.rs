//! The state every stepper works on: the batch `x`, an intermediate state `q`, the buffers of
//! converted model outputs `m`, and the operations on them (conversion from the network's
//! prediction type, dynamic thresholding, the fused linear updates, ancestral noise).
//!
//! A stepper never touches a buffer element by element: it computes coefficients in f64 (in
//! [`super::coeffs`] or its own file) and hands them to [`State::apply_to_x`] and its
//! siblings, which run one fused pass over the f32 data. The term order of every update is the
//! slot order of `m`, so results are bit-identical however a stepper lists its terms.

use super::coeffs::{At, Domain, Lin};
use super::config::{Prediction, Thresholding};
use super::kernels::{lincomb, lincomb_inplace};
use crate::rng::{self, SampleIds};
use crate::schedule::Schedule;

/// Most model-output buffers a stepper may hold: one update combines at most this many.
pub(crate) const MAX_SLOTS: usize = super::kernels::MAX_TERMS;

/// Buffers and schedule of a run (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct State {
    /// The noise schedule.
    pub sched: Schedule,
    /// Noise (DPM-Solver) or data (DPM-Solver++) domain of the buffers in `m`.
    pub domain: Domain,
    /// What the network outputs.
    pub prediction: Prediction,
    /// Dynamic thresholding of data predictions.
    pub thresholding: Option<Thresholding>,
    /// Thread ceiling of the updates.
    pub threads: usize,
    /// Samples in the batch.
    pub rows: usize,
    /// Values per sample.
    pub dim: usize,
    /// The state.
    pub x: Vec<f32>,
    /// An intermediate state (singlestep stages) or scratch (ancestral noise).
    pub q: Vec<f32>,
    /// Converted model outputs; a stepper's unused slots are empty.
    pub m: Vec<Vec<f32>>,
    /// Where the ancestral noise of each row comes from.
    pub noise: SampleIds,
}

impl State {
    /// Schedule values at model time `tau`.
    pub fn at(&self, tau: f64) -> At {
        let log_alpha = self.sched.log_alpha(tau);
        let sigma = self.sched.sigma(tau);
        At {
            log_alpha,
            sigma,
            lambda: log_alpha - sigma.ln(),
        }
    }

    /// `m[slot] = sum_i w_i part_i` converted to the solver's domain at model time `tq` for
    /// the query state (`x`, or `q` when `query_is_x` is false), then thresholded. Returns the
    /// index of the first non-finite value, if any.
    pub fn convert(
        &mut self,
        tq: f64,
        query_is_x: bool,
        parts: &[(f32, &[f32])],
        slot: usize,
    ) -> Option<usize> {
        let at = self.at(tq);
        let (alpha, sigma) = (at.alpha(), at.sigma);
        // m = p * x_query + k * raw
        let (p, k) = match (self.domain, self.prediction) {
            (Domain::Noise, Prediction::Eps) | (Domain::Data, Prediction::X0) => (0.0, 1.0),
            (Domain::Noise, Prediction::X0) => (1.0 / sigma, -alpha / sigma),
            (Domain::Noise, Prediction::V) => (sigma, alpha),
            (Domain::Data, Prediction::Eps) => (1.0 / alpha, -sigma / alpha),
            (Domain::Data, Prediction::V) => (alpha, -sigma),
        };
        let xq: &[f32] = if query_is_x { &self.x } else { &self.q };
        let mut out = std::mem::take(&mut self.m[slot]);
        let k = k as f32;
        let scaled: [(f32, &[f32]); 2] = [
            (k * parts[0].0, parts[0].1),
            parts.get(1).map_or((0.0, &[][..]), |q| (k * q.0, q.1)),
        ];
        lincomb(&mut out, p as f32, xq, &scaled[..parts.len()], self.threads);
        let bad = out.iter().position(|v| !v.is_finite());
        if bad.is_none() {
            if let Some(th) = self.thresholding {
                threshold(&mut out, self.dim, th);
            }
        }
        self.m[slot] = out;
        bad
    }

    /// The terms `c_j * m[j]` of `lin` over the first three slots.
    fn lin_terms(&self, lin: Lin) -> [(f32, &[f32]); 3] {
        [
            (lin.c[0] as f32, self.m[0].as_slice()),
            (lin.c[1] as f32, self.m[1].as_slice()),
            (lin.c[2] as f32, self.m[2].as_slice()),
        ]
    }

    /// `x = a x + c0 m0 + c1 m1 + c2 m2`.
    pub fn apply_to_x(&mut self, lin: Lin) {
        let mut x = std::mem::take(&mut self.x);
        lincomb_inplace(&mut x, lin.a as f32, &self.lin_terms(lin), self.threads);
        self.x = x;
    }

    /// `q = a x + c0 m0 + c1 m1 + c2 m2` (an intermediate state).
    pub fn apply_to_q(&mut self, lin: Lin) {
        let mut q = std::mem::take(&mut self.q);
        self.lin_into(&mut q, lin);
        self.q = q;
    }

    /// `out = a x + c0 m0 + c1 m1 + c2 m2` into a stepper's own buffer.
    pub fn lin_into(&self, out: &mut [f32], lin: Lin) {
        lincomb(
            out,
            lin.a as f32,
            &self.x,
            &self.lin_terms(lin),
            self.threads,
        );
    }

    /// `x = a x + sum c_j m[slot_j]` for any slots (at most [`MAX_SLOTS`] terms); the terms
    /// are applied in slot order.
    pub fn combine_x(&mut self, a: f64, terms: &[(f64, usize)]) {
        let mut c = [0f32; MAX_SLOTS];
        for &(w, s) in terms {
            c[s] = w as f32;
        }
        let mut x = std::mem::take(&mut self.x);
        // A fixed array, not a Vec: sampling allocates nothing per step.
        let mut t: [(f32, &[f32]); MAX_SLOTS] = [(0.0, &[]); MAX_SLOTS];
        for ((t, &w), m) in t.iter_mut().zip(&c).zip(&self.m) {
            *t = (w, m.as_slice());
        }
        lincomb_inplace(
            &mut x,
            a as f32,
            &t[..self.m.len().min(MAX_SLOTS)],
            self.threads,
        );
        self.x = x;
    }

    /// `x += std * z`, `z` the ancestral noise of random stream `stream` for each row.
    pub fn add_noise(&mut self, std: f32, stream: u32) {
        for r in 0..self.rows {
            let row = &mut self.q[r * self.dim..(r + 1) * self.dim];
            rng::fill_normal(self.noise.seeds[r], self.noise.samples[r], stream, row);
        }
        let q = std::mem::take(&mut self.q);
        lincomb_inplace(&mut self.x, 1.0, &[(std, &q)], self.threads);
        self.q = q;
    }
}

/// Dynamic thresholding per sample: `s = clamp(quantile(|x0|, ratio), 1, max_val)`,
/// `x0 = clamp(x0, -s, s) / s`.
fn threshold(x0: &mut [f32], dim: usize, th: Thresholding) {
    let mut abs: Vec<f32> = Vec::with_capacity(dim);
    for row in x0.chunks_mut(dim) {
        abs.clear();
        abs.extend(row.iter().map(|v| v.abs()));
        // Linear-interpolated quantile, like torch.quantile.
        let pos = th.ratio * (dim - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(dim - 1);
        abs.select_nth_unstable_by(lo, f32::total_cmp);
        let v_lo = abs[lo] as f64;
        let v_hi = if hi > lo {
            abs[lo + 1..].iter().copied().fold(f32::INFINITY, f32::min) as f64
        } else {
            v_lo
        };
        let q = v_lo + (v_hi - v_lo) * (pos - lo as f64);
        let s = q.clamp(1.0, th.max_val.max(1.0)) as f32;
        row.iter_mut().for_each(|v| *v = v.clamp(-s, s) / s);
    }
}
