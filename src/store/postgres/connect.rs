//! From a `postgres://` URL to a connected client: spool's own URL
//! parameters (`schema`, `sslmode=verify-ca|verify-full`, `sslrootcert`),
//! default user and host, passwords from `PGPASSWORD` or `~/.pgpass`, and TLS
//! through rustls.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::error::{Error, Result};
use crate::store::location::is_postgres_url;

/// The environment variable naming the PostgreSQL schema, when the URL has
/// no `schema=` parameter.
pub const SCHEMA_VAR: &str = "SPOOL_PG_SCHEMA";

/// The schema spool uses when none is named.
pub const DEFAULT_SCHEMA: &str = "spool";

/// How long connecting may take when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// libpq's `sslmode`, of which the client library knows only the first three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without checking its certificate.
    Prefer,
    /// TLS always, without checking the certificate.
    Require,
    /// TLS with a certificate signed by a trusted CA, for any host name.
    VerifyCa,
    /// TLS with a trusted certificate for the host connected to.
    VerifyFull,
}

/// A parsed `postgres://` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// What the client library gets (spool's own parameters removed).
    pub config: postgres::Config,
    /// The PostgreSQL schema that holds spool's tables.
    pub schema: String,
    /// How to use TLS.
    pub tls: TlsMode,
    /// CA certificates (PEM) to trust instead of the built-in roots.
    pub root_cert: Option<PathBuf>,
    /// `postgres://user@host:port/db?schema=NAME`, never with the password, for messages.
    pub display: String,
}

/// An [`Error::Open`] about the database at `display`.
pub fn open_error(display: &str, reason: impl Into<String>) -> Error {
    Error::Open {
        path: PathBuf::from(display),
        reason: reason.into(),
    }
}

/// Parses `url`, taking spool's parameters out, filling in the defaults
/// libpq users expect (user, host, password) and checking the schema name.
pub fn parse(url: &str) -> Result<Target> {
    let shown = hide_password(url);
    if !is_postgres_url(url) {
        return Err(open_error(
            &shown,
            "not a PostgreSQL URL; it should start with `postgres://`",
        ));
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut schema = None;
    let mut tls = TlsMode::Prefer;
    let mut root_cert = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = percent_decode(value);
        match key {
            "schema" => schema = Some(decoded),
            "sslrootcert" => root_cert = Some(PathBuf::from(decoded)),
            "sslmode" => tls = tls_mode(&shown, &decoded)?,
            _ => kept.push(pair),
        }
    }
    // The client library knows only these three; the verify modes are
    // `require` plus the certificate check of our TLS connector.
    kept.push(match tls {
        TlsMode::Disable => "sslmode=disable",
        TlsMode::Prefer => "sslmode=prefer",
        _ => "sslmode=require",
    });
    // libpq takes PGPORT for a host the URL gives without a port; the
    // client library would put 5432 there.
    let pgport = std::env::var("PGPORT")
        .ok()
        .filter(|p| p.parse::<u16>().is_ok());
    let base = match pgport {
        Some(port) if !kept.iter().any(|p| p.starts_with("port=")) => default_port(base, &port),
        _ => base.to_owned(),
    };
    let rebuilt = format!("{base}?{}", kept.join("&"));
    let mut config = postgres::Config::from_str(&rebuilt)
        .map_err(|e| open_error(&shown, format!("not a valid PostgreSQL URL: {e}")))?;
    fill_defaults(&mut config);
    let schema = match schema {
        Some(s) => s,
        None => std::env::var(SCHEMA_VAR).unwrap_or_else(|_| DEFAULT_SCHEMA.to_owned()),
    };
    check_schema_name(&shown, &schema)?;
    if config.get_password().is_none()
        && let Some(password) = find_password(&config)
    {
        config.password(password);
    }
    let display = display(&config, &schema);
    Ok(Target {
        config,
        schema,
        tls,
        root_cert,
        display,
    })
}

/// `base` (a URL without its query) with `:port` after each host that
/// has none. A URL without a host (`postgres:///db`) is left alone: then
/// PGHOST and PGPORT apply later, in [`fill_defaults`].
fn default_port(base: &str, port: &str) -> String {
    let Some((scheme, rest)) = base.split_once("://") else {
        return base.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (user, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    if hosts.is_empty() {
        return base.to_owned();
    }
    let hosts: Vec<String> = hosts
        .split(',')
        .map(|host| {
            let has_port = match host.strip_prefix('[') {
                Some(v6) => v6.contains("]:"),
                None => host.contains(':'),
            };
            if has_port || host.is_empty() {
                host.to_owned()
            } else {
                format!("{host}:{port}")
            }
        })
        .collect();
    format!("{scheme}://{user}{}{path}", hosts.join(","))
}

fn tls_mode(shown: &str, value: &str) -> Result<TlsMode> {
    Ok(match value {
        "disable" => TlsMode::Disable,
        "prefer" | "allow" => TlsMode::Prefer,
        "require" => TlsMode::Require,
        "verify-ca" => TlsMode::VerifyCa,
        "verify-full" => TlsMode::VerifyFull,
        _ => {
            return Err(open_error(
                shown,
                format!(
                    "unknown sslmode `{value}`. Use one of disable, prefer, require, verify-ca, verify-full"
                ),
            ));
        }
    })
}

/// Schema names are plain lowercase identifiers, short enough that the
/// notification channel `spool_<schema>` stays within PostgreSQL's 63 bytes.
fn check_schema_name(shown: &str, schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && schema.len() <= 57 && !schema.starts_with("pg_") {
        return Ok(());
    }
    Err(open_error(
        shown,
        format!(
            "invalid schema name `{schema}`: use 1 to 57 lowercase letters, digits and `_`, starting with a letter or `_` (and not with `pg_`)"
        ),
    ))
}

/// User, host and timeouts as libpq would pick them when the URL is silent.
fn fill_defaults(config: &mut postgres::Config) {
    if config.get_user().is_none() {
        let user = ["PGUSER", "USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "postgres".to_owned());
        config.user(&user);
    }
    if config.get_hosts().is_empty() {
        let host = std::env::var("PGHOST").unwrap_or_else(|_| "localhost".to_owned());
        config.host(&host);
    }
    if config.get_ports().is_empty()
        && let Some(port) = std::env::var("PGPORT").ok().and_then(|p| p.parse().ok())
    {
        config.port(port);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("spool");
    }
}

/// The first host and port: where the client connects.
fn host_port(config: &postgres::Config) -> (String, u16) {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => String::new(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

/// The URL as messages show it: user, host, port, database and schema.
fn display(config: &postgres::Config, schema: &str) -> String {
    let user = config.get_user().unwrap_or("");
    let (host, port) = host_port(config);
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}?schema={schema}")
}

/// How messages name the database at `url`: as [`Target::display`] when the
/// URL parses, else the URL with its password hidden. Never the password.
pub fn display_url(url: &str) -> String {
    parse(url).map_or_else(|_| hide_password(url), |t| t.display)
}

/// `url` with any password replaced by `***`, for messages about a URL that
/// could not be parsed.
pub fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Undoes `%XX` escapes and `+` for a space.
fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&crate::parse::percent_decoded(s, true)).into_owned()
}

/// `PGPASSWORD`, else the first matching line of `PGPASSFILE` or `~/.pgpass`.
fn find_password(config: &postgres::Config) -> Option<String> {
    if let Ok(p) = std::env::var("PGPASSWORD") {
        return Some(p);
    }
    let file = match std::env::var_os("PGPASSFILE") {
        Some(f) => PathBuf::from(f),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let (host, port) = host_port(config);
    let user = config.get_user()?;
    let db = config.get_dbname().unwrap_or(user);
    pgpass_lookup(&file, [&host, &port.to_string(), db, user])
}

/// Looks `host:port:db:user` up in a pgpass file. Like libpq, ignores a
/// file that others can read.
pub(crate) fn pgpass_lookup(file: &Path, wanted: [&str; 4]) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_pgpass(line);
            let [h, p, d, u, password] = fields.as_slice() else {
                return None;
            };
            let matches = [h, p, d, u]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field.as_str() == "*" || field.as_str() == want);
            matches.then(|| password.clone())
        })
}

/// Splits a pgpass line at unescaped colons, undoing `\:` and `\\`.
fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next()
                    && let Some(last) = fields.last_mut()
                {
                    last.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(last) = fields.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    fields
}

/// Opens a connection to `target`, TLS as its mode says, and starts the task
/// that drives it. Failures name the server but never the password.
pub fn connect(target: &Target) -> Result<postgres::Client> {
    let tls = tls_connector(target)?;
    let mut config = target.config.clone();
    if target.tls == TlsMode::Disable {
        config.ssl_mode(SslMode::Disable);
    }
    config
        .connect(tls)
        .map_err(|e| open_error(&target.display, connect_reason(&e)))
}

fn connect_reason(err: &postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!(
            "the server refused the connection: {} ({})",
            db.message(),
            db.code().code()
        );
    }
    let reason = super::causes(err);
    format!(
        "cannot connect ({reason}). Check that PostgreSQL runs there and accepts connections, and the URL's host, port, user and password"
    )
}

/// A rustls connector: for `verify-*` modes one that checks the server's
/// certificate against `sslrootcert` (or `~/.postgresql/root.crt`, else the
/// Mozilla roots); otherwise one that encrypts without checking, as libpq's
/// `require` and `prefer` do.
fn tls_connector(target: &Target) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| open_error(&target.display, format!("cannot set up TLS: {e}")))?;
    let webpki = match target.tls {
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let roots = Arc::new(root_store(target)?);
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots,
                provider.clone(),
            )
            .build()
            .map_err(|e| open_error(&target.display, format!("cannot set up TLS: {e}")))?;
            Some(webpki)
        }
        _ => None,
    };
    let verifier = Verifier {
        webpki,
        check_name: target.tls == TlsMode::VerifyFull,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(target: &Target) -> Result<RootCertStore> {
    let default_file = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
        .filter(|p| p.exists());
    let Some(file) = target.root_cert.clone().or(default_file) else {
        return Ok(RootCertStore::from_iter(
            webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
        ));
    };
    let unreadable = |e: &dyn std::fmt::Display| {
        open_error(
            &target.display,
            format!(
                "cannot read the CA certificates in `{}`: {e}",
                file.display()
            ),
        )
    };
    let mut store = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&file).map_err(|e| unreadable(&e))?;
    for cert in certs {
        let cert = cert.map_err(|e| unreadable(&e))?;
        store.add(cert).map_err(|e| unreadable(&e))?;
    }
    if store.is_empty() {
        return Err(unreadable(&"the file holds no certificate"));
    }
    Ok(store)
}

/// Checks the server certificate as the TLS mode asks: not at all, against
/// trusted roots, or against the roots and the host name.
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    check_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::default_port;

    #[test]
    fn pgport_goes_after_every_host_that_names_no_port() {
        let cases = [
            ("postgres://u@db/test", "postgres://u@db:6000/test"),
            ("postgres://u:p%40ss@db", "postgres://u:p%40ss@db:6000"),
            ("postgres://db:5433/test", "postgres://db:5433/test"),
            ("postgres://a,b:7000/test", "postgres://a:6000,b:7000/test"),
            ("postgres://[::1]/test", "postgres://[::1]:6000/test"),
            ("postgres://[::1]:5433/test", "postgres://[::1]:5433/test"),
            ("postgres:///test", "postgres:///test"),
            ("postgres://u@/test", "postgres://u@/test"),
        ];
        for (url, want) in cases {
            assert_eq!(default_port(url, "6000"), want, "{url}");
        }
    }
}
