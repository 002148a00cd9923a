//! Update formulas of the DPM-Solver family as linear combinations.
//!
//! Every update in this crate has the form `x_new = a * x + c0 * m0 + c1 * m1 + c2 * m2`, where
//! the `m` are model outputs converted to the algorithm's domain (noise for DPM-Solver, data for
//! DPM-Solver++). Each function here returns those coefficients, computed in f64 from the
//! schedule; one fused kernel applies them over the f32 buffers. The formulas follow Lu et al.,
//! "DPM-Solver" (2022, Algorithms 1-2 and the `dpmsolver` variants of its reference code) and
//! "DPM-Solver++" (2022).

/// Coefficients of `a * x + sum_j c[j] * m[j]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lin {
    /// Weight of the state `x` at the step's start.
    pub a: f64,
    /// Weights of the model outputs `m0, m1, m2`.
    pub c: [f64; 3],
}

/// Schedule values at one time: `ln(alpha)`, `sigma`, `lambda`.
#[derive(Debug, Clone, Copy)]
pub struct At {
    /// `ln(alpha_t)`.
    pub log_alpha: f64,
    /// `sigma_t`.
    pub sigma: f64,
    /// Half-logSNR `lambda_t`.
    pub lambda: f64,
}

impl At {
    /// `alpha_t`.
    pub fn alpha(&self) -> f64 {
        self.log_alpha.exp()
    }
}

/// Whether the solver works on noise predictions (DPM-Solver) or data predictions (DPM-Solver++).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// Noise prediction `eps(x, t)`.
    Noise,
    /// Data prediction `x0(x, t)`.
    Data,
}

fn scale(v: [f64; 3], k: f64) -> [f64; 3] {
    [v[0] * k, v[1] * k, v[2] * k]
}
fn add(u: [f64; 3], v: [f64; 3]) -> [f64; 3] {
    [u[0] + v[0], u[1] + v[1], u[2] + v[2]]
}

/// The exponential-integrator factor of the step: `a` in both domains.
fn carry(d: Domain, s: &At, t: &At) -> f64 {
    match d {
        Domain::Noise => (t.log_alpha - s.log_alpha).exp(),
        Domain::Data => t.sigma / s.sigma,
    }
}

/// First order (DPM-Solver-1 = DDIM with eta 0; DPM-Solver++1) from `s` to `t`.
pub fn first(d: Domain, s: &At, t: &At) -> Lin {
    first_h(d, s, t, t.lambda - s.lambda)
}

/// [`first`] with the step size `h` in lambda given: the intermediate states of singlestep
/// solvers use `r h` exactly, as the paper's algorithms do, even where the intermediate time
/// was rounded (the reference DPM-Solver-2 variant).
pub fn first_h(d: Domain, s: &At, t: &At, h: f64) -> Lin {
    let c0 = match d {
        Domain::Noise => -t.sigma * h.exp_m1(),
        Domain::Data => -t.alpha() * (-h).exp_m1(),
    };
    Lin {
        a: carry(d, s, t),
        c: [c0, 0.0, 0.0],
    }
}

/// Singlestep second order: the final update from `s` to `t` using `m0` at `s` and `m1` at the
/// intermediate time with `lambda = lambda_s + r1 h` (the intermediate state itself is
/// [`first`] from `s` to that time). With `r1 = 1/2` this is the paper's DPM-Solver-2.
pub fn second(d: Domain, s: &At, t: &At, r1: f64) -> Lin {
    let h = t.lambda - s.lambda;
    let (base, k) = match d {
        Domain::Noise => (-t.sigma * h.exp_m1(), -t.sigma * h.exp_m1() / (2.0 * r1)),
        Domain::Data => (
            -t.alpha() * (-h).exp_m1(),
            -t.alpha() * (-h).exp_m1() * 0.5 / r1,
        ),
    };
    // base * m0 + k * (m1 - m0)
    Lin {
        a: carry(d, s, t),
        c: [base - k, k, 0.0],
    }
}

/// Singlestep third order, second intermediate state: from `s` to `s2` (`lambda_s + r2 h`)
/// using `m0` at `s` and `m1` at `s1` (`lambda_s + r1 h`).
pub fn third_stage2(d: Domain, s: &At, s2: &At, h: f64, r1: f64, r2: f64) -> Lin {
    let (base, k) = match d {
        Domain::Noise => {
            let phi22 = (r2 * h).exp_m1() / (r2 * h) - 1.0;
            (-s2.sigma * (r2 * h).exp_m1(), -(r2 / r1) * s2.sigma * phi22)
        }
        Domain::Data => {
            let phi22 = (-r2 * h).exp_m1() / (r2 * h) + 1.0;
            (
                -s2.alpha() * (-r2 * h).exp_m1(),
                (r2 / r1) * s2.alpha() * phi22,
            )
        }
    };
    Lin {
        a: carry(d, s, s2),
        c: [base - k, k, 0.0],
    }
}

/// Singlestep third order, final update from `s` to `t` using `m0` (at `s`) and `m2` (at `s2`,
/// `lambda_s + r2 h`); `m1` enters through the second intermediate state.
pub fn third(d: Domain, s: &At, t: &At, r2: f64) -> Lin {
    let h = t.lambda - s.lambda;
    let (base, k) = match d {
        Domain::Noise => {
            let phi1 = h.exp_m1();
            (-t.sigma * phi1, -(t.sigma / r2) * (phi1 / h - 1.0))
        }
        Domain::Data => {
            let phi1 = (-h).exp_m1();
            (-t.alpha() * phi1, (t.alpha() / r2) * (phi1 / h + 1.0))
        }
    };
    Lin {
        a: carry(d, s, t),
        c: [base - k, 0.0, k],
    }
}

/// Multistep update from `p0` (the newest evaluation, where the state is) to `t`, using the
/// history `m0` at `p0`, `m1` at `p1`, `m2` at `p2` (`order` of them: 1, 2 or 3).
pub fn multistep(d: Domain, order: usize, hist: &[At], t: &At) -> Lin {
    let p0 = &hist[0];
    if order <= 1 || hist.len() < 2 {
        return first(d, p0, t);
    }
    let h = t.lambda - p0.lambda;
    let r0 = (p0.lambda - hist[1].lambda) / h;
    let d1_0 = [1.0 / r0, -1.0 / r0, 0.0];
    let sign = match d {
        Domain::Noise => 1.0,
        Domain::Data => -1.0,
    };
    let phi1 = (sign * h).exp_m1();
    let w = match d {
        Domain::Noise => t.sigma,
        Domain::Data => t.alpha(),
    };
    let base = [-w * phi1, 0.0, 0.0];
    if order == 2 || hist.len() < 3 {
        return Lin {
            a: carry(d, p0, t),
            c: add(base, scale(d1_0, -0.5 * w * phi1)),
        };
    }
    let r1 = (hist[1].lambda - hist[2].lambda) / h;
    let d1_1 = [0.0, 1.0 / r1, -1.0 / r1];
    let diff = add(d1_0, scale(d1_1, -1.0));
    let d1 = add(d1_0, scale(diff, r0 / (r0 + r1)));
    let d2 = scale(diff, 1.0 / (r0 + r1));
    // Noise: phi2 = phi1/h - 1; data: phi2 = phi1/h + 1 (with phi1 = expm1(-h)).
    let phi2 = phi1 / h - sign;
    let phi3 = phi2 / h - 0.5;
    // D2 estimates h^2 x''/2, and the exact Taylor term is -w h^2 phi3 x'', hence the factor 2.
    // (The DPM-Solver reference code and diffusers use -w phi3 D2, which leaves an O(h^3)
    // local error and makes their "third-order" multistep second order globally.)
    let c = add(
        add(base, scale(d1, -sign * w * phi2)),
        scale(d2, -2.0 * w * phi3),
    );
    Lin {
        a: carry(d, p0, t),
        c,
    }
}

/// SDE-DPM-Solver++ (Lu et al. 2022, DPM-Solver++ section 5; diffusers' "sde-dpmsolver++"):
/// the multistep update of the reverse SDE in the data domain from `p0` to `t`, first order
/// (at `eta = 1` exactly DDPM's ancestral step) or second order with the midpoint correction
/// from `p1`. `eta` scales the stochasticity of the reverse-time SDE family that shares the
/// data's marginals (as k-diffusion's `sample_dpmpp_2m_sde`): 0 is the probability-flow ODE
/// (DPM-Solver++(2M)), 1 the reverse SDE, larger values inject and remove more noise.
/// Returns the coefficients of `x`, `m0`, `m1` and the standard deviation of the fresh noise:
/// `x_t = (sigma_t/sigma_s) e^(-eta h) x + alpha_t (1 - e^(-(1+eta) h)) (m0 + D1/2)
///        + sigma_t sqrt(1 - e^(-2 eta h)) z` with `D1 = (m0 - m1) / r0`.
pub fn multistep_sde(order: usize, hist: &[At], t: &At, eta: f64) -> (Lin, f64) {
    let p0 = &hist[0];
    let h = t.lambda - p0.lambda;
    let w = t.alpha() * -(-(1.0 + eta) * h).exp_m1();
    let a = (t.sigma / p0.sigma) * (-eta * h).exp();
    let c = if order >= 2 && hist.len() >= 2 {
        let r0 = (p0.lambda - hist[1].lambda) / h;
        [w + 0.5 * w / r0, -0.5 * w / r0, 0.0]
    } else {
        [w, 0.0, 0.0]
    };
    (
        Lin { a, c },
        t.sigma * (-(-2.0 * eta * h).exp_m1()).max(0.0).sqrt(),
    )
}

/// DDIM from `s` to `t` on a noise prediction: returns the coefficients and the standard
/// deviation of the fresh noise (`eta = 0`: deterministic, equal to [`first`]; `eta = 1`:
/// DDPM ancestral sampling with the posterior variance).
pub fn ddim(s: &At, t: &At, eta: f64) -> (Lin, f64) {
    let (a_s, a_t) = (s.alpha(), t.alpha());
    let var = (t.sigma * t.sigma / (s.sigma * s.sigma)) * (1.0 - (a_s * a_s) / (a_t * a_t));
    let std = eta * var.max(0.0).sqrt();
    let dir = (t.sigma * t.sigma - std * std).max(0.0).sqrt();
    (
        Lin {
            a: a_t / a_s,
            c: [dir - a_t * s.sigma / a_s, 0.0, 0.0],
        },
        std,
    )
}
