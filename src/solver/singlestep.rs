//! Singlestep DPM-Solver-1/2/3 and DPM-Solver++ (Lu et al. 2022, Algorithms 1-2; 2022b): each
//! step of order k evaluates the model k times, at its start and at intermediate states with
//! `lambda = lambda_s + r h` (r = 1/2 for second order, 1/3 and 2/3 for third).

use super::coeffs;
use super::state::State;
use super::stepper::{Next, Planned, Stepper};
use crate::error::Result;

/// One stage of the singlestep step `p`: the output of stage `stage` is in `m[stage]`. Updates
/// `x` and returns `None` when the step is complete, or computes the next intermediate state
/// into `q` and returns its model time. `reference_midpoint`: the reference DPM-Solver-2,
/// whose intermediate time is truncated to an integer timestep.
pub(crate) fn stage(
    st: &mut State,
    p: &Planned,
    stage: usize,
    reference_midpoint: bool,
) -> Option<f64> {
    let (s, t) = (st.at(p.from), st.at(p.to));
    let h = t.lambda - s.lambda;
    let d = st.domain;
    let (r1, r2) = if p.order == 3 {
        (1.0 / 3.0, 2.0 / 3.0)
    } else {
        (0.5, 1.0)
    };
    // Intermediate time with lambda = lambda_s + r h.
    let mid_time = |st: &State, r: f64| {
        let tau = st.sched.tau_of_lambda(s.lambda + r * h);
        if reference_midpoint {
            tau.trunc()
        } else {
            tau
        }
    };
    match (p.order, stage) {
        (1, _) => {
            st.apply_to_x(coeffs::first(d, &s, &t));
            None
        }
        (_, 0) => {
            let s1 = mid_time(st, r1);
            let lin = coeffs::first_h(d, &s, &st.at(s1), r1 * h);
            st.apply_to_q(lin);
            Some(s1)
        }
        (2, 1) => {
            st.apply_to_x(coeffs::second(d, &s, &t, r1));
            None
        }
        (3, 1) => {
            let s2 = mid_time(st, r2);
            let lin = coeffs::third_stage2(d, &s, &st.at(s2), h, r1, r2);
            st.apply_to_q(lin);
            Some(s2)
        }
        _ => {
            st.apply_to_x(coeffs::third(d, &s, &t, r2));
            None
        }
    }
}

/// The singlestep stepper.
#[derive(Debug, Clone)]
pub(crate) struct Singlestep {
    plan: Vec<Planned>,
    step: usize,
    stage: usize,
    reference_midpoint: bool,
}

impl Singlestep {
    /// A run over `plan`.
    pub fn new(plan: Vec<Planned>, reference_midpoint: bool) -> Self {
        Self {
            plan,
            step: 0,
            stage: 0,
            reference_midpoint,
        }
    }
}

impl Stepper for Singlestep {
    fn plan(&self) -> &[Planned] {
        &self.plan
    }
    fn target_slot(&self) -> usize {
        self.stage
    }
    fn advance(&mut self, st: &mut State, _slot: usize, _tq: f64) -> Result<Next> {
        let p = self.plan[self.step];
        Ok(match stage(st, &p, self.stage, self.reference_midpoint) {
            Some(t) => {
                self.stage += 1;
                Next::Query { t, at_x: false }
            }
            None => {
                self.step += 1;
                self.stage = 0;
                Next::step_start(&self.plan, self.step)
            }
        })
    }
    fn step_index(&self) -> usize {
        self.step
    }
    fn planned_nfe(&self) -> usize {
        self.plan.iter().map(|p| p.order).sum()
    }
    fn clone_box(&self) -> Box<dyn Stepper> {
        Box::new(self.clone())
    }
}
