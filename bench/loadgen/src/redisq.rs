//! Redis as a queue, the reliable-queue pattern: producers LPUSH to a list
//! (with `appendfsync always` the reply comes after the AOF is fsynced);
//! each consumer moves messages to a processing list of its own with
//! BLMOVE/LMOVE (tail to head, so the oldest first) and acks with LREM
//! from that list. A consumer that dies leaves its messages in its
//! processing list, where a reaper could find them; RPOP would lose them.
//! A batch is one BLMOVE that waits for the first, then the rest with LMOVE
//! in one pipeline; its ack is one pipeline of LREMs. One connection per
//! client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

pub struct Redis {
    client: redis::Client,
    queue: String,
    consumers: AtomicU64,
}

impl Redis {
    pub fn new(url: &str, queue: &str) -> Result<Redis> {
        Ok(Redis {
            client: redis::Client::open(url).context("a Redis URL like redis://HOST:PORT")?,
            queue: queue.to_string(),
            consumers: AtomicU64::new(0),
        })
    }

    async fn conn(&self) -> Result<MultiplexedConnection> {
        // No response timeout: BLMOVE waits on purpose.
        let config = AsyncConnectionConfig::new().set_response_timeout(None);
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    fn processing(&self, n: u64) -> String {
        format!("{}:processing:{n}", self.queue)
    }
}

pub struct Producer {
    conn: MultiplexedConnection,
    queue: String,
}

impl crate::Producer for Producer {
    async fn send(&mut self, body: Bytes) -> Result<()> {
        let _len: i64 = redis::cmd("LPUSH")
            .arg(&self.queue)
            .arg(&body[..])
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }
}

pub struct Consumer {
    conn: MultiplexedConnection,
    queue: String,
    processing: String,
    pending: Vec<Bytes>,
}

impl crate::Consumer for Consumer {
    async fn receive(&mut self, n: usize, wait: Duration) -> Result<Vec<Bytes>> {
        let first: Option<Vec<u8>> = redis::cmd("BLMOVE")
            .arg(&self.queue)
            .arg(&self.processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(wait.as_secs_f64())
            .query_async(&mut self.conn)
            .await?;
        let Some(first) = first else {
            return Ok(Vec::new());
        };
        self.pending.push(first.into());
        if n > 1 {
            let mut pipe = redis::pipe();
            for _ in 1..n {
                pipe.cmd("LMOVE")
                    .arg(&self.queue)
                    .arg(&self.processing)
                    .arg("RIGHT")
                    .arg("LEFT");
            }
            let rest: Vec<Option<Vec<u8>>> = pipe.query_async(&mut self.conn).await?;
            self.pending
                .extend(rest.into_iter().flatten().map(Bytes::from));
        }
        Ok(self.pending.clone())
    }

    async fn ack(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for b in &pending {
            pipe.cmd("LREM").arg(&self.processing).arg(1).arg(&b[..]);
        }
        let removed: Vec<i64> = pipe.query_async(&mut self.conn).await?;
        if removed.iter().any(|&r| r != 1) {
            bail!("an LREM removed no message from {}", self.processing);
        }
        Ok(())
    }
}

impl crate::System for Redis {
    type P = Producer;
    type C = Consumer;

    async fn setup(&mut self, _batch: usize) -> Result<()> {
        self.cleanup().await
    }

    async fn producer(&self) -> Result<Producer> {
        Ok(Producer {
            conn: self.conn().await?,
            queue: self.queue.clone(),
        })
    }

    async fn consumer(&self, _batch: usize) -> Result<Consumer> {
        let n = self.consumers.fetch_add(1, Ordering::Relaxed);
        Ok(Consumer {
            conn: self.conn().await?,
            queue: self.queue.clone(),
            processing: self.processing(n),
            pending: Vec::new(),
        })
    }

    async fn fill(&self, n: u64) -> Result<()> {
        let mut conn = self.conn().await?;
        let mut i = 0;
        while i < n {
            let chunk = (n - i).min(1000);
            let mut cmd = redis::cmd("LPUSH");
            cmd.arg(&self.queue);
            for k in i..i + chunk {
                cmd.arg(&crate::body(k)[..]);
            }
            let _len: i64 = cmd.query_async(&mut conn).await?;
            i += chunk;
        }
        Ok(())
    }

    async fn cleanup(&mut self) -> Result<()> {
        let mut conn = self.conn().await?;
        let mut del = redis::cmd("DEL");
        del.arg(&self.queue);
        for n in 0..self.consumers.load(Ordering::Relaxed).max(1) {
            del.arg(self.processing(n));
        }
        let _n: i64 = del.query_async(&mut conn).await?;
        Ok(())
    }
}
