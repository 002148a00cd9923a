//! The `dpm` command-line tool: sampling, model inspection and the demo.
#![deny(unsafe_code)]

mod cli;

fn main() {
    if let Err(e) = cli::run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
