//! TLS for `spool serve --tls-cert FILE --tls-key FILE`: the certificate
//! chain and private key read from PEM files into a rustls server
//! configuration (ring, TLS 1.2 and 1.3, HTTP/1.1 by ALPN).
//!
//! Everything that can be wrong with the files (missing, unreadable, not
//! PEM, no certificate, no key, a key that does not belong to the
//! certificate) is found here, before the server listens, and is a usage
//! error (exit 2) naming the file.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::Failure;

/// Reads the certificate chain and the key and builds the acceptor that
/// wraps each accepted connection.
pub fn acceptor(cert: &Path, key_path: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain = certificates(cert)?;
    let key = private_key(key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::usage(format!("cannot set up TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| mismatch(cert, key_path, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The certificates of a PEM file, the server's own first.
fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| unreadable("certificate", path, &e))?;
    if chain.is_empty() {
        return Err(Failure::usage(format!(
            "no certificate in `{}`. Pass a PEM file with a `BEGIN CERTIFICATE` block",
            path.display()
        ))
        .into());
    }
    Ok(chain)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => Failure::usage(format!(
            "no private key in `{}`. Pass a PEM file with a `BEGIN PRIVATE KEY` block",
            path.display()
        ))
        .into(),
        e => unreadable("key", path, &e),
    })
}

/// A key rustls refuses with this certificate: most often one of another
/// certificate.
fn mismatch(cert: &Path, key: &Path, e: &rustls::Error) -> anyhow::Error {
    let why = match e {
        rustls::Error::InconsistentKeys(_) => "it does not belong to this certificate".to_owned(),
        e => e.to_string(),
    };
    Failure::usage(format!(
        "cannot use the TLS key `{}` with the certificate `{}`: {why}. Pass the key the certificate was made for",
        key.display(),
        cert.display()
    ))
    .into()
}

fn unreadable(what: &str, path: &Path, e: &pem::Error) -> anyhow::Error {
    let why = match e {
        pem::Error::Io(e) => e.to_string(),
        e => format!("not a valid PEM file ({e})"),
    };
    Failure::usage(format!(
        "cannot read the TLS {what} `{}`: {why}",
        path.display()
    ))
    .into()
}
