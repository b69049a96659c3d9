//! `spool serve --sqs`: its arguments and the loopback rule. The protocol
//! itself is driven by boto3 and the `aws` command line in `tests/sqs/`
//! (pytest, run by `tests/sqs/run.sh` in CI).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;

use crate::common::Env;

fn credentials(env: &Env, text: &str) -> String {
    let path = env.dir.path().join("sqs-credentials");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn sqs_needs_credentials() {
    let env = Env::new();
    env.run(&["serve", "--sqs"])
        .code(2)
        .stderr_has("--sqs-credentials");
    let missing = env
        .dir
        .path()
        .join("nowhere")
        .to_string_lossy()
        .into_owned();
    env.run(&["serve", "--sqs", "--sqs-credentials", &missing])
        .code(2)
        .stderr_has("cannot read the SQS credentials file");
    let empty = credentials(&env, "# nothing here\n");
    env.run(&["serve", "--sqs", "--sqs-credentials", &empty])
        .code(2)
        .stderr_has("holds no key pair");
    let bad = credentials(&env, "AKID only\nAKID2\n");
    env.run(&["serve", "--sqs", "--sqs-credentials", &bad])
        .code(2)
        .stderr_has("line 2");
    // Credentials without --sqs are a mistake too.
    let good = credentials(&env, "AKID secret\n");
    env.run(&["serve", "--sqs-credentials", &good]).code(2);
    // Beyond loopback without any authentication: refused, naming both ways.
    env.run(&["serve", "--listen", "0.0.0.0:0"])
        .code(2)
        .stderr_has("--sqs-credentials");
}

/// With SQS credentials only, spool serve may listen beyond loopback; its
/// native API, which no one could authenticate to, answers 401.
#[test]
fn sqs_credentials_open_other_addresses_but_not_the_native_api() {
    let env = Env::new();
    let good = credentials(&env, "AKID secret\n");
    let mut child = env
        .cmd()
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--sqs",
            "--sqs-credentials",
            &good,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("spool: listening on http://")
                .and_then(|a| a.rsplit(':').next().map(str::to_owned))
        })
        .expect("listening line");
    let ask = |extra: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    let native = ask("");
    assert!(native.starts_with("HTTP/1.1 401"), "{native}");
    // An SQS request is judged by its signature instead: none here.
    let sqs = ask("X-Amz-Target: AmazonSQS.ListQueues\r\n");
    assert!(sqs.starts_with("HTTP/1.1 403"), "{sqs}");
    assert!(sqs.contains("MissingAuthenticationToken;Sender"), "{sqs}");
    let _ = child.kill();
    let _ = child.wait();
}
