//! Image folders in the AFHQ layout (docs/workflow.md, section 9): `root/{classA,classB,...}/*.png|jpg|jpeg`.
//!
//! - Classes are the sub-folders of `root` (hidden ones, starting with `.`, are skipped) in
//!   sorted name order, labelled from 1 (`cat` = 1, `dog` = 2, `wild` = 3 for AFHQ; label 0 is
//!   the null class of classifier-free guidance). A class folder without images keeps its
//!   label (so labels do not shift), with a count of 0.
//! - Images are the files ending in `.png`, `.jpg` or `.jpeg` (any case), in sorted file-name
//!   order; at most `max_per_class` ([`DEFAULT_MAX_PER_CLASS`] = 3000) per class, the first in
//!   that order. Other files are ignored.
//! - Loading decodes with the `image` crate (format guessed from the content), converts to
//!   8-bit RGB, resizes to `resolution x resolution` with `image::imageops::resize` and the
//!   `Triangle` filter (bilinear; when shrinking, its support widens with the scale factor, so
//!   it averages like PIL's antialiased bilinear resize that torchvision's `Resize` uses),
//!   stretching non-square images (no crop), and scales to [-1, 1] as `v / 127.5 - 1`. No flips.
//!   Images already at the resolution are not resampled.
//! - Grayscale: [`FolderOptions::channels`] = 1 loads one channel, the luma of the 8-bit
//!   RGB image with PIL's `convert("L")` weights (`(299 R + 587 G + 114 B) / 1000`, rounded;
//!   torchvision's `Grayscale` uses the same), so a grayscale file loads exactly as stored;
//!   with 3 channels a grayscale file is replicated into R, G and B. Resized the same way.
//! - Unlabelled folders: with [`FolderOptions::allow_unlabelled`], a folder whose images lie
//!   directly in it (no class sub-folder holds an image) is one unconditional set, label 0
//!   for every image and `K = 0`.
//! - Listing does not decode: [`ImageFolder`] holds the (path, label) list and decodes an
//!   image when it is asked for. A file that cannot be decoded gives [`Error::Io`] naming it.
//!
//! [`build_eval_folder`] writes the evaluation set (`data/afhq/eval`: every `val` image resized,
//! in one flat folder); [`load_flat_folder`] reads such a folder back for FID.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::RgbImage;

use crate::error::{Error, Result};

/// Default cap on the images taken per class (docs/workflow.md, section 9: the first 3000 sorted file names).
pub const DEFAULT_MAX_PER_CLASS: usize = 3000;

/// The resampling filter of every resize in this module.
pub const RESIZE_FILTER: FilterType = FilterType::Triangle;

/// How [`ImageFolder::open_opts`] lists and loads a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderOptions {
    /// Side of the loaded images, in pixels.
    pub resolution: usize,
    /// Channels of the loaded images: 3 (RGB) or 1 (grayscale).
    pub channels: usize,
    /// Images taken per class (the first in sorted file-name order).
    pub max_per_class: usize,
    /// Accept a folder without class sub-folders as one unlabelled set (label 0, K = 0).
    pub allow_unlabelled: bool,
}

impl FolderOptions {
    /// RGB at `resolution`, [`DEFAULT_MAX_PER_CLASS`] per class, class folders required
    /// (what [`ImageFolder::open`] does).
    pub fn new(resolution: usize) -> Self {
        FolderOptions {
            resolution,
            channels: 3,
            max_per_class: DEFAULT_MAX_PER_CLASS,
            allow_unlabelled: false,
        }
    }
}

/// An image folder in the AFHQ layout, listed but not decoded (see the module documentation).
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    resolution: usize,
    channels: usize,
    class_names: Vec<String>,
    counts: Vec<usize>,
    items: Vec<(PathBuf, i64)>,
}

impl ImageFolder {
    /// Lists `root` with the default cap of [`DEFAULT_MAX_PER_CLASS`] images per class; images
    /// will be loaded at `resolution x resolution`.
    pub fn open(root: impl AsRef<Path>, resolution: usize) -> Result<Self> {
        Self::open_with(root, resolution, DEFAULT_MAX_PER_CLASS)
    }

    /// Lists `root`, taking at most `max_per_class` images per class (the first in sorted
    /// file-name order). Fails when `root` has no class folder or no image at all.
    pub fn open_with(
        root: impl AsRef<Path>,
        resolution: usize,
        max_per_class: usize,
    ) -> Result<Self> {
        Self::open_opts(
            root,
            &FolderOptions {
                max_per_class,
                ..FolderOptions::new(resolution)
            },
        )
    }

    /// Lists `root` as `opts` say (see the module documentation). Fails, naming the folder,
    /// when it holds no image at all, or (without `allow_unlabelled`) no class folder.
    pub fn open_opts(root: impl AsRef<Path>, opts: &FolderOptions) -> Result<Self> {
        let root = root.as_ref();
        let (resolution, max_per_class) = (opts.resolution, opts.max_per_class);
        check_resolution(resolution)?;
        check_channels(opts.channels)?;
        if max_per_class == 0 {
            return Err(Error::InvalidArgument(
                "max_per_class must be at least 1".into(),
            ));
        }
        let classes = class_dirs(root)?;
        if opts.allow_unlabelled {
            let mut labelled = false;
            for (_, dir) in &classes {
                labelled |= !image_files(dir)?.is_empty();
            }
            if !labelled {
                // No class folder holds an image: the folder's own images, unlabelled.
                let files = image_files(root)?;
                if files.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "{} holds no .png/.jpg/.jpeg image, neither directly nor in class \
                         sub-folders (root/<class>/*.png for labelled data)",
                        root.display()
                    )));
                }
                let take = files.len().min(max_per_class);
                return Ok(ImageFolder {
                    root: root.to_path_buf(),
                    resolution,
                    channels: opts.channels,
                    class_names: Vec::new(),
                    counts: vec![take],
                    items: files.into_iter().take(take).map(|p| (p, 0)).collect(),
                });
            }
        }
        if classes.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{} has no class sub-folders (expected root/<class>/*.png|jpg|jpeg)",
                root.display()
            )));
        }
        let mut class_names = Vec::with_capacity(classes.len());
        let mut counts = Vec::with_capacity(classes.len());
        let mut items = Vec::new();
        for (k, (name, dir)) in classes.into_iter().enumerate() {
            let files = image_files(&dir)?;
            let take = files.len().min(max_per_class);
            items.extend(files.into_iter().take(take).map(|p| (p, k as i64 + 1)));
            class_names.push(name);
            counts.push(take);
        }
        if items.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{} holds no .png/.jpg/.jpeg image in its class folders",
                root.display()
            )));
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            resolution,
            channels: opts.channels,
            class_names,
            counts,
            items,
        })
    }

    /// The folder listed.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Side of the loaded images, in pixels.
    pub fn resolution(&self) -> usize {
        self.resolution
    }

    /// Values per loaded image: `channels * resolution * resolution`.
    pub fn dim(&self) -> usize {
        self.channels * self.resolution * self.resolution
    }

    /// Channels of the loaded images (3 unless [`FolderOptions::channels`] said 1).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// True when the folder has class sub-folders (labels 1..=K); false for an unlabelled
    /// folder (label 0 everywhere).
    pub fn is_labelled(&self) -> bool {
        !self.class_names.is_empty()
    }

    /// Number of images (after the per-class cap).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is no image (never true for a folder that opened).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Class names in label order: label `k` is element `k - 1`.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Number of classes `K` (labels `1..=K`; 0 for an unlabelled folder).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Images taken per class (after the cap), in label order (one count for an unlabelled
    /// folder).
    pub fn counts(&self) -> &[usize] {
        &self.counts
    }

    /// The label (`1..=K`) of class `name`.
    pub fn label_of(&self, name: &str) -> Result<i64> {
        self.class_names
            .iter()
            .position(|c| c == name)
            .map(|k| k as i64 + 1)
            .ok_or_else(|| Error::UnknownName {
                kind: "class",
                name: name.to_string(),
                known: self.class_names.join(", "),
            })
    }

    /// All (path, label) pairs, classes in label order, files sorted within each class.
    pub fn items(&self) -> &[(PathBuf, i64)] {
        &self.items
    }

    /// All labels, in item order.
    pub fn labels(&self) -> Vec<i64> {
        self.items.iter().map(|(_, l)| *l).collect()
    }

    /// Path and label of image `index`.
    pub fn item(&self, index: usize) -> Result<(&Path, i64)> {
        self.items
            .get(index)
            .map(|(p, l)| (p.as_path(), *l))
            .ok_or_else(|| {
                Error::InvalidArgument(format!("image {index} of a folder of {}", self.len()))
            })
    }

    /// Decodes image `index`: CHW pixels (C x R x R, [-1, 1]) and its label.
    pub fn load(&self, index: usize) -> Result<(Vec<f32>, i64)> {
        let (path, label) = self.item(index)?;
        Ok((
            load_image_channels(path, self.resolution, self.channels)?,
            label,
        ))
    }

    /// Decodes the images `indices` (in that order) into one N x 3 x R x R batch, with their
    /// labels; on up to [`crate::parallel::machine_threads`] threads.
    pub fn load_batch(&self, indices: &[usize]) -> Result<(Vec<f32>, Vec<i64>)> {
        let mut paths = Vec::with_capacity(indices.len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let (p, l) = self.item(i)?;
            paths.push(p);
            labels.push(l);
        }
        Ok((load_many(&paths, self.resolution, self.channels)?, labels))
    }

    /// Decodes every image (N x 3 x R x R, item order) with its labels.
    pub fn load_all(&self) -> Result<(Vec<f32>, Vec<i64>)> {
        let paths: Vec<&Path> = self.items.iter().map(|(p, _)| p.as_path()).collect();
        Ok((
            load_many(&paths, self.resolution, self.channels)?,
            self.labels(),
        ))
    }
}

fn check_resolution(resolution: usize) -> Result<()> {
    if resolution == 0 || resolution > 8192 {
        return Err(Error::InvalidArgument(format!(
            "image resolution must be in 1..=8192, got {resolution}"
        )));
    }
    Ok(())
}

fn check_channels(channels: usize) -> Result<()> {
    if channels != 1 && channels != 3 {
        return Err(Error::InvalidArgument(format!(
            "images have 1 (grayscale) or 3 (RGB) channels, not {channels}"
        )));
    }
    Ok(())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `name` ends in .png, .jpg or .jpeg (any case) and is not hidden.
fn is_image_name(name: &OsString) -> bool {
    let name = name.to_string_lossy();
    if name.starts_with('.') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".png") || lower.ends_with(".jpg") || lower.ends_with(".jpeg")
}

/// Entries of `dir` (name, path, is_dir), sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<(OsString, PathBuf, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        // Follows symbolic links, so linked class folders and images count.
        let is_dir = path.is_dir();
        out.push((entry.file_name(), path, is_dir));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Class sub-folders of `root` (name, path), sorted, hidden ones skipped.
fn class_dirs(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    Ok(sorted_entries(root)?
        .into_iter()
        .filter(|(name, _, is_dir)| *is_dir && !name.to_string_lossy().starts_with('.'))
        .map(|(name, path, _)| (name.to_string_lossy().into_owned(), path))
        .collect())
}

/// Image files of `dir`, sorted by file name.
pub(crate) fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|(name, _, is_dir)| !*is_dir && is_image_name(name))
        .map(|(_, path, _)| path)
        .collect())
}

/// Decodes `path` to 8-bit RGB at `resolution x resolution` (see the module documentation).
fn decode_rgb(path: &Path, resolution: usize) -> Result<RgbImage> {
    // Regular files only: a FIFO among the images would block the loader forever.
    let (file, _) = crate::fsutil::open_regular(path)?;
    let mut reader = image::ImageReader::new(std::io::BufReader::new(file));
    if let Ok(format) = image::ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    decode_reader(reader, path, resolution)
}

fn decode_reader<R: std::io::BufRead + std::io::Seek>(
    reader: image::ImageReader<R>,
    path: &Path,
    resolution: usize,
) -> Result<RgbImage> {
    let bad = |e: image::ImageError| match e {
        image::ImageError::IoError(source) => Error::Io {
            path: path.to_path_buf(),
            source,
        },
        other => Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("cannot decode image: {other}"),
            ),
        },
    };
    let img = reader
        .with_guessed_format()
        .map_err(io_err(path))?
        .decode()
        .map_err(bad)?
        .to_rgb8();
    let r = resolution as u32;
    if img.width() == r && img.height() == r {
        Ok(img)
    } else {
        Ok(image::imageops::resize(&img, r, r, RESIZE_FILTER))
    }
}

/// Decodes an image held in memory (PNG or JPEG; `name` only labels errors) as
/// [`load_image`] decodes a file.
pub fn decode_image(bytes: &[u8], name: &Path, resolution: usize) -> Result<Vec<f32>> {
    check_resolution(resolution)?;
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    Ok(to_chw(
        &decode_reader(reader, name, resolution)?,
        resolution,
    ))
}

fn to_chw(img: &RgbImage, resolution: usize) -> Vec<f32> {
    let n = resolution * resolution;
    let mut out = vec![0f32; 3 * n];
    for (p, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + p] = f32::from(px[c]) / 127.5 - 1.0;
        }
    }
    out
}

/// Decodes one image file (PNG or JPEG) as CHW pixels (3 x R x R, [-1, 1]), resized to
/// `resolution x resolution` as the module documentation describes.
pub fn load_image(path: &Path, resolution: usize) -> Result<Vec<f32>> {
    check_resolution(resolution)?;
    Ok(to_chw(&decode_rgb(path, resolution)?, resolution))
}

/// [`load_image`] with `channels` = 3 (RGB) or 1 (grayscale: PIL's luma of the 8-bit RGB
/// image, see the module documentation), `channels x R x R` values.
pub fn load_image_channels(path: &Path, resolution: usize, channels: usize) -> Result<Vec<f32>> {
    check_channels(channels)?;
    let rgb = load_image(path, resolution)?;
    if channels == 3 {
        return Ok(rgb);
    }
    Ok(luma(&rgb, resolution * resolution))
}

/// One luma channel of a 3 x n CHW image in [-1, 1], computed on its 8-bit levels with PIL's
/// integer formula so that a gray pixel keeps its level exactly.
fn luma(rgb: &[f32], n: usize) -> Vec<f32> {
    let level = |v: f32| ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
    (0..n)
        .map(|p| {
            let y = crate::imageio::luma(level(rgb[p]), level(rgb[n + p]), level(rgb[2 * n + p]));
            f32::from(y) / 127.5 - 1.0
        })
        .collect()
}

/// Decodes `paths` into one batch, on up to [`crate::parallel::machine_threads`] threads; the
/// first error (in path order) is returned.
fn load_many(paths: &[&Path], resolution: usize, channels: usize) -> Result<Vec<f32>> {
    check_resolution(resolution)?;
    check_channels(channels)?;
    let dim = channels * resolution * resolution;
    let mut out = vec![0f32; paths.len() * dim];
    if paths.is_empty() {
        return Ok(out);
    }
    let per = crate::parallel::part_size(paths.len(), crate::parallel::machine_threads());
    crate::parallel::try_for_each_rows(&mut out, dim, per, "image decoding", |first, dst| {
        for (d, p) in dst.chunks_mut(dim).zip(&paths[first..]) {
            d.copy_from_slice(&load_image_channels(p, resolution, channels)?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Writes the evaluation set: every image of `val_root/<class>/` (classes and files sorted,
/// no cap), resized to `resolution x resolution` as [`ImageFolder`] does, as PNG into the one
/// flat folder `out_dir` (created if needed), named `<class>_<index>.png` with the image's
/// 0-based position in its sorted class folder, 5 digits wide (e.g. `cat_00012.png`), so names
/// never collide. Each file is written atomically; files of an earlier run are replaced.
/// Returns the number of images written.
///
/// Fails before writing anything when `out_dir` already holds image files that this call
/// would not write (the remains of another set), since they would mix into the evaluation set.
pub fn build_eval_folder(
    val_root: impl AsRef<Path>,
    out_dir: impl AsRef<Path>,
    resolution: usize,
) -> Result<usize> {
    let (val_root, out_dir) = (val_root.as_ref(), out_dir.as_ref());
    check_resolution(resolution)?;
    let mut plan = Vec::new();
    for (class, dir) in class_dirs(val_root)? {
        for (i, src) in image_files(&dir)?.into_iter().enumerate() {
            plan.push((src, format!("{class}_{i:05}.png")));
        }
    }
    if plan.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} holds no .png/.jpg/.jpeg image in class sub-folders",
            val_root.display()
        )));
    }
    // Writing into the folder it reads from would overwrite the sources (`--out VAL/cat`
    // with sources named cat_NNNNN.png) and mix the output into the classes.
    crate::fsutil::refuse_output_inside(out_dir, val_root, "--val")?;
    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    let planned: std::collections::HashSet<&str> = plan.iter().map(|(_, n)| n.as_str()).collect();
    let strangers: Vec<String> = image_files(out_dir)?
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !planned.contains(n.as_str()))
        .collect();
    if let Some(first) = strangers.first() {
        return Err(Error::InvalidArgument(format!(
            "{} already holds {} image(s) that are not part of this evaluation set (e.g. {first}); \
             use an empty folder",
            out_dir.display(),
            strangers.len()
        )));
    }
    let per = crate::parallel::part_size(plan.len(), crate::parallel::machine_threads());
    crate::parallel::try_map_ranges(plan.len(), per, "image writing", |range| {
        for (src, name) in &plan[range] {
            let img = decode_rgb(src, resolution)?;
            crate::imageio::write_png(
                &out_dir.join(name),
                img.as_raw(),
                resolution,
                resolution,
                3,
                crate::imageio::PngCompression::Fast,
            )?;
        }
        Ok(())
    })?;
    Ok(plan.len())
}

/// Every image (.png/.jpg/.jpeg) of the one folder `dir`, in sorted file-name order, as one
/// N x 3 x R x R batch in [-1, 1], resized as [`ImageFolder`] does (N = `len / (3 R R)`).
/// Fails when `dir` holds no image.
pub fn load_flat_folder(dir: impl AsRef<Path>, resolution: usize) -> Result<Vec<f32>> {
    let dir = dir.as_ref();
    check_resolution(resolution)?;
    let files = image_files(dir)?;
    if files.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} holds no .png/.jpg/.jpeg image",
            dir.display()
        )));
    }
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    load_many(&paths, resolution, 3)
}
