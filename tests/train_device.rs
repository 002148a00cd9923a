//! Device-resident training state (docs/training.md, "Where the state lives"): the state stays
//! in the provider's memory between steps and comes down to the host only when asked. With the
//! CPU provider the device path runs the same code as on a GPU (device allocator, state bound
//! once, ONNX Runtime's copy for reading and writing it), so these tests pin its behaviour:
//! bit-identical to the host-state path, exact round trips and resumes, checkpoints at their
//! interval, and a failed step or restore that leaves the state alone.

use dpm::runtime::{Runtime, RuntimeOptions};
use dpm::train::{Manifest, StatePlacement, TrainConfig, Trainer};

fn rt() -> Runtime {
    Runtime::new(&RuntimeOptions::default()).expect("ONNX Runtime (run ./scripts/setup)")
}

fn toy(cfg: &TrainConfig, placement: StatePlacement) -> Trainer {
    // The data as `dpm train` opens it, so a run here equals a train_to_dir run.
    let m = Manifest::load(&dpm::train::models_dir(), &cfg.network).unwrap();
    let data = dpm::train::data::open(cfg, &m).unwrap();
    Trainer::with_placement(&rt(), cfg.clone(), m, data, placement).unwrap()
}

fn toy_cfg(steps: u64) -> TrainConfig {
    let mut cfg = TrainConfig::preset("toy2d").unwrap();
    cfg.steps = steps;
    cfg.warmup = 10; // the learning rate changes from step to step: lr is re-bound each step
    cfg
}

/// The device path trains bit for bit like the host-state path (the scheme it replaced), every
/// state set (parameters, both moments, EMA) and every loss, on the MLP and on a class-
/// conditional U-Net with label dropout.
#[test]
fn device_state_trains_bit_identical_to_host_state() {
    let cfg = toy_cfg(40);
    let mut dev = toy(&cfg, StatePlacement::Device);
    let mut host = toy(&cfg, StatePlacement::Host);
    for _ in 0..40 {
        dev.train_step().unwrap();
        host.train_step().unwrap();
    }
    assert_eq!(dev.losses(), host.losses());
    assert_eq!(dev.state().unwrap(), host.state().unwrap());
    assert_eq!(dev.export_params().unwrap(), host.export_params().unwrap());
    assert_eq!(dev.state().unwrap().len(), 4, "params, m, v, EMA");

    let mut cfg = TrainConfig::preset("demo").unwrap();
    cfg.batch = 4;
    cfg.steps = 3;
    let m = Manifest::load(&dpm::train::models_dir(), &cfg.network).unwrap();
    let run = |placement| {
        let data = dpm::train::data::open(&cfg, &m).unwrap();
        let mut tr =
            Trainer::with_placement(&rt(), cfg.clone(), m.clone(), data, placement).unwrap();
        for _ in 0..3 {
            tr.train_step().unwrap();
        }
        (tr.losses().to_vec(), tr.state().unwrap())
    };
    assert_eq!(run(StatePlacement::Device), run(StatePlacement::Host));
}

/// The trainer says where its state lives, as ONNX Runtime reports it for the state tensors.
#[test]
fn state_device_reports_the_placement() {
    let cfg = toy_cfg(2);
    let d = toy(&cfg, StatePlacement::Device).state_device();
    assert_eq!(d.placement, StatePlacement::Device);
    assert_eq!((d.device.as_str(), d.device_id), ("Cpu", 0), "{d:?}");
    assert!(d.cpu_accessible);
    let h = toy(&cfg, StatePlacement::Host).state_device();
    assert_eq!(h.placement, StatePlacement::Host);
    assert_eq!(h.device, "Cpu");
    assert_eq!(StatePlacement::default(), StatePlacement::Device);
    for p in [StatePlacement::Device, StatePlacement::Host] {
        assert_eq!(StatePlacement::named(p.name()).unwrap(), p);
    }
}

/// What goes up comes down unchanged: a state written into the device tensors (restore) reads
/// back bit for bit, including values no training step would produce (signed zeros,
/// subnormals, extremes), and the next step starts from it.
#[test]
fn state_round_trips_through_the_device() {
    let cfg = toy_cfg(5);
    let mut tr = toy(&cfg, StatePlacement::Device);
    tr.train_step().unwrap();
    let mut ck = tr.checkpoint().unwrap();
    let specials = [
        -0.0f32,
        f32::MIN_POSITIVE / 3.0,
        f32::MAX,
        -f32::MAX,
        1.0 + f32::EPSILON,
    ];
    for (s, set) in ck.state.iter_mut().enumerate() {
        for (i, v) in set.iter_mut().enumerate() {
            if i % 7 == s {
                *v = specials[i % specials.len()];
            }
        }
    }
    let mut fresh = toy(&cfg, StatePlacement::Device);
    fresh.restore(&ck).unwrap();
    let back = fresh.state().unwrap();
    let bits = |s: &[Vec<f32>]| -> Vec<Vec<u32>> {
        s.iter()
            .map(|v| v.iter().map(|x| x.to_bits()).collect())
            .collect()
    };
    assert_eq!(bits(&back), bits(&ck.state));
    assert_eq!(fresh.raw_params().unwrap(), ck.state[0]);
    assert_eq!(fresh.step(), 1);
}

/// A run checkpointed and resumed on the device path ends bit-identical to one never stopped,
/// and a checkpoint moves between placements unchanged (resume on a GPU from a CPU run, and
/// back).
#[test]
fn resume_on_the_device_is_bit_identical() {
    let cfg = toy_cfg(20);
    let mut whole = toy(&cfg, StatePlacement::Device);
    for _ in 0..20 {
        whole.train_step().unwrap();
    }
    for (first, second) in [
        (StatePlacement::Device, StatePlacement::Device),
        (StatePlacement::Host, StatePlacement::Device),
        (StatePlacement::Device, StatePlacement::Host),
    ] {
        let mut a = toy(&cfg, first);
        for _ in 0..8 {
            a.train_step().unwrap();
        }
        let ck = a.checkpoint().unwrap();
        let bytes = ck.to_bytes().unwrap();
        let ck = dpm::train::Checkpoint::from_bytes(&bytes, std::path::Path::new("ck")).unwrap();
        let mut b = toy(&cfg, second);
        b.restore(&ck).unwrap();
        for _ in 8..20 {
            b.train_step().unwrap();
        }
        assert_eq!(b.losses(), whole.losses(), "{first:?} -> {second:?}");
        assert_eq!(
            b.state().unwrap(),
            whole.state().unwrap(),
            "{first:?} -> {second:?}"
        );
    }
}

/// Checkpoints copy the state down at their interval: each one written by the training loop
/// holds exactly the state of its step, and reading the state between steps (a copy down every
/// step) does not disturb the run.
#[test]
fn checkpoints_copy_the_state_at_their_interval() {
    let mut cfg = toy_cfg(12);
    cfg.checkpoint_every = 5;
    let dir = std::env::temp_dir().join(format!("dpm-train-device-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let m = Manifest::load(&dpm::train::models_dir(), "toy2d").unwrap();
    let mut reference = toy(&cfg, StatePlacement::Device);
    let mut at = std::collections::BTreeMap::new();
    for k in 1..=12u64 {
        reference.train_step().unwrap();
        // A copy down after every step: must not change what the next step computes.
        at.insert(k, reference.state().unwrap());
    }
    let ckpt = dir.join("checkpoint.dpm");
    let mut seen = Vec::new();
    // The stop callback runs after the loop's interval checkpoint of that step is written.
    let r = dpm::train::train_to_dir(
        &rt(),
        cfg.clone(),
        dpm::train::data::open(&cfg, &m).unwrap(),
        &dir,
        false,
        false,
        |k, _| {
            if k % 5 == 0 {
                let c = dpm::train::Checkpoint::load(&ckpt).unwrap();
                seen.push((k, c.header.step, c.state == at[&k]));
            }
            false
        },
    )
    .unwrap();
    assert_eq!(seen, vec![(5, 5, true), (10, 10, true)]);
    let last = dpm::train::Checkpoint::load(&r.checkpoint).unwrap();
    assert_eq!(last.header.step, 12);
    assert_eq!(last.state, at[&12]);
    assert_eq!(last.losses, reference.losses());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Failures leave the device state as it was: a restore with a malformed state (checked in
/// full before anything is written), and a step whose loss is not finite.
#[test]
fn errors_leave_the_device_state_alone() {
    let cfg = toy_cfg(50);
    let mut tr = toy(&cfg, StatePlacement::Device);
    for _ in 0..3 {
        tr.train_step().unwrap();
    }
    let before = tr.state().unwrap();
    let mut bad = tr.checkpoint().unwrap();
    for v in &mut bad.state[0] {
        *v += 1.0;
    }
    bad.state[2].pop();
    let e = tr.restore(&bad).unwrap_err();
    assert!(matches!(e, dpm::Error::Shape(_)), "{e:?}");
    assert_eq!(
        tr.state().unwrap(),
        before,
        "a refused restore wrote nothing"
    );
    assert_eq!(tr.step(), 3);
    let mut wrong_sets = tr.checkpoint().unwrap();
    wrong_sets.state.pop();
    assert!(tr.restore(&wrong_sets).is_err());
    assert_eq!(tr.state().unwrap(), before);

    // A learning rate that makes the loss non-finite within a few steps.
    let mut cfg = toy_cfg(50);
    cfg.lr = 1e15;
    cfg.warmup = 0;
    let mut tr = toy(&cfg, StatePlacement::Device);
    let mut last_good = tr.state().unwrap();
    let err = loop {
        match tr.train_step() {
            Ok(_) => last_good = tr.state().unwrap(),
            Err(e) => break e,
        }
        assert!(tr.step() < 50, "the loss never became non-finite");
    };
    assert!(matches!(err, dpm::Error::NonFinite { .. }), "{err:?}");
    assert_eq!(
        tr.state().unwrap(),
        last_good,
        "the failed step changed nothing"
    );
    assert!(StatePlacement::named("gpu").is_err());
}
