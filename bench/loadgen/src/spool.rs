//! spool serve's native HTTP API, one keep-alive HTTP/1.1 connection per
//! client: `POST /v1/queues/{q}/messages` (201 after the commit),
//! `POST /v1/queues/{q}/consume?n=&wait=` (200 NDJSON or 204) and
//! `POST /v1/ack` (the receipts, one per line).

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

pub struct Spool {
    /// HOST:PORT
    addr: String,
    queue: String,
}

impl Spool {
    pub fn new(url: &str, queue: &str) -> Result<Spool> {
        let addr = url
            .strip_prefix("http://")
            .context("the spool URL must be http://HOST:PORT")?
            .trim_end_matches('/')
            .to_string();
        Ok(Spool {
            addr,
            queue: queue.to_string(),
        })
    }
}

/// One HTTP/1.1 connection.
pub struct Conn {
    addr: String,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to spool serve at {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn {
            addr: addr.to_string(),
            sender,
        })
    }

    /// POSTs `body` to `path`: the status and the answer's body.
    async fn post(&mut self, path: &str, body: Bytes) -> Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let req = Request::post(path)
            .header(hyper::header::HOST, &self.addr)
            .body(Full::new(body))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

fn refused(what: &str, status: StatusCode, body: &[u8]) -> anyhow::Error {
    anyhow::anyhow!(
        "spool serve answered {what} with {status}: {}",
        String::from_utf8_lossy(body).trim()
    )
}

pub struct Producer {
    conn: Conn,
    path: String,
}

impl crate::Producer for Producer {
    async fn send(&mut self, mut body: Bytes) -> Result<()> {
        if !body.ends_with(b"\n") {
            let mut v = body.to_vec();
            v.push(b'\n');
            body = v.into();
        }
        let (status, answer) = self.conn.post(&self.path, body).await?;
        if status != StatusCode::CREATED {
            return Err(refused("a publish", status, &answer));
        }
        Ok(())
    }
}

pub struct Consumer {
    conn: Conn,
    queue: String,
    /// The receipts of the messages received and not yet acked.
    receipts: Vec<String>,
}

impl crate::Consumer for Consumer {
    async fn receive(&mut self, n: usize, wait: Duration) -> Result<Vec<Bytes>> {
        let path = format!(
            "/v1/queues/{}/consume?n={n}&wait={}ms",
            self.queue,
            wait.as_millis()
        );
        let (status, answer) = self.conn.post(&path, Bytes::new()).await?;
        match status {
            StatusCode::NO_CONTENT => return Ok(Vec::new()),
            StatusCode::OK => {}
            _ => return Err(refused("a consume", status, &answer)),
        }
        let mut bodies = Vec::new();
        for line in answer.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let d: serde_json::Value =
                serde_json::from_slice(line).context("a delivery that is not JSON")?;
            let receipt = d["receipt"]
                .as_str()
                .context("a delivery without a receipt")?;
            self.receipts.push(receipt.to_string());
            bodies.push(Bytes::from(d["body"].to_string()));
        }
        Ok(bodies)
    }

    async fn ack(&mut self) -> Result<()> {
        if self.receipts.is_empty() {
            return Ok(());
        }
        let body = self.receipts.join("\n") + "\n";
        let n = self.receipts.len();
        self.receipts.clear();
        let (status, answer) = self.conn.post("/v1/ack", body.into()).await?;
        if status != StatusCode::OK {
            return Err(refused("an ack", status, &answer));
        }
        let done: serde_json::Value = serde_json::from_slice(&answer)?;
        if done["done"].as_u64() != Some(n as u64) {
            bail!("spool serve acked fewer receipts than sent ({n}): {done}");
        }
        Ok(())
    }
}

impl crate::System for Spool {
    type P = Producer;
    type C = Consumer;

    /// Publishes one message and acks it, so the queue exists and is empty
    /// before the clock starts.
    async fn setup(&mut self, _batch: usize) -> Result<()> {
        use crate::{Consumer as _, Producer as _};
        let mut p = self.producer().await?;
        p.send(Bytes::from_static(b"{\"warm\":true}")).await?;
        let mut c = self.consumer(1).await?;
        let got = c.receive(1, Duration::from_secs(1)).await?;
        if got.len() != 1 {
            bail!("spool serve did not deliver the warm-up message");
        }
        c.ack().await
    }

    async fn producer(&self) -> Result<Producer> {
        Ok(Producer {
            conn: Conn::open(&self.addr).await?,
            path: format!("/v1/queues/{}/messages", self.queue),
        })
    }

    async fn consumer(&self, _batch: usize) -> Result<Consumer> {
        Ok(Consumer {
            conn: Conn::open(&self.addr).await?,
            queue: self.queue.clone(),
            receipts: Vec::new(),
        })
    }

    async fn fill(&self, n: u64) -> Result<()> {
        let mut conn = Conn::open(&self.addr).await?;
        let path = format!("/v1/queues/{}/messages", self.queue);
        let mut i = 0;
        while i < n {
            let chunk = (n - i).min(1000);
            let mut lines = Vec::new();
            for k in i..i + chunk {
                lines.extend_from_slice(&crate::body(k));
                lines.push(b'\n');
            }
            let (status, answer) = conn.post(&path, lines.into()).await?;
            if status != StatusCode::CREATED {
                return Err(refused("a publish", status, &answer));
            }
            i += chunk;
        }
        Ok(())
    }

    /// The HTTP API deletes no queue: it stays in the (temporary) database.
    async fn cleanup(&mut self) -> Result<()> {
        Ok(())
    }
}
