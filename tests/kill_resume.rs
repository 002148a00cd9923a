//! A training run killed with SIGKILL at random moments, 20 times over, always resumes from a
//! valid checkpoint and ends bit-identical to a run that was never interrupted.
//!
//! This is the reliability promise of `dpm train --resume`: checkpoints are written atomically
//! (temporary file + rename), a resume continues the exact same random streams, and nothing a
//! killed process left behind (its temporary files) piles up in the run folder. The kill
//! moments come from a seeded generator and are spread over the process start-up (before the
//! first step), mid-training and the checkpoint writes (a checkpoint every few steps takes a
//! large share of the time); they are scaled by the start-up time and the step time measured
//! here, so the schedule interrupts the run on slow and fast machines alike.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dpm::train::Checkpoint;

/// Steps of the run and the checkpoint interval.
const STEPS: u64 = 600;
const EVERY: u64 = 2;
/// Kills before the run may finish.
const KILLS: usize = 20;

fn train(dir: &Path, steps: u64) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dpm"));
    c.args(["train", "--preset", "toy2d", "--steps"])
        .arg(steps.to_string())
        .arg("--checkpoint-every")
        .arg(EVERY.to_string())
        .arg("--resume")
        .arg("--out")
        .arg(dir);
    c
}

/// Runs `dpm train` to the end; returns its wall time.
fn run_to_end(dir: &Path, steps: u64) -> Duration {
    let t = Instant::now();
    let out = train(dir, steps).output().expect("start dpm train");
    assert!(
        out.status.success(),
        "dpm train into {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// A 64-bit LCG (Knuth's MMIX constants): the kill schedule is the same on every run.
struct Lcg(u64);

impl Lcg {
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The folders a run writes into.
fn run_folders(dir: &Path) -> [PathBuf; 3] {
    [dir.to_path_buf(), dir.join("model"), dir.join("model_raw")]
}

/// Temporary files of `write_atomic` (`.NAME.PID-N.tmp`) in the run's folders.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in run_folders(dir) {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with('.') && n.ends_with(".tmp") {
                v.push(e.path());
            }
        }
    }
    v.sort();
    v
}

/// Every regular file under `dir` (relative path -> bytes).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                m.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    m
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn sigkilled_training_resumes_bit_identical() {
    let base = std::env::temp_dir().join(format!("dpm-kill-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let t_all = Instant::now();

    // Start-up time (ORT, the session, the data) and the reference run, uninterrupted.
    let startup = run_to_end(&base.join("probe"), 1);
    let ref_dir = base.join("reference");
    let t_ref = run_to_end(&ref_dir, STEPS);
    let per_step = t_ref.saturating_sub(startup).max(Duration::from_millis(1)) / STEPS as u32;
    println!(
        "start-up {:.0} ms, reference run {:.1} s ({:.1} ms/step, a checkpoint every {EVERY})",
        startup.as_secs_f64() * 1e3,
        t_ref.as_secs_f64(),
        per_step.as_secs_f64() * 1e3
    );

    // Leftovers of an earlier killed writer (a process that is gone), one of a live process
    // (this test) and an unrelated hidden file: only the first may be removed.
    let dir = base.join("killed");
    std::fs::create_dir_all(dir.join("model")).unwrap();
    let dead_pid = {
        let mut c = Command::new("true").spawn().expect("run true");
        let id = c.id();
        c.wait().unwrap();
        id
    };
    let stale = [
        dir.join(format!(".checkpoint.dpm.{dead_pid}-3.tmp")),
        dir.join("model")
            .join(format!(".toy2d.onnx.{dead_pid}-0.tmp")),
    ];
    let live = dir.join(format!(".checkpoint.dpm.{}-0.tmp", std::process::id()));
    let unrelated = dir.join(".notes.tmp");
    for p in stale.iter().chain([&live, &unrelated]) {
        std::fs::write(p, b"half-written").unwrap();
    }

    let ckpt = dir.join("checkpoint.dpm");
    let mut rng = Lcg(0x6b69_6c6c_2d72_6573);
    let mut last_step = 0u64;
    let mut seen = Vec::new();
    let (mut interrupted, mut in_startup, mut mid_write) = (0, 0, 0);
    for attempt in 0..KILLS {
        // A quarter of the kills land in the start-up, the rest after some progress: up to a
        // fifteenth of the run (about ten checkpoint intervals), at any point of the cycle.
        let delay = if rng.unit() < 0.25 {
            startup.mul_f64(rng.unit())
        } else {
            startup + per_step.mul_f64(rng.unit() * STEPS as f64 / 15.0)
        };
        let mut child = train(&dir, STEPS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dpm train");
        let pid = child.id();
        std::thread::sleep(delay);
        let finished_alone = child.try_wait().unwrap().is_some();
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reap");
        let step = if ckpt.exists() {
            let c = Checkpoint::load(&ckpt).unwrap_or_else(|e| {
                panic!("attempt {attempt}: no valid checkpoint after a SIGKILL: {e}")
            });
            c.header.step
        } else {
            0
        };
        assert!(
            step >= last_step,
            "attempt {attempt}: the checkpoint went back from step {last_step} to {step}"
        );
        assert!(step <= STEPS);
        let temps = temp_files(&dir);
        let wrote = temps
            .iter()
            .any(|p| p.to_string_lossy().contains(&format!(".{pid}-")));
        // Only the last killed writer's temporary file may be there: earlier ones are removed
        // when a run starts (the planted files are checked at the end).
        let dead: Vec<_> = temps
            .iter()
            .filter(|p| !stale.contains(p) && **p != live && **p != unrelated)
            .collect();
        assert!(
            dead.len() <= 1,
            "attempt {attempt}: temporary files of killed runs pile up: {dead:?}"
        );
        if !finished_alone && step < STEPS {
            interrupted += 1;
        }
        if delay < startup {
            in_startup += 1;
        }
        if wrote {
            mid_write += 1;
        }
        println!(
            "kill {attempt:2} after {:5.0} ms: checkpoint at step {step:3}{}{} ({status})",
            delay.as_secs_f64() * 1e3,
            if wrote { ", killed mid-write" } else { "" },
            if finished_alone {
                ", had already finished"
            } else {
                ""
            }
        );
        if step > last_step || seen.is_empty() {
            seen.push(step);
        }
        last_step = step;
    }
    println!(
        "{interrupted} of {KILLS} kills interrupted the run ({in_startup} within the start-up \
         time, {mid_write} in the middle of a write); checkpoints seen at steps {seen:?}"
    );
    assert!(
        interrupted >= 10,
        "only {interrupted} of {KILLS} kills interrupted the run"
    );
    assert!(
        seen.len() >= 5 && last_step > seen[0] && last_step < STEPS,
        "the run did not progress across the kills: checkpoints at {seen:?}"
    );

    // Run to completion: the result is the uninterrupted one, bit for bit.
    run_to_end(&dir, STEPS);
    for p in &stale {
        assert!(!p.exists(), "{} was not cleaned up", p.display());
    }
    assert!(
        live.exists() && unrelated.exists(),
        "a foreign file was removed"
    );
    std::fs::remove_file(&live).unwrap();
    std::fs::remove_file(&unrelated).unwrap();
    assert_eq!(
        temp_files(&dir),
        Vec::<PathBuf>::new(),
        "stray temporary files"
    );

    let a = Checkpoint::load(&ref_dir.join("checkpoint.dpm")).unwrap();
    let b = Checkpoint::load(&ckpt).unwrap();
    assert_eq!(b.header.step, STEPS);
    assert_eq!(a.header, b.header);
    assert_eq!(bits(&a.losses), bits(&b.losses), "loss history differs");
    assert_eq!(a.state.len(), b.state.len());
    for (k, (x, y)) in a.state.iter().zip(&b.state).enumerate() {
        let what = ["parameters", "Adam m", "Adam v", "EMA"][k.min(3)];
        assert!(
            bits(x) == bits(y),
            "{what} differ from the uninterrupted run"
        );
    }
    let (ta, tb) = (tree(&ref_dir), tree(&dir));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "different files"
    );
    for (p, bytes) in &ta {
        assert!(
            bytes == &tb[p],
            "{} differs from the uninterrupted run",
            p.display()
        );
    }
    assert!(ta.contains_key(Path::new("model/toy2d.weights.bin")));
    println!(
        "final state and {} files bit-identical; total {:.1} s",
        ta.len(),
        t_all.elapsed().as_secs_f64()
    );
    std::fs::remove_dir_all(&base).unwrap();
}
