//! Multistep DPM-Solver and DPM-Solver++ (Lu et al. 2022, 2022b), SDE-DPM-Solver++ and
//! UniPC: each step evaluates the model once and reuses the previous `order - 1` evaluations.
//! Third order warms up with one singlestep second-order step (see [`super::config`]); with
//! UniPC's predictor or corrector, with lower orders instead (as the paper does).
//!
//! The UniC corrector (in [`super::unipc`]) runs when the next evaluation arrives: the
//! corrected state differs from the predicted one by a combination of model outputs only
//! (both share the step's `a x` term), so the correction is `x += sum (c_corr - c_pred) m`
//! over the history plus `c_t m_t`, and no copy of the previous state is kept.

use super::coeffs::{self, At};
use super::config::UniVariant;
use super::singlestep;
use super::state::State;
use super::stepper::{Next, Planned, Stepper};
use super::unipc;
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
    /// UniP instead of DPM-Solver's multistep formula.
    unip: Option<UniVariant>,
    /// UniC after every step whose end is evaluated.
    corrector: Option<UniVariant>,
    /// The last predictor step, for its correction: its order, history (slot, time; newest
    /// first), target time and coefficients of the history.
    pending: Option<Pending>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    order: usize,
    slots: [usize; unipc::MAX_ORDER],
    ats: [At; unipc::MAX_ORDER],
    t: At,
    c: [f64; unipc::MAX_ORDER],
}

impl Multistep {
    /// A run of `order` over `plan`; `eta > 0` is SDE-DPM-Solver++.
    pub fn new(
        plan: Vec<Planned>,
        order: usize,
        eta: f64,
        unip: Option<UniVariant>,
        corrector: Option<UniVariant>,
    ) -> Self {
        Self {
            plan,
            step: 0,
            stage: 0,
            order,
            eta,
            hist: Vec::with_capacity(order + 1),
            unip,
            corrector,
            pending: None,
        }
    }

    /// The slots of `m` this stepper uses: the history, and with the corrector one more (the
    /// new evaluation arrives while the whole history is still needed).
    pub fn slots(order: usize, corrector: bool) -> usize {
        order + usize::from(corrector)
    }

    /// UniC: moves `x` from the predicted to the corrected state with the evaluation at the
    /// predicted state (in `m[slot]`).
    fn correct(&mut self, st: &mut State, slot: usize, v: UniVariant) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let cc = unipc::corrector(st.domain, p.order, &p.ats[..p.order], &p.t, v);
        let mut terms = [(0.0, 0usize); unipc::MAX_ORDER + 1];
        for (k, t) in terms.iter_mut().enumerate().take(p.order) {
            *t = (cc.c[k] - p.c[k], p.slots[k]);
        }
        terms[p.order] = (cc.c_t, slot);
        let terms = &terms[..=p.order];
        st.combine_x(1.0, terms);
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

    /// A predictor step of `order` (UniP, or DPM-Solver's formula under a UniC corrector)
    /// with the history in place; records what the corrector needs when the end of the step
    /// is evaluated.
    fn advance_unipc(&mut self, st: &mut State, order: usize) -> Next {
        let p = self.plan[self.step];
        let t = st.at(p.to);
        let mut ats = [t; unipc::MAX_ORDER];
        let mut slots = [0usize; unipc::MAX_ORDER];
        for (k, &(s, at)) in self.hist.iter().take(order).enumerate() {
            ats[k] = at;
            slots[k] = s;
        }
        let (a, c) = match self.unip {
            Some(v) => {
                let u = unipc::predictor(st.domain, order, &ats[..order], &t, v);
                (u.a, u.c)
            }
            None => {
                let lin = coeffs::multistep(st.domain, order, &ats[..order], &t);
                (lin.a, lin.c)
            }
        };
        let mut terms = [(0.0, 0usize); unipc::MAX_ORDER];
        for (k, term) in terms.iter_mut().enumerate().take(order) {
            *term = (c[k], slots[k]);
        }
        st.combine_x(a, &terms[..order]);
        let last = self.step + 1 == self.plan.len();
        if self.corrector.is_some() && !last {
            self.pending = Some(Pending {
                order,
                slots,
                ats,
                t,
                c,
            });
        }
        self.next_step()
    }

    fn next_step(&mut self) -> Next {
        self.step += 1;
        self.stage = 0;
        Next::step_start(&self.plan, self.step)
    }
}

impl Stepper for Multistep {
    fn plan(&self) -> &[Planned] {
        &self.plan
    }

    fn target_slot(&self) -> usize {
        if self.plan.get(self.step).is_some_and(|p| p.single) {
            return self.stage;
        }
        match self.hist.last() {
            // History full: reuse the oldest entry's buffer (the corrector still needs it, so
            // it has a slot more).
            Some(&(oldest, _)) if self.hist.len() == self.order && self.corrector.is_none() => {
                oldest
            }
            _ => (0..Self::slots(self.order, self.corrector.is_some()).max(3))
                .find(|s| !self.hist.iter().any(|h| h.0 == *s))
                .unwrap_or(0),
        }
    }

    fn advance(&mut self, st: &mut State, slot: usize, tq: f64) -> Result<Next> {
        let p = self.plan[self.step];
        if p.single {
            return Ok(self.advance_warmup(st, tq));
        }
        if let Some(v) = self.corrector {
            self.correct(st, slot, v);
        }
        let at_from = st.at(p.from);
        if self.hist.len() == self.order {
            self.hist.pop();
        }
        self.hist.insert(0, (slot, at_from));
        let order = p.order.min(self.hist.len());
        if self.unip.is_some() || self.corrector.is_some() {
            return Ok(self.advance_unipc(st, order));
        }
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
        let mut terms = [(0.0, 0usize); 3];
        for (t, (j, &(s, _))) in terms.iter_mut().zip(self.hist.iter().enumerate()) {
            *t = (lin.c[j], s);
        }
        st.combine_x(lin.a, &terms[..order]);
        if std > 0.0 {
            st.add_noise(std as f32, self.step as u32 + 1);
        }
        Ok(self.next_step())
    }

    fn step_index(&self) -> usize {
        self.step
    }
    fn planned_nfe(&self) -> usize {
        self.plan
            .iter()
            .map(|p| if p.single { p.order } else { 1 })
            .sum()
    }
    fn clone_box(&self) -> Box<dyn Stepper> {
        Box::new(self.clone())
    }
}
