//! AWS Signature Version 4, checked on the server: the key pairs of
//! `--sqs-credentials`, the canonical request rebuilt from what arrived
//! (method, path, query, the signed headers, the body's SHA-256), and the
//! signature compared in constant time. The signing region is taken from
//! the request's credential scope; the service must be `sqs`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use axum::http::{HeaderMap, Method};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::errors::SqsError;
use crate::error::Failure;

/// How far a request's signing time may be from the server's clock.
const SKEW_MS: i64 = 15 * 60 * 1000;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Signing keys kept at most (one per key pair, day and region in use).
const MAX_SIGNING_KEYS: usize = 64;

/// The key pairs requests may be signed with, and the signing keys derived
/// from them so far: a key serves a whole day of one region, and deriving
/// it takes four HMACs.
pub struct Credentials {
    pairs: Vec<(String, Vec<u8>)>,
    signing_keys: Mutex<HashMap<(String, String, String), Vec<u8>>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} hidden)", self.pairs.len())
    }
}

impl Credentials {
    /// Reads a credentials file: lines `ACCESS_KEY_ID SECRET`; blank lines
    /// and lines that start with `#` are skipped. A file that cannot be
    /// read, a line that is not a pair, or a file without any pair is
    /// refused (exit 2).
    pub fn load(path: &Path) -> anyhow::Result<Credentials> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the SQS credentials file {}", path.display()))
            .map_err(|e| Failure::usage(format!("{e:#}")))?;
        Credentials::parse(&text).map_err(|e| {
            Failure::usage(format!("the SQS credentials file {}: {e}", path.display())).into()
        })
    }

    fn parse(text: &str) -> Result<Credentials, String> {
        let mut pairs = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(id), Some(secret), None) => {
                    pairs.push((id.to_owned(), secret.as_bytes().to_vec()));
                }
                _ => {
                    return Err(format!(
                        "line {} is not `ACCESS_KEY_ID SECRET` (two words)",
                        number + 1
                    ));
                }
            }
        }
        if pairs.is_empty() {
            return Err(
                "holds no key pair: write one `ACCESS_KEY_ID SECRET` per line (`#` starts a comment)"
                    .into(),
            );
        }
        Ok(Credentials {
            pairs,
            signing_keys: Mutex::new(HashMap::new()),
        })
    }

    /// The signing key of `auth`'s key pair, day and region (`None`: an
    /// unknown access key).
    fn signing_key(&self, auth: &Authorization<'_>) -> Option<Vec<u8>> {
        let secret = self.secret(auth.access_key)?;
        let id = (
            auth.access_key.to_owned(),
            auth.date.to_owned(),
            auth.region.to_owned(),
        );
        let mut keys = self.signing_keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = keys.get(&id) {
            return Some(key.clone());
        }
        let key = signing_key(secret, auth.date, auth.region, auth.service);
        if keys.len() >= MAX_SIGNING_KEYS {
            keys.clear();
        }
        keys.insert(id, key.clone());
        Some(key)
    }

    fn secret(&self, id: &str) -> Option<&[u8]> {
        // The ids are not secret; the secrets never leave this function's
        // caller, which compares signatures in constant time.
        self.pairs
            .iter()
            .find(|(known, _)| known == id)
            .map(|(_, s)| s.as_slice())
    }
}

/// What a signature covers.
pub struct Request<'a> {
    /// The request's method.
    pub method: &'a Method,
    /// Its path as sent (still percent-encoded).
    pub path: &'a str,
    /// Its query as sent, if any.
    pub query: Option<&'a str>,
    /// Its headers.
    pub headers: &'a HeaderMap,
    /// Its body.
    pub body: &'a [u8],
    /// The server's time, ms since the epoch.
    pub now_ms: i64,
}

/// What a good signature tells: the region it was made for.
#[derive(Debug, Clone)]
pub struct Signer {
    /// The region of the credential scope.
    pub region: String,
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, SqsError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            SqsError::incomplete(format!(
                "Authorization header must use the {ALGORITHM} algorithm (SigV4)"
            ))
        })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let missing = |what: &str| {
        SqsError::incomplete(format!("Authorization header requires '{what}' parameter"))
    };
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = scope[..] else {
        return Err(SqsError::incomplete(format!(
            "Credential must be ACCESS_KEY/DATE/REGION/SERVICE/aws4_request, not `{credential}`"
        )));
    };
    if terminator != "aws4_request" {
        return Err(SqsError::bad_signature(
            "Credential should be scoped with a valid terminator: 'aws4_request'",
        ));
    }
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// Checks a request's SigV4 signature against the key pairs.
pub fn verify(credentials: &Credentials, req: &Request<'_>) -> Result<Signer, SqsError> {
    if query_signed(req.query) {
        return Err(SqsError::unsupported(
            "presigned requests (X-Amz-Signature in the query) are not supported: sign the Authorization header",
        ));
    }
    let value = req
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(SqsError::unsigned)?;
    let value = value
        .to_str()
        .map_err(|_| SqsError::incomplete("Authorization header is not ASCII"))?;
    let auth = parse_authorization(value)?;
    if credentials.secret(auth.access_key).is_none() {
        return Err(SqsError::unknown_key());
    }
    let amz_date = header_text(req.headers, "x-amz-date").ok_or_else(|| {
        SqsError::incomplete("the request needs an X-Amz-Date header (YYYYMMDDTHHMMSSZ)")
    })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        SqsError::incomplete(format!(
            "X-Amz-Date `{amz_date}` is not of the form YYYYMMDDTHHMMSSZ"
        ))
    })?;
    if (signed_at - req.now_ms).abs() > SKEW_MS {
        return Err(SqsError::expired(format!(
            "Request has expired: signed at {amz_date}, more than 15 minutes from the server's time"
        )));
    }
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(SqsError::bad_signature(format!(
            "Date in Credential scope does not match YYYYMMDD from X-Amz-Date: `{}` against `{amz_date}`",
            auth.date
        )));
    }
    if auth.service != "sqs" {
        return Err(SqsError::bad_signature(format!(
            "Credential should be scoped to correct service: 'sqs', not `{}`",
            auth.service
        )));
    }
    let canonical = canonical_request(req, &auth.signed_headers);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    // The service is `sqs` (checked above), so it need not be in the
    // cache's key.
    let key = credentials
        .signing_key(&auth)
        .ok_or_else(SqsError::unknown_key)?;
    let expected = hex(&hmac(&key, to_sign.as_bytes()));
    if !bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        return Err(SqsError::bad_signature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(Signer {
        region: auth.region.to_owned(),
    })
}

fn query_signed(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("X-Amz-Signature"))
    })
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `20250102T030405Z` as ms since the epoch.
fn parse_amz_date(text: &str) -> Option<i64> {
    let dt = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", text).ok()?;
    let at = jiff::tz::TimeZone::UTC.to_timestamp(dt).ok()?;
    Some(at.as_millisecond())
}

/// The canonical request of SigV4: method, path, query, signed headers and
/// the body's hash, one per line.
fn canonical_request(req: &Request<'_>, signed: &[&str]) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(req.method.as_str());
    out.push('\n');
    // Services other than S3 sign the path encoded once more.
    out.push_str(&uri_encode(
        if req.path.is_empty() { "/" } else { req.path },
        false,
    ));
    out.push('\n');
    out.push_str(&canonical_query(req.query.unwrap_or("")));
    out.push('\n');
    for name in signed {
        out.push_str(name);
        out.push(':');
        let values: Vec<String> = req
            .headers
            .get_all(*name)
            .iter()
            .map(|v| collapse_spaces(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed.join(";"));
    out.push('\n');
    out.push_str(&hex(&Sha256::digest(req.body)));
    out
}

fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The query's pairs decoded, encoded again the SigV4 way and sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode(text: &str) -> String {
    String::from_utf8_lossy(&crate::parse::percent_decoded(text, false)).into_owned()
}

/// Percent-encodes all but the unreserved characters (and `/` unless
/// `slash`), upper-case hex, as SigV4 does.
fn uri_encode(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // An HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn signing_key(secret: &[u8], date: &str, region: &str, service: &str) -> Vec<u8> {
    let mut first = b"AWS4".to_vec();
    first.extend_from_slice(secret);
    let k_date = hmac(&first, date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the SigV4 documentation's test suite ("get-vanilla"):
    /// its key, its request, its signature.
    #[test]
    fn the_documented_example_verifies() {
        let credentials =
            Credentials::parse("AKIDEXAMPLE wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n")
                .expect("pair");
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().expect("h"));
        headers.insert("x-amz-date", "20150830T123600Z".parse().expect("h"));
        let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        headers.insert("authorization", auth.parse().expect("h"));
        let now_ms = parse_amz_date("20150830T123600Z").expect("date");
        let req = Request {
            method: &Method::GET,
            path: "/",
            query: None,
            headers: &headers,
            body: b"",
            now_ms,
        };
        let parsed = parse_authorization(auth).expect("parsed");
        let canonical = canonical_request(&req, &parsed.signed_headers);
        let scope = "20150830/us-east-1/service/aws4_request";
        let to_sign = format!(
            "{ALGORITHM}\n20150830T123600Z\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let key = signing_key(
            b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "service",
        );
        assert_eq!(
            hex(&hmac(&key, to_sign.as_bytes())),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        // The service is not `sqs`: refused as SQS refuses it.
        let refused = verify(&credentials, &req).expect_err("not sqs");
        assert_eq!(refused.code, "SignatureDoesNotMatch");
    }

    #[test]
    fn credential_files_hold_pairs() {
        assert!(Credentials::parse("# none\n\n").is_err());
        assert!(Credentials::parse("only-one-word\n").is_err());
        assert!(Credentials::parse("a b c\n").is_err());
        let c = Credentials::parse("# ops\nAKID1 s3cret\n  AKID2\tother  \n").expect("pairs");
        assert_eq!(c.secret("AKID1"), Some(&b"s3cret"[..]));
        assert_eq!(c.secret("AKID2"), Some(&b"other"[..]));
        assert_eq!(c.secret("AKID3"), None);
    }

    #[test]
    fn encoding_follows_sigv4() {
        assert_eq!(uri_encode("/a b/~x", false), "/a%20b/~x");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(percent_decode("%41%zz"), "A%zz");
        assert!(parse_amz_date("20250102T030405Z").is_some());
        assert!(parse_amz_date("2025-01-02").is_none());
    }
}
