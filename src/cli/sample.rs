//! `dpm sample`: any solver and NFE of the sampling core on an exported model; 2D models give
//! a CSV and a scatter plot, image models PNG files and a grid.

use std::path::{Path, PathBuf};

use clap::Args;

use dpm::data::Toy2d;
use dpm::generate::Request;
use dpm::guidance::{Convention, Guidance};
use dpm::model::OnnxModel;
use dpm::spacing::Spacing;
use dpm::{Error, Result};

use super::RtArgs;

#[derive(Args)]
pub struct SampleArgs {
    #[command(flatten)]
    rt: RtArgs,
    /// The ONNX model (e.g. OUT/model/toy2d.onnx from `dpm train`).
    #[arg(long)]
    model: PathBuf,
    /// Solver preset (see `dpm solvers`), optionally NAME@SPACING:OPTIONS (e.g.
    /// dpm++2m-sde:eta=1.5, dpm++3m:corrector=bh2); NAME@tuned takes the times `dpm
    /// tune-steps --save` filed next to the model.
    #[arg(long, default_value = "dpm2")]
    solver: String,
    /// Network evaluations per sample.
    #[arg(long, default_value_t = 20)]
    nfe: usize,
    /// Timestep spacing: reference, time_uniform, logsnr, time_quadratic, edm, kl_optimal
    /// (default: the preset's).
    #[arg(long, value_parser = super::by_name(Spacing::named))]
    spacing: Option<Spacing>,
    /// Number of samples.
    #[arg(long, default_value_t = 16)]
    num: usize,
    /// Samples per model batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Seed; sample i of seed s is the same whatever the batch size.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Class label of every sample (conditional models; default: random labels 1..K): a
    /// number, or a class name the model's metadata lists (`dpm info` shows them).
    #[arg(long)]
    label: Option<String>,
    /// Classifier-free guidance number (conditional models).
    #[arg(long)]
    guidance: Option<f64>,
    /// How --guidance is read: ho ((1 + w) cond - w null) or scale (null + s (cond - null)).
    #[arg(long, default_value = "ho", value_parser = super::by_name(Convention::named))]
    convention: Convention,
    /// 2D models: a data set to draw in the scatter plot and to measure the Chamfer distance to.
    #[arg(long)]
    reference: Option<String>,
    /// Output folder.
    #[arg(long, default_value = "out/sample")]
    out: PathBuf,
    /// img2img: an image (PNG/JPEG, resized to the model's resolution) every sample starts
    /// from, noised to the time --strength names.
    #[arg(long)]
    init_image: Option<PathBuf>,
    /// img2img strength in (0, 1]: the run starts at model time strength x (N-1) and takes
    /// --nfe evaluations from there (1 = plain generation; the image is then not used).
    #[arg(long, default_value_t = 1.0)]
    strength: f64,
    /// The noise schedule the model was trained with, when its metadata does not say (a
    /// PyTorch export): linear, scaled_linear or cosine [:N training steps, default 1000], or
    /// betas:FILE / alpha_bar:FILE (one number per line).
    #[arg(long)]
    schedule: Option<String>,
    /// Inpainting mask (an image, resized to the model's resolution; as in diffusers, white =
    /// generate, black = keep --init-image there). Needs --init-image.
    #[arg(long)]
    mask: Option<PathBuf>,
}

/// Writes rows of 2D points as CSV (`x,y`).
pub fn write_points_csv(path: &Path, pts: &[f32]) -> Result<()> {
    let mut s = String::from("x,y\n");
    for p in pts.chunks(2) {
        s.push_str(&format!("{},{}\n", p[0], p[1]));
    }
    dpm::fsutil::write_atomic(path, s.as_bytes())
}

pub fn run(a: &SampleArgs) -> Result<()> {
    let rt = a.rt.runtime()?;
    let mut model = OnnxModel::load(&rt, &a.model)?;
    if let Some(spec) = &a.schedule {
        model.set_schedule(parse_schedule(spec)?);
    }
    let info = model.info().clone();
    let model_dir = a.model.parent().unwrap_or(Path::new("."));
    let mut solver = dpm::tune::parse_spec(&a.solver, a.nfe, model_dir)?;
    if let Some(s) = &a.spacing {
        solver.spacing = s.clone();
    }
    solver.strength = a.strength;
    solver.validate()?;
    if a.strength < 1.0 && a.init_image.is_none() && a.mask.is_none() {
        return Err(Error::InvalidArgument(
            "--strength below 1 starts part-way from an image: give --init-image".into(),
        ));
    }
    if a.num == 0 || a.batch == 0 {
        return Err(Error::InvalidArgument(
            "--num and --batch must be positive".into(),
        ));
    }
    // Sized (and refused when too large) before anything else is allocated for the samples.
    let dim = info.dim();
    let mut out = dpm::generate::output_buffer(a.num, dim)?;
    let labels = match (&info.labels_name, info.num_classes) {
        (Some(_), k) => Some(match &a.label {
            Some(l) => {
                // A number is a label; anything else is a class name from the metadata.
                let l = match l.trim().parse::<i64>() {
                    Ok(v) => v,
                    Err(_) => dpm::train::label_of(&info.metadata, l.trim())?,
                };
                vec![l; a.num]
            }
            None => dpm::bench::random_labels(a.num, k.unwrap_or(1), a.seed),
        }),
        (None, _) => None,
    };
    let guidance = a.guidance.map(|w| Guidance::new(w, a.convention));
    let init = match &a.init_image {
        None => None,
        Some(path) => Some(init_images(path, &info.sample_shape, a.num)?),
    };
    let mask = match (&a.mask, &init) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(Error::InvalidArgument(
                "--mask needs --init-image (the image whose black region is kept)".into(),
            ))
        }
        (Some(path), Some(_)) => {
            let side = info.sample_shape[1];
            let rgb = dpm::data::load_image(path, side)?;
            // Known where the mask is black: 1 - gray, with gray in [0, 1] from channel 0.
            Some(
                rgb[..side * side]
                    .iter()
                    .map(|&v| (1.0 - (v + 1.0) / 2.0).clamp(0.0, 1.0))
                    .collect::<Vec<f32>>(),
            )
        }
    };
    let req = Request {
        solver,
        guidance,
        num: a.num,
        batch: a.batch,
        seed: a.seed,
        first_index: 0,
        labels: labels.as_deref(),
        latents: None,
        // With a mask the image is the known image (and img2img's start when --strength < 1).
        init_image: init.as_deref(),
        known: mask.as_ref().and(init.as_deref()),
        mask: mask.as_deref(),
    };
    let (batch, fixed) = dpm::generate::batch_for(&info, &req)?;
    if fixed && batch != a.batch {
        println!("the model fixes its batch: sampling in batches of {batch}");
    }
    let t0 = std::time::Instant::now();
    model.generate(&req, &mut out, |_| true)?;
    let secs = t0.elapsed().as_secs_f64();
    std::fs::create_dir_all(&a.out).map_err(|e| Error::Io {
        path: a.out.clone(),
        source: e,
    })?;

    let mut written: Vec<String> = Vec::new();
    match info.sample_shape.as_slice() {
        [2] => {
            write_points_csv(&a.out.join("samples.csv"), &out)?;
            written.extend(["samples.csv".into(), "samples.png".into()]);
            let title = format!("{} at {} NFE", a.solver, a.nfe);
            match &a.reference {
                Some(name) => {
                    let set = Toy2d::named(name)?;
                    let reference = set.sample(a.num, a.seed.wrapping_add(1));
                    let cd = dpm::metrics::chamfer_distance(&out, &reference, 2)?;
                    println!(
                        "Chamfer distance to {} ({} vs {} points): {cd:.3}",
                        name, a.num, a.num
                    );
                    dpm::plot::scatter_png(
                        a.out.join("samples.png"),
                        &[
                            (name.as_str(), &reference[..], dpm::plot::Rgb::REFERENCE),
                            ("samples", &out[..], dpm::plot::Rgb::SAMPLES),
                        ],
                        &title,
                    )?;
                }
                None => dpm::plot::scatter_png(
                    a.out.join("samples.png"),
                    &[("samples", &out[..], dpm::plot::Rgb::SAMPLES)],
                    &title,
                )?,
            }
            println!("wrote {}/samples.csv and samples.png", a.out.display());
        }
        [c, h, w] => {
            for i in 0..a.num {
                written.push(format!("img_{i:05}.png"));
                dpm::imageio::save_png(
                    &a.out.join(format!("img_{i:05}.png")),
                    &out,
                    a.num,
                    i,
                    *c,
                    *h,
                    *w,
                )?;
            }
            dpm::imageio::save_grid(&a.out.join("grid.png"), &out, a.num, *c, *h, *w, 8)?;
            written.push("grid.png".into());
            println!("wrote {} images and grid.png to {}", a.num, a.out.display());
        }
        s => println!("samples of shape {s:?}: no writer for that shape; use the library API"),
    }
    let stale = replace_owned_outputs(&a.out, &written)?;
    if stale > 0 {
        println!(
            "removed {stale} file(s) an earlier run wrote to {}",
            a.out.display()
        );
    }
    println!(
        "{:.3} s, {:.2} ms per sample",
        secs,
        1e3 * secs / a.num as f64
    );
    Ok(())
}

/// The list of files the last `dpm sample` wrote into its output folder.
const OWNED_LIST: &str = ".dpm-sample-files";

/// Whether `name` is a file `dpm sample` writes (only such names are ever removed).
fn run_owned(name: &str) -> bool {
    let image = name
        .strip_prefix("img_")
        .and_then(|r| r.strip_suffix(".png"))
        .is_some_and(|i| i.len() >= 5 && i.bytes().all(|b| b.is_ascii_digit()));
    image || matches!(name, "samples.csv" | "samples.png" | "grid.png")
}

/// Makes `dir` hold exactly this run's outputs: removes the files an earlier `dpm sample`
/// wrote there (listed in `.dpm-sample-files`) that this run did not write again, then lists
/// `written`. Files the runs did not write are never touched. Returns how many were removed.
pub fn replace_owned_outputs(dir: &Path, written: &[String]) -> Result<usize> {
    let list = dir.join(OWNED_LIST);
    let previous = std::fs::read_to_string(&list).unwrap_or_default();
    let mut removed = 0;
    for name in previous.lines().filter(|n| run_owned(n)) {
        if written.iter().any(|w| w == name) {
            continue;
        }
        let p = dir.join(name);
        if p.symlink_metadata().is_ok_and(|m| m.is_file()) {
            std::fs::remove_file(&p).map_err(|e| Error::Io { path: p, source: e })?;
            removed += 1;
        }
    }
    dpm::fsutil::write_atomic(&list, (written.join("\n") + "\n").as_bytes())?;
    Ok(removed)
}

/// `num` copies of the image at `path` in model space, for a model of `shape` (C x H x W with
/// square H = W and C = 3, as the bundled image models).
fn init_images(path: &Path, shape: &[usize], num: usize) -> Result<Vec<f32>> {
    let side = match shape {
        [3, h, w] if h == w => *h,
        s => {
            return Err(Error::InvalidArgument(format!(
                "--init-image needs a model of square RGB images (3 x R x R); this one takes {s:?}"
            )))
        }
    };
    let one = dpm::data::load_image(path, side)?;
    let mut v = dpm::generate::output_buffer(num, one.len())?;
    for row in v.chunks_mut(one.len()) {
        row.copy_from_slice(&one);
    }
    Ok(v)
}

/// A schedule from the command line: `NAME[:N]` (linear, scaled_linear, cosine; N training
/// steps, default 1000) or `betas:FILE` / `alpha_bar:FILE` with one number per line.
pub fn parse_schedule(spec: &str) -> Result<dpm::schedule::Schedule> {
    let table = |path: &str| -> Result<Vec<f64>> {
        let bytes = dpm::fsutil::read_regular(Path::new(path), 64 << 20)?;
        String::from_utf8_lossy(&bytes)
            .split_whitespace()
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| Error::InvalidArgument(format!("{path}: '{v}' is not a number")))
            })
            .collect()
    };
    match spec.split_once(':') {
        Some(("betas", path)) => dpm::schedule::Schedule::from_betas(&table(path)?),
        Some(("alpha_bar", path)) => dpm::schedule::Schedule::from_alpha_bar(&table(path)?),
        Some((name, n)) => {
            let n = n.parse::<usize>().map_err(|_| {
                Error::InvalidArgument(format!("--schedule {spec}: '{n}' is not a step count"))
            })?;
            dpm::schedule::named(name, n)
        }
        None => dpm::schedule::named(spec, 1000),
    }
}
