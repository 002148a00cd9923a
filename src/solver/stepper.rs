//! The seam between the host-driven [`super::Solver`] and the solver families: a [`Stepper`]
//! decides where the model is needed next and how each output updates the state; the
//! [`super::Solver`] owns the query bookkeeping, the conversion of outputs and the checks, so
//! a family's file holds only its own sequencing and formulas.
//!
//! Adding a solver family = a file with a `Stepper`, a row in the preset table
//! (`config.rs`) and tests.

use super::config::SolverConfig;
use super::state::State;
use crate::error::Result;
use crate::schedule::Schedule;

/// Where the model is needed after an update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Next {
    /// At model time `t`, on the state `x` (`at_x`) or on the intermediate state `q`.
    Query {
        /// Model time.
        t: f64,
        /// True: the query reads `x` (a step boundary); false: `q` (a stage inside a step).
        at_x: bool,
    },
    /// The run is over; `x` holds the samples.
    Done,
}

impl Next {
    /// The query on the state at the start of step `step` of `plan`, or the end after its
    /// last step.
    pub fn step_start(plan: &[Planned], step: usize) -> Self {
        plan.get(step).map_or(Next::Done, |p| Next::Query {
            t: p.from,
            at_x: true,
        })
    }
}

/// One solver family (see the module docs).
pub(crate) trait Stepper: std::fmt::Debug + Send + Sync {
    /// The planned steps (empty for step-size-controlled families, which override the
    /// methods below that read it).
    fn plan(&self) -> &[Planned] {
        &[]
    }
    /// Model time of the first query (on the initial state).
    fn first_query(&self) -> f64 {
        self.start_time()
    }
    /// The slot of `State::m` that receives the output of the pending query.
    fn target_slot(&self) -> usize;
    /// The output of the query at model time `tq` is in `m[slot]`: update the state and say
    /// where the model is needed next.
    fn advance(&mut self, st: &mut State, slot: usize, tq: f64) -> Result<Next>;
    /// Steps done (accepted steps for adaptive solvers).
    fn step_index(&self) -> usize;
    /// Planned steps (0 when unknown in advance).
    fn planned_steps(&self) -> usize {
        self.plan().len()
    }
    /// Planned network evaluations (0 when unknown in advance); one per step unless a
    /// family says otherwise.
    fn planned_nfe(&self) -> usize {
        self.plan().len()
    }
    /// Model time of the initial state.
    fn start_time(&self) -> f64 {
        self.plan().first().map_or(0.0, |p| p.from)
    }
    /// Accepted and rejected steps, for step-size-controlled families.
    fn adaptive_counts(&self) -> Option<(usize, usize)> {
        None
    }
    /// The caller replaced the initial state before the first evaluation.
    fn initial_state_set(&mut self, _x: &[f32]) {}
    /// A boxed copy (a [`super::Solver`] is `Clone`).
    fn clone_box(&self) -> Box<dyn Stepper>;
}

/// One planned step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planned {
    /// Model time at the step's start.
    pub from: f64,
    /// Model time at its end.
    pub to: f64,
    /// Its order.
    pub order: usize,
    /// A singlestep step inside a multistep run (warm-up).
    pub single: bool,
}

/// The K planned steps of a non-adaptive configuration: the orders of
/// [`SolverConfig::plan_orders`] on the times of its spacing.
pub(crate) fn plan(cfg: &SolverConfig, sched: &Schedule) -> Result<Vec<Planned>> {
    let orders = cfg.plan_orders();
    let steps = cfg
        .spacing
        .steps_from(sched, orders.len(), cfg.start_time(sched))?;
    Ok(steps
        .iter()
        .zip(&orders)
        .map(|(&(from, to), &(order, single))| Planned {
            from,
            to,
            order,
            single,
        })
        .collect())
}
