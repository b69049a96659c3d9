//! `spool serve`: a real server process on a free port, talked to over HTTP
//! (ureq, or raw TCP for what no client library would send, or a rustls
//! client by hand for HTTPS), on the backend the suite runs on.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde_json::Value;

use crate::common::Env;

/// A running `spool serve`.
struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
    /// Everything it wrote on stderr so far.
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(env: &Env, extra: &[&str]) -> Server {
        Server::try_start(env, extra).unwrap_or_else(|log| panic!("serve did not start: {log}"))
    }

    /// Starts it and waits for its `listening on` line; `Err` with its
    /// stderr when it exits instead.
    fn try_start(env: &Env, extra: &[&str]) -> Result<Server, String> {
        let mut cmd = env.cmd();
        cmd.arg("serve");
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spool serve starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let mut addr = None;
        for line in lines.by_ref() {
            let line = line.expect("stderr line");
            log.lock().unwrap().push_str(&format!("{line}\n"));
            let url = line.strip_prefix("spool: listening on ");
            if let Some((_, rest)) = url.and_then(|url| url.split_once("://")) {
                addr = Some(rest.to_owned());
                break;
            }
        }
        let Some(addr) = addr else {
            let _ = child.wait();
            return Err(log.lock().unwrap().clone());
        };
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Ok(Server { child, addr, log })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str) -> Reply {
        request("GET", &self.url(path), None, b"")
    }

    fn post(&self, path: &str, body: &str) -> Reply {
        request("POST", &self.url(path), None, body.as_bytes())
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit.
    fn terminate(mut self) -> ExitStatus {
        signal(&self.child, "TERM");
        self.child.wait().expect("serve exits")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
}

/// An answer: status, body and the headers the tests look at.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
    retry_after: Option<String>,
    content_type: Option<String>,
    www_authenticate: Option<String>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    fn lines(&self) -> Vec<Value> {
        self.body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Asserts an error answer: this status, and the JSON error with this
    /// exit code; returns the message.
    #[track_caller]
    fn error(&self, status: u16, exit_code: i64) -> String {
        assert_eq!(self.status, status, "{self:?}");
        let json = self.json();
        assert_eq!(json["exit_code"], exit_code, "{self:?}");
        json["error"].as_str().expect("an error message").to_owned()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn request(method: &str, url: &str, token: Option<&str>, body: &[u8]) -> Reply {
    try_request(method, url, token, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// A request, or the transport error that stopped it (a connection refused
/// or cut).
fn try_request(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<Reply, ureq::Error> {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        builder = builder.header("Authorization", format!("Bearer {token}"));
    }
    let req = builder.body(body.to_vec()).expect("a request");
    let mut response = agent().run(req)?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_owned())
    };
    let (retry_after, content_type) = (header("retry-after"), header("content-type"));
    let www_authenticate = header("www-authenticate");
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()?;
    Ok(Reply {
        status,
        body,
        retry_after,
        content_type,
        www_authenticate,
    })
}

/// Sends `bytes` over a fresh connection and returns whatever comes back
/// until the server closes it (or 30 s pass).
fn raw(server: &Server, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(&server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    read_all(&mut stream)
}

/// What the server sent until it closed the connection (an empty answer:
/// closed without a word). A server that neither answers nor closes before
/// the stream's read timeout fails the test: silence is not a refusal.
fn read_all(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
                "the server neither answered nor closed the connection before the read timeout; it sent {:?}",
                String::from_utf8_lossy(&got)
            ),
            // A reset closes it too.
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// True when `answer` is a 4xx status line, or nothing (a closed
/// connection).
fn refused(answer: &str) -> bool {
    answer.is_empty()
        || answer
            .strip_prefix("HTTP/1.1 4")
            .is_some_and(|rest| rest.as_bytes().first().is_some_and(u8::is_ascii_digit))
}

/// The entry of queue `name` in the JSON of `/v1/stats`.
#[track_caller]
fn queue_in(stats: &Value, name: &str) -> Value {
    stats["queues"]
        .as_array()
        .expect("a list of queues")
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("{name} in stats: {stats}"))
        .clone()
}

#[test]
fn serve_publishes_consumes_and_acks_with_the_command_lines_objects() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let health = server.get("/v1/health");
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, "ok".into())
    );

    let published = server.post(
        "/v1/queues/orders/messages?priority=5&header=source%3Dshop&header=x=1%3D2",
        "{\"n\": 1}\n\n  {\"n\": 2}  \n",
    );
    assert_eq!(published.status, 201, "{published:?}");
    assert_eq!(published.content_type.as_deref(), Some("application/json"));
    let ids: Vec<i64> = published.json()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < ids[1]);

    let consumed = server.post("/v1/queues/orders/consume?n=10&visibility=5m", "");
    assert_eq!(consumed.status, 200, "{consumed:?}");
    assert_eq!(
        consumed.content_type.as_deref(),
        Some("application/x-ndjson")
    );
    let lines = consumed.lines();
    assert_eq!(lines.len(), 2);
    let keys: Vec<&String> = lines[0].as_object().unwrap().keys().collect();
    // The fields `spool consume` prints, in its order (the CLI's own
    // output is checked against the same list below).
    let cli_order = {
        env.publish("shape", "{}");
        let cli = env.consume_one("shape", &[]);
        cli.as_object().unwrap().keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(keys, cli_order.iter().collect::<Vec<_>>());
    assert_eq!(lines[0]["id"], ids[0]);
    assert_eq!(lines[0]["body"], serde_json::json!({"n": 1}));
    assert_eq!(lines[1]["body"], serde_json::json!({"n": 2}));
    assert_eq!(lines[0]["priority"], 5);
    assert_eq!(
        lines[0]["headers"],
        serde_json::json!({"source": "shop", "x": "1=2"})
    );
    assert_eq!(lines[0]["attempt"], 1);

    // Receipts as consume's JSON lines and bare, with a bad and an unknown one.
    let bare = lines[1]["receipt"].as_str().unwrap().to_owned();
    let first_line = consumed.body.lines().next().unwrap().to_owned();
    let unknown = {
        let mut r = bare.clone();
        let last = r.pop().unwrap();
        r.push(if last == '0' { '1' } else { '0' });
        r
    };
    let acked = server.post(
        "/v1/ack",
        &format!("{first_line}\n{bare}\n\nnot-a-receipt\n{unknown}\n"),
    );
    assert_eq!(acked.status, 200, "{acked:?}");
    let acked = acked.json();
    assert_eq!(acked["done"], 2, "{acked}");
    let refused = acked["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2, "{acked}");
    assert_eq!(refused[0]["receipt"], "not-a-receipt");
    assert_eq!(refused[1]["receipt"], unknown.as_str());
    assert!(
        refused
            .iter()
            .all(|r| r["error"].as_str().is_some_and(|e| !e.is_empty()))
    );

    // Acking again is harmless, as on the command line.
    assert_eq!(server.post("/v1/ack", &bare).json()["done"], 1);

    let peeked = server.get("/v1/queues/orders/messages?state=acked,ready&n=5");
    assert_eq!(peeked.status, 200, "{peeked:?}");
    let peeked = peeked.lines();
    assert_eq!(peeked.len(), 2);
    assert!(peeked.iter().all(|m| m["state"] == "acked"));
    let cli = env.run(&["peek", "orders", "--state", "acked", "--json"]);
    assert_eq!(cli.json_lines(), peeked);
    let one = server.get(&format!("/v1/queues/orders/messages?id={}", ids[1]));
    assert_eq!(one.lines()[0]["id"], ids[1]);

    let stats = server.get("/v1/stats");
    assert_eq!(stats.status, 200);
    let stats = stats.json();
    let orders = queue_in(&stats, "orders");
    assert_eq!(orders["acked"], 2, "{stats}");
    assert_eq!(orders["ready"], 0, "{stats}");
    let cli: Value = serde_json::from_str(&env.run(&["stats", "--json"]).stdout).unwrap();
    assert_eq!(
        cli.as_object().unwrap().keys().collect::<Vec<_>>(),
        stats.as_object().unwrap().keys().collect::<Vec<_>>()
    );

    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    let lines = metrics.body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let named = |name: &'static str| scrape.samples.iter().filter(move |s| s.metric == name);
    assert!(
        named("spool_messages").any(|s| s.labels.get("queue") == Some("orders")),
        "{}",
        metrics.body
    );
    assert!(
        named("spool_http_requests_total").any(|s| s.labels.get("route")
            == Some("/v1/queues/:queue/messages")
            && s.labels.get("status") == Some("201")),
        "{}",
        metrics.body
    );

    // One JSON log line per request, without bodies or queries.
    let log = server.log();
    let entries: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        entries.iter().any(|e| e["method"] == "POST"
            && e["path"] == "/v1/queues/orders/messages"
            && e["status"] == 201
            && e["ms"].is_number()
            && e["bytes"].is_number()),
        "{log}"
    );
    assert!(!log.contains("source"), "{log}");
    assert!(!log.contains(&bare), "{log}");
}

#[test]
fn serve_publish_is_all_or_nothing_and_takes_publishs_flags() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let bad = server.post("/v1/queues/q/messages", "{\"a\":1}\n{\"a\":2}\n{\"a\":\n");
    let message = bad.error(422, 65);
    assert!(message.contains("line 3"), "{message}");
    let bad_utf8 = request(
        "POST",
        &server.url("/v1/queues/q/messages"),
        None,
        b"{\"a\":1}\n\"\xff\"\n",
    );
    assert!(bad_utf8.error(422, 65).contains("UTF-8"));
    // Nothing of either went in.
    let all = server.get("/v1/queues/q/messages?state=all");
    assert!(all.status == 404 || all.lines().is_empty(), "{all:?}");

    // Keys deduplicate, as on the command line.
    let a = server
        .post("/v1/queues/q/messages?key=k1", "{\"a\":1}")
        .json();
    let b = server
        .post("/v1/queues/q/messages?key=k1", "{\"a\":2}")
        .json();
    assert_eq!(a["ids"], b["ids"]);
    let empty = server.post("/v1/queues/q/messages", "\n\n");
    assert_eq!(
        (empty.status, empty.json()["ids"].clone()),
        (201, serde_json::json!([]))
    );

    // delay, group, ttl, raw.
    let delayed = server
        .post("/v1/queues/q/messages?delay=1h&group=g&ttl=2h", "7")
        .json();
    let id = delayed["ids"][0].as_i64().unwrap();
    let seen = server
        .get(&format!("/v1/queues/q/messages?id={id}"))
        .lines();
    assert_eq!(seen[0]["state"], "delayed");
    assert_eq!(seen[0]["group"], "g");
    let at = server
        .post("/v1/queues/q/messages?at=2099-01-01T00:00:00Z", "8")
        .json();
    let seen = server
        .get(&format!("/v1/queues/q/messages?id={}", at["ids"][0]))
        .lines();
    assert_eq!(seen[0]["state"], "delayed");
    let raw = server.post(
        "/v1/queues/text/messages?raw=true",
        "not json\nsecond line\n",
    );
    assert_eq!(raw.status, 201, "{raw:?}");
    let texts: Vec<Value> = server
        .get("/v1/queues/text/messages")
        .lines()
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(texts, ["not json", "second line"]);

    // ack=RECEIPT: the publish acks a delivery in its transaction.
    env.publish("in", "{\"job\":1}");
    let delivery = server.post("/v1/queues/in/consume", "").lines().remove(0);
    let receipt = delivery["receipt"].as_str().unwrap();
    let out = server.post(
        &format!("/v1/queues/out/messages?ack={receipt}"),
        "{\"done\":1}",
    );
    assert_eq!(out.status, 201, "{out:?}");
    let state = server.get(&format!("/v1/queues/in/messages?id={}", delivery["id"]));
    assert_eq!(state.lines()[0]["state"], "acked");
    // The same receipt again: refused (its delivery is acked), nothing published.
    let again = server.post(
        &format!("/v1/queues/out/messages?ack={receipt}"),
        "{\"done\":2}",
    );
    again.error(404, 3);
    assert_eq!(
        server
            .get("/v1/queues/out/messages?state=all")
            .lines()
            .len(),
        1
    );
    server
        .post(&format!("/v1/queues/out/messages?ack={receipt}"), "")
        .error(422, 65);

    // Refused queries: 400 with exit code 2, nothing written.
    for query in [
        "priority=500",
        "delay=1h&at=2099-01-01T00:00:00Z",
        "delay=soon",
        "colour=red",
        "key=a&key=b",
        "header=novalue",
        "raw=maybe",
    ] {
        let reply = server.post(&format!("/v1/queues/q/messages?{query}"), "1");
        reply.error(400, 2);
    }
    server
        .post("/v1/queues/bad%20name/messages", "1")
        .error(400, 2);
    let count = server
        .get("/v1/queues/q/messages?state=all&n=100")
        .lines()
        .len();
    assert_eq!(count, 3);
}

#[test]
fn serve_maps_errors_onto_statuses_and_exit_codes() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    // 404 (3): unknown queue, unknown message.
    server.get("/v1/queues/nowhere/messages").error(404, 3);
    env.publish("q", "1");
    server.get("/v1/queues/q/messages?id=999999").error(404, 3);
    // 404 for a route that does not exist, 405 for a wrong method.
    assert_eq!(server.get("/v2/nothing").status, 404);
    assert_eq!(server.get("/v1/ack").status, 405);
    assert_eq!(server.post("/v1/health", "").status, 405);
    // 413: over the queue's max_size.
    env.run(&["queue", "create", "small", "--max-size", "1KiB"])
        .success();
    let big = format!("\"{}\"", "x".repeat(2000));
    let message = server
        .post("/v1/queues/small/messages", &format!("1\n{big}\n"))
        .error(413, 65);
    assert!(message.contains("max_size"), "{message}");
    // 503 with Retry-After (75): a full queue.
    env.run(&["queue", "create", "full", "--max-length", "1"])
        .success();
    assert_eq!(server.post("/v1/queues/full/messages", "1").status, 201);
    let full = server.post("/v1/queues/full/messages", "2");
    full.error(503, 75);
    assert_eq!(full.retry_after.as_deref(), Some("1"));
    // 400 (2): bad queries.
    server.post("/v1/queues/q/consume?n=0", "").error(400, 2);
    server
        .post("/v1/queues/q/consume?wait=21s", "")
        .error(400, 2);
    server.get("/v1/queues/q/messages?state=gone").error(400, 2);
    server
        .get("/v1/queues/q/messages?state=dead&id=1")
        .error(400, 2);
    server.post("/v1/extend", "x").error(400, 2);
    server
        .post("/v1/nack?delay=1m&dead=true", "x")
        .error(400, 2);
    server
        .post("/v1/nack?backoff=true&dead=true", "x")
        .error(400, 2);
    // 500 (74): a database this spool cannot open (written by a newer one).
    env.mark_newer(9999);
    server.get("/v1/stats").error(500, 74);
}

#[test]
fn serve_refuses_bodies_over_16_mib() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let answer = raw(
        &server,
        b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"exit_code\":65"), "{answer}");
    // And a body that is that long without saying so (chunked): refused
    // once 16 MiB were read, with a 413 or by closing the connection.
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = stream.try_clone().unwrap();
    let answer = std::thread::spawn(move || read_all(&mut reader));
    let head =
        b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let line = format!("\"{}\"\n", "y".repeat(1000));
    let chunk = format!("{:x}\r\n{line}\r\n", line.len());
    let mut sent = stream.write_all(head);
    let mut total = 0;
    while sent.is_ok() && total <= 17 << 20 {
        sent = stream.write_all(chunk.as_bytes());
        total += line.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let _ = stream.shutdown(Shutdown::Write);
    let answer = answer.join().unwrap();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 413"),
        "{answer}"
    );
    assert_eq!(server.get("/v1/health").status, 200);
    server.get("/v1/queues/q/messages").error(404, 3);
}

/// Sends `head`, then `piece` `times` times (or until the server stops
/// taking them), on a fresh connection; returns the answer read meanwhile.
fn stream_body(server: &Server, head: &[u8], piece: &[u8], times: usize) -> String {
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // A server that stops reading without closing must not hang the test.
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = stream.try_clone().unwrap();
    let answer = std::thread::spawn(move || read_all(&mut reader));
    let mut sent = stream.write_all(head);
    for _ in 0..times {
        if sent.is_err() {
            break;
        }
        sent = stream.write_all(piece);
    }
    let _ = stream.shutdown(Shutdown::Write);
    answer.join().unwrap()
}

/// The peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn serve_refuses_a_100_mb_body_sent_over_raw_tcp_without_holding_it() {
    let env = Env::new();
    let server = Server::start(&env, &["--quiet"]);
    let line = format!("\"{}\"\n", "z".repeat((1 << 20) - 3));
    // Said in Content-Length: refused from its length (413), or cut off (a
    // reset can overtake the answer).
    let answer = stream_body(
        &server,
        b"POST /v1/queues/big/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n",
        line.as_bytes(),
        100,
    );
    assert!(
        answer.is_empty()
            || (answer.starts_with("HTTP/1.1 413") && answer.contains("\"exit_code\":65")),
        "{answer}"
    );
    // Unannounced (chunked): refused once 16 MiB were read.
    let chunk = format!("{:x}\r\n{line}\r\n", line.len());
    let answer = stream_body(
        &server,
        b"POST /v1/queues/big/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        chunk.as_bytes(),
        100,
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 413"),
        "{answer}"
    );
    // Another client is served meanwhile, and nothing of them went in.
    assert_eq!(server.post("/v1/queues/small/messages", "1").status, 201);
    server.get("/v1/queues/big/messages").error(404, 3);
    // The server's peak memory stayed below the body: it never held it.
    let peak = peak_rss_kib(server.child.id());
    assert!(peak < 100 << 10, "peak RSS {peak} KiB");
}

#[test]
fn serve_long_poll_is_answered_when_another_process_publishes() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let empty = server.post("/v1/queues/jobs/consume", "");
    assert_eq!((empty.status, empty.body.as_str()), (204, ""));
    let url = server.url("/v1/queues/jobs/consume?wait=20s&n=5");
    let poll = std::thread::spawn(move || request("POST", &url, None, b""));
    std::thread::sleep(Duration::from_millis(300));
    let id = env.publish("jobs", "{\"wake\":true}");
    let reply = poll.join().unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    let lines = reply.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], id);
    assert_eq!(lines[0]["body"], serde_json::json!({"wake": true}));
}

#[test]
fn serve_client_leaving_a_long_poll_leases_nothing() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .write_all(b"POST /v1/queues/jobs/consume?wait=20s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(stream);
    std::thread::sleep(Duration::from_millis(300));
    let id = env.publish("jobs", "1");
    // The message stays for the next consumer, its attempt not counted.
    let reply = server.post("/v1/queues/jobs/consume?wait=20s", "");
    assert_eq!(reply.status, 200, "{reply:?}");
    let got = reply.lines().remove(0);
    assert_eq!(got["id"], id);
    assert_eq!(got["attempt"], 1);
}

#[test]
fn serve_more_long_polls_than_database_connections_queue_and_all_answer() {
    // 110 long polls at once: more than the connections a PostgreSQL
    // server allows by default (100). The server bounds its own; the rest
    // wait for a turn, and other requests are served meanwhile.
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let url = server.url("/v1/queues/jobs/consume?wait=3s");
    let polls: Vec<_> = (0..110)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || request("POST", &url, None, b""))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let other = server.post("/v1/queues/other/messages", "{\"a\":1}\n");
    assert_eq!(other.status, 201, "{other:?}");
    let got = server.post("/v1/queues/other/consume", "");
    assert_eq!(got.status, 200, "{got:?}");
    let receipt = got.lines()[0]["receipt"].as_str().unwrap().to_owned();
    let acked = server.post("/v1/ack", &receipt);
    assert_eq!(acked.json()["done"], 1, "{acked:?}");
    let published = server.post("/v1/queues/jobs/messages", "1\n2\n3\n4\n5\n");
    assert_eq!(published.status, 201, "{published:?}");
    let mut ids: Vec<i64> = published.json()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let mut delivered = Vec::new();
    for poll in polls {
        let reply = poll.join().unwrap();
        match reply.status {
            200 => delivered.extend(reply.lines().iter().map(|l| l["id"].as_i64().unwrap())),
            204 => {}
            _ => panic!("a long poll failed: {reply:?}"),
        }
    }
    ids.sort_unstable();
    delivered.sort_unstable();
    assert_eq!(delivered, ids, "each message delivered once");
}

#[test]
fn serve_concurrent_acks_each_get_the_outcomes_of_their_own_receipts() {
    // Acks that arrive together are settled together; each request must
    // still be answered for its own receipts, refused ones included.
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let body: String = (0..24).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    assert_eq!(server.post("/v1/queues/jobs/messages", &body).status, 201);
    let consumed = server.post("/v1/queues/jobs/consume?n=24", "");
    let receipts: Vec<String> = consumed
        .lines()
        .iter()
        .map(|l| l["receipt"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(receipts.len(), 24);
    let acks: Vec<_> = receipts
        .into_iter()
        .map(|receipt| {
            let unknown = {
                let mut r = receipt.clone();
                let last = r.pop().unwrap();
                r.push(if last == '0' { '1' } else { '0' });
                r
            };
            let url = server.url("/v1/ack");
            std::thread::spawn(move || {
                let reply = request(
                    "POST",
                    &url,
                    None,
                    format!("{unknown}\n{receipt}\n").as_bytes(),
                );
                (unknown, reply)
            })
        })
        .collect();
    for ack in acks {
        let (unknown, reply) = ack.join().unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        let json = reply.json();
        assert_eq!(json["done"], 1, "{json}");
        let refused = json["refused"].as_array().unwrap();
        assert_eq!(refused.len(), 1, "{json}");
        assert_eq!(refused[0]["receipt"], unknown.as_str(), "{json}");
    }
    let stats = server.get("/v1/stats").json();
    let jobs = queue_in(&stats, "jobs");
    assert_eq!(
        (jobs["acked"].as_i64(), jobs["leased"].as_i64()),
        (Some(24), Some(0)),
        "{stats}"
    );
}

#[test]
fn serve_nacks_and_extends_by_receipt() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    for n in 0..4 {
        env.publish("q", &n.to_string());
    }
    let got = server
        .post("/v1/queues/q/consume?n=4&visibility=1m", "")
        .lines();
    let receipt = |i: usize| got[i]["receipt"].as_str().unwrap().to_owned();
    let id = |i: usize| got[i]["id"].as_i64().unwrap();
    let state = |i: usize| {
        server
            .get(&format!("/v1/queues/q/messages?id={}", id(i)))
            .lines()[0]
            .clone()
    };

    let r = server.post("/v1/nack?delay=1h", &receipt(0)).json();
    assert_eq!(
        (r["done"].clone(), r["refused"].clone()),
        (1.into(), serde_json::json!([]))
    );
    assert_eq!(state(0)["state"], "delayed");

    let r = server
        .post("/v1/nack?dead=true&reason=cannot%20parse", &receipt(1))
        .json();
    assert_eq!(r["done"], 1);
    assert_eq!(state(1)["state"], "dead");
    assert_eq!(state(1)["last_error"], "cannot parse");

    let r = server.post("/v1/nack?backoff=true", &receipt(2)).json();
    assert_eq!(r["done"], 1);
    assert_eq!(state(2)["state"], "delayed");

    let before = state(3)["lease_expires_at"].as_str().unwrap().to_owned();
    let r = server
        .post("/v1/extend?by=1h", &format!("{}\n", receipt(3)))
        .json();
    assert_eq!(r["done"], 1);
    let after = state(3)["lease_expires_at"].as_str().unwrap().to_owned();
    assert!(after > before, "{before} → {after}");

    // A settled receipt is refused on its own line; nothing else changes.
    let r = server
        .post("/v1/nack", &format!("{}\n{}\n", receipt(0), receipt(3)))
        .json();
    assert_eq!(r["done"], 1, "{r}");
    assert_eq!(r["refused"][0]["receipt"], receipt(0).as_str());
    assert_eq!(state(3)["state"], "ready");
    let nothing = server.post("/v1/ack", "").json();
    assert_eq!(nothing, serde_json::json!({"done": 0, "refused": []}));
}

#[test]
fn serve_needs_a_token_on_every_route_when_it_has_a_token_file() {
    let env = Env::new();
    let tokens = env.path("tokens");
    std::fs::write(&tokens, "# the ops team\n  s3cret-one  \n\nsecond-token\n").unwrap();
    let server = Server::start(&env, &["--token-file", tokens.to_str().unwrap()]);
    env.publish("q", "1");
    let routes = [
        ("POST", "/v1/queues/q/messages", "2"),
        ("POST", "/v1/queues/q/consume", ""),
        ("POST", "/v1/ack", ""),
        ("POST", "/v1/nack", ""),
        ("POST", "/v1/extend?by=1m", ""),
        ("GET", "/v1/queues/q/messages", ""),
        ("GET", "/v1/stats", ""),
        ("GET", "/metrics", ""),
        ("GET", "/v1/health", ""),
        ("GET", "/v1/nothing", ""),
    ];
    for (method, path, body) in routes {
        let url = server.url(path);
        for token in [None, Some("wrong"), Some("s3cret-on"), Some("s3cret-one2")] {
            let reply = request(method, &url, token, body.as_bytes());
            assert_eq!(
                reply.status, 401,
                "{method} {path} with {token:?}: {reply:?}"
            );
            assert!(reply.json()["error"].is_string());
            assert_eq!(
                reply.www_authenticate.as_deref(),
                Some("Bearer realm=\"spool\""),
                "{method} {path}"
            );
        }
        for token in ["s3cret-one", "second-token"] {
            let reply = request(method, &url, Some(token), body.as_bytes());
            let want = if path == "/v1/nothing" { 404 } else { 200 };
            let ok = reply.status == want || (reply.status / 100 == 2 && want == 200);
            assert!(ok, "{method} {path}: {reply:?}");
        }
    }
    let log = server.log();
    assert!(
        !log.contains("s3cret") && !log.contains("second-token"),
        "{log}"
    );
    assert!(log.contains("\"status\":401"), "{log}");
}

#[test]
fn serve_refuses_to_listen_beyond_loopback_without_tokens() {
    let env = Env::new();
    let run = env.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--token-file"), "{run:?}");
    let empty = env.path("empty");
    std::fs::write(&empty, "# nobody\n\n").unwrap();
    let run = env.run(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    let run = env.run(&[
        "serve",
        "--token-file",
        env.path("missing").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    // With a token it listens on every address, 127.0.0.1 among them.
    let tokens = env.path("tokens");
    std::fs::write(&tokens, "t\n").unwrap();
    let server = Server::start(
        &env,
        &[
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            tokens.to_str().unwrap(),
        ],
    );
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let reply = request(
        "GET",
        &format!("http://127.0.0.1:{port}/v1/health"),
        Some("t"),
        b"",
    );
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[test]
fn serve_finishes_requests_in_flight_on_sigterm_and_exits_0() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let url = server.url("/v1/queues/jobs/consume?wait=20s");
    let poll = std::thread::spawn(move || request("POST", &url, None, b""));
    std::thread::sleep(Duration::from_millis(300));
    let status = server.terminate();
    assert_eq!(status.code(), Some(0));
    // The long poll was answered (with nothing), not cut off.
    assert_eq!(poll.join().unwrap().status, 204);
}

#[test]
fn serve_sigint_exits_0_too() {
    let env = Env::new();
    let mut server = Server::start(&env, &[]);
    assert_eq!(server.get("/v1/health").status, 200);
    signal(&server.child, "INT");
    assert_eq!(server.child.wait().unwrap().code(), Some(0));
}

#[test]
fn serve_survives_malformed_requests_while_others_keep_working() {
    let env = Env::new();
    let server = Server::start(&env, &["--header-timeout", "1s", "--request-timeout", "2s"]);
    let many_headers: String = (0..1000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        b"\x00\xff\xfe binary \r\n\r\n".to_vec(),
        b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":".to_vec(),
        b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n".to_vec(),
        format!("GET /v1/health HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
        b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
    ];
    for case in &cases {
        let answer = raw(&server, case);
        assert!(
            refused(&answer),
            "{:?} → {answer}",
            String::from_utf8_lossy(case)
        );
        assert_eq!(server.get("/v1/health").status, 200);
    }
    // A slow client: half a request line, then nothing. It is dropped, and
    // meanwhile others are served.
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(b"GET /v1/hea").unwrap();
    assert_eq!(server.post("/v1/queues/q/messages", "1").status, 201);
    let answer = read_all(&mut slow);
    assert!(refused(&answer), "{answer}");
    // A slow body: headers, a few bytes, then nothing.
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(
        b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":",
    )
    .unwrap();
    assert_eq!(server.get("/v1/health").status, 200);
    let answer = read_all(&mut slow);
    assert!(
        answer.is_empty()
            || (answer.starts_with("HTTP/1.1 408") && answer.contains("\"exit_code\":75")),
        "{answer}"
    );
    // Nothing of the truncated publish went in.
    assert_eq!(server.get("/v1/queues/q/messages").lines().len(), 1);
}

#[test]
fn a_body_that_stops_arriving_frees_its_connection_before_the_request_timeout() {
    let env = Env::new();
    let server = Server::start(
        &env,
        &["--header-timeout", "1s", "--request-timeout", "60s"],
    );
    // Many connections, each with headers and a byte of its body, then
    // nothing: each is answered 408 once its body stalls for the header
    // timeout, not held for the minute a request may take.
    let mut stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(&server.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.write_all(
                b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
            )
            .unwrap();
            s
        })
        .collect();
    assert_eq!(server.post("/v1/queues/q/messages", "1").status, 201);
    for s in &mut stalled {
        let answer = read_all(s);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("stopped arriving"), "{answer}");
        assert!(answer.contains("\"exit_code\":75"), "{answer}");
    }
    assert_eq!(server.get("/v1/queues/q/messages").lines().len(), 1);
}

#[test]
fn a_query_that_is_not_utf8_once_decoded_is_refused() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    // Read with U+FFFD for the bad byte, two different keys were one.
    for query in [
        "key=%FF",
        "key=%FE",
        "group=a%C0",
        "header=h%3D%FF",
        "delay=1%FFs",
    ] {
        let reply = server.post(&format!("/v1/queues/q/messages?{query}"), "1");
        assert_eq!(reply.status, 400, "{query}: {reply:?}");
        assert!(
            reply.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("is not UTF-8 once its %-escapes are undone")),
            "{query}: {reply:?}"
        );
    }
    // Escapes and `+` that make UTF-8 still work.
    let reply = server.post("/v1/queues/q/messages?key=caf%C3%A9+au+lait", "1");
    assert_eq!(reply.status, 201, "{reply:?}");
    let stored = server.get("/v1/queues/q/messages").lines();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["key"], "café au lait");
}

#[test]
fn a_coded_body_is_refused_not_stored_as_it_came() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    // Whole requests, the write side left open (`Connection: close` ends
    // each): the server answers before it closes.
    let raw = |server: &Server, bytes: &[u8]| {
        let mut stream = TcpStream::connect(&server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(bytes).unwrap();
        read_all(&mut stream)
    };
    let gzip = raw(
        &server,
        b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\n1",
    );
    assert!(gzip.starts_with("HTTP/1.1 415"), "{gzip}");
    assert!(
        gzip.contains("Content-Encoding `gzip` is not supported"),
        "{gzip}"
    );
    let coded = raw(
        &server,
        b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\n6\r\n0\r\n\r\n",
    );
    assert!(coded.starts_with("HTTP/1.1 501"), "{coded}");
    let plain = raw(
        &server,
        b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Encoding: identity\r\nContent-Length: 1\r\n\r\n7",
    );
    assert!(plain.starts_with("HTTP/1.1 201"), "{plain}");
    let stored = server.get("/v1/queues/q/messages").lines();
    assert_eq!(stored.len(), 1, "{stored:?}");
}

#[test]
fn serve_32_concurrent_clients_deliver_every_message_once_and_ack_it() {
    const CLIENTS: usize = 32;
    const EACH: usize = 20;
    let env = Env::new();
    let server = Server::start(&env, &["--quiet"]);
    let base = server.url("");
    let published = Arc::new(Mutex::new(Vec::new()));
    let producing = Arc::new(std::sync::atomic::AtomicUsize::new(CLIENTS));
    let producers: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (base, published, producing) =
                (base.clone(), Arc::clone(&published), Arc::clone(&producing));
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let url = format!("{base}/v1/queues/load/messages");
                    let body = format!("{{\"c\":{c},\"i\":{i}}}");
                    let reply = request("POST", &url, None, body.as_bytes());
                    assert_eq!(reply.status, 201, "{reply:?}");
                    let id = reply.json()["ids"][0].as_i64().unwrap();
                    published.lock().unwrap().push(id);
                }
                producing.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            })
        })
        .collect();
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let consumers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (base, delivered, producing) =
                (base.clone(), Arc::clone(&delivered), Arc::clone(&producing));
            std::thread::spawn(move || {
                loop {
                    // Read before polling: an empty poll after the last
                    // producer finished means nothing is left to lease.
                    let done = producing.load(std::sync::atomic::Ordering::SeqCst) == 0;
                    let url = format!("{base}/v1/queues/load/consume?n=3&wait=1s");
                    let reply = request("POST", &url, None, b"");
                    if reply.status == 204 {
                        if done {
                            return;
                        }
                        continue;
                    }
                    assert_eq!(reply.status, 200, "{reply:?}");
                    let lines = reply.lines();
                    let receipts: String = lines
                        .iter()
                        .map(|l| format!("{}\n", l["receipt"].as_str().unwrap()))
                        .collect();
                    let acked =
                        request("POST", &format!("{base}/v1/ack"), None, receipts.as_bytes());
                    assert_eq!(acked.json()["done"], lines.len(), "{acked:?}");
                    delivered
                        .lock()
                        .unwrap()
                        .extend(lines.iter().map(|l| l["id"].as_i64().unwrap()));
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    for c in consumers {
        c.join().unwrap();
    }
    let mut published = published.lock().unwrap().clone();
    published.sort_unstable();
    let mut delivered = delivered.lock().unwrap().clone();
    delivered.sort_unstable();
    assert_eq!(published.len(), CLIENTS * EACH);
    // Every published id delivered (and acked) once: no loss, no double.
    assert_eq!(delivered, published);
    // The database agrees: all acked, each on its first attempt, nothing
    // left ready or leased.
    let mut acked: Vec<i64> = server
        .get("/v1/queues/load/messages?state=acked&n=10000")
        .lines()
        .iter()
        .inspect(|m| assert_eq!(m["attempt"], 1, "{m}"))
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    acked.sort_unstable();
    assert_eq!(acked, published);
    let stats: Value = serde_json::from_str(&env.run(&["stats", "load", "--json"]).stdout).unwrap();
    let queue = &stats["queues"][0];
    assert_eq!(queue["acked"], CLIENTS * EACH, "{stats}");
    assert_eq!(queue["published_total"], CLIENTS * EACH, "{stats}");
    for state in ["ready", "delayed", "leased", "dead"] {
        assert_eq!(queue[state], 0, "{state}: {stats}");
    }
    // No request log with --quiet.
    assert!(!server.log().contains("\"method\""), "{}", server.log());
}

#[test]
fn serve_killed_during_a_publish_storm_keeps_every_message_it_answered_201() {
    let env = Env::new();
    let mut server = Server::start(&env, &["--quiet"]);
    let answered = Arc::new(Mutex::new(Vec::new()));
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let (url, answered) = (
                server.url("/v1/queues/storm/messages"),
                Arc::clone(&answered),
            );
            std::thread::spawn(move || {
                for i in 0.. {
                    let body =
                        format!("{{\"p\":{p},\"i\":{i}}}\n{{\"p\":{p},\"i\":{i},\"second\":true}}");
                    let Ok(reply) = try_request("POST", &url, None, body.as_bytes()) else {
                        return;
                    };
                    assert_eq!(reply.status, 201, "{reply:?}");
                    let ids = reply.json()["ids"].as_array().unwrap().clone();
                    assert_eq!(ids.len(), 2);
                    answered
                        .lock()
                        .unwrap()
                        .extend(ids.iter().map(|id| id.as_i64().unwrap()));
                }
            })
        })
        .collect();
    // Let the storm run until a few hundred publishes were answered.
    while answered.lock().unwrap().len() < 400 {
        std::thread::sleep(Duration::from_millis(10));
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for p in producers {
        p.join().unwrap();
    }
    env.settle();
    let stored: std::collections::HashSet<i64> = env
        .rows("SELECT msg_id FROM deliveries", &[])
        .iter()
        .map(|row| row[0].as_i64().unwrap())
        .collect();
    let answered = answered.lock().unwrap().clone();
    let lost: Vec<&i64> = answered.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "answered 201 but not stored: {lost:?}");
    // All or nothing: no publish is stored by halves.
    assert_eq!(stored.len() % 2, 0, "{} stored", stored.len());
}

/// A self-signed certificate for `localhost` and 127.0.0.1: its PEM, its
/// key's PEM and its DER (what a client trusts).
fn self_signed() -> (String, String, CertificateDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("a certificate");
    (
        made.cert.pem(),
        made.signing_key.serialize_pem(),
        made.cert.der().clone(),
    )
}

/// Writes a certificate and its key into the test's directory; their paths.
fn tls_files(env: &Env, name: &str) -> (String, String, CertificateDer<'static>) {
    let (cert, key, der) = self_signed();
    let (cert_path, key_path) = (
        env.path(&format!("{name}.crt")),
        env.path(&format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (
        cert_path.to_str().unwrap().to_owned(),
        key_path.to_str().unwrap().to_owned(),
        der,
    )
}

/// A request over HTTPS to `addr` that trusts only `ca`, as `localhost`,
/// on a connection of its own (`Connection: close`); `Err` when the
/// handshake or the connection fails.
fn tls_request(
    addr: &str,
    ca: &CertificateDer<'static>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("a usable root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n{auth}\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())?;
    tls.write_all(body)?;
    tls.flush()?;
    let mut got = Vec::new();
    match tls.read_to_end(&mut got) {
        Ok(_) => {}
        // Closed without a close_notify after a whole answer: still one.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !got.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(parse_reply(&String::from_utf8(got).expect("UTF-8 answer")))
}

/// Parses a whole HTTP/1.1 answer read off the wire.
fn parse_reply(answer: &str) -> Reply {
    let (head, body) = answer.split_once("\r\n\r\n").expect("headers end");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        body,
        retry_after: header("retry-after"),
        content_type: header("content-type"),
        www_authenticate: header("www-authenticate"),
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

#[test]
fn serve_speaks_https_with_a_certificate_and_key() {
    let env = Env::new();
    let (cert, key, ca) = tls_files(&env, "server");
    let server = Server::start(&env, &["--tls-cert", &cert, "--tls-key", &key]);
    assert!(
        server
            .log()
            .contains(&format!("listening on https://{}", server.addr)),
        "{}",
        server.log()
    );
    let https = |method: &str, path: &str, body: &str| {
        tls_request(&server.addr, &ca, method, path, None, body.as_bytes())
            .unwrap_or_else(|e| panic!("{method} {path} over TLS: {e}"))
    };
    assert_eq!(https("GET", "/v1/health", "").status, 200);
    let published = https("POST", "/v1/queues/q/messages", "{\"n\":1}\n{\"n\":2}");
    assert_eq!(published.status, 201, "{published:?}");
    assert_eq!(published.json()["ids"].as_array().unwrap().len(), 2);
    let consumed = https("POST", "/v1/queues/q/consume?n=5", "");
    assert_eq!(consumed.status, 200, "{consumed:?}");
    let lines = consumed.lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["body"], serde_json::json!({"n": 2}));
    let receipts: String = lines
        .iter()
        .map(|l| format!("{}\n", l["receipt"].as_str().unwrap()))
        .collect();
    assert_eq!(https("POST", "/v1/ack", &receipts).json()["done"], 2);
    https("GET", "/v1/queues/nope/messages", "").error(404, 3);
    // Plain HTTP to the TLS port is not answered in HTTP.
    let answer = raw(&server, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!answer.starts_with("HTTP/"), "{answer}");
    assert!(try_request("GET", &server.url("/v1/health"), None, b"").is_err());
    // A client that trusts another certificate refuses the handshake.
    let (_, _, other) = self_signed();
    assert!(tls_request(&server.addr, &other, "GET", "/v1/health", None, b"").is_err());
    // None of this hurt the server.
    let stats = https("GET", "/v1/stats", "").json();
    assert_eq!(stats["queues"][0]["acked"], 2, "{stats}");
}

#[test]
fn serve_over_https_beyond_loopback_still_needs_tokens() {
    let env = Env::new();
    let (cert, key, ca) = tls_files(&env, "server");
    let tls = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    let run = env.run(&[&["serve", "--listen", "0.0.0.0:0"][..], &tls].concat());
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--token-file"), "{run:?}");
    assert!(!run.stderr.contains("listening"), "{run:?}");
    let tokens = env.path("tokens");
    std::fs::write(&tokens, "t0ken\n").unwrap();
    let args = [
        &[
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            tokens.to_str().unwrap(),
        ][..],
        &tls,
    ]
    .concat();
    let server = Server::start(&env, &args);
    let port = server.addr.rsplit(':').next().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let get = |token| tls_request(&addr, &ca, "GET", "/v1/stats", token, b"").unwrap();
    assert_eq!(get(None).status, 401);
    assert_eq!(get(Some("wrong")).status, 401);
    assert_eq!(get(Some("t0ken")).status, 200);
}

#[test]
fn serve_refuses_a_bad_certificate_or_key_with_exit_2_before_listening() {
    let env = Env::new();
    let (cert, key, _) = tls_files(&env, "server");
    let (_, other_key, _) = tls_files(&env, "other");
    let garbage = env.path("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let garbage = garbage.to_str().unwrap();
    let missing = env.path("missing.pem");
    let missing = missing.to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (&["--tls-cert", &cert], "--tls-key"),
        (&["--tls-key", &key], "--tls-cert"),
        (&["--tls-cert", missing, "--tls-key", &key], "missing.pem"),
        (&["--tls-cert", &cert, "--tls-key", missing], "missing.pem"),
        (&["--tls-cert", garbage, "--tls-key", &key], "garbage.pem"),
        // Swapped: no certificate in the key file, no key in the certificate.
        (&["--tls-cert", &key, "--tls-key", &cert], "server.key"),
        (
            &["--tls-cert", &cert, "--tls-key", &other_key],
            "does not belong",
        ),
    ];
    for (flags, says) in cases {
        let run = env.run(&[&["serve", "--listen", "127.0.0.1:0"][..], flags].concat());
        assert_eq!(run.code, 2, "{flags:?}: {run:?}");
        assert!(run.stderr.contains(says), "{flags:?}: {run:?}");
        assert!(!run.stderr.contains("listening"), "{flags:?}: {run:?}");
    }
}

#[test]
fn serve_over_https_drops_a_client_that_never_finishes_its_handshake() {
    let env = Env::new();
    let (cert, key, ca) = tls_files(&env, "server");
    let server = Server::start(
        &env,
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--header-timeout",
            "1s",
        ],
    );
    // Connected, and silent: no ClientHello ever comes.
    let mut silent = TcpStream::connect(&server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // Half a ClientHello (a TLS record header announcing more).
    let mut half = TcpStream::connect(&server.addr).unwrap();
    half.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    // Meanwhile others are served.
    let reply = tls_request(&server.addr, &ca, "GET", "/v1/health", None, b"").unwrap();
    assert_eq!(reply.status, 200);
    // Both are closed by the server, not left holding a connection.
    assert!(closed_by_server(&mut silent));
    assert!(closed_by_server(&mut half));
}

/// Reads until the server closes the connection (true) or 30 s of
/// silence pass (false); what it sent meanwhile must not be HTTP.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => assert!(!buf[..n].starts_with(b"HTTP/"), "an HTTP answer"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Publishes that arrive together are committed together (group commit),
/// each still all or nothing: the requests a full queue refuses, or whose
/// receipt holds no lease, leave nothing behind, and the others' ids are
/// theirs.
#[test]
fn serve_concurrent_publishes_stay_all_or_nothing_each() {
    const CLIENTS: usize = 16;
    let env = Env::new();
    env.run(&["queue", "create", "small", "--max-length", "5"])
        .success();
    let server = Server::start(&env, &["--quiet"]);
    let base = server.url("");
    // A receipt whose delivery is acked already: every publish acking it
    // is refused inside the group.
    server.post("/v1/queues/src/messages", "1");
    let got = request("POST", &server.url("/v1/queues/src/consume"), None, b"").lines();
    let receipt = got[0]["receipt"].as_str().unwrap().to_owned();
    let acked = request("POST", &server.url("/v1/ack"), None, receipt.as_bytes());
    assert_eq!(acked.json()["done"], 1, "{acked:?}");
    let barrier = Arc::new(std::sync::Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (base, barrier, receipt) = (base.clone(), Arc::clone(&barrier), receipt.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let url = format!("{base}/v1/queues/small/messages");
                let body = format!(
                    "{{\"c\":{c},\"i\":0}}\n{{\"c\":{c},\"i\":1}}\n{{\"c\":{c},\"i\":2}}\n"
                );
                let small = request("POST", &url, None, body.as_bytes());
                let url = format!("{base}/v1/queues/free/messages");
                let free = request("POST", &url, None, format!("{{\"c\":{c}}}").as_bytes());
                let url = format!("{base}/v1/queues/free/messages?ack={receipt}");
                let acking = request("POST", &url, None, b"{\"x\":1}");
                (small, free, acking)
            })
        })
        .collect();
    let replies: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut small_ids = Vec::new();
    let mut free_ids = Vec::new();
    for (small, free, acking) in &replies {
        if small.status == 201 {
            let ids = small.json()["ids"].as_array().unwrap().clone();
            assert_eq!(ids.len(), 3, "{small:?}");
            small_ids.extend(ids.iter().map(|v| v.as_i64().unwrap()));
        } else {
            let message = small.error(503, 75);
            assert!(message.contains("full"), "{message}");
        }
        assert_eq!(free.status, 201, "{free:?}");
        free_ids.push(free.json()["ids"][0].as_i64().unwrap());
        acking.error(404, 3);
    }
    // Five places: one request of three fits, and no other gets in part.
    assert_eq!(small_ids.len(), 3, "{replies:?}");
    let held = |queue: &str| -> Vec<i64> {
        let mut ids: Vec<i64> = server
            .get(&format!("/v1/queues/{queue}/messages?state=all&n=100"))
            .lines()
            .iter()
            .map(|l| l["id"].as_i64().unwrap())
            .collect();
        ids.sort_unstable();
        ids
    };
    small_ids.sort_unstable();
    free_ids.sort_unstable();
    assert_eq!(held("small"), small_ids);
    assert_eq!(held("free"), free_ids);
}
