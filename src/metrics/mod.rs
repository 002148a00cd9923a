//! Quality metrics: the Chamfer distance of the 2D workflow and the FID of the image workflow,
//! one concept a file: the distance (`fid`), the features it compares (`features`: any ONNX
//! feature extractor) and the linear algebra under it (`linalg`: the symmetric
//! eigendecomposition, the trace of a product's square root).

mod chamfer;
pub mod features;
pub mod fid;
pub mod linalg;

pub use chamfer::{chamfer_distance, chamfer_distance_brute_force, nearest_sq_distances};
pub use features::{default_extractor_path, ExtractorConfig, FeatureExtractor, InputRange};
pub use fid::{fid_from_features, fid_from_stats, fid_parts, FidParts, GaussianStats};
pub use linalg::{trace_sqrt_product, SymmetricEigen};
