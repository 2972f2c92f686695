//! `pidwarden-remediator`: see the library crate for what it does.
#![forbid(unsafe_code)]

use clap::Parser as _;

fn main() {
    let cli = pidwarden_remediator::cli::Cli::parse();
    pidwarden_remediator::cli::init_tracing(cli.log_format);
    match pidwarden_remediator::cli::run(cli) {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("pidwarden-remediator: {e:#}");
            std::process::exit(1);
        }
    }
}
