//! Hostile and careless input, second round (issue 14): models that name external data in odd
//! places, files that are not files, sizes that would not fit in memory, values that overflow.
//! Each test names the guarantee it holds; the README's Reliability section lists them.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::onnx_gen::*;
use dpm::model::OnnxModel;
use dpm::runtime::{Runtime, RuntimeOptions};

fn rt() -> Runtime {
    Runtime::new(&RuntimeOptions {
        intra_threads: 1,
        ..Default::default()
    })
    .unwrap()
}

fn fresh(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("hostile_input")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `out` of a 2D model for x = [[1, 1]] at t = 0.
fn eval_ones(m: &mut OnnxModel) -> Vec<f32> {
    let mut out = vec![0.0; 2];
    m.eval(&[1.0, 1.0], 0.0, None, &mut out).unwrap();
    out
}

fn w_external(location: &str, offset: u64, length: u64) -> Vec<u8> {
    tensor_external(
        "W",
        FLOAT,
        &[2],
        &[
            ("location", location),
            ("offset", &offset.to_string()),
            ("length", &length.to_string()),
        ],
    )
}

fn load_err(path: &Path) -> String {
    match OnnxModel::load(&rt(), path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

/// Item 1: external data named inside a subgraph (an `If` branch) is read from the model's
/// folder, whatever the working folder holds; ONNX Runtime alone would read it relative to
/// the working folder.
#[test]
fn external_data_in_a_subgraph_comes_from_the_model_folder() {
    let d = fresh("if_branch");
    std::fs::write(d.join("w.bin"), f32_bytes(&[2.0, 3.0])).unwrap();
    let m = d.join("m.onnx");
    std::fs::write(&m, if_branch_model(w_external("w.bin", 0, 8))).unwrap();
    assert_eq!(
        dpm::onnx_file::external_data_files(&std::fs::read(&m).unwrap()),
        ["w.bin"]
    );
    let mut net = OnnxModel::load(&rt(), &m).unwrap();
    assert_eq!(eval_ones(&mut net), [2.0, 3.0]);

    // The same samples from another working folder that holds a decoy w.bin (child
    // processes, since the working folder is process-wide).
    let decoy = fresh("if_branch_cwd");
    std::fs::write(decoy.join("w.bin"), f32_bytes(&[-100.0, -200.0])).unwrap();
    let sample = |cwd: &Path, out: &Path| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_dpm"))
            .current_dir(cwd)
            .args([
                "sample", "--num", "4", "--nfe", "2", "--solver", "ddim", "--model",
            ])
            .arg(&m)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(out.join("samples.csv")).unwrap()
    };
    let plain = sample(&d, &fresh("if_branch_out1"));
    assert_eq!(sample(&decoy, &fresh("if_branch_out2")), plain);

    // A subgraph's external data that is missing is an error naming the model's folder.
    std::fs::remove_file(d.join("w.bin")).unwrap();
    let e = load_err(&m);
    assert!(e.contains(&d.join("w.bin").display().to_string()), "{e}");
}

/// Item 1: locations that leave the model's folder are refused, by name or by symlink.
#[test]
fn external_data_must_stay_in_the_model_folder() {
    let d = fresh("escape");
    let outside = fresh("escape_outside");
    std::fs::write(outside.join("w.bin"), f32_bytes(&[2.0, 3.0])).unwrap();
    for (i, loc) in ["../escape_outside/w.bin", "/etc/passwd", "", "./w.bin"]
        .iter()
        .enumerate()
    {
        let m = d.join(format!("m{i}.onnx"));
        std::fs::write(&m, mul_model(w_external(loc, 0, 8))).unwrap();
        let e = load_err(&m);
        assert!(e.contains("leaves the model's folder"), "{loc:?}: {e}");
    }
    // A symlink inside the folder that points outside it, in the main graph and in a branch.
    symlink(outside.join("w.bin"), d.join("link.bin")).unwrap();
    for (name, bytes) in [
        ("main.onnx", mul_model(w_external("link.bin", 0, 8))),
        ("branch.onnx", if_branch_model(w_external("link.bin", 0, 8))),
    ] {
        std::fs::write(d.join(name), bytes).unwrap();
        let e = load_err(&d.join(name));
        assert!(e.contains("outside the model's folder"), "{name}: {e}");
    }
    // A symlink that stays inside the folder is fine.
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/w.bin"), f32_bytes(&[2.0, 3.0])).unwrap();
    symlink(d.join("sub/w.bin"), d.join("inside.bin")).unwrap();
    std::fs::write(d.join("ok.onnx"), mul_model(w_external("inside.bin", 0, 8))).unwrap();
    let mut net = OnnxModel::load(&rt(), &d.join("ok.onnx")).unwrap();
    assert_eq!(eval_ones(&mut net), [2.0, 3.0]);
}

/// Item 9: only regular files are read: a FIFO or a device as the model or as its weights is
/// refused at once (never blocks, never reads without bound), and says what it is.
#[test]
fn fifos_and_devices_are_refused() {
    let d = fresh("special");
    let fifo = d.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    symlink("/dev/zero", d.join("zero.bin")).unwrap();
    // As the model.
    let e = load_err(&fifo);
    assert!(e.contains("FIFO"), "{e}");
    let e = load_err(Path::new("/dev/zero"));
    assert!(e.contains("character device"), "{e}");
    let e = load_err(&d);
    assert!(e.contains("folder"), "{e}");
    // As the weights, in the main graph and in a branch (a link to /dev/zero also leaves
    // the folder; either reason refuses it).
    std::fs::create_dir_all(d.join("adir")).unwrap();
    for (i, loc) in ["fifo", "zero.bin", "adir"].iter().enumerate() {
        for (j, bytes) in [
            mul_model(w_external(loc, 0, 8)),
            if_branch_model(w_external(loc, 0, 8)),
        ]
        .into_iter()
        .enumerate()
        {
            let m = d.join(format!("m{i}{j}.onnx"));
            std::fs::write(&m, bytes).unwrap();
            let e = load_err(&m);
            assert!(
                e.contains("not a regular file") || e.contains("outside the model's folder"),
                "{loc}: {e}"
            );
        }
    }
    // Checkpoints are read the same way (a FIFO as checkpoint.dpm used to block --resume).
    match dpm::train::Checkpoint::load(&fifo) {
        Err(e) => assert!(e.to_string().contains("FIFO"), "{e}"),
        Ok(_) => panic!("a FIFO loaded as a checkpoint"),
    }
    // A missing model is still "file not found".
    let e = load_err(&d.join("missing.onnx"));
    assert!(e.contains("file not found"), "{e}");
}

/// Item 9: only the byte ranges the model names are read, after checking them against the
/// tensor's size and the file's size.
#[test]
fn only_the_named_byte_ranges_are_read() {
    let d = fresh("ranges");
    // A 2 GB sparse file whose first 8 bytes are the tensor: 8 bytes are read, not 2 GB.
    let f = std::fs::File::create(d.join("big.bin")).unwrap();
    use std::io::Write;
    (&f).write_all(&f32_bytes(&[2.0, 3.0])).unwrap();
    f.set_len(2 << 30).unwrap();
    let m = d.join("sparse.onnx");
    std::fs::write(&m, mul_model(w_external("big.bin", 0, 8))).unwrap();
    let read = dpm::onnx_file::read_model(&m).unwrap();
    assert_eq!(read.files.len(), 1);
    assert_eq!(read.files[0].1.len(), 8);
    let mut net = OnnxModel::load(&rt(), &m).unwrap();
    assert_eq!(eval_ones(&mut net), [2.0, 3.0]);
    // A tensor in the middle of a file, inlined from a branch.
    std::fs::write(d.join("mid.bin"), f32_bytes(&[9.0, 2.0, 3.0, 9.0])).unwrap();
    let m = d.join("mid.onnx");
    std::fs::write(&m, if_branch_model(w_external("mid.bin", 4, 8))).unwrap();
    let read = dpm::onnx_file::read_model(&m).unwrap();
    assert!(read.files.is_empty(), "a branch tensor is inlined");
    let mut net = OnnxModel::load(&rt(), &m).unwrap();
    assert_eq!(eval_ones(&mut net), [2.0, 3.0]);

    // Ranges that do not fit: refused before anything is read.
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (w_external("mid.bin", 0, 16), "its shape and type need 8"),
        (w_external("mid.bin", 12, 8), "which has 16 bytes"),
        (w_external("mid.bin", u64::MAX - 2, 8), "which has 16 bytes"),
        (
            tensor_external("W", FLOAT, &[1 << 40], &[("location", "mid.bin")]),
            "bytes of external data",
        ),
        (
            tensor_external("W", FLOAT, &[1 << 62, 1 << 62], &[("location", "mid.bin")]),
            "too large",
        ),
        (
            tensor_external("W", FLOAT, &[-2], &[("location", "mid.bin")]),
            "too large",
        ),
        (
            tensor_external(
                "W",
                FLOAT,
                &[2],
                &[("location", "mid.bin"), ("offset", "x")],
            ),
            "not a byte count",
        ),
        (
            tensor_external("W", FLOAT, &[2], &[("offset", "0")]),
            "without a location",
        ),
        (
            tensor_external("W", 8, &[2], &[("location", "mid.bin")]),
            "data type 8",
        ),
    ];
    for (i, (init, want)) in cases.into_iter().enumerate() {
        for (j, bytes) in [mul_model(init.clone()), if_branch_model(init)]
            .into_iter()
            .enumerate()
        {
            let m = d.join(format!("bad{i}_{j}.onnx"));
            std::fs::write(&m, bytes).unwrap();
            let e = load_err(&m);
            assert!(e.contains(want), "case {i}/{j}: {e}");
        }
    }
    // Not protobuf at all.
    let m = d.join("garbage.onnx");
    std::fs::write(&m, b"\x0b garbage").unwrap();
    assert!(load_err(&m).contains("not an ONNX model"));
    // Graphs nested without end (each then-branch holding another If).
    let mut g = graph("leaf", &[], &[], &[], &[]);
    for _ in 0..100 {
        g = graph(
            "g",
            &[node(
                "If",
                &["c"],
                &["o"],
                &[("then_branch", Attr::Graph(g))],
            )],
            &[],
            &[],
            &[],
        );
    }
    let m = d.join("deep.onnx");
    std::fs::write(&m, model(&g, &[])).unwrap();
    let e = load_err(&m);
    assert!(e.contains("nested more than"), "{e}");
}

fn write_model(name: &str, bytes: Vec<u8>) -> PathBuf {
    let p = fresh(name).join("m.onnx");
    std::fs::write(&p, bytes).unwrap();
    p
}

fn generate(
    path: &Path,
    solver: &str,
    labels: Option<&[i64]>,
    guidance: Option<f64>,
) -> dpm::Result<Vec<f32>> {
    let mut net = OnnxModel::load(&rt(), path)?;
    let num = labels.map_or(4, <[i64]>::len);
    let mut out = vec![0f32; num * net.info().dim()];
    let req = dpm::generate::Request {
        solver: dpm::solver::SolverConfig::parse(solver, 10)?,
        guidance: guidance.map(|scale| dpm::guidance::Guidance {
            scale,
            convention: dpm::guidance::Convention::Ho,
            null_label: 0,
        }),
        num,
        batch: 4,
        seed: 0,
        first_index: 0,
        labels,
        latents: None,
        init_image: None,
        known: None,
        mask: None,
    };
    net.generate(&req, &mut out, |_| true)?;
    Ok(out)
}

fn non_finite_kind(r: dpm::Result<Vec<f32>>) -> (dpm::NonFiniteSource, String) {
    match r {
        Err(e @ dpm::Error::NonFinite { kind, .. }) => (kind, e.to_string()),
        other => panic!("expected a non-finite error, got {other:?}"),
    }
}

/// Items 4 and 5: finite but huge model outputs that overflow float32 in the solver or in
/// guidance end the run with an error that says so (not "non-finite model output"), and no
/// infinity is handed out as a sample; a model that outputs NaN is still named as such.
#[test]
fn overflow_is_caught_and_named() {
    use dpm::NonFiniteSource::*;
    let huge = write_model(
        "huge",
        constant_model(&[dyn_dim("B"), Dim::Fixed(2)], 2.2e36),
    );
    for solver in [
        "dpm2",
        "dpm1",
        "dpm3",
        "dpm++2m",
        "dpm++2m-sde",
        "ddim",
        "ddpm",
        "adaptive23",
    ] {
        let (kind, msg) = non_finite_kind(generate(&huge, solver, None, None));
        assert!(matches!(kind, SolverState | Combination), "{solver}: {msg}");
        assert!(!msg.contains("non-finite model output"), "{msg}");
        assert!(msg.contains("too large"), "{msg}");
    }
    let big = write_model("big", constant_model(&[dyn_dim("B"), Dim::Fixed(2)], 1e37));
    let (kind, _) = non_finite_kind(generate(&big, "dpm++2m", None, None));
    assert_ne!(kind, ModelOutput);
    // Guidance of two finite halves that overflow when combined.
    let cond = write_model(
        "cfg_huge",
        cond_constant_model(&[[1e38, 1e38], [-1e38, -1e38]]),
    );
    let (kind, msg) = non_finite_kind(generate(&cond, "dpm2", Some(&[1; 4]), Some(2.0)));
    assert_eq!(kind, Combination, "{msg}");
    // A guidance scale whose weights do not fit float32 is refused up front.
    let ok = write_model("cfg_ok", cond_constant_model(&[[0.0, 0.0], [0.5, 0.5]]));
    match generate(&ok, "dpm2", Some(&[1; 4]), Some(1e300)) {
        Err(dpm::Error::InvalidArgument(m)) => assert!(m.contains("float32"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(generate(&ok, "dpm2", Some(&[1; 4]), Some(7.5)).is_ok());
    // A model that outputs NaN is a model-output error.
    let nan = write_model(
        "nan",
        constant_model(&[dyn_dim("B"), Dim::Fixed(2)], f32::NAN),
    );
    let (kind, msg) = non_finite_kind(generate(&nan, "dpm2", None, None));
    assert_eq!(kind, ModelOutput);
    assert!(msg.contains("non-finite model output at step 0"), "{msg}");

    // The CLI exits with the error and writes no samples.
    let out = fresh("huge_cli");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dpm"))
        .args(["sample", "--num", "4", "--model"])
        .arg(&huge)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("overflowed float32"), "{err}");
    assert!(!out.join("samples.csv").exists());
}

/// Item 5 and 10: sample shapes that are empty, dynamic or too large (including products that
/// wrap around) are refused at load with what is wrong, and an output whose shape the model
/// does not declare is checked by a trial evaluation rather than reported as "shape []".
#[test]
fn model_shapes_are_checked_with_clear_messages() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "empty",
            identity_model(&[dyn_dim("B"), Dim::Fixed(0)]),
            "dimension 1 is 0",
        ),
        (
            "dynamic",
            identity_model(&[dyn_dim("B"), dyn_dim("n")]),
            "dimension 1 ('n') is dynamic",
        ),
        (
            "huge",
            identity_model(&[dyn_dim("B"), Dim::Fixed(1 << 31)]),
            "values per sample",
        ),
        (
            "wraps",
            identity_model(&[dyn_dim("B"), Dim::Fixed(3), Dim::Fixed(0x5555555555555556)]),
            "values per sample",
        ),
        (
            "unknown_rank",
            model(
                &graph(
                    "g",
                    &[
                        node("Cast", &["t"], &["ti"], &[("to", Attr::Int(7))]),
                        node("Reshape", &["x", "ti"], &["out"], &[]),
                    ],
                    &xt_inputs(2),
                    &[value_info("out", FLOAT, None)],
                    &[],
                ),
                &[],
            ),
            "no declared shape, and a trial evaluation",
        ),
        (
            "wider_out",
            model(
                &graph(
                    "g",
                    &[node(
                        "Concat",
                        &["x", "x"],
                        &["out"],
                        &[("axis", Attr::Int(1))],
                    )],
                    &xt_inputs(2),
                    &[value_info("out", FLOAT, None)],
                    &[],
                ),
                &[],
            ),
            "does not match input 'x'",
        ),
    ];
    for (name, bytes, want) in cases {
        let e = load_err(&write_model(&format!("shape_{name}"), bytes));
        assert!(e.contains(want), "{name}: {e}");
        assert!(!e.contains("has shape []"), "{name}: {e}");
    }
}

/// Item 8: a model with a fixed batch dimension gets batches of that size, the last one topped
/// up, and gives exactly the samples a dynamic-batch model gives; guidance halves the batch.
#[test]
fn a_fixed_batch_model_gets_full_batches() {
    let fixed = write_model(
        "fixed4",
        constant_model(&[Dim::Fixed(4), Dim::Fixed(2)], 0.5),
    );
    let dynamic = write_model("dyn", constant_model(&[dyn_dim("B"), Dim::Fixed(2)], 0.5));
    let run = |p: &Path, num: usize, batch: usize| {
        let mut net = OnnxModel::load(&rt(), p).unwrap();
        let mut out = vec![0f32; num * 2];
        let req = dpm::generate::Request {
            solver: dpm::solver::SolverConfig::parse("dpm2", 10).unwrap(),
            guidance: None,
            num,
            batch,
            seed: 3,
            first_index: 0,
            labels: None,
            latents: None,
            init_image: None,
            known: None,
            mask: None,
        };
        net.generate(&req, &mut out, |_| true).map(|()| out)
    };
    let want = run(&dynamic, 6, 64).unwrap();
    for batch in [1, 4, 6, 64] {
        assert_eq!(run(&fixed, 6, batch).unwrap(), want, "batch {batch}");
    }
    // A direct evaluation with other rows says what the model needs.
    let mut net = OnnxModel::load(&rt(), &fixed).unwrap();
    let mut out = vec![0f32; 2];
    match net.eval(&[0.0, 0.0], 0.0, None, &mut out) {
        Err(dpm::Error::Shape(m)) => assert!(m.contains("fixes its batch at 4 rows"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The CLI says so and writes every sample.
    let out = fresh("fixed4_cli");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dpm"))
        .args(["sample", "--num", "6", "--batch", "4", "--model"])
        .arg(&fixed)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("samples.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "{csv}");
}

/// Items 6 and 10: `dpm sample` refuses a sample count it cannot hold before allocating it
/// (an error, not an abort), and its output folder holds exactly the run's samples.
#[test]
fn sample_cli_sizes_and_stale_outputs() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cond_image.onnx");
    let out = fresh("stale");
    let sample = |num: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dpm"))
            .args(["sample", "--nfe", "2", "--num", num, "--model"])
            .arg(&model)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    for huge in ["1099511627776", "18446744073709551615"] {
        let o = sample(huge);
        assert_eq!(o.status.code(), Some(1), "{:?}", o.status);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("more than"), "{err}");
    }
    // Files the runs did not write stay, even with a run's naming.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    std::fs::write(out.join("img_00007.png"), "mine").unwrap();
    assert!(sample("4").status.success());
    let o = sample("2");
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("removed 2 file(s)"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".dpm-sample-files",
            "grid.png",
            "img_00000.png",
            "img_00001.png",
            "img_00007.png",
            "notes.txt"
        ]
    );
}

fn dpm_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dpm"))
        .args(args)
        .output()
        .unwrap()
}

/// Item 2: every floating-point training option is checked (finite, in range, representable
/// in float32) before any work; nothing is written for a refused one.
#[test]
fn training_options_must_be_finite_and_in_range() {
    let out = fresh("train_opts");
    let o = out.to_str().unwrap();
    for (opt, value) in [
        ("--clip-norm", "nan"),
        ("--clip-norm", "inf"),
        ("--clip-norm", "-1"),
        ("--lr", "nan"),
        ("--lr", "1e300"),
        ("--lr", "0"),
        ("--weight-decay", "-inf"),
        ("--ema-decay", "nan"),
        ("--ema-decay", "1"),
        ("--cfg-dropout", "nan"),
    ] {
        let arg = format!("{opt}={value}");
        let r = dpm_cli(&[
            "train", "--preset", "toy2d", "--steps", "2", "--out", o, &arg,
        ]);
        assert_eq!(r.status.code(), Some(1), "{opt} {value}");
        let err = String::from_utf8_lossy(&r.stderr);
        let field = opt.trim_start_matches("--").replace('-', "_");
        assert!(err.contains(&field), "{opt} {value}: {err}");
        assert!(!out.join("checkpoint.dpm").exists(), "{opt} {value}");
    }
    let mut cfg = dpm::train::TrainConfig::preset("toy2d").unwrap();
    cfg.clip_norm = f64::NAN;
    assert!(cfg.validate().is_err());
    cfg.clip_norm = 1.0;
    assert!(cfg.validate().is_ok());
}

/// Item 3: no command writes into the folder it reads from: `make-eval` refuses an output
/// inside its validation folder (as given, or through a symlink), and the sources stay intact.
#[test]
fn make_eval_never_writes_into_its_input() {
    let root = fresh("make_eval");
    let val = root.join("val");
    for class in ["cat", "dog"] {
        std::fs::create_dir_all(val.join(class)).unwrap();
        for i in 0..2 {
            let img = image::RgbImage::from_pixel(8, 8, image::Rgb([i * 50, 10, 200]));
            img.save(val.join(class).join(format!("{class}_{i:05}.png")))
                .unwrap();
        }
    }
    let before = std::fs::read(val.join("cat/cat_00000.png")).unwrap();
    symlink(&val, root.join("link")).unwrap();
    let make_eval = |out: &Path| {
        dpm_cli(&[
            "make-eval",
            "--val",
            val.to_str().unwrap(),
            "--resolution",
            "16",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    for out in [
        val.join("cat"),
        val.clone(),
        val.join("new/sub"),
        root.join("link/cat"),
        root.join("val/../val/dog"),
    ] {
        let r = make_eval(&out);
        assert_eq!(r.status.code(), Some(1), "{}", out.display());
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains("inside the input folder"), "{err}");
    }
    assert_eq!(
        std::fs::read(val.join("cat/cat_00000.png")).unwrap(),
        before
    );
    assert!(!val.join("new").exists());
    let ok = root.join("eval");
    let r = make_eval(&ok);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read_dir(&ok).unwrap().count(), 4);
}

/// Item 9: an image that is a FIFO is refused, not waited on.
#[test]
fn an_image_fifo_is_refused() {
    let d = fresh("image_fifo");
    let fifo = d.join("x.png");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    match dpm::data::load_image(&fifo, 8) {
        Err(e) => assert!(e.to_string().contains("FIFO"), "{e}"),
        Ok(_) => panic!("a FIFO decoded"),
    }
}

/// Items 7 and 10: the FID of two folders does not depend on their order (one input size for
/// both, from both), and an extractor input size that would not fit in memory is refused.
#[test]
fn fid_is_symmetric_and_sized() {
    let root = fresh("fid_sym");
    let (a, b) = (root.join("a"), root.join("b"));
    for (dir, side, seed) in [(&a, 16u32, 1u8), (&b, 24, 7)] {
        std::fs::create_dir_all(dir).unwrap();
        for i in 0..6u8 {
            let img = image::RgbImage::from_fn(side, side, |x, y| {
                let v = (x as u8).wrapping_mul(seed).wrapping_add(y as u8 * i);
                image::Rgb([v, v.wrapping_mul(3), 255 - v])
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
    let fid = |x: &Path, y: &Path| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_dpm"))
            .arg("fid")
            .args([x, y])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        let line = s
            .lines()
            .find(|l| l.starts_with("FID:"))
            .unwrap()
            .to_string();
        assert!(s.contains("input 24 x 24"), "{s}");
        line
    };
    assert_eq!(fid(&a, &b), fid(&b, &a));
    let o = dpm_cli(&[
        "fid",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--feature-size",
        "8192",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("at most 4096"));
}

/// Item 4 through the C ABI: `dpm_generate` on a model whose finite outputs overflow the
/// solver returns DPM_ERR_NON_FINITE with a message that says so (it used to return DPM_OK
/// with every value -inf).
#[test]
fn c_generate_reports_solver_overflow() {
    use dpm::ffi::handles::*;
    use dpm::ffi::sampler::*;
    use dpm::ffi::{dpm_last_error, DPM_ERR_NON_FINITE, DPM_OK};
    let huge = write_model(
        "huge_c",
        constant_model(&[dyn_dim("B"), Dim::Fixed(2)], 2.2e36),
    );
    let mut rp = dpm_runtime_params::default();
    assert_eq!(dpm_runtime_params_init(&mut rp), DPM_OK);
    let mut rt: *mut dpm_runtime = std::ptr::null_mut();
    assert_eq!(dpm_runtime_create(&rp, &mut rt), DPM_OK);
    let path = std::ffi::CString::new(huge.to_str().unwrap()).unwrap();
    let mut m: *mut dpm_model = std::ptr::null_mut();
    assert_eq!(dpm_model_load(rt, path.as_ptr(), &mut m), DPM_OK);
    let mut sp = dpm_sampler_params::default();
    assert_eq!(dpm_sampler_params_init(&mut sp), DPM_OK);
    // A noise-prediction solver, so the huge outputs reach the state unconverted (a
    // data-prediction one stops earlier, at the conversion; see the Rust test above).
    let dpm2 = std::ffi::CString::new("dpm2").unwrap();
    assert_eq!(
        dpm_sampler_params_preset(&mut sp, dpm2.as_ptr(), 20),
        DPM_OK
    );
    let mut gp = dpm_generate_params::default();
    assert_eq!(dpm_generate_params_init(&mut gp), DPM_OK);
    gp.num_samples = 4;
    let mut out = vec![0f32; 8];
    assert_eq!(
        dpm_generate(m, &sp, &gp, out.as_mut_ptr(), out.len()),
        DPM_ERR_NON_FINITE
    );
    // SAFETY: dpm_last_error returns a NUL-terminated string valid until the next call.
    let msg = unsafe { std::ffi::CStr::from_ptr(dpm_last_error()) }
        .to_string_lossy()
        .into_owned();
    assert!(msg.contains("solver's state overflowed"), "{msg}");
    dpm_model_free(m);
    dpm_runtime_free(rt);
}
