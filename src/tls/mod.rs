//! TLS for the listeners: the viewer listener (wss, https), the admin
//! listener, and QUIC, all through rustls with the ring provider.
//!
//! * [`certs`]: certificates from PEM files, swapped in place on SIGHUP.
//! * [`socket`]: a TLS subscriber socket for the WebSocket connection loop.
//! * [`listener`]: the admin listener's TLS handshakes, off the accept path.
//!
//! TLS is off by default on the TCP listeners: deployments usually end it at
//! the load balancer (deploy/nginx). Turned on, every connection resolves its
//! certificate when it starts, so a reload takes effect for new connections
//! and leaves established ones as they are.

pub mod certs;
pub mod listener;

use std::sync::Arc;

pub use certs::CertStore;

use crate::metrics::Metrics;

/// The rustls configuration for TCP listeners: TLS 1.3 and 1.2 (older
/// WebViews), the certificate from `store`, HTTP/1.1 only (WebSocket upgrades
/// need it).
pub fn tcp_server_config(store: Arc<CertStore>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reloads every store from its files at each SIGHUP, for as long as the
/// server runs. A SIGHUP with no files configured is logged and harmless
/// (its default action would have ended the process).
pub async fn reload_on_sighup(mut sighup: tokio::signal::unix::Signal, stores: Vec<Arc<CertStore>>, metrics: Metrics) {
    while sighup.recv().await.is_some() {
        if stores.is_empty() {
            tracing::info!("SIGHUP: no certificate files to reload");
        }
        for store in &stores {
            match store.reload() {
                Ok(false) => {}
                Ok(true) => {
                    metrics.tls_reloads_ok.increment(1);
                    tracing::info!(listener = store.name(), "SIGHUP: certificate reloaded");
                    println!("bullhorn: {} certificate reloaded", store.name());
                }
                Err(error) => {
                    metrics.tls_reloads_failed.increment(1);
                    tracing::error!(
                        listener = store.name(),
                        error = format!("{error:#}"),
                        "SIGHUP: certificate reload failed; the current one stays"
                    );
                }
            }
        }
    }
}
