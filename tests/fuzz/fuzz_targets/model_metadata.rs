//! The readers of model metadata: the `dpm.*` key/value pairs of an ONNX model (one
//! `key=value` per line), the JSON manifest of a bundled network (input starting with `{`),
//! and the scan of an ONNX file for the external weight files it names (input starting with
//! a byte below 0x20 other than a line break, as serialized ONNX models do).
#![no_main]

use std::path::Path;

use dpm::model::{parse_metadata, schedule_from_metadata, MAX_CLASSES};
use dpm::runtime::external_data_files;
use dpm::train::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.first().is_some_and(|&b| b < 0x20 && b != b'\n') {
        for f in external_data_files(data) {
            assert!(
                f.is_empty()
                    || data.windows(f.len()).any(|w| w == f.as_bytes())
                    || f.contains('\u{fffd}')
            );
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.starts_with('{') {
        if let Ok(m) = Manifest::parse(text, Path::new("."), Path::new("fuzz.json")) {
            let _ = m.total_len();
        }
        return;
    }
    let md: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Ok((_, classes)) = parse_metadata(&md) {
        assert!(classes.is_none_or(|k| k <= MAX_CLASSES));
    }
    if let Ok(s) = schedule_from_metadata(&md) {
        // An accepted schedule is usable: finite, decreasing noise levels.
        let (l0, l1) = (s.lambda(0.0), s.lambda(s.t_max()));
        let (a1, s1) = (s.alpha(s.t_max()), s.sigma(s.t_max()));
        assert!(
            [l0, l1, a1, s1].iter().all(|v| v.is_finite()),
            "{l0} {l1} {a1} {s1}"
        );
        assert!(l1 < l0);
    }
});
