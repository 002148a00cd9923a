//! Data sets: the 2D toy sets of the reference workflow, a synthetic class-conditional image
//! set, and image folders in the AFHQ layout.
//!
//! [`Toy2d`] generates the seven 2D sets of the reference workflow, seeded and deterministic
//! through the counter-based generator of [`crate::rng`]. [`Shapes`] draws coloured shapes
//! (seeded, class-conditional) for tests and the demo model; [`ShapeColours`] crosses shapes
//! with colours for up to 20 classes (the own-data example) and writes them as an image folder. [`ImageFolder`] lists and loads
//! `root/<class>/*.png|jpg|jpeg` folders; [`build_eval_folder`] and [`load_flat_folder`] write
//! and read the flat evaluation folder used for FID.

pub mod images;
pub mod shapes;
mod toy2d;

pub use images::{
    build_eval_folder, load_flat_folder, load_image, load_image_channels, FolderOptions,
    ImageFolder, DEFAULT_MAX_PER_CLASS,
};
pub use shapes::{ShapeColours, Shapes, SHAPES_STREAM};
pub use toy2d::{normalize_scalar, Normalization, Toy2d, TOY2D_STREAM};
