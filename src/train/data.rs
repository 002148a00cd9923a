//! What a training run learns from: a source of (sample, label) pairs by index.

use crate::data::{FolderOptions, ImageFolder, Normalization, ShapeColours, Shapes, Toy2d};
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
    /// Class names in label order (label k = element k - 1); empty when the classes have no
    /// names (or there are none). They go into the exported model.
    fn class_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A 2D toy set (docs/workflow.md, section 5): `n` points drawn once and normalized with their own statistics,
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
    fn class_names(&self) -> Vec<String> {
        self.shapes
            .class_names()
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

/// Shapes crossed with colours ([`ShapeColours`], labels 1..=K), a finite pool of `len`
/// images generated on demand.
pub struct CombosData {
    set: ShapeColours,
    seed: u64,
    len: usize,
}

impl CombosData {
    /// A pool of `len` images at `resolution` with `classes` classes.
    pub fn new(resolution: usize, classes: usize, len: usize, seed: u64) -> Result<Self> {
        Ok(Self {
            set: ShapeColours::new(resolution, classes)?,
            seed,
            len,
        })
    }
}

impl DataSource for CombosData {
    fn dim(&self) -> usize {
        self.set.dim()
    }
    fn len(&self) -> usize {
        self.len
    }
    fn num_classes(&self) -> usize {
        self.set.classes()
    }
    fn get(&self, index: usize, x: &mut [f32]) -> Result<i64> {
        let (img, label) = self.set.image(self.seed, index as u64);
        x.copy_from_slice(&img);
        Ok(label)
    }
    fn class_names(&self) -> Vec<String> {
        self.set.class_names()
    }
}

/// Image folders in the AFHQ layout (or one unlabelled folder), decoded once into memory.
pub struct FolderData {
    images: Vec<f32>,
    labels: Vec<i64>,
    dim: usize,
    classes: usize,
    names: Vec<String>,
}

impl FolderData {
    /// Loads every image of `root` (at most 3000 per class) at `resolution`, RGB.
    pub fn new(root: &std::path::Path, resolution: usize) -> Result<Self> {
        Self::with_options(root, &FolderOptions::new(resolution))
    }

    /// Loads every image of `root` as `opts` say (channels, unlabelled folders, cap).
    pub fn with_options(root: &std::path::Path, opts: &FolderOptions) -> Result<Self> {
        let f = ImageFolder::open_opts(root, opts)?;
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
            names: f.class_names().to_vec(),
        })
    }

    /// Drops the labels: every image becomes label 0 of an unconditional set (a labelled
    /// folder trained by an unconditional network).
    pub fn unlabelled(mut self) -> Self {
        self.labels.iter_mut().for_each(|l| *l = 0);
        self.classes = 0;
        self.names.clear();
        self
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
    fn class_names(&self) -> Vec<String> {
        self.names.clone()
    }
}

/// Parses `combos:K`.
fn combos_classes(data: &str) -> Option<Result<usize>> {
    let k = data.strip_prefix("combos:")?;
    Some(k.parse().map_err(|_| {
        Error::InvalidArgument(format!(
            "data '{data}': combos:K takes a class count, e.g. combos:10"
        ))
    }))
}

/// Fills in what a configuration leaves to its data: the class count of a custom U-Net
/// (`arch.classes` = `None`) from an image folder's class sub-folders (0 for an unlabelled
/// folder: unconditional), `combos:K` or `shapes` (3). Lists the folder, decodes nothing.
pub fn resolve(cfg: &mut super::TrainConfig) -> Result<()> {
    let Some(super::Arch::Unet(u)) = &mut cfg.arch else {
        return Ok(());
    };
    if u.classes.is_some() {
        return Ok(());
    }
    let k = if let Some(path) = cfg.data.strip_prefix("folder:") {
        let opts = FolderOptions {
            channels: u.channels,
            allow_unlabelled: true,
            ..FolderOptions::new(u.resolution)
        };
        ImageFolder::open_opts(path, &opts)?.num_classes()
    } else if let Some(k) = combos_classes(&cfg.data) {
        k?
    } else if cfg.data == "shapes" {
        3
    } else if cfg.data.is_empty() {
        return Err(Error::InvalidArgument(
            "no training data given: --data folder:PATH (class sub-folders, or the images \
             themselves for unconditional training)"
                .into(),
        ));
    } else {
        return Err(Error::InvalidArgument(format!(
            "data '{}' is not images: a U-Net trains on folder:PATH, combos:K or shapes",
            cfg.data
        )));
    };
    u.classes = Some(k);
    Ok(())
}

/// Opens the data a configuration names: a 2D set (`swiss_roll`, `moon`, ...), `shapes` (the
/// synthetic set at the network's resolution, 3000 images per class), `combos:K` (shapes
/// crossed with colours, 3000 per class), or `folder:PATH` (image folders in the AFHQ layout,
/// or one unlabelled folder, at the network's resolution and channel count). A labelled set
/// trained by an unconditional network loses its labels.
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
    let channels = manifest
        .config
        .get("in_channels")
        .and_then(|v| v.as_u64())
        .map_or(3, |v| v as usize);
    let net_classes = manifest
        .config
        .get("num_classes")
        .and_then(|v| v.as_u64())
        .map(|v| v as usize);
    if channels != 3 && (cfg.data == "shapes" || cfg.data.starts_with("combos:")) {
        return Err(Error::InvalidArgument(format!(
            "data '{}' is RGB; network {} takes {channels} channel(s) (write the set as a \
             grayscale folder with `dpm make-data --channels 1`)",
            cfg.data, manifest.network
        )));
    }
    if cfg.data == "shapes" {
        let classes = net_classes.unwrap_or(3).clamp(1, 4);
        return Ok(Box::new(ShapesData::new(
            need_res()?,
            classes,
            3000 * classes,
            cfg.seed,
        )?));
    }
    if let Some(k) = combos_classes(&cfg.data) {
        let k = k?;
        return Ok(Box::new(CombosData::new(
            need_res()?,
            k,
            3000 * k,
            cfg.seed,
        )?));
    }
    if let Some(path) = cfg.data.strip_prefix("folder:") {
        let opts = FolderOptions {
            channels,
            allow_unlabelled: true,
            ..FolderOptions::new(need_res()?)
        };
        let f = FolderData::with_options(std::path::Path::new(path), &opts)?;
        return Ok(Box::new(if net_classes == Some(0) {
            f.unlabelled()
        } else {
            f
        }));
    }
    Ok(Box::new(Points::new(
        Toy2d::named(&cfg.data)?,
        cfg.dataset_size,
        cfg.seed,
    )?))
}
