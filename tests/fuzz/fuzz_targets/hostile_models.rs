//! ONNX models built from the input, as a hostile or careless exporter could make them: odd
//! and huge dims (0, dynamic, 2^31, products that wrap), odd element types, a fixed batch,
//! outputs with NaN, infinities or values that overflow the solver, external data named in the
//! main graph or inside an `If` branch, pointing at regular files, folders, FIFOs, symlinks
//! out of the folder or past a file's end. Each model is written to a scratch folder, loaded,
//! and when it loads, sampled. Checked: no panic, no abort, no hang (every input is small and
//! refused or run in a few evaluations), memory bounded by libFuzzer's RSS limit; a model
//! that loads gives finite samples or an error.
#![no_main]

#[path = "../../common/onnx_gen.rs"]
mod onnx_gen;

use std::path::PathBuf;
use std::sync::OnceLock;

use dpm::model::OnnxModel;
use dpm::runtime::{Runtime, RuntimeOptions};
use libfuzzer_sys::fuzz_target;
use onnx_gen::*;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn pick<T: Clone>(&mut self, v: &[T]) -> T {
        v[self.u8() as usize % v.len()].clone()
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

fn rt() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::new(&RuntimeOptions {
            intra_threads: 1,
            ..Default::default()
        })
        .expect("ONNX Runtime (run scripts/setup)")
    })
}

/// The scratch folder: weights, a folder, a FIFO and links, made once.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("dpm-fuzz-hostile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("model/adir")).expect("scratch folder");
        let w: Vec<u8> = [2.0f32, 3.0, -1.0, 0.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(d.join("model/w.bin"), &w).expect("weights");
        std::fs::write(d.join("outside.bin"), &w).expect("weights");
        let _ = std::os::unix::fs::symlink(d.join("outside.bin"), d.join("model/out_link.bin"));
        let _ = std::os::unix::fs::symlink("/dev/zero", d.join("model/zero.bin"));
        let _ = std::process::Command::new("mkfifo")
            .arg(d.join("model/fifo.bin"))
            .status();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let dims_choice = [
        vec![dyn_dim("B"), Dim::Fixed(2)],
        vec![Dim::Fixed(4), Dim::Fixed(2)],
        vec![Dim::Fixed(3), Dim::Fixed(2)],
        vec![dyn_dim("B"), Dim::Fixed(0)],
        vec![dyn_dim("B"), dyn_dim("n")],
        vec![dyn_dim("B"), Dim::Fixed(1 << 31)],
        vec![
            dyn_dim("B"),
            Dim::Fixed(3),
            Dim::Fixed(0x5555_5555_5555_5556),
        ],
        vec![dyn_dim("B"), Dim::Fixed(3), Dim::Fixed(2), Dim::Fixed(2)],
        vec![dyn_dim("B")],
        vec![],
    ];
    let values = [
        0.5f32,
        f32::NAN,
        f32::INFINITY,
        2.2e36,
        1e38,
        -1e37,
        f32::MIN_POSITIVE,
    ];
    let kind = inp.u8() % 4;
    let bytes = match kind {
        0 => {
            let dims = inp.pick(&dims_choice);
            let c = if inp.u8() % 3 == 0 {
                f32::from_bits(inp.u32())
            } else {
                inp.pick(&values)
            };
            constant_model(&dims, c)
        }
        1 => identity_model(&inp.pick(&dims_choice)),
        _ => {
            let location = inp.pick(&[
                "w.bin",
                "../outside.bin",
                "out_link.bin",
                "zero.bin",
                "fifo.bin",
                "adir",
                "missing.bin",
                "",
                "/etc/hostname",
            ]);
            let offset = inp.pick(&["0", "4", "8", "16", "-1", "18446744073709551615", "x"]);
            let length = inp.pick(&["8", "16", "0", "4", "99999999999"]);
            let dims: Vec<i64> = inp.pick(&[vec![2], vec![1, 2], vec![1 << 40], vec![-2], vec![]]);
            let elem = inp.pick(&[FLOAT, INT64, DOUBLE, 8, 999]);
            let mut entries = vec![("location", location), ("offset", offset)];
            if inp.u8() % 2 == 0 {
                entries.push(("length", length));
            }
            let w = tensor_external("W", elem, &dims, &entries);
            if kind == 2 {
                mul_model(w)
            } else {
                if_branch_model(w)
            }
        }
    };
    // A few bytes of damage now and then: models that are not quite protobuf.
    let mut bytes = bytes;
    if inp.u8() % 8 == 0 && !bytes.is_empty() {
        let at = inp.u32() as usize % bytes.len();
        bytes[at] ^= inp.u8().max(1);
        bytes.truncate(bytes.len() - (inp.u8() as usize % 4).min(bytes.len()));
    }
    let path = scratch().join("model").join("m.onnx");
    std::fs::write(&path, &bytes).expect("write the model");
    let Ok(mut model) = OnnxModel::load(rt(), &path) else {
        return;
    };
    let info = model.info().clone();
    assert!(info.dim() > 0 && info.dim() <= dpm::solver::MAX_BATCH_VALUES);
    let num = 1 + inp.u8() as usize % 5;
    let Ok(mut out) = dpm::generate::output_buffer(num, info.dim()) else {
        return;
    };
    let solver = inp.pick(&["dpm2", "dpm++2m", "ddim", "adaptive23", "dpm3"]);
    let Ok(cfg) = dpm::solver::SolverConfig::parse(solver, 3) else {
        return;
    };
    let req = dpm::generate::Request {
        solver: cfg,
        guidance: None,
        num,
        batch: 1 + inp.u8() as usize % 4,
        seed: u64::from(inp.u8()),
        first_index: 0,
        labels: None,
        latents: None,
        init_image: None,
        known: None,
        mask: None,
    };
    // Adaptive runs are bounded by their max NFE; stop any run after 200 evaluations anyway.
    let mut evals = 0;
    if model
        .generate(&req, &mut out, |_| {
            evals += 1;
            evals < 200
        })
        .is_ok()
    {
        assert!(
            out.iter().all(|v| v.is_finite()),
            "a finished run gave non-finite samples"
        );
    }
});
