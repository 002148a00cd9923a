//! `dpm bench`: the NFE-versus-quality grid (dpm::bench) on an exported model: Chamfer
//! distance for 2D models, FID for image models; CSV, PNG plots and a Markdown table.

use std::path::PathBuf;

use clap::Args;

use dpm::bench::{self, GridConfig, Quality};
use dpm::data::{Shapes, Toy2d};
use dpm::guidance::Convention;
use dpm::metrics::{ExtractorConfig, FeatureExtractor, InputRange};
use dpm::model::OnnxModel;
use dpm::runtime::Runtime;
use dpm::{Error, Result};

use super::RtArgs;

/// Feature-extractor options shared by `bench`, `fid` and `report`.
#[derive(Args, Clone)]
pub struct FeatureArgs {
    /// ONNX feature extractor (default: DPM_FID_FEATURES, onnx/models/demo/classifier.onnx,
    /// onnx/models/classifier.onnx).
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// Input side of the extractor in pixels, at most 4096 (default: its fixed size, else the
    /// widest image of the folders compared; the reference workflow's Inception setting is 256).
    #[arg(long)]
    pub feature_size: Option<usize>,
    /// Value range the extractor expects: minus1_1, 0_1 or imagenet.
    #[arg(long, default_value = "minus1_1", value_parser = super::by_name(InputRange::named))]
    pub feature_range: InputRange,
    /// Extractor input name (default: x, else its only input).
    #[arg(long)]
    pub feature_input: Option<String>,
    /// Extractor output name (default: features, else pool, else its only output).
    #[arg(long)]
    pub feature_output: Option<String>,
    /// Images per extractor run.
    #[arg(long, default_value_t = 50)]
    pub feature_batch: usize,
}

impl FeatureArgs {
    /// The extractor path these options name.
    pub fn path(&self) -> PathBuf {
        self.features
            .clone()
            .unwrap_or_else(dpm::metrics::default_extractor_path)
    }

    /// Loads the extractor.
    pub fn load(&self, rt: &Runtime) -> Result<FeatureExtractor> {
        FeatureExtractor::load(
            rt,
            &self.path(),
            ExtractorConfig {
                size: self.feature_size,
                range: self.feature_range,
                input: self.feature_input.clone(),
                output: self.feature_output.clone(),
                batch: self.feature_batch,
            },
        )
    }
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    rt: RtArgs,
    /// The ONNX model (2D: CD; images: FID).
    #[arg(long)]
    model: PathBuf,
    /// Solver presets, comma-separated (adaptive ones run once per --rtol); NAME@SPACING:eta=X
    /// runs a preset on another spacing or stochasticity (e.g. dpm++2m-sde@logsnr,
    /// dpm++2m-sde:eta=1.5).
    #[arg(long, value_delimiter = ',', default_values_t = bench::DEFAULT_SOLVERS.iter().map(|s| s.to_string()))]
    solvers: Vec<String>,
    /// NFE values, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = bench::DEFAULT_NFE.to_vec())]
    nfe: Vec<usize>,
    /// Relative tolerances of the adaptive solvers, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = bench::DEFAULT_ADAPTIVE_RTOL.to_vec())]
    rtol: Vec<f64>,
    /// Guidance numbers, comma-separated (conditional models; default 7.5 there).
    #[arg(long, value_delimiter = ',')]
    guidance: Vec<f64>,
    /// How --guidance is read: ho ((1 + w) cond - w null) or scale (null + s (cond - null)).
    #[arg(long, default_value = "ho", value_parser = super::by_name(Convention::named))]
    convention: Convention,
    /// Baseline SOLVER:NFE run once per guidance value, or "none".
    #[arg(long, default_value = "ddpm:1000")]
    baseline: String,
    /// Samples per cell (default: 2048 for 2D models, 200 for image models).
    #[arg(long)]
    num: Option<usize>,
    /// Samples per model batch (default: all of them for 2D models, 50 for images).
    #[arg(long)]
    batch: Option<usize>,
    /// Seed of the samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// 2D models: the data set of the reference points. Image models: "shapes" (the
    /// synthetic set at the model's resolution) unless --reference-dir is given.
    #[arg(long)]
    reference: Option<String>,
    /// 2D reference: seed of the training set whose normalization the reference shares.
    #[arg(long, default_value_t = 0)]
    data_seed: u64,
    /// 2D reference: size of that training set.
    #[arg(long, default_value_t = 100_000)]
    train_size: usize,
    /// Image models: a flat folder of reference images (e.g. data/afhq/eval).
    #[arg(long)]
    reference_dir: Option<PathBuf>,
    /// Image models: number of synthetic reference images (--reference shapes).
    #[arg(long, default_value_t = 1000)]
    reference_num: usize,
    #[command(flatten)]
    features: FeatureArgs,
    /// Output folder (bench.csv, bench.md, PNG plots).
    #[arg(long, default_value = "out/bench")]
    out: PathBuf,
}

/// Parses `SOLVER:NFE` or `none`.
pub fn parse_baseline(s: &str) -> Result<Option<(String, usize)>> {
    if s == "none" || s.is_empty() {
        return Ok(None);
    }
    let (name, nfe) = s.split_once(':').ok_or_else(|| {
        Error::InvalidArgument(format!("--baseline '{s}': expected SOLVER:NFE or none"))
    })?;
    let nfe = nfe
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("--baseline '{s}': NFE is not a number")))?;
    Ok(Some((name.to_string(), nfe)))
}

/// The FID reference statistics for an image model: a folder, or synthetic shapes at the
/// model's resolution.
pub fn image_reference(
    fx: &mut FeatureExtractor,
    shape: &[usize],
    classes: usize,
    dir: Option<&PathBuf>,
    name: Option<&str>,
    num: usize,
    seed: u64,
) -> Result<(dpm::metrics::GaussianStats, String)> {
    let [c, h, w] = shape else {
        return Err(Error::Shape(format!(
            "FID needs an image model, this one gives {shape:?}"
        )));
    };
    if let Some(d) = dir {
        // Load at the model's resolution, as generated images are, then extract.
        let images = dpm::data::load_flat_folder(d, *h)?;
        let n = images.len() / (3 * h * h);
        let stats = fx.stats(&images, n, 3, *h, *h)?;
        return Ok((stats, format!("{n} images of {} at {h} x {h}", d.display())));
    }
    match name.unwrap_or("shapes") {
        "shapes" => {
            if h != w || *c != 3 {
                return Err(Error::Shape(format!(
                    "the shapes reference is square RGB; the model gives {shape:?}"
                )));
            }
            let set = Shapes::new(*h, classes.max(1))?;
            // A seed apart from the training pool's (seed 0 of the trainer).
            let (images, _) = set.batch(seed ^ 0x5245_4621, 0, num);
            let stats = fx.stats(&images, num, 3, *h, *w)?;
            Ok((stats, format!("{num} synthetic shapes at {h} x {w}")))
        }
        other => Err(Error::InvalidArgument(format!(
            "image reference '{other}': use shapes or --reference-dir DIR"
        ))),
    }
}

pub fn run(a: &BenchArgs) -> Result<()> {
    let rt = a.rt.runtime()?;
    let mut model = OnnxModel::load(&rt, &a.model)?;
    let info = model.info().clone();
    let image = info.sample_shape.len() == 3;
    let num = a.num.unwrap_or(if image { 200 } else { 2048 });
    let mut cfg = GridConfig {
        solvers: a.solvers.clone(),
        nfe: a.nfe.clone(),
        guidance: a.guidance.clone(),
        convention: a.convention,
        adaptive_rtol: a.rtol.clone(),
        baseline: parse_baseline(&a.baseline)?,
        num,
        batch: a.batch.unwrap_or(if image { 50 } else { num }),
        seed: a.seed,
        labels: None,
    };
    if cfg.guidance.is_empty() && info.labels_name.is_some() {
        cfg.guidance = vec![7.5];
    }
    let (mut quality, what) = match info.sample_shape.as_slice() {
        [2] => {
            let set = Toy2d::named(a.reference.as_deref().unwrap_or("swiss_roll"))?;
            (
                Quality::chamfer_toy2d(set, a.train_size, a.data_seed, num)?,
                format!("Chamfer distance to {num} points of {}", set.name()),
            )
        }
        [_, _, _] => {
            let mut fx = a.features.load(&rt)?;
            let (reference, what) = image_reference(
                &mut fx,
                &info.sample_shape,
                info.num_classes.unwrap_or(1),
                a.reference_dir.as_ref(),
                a.reference.as_deref(),
                a.reference_num,
                a.seed,
            )?;
            (
                Quality::Fid {
                    extractor: Box::new(fx),
                    reference,
                },
                format!(
                    "FID against {what} (features: {})",
                    a.features.path().display()
                ),
            )
        }
        s => {
            return Err(Error::Shape(format!(
                "bench: no metric for samples of shape {s:?} (2D points or C x H x W images)"
            )))
        }
    };
    println!(
        "bench {}: {} samples per cell, seed {}; {what}",
        a.model.display(),
        num,
        a.seed
    );
    let metric = quality.name();
    let grid = bench::run(&mut model, &cfg, &mut quality, |c| {
        let g = c.guidance.map(|w| format!(" w {w}")).unwrap_or_default();
        let which = match (c.nfe_asked, c.rtol) {
            (_, Some(r)) => format!("rtol {r}"),
            (Some(n), _) => format!("NFE {n}"),
            _ => String::new(),
        };
        println!(
            "  {:10} {:10}{g}: {} = {:10.4} at {:4} NFE, {:8.3} ms/sample {}",
            c.solver, which, metric, c.value, c.nfe, c.ms_per_sample, c.note
        );
    })?;
    std::fs::create_dir_all(&a.out).map_err(|e| Error::Io {
        path: a.out.clone(),
        source: e,
    })?;
    grid.write_csv(&a.out.join("bench.csv"))?;
    let plots = grid.write_plots(&a.out, &grid.metric.to_lowercase())?;
    let md = format!(
        "# dpm bench\n\nModel `{}`; {what}; {num} samples per cell, seed {}.\n\n{}\nGrid time: {:.1} s.\n",
        a.model.display(),
        a.seed,
        grid.markdown(),
        grid.seconds
    );
    dpm::fsutil::write_atomic(&a.out.join("bench.md"), md.as_bytes())?;
    println!("\n{}", grid.markdown());
    println!(
        "grid: {:.1} s; wrote {}/bench.csv, bench.md, {}",
        grid.seconds,
        a.out.display(),
        plots
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
