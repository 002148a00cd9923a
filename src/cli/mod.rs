//! Command-line front end (clap): one file per subcommand; each reports libdpm errors.

mod bench;
mod demo;
mod fid;
mod report;
mod sample;
mod swissroll;
mod train;
mod tune;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use dpm::model::OnnxModel;
use dpm::runtime::{ConvSearch, CudaOptions, Provider, Runtime, RuntimeOptions};
use dpm::solver::{SolverConfig, SOLVER_NAMES};
use dpm::Result;

#[derive(Parser)]
#[command(
    name = "dpm",
    version,
    about = "libdpm: fast diffusion sampling (DPM-Solver family, CFG) and training through ONNX Runtime"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The main job: train the 2D network on the swiss roll, sample with DPM-Solver-1 and -2,
    /// print the Chamfer distances and write the plots.
    Demo(demo::DemoArgs),
    /// Train a bundled network through its ONNX training graph.
    Train(train::TrainArgs),
    /// Sample from an ONNX noise-prediction model (CSV + scatter plot, or PNG images + grid).
    Sample(sample::SampleArgs),
    /// Show the ONNX Runtime in use and, optionally, what a model takes and gives.
    Info {
        #[command(flatten)]
        rt: RtArgs,
        /// An ONNX model to inspect.
        #[arg(long)]
        model: Option<PathBuf>,
        /// The schedule to report for it, as `dpm sample --schedule` takes it.
        #[arg(long)]
        schedule: Option<String>,
    },
    /// List the solver presets.
    Solvers,
    /// Tune the step times of one solver at one NFE for a model (a teacher, dynamic
    /// programming over a grid, refinement on the solver's own error); `--save` files them
    /// for `--solver NAME@tuned`.
    TuneSteps(tune::TuneArgs),
    /// Build the reference workflow's flat evaluation folder (docs/workflow.md, section 9):
    /// every image of VAL/*/* resized to 64x64 as PNG in one folder (e.g. --val data/afhq/val
    /// --out data/afhq/eval).
    MakeEval {
        /// The validation root with class sub-folders.
        #[arg(long)]
        val: PathBuf,
        /// The flat output folder.
        #[arg(long)]
        out: PathBuf,
        /// Image size.
        #[arg(long, default_value_t = 64)]
        resolution: usize,
    },
    /// Write a synthetic labelled image folder (shapes x colours, one sub-folder per class) to
    /// train on: `dpm train --network unet --data folder:OUT`.
    MakeData {
        /// Classes (1..=20): circles and squares in five colours for 10, ...
        #[arg(long, default_value_t = 10)]
        classes: usize,
        /// Images in all (labels balanced: every class once per block of `classes`).
        #[arg(long, default_value_t = 1000)]
        num: usize,
        /// Image side.
        #[arg(long, default_value_t = 32)]
        resolution: usize,
        /// 3 (RGB) or 1 (grayscale).
        #[arg(long, default_value_t = 3)]
        channels: usize,
        /// Seed (another seed gives another set: a held-out set).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// NFE-versus-quality grid: solvers x NFE x guidance, CD (2D) or FID (images), wall time;
    /// CSV, Markdown and PNG plots.
    Bench(bench::BenchArgs),
    /// FID between two folders of images, with features from an ONNX feature extractor.
    Fid(fid::FidArgs),
    /// The reference workflow's deliverables in one Markdown report with its PNGs: loss curve,
    /// CD at 50 NFE, scatter plots, NFE-quality plots, FID at w = 7.5, generated images.
    Report(report::ReportArgs),
}

/// A clap value parser from one of the library's name lookups (`Convention::named`,
/// `Spacing::named`, ...): the library keeps the one list of names and aliases (the C ABI and
/// the Rust API take the same names), and clap checks a value when it parses the command line,
/// with the library's message, which lists the names it knows.
fn by_name<T: 'static>(
    lookup: fn(&str) -> Result<T>,
) -> impl Fn(&str) -> std::result::Result<T, String> + Clone + Send + Sync + 'static {
    move |s| lookup(s).map_err(|e| e.to_string())
}

/// ONNX Runtime options shared by the subcommands.
#[derive(Args, Clone)]
pub struct RtArgs {
    /// ONNX Runtime library (default: DPM_ORT_LIB, ORT_DYLIB_PATH, next to the binary, .deps/).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// Execution provider: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = by_name(Provider::named))]
    provider: Provider,
    /// Use the CPU when the asked-for provider is unavailable.
    #[arg(long)]
    cpu_fallback: bool,
    /// Threads per operator (0 = ONNX Runtime's choice); capped to the machine's threads.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Let idle ONNX Runtime threads spin (faster on a dedicated machine).
    #[arg(long)]
    spin: bool,
    /// CUDA provider: TensorFloat-32 convolutions and matrix products (default: ONNX
    /// Runtime's, off). Ignored, with a notice, on the CPU.
    #[arg(long, value_enum)]
    tf32: Option<OnOff>,
    /// CUDA provider: how cuDNN picks convolution algorithms: exhaustive (the default),
    /// heuristic or default. Ignored, with a notice, on the CPU.
    #[arg(long, value_parser = by_name(ConvSearch::named))]
    conv_search: Option<ConvSearch>,
}

/// `on` / `off` for a switch that has a third state, "unset" (the library's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

impl RtArgs {
    /// The CUDA settings the flags ask for.
    fn cuda_options(&self) -> CudaOptions {
        CudaOptions {
            tf32: self.tf32.map(|v| v == OnOff::On),
            conv_search: self.conv_search.unwrap_or_default(),
        }
    }

    fn runtime(&self) -> Result<Runtime> {
        let rt = Runtime::new(&RuntimeOptions {
            library: self.ort_lib.clone(),
            provider: self.provider,
            cpu_fallback: self.cpu_fallback,
            intra_threads: self.threads,
            spinning: self.spin,
        })?
        .with_cuda_options(self.cuda_options());
        // Asked for, but nothing to apply them to (the CPU, or a fallback to it): say so
        // rather than let a timing run believe they were in effect.
        if (self.tf32.is_some() || self.conv_search.is_some()) && !rt.cuda_options_apply() {
            eprintln!(
                "note: --tf32 / --conv-search apply to the CUDA provider only; ignored on {}",
                rt.provider().name()
            );
        }
        Ok(rt)
    }
}

/// Parses the command line and runs it.
pub fn run() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Demo(a) => demo::run(&a),
        Cmd::Train(a) => train::run(&a),
        Cmd::Sample(a) => sample::run(&a),
        Cmd::Info {
            rt,
            model,
            schedule,
        } => info(&rt, model, schedule),
        Cmd::Bench(a) => bench::run(&a),
        Cmd::Fid(a) => fid::run(&a),
        Cmd::Report(a) => report::run(&a),
        Cmd::TuneSteps(a) => tune::run(&a),
        Cmd::MakeEval {
            val,
            out,
            resolution,
        } => {
            let n = dpm::data::build_eval_folder(&val, &out, resolution)?;
            println!("wrote {n} images to {}", out.display());
            Ok(())
        }
        Cmd::MakeData {
            classes,
            num,
            resolution,
            channels,
            seed,
            out,
        } => {
            let set = dpm::data::ShapeColours::new(resolution, classes)?;
            let n = set.write_folder(&out, num, seed, channels)?;
            println!(
                "wrote {n} images of {} classes to {}",
                set.classes(),
                out.display()
            );
            Ok(())
        }
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

fn info(rt: &RtArgs, model: Option<PathBuf>, schedule: Option<String>) -> Result<()> {
    let rt = rt.runtime()?;
    println!("library:  {}", rt.library().display());
    println!("version:  {}", rt.ort_version());
    println!("provider: {}", rt.provider().name());
    if let Some(p) = model {
        let mut m = OnnxModel::load(&rt, &p)?;
        if let Some(spec) = &schedule {
            m.set_schedule(sample::parse_schedule(spec)?);
        }
        let i = m.info();
        let sched = m.schedule()?;
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
        println!(
            "  schedule: {} ({} steps), {}",
            sched.describe(),
            sched.len(),
            m.schedule_source().describe()
        );
        let names = dpm::train::class_names_from_metadata(&i.metadata)?;
        if !names.is_empty() {
            println!(
                "  classes: {} (0 = null; dpm sample --label NAME)",
                class_map_line(&names)
            );
        }
        for (k, v) in &i.metadata {
            println!("  {k} = {v}");
        }
    }
    Ok(())
}

/// `1=name 2=name ...`: a class map as the CLI prints it (labels start at 1; 0 is the null
/// class).
pub fn class_map_line(names: &[String]) -> String {
    names
        .iter()
        .enumerate()
        .map(|(k, n)| format!("{}={n}", k + 1))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt_args(args: &[&str]) -> std::result::Result<RtArgs, clap::Error> {
        let mut argv = vec!["dpm", "info"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.cmd {
            Cmd::Info { rt, .. } => Ok(rt),
            _ => unreachable!("parsed as info"),
        }
    }

    /// `--tf32 on|off` and `--conv-search NAME` become the library's CUDA options; unset flags
    /// keep its defaults; anything else is refused by the parser.
    #[test]
    fn cuda_flags_parse_and_validate() {
        assert!(rt_args(&[]).unwrap().cuda_options().is_default());
        let o = rt_args(&["--tf32", "on", "--conv-search", "heuristic"])
            .unwrap()
            .cuda_options();
        assert_eq!(o.tf32, Some(true));
        assert_eq!(o.conv_search, ConvSearch::Heuristic);
        let o = rt_args(&["--tf32", "off", "--conv-search", "default"])
            .unwrap()
            .cuda_options();
        assert_eq!((o.tf32, o.conv_search), (Some(false), ConvSearch::Default));
        let o = rt_args(&["--conv-search", "exhaustive"])
            .unwrap()
            .cuda_options();
        assert_eq!((o.tf32, o.conv_search), (None, ConvSearch::Exhaustive));
        for bad in [
            &["--tf32", "yes"][..],
            &["--tf32"],
            &["--conv-search", "fastest"],
        ] {
            assert!(rt_args(bad).is_err(), "{bad:?} accepted");
        }
        // The CLI's names are the library's.
        for c in ConvSearch::ALL {
            let o = rt_args(&["--conv-search", c.name()])
                .unwrap()
                .cuda_options();
            assert_eq!(o.conv_search, c);
        }
    }
}
