//! The `bullhorn` binary: parse configuration, raise the open-file limit,
//! run one node until SIGINT/SIGTERM, drain, exit 0.

use std::process::ExitCode;

use bullhorn::cli::Cli;
use bullhorn::shutdown::shutdown_signal;
use bullhorn::{Config, Server};
use clap::Parser as _;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Cli::parse().into_serve_args();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::load(&args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("bullhorn: {error}");
            return ExitCode::from(2);
        }
    };
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bullhorn: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let signal = shutdown_signal()?;
        let server = Server::bind(config).await?;
        println!("bullhorn: viewer listening on {}://{}", server.viewer_scheme(), server.viewer_addr());
        println!("bullhorn: admin listening on {}://{}", server.admin_scheme(), server.admin_addr());
        println!("bullhorn: quic listening on {} (ALPN bullhorn/1)", server.quic_addr());
        if let Some(fingerprint) = server.dev_cert_fingerprint() {
            println!("bullhorn: self-signed certificate for localhost, SHA-256 {fingerprint} (also in the data dir, dev-cert.sha256)");
        }
        server.run(signal).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bullhorn: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft open-file limit to the hard limit: every subscriber is a socket.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-file limit raised to the hard limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
}
