//! DDPM and DDIM (Ho et al. 2020; Song et al. 2021): first-order steps on noise predictions,
//! with fresh noise of standard deviation `eta x` the posterior's (DDPM: `eta = 1`).

use super::coeffs;
use super::state::State;
use super::stepper::{Next, Planned, Stepper};
use crate::error::Result;

/// The DDPM/DDIM stepper.
#[derive(Debug, Clone)]
pub(crate) struct Ddim {
    plan: Vec<Planned>,
    step: usize,
    eta: f64,
}

impl Ddim {
    /// A run over `plan` with stochasticity `eta`.
    pub fn new(plan: Vec<Planned>, eta: f64) -> Self {
        Self { plan, step: 0, eta }
    }
}

impl Stepper for Ddim {
    fn plan(&self) -> &[Planned] {
        &self.plan
    }
    fn target_slot(&self) -> usize {
        0
    }
    fn advance(&mut self, st: &mut State, _slot: usize, _tq: f64) -> Result<Next> {
        let p = self.plan[self.step];
        let (lin, std) = coeffs::ddim(&st.at(p.from), &st.at(p.to), self.eta);
        st.apply_to_x(lin);
        if std > 0.0 {
            // Stream k >= 1 is the noise of step k - 1 (stream 0 is x_T).
            st.add_noise(std as f32, self.step as u32 + 1);
        }
        self.step += 1;
        Ok(Next::step_start(&self.plan, self.step))
    }
    fn step_index(&self) -> usize {
        self.step
    }
    fn clone_box(&self) -> Box<dyn Stepper> {
        Box::new(self.clone())
    }
}
