//! Multistep DPM-Solver and DPM-Solver++ (Lu et al. 2022, 2022b), and SDE-DPM-Solver++: each
//! step evaluates the model once and reuses the previous `order - 1` evaluations. Third order
//! warms up with one singlestep second-order step (see [`super::config`]).

use super::coeffs::{self, At};
use super::singlestep;
use super::state::State;
use super::stepper::{Next, Planned, Stepper};
use crate::error::Result;

/// The multistep stepper.
#[derive(Debug, Clone)]
pub(crate) struct Multistep {
    plan: Vec<Planned>,
    step: usize,
    /// Stage inside a singlestep warm-up step.
    stage: usize,
    order: usize,
    eta: f64,
    /// History: (slot in `m`, schedule values), newest first.
    hist: Vec<(usize, At)>,
}

impl Multistep {
    /// A run of `order` over `plan`; `eta > 0` is SDE-DPM-Solver++.
    pub fn new(plan: Vec<Planned>, order: usize, eta: f64) -> Self {
        Self {
            plan,
            step: 0,
            stage: 0,
            order,
            eta,
            hist: Vec::with_capacity(3),
        }
    }

    /// The singlestep second-order warm-up of third-order multistep. Both of its evaluations
    /// (at the step's start and its midpoint) enter the history, so the next step can already
    /// use third order.
    fn advance_warmup(&mut self, st: &mut State, tq: f64) -> Next {
        let p = self.plan[self.step];
        match singlestep::stage(st, &p, self.stage, false) {
            Some(t) => {
                self.stage += 1;
                Next::Query { t, at_x: false }
            }
            None => {
                if self.stage == 1 {
                    self.hist.clear();
                    self.hist.push((1, st.at(tq)));
                    self.hist.push((0, st.at(p.from)));
                }
                self.next_step()
            }
        }
    }

    fn next_step(&mut self) -> Next {
        self.step += 1;
        self.stage = 0;
        Next::at_x(self.plan.get(self.step).map(|p| p.from))
    }
}

impl Stepper for Multistep {
    fn first_query(&self) -> f64 {
        self.plan[0].from
    }

    fn target_slot(&self) -> usize {
        if self.plan.get(self.step).is_some_and(|p| p.single) {
            return self.stage;
        }
        match self.hist.last() {
            // History full: reuse the oldest entry's buffer.
            Some(&(oldest, _)) if self.hist.len() == self.order => oldest,
            _ => (0..3)
                .find(|s| !self.hist.iter().any(|h| h.0 == *s))
                .unwrap_or(0),
        }
    }

    fn advance(&mut self, st: &mut State, slot: usize, tq: f64) -> Result<Next> {
        let p = self.plan[self.step];
        if p.single {
            return Ok(self.advance_warmup(st, tq));
        }
        let at_from = st.at(p.from);
        if self.hist.len() == self.order {
            self.hist.pop();
        }
        self.hist.insert(0, (slot, at_from));
        let order = p.order.min(self.hist.len());
        // The history's schedule values, newest first, for the coefficient formula.
        let mut ats = [at_from; 3];
        for (a, h) in ats.iter_mut().zip(&self.hist) {
            *a = h.1;
        }
        let (lin, std) = if self.eta > 0.0 {
            coeffs::multistep_sde(order, &ats[..order], &st.at(p.to), self.eta)
        } else {
            (
                coeffs::multistep(st.domain, order, &ats[..order], &st.at(p.to)),
                0.0,
            )
        };
        let terms: Vec<(f64, usize)> = self
            .hist
            .iter()
            .take(order)
            .enumerate()
            .map(|(j, &(s, _))| (lin.c[j], s))
            .collect();
        st.combine_x(lin.a, &terms);
        if std > 0.0 {
            st.add_noise(std as f32, self.step as u32 + 1);
        }
        Ok(self.next_step())
    }

    fn step_index(&self) -> usize {
        self.step
    }
    fn planned_steps(&self) -> usize {
        self.plan.len()
    }
    fn planned_nfe(&self) -> usize {
        self.plan
            .iter()
            .map(|p| if p.single { p.order } else { 1 })
            .sum()
    }
    fn start_time(&self) -> f64 {
        self.plan.first().map_or(0.0, |p| p.from)
    }
    fn clone_box(&self) -> Box<dyn Stepper> {
        Box::new(self.clone())
    }
}
