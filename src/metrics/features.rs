//! Feature vectors of images for the FID ([`super::fid`]) from any ONNX feature extractor
//! ([`FeatureExtractor`]): by default the bundled classifier network (`classifier.onnx`: input
//! `x` `[batch, 3, H, W]` in [-1, 1], output `features` `[batch, 256]`), ideally with weights
//! trained on the data at hand. Its input size and value range are configurable
//! ([`ExtractorConfig`]); [`ExtractorConfig::reference`] is the reference workflow's setting
//! (256 x 256, [-1, 1]; docs/workflow.md, section 11). Images are prepared exactly as writing
//! them to 8-bit PNG files and reading them back with [`crate::data::load_flat_folder`] at the
//! extractor's size would: quantised to 8 bits ([`crate::imageio::to_u8`]), resized with
//! [`crate::data::images::RESIZE_FILTER`] when their size differs, scaled to [-1, 1]; so the FID
//! of generated images in memory equals the FID of their PNG files.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::{Tensor, ValueType};

use crate::error::{Error, Result};
use crate::runtime::Runtime;

use super::fid::GaussianStats;

/// The value range a feature extractor expects, from libdpm's [-1, 1] images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRange {
    /// [-1, 1] as they are (the reference workflow's Inception setting, docs/workflow.md
    /// section 11; the bundled classifier).
    MinusOneOne,
    /// [0, 1]: `x * 0.5 + 0.5`.
    ZeroOne,
    /// ImageNet statistics: `((x * 0.5 + 0.5) - mean_c) / std_c`, mean (0.485, 0.456, 0.406),
    /// std (0.229, 0.224, 0.225).
    ImageNet,
}

impl InputRange {
    /// By name: `minus1_1` (also `-1,1`, `[-1,1]`), `0_1` (also `0,1`, `[0,1]`), `imagenet`.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for another name.
    pub fn named(name: &str) -> Result<Self> {
        match name {
            "minus1_1" | "-1,1" | "[-1,1]" | "-1_1" => Ok(Self::MinusOneOne),
            "0_1" | "0,1" | "[0,1]" | "zero_one" => Ok(Self::ZeroOne),
            "imagenet" => Ok(Self::ImageNet),
            _ => Err(Error::UnknownName {
                kind: "input range",
                name: name.into(),
                known: "minus1_1, 0_1, imagenet".into(),
            }),
        }
    }

    /// Canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Self::MinusOneOne => "minus1_1",
            Self::ZeroOne => "0_1",
            Self::ImageNet => "imagenet",
        }
    }

    /// `(scale, offset)` of channel `c` such that the input is `x * scale + offset`.
    fn affine(self, c: usize) -> (f32, f32) {
        const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
        const STD: [f32; 3] = [0.229, 0.224, 0.225];
        match self {
            Self::MinusOneOne => (1.0, 0.0),
            Self::ZeroOne => (0.5, 0.5),
            Self::ImageNet => {
                let (m, s) = (MEAN[c % 3], STD[c % 3]);
                (0.5 / s, (0.5 - m) / s)
            }
        }
    }
}

/// How a [`FeatureExtractor`] is fed.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractorConfig {
    /// Side of the square input in pixels; `None`: the model's fixed size, else the images'
    /// own size.
    pub size: Option<usize>,
    /// Value range the network expects.
    pub range: InputRange,
    /// Input name (`None`: `x`, else the only input).
    pub input: Option<String>,
    /// Output name (`None`: `features`, else `pool`, else the only output).
    pub output: Option<String>,
    /// Images per run.
    pub batch: usize,
}

impl Default for ExtractorConfig {
    fn default() -> Self {
        Self {
            size: None,
            range: InputRange::MinusOneOne,
            input: None,
            output: None,
            batch: 50,
        }
    }
}

impl ExtractorConfig {
    /// The reference workflow's setting (docs/workflow.md, section 11): images resized to
    /// 256 x 256, scaled to [-1, 1].
    pub fn reference() -> Self {
        Self {
            size: Some(256),
            ..Self::default()
        }
    }
}

/// The extractor [`FeatureExtractor`] uses when none is named: `DPM_FID_FEATURES` when set,
/// else a trained classifier bundled as `demo/classifier.onnx` under the models folder, else
/// the bundled `classifier.onnx` (its initial weights: random features, still a consistent
/// metric, but train one with `dpm report` or the trainer for meaningful numbers).
pub fn default_extractor_path() -> PathBuf {
    if let Some(p) = std::env::var_os("DPM_FID_FEATURES").filter(|s| !s.is_empty()) {
        return PathBuf::from(p);
    }
    let dir = crate::train::models_dir();
    let trained = dir.join("demo").join("classifier.onnx");
    if trained.is_file() {
        trained
    } else {
        dir.join("classifier.onnx")
    }
}

/// An ONNX network that maps images to feature vectors (see the module docs).
pub struct FeatureExtractor {
    session: Session,
    path: PathBuf,
    cfg: ExtractorConfig,
    input: String,
    output: String,
    channels: usize,
    fixed: Option<(usize, usize)>,
    dim: Option<usize>,
}

impl std::fmt::Debug for FeatureExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureExtractor")
            .field("path", &self.path)
            .field("cfg", &self.cfg)
            .field("input", &self.input)
            .field("output", &self.output)
            .field("fixed", &self.fixed)
            .finish()
    }
}

impl FeatureExtractor {
    /// Loads an extractor and checks its input (float `[batch, C, H, W]`) and output.
    ///
    /// # Errors
    /// [`Error::Model`] when the file cannot be loaded or its inputs/outputs do not fit;
    /// [`Error::InvalidArgument`] for a zero batch or size, or a size the model cannot take.
    pub fn load(rt: &Runtime, path: &Path, cfg: ExtractorConfig) -> Result<Self> {
        let bad = |reason: String| Error::Model {
            path: path.into(),
            reason,
        };
        if cfg.batch == 0 || cfg.size == Some(0) {
            return Err(Error::InvalidArgument(
                "feature extractor: batch and size must be positive".into(),
            ));
        }
        if let Some(side) = cfg.size {
            check_input_batch(side, cfg.batch)?;
        }
        let session = rt.session(path)?;
        let (inputs, outputs) = crate::runtime::session_io(&session);
        let names = |v: &[(String, ValueType)]| {
            v.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let choose =
            |v: &[(String, ValueType)], want: &Option<String>, defaults: &[&str]| match want {
                Some(w) => v.iter().find(|(n, _)| n == w).cloned(),
                None => defaults
                    .iter()
                    .find_map(|d| v.iter().find(|(n, _)| n == d).cloned())
                    .or_else(|| (v.len() == 1).then(|| v[0].clone())),
            };
        let (input, ity) =
            choose(&inputs, &cfg.input, &["x", "input", "images"]).ok_or_else(|| {
                bad(format!(
                    "no image input {}(inputs: {}); name it in the configuration",
                    cfg.input
                        .as_ref()
                        .map(|n| format!("named '{n}' "))
                        .unwrap_or_default(),
                    names(&inputs)
                ))
            })?;
        if inputs.len() > 1 {
            return Err(bad(format!(
                "the extractor takes {} inputs ({}); libdpm feeds only the image",
                inputs.len(),
                names(&inputs)
            )));
        }
        let (output, oty) = choose(&outputs, &cfg.output, &["features", "pool", "pool3"])
            .ok_or_else(|| {
                bad(format!(
                    "no feature output {}(outputs: {}); name it in the configuration",
                    cfg.output
                        .as_ref()
                        .map(|n| format!("named '{n}' "))
                        .unwrap_or_default(),
                    names(&outputs)
                ))
            })?;
        let ValueType::Tensor { ty, shape, .. } = &ity else {
            return Err(bad(format!("input '{input}' is not a tensor")));
        };
        if *ty != ort::value::TensorElementType::Float32 || shape.len() != 4 {
            return Err(bad(format!(
                "input '{input}' is {ity}; a feature extractor takes float32 [batch, C, H, W]"
            )));
        }
        let channels = if shape[1] > 0 { shape[1] as usize } else { 3 };
        let fixed = (shape[2] > 0 && shape[3] > 0).then(|| (shape[2] as usize, shape[3] as usize));
        if let (Some(s), Some((h, w))) = (cfg.size, fixed) {
            if (s, s) != (h, w) {
                return Err(Error::InvalidArgument(format!(
                    "feature extractor {} takes {h} x {w} images, not {s} x {s}",
                    path.display()
                )));
            }
        }
        let dim = match &oty {
            ValueType::Tensor { ty, shape, .. } => {
                if *ty != ort::value::TensorElementType::Float32 {
                    return Err(bad(format!(
                        "output '{output}' is {oty}; features are float32"
                    )));
                }
                let rest = &shape[1.min(shape.len())..];
                rest.iter()
                    .all(|&d| d > 0)
                    .then(|| rest.iter().map(|&d| d as usize).product())
            }
            _ => return Err(bad(format!("output '{output}' is not a tensor"))),
        };
        Ok(Self {
            session,
            path: path.into(),
            cfg,
            input,
            output,
            channels,
            fixed,
            dim,
        })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration.
    pub fn config(&self) -> &ExtractorConfig {
        &self.cfg
    }

    /// Feature dimension when the model declares it.
    pub fn dim(&self) -> Option<usize> {
        self.dim
    }

    /// Channels the model takes.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The input side used for images of side `image_side`: the configured size, else the
    /// model's fixed size, else the images' own.
    pub fn input_size(&self, image_side: usize) -> usize {
        self.cfg
            .size
            .or(self.fixed.map(|(h, _)| h))
            .unwrap_or(image_side)
    }

    /// Features of `n` CHW images (`c x h x w` each, values in [-1, 1]), `n x dim` values.
    /// The images are quantised to 8 bits and resized as the module docs say.
    ///
    /// # Errors
    /// [`Error::Shape`] when the buffer does not hold `n` such images or the channels differ
    /// from the model's; [`Error::Ort`] when the network fails (e.g. a size it cannot take).
    pub fn features(
        &mut self,
        images: &[f32],
        n: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<Vec<f32>> {
        let per = c
            .checked_mul(h)
            .and_then(|v| v.checked_mul(w))
            .filter(|&v| v > 0)
            .ok_or_else(|| Error::Shape(format!("bad image shape {c} x {h} x {w}")))?;
        if n == 0 || images.len() != n * per {
            return Err(Error::Shape(format!(
                "{} values are not {n} images of {c} x {h} x {w}",
                images.len()
            )));
        }
        if c != self.channels || c != 3 {
            return Err(Error::Shape(format!(
                "feature extractor {} takes {} channels (RGB), the images have {c}",
                self.path.display(),
                self.channels
            )));
        }
        let side = if h == w {
            self.input_size(h)
        } else {
            self.input_size(h.max(w))
        };
        let mut out = Vec::new();
        let mut feat_dim = self.dim;
        for (b, chunk) in images.chunks(self.cfg.batch * per).enumerate() {
            let rows = chunk.len() / per;
            let x = prepare(chunk, rows, h, w, side, self.cfg.range)?;
            let t = Tensor::from_array(([rows, 3, side, side], x))?;
            let outs = self
                .session
                .run(ort::inputs![self.input.as_str() => t])
                .map_err(|e| {
                    Error::Ort(format!(
                        "feature extractor {} on {rows} images of 3 x {side} x {side}: {e}{}",
                        self.path.display(),
                        if side % 8 != 0 {
                            " (the bundled classifier takes sides that are multiples of 8)"
                        } else {
                            ""
                        }
                    ))
                })?;
            let (shape, data) = outs[self.output.as_str()].try_extract_tensor::<f32>()?;
            let d = data.len().checked_div(rows).unwrap_or(0);
            if shape.first().copied() != Some(rows as i64) || d * rows != data.len() || d == 0 {
                return Err(Error::Shape(format!(
                    "feature extractor output '{}' has shape {:?} for {rows} images",
                    self.output, &**shape
                )));
            }
            match feat_dim {
                Some(fd) if fd != d => {
                    return Err(Error::Shape(format!(
                        "feature extractor gave {d} features per image in batch {b}, {fd} before"
                    )))
                }
                _ => feat_dim = Some(d),
            }
            out.extend_from_slice(data);
        }
        self.dim = feat_dim;
        Ok(out)
    }

    /// [`FeatureExtractor::features`] reduced to statistics.
    ///
    /// # Errors
    /// As [`FeatureExtractor::features`] and [`GaussianStats::from_features`].
    pub fn stats(
        &mut self,
        images: &[f32],
        n: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<GaussianStats> {
        let f = self.features(images, n, c, h, w)?;
        let d = f.len() / n;
        GaussianStats::from_features(&f, d)
    }

    /// The side at which two folders are compared: the configured size, else the model's
    /// fixed size, else the widest image of either folder. The same for (A, B) and (B, A), so
    /// the FID between two folders does not depend on their order.
    ///
    /// # Errors
    /// As [`FeatureExtractor::folder_side`], and when that side times the batch is too large.
    pub fn pair_side(&self, a: &Path, b: &Path) -> Result<usize> {
        let side = match self.cfg.size.or(self.fixed.map(|(h, _)| h)) {
            Some(s) => s,
            None => widest_image(a)?.max(widest_image(b)?),
        };
        check_input_batch(side, self.cfg.batch)?;
        Ok(side)
    }

    /// The side at which [`FeatureExtractor::folder_stats`] loads a folder's images: the
    /// configured size, else the model's fixed size, else the width of the folder's first
    /// image (sorted file names).
    ///
    /// # Errors
    /// [`Error::Io`] when the folder cannot be read; [`Error::InvalidArgument`] when it holds
    /// no image or the first one cannot be read.
    pub fn folder_side(&self, dir: &Path) -> Result<usize> {
        match self.cfg.size.or(self.fixed.map(|(h, _)| h)) {
            Some(s) => Ok(s),
            None => first_image_side(dir),
        }
    }

    /// Statistics of every image of a flat folder, read with
    /// [`crate::data::load_flat_folder`] at `side` (default [`FeatureExtractor::folder_side`]);
    /// give two folders the same side to compare them.
    ///
    /// # Errors
    /// Errors of loading (no image, undecodable file) and of [`FeatureExtractor::stats`].
    pub fn folder_stats(&mut self, dir: &Path, side: Option<usize>) -> Result<GaussianStats> {
        let side = match side {
            Some(s) => s,
            None => self.folder_side(dir)?,
        };
        let images = crate::data::load_flat_folder(dir, side)?;
        let n = images.len() / (3 * side * side);
        self.stats(&images, n, 3, side, side)
    }
}

/// Largest image side a feature extractor is fed (the reference uses 256).
pub const MAX_FEATURE_SIDE: usize = 4096;

/// Checks an extractor input side and batch against [`MAX_FEATURE_SIDE`] and
/// [`crate::solver::MAX_BATCH_VALUES`] values per batch, before anything is allocated.
fn check_input_batch(side: usize, batch: usize) -> Result<()> {
    let values = batch.saturating_mul(3 * side.min(MAX_FEATURE_SIDE + 1).pow(2));
    if side > MAX_FEATURE_SIDE || values > crate::solver::MAX_BATCH_VALUES {
        return Err(Error::InvalidArgument(format!(
            "feature extractor input of {side} x {side} in batches of {batch}: at most \
{MAX_FEATURE_SIDE} pixels a side and {} values a batch (lower the size or the batch)",
            crate::solver::MAX_BATCH_VALUES
        )));
    }
    Ok(())
}

/// The width of an image file (its header only; regular files only).
fn image_width(path: &Path) -> Result<usize> {
    let (f, _) = crate::fsutil::open_regular(path)?;
    let (w, _) = image::ImageReader::new(std::io::BufReader::new(f))
        .with_guessed_format()
        .map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })?
        .into_dimensions()
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
    Ok(w as usize)
}

/// The width of the widest image of a flat folder.
fn widest_image(dir: &Path) -> Result<usize> {
    image_paths(dir)?
        .iter()
        .try_fold(0, |w, p| Ok(image_width(p)?.max(w)))
}

/// The image files (.png/.jpg/.jpeg) of a flat folder, sorted; at least one.
fn image_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    // The very files `load_flat_folder` loads, so the side comes from what is measured.
    let files = crate::data::images::image_files(dir)?;
    if files.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} holds no .png/.jpg/.jpeg image",
            dir.display()
        )));
    }
    Ok(files)
}

/// The width of the first image (sorted file names) of a flat folder.
fn first_image_side(dir: &Path) -> Result<usize> {
    image_paths(dir)?.first().map_or(Ok(0), |p| image_width(p))
}

/// CHW [-1, 1] images -> 8 bits -> resized to `side` (when needed) -> the extractor's range.
fn prepare(
    chunk: &[f32],
    rows: usize,
    h: usize,
    w: usize,
    side: usize,
    range: InputRange,
) -> Result<Vec<f32>> {
    let plane = h * w;
    let out_plane = side * side;
    let mut out = vec![0f32; rows * 3 * out_plane];
    for (src, dst) in chunk
        .chunks_exact(3 * plane)
        .zip(out.chunks_exact_mut(3 * out_plane))
    {
        let mut px = vec![0u8; 3 * plane];
        for c in 0..3 {
            for p in 0..plane {
                px[p * 3 + c] = crate::imageio::to_u8(src[c * plane + p]);
            }
        }
        let px = if (h, w) == (side, side) {
            px
        } else {
            let img = image::RgbImage::from_raw(w as u32, h as u32, px).ok_or_else(|| {
                Error::Shape(format!(
                    "an image of {h} x {w} pixels does not fit its buffer"
                ))
            })?;
            image::imageops::resize(
                &img,
                side as u32,
                side as u32,
                crate::data::images::RESIZE_FILTER,
            )
            .into_raw()
        };
        for c in 0..3 {
            let (a, b) = range.affine(c);
            for p in 0..out_plane {
                let v = f32::from(px[p * 3 + c]) / 127.5 - 1.0;
                dst[c * out_plane + p] = v * a + b;
            }
        }
    }
    Ok(out)
}
