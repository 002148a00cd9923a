//! What a training run learns from: a source of (sample, label) pairs by index.

use crate::data::{ImageFolder, Normalization, Shapes, Toy2d};
use crate::error::{Error, Result};

/// A finite training set addressed by index.
pub trait DataSource: Send {
    /// Values per sample.
    fn dim(&self) -> usize;
    /// Number of samples.
    fn len(&self) -> usize;
    /// True when the set has no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of real classes (labels 1..=K), 0 for unconditional data.
    fn num_classes(&self) -> usize;
    /// Writes sample `index` into `x` (`dim` values) and returns its label (0 if none).
    fn get(&self, index: usize, x: &mut [f32]) -> Result<i64>;
}

/// A 2D toy set (SPEC.md): `n` points drawn once and normalized with their own statistics,
/// as the reference does; the evaluation reference set uses the same statistics.
pub struct Points {
    set: Toy2d,
    points: Vec<f32>,
    norm: Option<Normalization>,
}

impl Points {
    /// Draws the training set: `n` points of `set` from `seed`.
    pub fn new(set: Toy2d, n: usize, seed: u64) -> Result<Self> {
        if n == 0 {
            return Err(Error::InvalidArgument(
                "a training set needs at least one point".into(),
            ));
        }
        let norm = set.normalization(n, seed);
        Ok(Self {
            set,
            points: set.sample_with(n, seed, norm),
            norm,
        })
    }

    /// `n` fresh points of the same distribution, normalized like the training set (the
    /// reference set of the Chamfer distance).
    pub fn reference(&self, n: usize, seed: u64) -> Vec<f32> {
        self.set.sample_with(n, seed, self.norm)
    }

    /// The training points (rows of 2).
    pub fn points(&self) -> &[f32] {
        &self.points
    }
}

impl DataSource for Points {
    fn dim(&self) -> usize {
        2
    }
    fn len(&self) -> usize {
        self.points.len() / 2
    }
    fn num_classes(&self) -> usize {
        0
    }
    fn get(&self, index: usize, x: &mut [f32]) -> Result<i64> {
        let p = self
            .points
            .get(2 * index..2 * index + 2)
            .ok_or_else(|| Error::InvalidArgument(format!("point {index} of {}", self.len())))?;
        x.copy_from_slice(p);
        Ok(0)
    }
}

/// The synthetic shapes (labels 1..=K), a finite pool of `len` images generated on demand.
pub struct ShapesData {
    shapes: Shapes,
    seed: u64,
    len: usize,
}

impl ShapesData {
    /// A pool of `len` images at `resolution` with `classes` classes.
    pub fn new(resolution: usize, classes: usize, len: usize, seed: u64) -> Result<Self> {
        Ok(Self {
            shapes: Shapes::new(resolution, classes)?,
            seed,
            len,
        })
    }
}

impl DataSource for ShapesData {
    fn dim(&self) -> usize {
        self.shapes.dim()
    }
    fn len(&self) -> usize {
        self.len
    }
    fn num_classes(&self) -> usize {
        self.shapes.classes()
    }
    fn get(&self, index: usize, x: &mut [f32]) -> Result<i64> {
        let (img, label) = self.shapes.image(self.seed, index as u64);
        x.copy_from_slice(&img);
        Ok(label)
    }
}

/// Image folders in the AFHQ layout, decoded once into memory.
pub struct FolderData {
    images: Vec<f32>,
    labels: Vec<i64>,
    dim: usize,
    classes: usize,
}

impl FolderData {
    /// Loads every image of `root` (at most 3000 per class) at `resolution`.
    pub fn new(root: &std::path::Path, resolution: usize) -> Result<Self> {
        let f = ImageFolder::open(root, resolution)?;
        if f.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "no images under {}",
                root.display()
            )));
        }
        let (images, labels) = f.load_all()?;
        Ok(Self {
            images,
            labels,
            dim: f.dim(),
            classes: f.num_classes(),
        })
    }
}

impl DataSource for FolderData {
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn get(&self, index: usize, x: &mut [f32]) -> Result<i64> {
        let img = self
            .images
            .get(index * self.dim..(index + 1) * self.dim)
            .ok_or_else(|| Error::InvalidArgument(format!("image {index} of {}", self.len())))?;
        x.copy_from_slice(img);
        Ok(self.labels[index])
    }
}

/// Opens the data a configuration names: a 2D set (`swiss_roll`, `moon`, ...), `shapes` (the
/// synthetic set at the network's resolution, 3000 images per class), or `folder:PATH` (image
/// folders in the AFHQ layout at the network's resolution).
pub fn open(cfg: &super::TrainConfig, manifest: &super::Manifest) -> Result<Box<dyn DataSource>> {
    // Image networks name their resolution; the classifier takes any multiple of 8 and is
    // trained at 32x32 (image folders are resized to it).
    let res = manifest
        .config
        .get("resolution")
        .and_then(|v| v.as_u64())
        .map(|v| v as usize)
        .or((manifest.task == "classify").then_some(32));
    let need_res = || {
        res.ok_or_else(|| {
            Error::InvalidArgument(format!("network {} does not take images", manifest.network))
        })
    };
    if cfg.data == "shapes" {
        let classes = manifest
            .config
            .get("num_classes")
            .and_then(|v| v.as_u64())
            .unwrap_or(3) as usize;
        return Ok(Box::new(ShapesData::new(
            need_res()?,
            classes,
            3000 * classes,
            cfg.seed,
        )?));
    }
    if let Some(path) = cfg.data.strip_prefix("folder:") {
        return Ok(Box::new(FolderData::new(
            std::path::Path::new(path),
            need_res()?,
        )?));
    }
    Ok(Box::new(Points::new(
        Toy2d::named(&cfg.data)?,
        cfg.dataset_size,
        cfg.seed,
    )?))
}
