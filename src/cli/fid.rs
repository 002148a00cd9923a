//! `dpm fid DIR_A DIR_B`: the FID between two flat folders of images (like the reference's
//! measure_fid.py), with features from an ONNX feature extractor.

use std::path::PathBuf;

use clap::Args;

use dpm::Result;

use super::bench::FeatureArgs;
use super::RtArgs;

#[derive(Args)]
pub struct FidArgs {
    #[command(flatten)]
    rt: RtArgs,
    /// First folder of images (.png/.jpg/.jpeg, e.g. generated samples).
    dir_a: PathBuf,
    /// Second folder (e.g. data/afhq/eval).
    dir_b: PathBuf,
    #[command(flatten)]
    features: FeatureArgs,
}

pub fn run(a: &FidArgs) -> Result<()> {
    let rt = a.rt.runtime()?;
    let mut fx = a.features.load(&rt)?;
    let t0 = std::time::Instant::now();
    // One input size for both folders, whatever their order: the extractor's, else the
    // widest image of either.
    let side = fx.pair_side(&a.dir_a, &a.dir_b)?;
    let sa = fx.folder_stats(&a.dir_a, Some(side))?;
    let sb = fx.folder_stats(&a.dir_b, Some(side))?;
    let p = dpm::metrics::fid_parts(&sa, &sb)?;
    println!(
        "features: {} ({} per image, input {side} x {side}, range {})",
        fx.path().display(),
        sa.dim,
        fx.config().range.name()
    );
    println!("A: {} images in {}", sa.count, a.dir_a.display());
    println!("B: {} images in {}", sb.count, a.dir_b.display());
    println!(
        "|mu_A - mu_B|^2 = {:.6}, Tr(S_A + S_B - 2 sqrtm(S_A S_B)) = {:.6}  [{:.1} s]",
        p.mean_term,
        p.trace_term,
        t0.elapsed().as_secs_f64()
    );
    println!("FID: {:.6}", p.fid);
    Ok(())
}
