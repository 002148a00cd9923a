//! Command-line front end (clap). Each subcommand lives in its own function and reports
//! errors as libdpm errors.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use dpm::exact::GaussianMixture;
use dpm::guidance::{Convention, Guidance};
use dpm::model::OnnxModel;
use dpm::runtime::{Provider, Runtime, RuntimeOptions};
use dpm::sampler::{SampleIds, Sampler};
use dpm::schedule::Schedule;
use dpm::solver::{SolverConfig, SOLVER_NAMES};
use dpm::spacing::Spacing;
use dpm::{Error, Result};

#[derive(Parser)]
#[command(
    name = "dpm",
    version,
    about = "libdpm: fast diffusion sampling (DPM-Solver family, CFG) through ONNX Runtime"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The main job at this stage: every solver against the exact ODE solution of a Gaussian
    /// mixture, and a check that ONNX Runtime loads.
    Demo,
    /// Show the ONNX Runtime in use and, optionally, what a model takes and gives.
    Info {
        #[command(flatten)]
        rt: RtArgs,
        /// An ONNX model to inspect.
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Sample from an ONNX noise-prediction model; writes one sample per CSV line.
    Sample(SampleArgs),
    /// List the solver presets.
    Solvers,
}

#[derive(Args)]
struct RtArgs {
    /// ONNX Runtime library (default: DPM_ORT_LIB, ORT_DYLIB_PATH, next to the binary, .deps/).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// Execution provider: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    provider: String,
    /// Use the CPU when the asked-for provider is unavailable.
    #[arg(long)]
    cpu_fallback: bool,
    /// Threads per operator (0 = ONNX Runtime's choice).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

impl RtArgs {
    fn runtime(&self) -> Result<Runtime> {
        Runtime::new(&RuntimeOptions {
            library: self.ort_lib.clone(),
            provider: Provider::named(&self.provider)?,
            cpu_fallback: self.cpu_fallback,
            intra_threads: self.threads,
        })
    }
}

#[derive(Args)]
struct SampleArgs {
    #[command(flatten)]
    rt: RtArgs,
    /// The ONNX model.
    #[arg(long)]
    model: PathBuf,
    /// Solver preset (see `dpm solvers`).
    #[arg(long, default_value = "dpm2")]
    solver: String,
    /// Network evaluations per sample.
    #[arg(long, default_value_t = 20)]
    nfe: usize,
    /// Timestep spacing: reference, time_uniform, logsnr, time_quadratic (default: the preset's).
    #[arg(long)]
    spacing: Option<String>,
    /// Number of samples.
    #[arg(long, default_value_t = 16)]
    num: usize,
    /// Samples per model batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Seed; sample i of seed s is the same whatever the batch size.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Class label for every sample (conditional models; 0 = null class).
    #[arg(long)]
    label: Option<i64>,
    /// Classifier-free guidance number (needs --label).
    #[arg(long)]
    guidance: Option<f64>,
    /// How --guidance is read: ho ((1 + w) cond - w null) or scale (null + s (cond - null)).
    #[arg(long, default_value = "ho")]
    convention: String,
    /// Output CSV file.
    #[arg(long, default_value = "samples.csv")]
    out: PathBuf,
}

/// Parses the command line and runs it.
pub fn run() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Demo => demo(),
        Cmd::Info { rt, model } => info(&rt, model),
        Cmd::Sample(a) => sample(&a),
        Cmd::Solvers => {
            for n in SOLVER_NAMES {
                let c = SolverConfig::named(n, 20)?;
                println!(
                    "{n:12} {:?} {:?} order {} spacing {}",
                    c.algorithm,
                    c.method,
                    c.order,
                    c.spacing.name()
                );
            }
            Ok(())
        }
    }
}

fn demo() -> Result<()> {
    let gmm = GaussianMixture::standard();
    let sched = Schedule::reference();
    let rows = 256;
    let ids = SampleIds::range(0, 0, rows);
    let mut x_t = vec![0f32; rows * gmm.dim];
    dpm::rng::fill_normal_rows(0, 0, 0, gmm.dim, &mut x_t);
    println!(
        "libdpm {}: solvers against the exact probability-flow ODE on a 2D Gaussian mixture",
        dpm::VERSION
    );
    println!("(median distance to the exact solution over {rows} samples; lower is better)\n");
    let exact = gmm.exact_rows(&sched, &x_t);
    let nfes = [10usize, 20, 50];
    print!("{:12}", "solver");
    for n in nfes {
        print!("{:>12}", format!("NFE {n}"));
    }
    println!();
    for name in [
        "ddim", "dpm1", "dpm2-ref", "dpm2", "dpm3", "dpm++2s", "dpm++2m", "dpm++3m",
    ] {
        print!("{name:12}");
        for nfe in nfes {
            if name == "dpm2-ref" && nfe % 2 == 1 {
                print!("{:>12}", "-");
                continue;
            }
            let cfg = SolverConfig::named(name, nfe)?;
            let mut s = Sampler::new(cfg, &sched, gmm.dim, &ids, None, None)?;
            s.run(|x, t, _, out| {
                gmm.model(&sched, x, t, out);
                Ok(())
            })?;
            let mut e: Vec<f64> = s
                .x()
                .chunks(gmm.dim)
                .zip(&exact)
                .map(|(a, b)| {
                    a.iter()
                        .zip(b)
                        .map(|(&p, &q)| (f64::from(p) - q).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .collect();
            e.sort_by(f64::total_cmp);
            print!("{:>12.2e}", e[e.len() / 2]);
        }
        println!();
    }
    match Runtime::new(&RuntimeOptions::default()) {
        Ok(rt) => println!(
            "\nONNX Runtime: {} ({})",
            rt.library().display(),
            rt.ort_version()
        ),
        Err(e) => println!("\nONNX Runtime not available: {e}"),
    }
    Ok(())
}

fn info(rt: &RtArgs, model: Option<PathBuf>) -> Result<()> {
    let rt = rt.runtime()?;
    println!("library:  {}", rt.library().display());
    println!("version:  {}", rt.ort_version());
    println!("provider: {}", rt.provider().name());
    if let Some(p) = model {
        let m = OnnxModel::load(&rt, &p)?;
        let i = m.info();
        println!("model:    {}", p.display());
        println!("  x:      {} {:?} per sample", i.x_name, i.sample_shape);
        println!(
            "  t:      {} {:?}{}",
            i.t_name,
            i.t_type,
            if i.t_broadcast {
                " (one value per batch)"
            } else {
                ""
            }
        );
        println!("  labels: {}", i.labels_name.as_deref().unwrap_or("-"));
        println!("  output: {} ({})", i.out_name, i.prediction.name());
        for (k, v) in &i.metadata {
            println!("  {k} = {v}");
        }
    }
    Ok(())
}

fn sample(a: &SampleArgs) -> Result<()> {
    let rt = a.rt.runtime()?;
    let mut model = OnnxModel::load(&rt, &a.model)?;
    let mut cfg = SolverConfig::named(&a.solver, a.nfe)?;
    cfg.prediction = model.info().prediction;
    if let Some(s) = &a.spacing {
        cfg.spacing = Spacing::named(s)?;
    }
    let sched = model.info().schedule()?;
    let guidance = match a.guidance {
        Some(w) => Some(Guidance {
            scale: w,
            convention: Convention::named(&a.convention)?,
            null_label: 0,
        }),
        None => None,
    };
    if a.batch == 0 || a.num == 0 {
        return Err(Error::InvalidArgument(
            "--num and --batch must be positive".into(),
        ));
    }
    let dim = model.info().dim();
    let file = std::fs::File::create(&a.out).map_err(|e| Error::Io {
        path: a.out.clone(),
        source: e,
    })?;
    let mut w = std::io::BufWriter::new(file);
    let io = |e| Error::Io {
        path: a.out.clone(),
        source: e,
    };
    let mut first = 0usize;
    while first < a.num {
        let rows = a.batch.min(a.num - first);
        let ids = SampleIds::range(a.seed, first as u64, rows);
        let labels = a.label.map(|l| vec![l; rows]);
        let mut s = Sampler::new(cfg.clone(), &sched, dim, &ids, labels.as_deref(), guidance)?;
        model.sample(&mut s, |_| true)?;
        for row in s.x().chunks(dim) {
            let line: Vec<String> = row.iter().map(|v| v.to_string()).collect();
            writeln!(w, "{}", line.join(",")).map_err(io)?;
        }
        first += rows;
    }
    w.flush().map_err(io)?;
    eprintln!("wrote {} samples to {}", a.num, a.out.display());
    Ok(())
}
