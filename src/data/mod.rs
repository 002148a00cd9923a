//! Data sets: the 2D toy sets of the reference workflow (more to come).
//!
//! [`Toy2d`] generates the seven 2D sets of the reference workflow, seeded and deterministic
//! through the counter-based generator of [`crate::rng`].

mod toy2d;

pub use toy2d::{normalize_scalar, Normalization, Toy2d, TOY2D_STREAM};
