//! Quality metrics.
