//! A built-in synthetic class-conditional image set: coloured shapes on a dark background.
//!
//! AFHQ is not redistributable, so tests and the bundled demo model train on this set instead.
//! Class `k` (labels `1..=K`, 0 being the null class of classifier-free guidance) is one shape
//! in one hue family, drawn with random position, size and colour jitter:
//!
//! | label | name       | shape                                   | hue   |
//! |-------|------------|-----------------------------------------|-------|
//! | 1     | `circle`   | filled disc                             | red   |
//! | 2     | `square`   | filled axis-aligned square              | green |
//! | 3     | `triangle` | filled equilateral triangle, apex up    | blue  |
//! | 4     | `cross`    | filled plus sign                        | yellow|
//!
//! The background is a linear gradient between two random dark colours along a random
//! direction, plus a little pixel noise. Edges are anti-aliased (coverage from the signed
//! distance to the shape). Images are CHW, 3 channels, values in [-1, 1].
//!
//! Determinism: image `i` of seed `s` (its pixels and its label) is a pure function of
//! `(s, i, resolution, classes)`, drawn from the counter-based generator of [`crate::rng`]
//! (streams [`SHAPES_STREAM`] + 0, 1, 2), whatever batch it is generated in. Labels are
//! balanced exactly: each block of `K` consecutive indices `K b .. K b + K` holds every class
//! once, in a random order of its own.
//!
//! [`Shapes::classify`] recognises the class from the pixels alone (foreground hue AND shape
//! must agree), so generated images can be judged without a trained classifier.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::rng;

/// First Philox stream tag of the shapes set: `+ 0` shape parameters, `+ 1` pixel noise,
/// `+ 2` label permutations; apart from the sampler's streams and the toy sets'.
pub const SHAPES_STREAM: u32 = 0x5348_4150;

/// The largest number of classes the set offers.
pub const MAX_CLASSES: usize = 4;

/// The smallest resolution accepted.
pub const MIN_RESOLUTION: usize = 8;

/// Class names, label `k` being `CLASS_NAMES[k - 1]`.
pub const CLASS_NAMES: [&str; MAX_CLASSES] = ["circle", "square", "triangle", "cross"];

/// Centre hue (degrees) of each class.
const HUES: [f64; MAX_CLASSES] = [0.0, 120.0, 230.0, 55.0];
/// Hue jitter (degrees, +-) of the foreground colour.
const HUE_JITTER: f64 = 12.0;
/// Standard deviation of the background pixel noise, on the [0, 1] scale.
const NOISE_STD: f64 = 0.015;

/// Shape prototypes for [`Shapes::classify`]: (fill ratio of the bounding box, vertical
/// centroid position within the bounding box, 0 = top).
const PROTOTYPES: [(f64, f64); MAX_CLASSES] = [
    (std::f64::consts::FRAC_PI_4, 0.5),
    (1.0, 0.5),
    (0.5, 2.0 / 3.0),
    (5.0 / 9.0, 0.5),
];
/// Weight of the centroid feature against the fill ratio.
const CENTROID_WEIGHT: f64 = 2.0;
/// Largest hue distance (degrees) at which a colour still counts as a class's hue.
const HUE_TOLERANCE: f64 = 35.0;

/// The synthetic coloured-shapes image set (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shapes {
    resolution: usize,
    classes: usize,
}

impl Default for Shapes {
    /// 32 x 32 pixels, 3 classes.
    fn default() -> Self {
        Shapes {
            resolution: 32,
            classes: 3,
        }
    }
}

/// The label (`1..=classes`) of item `index` of `seed` on random stream `stream`: each block
/// of `classes` consecutive indices starting at a multiple of it is a seeded permutation
/// (Fisher-Yates) of the classes, so labels are balanced in every block. The uniforms are a
/// pure function of their position, so the first `classes` of them do not depend on how many
/// are drawn.
fn balanced_label(seed: u64, stream: u32, classes: usize, index: u64) -> i64 {
    let k = classes as u64;
    let (block, pos) = (index / k, (index % k) as usize);
    let mut perm: Vec<usize> = (0..classes).collect();
    let mut u = vec![0f64; classes];
    rng::fill_uniform(seed, block, stream, &mut u);
    for i in (1..classes).rev() {
        let j = ((u[i] * (i + 1) as f64) as usize).min(i);
        perm.swap(i, j);
    }
    perm[pos] as i64 + 1
}

/// The resolution (at least [`MIN_RESOLUTION`], at most 4096) and class count (`1..=max`)
/// of a synthetic set called `what`.
fn check_set_size(what: &str, resolution: usize, classes: usize, max: usize) -> Result<()> {
    if !(MIN_RESOLUTION..=4096).contains(&resolution) {
        return Err(Error::InvalidArgument(format!(
            "{what} resolution must be in {MIN_RESOLUTION}..=4096, got {resolution}"
        )));
    }
    if classes == 0 || classes > max {
        return Err(Error::InvalidArgument(format!(
            "{what} classes must be in 1..={max}, got {classes}"
        )));
    }
    Ok(())
}

impl Shapes {
    /// A set of `resolution x resolution` images with `classes` classes (labels `1..=classes`).
    /// `resolution` must be at least [`MIN_RESOLUTION`], `classes` in `1..=`[`MAX_CLASSES`].
    pub fn new(resolution: usize, classes: usize) -> Result<Self> {
        check_set_size("shapes", resolution, classes, MAX_CLASSES)?;
        Ok(Shapes {
            resolution,
            classes,
        })
    }

    /// Side of the square images, in pixels.
    pub fn resolution(&self) -> usize {
        self.resolution
    }

    /// Number of classes `K` (labels `1..=K`).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Values per image: `3 * resolution * resolution`.
    pub fn dim(&self) -> usize {
        3 * self.resolution * self.resolution
    }

    /// Class names, label `k` being element `k - 1`.
    pub fn class_names(&self) -> &'static [&'static str] {
        &CLASS_NAMES[..self.classes]
    }

    /// The label (`1..=K`) of image `index` of `seed`. Every block of `K` consecutive
    /// indices starting at a multiple of `K` holds each class exactly once.
    pub fn label(&self, seed: u64, index: u64) -> i64 {
        balanced_label(seed, SHAPES_STREAM + 2, self.classes, index)
    }

    /// Image `index` of `seed`: CHW pixels (3 channels, values in [-1, 1]) and its label.
    pub fn image(&self, seed: u64, index: u64) -> (Vec<f32>, i64) {
        let label = self.label(seed, index);
        let mut out = vec![0f32; self.dim()];
        self.render(seed, index, label, &mut out);
        (out, label)
    }

    /// Images `first_index .. first_index + n` of `seed`, concatenated (N x 3 x R x R), and
    /// their labels; image `r` equals `self.image(seed, first_index + r)`.
    pub fn batch(&self, seed: u64, first_index: u64, n: usize) -> (Vec<f32>, Vec<i64>) {
        let dim = self.dim();
        let mut images = vec![0f32; n * dim];
        let mut labels = Vec::with_capacity(n);
        for (r, out) in images.chunks_mut(dim).enumerate() {
            let index = first_index + r as u64;
            let label = self.label(seed, index);
            self.render(seed, index, label, out);
            labels.push(label);
        }
        (images, labels)
    }

    /// Draws image `index` of `seed` with class `label` into `out` (length `dim()`).
    fn render(&self, seed: u64, index: u64, label: i64, out: &mut [f32]) {
        let class = (label - 1).clamp(0, MAX_CLASSES as i64 - 1) as usize;
        render(self.resolution, seed, index, class, HUES[class], out);
    }
}

/// Draws image `index` of `seed`: shape `shape` (0 circle, 1 square, 2 triangle, 3 cross) in
/// the hue family `hue` (degrees), into `out` (3 x res x res). The draws from the generator do
/// not depend on the shape or hue, so the classes share their backgrounds and jitter.
fn render(res: usize, seed: u64, index: u64, shape: usize, hue: f64, out: &mut [f32]) {
    let rf = res as f64;
    let n = res * res;
    let mut u = [0f64; 16];
    rng::fill_uniform(seed, index, SHAPES_STREAM, &mut u);
    let mut noise = vec![0f32; 3 * n];
    rng::fill_normal(seed, index, SHAPES_STREAM + 1, &mut noise);

    // Background: gradient between two dark colours along a random direction.
    let bg0 = hsv_to_rgb(360.0 * u[0], 0.6 * u[1], 0.08 + 0.30 * u[2]);
    let bg1 = hsv_to_rgb(360.0 * u[3], 0.6 * u[4], 0.08 + 0.30 * u[5]);
    let theta = std::f64::consts::TAU * u[6];
    let (dx, dy) = (theta.cos(), theta.sin());

    // Foreground colour: the class hue, jittered.
    let hue = hue + HUE_JITTER * (2.0 * u[7] - 1.0);
    let fg = hsv_to_rgb(hue, 0.65 + 0.25 * u[8], 0.8 + 0.2 * u[9]);

    // Shape: size, then a centre that keeps the shape (plus one pixel) inside the image.
    let lerp = |a: f64, b: f64, t: f64| a + (b - a) * t;
    let shape = match shape {
        0 => Shape::Circle(lerp(0.20, 0.32, u[10]) * rf),
        1 => Shape::Square(lerp(0.17, 0.28, u[10]) * rf),
        2 => Shape::Triangle(lerp(0.28, 0.42, u[10]) * rf),
        _ => Shape::Cross(lerp(0.24, 0.36, u[10]) * rf),
    };
    let (left, right, top, bottom) = shape.extent();
    let cx = lerp(left + 1.0, rf - right - 1.0, u[11]);
    let cy = lerp(top + 1.0, rf - bottom - 1.0, u[12]);

    for y in 0..res {
        for x in 0..res {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let t = (((px - 0.5 * rf) * dx + (py - 0.5 * rf) * dy) / rf + 0.5).clamp(0.0, 1.0);
            let cov = (0.5 - shape.sdf(px - cx, py - cy)).clamp(0.0, 1.0);
            let p = y * res + x;
            for c in 0..3 {
                let bg = lerp(bg0[c], bg1[c], t) + NOISE_STD * f64::from(noise[c * n + p]);
                let v = lerp(bg, fg[c], cov);
                out[c * n + p] = ((2.0 * v - 1.0) as f32).clamp(-1.0, 1.0);
            }
        }
    }
}

impl Shapes {
    /// Recognises the class of one CHW image (3 x R x R, [-1, 1]) from its pixels; `None` when
    /// the image shows no recognisable shape (also when `chw` has the wrong length).
    ///
    /// The foreground is the largest 4-connected blob of pixels whose brightest channel lies
    /// above the midpoint between the background level (median) and the foreground level
    /// (97th percentile); it must hold at least 80% of those pixels and cover 2% to 50% of the
    /// image. Its mean colour gives a hue class (nearest class hue within 35 degrees, saturation
    /// at least 0.25), its bounding-box fill ratio and vertical centroid give a shape class
    /// (nearest prototype among the `K` classes). The label is returned only when both agree.
    pub fn classify(&self, chw: &[f32]) -> Option<i64> {
        let f = blob_features(self.resolution, chw)?;
        if f.sat < 0.25 {
            return None;
        }
        let hue_class = (0..self.classes)
            .map(|k| (k, hue_distance(f.hue, HUES[k])))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .filter(|&(_, d)| d <= HUE_TOLERANCE)?
            .0;
        let shape_class = nearest_shape(&f, self.classes)?;
        (shape_class == hue_class).then_some(hue_class as i64 + 1)
    }

    /// [`Shapes::classify`] on each image of a batch (N x 3 x R x R).
    pub fn classify_batch(&self, images: &[f32]) -> Result<Vec<Option<i64>>> {
        let dim = self.dim();
        if !images.len().is_multiple_of(dim) {
            return Err(Error::Shape(format!(
                "{} values do not form images of 3 x {r} x {r}",
                images.len(),
                r = self.resolution
            )));
        }
        Ok(images.chunks(dim).map(|im| self.classify(im)).collect())
    }
}

/// Colours of [`ShapeColours`]: (name, hue in degrees), at least 55 degrees apart.
pub const COLOURS: [(&str, f64); 5] = [
    ("red", 0.0),
    ("yellow", 55.0),
    ("green", 120.0),
    ("blue", 230.0),
    ("magenta", 300.0),
];

/// Most classes [`ShapeColours`] offers: 4 shapes x 5 colours.
pub const MAX_COMBOS: usize = MAX_CLASSES * COLOURS.len();

/// Shapes crossed with colours: class `k` (0-based, label `k + 1`) is shape `k / 5` (circle,
/// square, triangle, cross) in colour `k % 5` ([`COLOURS`]), so 10 classes are circles and
/// squares in five colours, and neither the colour nor the shape alone tells the class.
/// Images are drawn as [`Shapes`] draws them (same background, jitter and sizes); labels are
/// balanced in blocks of K as there. [`ShapeColours::classify`] recognises a class from the
/// pixels (colour and shape must both be recognised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeColours {
    resolution: usize,
    classes: usize,
}

impl ShapeColours {
    /// `classes` in `1..=`[`MAX_COMBOS`] at `resolution` (at least [`MIN_RESOLUTION`]).
    pub fn new(resolution: usize, classes: usize) -> Result<Self> {
        check_set_size("shape-colour", resolution, classes, MAX_COMBOS)?;
        Ok(ShapeColours {
            resolution,
            classes,
        })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Side of the images.
    pub fn resolution(&self) -> usize {
        self.resolution
    }

    /// Values per image: `3 * resolution * resolution`.
    pub fn dim(&self) -> usize {
        3 * self.resolution * self.resolution
    }

    /// Class names in label order, `colour_shape` (`red_circle`, ...).
    pub fn class_names(&self) -> Vec<String> {
        (0..self.classes)
            .map(|k| {
                format!(
                    "{}_{}",
                    COLOURS[k % COLOURS.len()].0,
                    CLASS_NAMES[k / COLOURS.len()]
                )
            })
            .collect()
    }

    /// The label (`1..=K`) of image `index` of `seed`: each block of K consecutive indices
    /// holds every class once.
    pub fn label(&self, seed: u64, index: u64) -> i64 {
        balanced_label(seed, SHAPES_STREAM + 3, self.classes, index)
    }

    /// Image `index` of `seed` (3 x R x R in [-1, 1]) and its label.
    pub fn image(&self, seed: u64, index: u64) -> (Vec<f32>, i64) {
        let label = self.label(seed, index);
        let k = (label - 1) as usize;
        let mut out = vec![0f32; self.dim()];
        render(
            self.resolution,
            seed,
            index,
            k / COLOURS.len(),
            COLOURS[k % COLOURS.len()].1,
            &mut out,
        );
        (out, label)
    }

    /// The class (label) one CHW image (3 x R x R) shows, `None` when its colour or shape is
    /// not recognised (the blob rules of [`Shapes::classify`]).
    pub fn classify(&self, chw: &[f32]) -> Option<i64> {
        let f = blob_features(self.resolution, chw)?;
        if f.sat < 0.25 {
            return None;
        }
        let colour = (0..COLOURS.len())
            .map(|c| (c, hue_distance(f.hue, COLOURS[c].1)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .filter(|&(_, d)| d <= HUE_TOLERANCE)?
            .0;
        let shape = nearest_shape(&f, self.classes.div_ceil(COLOURS.len()))?;
        let k = shape * COLOURS.len() + colour;
        (k < self.classes).then_some(k as i64 + 1)
    }

    /// Writes images `0..n` of `seed` as PNG files `out/<class name>/<index>.png` (5 digits),
    /// with `channels` 3 (RGB) or 1 (grayscale by [`crate::imageio::luma`]): an image folder
    /// for `dpm train --data folder:OUT`. Returns the number written.
    pub fn write_folder(
        &self,
        out: &std::path::Path,
        n: usize,
        seed: u64,
        channels: usize,
    ) -> Result<usize> {
        if channels != 1 && channels != 3 {
            return Err(Error::InvalidArgument(format!(
                "channels must be 1 or 3, got {channels}"
            )));
        }
        let names = self.class_names();
        let r = self.resolution;
        for i in 0..n {
            let (img, label) = self.image(seed, i as u64);
            let dir = out.join(&names[(label - 1) as usize]);
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            let path = dir.join(format!("{i:05}.png"));
            if channels == 3 {
                crate::imageio::save_png(&path, &img, 1, 0, 3, r, r)?;
            } else {
                let mut gray = vec![0u8; r * r];
                crate::imageio::to_pixels(
                    &img,
                    1,
                    3,
                    r,
                    r,
                    crate::imageio::PixelFormat::Gray8,
                    &mut gray,
                )?;
                let g: Vec<f32> = gray.iter().map(|&v| f32::from(v) / 127.5 - 1.0).collect();
                crate::imageio::save_png(&path, &g, 1, 0, 1, r, r)?;
            }
        }
        Ok(n)
    }
}

/// What [`Shapes::classify`] measures of an image's foreground blob.
struct BlobFeatures {
    /// Hue (degrees) and HSV saturation of the blob's mean colour.
    hue: f64,
    sat: f64,
    /// Bounding-box fill ratio.
    fill: f64,
    /// Vertical centroid within the bounding box (0 = top).
    cy: f64,
}

/// The foreground blob's features of one CHW image (3 x res x res), `None` when there is no
/// clear blob (see [`Shapes::classify`]).
fn blob_features(res: usize, chw: &[f32]) -> Option<BlobFeatures> {
    let n = res * res;
    if chw.len() != 3 * n {
        return None;
    }
    let val = |c: usize, p: usize| (0.5 * f64::from(chw[c * n + p]) + 0.5).clamp(0.0, 1.0);
    let bright: Vec<f64> = (0..n)
        .map(|p| val(0, p).max(val(1, p)).max(val(2, p)))
        .collect();
    let mut sorted = bright.clone();
    sorted.sort_by(f64::total_cmp);
    let bg = sorted[n / 2];
    let fg = sorted[((n as f64 * 0.97) as usize).min(n - 1)];
    if (fg - bg).is_nan() || fg - bg < 0.2 {
        return None;
    }
    let thr = 0.5 * (bg + fg);
    let mask: Vec<bool> = bright.iter().map(|&b| b > thr).collect();
    let total = mask.iter().filter(|&&m| m).count();
    let blob = largest_component(&mask, res);
    let area = blob.len();
    if (area as f64) < 0.8 * total as f64
        || (area as f64) < 0.02 * n as f64
        || (area as f64) > 0.5 * n as f64
    {
        return None;
    }

    // Hue of the blob's mean colour.
    let mut mean = [0f64; 3];
    for &p in &blob {
        for (c, m) in mean.iter_mut().enumerate() {
            *m += val(c, p);
        }
    }
    mean.iter_mut().for_each(|m| *m /= area as f64);
    let (hue, sat) = rgb_to_hue_sat(mean);
    // Shape features of the blob.
    let (mut x0, mut x1, mut y0, mut y1, mut ysum) = (res, 0, res, 0, 0.0);
    for &p in &blob {
        let (x, y) = (p % res, p / res);
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
        ysum += y as f64 + 0.5;
    }
    let (w, h) = ((x1 - x0 + 1) as f64, (y1 - y0 + 1) as f64);
    let fill = area as f64 / (w * h);
    let cy = (ysum / area as f64 - y0 as f64) / h;
    Some(BlobFeatures { hue, sat, fill, cy })
}

/// The nearest shape prototype among the first `shapes` (0 circle, 1 square, 2 triangle,
/// 3 cross).
fn nearest_shape(f: &BlobFeatures, shapes: usize) -> Option<usize> {
    Some(
        (0..shapes.min(MAX_CLASSES))
            .map(|k| {
                let (pf, pc) = PROTOTYPES[k];
                (k, (f.fill - pf).hypot(CENTROID_WEIGHT * (f.cy - pc)))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))?
            .0,
    )
}

/// One shape, centred at the origin, sizes in pixels.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Disc of this radius.
    Circle(f64),
    /// Square of this half side.
    Square(f64),
    /// Equilateral triangle (apex up) of this circumradius.
    Triangle(f64),
    /// Plus sign of this arm half-length (arm half-width one third of it).
    Cross(f64),
}

impl Shape {
    /// Extent from the centre: (left, right, top, bottom).
    fn extent(self) -> (f64, f64, f64, f64) {
        match self {
            Shape::Circle(r) | Shape::Square(r) | Shape::Cross(r) => (r, r, r, r),
            Shape::Triangle(r) => {
                let half = 0.5 * 3f64.sqrt() * r;
                (half, half, r, 0.5 * r)
            }
        }
    }

    /// Signed distance (negative inside; exact for the disc and the boxes, a lower bound
    /// built from the edge half-planes for the triangle).
    fn sdf(self, x: f64, y: f64) -> f64 {
        match self {
            Shape::Circle(r) => x.hypot(y) - r,
            Shape::Square(s) => box_sdf(x, y, s, s),
            Shape::Cross(l) => box_sdf(x, y, l, l / 3.0).min(box_sdf(x, y, l / 3.0, l)),
            Shape::Triangle(r) => {
                let (c, s) = (0.5 * 3f64.sqrt(), 0.5);
                // Outward normals of the bottom edge and the two slanted edges (y points down).
                let d0 = y;
                let d1 = c * x - s * y;
                let d2 = -c * x - s * y;
                d0.max(d1).max(d2) - 0.5 * r
            }
        }
    }
}

/// Signed distance to an axis-aligned box of half sizes (hx, hy) centred at the origin.
fn box_sdf(x: f64, y: f64, hx: f64, hy: f64) -> f64 {
    let (qx, qy) = (x.abs() - hx, y.abs() - hy);
    qx.max(0.0).hypot(qy.max(0.0)) + qx.max(qy).min(0.0)
}

/// HSV (hue in degrees, saturation and value in [0, 1]) to RGB in [0, 1].
fn hsv_to_rgb(h: f64, s: f64, v: f64) -> [f64; 3] {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

/// Hue (degrees) and HSV saturation of an RGB colour in [0, 1].
fn rgb_to_hue_sat([r, g, b]: [f64; 3]) -> (f64, f64) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    if max <= 0.0 || d <= 0.0 {
        return (0.0, 0.0);
    }
    let h = if max == r {
        60.0 * ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    (h, d / max)
}

/// Distance between two hues on the colour circle, in degrees.
fn hue_distance(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

/// Pixel indices of the largest 4-connected component of `mask` (row-major, `res` wide).
fn largest_component(mask: &[bool], res: usize) -> Vec<usize> {
    let mut seen = vec![false; mask.len()];
    let mut best = Vec::new();
    let mut queue = VecDeque::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        let mut comp = Vec::new();
        seen[start] = true;
        queue.push_back(start);
        while let Some(p) = queue.pop_front() {
            comp.push(p);
            let (x, y) = (p % res, p / res);
            let mut visit = |q: usize| {
                if mask[q] && !seen[q] {
                    seen[q] = true;
                    queue.push_back(q);
                }
            };
            if x > 0 {
                visit(p - 1);
            }
            if x + 1 < res {
                visit(p + 1);
            }
            if y > 0 {
                visit(p - res);
            }
            if y + 1 < res {
                visit(p + res);
            }
        }
        if comp.len() > best.len() {
            best = comp;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_round_trip() {
        for h in [0.0, 55.0, 120.0, 230.0, 300.0] {
            let rgb = hsv_to_rgb(h, 0.8, 0.9);
            let (h2, s2) = rgb_to_hue_sat(rgb);
            assert!(hue_distance(h, h2) < 1e-9, "{h} vs {h2}");
            assert!((s2 - 0.8).abs() < 1e-9);
        }
    }

    #[test]
    fn shapes_have_their_prototype_features() {
        // Large, centred, noiseless masks match their prototypes.
        let res = 64;
        for (k, shape) in [
            Shape::Circle(20.0),
            Shape::Square(18.0),
            Shape::Triangle(24.0),
            Shape::Cross(22.0),
        ]
        .into_iter()
        .enumerate()
        {
            let mask: Vec<bool> = (0..res * res)
                .map(|p| {
                    let (x, y) = ((p % res) as f64 + 0.5, (p / res) as f64 + 0.5);
                    shape.sdf(x - 32.0, y - 34.0) < 0.0
                })
                .collect();
            let blob = largest_component(&mask, res);
            assert_eq!(blob.len(), mask.iter().filter(|&&m| m).count());
            let (mut y0, mut y1, mut x0, mut x1, mut ys) = (res, 0, res, 0, 0.0);
            for &p in &blob {
                x0 = x0.min(p % res);
                x1 = x1.max(p % res);
                y0 = y0.min(p / res);
                y1 = y1.max(p / res);
                ys += (p / res) as f64 + 0.5;
            }
            let h = (y1 - y0 + 1) as f64;
            let fill = blob.len() as f64 / ((x1 - x0 + 1) as f64 * h);
            let cy = (ys / blob.len() as f64 - y0 as f64) / h;
            let (f, c) = PROTOTYPES[k];
            assert!((fill - f).abs() < 0.06, "class {k}: fill {fill} vs {f}");
            assert!((cy - c).abs() < 0.04, "class {k}: centroid {cy} vs {c}");
        }
    }
}
