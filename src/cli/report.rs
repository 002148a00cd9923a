//! `dpm report`: the reference workflow's deliverables in one Markdown file with its PNGs.
//!
//! Part 1: trains the 2D network on the swiss roll (the reference settings, docs/workflow.md
//! section 7), the loss curve, the Chamfer distance with DPM-Solver-1 and the reference
//! DPM-Solver-2 at 50 NFE, scatter plots, and the NFE-versus-CD grid of `dpm bench` with its plots.
//! Part 2: with an image model (default: the bundled demo model), FID at w = 7.5 with DPM-Solver-1
//! and -2 at 20 NFE on AFHQ when it is there (and the model is a 64 x 64 one), else on the
//! synthetic shapes, with a feature classifier trained on the same data through the training
//! graphs; generated images; optionally the image NFE grid. Reruns reuse the trained networks
//! (checkpoints).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};

use dpm::bench::{self, GridConfig, Quality};
use dpm::data::Shapes;
use dpm::guidance::{Convention, Guidance};
use dpm::metrics::{ExtractorConfig, FeatureExtractor, GaussianStats};
use dpm::model::OnnxModel;
use dpm::runtime::Runtime;
use dpm::solver::SolverConfig;
use dpm::train::data::{DataSource, FolderData, ShapesData};
use dpm::train::{self, TrainConfig};
use dpm::{Error, Result};

use super::bench::FeatureArgs;
use super::{swissroll, RtArgs};

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    rt: RtArgs,
    /// Output folder (report.md and everything it shows).
    #[arg(long, default_value = "out/report")]
    out: PathBuf,
    /// Training steps of the 2D network (the reference workflow: 5000).
    #[arg(long, default_value_t = 5000)]
    steps: u64,
    /// Seed of the runs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train from scratch even where a checkpoint of an earlier report exists.
    #[arg(long)]
    fresh: bool,
    /// Skip the 2D NFE grid.
    #[arg(long)]
    no_grid: bool,
    /// Image model (default: the bundled demo model, onnx/models/demo/unet_small.onnx);
    /// the image part is skipped when it does not exist.
    #[arg(long)]
    image_model: Option<PathBuf>,
    /// Image data: auto (AFHQ when AFHQ/train exists and the model is 64 x 64, else shapes),
    /// afhq or shapes.
    #[arg(long, value_enum, default_value_t = ImageDataArg::Auto)]
    image_data: ImageDataArg,
    /// The AFHQ folder (train/ in the class layout; eval/ flat, or val/ to build it from).
    #[arg(long, default_value = "data/afhq")]
    afhq: PathBuf,
    /// Generated images per solver for FID (the reference workflow: 500).
    #[arg(long, default_value_t = 200)]
    num_images: usize,
    /// Synthetic reference images (shapes).
    #[arg(long, default_value_t = 1000)]
    reference_num: usize,
    /// Solvers of the FID table, at 20 NFE.
    #[arg(long, value_delimiter = ',', default_values_t = ["dpm1".to_string(), "dpm2-ref".to_string()])]
    image_solvers: Vec<String>,
    /// Guidance w (Ho convention) of the FID table.
    #[arg(long, default_value_t = 7.5)]
    guidance: f64,
    /// Training steps of the feature classifier (when --features is not given).
    #[arg(long, default_value_t = 200)]
    classifier_steps: u64,
    /// Also run the image NFE grid (dpm1, dpm2-ref, dpm++2m at 5, 10, 20 NFE; slow on a CPU).
    #[arg(long)]
    image_grid: bool,
    /// Images per cell of the image NFE grid.
    #[arg(long, default_value_t = 64)]
    image_grid_num: usize,
    #[command(flatten)]
    features: FeatureArgs,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.into(),
        source: e,
    }
}

/// A path relative to the report folder, for Markdown links.
fn rel(out: &Path, p: &Path) -> String {
    p.strip_prefix(out)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

pub fn run(a: &ReportArgs) -> Result<()> {
    let t0 = Instant::now();
    let rt = a.rt.runtime()?;
    std::fs::create_dir_all(&a.out).map_err(io(&a.out))?;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# libdpm report\n\nlibdpm {}, ONNX Runtime {} on {}. Reproduce with `dpm report --out {}` \
         (options: `dpm report --help`).\n",
        dpm::VERSION,
        rt.ort_version(),
        rt.provider().name(),
        a.out.display()
    );
    println!("libdpm report into {}", a.out.display());
    part1(a, &rt, &mut md)?;
    let t_images = Instant::now();
    let image_result = part2(a, &rt, &mut md);
    if let Err(e) = &image_result {
        let _ = writeln!(md, "\n**The image part failed:** {e}\n");
    }
    let _ = writeln!(
        md,
        "\n---\nTotal time {:.0} s (image part {:.0} s).",
        t0.elapsed().as_secs_f64(),
        t_images.elapsed().as_secs_f64()
    );
    let report = a.out.join("report.md");
    dpm::fsutil::write_atomic(&report, md.as_bytes())?;
    println!(
        "wrote {} ({:.0} s)",
        report.display(),
        t0.elapsed().as_secs_f64()
    );
    image_result
}

/// Trains (or resumes) into `dir`; a checkpoint of another configuration is an error that
/// says to use --fresh.
fn train_or_resume(
    rt: &Runtime,
    cfg: &TrainConfig,
    data: Box<dyn DataSource>,
    dir: &Path,
    fresh: bool,
) -> Result<train::RunOutcome> {
    if fresh {
        let ck = train::run::checkpoint_path(dir);
        if ck.exists() {
            std::fs::remove_file(&ck).map_err(io(&ck))?;
        }
    }
    let r =
        train::train_to_dir(rt, cfg.clone(), data, dir, true, true, |_, _| false).map_err(|e| {
            match e {
                Error::CheckpointMismatch(m) => Error::CheckpointMismatch(format!(
                    "{m} ({}); run with --fresh to train again",
                    dir.display()
                )),
                e => e,
            }
        })?;
    super::train::write_loss_png(dir, &cfg.network, &r.losses)?;
    Ok(r)
}

/// "trained in X s" or "taken from the checkpoint of an earlier report".
fn run_note(r: &train::RunOutcome) -> String {
    if r.steps_run == 0 {
        "taken from the checkpoint of an earlier report".into()
    } else {
        format!(
            "{} steps trained now in {:.1} s, {:.2} ms/step",
            r.steps_run,
            r.seconds,
            1e3 * r.seconds / r.steps_run as f64
        )
    }
}

fn part1(a: &ReportArgs, rt: &Runtime, md: &mut String) -> Result<()> {
    let t = Instant::now();
    let dir = a.out.join("toy2d");
    println!(
        "part 1: training toy2d on the swiss roll ({} steps)",
        a.steps
    );
    let tr = swissroll::train(a.steps, a.seed, &dir, |cfg, data| {
        train_or_resume(rt, cfg, data, &dir, a.fresh)
    })?;
    let cfg = &tr.cfg;
    let _ = writeln!(
        md,
        "## Part 1: 2D swiss roll\n\nThe TimeLinear MLP trained through libdpm's ONNX training graph with \
         the reference workflow's settings: Adam lr {}, batch {}, {} steps, seed {} ({}; mean \
         loss of the last 100 steps {:.4}). The model samples with the EMA weights \
         (decay {}); the raw final weights are shown too.\n\n![training loss]({})\n",
        cfg.lr,
        cfg.batch,
        cfg.steps,
        cfg.seed,
        run_note(&tr.run),
        tr.tail_loss(),
        cfg.ema_decay,
        rel(&a.out, &dir.join("loss.png"))
    );
    let _ = writeln!(
        md,
        "### Chamfer distance at 50 NFE\n\n2048 samples against 2048 reference points (pass mark: < 40).\n\n\
         | weights | DPM-Solver-1 (`dpm1`) | DPM-Solver-2 (`dpm2-ref`) |\n|---|---:|---:|"
    );
    let mut scatters = Vec::new();
    for (which, path, suffix) in tr.weight_sets() {
        let mut model = OnnxModel::load(rt, &path)?;
        let mut row = format!("| {which} |");
        for (label, name) in [("DPM-Solver-1", "dpm1"), ("DPM-Solver-2", "dpm2-ref")] {
            let c = tr.measure(&mut model, (which, suffix), (label, name, 50))?;
            println!(
                "  {which:9} {label}: CD {:.3} ({:.0} ms)",
                c.cd,
                c.secs * 1e3
            );
            let _ = write!(row, " {:.2} ({}) |", c.cd, swissroll::verdict(c.cd));
            scatters.push((format!("{label}, {which} weights"), c.png));
        }
        let _ = writeln!(md, "{row}");
    }
    let _ = writeln!(md);
    for (what, png) in &scatters {
        let _ = write!(md, "![{what}]({}) ", rel(&a.out, png));
    }
    let _ = writeln!(md, "\n");
    if !a.no_grid {
        let gdir = a.out.join("bench2d");
        let gcfg = GridConfig {
            seed: cfg.seed.wrapping_add(2),
            ..GridConfig::default()
        };
        let mut quality = Quality::Chamfer {
            reference: tr.reference.clone(),
        };
        let mut model = OnnxModel::load(rt, &tr.run.model)?;
        println!("  NFE grid (CD, {} samples per cell)", gcfg.num);
        let grid = bench::run(&mut model, &gcfg, &mut quality, |_| {})?;
        grid.write_csv(&gdir.join("bench.csv"))?;
        let plots = grid.write_plots(&gdir, "cd")?;
        println!("  grid: {:.1} s", grid.seconds);
        let _ = writeln!(
            md,
            "### NFE against quality\n\n`dpm bench` on the EMA model: CD of 2048 samples (same seed for every \
             cell) against the same reference; grid time {:.1} s ([CSV]({})).\n\n{}",
            grid.seconds,
            rel(&a.out, &gdir.join("bench.csv")),
            grid.markdown()
        );
        for p in &plots {
            let _ = write!(md, "![{}]({}) ", rel(&a.out, p), rel(&a.out, p));
        }
        let _ = writeln!(md, "\n");
    }
    let _ = writeln!(md, "Part 1 took {:.0} s.\n", t.elapsed().as_secs_f64());
    Ok(())
}

/// `--image-data`.
#[derive(Clone, Copy, ValueEnum)]
enum ImageDataArg {
    Auto,
    Afhq,
    Shapes,
}

/// Which image data the report uses.
enum ImageData {
    Shapes(Shapes),
    Afhq { train: PathBuf, eval: PathBuf },
}

/// The image part: FID of the image solvers with guidance, sample galleries, and the image
/// NFE grid when asked for.
fn part2(a: &ReportArgs, rt: &Runtime, md: &mut String) -> Result<()> {
    let model_path = a
        .image_model
        .clone()
        .unwrap_or_else(|| train::models_dir().join("demo").join("unet_small.onnx"));
    let _ = writeln!(md, "## Part 2: class-conditional images with guidance\n");
    if !model_path.is_file() {
        let _ = writeln!(
            md,
            "Skipped: no image model at `{}` (pass `--image-model PATH`, e.g. a model exported by \
             `dpm train --preset demo`).\n",
            model_path.display()
        );
        println!("part 2 skipped: no image model at {}", model_path.display());
        return Ok(());
    }
    let mut model = OnnxModel::load(rt, &model_path)?;
    let info = model.info().clone();
    let [c, h, w] = info.sample_shape[..] else {
        return Err(Error::Shape(format!(
            "{} is not an image model (samples {:?})",
            model_path.display(),
            info.sample_shape
        )));
    };
    if c != 3 || h != w {
        return Err(Error::Shape(format!(
            "the report needs square RGB images; {} gives {c} x {h} x {w}",
            model_path.display()
        )));
    }
    let classes = info.num_classes.unwrap_or(1).max(1);
    let data = match a.image_data {
        ImageDataArg::Afhq => afhq_data(a, h)?,
        ImageDataArg::Auto if a.afhq.join("train").is_dir() && h == 64 => afhq_data(a, h)?,
        ImageDataArg::Auto | ImageDataArg::Shapes => ImageData::Shapes(Shapes::new(h, classes)?),
    };
    let data_name = match &data {
        ImageData::Shapes(_) => format!("the synthetic shapes ({classes} classes, {h} x {h})"),
        ImageData::Afhq { train, .. } => format!("AFHQ ({}, {h} x {h})", train.display()),
    };
    println!("part 2: {} on {data_name}", model_path.display());
    let _ = writeln!(
        md,
        "Model `{}` ({c} x {h} x {w}, {classes} classes); data: {data_name}.\n",
        model_path.display()
    );
    let fx_path = feature_extractor(a, rt, &data, h, classes, md)?;
    let mut quality = fid_quality(a, rt, &data, &fx_path, h, classes, md)?;
    let labels = bench::random_labels(a.num_images, classes, a.seed);
    let guidance = Guidance::new(a.guidance, Convention::Ho);
    let shapes = match &data {
        ImageData::Shapes(s) => Some(*s),
        ImageData::Afhq { .. } => None,
    };
    let _ = writeln!(
        md,
        "| solver | NFE | w | FID | ms per image |{}\n|---|---:|---:|---:|---:|{}",
        if shapes.is_some() {
            " shapes recognised as their class |"
        } else {
            ""
        },
        if shapes.is_some() { "---:|" } else { "" }
    );
    let mut galleries = Vec::new();
    for name in &a.image_solvers {
        let (x, secs, nfe) = bench::generate_timed(
            &mut model,
            SolverConfig::named(name, 20)?,
            Some(guidance),
            Some(&labels),
            a.num_images,
            50,
            a.seed,
        )?;
        let fid = quality.measure(&x, &info.sample_shape)?;
        let ms = 1e3 * secs / a.num_images as f64;
        let recognised = match &shapes {
            Some(s) => {
                let got = s.classify_batch(&x)?;
                let ok = got
                    .iter()
                    .zip(&labels)
                    .filter(|(g, &l)| **g == Some(l))
                    .count();
                format!(" {:.1} % |", 100.0 * ok as f64 / a.num_images as f64)
            }
            None => String::new(),
        };
        println!("  {name}: FID {fid:.3} at {nfe} NFE ({ms:.0} ms per image)");
        let _ = writeln!(
            md,
            "| `{name}` | {nfe} | {} | {fid:.3} | {ms:.0} |{recognised}",
            a.guidance
        );
        galleries.push(gallery(a, name, &x, &labels, [c, h, w])?);
    }
    let _ = writeln!(md);
    for (name, grid, dir) in &galleries {
        let _ = writeln!(
            md,
            "`{name}`, 20 NFE, w = {} (first {} images; single files in `{}`):\n\n![{name}]({})\n",
            a.guidance,
            a.num_images.min(64),
            rel(&a.out, dir),
            rel(&a.out, grid)
        );
    }
    if a.image_grid {
        image_grid(a, &mut model, &mut quality, md)?;
    }
    Ok(())
}

/// The feature extractor of the FID: the one given, the bundled classifier for the shapes,
/// or the classifier network trained on this data now. Says which in the report.
fn feature_extractor(
    a: &ReportArgs,
    rt: &Runtime,
    data: &ImageData,
    h: usize,
    classes: usize,
    md: &mut String,
) -> Result<PathBuf> {
    let bundled = train::models_dir().join("demo").join("classifier.onnx");
    if a.features.features.is_some() {
        let _ = writeln!(
            md,
            "Feature extractor: `{}` (given).",
            a.features.path().display()
        );
        return Ok(a.features.path());
    }
    if matches!(data, ImageData::Shapes(_)) && bundled.is_file() {
        let _ = writeln!(
            md,
            "Feature extractor: the bundled classifier trained on the shapes, `{}`: its 256 \
             `features` at {h} x {h}, values in [-1, 1].",
            bundled.display()
        );
        return Ok(bundled);
    }
    let dir = a.out.join("classifier");
    let cfg = TrainConfig {
        network: "classifier".into(),
        data: match data {
            ImageData::Shapes(_) => "shapes".into(),
            ImageData::Afhq { train, .. } => format!("folder:{}", train.display()),
        },
        steps: a.classifier_steps,
        batch: 32,
        lr: 1e-3,
        warmup: 0,
        cfg_dropout: 0.0,
        seed: a.seed,
        ema_decay: 0.0,
        weight_decay: 0.0,
        clip_norm: 0.0,
        checkpoint_every: 0,
        dataset_size: 0,
        arch: None,
    };
    let source: Box<dyn DataSource> = match data {
        ImageData::Shapes(_) => Box::new(ShapesData::new(h, classes, 3000 * classes, a.seed)?),
        ImageData::Afhq { train, .. } => Box::new(FolderData::new(train, h)?),
    };
    println!("  training the feature classifier ({} steps)", cfg.steps);
    let r = train_or_resume(rt, &cfg, source, &dir, a.fresh)?;
    let _ = writeln!(
        md,
        "Feature extractor: the bundled classifier network trained on the same data through its \
         ONNX training graph (Adam lr {}, batch {}, {} steps; {}), its 256 `features` at \
         {h} x {h}, values in [-1, 1].",
        cfg.lr,
        cfg.batch,
        cfg.steps,
        run_note(&r)
    );
    Ok(r.model)
}

/// The FID measure: the extractor at `fx_path` and the reference statistics of the data's
/// reference images; reports the trained classifier's accuracy on them and, for the shapes,
/// the FID floor at this sample size.
fn fid_quality(
    a: &ReportArgs,
    rt: &Runtime,
    data: &ImageData,
    fx_path: &Path,
    h: usize,
    classes: usize,
    md: &mut String,
) -> Result<Quality> {
    let w = h;
    let mut fx = FeatureExtractor::load(
        rt,
        fx_path,
        ExtractorConfig {
            size: a.features.feature_size,
            range: a.features.feature_range,
            input: a.features.feature_input.clone(),
            output: a.features.feature_output.clone(),
            batch: a.features.feature_batch,
        },
    )?;
    let (ref_images, ref_labels, ref_what) = match data {
        ImageData::Shapes(s) => {
            let (x, l) = s.batch(a.seed ^ 0x5245_4621, 0, a.reference_num);
            (x, l, format!("{} fresh synthetic shapes", a.reference_num))
        }
        ImageData::Afhq { eval, .. } => {
            let x = dpm::data::load_flat_folder(eval, h)?;
            (
                x,
                Vec::new(),
                format!("the AFHQ evaluation set `{}`", eval.display()),
            )
        }
    };
    let n_ref = ref_images.len() / (3 * h * w);
    let reference: GaussianStats = fx.stats(&ref_images, n_ref, 3, h, w)?;
    if a.features.features.is_none() && !ref_labels.is_empty() {
        let acc = classifier_accuracy(rt, fx_path, &ref_images, &ref_labels, h)?;
        let _ = writeln!(
            md,
            " Its accuracy on the {n_ref} reference images: {:.1} %.",
            100.0 * acc
        );
    }
    let _ = writeln!(
        md,
        "\nFID reference: {ref_what} ({n_ref} images). Generated: {} images per solver, labels drawn \
         uniformly from 1..={classes}, w = {} (Ho convention: `(1 + w) eps_c - w eps_null`, \
         \"scale {}\" in the other), 20 NFE, the same seed for every solver. FID with few images is \
         biased upwards (the reference workflow uses 500 generated images; \
         `--num-images 500`).\n",
        a.num_images,
        a.guidance,
        1.0 + a.guidance
    );
    // The floor at this sample size: real images against the reference.
    if let ImageData::Shapes(s) = data {
        let (x, _) = s.batch(a.seed ^ 0x464c_4f4f, 0, a.num_images);
        let floor = fx.stats(&x, a.num_images, 3, h, w)?;
        let f = dpm::metrics::fid_from_stats(&floor, &reference)?;
        println!(
            "  FID of {} real shapes against the reference: {f:.3}",
            a.num_images
        );
        let _ = writeln!(
            md,
            "For scale: {} fresh real shapes against the same reference give FID {f:.3} (the \
             floor at this sample size).\n",
            a.num_images
        );
    }
    Ok(Quality::Fid {
        extractor: Box::new(fx),
        reference,
    })
}

/// The trained classifier's own check: the share of the labelled images (labels 1..=K)
/// whose largest logit is their class.
fn classifier_accuracy(
    rt: &Runtime,
    path: &Path,
    images: &[f32],
    labels: &[i64],
    h: usize,
) -> Result<f64> {
    let n = labels.len();
    let mut logits = FeatureExtractor::load(
        rt,
        path,
        ExtractorConfig {
            output: Some("logits".into()),
            ..ExtractorConfig::default()
        },
    )?;
    let lg = logits.features(images, n, 3, h, h)?;
    let k = lg.len() / n.max(1);
    let correct = lg
        .chunks_exact(k.max(1))
        .zip(labels)
        .filter(|(row, &l)| {
            let arg = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                )
                .0;
            arg as i64 + 1 == l
        })
        .count();
    Ok(correct as f64 / n.max(1) as f64)
}

/// A solver's deliverables: 16 single images and a grid of up to 64. Returns (solver, grid,
/// folder of the single images).
fn gallery(
    a: &ReportArgs,
    name: &str,
    x: &[f32],
    labels: &[i64],
    [c, h, w]: [usize; 3],
) -> Result<(String, PathBuf, PathBuf)> {
    let img_dir = a.out.join("images");
    let dir = img_dir.join(name.replace('+', "p"));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    for (i, l) in labels.iter().enumerate().take(16) {
        dpm::imageio::save_png(
            &dir.join(format!("img_{i:03}_label{l}.png")),
            x,
            a.num_images,
            i,
            c,
            h,
            w,
        )?;
    }
    let shown = a.num_images.min(64);
    let grid = img_dir.join(format!("grid_{}.png", name.replace('+', "p")));
    dpm::imageio::save_grid(&grid, &x[..shown * c * h * w], shown, c, h, w, 8)?;
    Ok((name.to_string(), grid, dir))
}

/// The image NFE grid (dpm1, dpm2-ref, dpm++2m at 5, 10, 20 NFE) under the FID measure.
fn image_grid(
    a: &ReportArgs,
    model: &mut OnnxModel,
    quality: &mut Quality,
    md: &mut String,
) -> Result<()> {
    let gcfg = GridConfig {
        solvers: vec!["dpm1".into(), "dpm2-ref".into(), "dpm++2m".into()],
        nfe: vec![5, 10, 20],
        guidance: vec![a.guidance],
        adaptive_rtol: Vec::new(),
        baseline: None,
        num: a.image_grid_num,
        batch: 64,
        seed: a.seed,
        labels: None,
        ..GridConfig::default()
    };
    println!("  image NFE grid ({} images per cell)", gcfg.num);
    let grid = bench::run(model, &gcfg, quality, |c| {
        println!("    {} NFE {}: FID {:.3}", c.solver, c.nfe, c.value)
    })?;
    let gdir = a.out.join("bench_images");
    grid.write_csv(&gdir.join("bench.csv"))?;
    let plots = grid.write_plots(&gdir, "fid")?;
    let _ = writeln!(
        md,
        "### NFE against FID\n\n{} images per cell; grid time {:.0} s.\n\n{}",
        gcfg.num,
        grid.seconds,
        grid.markdown()
    );
    for p in &plots {
        let _ = write!(md, "![{}]({}) ", rel(&a.out, p), rel(&a.out, p));
    }
    let _ = writeln!(md);
    Ok(())
}

/// AFHQ: `train/` in the class layout and the flat evaluation set `eval/` (built from `val/`
/// into the report folder when missing).
fn afhq_data(a: &ReportArgs, h: usize) -> Result<ImageData> {
    let train = a.afhq.join("train");
    if !train.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "no AFHQ training folder {}",
            train.display()
        )));
    }
    let eval = a.afhq.join("eval");
    let eval = if eval.is_dir() {
        eval
    } else {
        let val = a.afhq.join("val");
        let built = a.out.join("afhq_eval");
        let n = dpm::data::build_eval_folder(&val, &built, h)?;
        println!(
            "  built the AFHQ evaluation set: {n} images in {}",
            built.display()
        );
        built
    };
    Ok(ImageData::Afhq { train, eval })
}
