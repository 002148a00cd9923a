//! Quality metrics: the Chamfer distance of the 2D workflow (FID to come).

mod chamfer;

pub use chamfer::{chamfer_distance, chamfer_distance_brute_force, nearest_sq_distances};
