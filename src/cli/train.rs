//! `dpm train`: a preset, every value overridable; checkpoints, resume, loss log and curve,
//! the exported model.

use std::path::PathBuf;

use clap::Args;

use dpm::train::{self, Arch, MlpArch, TrainConfig, UnetArch};
use dpm::Result;

use super::RtArgs;

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    rt: RtArgs,
    /// Preset: toy2d (swiss roll, the reference workflow part 1), afhq64 (part 2), demo (shapes, small U-Net),
    /// own (a U-Net sized for your images; the default with --network unet).
    #[arg(long)]
    preset: Option<String>,
    /// Network (default: the preset's): toy2d, unet_small, afhq64 (bundled); unet or mlp (any
    /// size, graphs generated for the configuration and cached).
    #[arg(long)]
    network: Option<String>,
    /// Data: a 2D set (swiss_roll, moon, scurve, checkerboard, circle, gaussian_centered,
    /// gaussian_shift), shapes, combos:K (shapes x colours), or folder:PATH (class sub-folders
    /// in sorted order = labels 1..K; a folder of images without them trains unconditionally).
    #[arg(long)]
    data: Option<String>,
    /// unet: image side in pixels (images are resized to it; default 32).
    #[arg(long)]
    resolution: Option<usize>,
    /// unet: 1 (grayscale) or 3 (RGB; default).
    #[arg(long)]
    channels: Option<usize>,
    /// unet: class count (default: the data's class folders; 0 = unconditional).
    #[arg(long)]
    classes: Option<usize>,
    /// unet: base channel count (default 32); mlp: hidden width (default 128).
    #[arg(long)]
    width: Option<usize>,
    /// unet: resolution levels (default 3); mlp: hidden layers (default 3).
    #[arg(long)]
    depth: Option<usize>,
    /// unet: levels with self-attention, e.g. 1 or 1,2 or none (default 1).
    #[arg(long)]
    attention: Option<String>,
    /// unet: ResBlocks per level (default 1).
    #[arg(long)]
    res_blocks: Option<usize>,
    /// unet: dropout rate (default 0.1).
    #[arg(long)]
    dropout: Option<f64>,
    /// Folder of generated graphs (default: DPM_GRAPH_CACHE, else ~/.cache/dpm/graphs).
    #[arg(long)]
    graph_cache: Option<PathBuf>,
    /// Report parameters, memory, the time per step (measured on a few steps) and the ETA,
    /// then stop without training.
    #[arg(long)]
    dry_run: bool,
    /// Steps the dry run times (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    measure_steps: usize,
    /// Optimizer steps.
    #[arg(long)]
    steps: Option<u64>,
    /// Batch size.
    #[arg(long)]
    batch: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Warm-up steps.
    #[arg(long)]
    warmup: Option<u64>,
    /// CFG label dropout probability.
    #[arg(long)]
    cfg_dropout: Option<f64>,
    /// EMA decay (0 = none).
    #[arg(long)]
    ema_decay: Option<f64>,
    /// AdamW weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Gradient clipping by global norm (0 = off).
    #[arg(long)]
    clip_norm: Option<f64>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Checkpoint interval in steps.
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Output folder (checkpoint, loss.csv, loss.png, model/).
    #[arg(long, default_value = "out/train")]
    out: PathBuf,
    /// Continue from OUT/checkpoint.dpm if it exists.
    #[arg(long)]
    resume: bool,
}

/// Parses `--attention`: comma-separated levels, or `none`.
fn parse_levels(s: &str) -> Result<Vec<usize>> {
    if s.trim().eq_ignore_ascii_case("none") || s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|v| {
            v.trim().parse().map_err(|_| {
                dpm::Error::InvalidArgument(format!(
                    "--attention {s}: levels are numbers separated by commas (or none)"
                ))
            })
        })
        .collect()
}

/// The architecture flags, applied to a custom network's architecture.
fn apply_arch(a: &TrainArgs, arch: &mut Arch) -> Result<()> {
    match arch {
        Arch::Unet(u) => {
            macro_rules! set {
                ($($f:ident),*) => { $( if let Some(v) = a.$f { u.$f = v; } )* };
            }
            set!(resolution, channels, width, depth, res_blocks, dropout);
            if let Some(k) = a.classes {
                u.classes = Some(k);
            }
            if let Some(s) = &a.attention {
                u.attention = parse_levels(s)?;
            }
        }
        Arch::Mlp(m) => {
            if let Some(v) = a.width {
                m.width = v;
            }
            if let Some(v) = a.depth {
                m.depth = v;
            }
            let image_only = [
                ("--resolution", a.resolution.is_some()),
                ("--channels", a.channels.is_some()),
                ("--classes", a.classes.is_some()),
                ("--attention", a.attention.is_some()),
                ("--res-blocks", a.res_blocks.is_some()),
                ("--dropout", a.dropout.is_some()),
            ];
            if let Some((flag, _)) = image_only.iter().find(|(_, set)| *set) {
                return Err(dpm::Error::InvalidArgument(format!(
                    "{flag} is a U-Net option; the mlp takes --width and --depth"
                )));
            }
        }
    }
    Ok(())
}

/// The configuration the arguments describe.
pub fn config(a: &TrainArgs) -> Result<TrainConfig> {
    let custom = matches!(a.network.as_deref(), Some("unet" | "mlp"));
    let preset = match (&a.preset, a.network.as_deref()) {
        (Some(p), _) => p.as_str(),
        (None, Some("unet")) => "own",
        _ => "toy2d",
    };
    let mut c = TrainConfig::preset(preset)?;
    if custom {
        let net = a.network.as_deref().unwrap_or_default();
        if c.arch.as_ref().map(Arch::name) != Some(net) {
            c.arch = Some(if net == "unet" {
                Arch::Unet(UnetArch::default())
            } else {
                Arch::Mlp(MlpArch::default())
            });
        }
    } else if a.network.is_some() {
        // A bundled network replaces a preset's custom architecture.
        c.arch = None;
    }
    if let Some(arch) = &mut c.arch {
        apply_arch(a, arch)?;
    } else if [
        a.resolution,
        a.channels,
        a.classes,
        a.width,
        a.depth,
        a.res_blocks,
    ]
    .iter()
    .any(Option::is_some)
        || a.attention.is_some()
        || a.dropout.is_some()
    {
        return Err(dpm::Error::InvalidArgument(format!(
            "network {} is bundled with a fixed architecture; the architecture options \
             (--resolution, --channels, --classes, --width, --depth, ...) need --network unet \
             or --network mlp",
            a.network.as_deref().unwrap_or(&c.network)
        )));
    }
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { c.$f = v; } )* };
    }
    set!(
        network,
        data,
        steps,
        batch,
        lr,
        warmup,
        cfg_dropout,
        ema_decay,
        weight_decay,
        clip_norm,
        seed,
        checkpoint_every
    );
    c.validate()?;
    Ok(c)
}

pub fn run(a: &TrainArgs) -> Result<()> {
    let mut cfg = config(a)?;
    let rt = a.rt.runtime()?;
    let t0 = std::time::Instant::now();
    let p = train::prepare(&mut cfg, a.graph_cache.as_deref())?;
    if cfg.arch.is_some() {
        eprintln!(
            "graphs of {} ({} parameters): {} {}",
            p.manifest.network,
            p.manifest.num_params,
            if p.generated {
                format!("generated in {:.1} s into", t0.elapsed().as_secs_f64())
            } else {
                "cached in".into()
            },
            p.manifest.dir.display()
        );
    }
    let names = p.data.class_names();
    if !names.is_empty() {
        eprintln!(
            "classes (label=name, 0 = null): {}",
            super::class_map_line(&names)
        );
    } else if p.data.num_classes() == 0 && matches!(cfg.arch, Some(Arch::Unet(_))) {
        eprintln!("no class labels: training unconditionally");
    }
    if a.dry_run {
        let r = train::size_report(&rt, &cfg, p.manifest, p.data, a.measure_steps)?;
        println!("{r}");
        return Ok(());
    }
    let r = train::train_to_dir_with(
        &rt,
        cfg.clone(),
        p.manifest,
        p.data,
        &a.out,
        a.resume,
        true,
        |_, _| false,
    )?;
    write_loss_png(&a.out, &cfg.network, &r.losses)?;
    let tail = &r.losses[r.losses.len().saturating_sub(100)..];
    let mean = tail.iter().sum::<f32>() / tail.len().max(1) as f32;
    println!(
        "{} on {}: {} steps ({} in this run) in {:.1} s ({:.2} ms/step); mean loss of the last {} steps {:.4}",
        cfg.network,
        cfg.data,
        r.losses.len(),
        r.steps_run,
        r.seconds,
        1e3 * r.seconds / r.steps_run.max(1) as f64,
        tail.len(),
        mean
    );
    println!(
        "model: {}\nloss:  {}/loss.csv, {}/loss.png\ncheckpoint: {}",
        r.model.display(),
        a.out.display(),
        a.out.display(),
        r.checkpoint.display()
    );
    Ok(())
}

/// Writes `dir/loss.png`, the training loss curve of a run (the library writes loss.csv).
pub fn write_loss_png(dir: &std::path::Path, network: &str, losses: &[f32]) -> Result<()> {
    dpm::plot::loss_curve_png(
        dir.join("loss.png"),
        losses,
        &format!("{network} training loss"),
    )
}
