//! The checkpoint reader on arbitrary bytes: never panics, and what it accepts round-trips.
//! Each input is tried as it is and with a valid CRC-32 trailer appended, so the fuzzer also
//! reaches the header and tensor parsing behind the checksum.
#![no_main]

use std::path::Path;

use dpm::train::Checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.dpm");
    let _ = Checkpoint::from_bytes(data, path);
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    if let Ok(c) = Checkpoint::from_bytes(&sealed, path) {
        assert_eq!(c.state.len(), c.header.sets);
        assert!(c.state.iter().all(|s| s.len() == c.header.values));
        assert_eq!(c.losses.len(), c.header.losses);
        let bytes = c.to_bytes().expect("an accepted checkpoint serialises");
        let again = Checkpoint::from_bytes(&bytes, path).expect("its own bytes load");
        assert_eq!(again.to_bytes().expect("serialises"), bytes);
    }
});
