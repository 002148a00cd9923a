//! Adaptive step size (Lu et al. 2022, section 4.2): DPM-Solver-12 and -23 take a lower- and a
//! higher-order singlestep candidate from the same evaluations, and the scaled difference
//! between them accepts or rejects the step and sets the next step size in lambda.

use super::coeffs::{self, At};
use super::config::AdaptiveParams;
use super::state::State;
use super::stepper::{Next, Stepper};
use crate::error::{Error, Result};

/// The adaptive stepper.
#[derive(Debug, Clone)]
pub(crate) struct Adaptive {
    order: usize,
    /// Model time of the initial state.
    start: f64,
    params: AdaptiveParams,
    stage: usize,
    s: f64,
    h: f64,
    lambda_end: f64,
    t: f64,
    s1: f64,
    s2: f64,
    accepted: usize,
    rejected: usize,
    /// Total evaluations so far (the safety bound).
    nfe: usize,
    /// Lower- and higher-order candidates, and the previous lower-order state.
    cand: [Vec<f32>; 3],
}

impl Adaptive {
    /// A run of DPM-Solver-12 (`order` 2) or -23 (3) from model time `start` on the state `x`.
    pub fn new(st: &State, order: usize, params: AdaptiveParams, start: f64) -> Self {
        let n = st.x.len();
        Self {
            order,
            start,
            params,
            stage: 0,
            s: start,
            h: params.h_init,
            lambda_end: st.sched.lambda(0.0),
            t: 0.0,
            s1: 0.0,
            s2: 0.0,
            accepted: 0,
            rejected: 0,
            nfe: 0,
            cand: [vec![0f32; n], vec![0f32; n], st.x.clone()],
        }
    }

    fn ratios(&self) -> (f64, f64) {
        if self.order == 2 {
            (0.5, 1.0)
        } else {
            (1.0 / 3.0, 2.0 / 3.0)
        }
    }

    /// Stage 0 output is in: pick t from the step size and ask for the first intermediate.
    fn propose(&mut self, st: &mut State, s: &At) -> Next {
        let (r1, _) = self.ratios();
        self.t = st.sched.tau_of_lambda(s.lambda + self.h);
        let h = st.at(self.t).lambda - s.lambda;
        self.s1 = st.sched.tau_of_lambda(s.lambda + r1 * h);
        let lin = coeffs::first_h(st.domain, s, &st.at(self.s1), r1 * h);
        st.apply_to_q(lin);
        self.stage = 1;
        Next::Query {
            t: self.s1,
            at_x: false,
        }
    }
}

impl Stepper for Adaptive {
    fn target_slot(&self) -> usize {
        self.stage
    }

    fn advance(&mut self, st: &mut State, _slot: usize, _tq: f64) -> Result<Next> {
        self.nfe += 1;
        let d = st.domain;
        let order = self.order;
        let (r1, r2) = self.ratios();
        let s = st.at(self.s);
        match self.stage {
            0 => return Ok(self.propose(st, &s)),
            1 if order == 3 => {
                let h = st.at(self.t).lambda - s.lambda;
                self.s2 = st.sched.tau_of_lambda(s.lambda + r2 * h);
                let lin = coeffs::third_stage2(d, &s, &st.at(self.s2), h, r1, r2);
                st.apply_to_q(lin);
                self.stage = 2;
                return Ok(Next::Query {
                    t: self.s2,
                    at_x: false,
                });
            }
            _ => {}
        }
        // All stages in: lower- and higher-order candidates, error estimate.
        let t = st.at(self.t);
        let (lower, higher) = if order == 2 {
            (coeffs::first(d, &s, &t), coeffs::second(d, &s, &t, r1))
        } else {
            (coeffs::second(d, &s, &t, r1), coeffs::third(d, &s, &t, r2))
        };
        let mut cand = std::mem::take(&mut self.cand);
        for (buf, lin) in cand[..2].iter_mut().zip([lower, higher]) {
            st.lin_into(buf, lin);
        }
        let p = self.params;
        let mut e_max = 0f64;
        for r in 0..st.rows {
            let span = r * st.dim..(r + 1) * st.dim;
            let mut acc = 0f64;
            for ((&lo, &hi), &prev) in cand[0][span.clone()]
                .iter()
                .zip(&cand[1][span.clone()])
                .zip(&cand[2][span])
            {
                let delta = p.atol.max(p.rtol * (lo.abs().max(prev.abs()) as f64));
                acc += ((hi - lo) as f64 / delta).powi(2);
            }
            e_max = e_max.max((acc / st.dim as f64).sqrt());
        }
        if e_max <= 1.0 {
            st.x.copy_from_slice(&cand[1]);
            let (lo, prev) = cand.split_at_mut(2);
            prev[0].copy_from_slice(&lo[0]);
            self.s = self.t;
            self.accepted += 1;
        } else {
            self.rejected += 1;
        }
        self.cand = cand;
        let lambda_s = st.sched.lambda(self.s);
        self.h = (p.theta * self.h * e_max.max(1e-10).powf(-1.0 / order as f64))
            .min(self.lambda_end - lambda_s);
        // Continuous time (tau + 1) / N within t_err of its end (1 / N): done.
        if (self.s / st.sched.len() as f64) <= p.t_err {
            return Ok(Next::Done);
        }
        if self.nfe >= p.max_nfe {
            return Err(Error::State(format!(
                "adaptive solver exceeded {} evaluations",
                p.max_nfe
            )));
        }
        if e_max <= 1.0 {
            // A new evaluation at the accepted state.
            self.stage = 0;
            Ok(Next::Query {
                t: self.s,
                at_x: true,
            })
        } else {
            // The evaluation at s is still valid: propose a smaller step.
            let s = st.at(self.s);
            Ok(self.propose(st, &s))
        }
    }

    fn step_index(&self) -> usize {
        self.accepted
    }
    fn start_time(&self) -> f64 {
        self.start
    }
    fn adaptive_counts(&self) -> Option<(usize, usize)> {
        Some((self.accepted, self.rejected))
    }
    fn initial_state_set(&mut self, x: &[f32]) {
        self.cand[2].copy_from_slice(x);
    }
    fn clone_box(&self) -> Box<dyn Stepper> {
        Box::new(self.clone())
    }
}
