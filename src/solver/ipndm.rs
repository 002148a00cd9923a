//! iPNDM (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator",
//! the improved pseudo linear multistep method; as in zju-pi/diff-sampler): the probability
//! flow ODE in `y = x / alpha` and `s = sigma / alpha` is `dy/ds = eps(x, t)`, and iPNDM
//! integrates it with the Adams-Bashforth formulas of order 1-4 on the last noise
//! predictions, with their constant-step coefficients whatever the spacing, and lower orders
//! while the history fills up. In libdpm's variables one step from `s` to `t` is
//! `x_t = (alpha_t / alpha_s) x_s + alpha_t (sigma_t/alpha_t - sigma_s/alpha_s) sum_j c_j eps_j`.

use super::state::State;
use super::stepper::{Next, Planned, Stepper};
use crate::error::Result;

/// Adams-Bashforth weights of the newest, next, ... evaluation, by order.
const AB: [&[f64]; 4] = [
    &[1.0],
    &[1.5, -0.5],
    &[23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0],
    &[55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0],
];

/// The iPNDM stepper.
#[derive(Debug, Clone)]
pub(crate) struct Ipndm {
    plan: Vec<Planned>,
    step: usize,
    order: usize,
    /// Slots of the history, newest first.
    hist: Vec<usize>,
}

impl Ipndm {
    /// A run of up to `order` (1..=4) over `plan`.
    pub fn new(plan: Vec<Planned>, order: usize) -> Self {
        Self {
            plan,
            step: 0,
            order,
            hist: Vec::with_capacity(order),
        }
    }
}

impl Stepper for Ipndm {
    fn plan(&self) -> &[Planned] {
        &self.plan
    }
    fn target_slot(&self) -> usize {
        match self.hist.last() {
            Some(&oldest) if self.hist.len() == self.order => oldest,
            _ => (0..self.order.max(1))
                .find(|s| !self.hist.contains(s))
                .unwrap_or(0),
        }
    }
    fn advance(&mut self, st: &mut State, slot: usize, _tq: f64) -> Result<Next> {
        let p = self.plan[self.step];
        if self.hist.len() == self.order {
            self.hist.pop();
        }
        self.hist.insert(0, slot);
        let order = p.order.min(self.hist.len()).clamp(1, AB.len());
        let (s, t) = (st.at(p.from), st.at(p.to));
        let (alpha_s, alpha_t) = (s.alpha(), t.alpha());
        let ds = t.sigma / alpha_t - s.sigma / alpha_s;
        let mut terms = [(0.0, 0usize); 4];
        for (t, (&c, &slot)) in terms.iter_mut().zip(AB[order - 1].iter().zip(&self.hist)) {
            *t = (alpha_t * ds * c, slot);
        }
        st.combine_x(alpha_t / alpha_s, &terms[..order]);
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
