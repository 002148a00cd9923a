//! Classifier-free guidance (Ho & Salimans 2022).
//!
//! The conditional and the null ("unconditional") predictions are evaluated as one batch of
//! 2B rows, conditional half first, and combined linearly. Two conventions are in use and
//! both are offered by name, because the same number means different things in each:
//! - [`Convention::Ho`] (the reference workflow's): `out = (1 + w) * cond - w * null`;
//!   w = 0 is plain conditional sampling. The reference uses w = 7.5.
//! - [`Convention::Scale`] (diffusers' `guidance_scale`): `out = null + s * (cond - null)`;
//!   s = 1 is plain conditional sampling. s = 1 + w, so w = 7.5 is s = 8.5.

use crate::error::{invalid, Error, Result};

/// How the guidance number is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// `(1 + w) * cond - w * null`.
    Ho,
    /// `null + s * (cond - null)`.
    Scale,
}

impl Convention {
    /// `ho` (alias `w`) or `scale` (alias `s`).
    pub fn named(name: &str) -> Result<Self> {
        match name {
            "ho" | "w" => Ok(Convention::Ho),
            "scale" | "s" => Ok(Convention::Scale),
            _ => Err(Error::UnknownName {
                kind: "guidance convention",
                name: name.into(),
                known: "ho, scale".into(),
            }),
        }
    }

    /// Canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Convention::Ho => "ho",
            Convention::Scale => "scale",
        }
    }
}

/// A guidance setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guidance {
    /// The guidance number in `convention`.
    pub scale: f64,
    /// How `scale` is read.
    pub convention: Convention,
    /// The label of the null class (0 in libdpm's networks).
    pub null_label: i64,
}

impl Guidance {
    /// Guidance `scale` read in `convention`, with libdpm's null label 0.
    pub fn new(scale: f64, convention: Convention) -> Self {
        Self {
            scale,
            convention,
            null_label: 0,
        }
    }

    /// The reference setting: w = 7.5, Ho convention, null label 0.
    pub fn reference() -> Self {
        Self {
            scale: 7.5,
            convention: Convention::Ho,
            null_label: 0,
        }
    }

    /// Checks the setting.
    pub fn validate(&self) -> Result<()> {
        if !self.scale.is_finite() {
            return invalid(format!("guidance scale {} must be finite", self.scale));
        }
        // The weights are applied in float32: one that does not fit would turn every output
        // into infinities.
        let (wc, wn) = self.weights();
        if !(wc as f32).is_finite() || !(wn as f32).is_finite() {
            return invalid(format!(
                "guidance scale {} is outside the float32 range the model outputs are combined in",
                self.scale
            ));
        }
        Ok(())
    }

    /// Weights `(cond, null)` of the combination; they always sum to 1.
    pub fn weights(&self) -> (f64, f64) {
        match self.convention {
            Convention::Ho => (1.0 + self.scale, -self.scale),
            Convention::Scale => (self.scale, 1.0 - self.scale),
        }
    }

    /// True when the null half contributes (otherwise only the conditional batch is needed).
    pub fn needs_null(&self) -> bool {
        self.weights().1 != 0.0
    }

    /// `out = wc * cond + wn * null` over B rows (`cond`, `null`, `out` of equal length).
    pub fn combine(&self, cond: &[f32], null: &[f32], out: &mut [f32]) {
        let (wc, wn) = self.weights();
        let (wc, wn) = (wc as f32, wn as f32);
        for ((o, &c), &n) in out.iter_mut().zip(cond).zip(null) {
            *o = wc * c + wn * n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conventions_agree_at_s_equal_1_plus_w() {
        let ho = Guidance {
            scale: 7.5,
            convention: Convention::Ho,
            null_label: 0,
        };
        let sc = Guidance {
            scale: 8.5,
            convention: Convention::Scale,
            null_label: 0,
        };
        assert_eq!(ho.weights(), sc.weights());
        let (c, n) = ([1.0f32, -2.0], [0.5f32, 4.0]);
        let mut o = [0f32; 2];
        ho.combine(&c, &n, &mut o);
        assert_eq!(o, [8.5 * 1.0 - 7.5 * 0.5, 8.5 * -2.0 - 7.5 * 4.0]);
        // eps_null + (1 + w)(eps_c - eps_null)
        assert!((o[0] - (0.5 + 8.5 * (1.0 - 0.5))).abs() < 1e-6);
        assert!(!Guidance { scale: 0.0, ..ho }.needs_null());
        assert!(!Guidance { scale: 1.0, ..sc }.needs_null());
    }
}
