//! TLS to PostgreSQL. On when the URL says `sslmode=require` or `jobs.tls_ca_file` is
//! set; the server certificate is always verified (host name included) against the
//! system's roots plus that file, so `require` here means what libpq calls
//! `verify-full`. Other modes (`disable`, and the default `prefer`) connect in plain
//! text, as a local or private-network server usually expects.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::jobs::JobStoreError;

/// How connections are made: plain, or TLS with this client configuration.
#[derive(Clone)]
pub(super) enum Tls {
    Plain,
    Verified(MakeRustlsConnect),
}

/// The connector `config` asks for; with `ca_file`, TLS is required.
pub(super) fn connector(config: &mut Config, ca_file: Option<&Path>) -> Result<Tls, JobStoreError> {
    if ca_file.is_some() {
        config.ssl_mode(SslMode::Require);
    }
    if config.get_ssl_mode() != SslMode::Require {
        return Ok(Tls::Plain);
    }
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are not fatal while another root can still verify.
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "skipping a system CA certificate source");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let ca = crate::tls::read_ca_file(path).map_err(|e| JobStoreError::Other(format!("jobs.tls_ca_file {e}")))?;
        for cert in ca.certs {
            roots
                .add(cert)
                .map_err(|e| JobStoreError::Other(format!("jobs.tls_ca_file {}: {e}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(JobStoreError::Other(
            "sslmode=require but no CA certificate to verify the server with: set jobs.tls_ca_file".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| JobStoreError::Other(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Tls::Verified(MakeRustlsConnect::new(client)))
}

/// One connection outside the pool (bootstrap), its driver running in the background.
pub(super) async fn connect(config: &Config, tls: &Tls) -> Result<Client, tokio_postgres::Error> {
    let client = match tls {
        Tls::Plain => {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(drive(connection));
            client
        }
        Tls::Verified(make) => {
            let (client, connection) = config.connect(make.clone()).await?;
            tokio::spawn(drive(connection));
            client
        }
    };
    Ok(client)
}

async fn drive<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "bootstrap connection ended with an error");
    }
}
