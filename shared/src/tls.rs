//! CA files for TLS to the backends (PostgreSQL, RabbitMQ): read once at start, so a
//! wrong path or a file without certificates fails with a clear message, not later
//! as an opaque handshake error.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The certificates of a PEM file, and its text (which lapin takes as is).
pub struct CaFile {
    pub pem: String,
    pub certs: Vec<CertificateDer<'static>>,
}

/// Reads `path`; the error names the file and says what is wrong with it.
pub fn read_ca_file(path: &Path) -> Result<CaFile, String> {
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(CaFile { pem, certs })
}

/// `message` with a hint when it is a certificate signed by a CA nobody configured.
pub fn hint_unknown_issuer(message: String, setting: &str) -> String {
    if message.contains("UnknownIssuer") {
        format!("{message} (if the server's certificate comes from a private CA, set {setting} to its PEM file)")
    } else {
        message
    }
}
