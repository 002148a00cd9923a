//! Training through the ONNX training-step graph: loss falls, resume is exact, checkpoints
//! refuse corruption, and the exported model samples.

mod common;

use dpm::data::Toy2d;
use dpm::runtime::{Runtime, RuntimeOptions};
use dpm::train::{Manifest, Points, TrainConfig, Trainer};

fn rt() -> Runtime {
    Runtime::new(&RuntimeOptions::default()).expect("ONNX Runtime (run ./scripts/setup)")
}

fn trainer(cfg: &TrainConfig) -> Trainer {
    let m = Manifest::load(&dpm::train::models_dir(), &cfg.network).unwrap();
    let data = Points::new(Toy2d::SwissRoll, 10_000, cfg.seed).unwrap();
    Trainer::new(&rt(), cfg.clone(), m, Box::new(data)).unwrap()
}

#[test]
fn loss_falls() {
    let mut cfg = TrainConfig::preset("toy2d").unwrap();
    cfg.steps = 300;
    let mut tr = trainer(&cfg);
    let t0 = std::time::Instant::now();
    for _ in 0..300 {
        tr.train_step().unwrap();
    }
    let l = tr.losses();
    let first: f32 = l[..20].iter().sum::<f32>() / 20.0;
    let last: f32 = l[280..].iter().sum::<f32>() / 20.0;
    println!(
        "first {first} last {last} ({:.2} ms/step)",
        t0.elapsed().as_secs_f64() * 1e3 / 300.0
    );
    assert!(last < 0.8 * first, "loss did not fall: {first} -> {last}");
}

#[test]
fn every_2d_set_trains() {
    for set in Toy2d::ALL {
        let mut cfg = TrainConfig::preset("toy2d").unwrap();
        cfg.data = set.name().into();
        cfg.ema_decay = 0.0;
        let m = Manifest::load(&dpm::train::models_dir(), "toy2d").unwrap();
        let data = Points::new(set, 5000, 1).unwrap();
        let mut tr = Trainer::new(&rt(), cfg, m, Box::new(data)).unwrap();
        for _ in 0..200 {
            tr.train_step().unwrap();
        }
        let l = tr.losses();
        let first: f32 = l[..20].iter().sum::<f32>() / 20.0;
        let last: f32 = l[180..].iter().sum::<f32>() / 20.0;
        assert!(last < 0.9 * first, "{}: loss {first} -> {last}", set.name());
    }
}

/// A run stopped and resumed from its checkpoint ends bit-identical to an uninterrupted one.
#[test]
fn resume_is_exact() {
    let mut cfg = TrainConfig::preset("toy2d").unwrap();
    cfg.steps = 60;
    cfg.checkpoint_every = 25;
    let dir = std::env::temp_dir().join(format!("dpm-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = rt();
    let open = |c: &TrainConfig| {
        dpm::train::data::open(
            c,
            &Manifest::load(&dpm::train::models_dir(), &c.network).unwrap(),
        )
        .unwrap()
    };
    // Uninterrupted.
    let a = dpm::train::train_to_dir(
        &rt,
        cfg.clone(),
        open(&cfg),
        &dir.join("a"),
        false,
        false,
        |_, _| false,
    )
    .unwrap();
    // Stopped at step 37 (a checkpoint is saved then), resumed.
    let b_dir = dir.join("b");
    let stopped = dpm::train::train_to_dir(
        &rt,
        cfg.clone(),
        open(&cfg),
        &b_dir,
        false,
        false,
        |k, _| k == 37,
    );
    assert!(matches!(stopped, Err(dpm::Error::Cancelled)));
    let b = dpm::train::train_to_dir(&rt, cfg.clone(), open(&cfg), &b_dir, true, false, |_, _| {
        false
    })
    .unwrap();
    assert_eq!(b.steps_run, 60 - 37);
    assert_eq!(a.losses, b.losses);
    let ca = dpm::train::Checkpoint::load(&a.checkpoint).unwrap();
    let cb = dpm::train::Checkpoint::load(&b.checkpoint).unwrap();
    assert_eq!(
        ca.state, cb.state,
        "parameters, moments and EMA are bit-identical"
    );
    assert_eq!(
        std::fs::read(
            a.model
                .with_extension("weights.bin")
                .with_file_name("toy2d.weights.bin")
        )
        .unwrap(),
        std::fs::read(b.model.with_file_name("toy2d.weights.bin")).unwrap()
    );
    // A different configuration is refused on resume.
    let mut other = cfg.clone();
    other.lr = 5e-4;
    assert!(dpm::train::train_to_dir(
        &rt,
        other.clone(),
        open(&other),
        &b_dir,
        true,
        false,
        |_, _| false
    )
    .is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Truncated or damaged checkpoints are refused with a clear error; nothing is overwritten.
#[test]
fn corrupt_checkpoints_are_refused() {
    let mut cfg = TrainConfig::preset("toy2d").unwrap();
    cfg.steps = 5;
    let mut tr = trainer(&cfg);
    tr.train_step().unwrap();
    let c = tr.checkpoint().unwrap();
    let bytes = c.to_bytes().unwrap();
    let p = std::path::Path::new("ckpt");
    assert_eq!(dpm::train::Checkpoint::from_bytes(&bytes, p).unwrap(), c);
    for cut in [0, 7, 20, bytes.len() / 2, bytes.len() - 1] {
        let e = dpm::train::Checkpoint::from_bytes(&bytes[..cut], p).unwrap_err();
        assert!(
            e.to_string().contains("not a valid libdpm checkpoint"),
            "{e}"
        );
    }
    for pos in [3, 12, 40, bytes.len() / 2, bytes.len() - 2] {
        let mut b = bytes.clone();
        b[pos] ^= 0x40;
        assert!(
            dpm::train::Checkpoint::from_bytes(&b, p).is_err(),
            "flip at {pos} accepted"
        );
    }
    // Restoring a checkpoint into a trainer of another configuration fails before changing it.
    let mut other = cfg.clone();
    other.batch = 64;
    let mut tr2 = trainer(&other);
    assert!(tr2.restore(&c).is_err());
    assert_eq!(tr2.step(), 0);
}

/// A step whose loss is not finite stops training with an error naming the step; the state
/// and the last checkpoint stay as they were before that step.
#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    let mut cfg = TrainConfig::preset("toy2d").unwrap();
    // A learning rate that blows the weights up within a few steps.
    cfg.lr = 1e15;
    cfg.warmup = 0;
    cfg.ema_decay = 0.0;
    cfg.steps = 50;
    cfg.checkpoint_every = 1;
    let dir = std::env::temp_dir().join(format!("dpm-nonfinite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let m = Manifest::load(&dpm::train::models_dir(), "toy2d").unwrap();
    let data = dpm::train::data::open(&cfg, &m).unwrap();
    let err = dpm::train::train_to_dir(&rt(), cfg, data, &dir, false, false, |_, _| false)
        .expect_err("the loss must become non-finite");
    let msg = err.to_string();
    let dpm::Error::NonFinite { step, kind, .. } = err else {
        panic!("expected a non-finite error, got {err}");
    };
    // Named as a training loss, not as a model output (issue 14, item 5).
    assert_eq!(kind, dpm::NonFiniteSource::TrainingLoss);
    assert!(
        msg.contains("training loss") && msg.contains("learning rate"),
        "{msg}"
    );
    let c = dpm::train::Checkpoint::load(&dir.join("checkpoint.dpm"))
        .expect("the last good checkpoint is intact");
    assert_eq!(
        c.header.step as usize,
        step - 1,
        "checkpoint of the step before"
    );
    assert!(c.losses.iter().all(|l| l.is_finite()));
    assert!(c.state.iter().flatten().all(|v| v.is_finite()));
    assert!(
        !dir.join("model").exists(),
        "nothing exported from a failed run"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The trainer noises its batches with the network's own schedule (the manifest's
/// `dpm.schedule` metadata), the one its exported model samples with, not a fixed one.
#[test]
fn trainer_noises_with_the_manifest_schedule() {
    use dpm::schedule::Schedule;
    let src = dpm::train::models_dir();
    let dir = std::env::temp_dir().join(format!("dpm_manifest_schedule_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "toy2d.onnx",
        "toy2d.train.onnx",
        "toy2d.train_ema.onnx",
        "toy2d.weights.bin",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let text = std::fs::read_to_string(src.join("toy2d.json")).unwrap();
    let edited = text.replace("\"dpm.beta_end\": \"0.02\"", "\"dpm.beta_end\": \"0.012\"");
    assert_ne!(edited, text, "manifest metadata layout changed");
    std::fs::write(dir.join("toy2d.json"), edited).unwrap();
    let m = Manifest::load(&dir, "toy2d").unwrap();
    let want = Schedule::linear(1e-4, 0.012, 1000).unwrap();
    let cfg = TrainConfig::preset("toy2d").unwrap();
    let data = Points::new(Toy2d::SwissRoll, 1000, 0).unwrap();
    let mut tr = Trainer::new(&rt(), cfg, m, Box::new(data)).unwrap();
    assert_eq!(tr.schedule().alpha_bar_table(), want.alpha_bar_table());
    // Observable in the loss: it is the MSE of the network on x_t noised with that schedule.
    // (A partly trained network, whose output depends on x_t, tells the schedules apart.)
    for _ in 0..300 {
        tr.train_step().unwrap();
    }
    let b = tr.draw_batch(301).unwrap();
    let exported =
        dpm::train::export_model(tr.manifest(), &tr.raw_params().unwrap(), &dir.join("now"));
    let mut model = dpm::model::OnnxModel::load(&rt(), &exported.unwrap()).unwrap();
    let own = common::eps_mse(&mut model, &want, &b);
    let reference = common::eps_mse(&mut model, &Schedule::reference(), &b);
    let loss = tr.train_step_on(&b).unwrap() as f64;
    assert!((loss - own).abs() <= 1e-5 * own, "loss {loss}, MSE {own}");
    // ... which the reference schedule's x_t would not give (well outside that tolerance).
    assert!((own - reference).abs() > 1e-4 * own, "{own} vs {reference}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_checkpoint_of_another_configuration_is_a_mismatch_not_any_error() {
    // Callers (`dpm report`) offer to start afresh on exactly this error, so it is its own
    // variant rather than a message to match.
    let mut cfg = TrainConfig::preset("toy2d").unwrap();
    cfg.steps = 3;
    let mut a = trainer(&cfg);
    a.train_step().unwrap();
    let ck = a.checkpoint().unwrap();
    let mut other = cfg.clone();
    other.lr = 5e-4;
    let mut b = trainer(&other);
    let e = b.restore(&ck).unwrap_err();
    assert!(
        matches!(e, dpm::Error::CheckpointMismatch(_)),
        "{e:?} is not a checkpoint mismatch"
    );
    assert!(e.to_string().contains("different configuration"), "{e}");
    // The same configuration resumes.
    trainer(&cfg).restore(&ck).unwrap();
}
