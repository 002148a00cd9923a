//! Timestep spacings: where on the time axis a solver takes its steps.
//!
//! Times are model times `tau` in `[0, N-1]` (the network's timestep input; fractional values
//! are allowed for networks with a continuous time embedding). A plan is a list of steps
//! `(from, to)`, `from > to`, ending at 0.

use crate::error::{invalid, Error, Result};
use crate::schedule::{linspace, Schedule};

/// How the step times are placed.
#[derive(Debug, Clone, PartialEq)]
pub enum Spacing {
    /// The reference workflow's integer timesteps: `round(linspace(0, N-1, K+1))` reversed,
    /// last dropped; each step goes from `t` to `max(t - N / K, 0)` (integer division).
    Reference,
    /// Uniform in the DPM-Solver paper's continuous time `(tau + 1) / N`, from `N-1` to 0.
    TimeUniform,
    /// Uniform in half-logSNR lambda.
    LogSnr,
    /// Uniform in the square root of continuous time (denser near the data).
    TimeQuadratic,
    /// Karras et al. (EDM, 2022): uniform in `s^(1/7)` with `s = sigma / alpha`, the noise
    /// level of the variance-exploding form of the ODE.
    Edm,
    /// Uniform in `atan(s)`, `s = sigma / alpha`: the closed-form KL-optimal schedule of
    /// "Align Your Steps" (Sabour et al. 2024, appendix), the steps that minimise the KL
    /// divergence bound of a first-order solver on a Gaussian data distribution.
    KlOptimal,
    /// A user-given decreasing list of K+1 model times; the step count must be K.
    Custom(Vec<f64>),
}

impl Spacing {
    /// Looks a spacing up by name: `reference`, `time_uniform`, `logsnr`, `time_quadratic`,
    /// `edm`, `kl_optimal`.
    pub fn named(name: &str) -> Result<Self> {
        Ok(match name {
            "reference" => Spacing::Reference,
            "time_uniform" | "uniform" => Spacing::TimeUniform,
            "logsnr" | "logSNR" => Spacing::LogSnr,
            "time_quadratic" | "quadratic" => Spacing::TimeQuadratic,
            "edm" | "karras" => Spacing::Edm,
            "kl_optimal" | "ays" => Spacing::KlOptimal,
            _ => {
                return Err(Error::UnknownName {
                    kind: "spacing",
                    name: name.into(),
                    known: "reference, time_uniform, logsnr, time_quadratic, edm, kl_optimal"
                        .into(),
                })
            }
        })
    }

    /// The canonical name of this spacing.
    pub fn name(&self) -> &'static str {
        match self {
            Spacing::Reference => "reference",
            Spacing::TimeUniform => "time_uniform",
            Spacing::LogSnr => "logsnr",
            Spacing::TimeQuadratic => "time_quadratic",
            Spacing::Edm => "edm",
            Spacing::KlOptimal => "kl_optimal",
            Spacing::Custom(_) => "custom",
        }
    }

    /// The K steps `(from, to)` of a plan on `schedule`, over the whole time axis.
    pub fn steps(&self, schedule: &Schedule, k: usize) -> Result<Vec<(f64, f64)>> {
        self.steps_from(schedule, k, schedule.t_max())
    }

    /// The K steps `(from, to)` of a plan from model time `start` (at most `N-1`; img2img
    /// starts part-way) down to 0: each spacing is laid over `[0, start]` in its own variable,
    /// so `start = N-1` gives exactly [`Spacing::steps`]. Custom times must begin at `start`.
    pub fn steps_from(&self, schedule: &Schedule, k: usize, start: f64) -> Result<Vec<(f64, f64)>> {
        if k == 0 {
            return invalid("a plan needs at least one step");
        }
        let n = schedule.len();
        if !(start > 0.0 && start <= schedule.t_max()) {
            return invalid(format!(
                "a plan starts in (0, {}], not at {start}",
                schedule.t_max()
            ));
        }
        // From here on the spacings see `start` where the whole axis has N-1.
        let t_max = start;
        if let Spacing::Reference = self {
            if k > n {
                return invalid(format!(
                    "the reference spacing allows at most {n} steps, got {k}"
                ));
            }
            // N / K on the whole axis; the same share of the shorter one otherwise.
            let jump = if start == schedule.t_max() {
                (n / k) as f64
            } else {
                ((start.round_ties_even() as usize + 1) / k).max(1) as f64
            };
            let grid = linspace(0.0, t_max, k + 1);
            return Ok(grid[1..]
                .iter()
                .rev()
                .map(|&t| {
                    let t = t.round_ties_even();
                    (t, (t - jump).max(0.0))
                })
                .collect());
        }
        let nf = n as f64;
        let times: Vec<f64> = match self {
            Spacing::Reference => unreachable!("handled above"),
            Spacing::TimeUniform => linspace(t_max, 0.0, k + 1),
            Spacing::LogSnr => linspace(schedule.lambda(t_max), schedule.lambda(0.0), k + 1)
                .into_iter()
                .map(|l| schedule.tau_of_lambda(l))
                .collect(),
            Spacing::TimeQuadratic => {
                // Continuous time t = (tau + 1) / N runs from (start + 1) / N (1 on the whole
                // axis) down to 1 / N.
                linspace(((t_max + 1.0) / nf).sqrt(), (1.0 / nf).sqrt(), k + 1)
                    .into_iter()
                    .map(|s| s * s * nf - 1.0)
                    .collect()
            }
            Spacing::Edm | Spacing::KlOptimal => {
                // s = sigma / alpha = exp(-lambda), mapped to a variable that is uniform.
                let (s_max, s_min) = (
                    (-schedule.lambda(t_max)).exp(),
                    (-schedule.lambda(0.0)).exp(),
                );
                type Map = fn(f64) -> f64;
                let (fwd, inv): (Map, Map) = match self {
                    Spacing::Edm => (|s| s.powf(1.0 / 7.0), |u| u.powi(7)),
                    _ => (f64::atan, f64::tan),
                };
                linspace(fwd(s_max), fwd(s_min), k + 1)
                    .into_iter()
                    .map(|u| schedule.tau_of_lambda(-inv(u).ln()))
                    .collect()
            }
            Spacing::Custom(ts) => {
                if ts.len() != k + 1 {
                    return invalid(format!(
                        "custom spacing has {} times, {} steps need {}",
                        ts.len(),
                        k,
                        k + 1
                    ));
                }
                if ts.iter().any(|&t| !(0.0..=schedule.t_max()).contains(&t)) {
                    return invalid(format!(
                        "custom times must lie in [0, {}]",
                        schedule.t_max()
                    ));
                }
                if start != schedule.t_max() && ts.first() != Some(&start) {
                    return invalid(format!(
                        "custom times must begin at the start time {start} (strength)"
                    ));
                }
                if ts.windows(2).any(|w| w[1] >= w[0]) {
                    return invalid("custom times must decrease strictly");
                }
                ts.clone()
            }
        };
        // Endpoints exact despite round-off in the maps above.
        let mut times = times;
        if !matches!(self, Spacing::Custom(_)) {
            times[0] = t_max;
            times[k] = 0.0;
        }
        Ok(times.windows(2).map(|w| (w[0], w[1])).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_steps_match_the_spec() {
        let s = Schedule::reference();
        let p50 = Spacing::Reference.steps(&s, 50).unwrap();
        let from: Vec<f64> = p50.iter().map(|p| p.0).collect();
        let want: Vec<f64> = (0..50)
            .map(|i| (999.0 * (50 - i) as f64 / 50.0).round_ties_even())
            .collect();
        assert_eq!(from, want);
        assert_eq!(
            (from[0], from[1], from[48], from[49]),
            (999.0, 979.0, 40.0, 20.0)
        );
        assert!(p50.iter().all(|&(a, b)| b == (a - 20.0).max(0.0)));
        assert_eq!(p50[49].1, 0.0);
        let p25 = Spacing::Reference.steps(&s, 25).unwrap();
        assert_eq!(p25[0], (999.0, 959.0));
        assert_eq!(p25[24], (40.0, 0.0));
    }

    #[test]
    fn continuous_spacings_run_from_top_to_zero() {
        let s = Schedule::reference();
        for sp in [
            Spacing::TimeUniform,
            Spacing::LogSnr,
            Spacing::TimeQuadratic,
            Spacing::Edm,
            Spacing::KlOptimal,
        ] {
            let p = sp.steps(&s, 10).unwrap();
            assert_eq!(p.len(), 10);
            assert_eq!(p[0].0, 999.0);
            assert_eq!(p[9].1, 0.0);
            assert!(p.iter().all(|&(a, b)| a > b));
            assert!(p.windows(2).all(|w| w[0].1 == w[1].0));
        }
        let l = Spacing::LogSnr.steps(&s, 4).unwrap();
        let h: Vec<f64> = l.iter().map(|&(a, b)| s.lambda(b) - s.lambda(a)).collect();
        assert!(h.iter().all(|&x| (x - h[0]).abs() < 1e-9), "{h:?}");
    }
}
