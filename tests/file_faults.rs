//! File-system faults never lose data and never crash the `dpm` binary.
//!
//! A full disk or an unwritable folder while `dpm train` writes its checkpoint, `dpm sample`
//! its points and plot, or `dpm report` its report gives an error exit with a message naming
//! the path and the problem (never a panic), and every file that existed before stays
//! byte-identical, with no temporary file left behind. A model, its external weights or the
//! training images changing or vanishing before or during a run give an error (or, where the
//! data was already read into memory, a correct finish), never a signal such as SIGBUS.
//!
//! Techniques: a real full disk (ENOSPC) and a read-only folder (EROFS) come from a small
//! tmpfs mounted in a private user + mount namespace (`unshare -rm`), which works as root and
//! as an ordinary user where user namespaces are allowed. Where `unshare` is unavailable, the
//! full disk falls back to a file-size limit (`ulimit -f`, EFBIG: no privileges needed), which
//! also always runs as a case of its own, and the read-only folder falls back to an output path
//! below a regular file (ENOTDIR). Each case prints the technique that ran.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DPM: &str = env!("CARGO_BIN_EXE_dpm");

fn base() -> &'static Path {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        let b = std::env::temp_dir().join(format!("dpm-file-faults-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&b);
        std::fs::create_dir_all(&b).unwrap();
        b
    })
}

/// A fresh folder under the test's base folder.
fn fresh(name: &str) -> PathBuf {
    let d = base().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn dpm_ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) {
    let out = Command::new(DPM).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "dpm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every regular file under `dir` (relative path -> bytes), the tmpfs filler excluded.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name() != ".fill" {
                m.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    m
}

/// Whether a tmpfs can be mounted in a private user + mount namespace here.
fn tmpfs_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let d = fresh("probe");
        let ok = Command::new("unshare")
            .args(["-rm", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o size=64k tmpfs "$1" && mount -o remount,ro "$1""#)
            .arg("sh")
            .arg(&d)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        println!("unshare -rm + tmpfs available: {ok}");
        ok
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// The disk is full.
    Full,
    /// The file-size limit is hit (EFBIG).
    FileSize,
    /// The folder is read-only.
    ReadOnly,
}

/// What a faulty run left.
struct Outcome {
    technique: &'static str,
    /// The folder the command wrote into (as the command saw it).
    target: PathBuf,
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    /// The files of the target folder before and after the run.
    before: BTreeMap<PathBuf, Vec<u8>>,
    after: BTreeMap<PathBuf, Vec<u8>>,
    /// The problem the message must name.
    expect: &'static [&'static str],
}

/// Runs `dpm ARGS(target)` where `target` holds a copy of `seed` and suffers `fault`.
fn run_fault(
    name: &str,
    fault: Fault,
    seed: &Path,
    args: &dyn Fn(&Path) -> Vec<OsString>,
) -> Outcome {
    let work = fresh(name);
    let before = tree(seed);
    let tmpfs = fault != Fault::FileSize && tmpfs_available();
    if tmpfs {
        let mnt = work.join("mnt");
        let res = work.join("res");
        std::fs::create_dir_all(&mnt).unwrap();
        std::fs::create_dir_all(res.join("after")).unwrap();
        let size: usize = before.values().map(Vec::len).sum::<usize>() / 1024 + 1024;
        let script = r#"set -e
mount -t tmpfs -o size="$SIZE"k tmpfs "$MNT"
cp -R "$SEED/." "$MNT/"
if [ "$MODE" = full ]; then head -c 4000000000 /dev/zero > "$MNT/.fill" 2>/dev/null || true; fi
if [ "$MODE" = ro ]; then mount -o remount,ro "$MNT"; fi
set +e
"$@" > "$RES/stdout" 2> "$RES/stderr"
echo $? > "$RES/rc"
cp -R "$MNT/." "$RES/after/"
"#;
        let status = Command::new("unshare")
            .args(["-rm", "sh", "-c", script, "sh", DPM])
            .args(args(&mnt))
            .env("SIZE", size.to_string())
            .env("MNT", &mnt)
            .env("SEED", seed)
            .env("RES", &res)
            .env("MODE", if fault == Fault::Full { "full" } else { "ro" })
            .status()
            .unwrap();
        assert!(status.success(), "the namespace script failed: {status}");
        let rc: i32 = std::fs::read_to_string(res.join("rc"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        return Outcome {
            technique: if fault == Fault::Full {
                "tmpfs full (ENOSPC)"
            } else {
                "read-only tmpfs (EROFS)"
            },
            target: mnt,
            code: (rc < 128).then_some(rc),
            signal: (rc >= 128).then_some(rc - 128),
            stderr: std::fs::read_to_string(res.join("stderr")).unwrap(),
            before,
            after: tree(&res.join("after")),
            expect: if fault == Fault::Full {
                &["No space left"]
            } else {
                &["Read-only file system"]
            },
        };
    }
    if fault == Fault::ReadOnly {
        // An output folder below a regular file can be neither created nor written.
        let file = work.join("a-file");
        std::fs::write(&file, b"not a folder").unwrap();
        let target = file.join("out");
        let out = Command::new(DPM).args(args(&target)).output().unwrap();
        return Outcome {
            technique: "output below a regular file (ENOTDIR)",
            target,
            code: out.status.code(),
            signal: out.status.signal(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            before: BTreeMap::new(),
            after: BTreeMap::new(),
            expect: &["Not a directory"],
        };
    }
    // The file-size limit: a write past 1 KiB fails with EFBIG (SIGXFSZ ignored).
    let target = work.join("out");
    Command::new("cp")
        .arg("-R")
        .arg(seed)
        .arg(&target)
        .status()
        .unwrap();
    let out = Command::new("sh")
        .args(["-c", r#"ulimit -f 2; trap "" XFSZ; exec "$@""#, "sh", DPM])
        .args(args(&target))
        .output()
        .unwrap();
    Outcome {
        technique: if fault == Fault::Full {
            "file-size limit (EFBIG), as the fallback for a full disk"
        } else {
            "file-size limit (EFBIG)"
        },
        after: tree(&target),
        target,
        code: out.status.code(),
        signal: out.status.signal(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        before,
        expect: &["File too large"],
    }
}

/// The common promise: an error exit that names the folder and the problem, no panic, every
/// earlier file intact, no temporary file.
fn check(what: &str, o: &Outcome) {
    println!("{what}: {} -> {:?}", o.technique, o.stderr.trim());
    assert_eq!(o.signal, None, "{what}: killed by a signal");
    assert!(
        matches!(o.code, Some(c) if c != 0),
        "{what}: exit {:?}, want an error",
        o.code
    );
    assert!(
        !o.stderr.contains("panicked"),
        "{what}: panic: {}",
        o.stderr
    );
    assert!(
        o.stderr.contains("error:") && o.stderr.contains(&*o.target.to_string_lossy()),
        "{what}: the message does not name {}: {}",
        o.target.display(),
        o.stderr
    );
    assert!(
        o.expect.iter().any(|e| o.stderr.contains(e)),
        "{what}: the message does not say {:?}: {}",
        o.expect,
        o.stderr
    );
    let temps: Vec<_> = o
        .after
        .keys()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "{what}: temporary files left: {temps:?}");
    assert_eq!(
        o.before.keys().collect::<Vec<_>>(),
        o.after.keys().collect::<Vec<_>>(),
        "{what}: the set of files changed"
    );
    for (p, b) in &o.before {
        assert!(
            &o.after[p] == b,
            "{what}: {} changed although the run failed",
            p.display()
        );
    }
}

/// A trained toy2d run folder (checkpoint at step 30, model, loss log).
fn toy_run() -> &'static Path {
    static R: OnceLock<PathBuf> = OnceLock::new();
    R.get_or_init(|| {
        let d = fresh("toy-run");
        dpm_ok(&os(
            &["train", "--preset", "toy2d", "--steps", "30", "--out"],
            &d,
        ));
        d
    })
}

fn os(v: &[&str], last: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = v.iter().map(OsString::from).collect();
    a.push(last.into());
    a
}

const FAULTS: [Fault; 3] = [Fault::Full, Fault::FileSize, Fault::ReadOnly];

/// (a) The checkpoint of a resumed run cannot be written: the old one stays, loadable.
#[test]
fn checkpoint_write_faults_keep_the_old_checkpoint() {
    let seed = toy_run();
    for f in FAULTS {
        let o = run_fault(&format!("train-{f:?}"), f, seed, &|t| {
            os(
                &[
                    "train",
                    "--preset",
                    "toy2d",
                    "--steps",
                    "40",
                    "--checkpoint-every",
                    "5",
                    "--resume",
                    "--out",
                ],
                t,
            )
        });
        check(&format!("train, {f:?}"), &o);
        if let Some(b) = o.after.get(Path::new("checkpoint.dpm")) {
            let c = dpm::train::Checkpoint::from_bytes(b, Path::new("checkpoint.dpm")).unwrap();
            assert_eq!(c.header.step, 30);
        }
    }
}

/// (b) `dpm sample` over earlier outputs (samples.csv, samples.png).
#[test]
fn sample_write_faults_keep_earlier_samples() {
    let model = toy_run().join("model").join("toy2d.onnx");
    let seed = fresh("sample-seed");
    let m = model.to_str().unwrap();
    dpm_ok(&os(
        &[
            "sample", "--model", m, "--num", "200", "--nfe", "5", "--seed", "1", "--out",
        ],
        &seed,
    ));
    for f in FAULTS {
        let o = run_fault(&format!("sample-{f:?}"), f, &seed, &|t| {
            os(
                &[
                    "sample", "--model", m, "--num", "200", "--nfe", "5", "--seed", "2", "--out",
                ],
                t,
            )
        });
        check(&format!("sample, {f:?}"), &o);
    }
}

/// (c) `dpm report` (cheapest: 10 steps, no grid, no image part) over an earlier report.
#[test]
fn report_write_faults_keep_the_earlier_report() {
    let seed = fresh("report-seed");
    let args = |t: &Path| {
        os(
            &[
                "report",
                "--steps",
                "10",
                "--no-grid",
                "--image-model",
                "/nonexistent/model.onnx",
                "--out",
            ],
            t,
        )
    };
    let out = Command::new(DPM).args(args(&seed)).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(seed.join("report.md").is_file());
    for f in FAULTS {
        let o = run_fault(&format!("report-{f:?}"), f, &seed, &args);
        check(&format!("report, {f:?}"), &o);
    }
}

/// Runs dpm and returns (exit code, signal, stderr).
fn dpm_status(args: &[OsString]) -> (Option<i32>, Option<i32>, String) {
    let out = Command::new(DPM).args(args).output().unwrap();
    (
        out.status.code(),
        out.status.signal(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_clean_error(what: &str, r: &(Option<i32>, Option<i32>, String), names: &str) {
    println!("{what}: {:?}", r.2.trim());
    assert_eq!(r.1, None, "{what}: killed by a signal");
    assert!(matches!(r.0, Some(c) if c != 0), "{what}: exit {:?}", r.0);
    assert!(!r.2.contains("panicked"), "{what}: panic: {}", r.2);
    assert!(
        r.2.contains("error:") && r.2.contains(names),
        "{what}: {}",
        r.2
    );
}

/// An image folder in the AFHQ layout: 2 classes of 6 images, 32 x 32.
fn image_folder(name: &str) -> PathBuf {
    let root = fresh(name).join("train");
    let shapes = dpm::data::Shapes::new(32, 2).unwrap();
    let (x, labels) = shapes.batch(7, 0, 12);
    for (i, l) in labels.iter().enumerate() {
        let d = root.join(format!("class{l}"));
        std::fs::create_dir_all(&d).unwrap();
        dpm::imageio::save_png(&d.join(format!("img_{i:02}.png")), &x, 12, i, 3, 32, 32).unwrap();
    }
    root
}

/// The first image (sorted) of the first class folder.
fn first_image(root: &Path) -> PathBuf {
    let mut classes: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    classes.sort();
    let mut files: Vec<_> = std::fs::read_dir(&classes[0])
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files.swap_remove(0)
}

fn image_train_args(root: &Path, out: &Path, steps: &str) -> Vec<OsString> {
    let mut a = os(
        &[
            "train",
            "--preset",
            "demo",
            "--network",
            "classifier",
            "--steps",
            steps,
            "--batch",
            "4",
            "--checkpoint-every",
            "5",
            "--ema-decay",
            "0",
            "--cfg-dropout",
            "0",
            "--data",
        ],
        Path::new(&format!("folder:{}", root.display())),
    );
    a.push("--out".into());
    a.push(out.into());
    a
}

/// (d) Training images that are garbage or vanish give an error naming the file; images
/// deleted or overwritten once the run is going do not matter: the folder is decoded into
/// memory when the run starts, so the run finishes correctly.
#[test]
fn image_data_that_changes_or_vanishes() {
    // Overwritten with garbage before the run.
    let root = image_folder("images-garbage");
    let victim = first_image(&root);
    std::fs::write(&victim, b"this is not a PNG").unwrap();
    let r = dpm_status(&image_train_args(&root, &fresh("images-garbage-out"), "10"));
    assert_clean_error("garbage image", &r, &victim.to_string_lossy());

    // Listed, then gone before it is decoded (a dangling link is exactly that state).
    let root = image_folder("images-vanished");
    let class = first_image(&root).parent().unwrap().to_path_buf();
    let gone = class.join("zz_gone.png");
    std::os::unix::fs::symlink(class.join("deleted.png"), &gone).unwrap();
    let r = dpm_status(&image_train_args(
        &root,
        &fresh("images-vanished-out"),
        "10",
    ));
    assert_clean_error("vanished image", &r, &gone.to_string_lossy());

    // Deleted and overwritten while the run is going (after its first checkpoint).
    let root = image_folder("images-midrun");
    let out = fresh("images-midrun-out");
    let mut child = Command::new(DPM)
        .args(image_train_args(&root, &out, "60"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !out.join("checkpoint.dpm").exists()
        && child.try_wait().unwrap().is_none()
        && t.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let running = child.try_wait().unwrap().is_none();
    for class in std::fs::read_dir(&root).unwrap().flatten() {
        for (k, e) in std::fs::read_dir(class.path())
            .unwrap()
            .flatten()
            .enumerate()
        {
            if k % 2 == 0 {
                std::fs::write(e.path(), b"garbage").unwrap();
            } else {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    let o = child.wait_with_output().unwrap();
    println!(
        "images changed mid-run (run still going: {running}): {}",
        o.status
    );
    assert_eq!(o.status.signal(), None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = dpm::train::Checkpoint::load(&out.join("checkpoint.dpm")).unwrap();
    assert_eq!(c.header.step, 60);
    assert!(out.join("model").join("classifier.onnx").is_file());
}

/// (e) A model whose .onnx or external weights are damaged, missing, or truncated while
/// `dpm sample` runs: a clean error (or a correct finish, the model being in memory), never a
/// signal such as SIGBUS.
#[test]
fn model_files_that_change_or_vanish() {
    let src = toy_run().join("model");
    let copy = |name: &str| {
        let d = fresh(name);
        for f in ["toy2d.onnx", "toy2d.weights.bin"] {
            std::fs::copy(src.join(f), d.join(f)).unwrap();
        }
        d
    };
    let sample = |d: &Path, num: &str| {
        let mut a = os(
            &["sample", "--num", num, "--nfe", "50", "--model"],
            &d.join("toy2d.onnx"),
        );
        a.push("--out".into());
        a.push(d.join("out").into());
        a
    };
    let d = copy("model-truncated");
    let w = std::fs::read(d.join("toy2d.weights.bin")).unwrap();
    std::fs::write(d.join("toy2d.weights.bin"), &w[..w.len() / 2]).unwrap();
    assert_clean_error("truncated weights", &dpm_status(&sample(&d, "16")), "toy2d");

    let d = copy("model-garbage");
    std::fs::write(d.join("toy2d.onnx"), b"garbage, not protobuf").unwrap();
    assert_clean_error(
        "garbage .onnx",
        &dpm_status(&sample(&d, "16")),
        "toy2d.onnx",
    );

    let d = copy("model-no-weights");
    std::fs::remove_file(d.join("toy2d.weights.bin")).unwrap();
    assert_clean_error(
        "missing weights",
        &dpm_status(&sample(&d, "16")),
        "toy2d.weights.bin",
    );

    // Truncated in place (same file) while the run samples: ORT used to compute from a
    // mapping of the weights file, and died with SIGBUS.
    let d = copy("model-midrun");
    let child = Command::new(DPM)
        .args(sample(&d, "20000"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    std::fs::File::create(d.join("toy2d.weights.bin")).unwrap();
    std::fs::write(d.join("toy2d.onnx"), b"").unwrap();
    let o = child.wait_with_output().unwrap();
    println!("model truncated mid-run: {}", o.status);
    assert_eq!(o.status.signal(), None, "killed by a signal: {}", o.status);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    if o.status.success() {
        assert!(d.join("out").join("samples.csv").is_file());
    }
}
