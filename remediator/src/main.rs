//! `pidwarden-remediator`: see the library crate for what it does.
#![forbid(unsafe_code)]

use clap::Parser as _;

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = pidwarden_remediator::cli::Cli::parse();
    if let Err(e) = pidwarden_remediator::cli::run(cli) {
        eprintln!("pidwarden-remediator: {e:#}");
        std::process::exit(1);
    }
}
