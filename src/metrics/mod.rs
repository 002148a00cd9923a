//! Quality metrics: the Chamfer distance of the 2D workflow and the FID of the image workflow
//! (with its feature extractor and symmetric eigensolver).

mod chamfer;
pub mod fid;

pub use chamfer::{chamfer_distance, chamfer_distance_brute_force, nearest_sq_distances};
pub use fid::{
    default_extractor_path, fid_from_features, fid_from_stats, fid_parts, trace_sqrt_product,
    ExtractorConfig, FeatureExtractor, FidParts, GaussianStats, InputRange, SymmetricEigen,
};
