//! Image decoding of the data loader (PNG, JPEG, whatever the format sniffing accepts) on
//! arbitrary bytes, resized to a resolution taken from the first byte: never panics, and a
//! decoded image has the asked-for size with every value in [-1, 1].
#![no_main]

use std::path::Path;

use dpm::data::images::decode_image;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&r, bytes)) = data.split_first() else {
        return;
    };
    let resolution = usize::from(r % 64) + 1;
    if let Ok(px) = decode_image(bytes, Path::new("fuzz"), resolution) {
        assert_eq!(px.len(), 3 * resolution * resolution);
        assert!(px.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
});
