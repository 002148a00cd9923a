//! A training run killed (SIGKILL) while it writes checkpoints leaves a loadable checkpoint:
//! writes go to a temporary file renamed into place.

use std::process::Command;
use std::time::Duration;

#[test]
fn sigkill_never_leaves_a_broken_checkpoint() {
    let dir = std::env::temp_dir().join(format!("dpm-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ckpt = dir.join("checkpoint.dpm");
    let mut loaded = 0;
    // Kill at different moments; a checkpoint is written after every step.
    for (i, ms) in [900u64, 1300, 1700, 2100, 2500].iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dpm"))
            .args([
                "train",
                "--preset",
                "toy2d",
                "--steps",
                "100000",
                "--checkpoint-every",
                "1",
                "--resume",
                "--out",
            ])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start dpm train");
        std::thread::sleep(Duration::from_millis(*ms));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        if ckpt.exists() {
            let c = dpm::train::Checkpoint::load(&ckpt)
                .unwrap_or_else(|e| panic!("attempt {i}: checkpoint unreadable after a kill: {e}"));
            assert!(c.header.step > 0);
            loaded += 1;
        }
    }
    assert!(
        loaded >= 3,
        "the runs were killed before writing any checkpoint ({loaded})"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
