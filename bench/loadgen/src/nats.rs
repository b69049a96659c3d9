//! NATS JetStream in its durable mode: a stream with file storage and
//! work-queue retention, one durable pull consumer with explicit acks that
//! all consumer clients pull from. One connection per client. A publish
//! waits for the stream's PubAck; an ack waits for the server's answer
//! (`double_ack`), as spool's and Redis's acks do.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt as _;

const CONSUMER: &str = "workers";

pub struct Nats {
    url: String,
    /// The stream, and its one subject.
    name: String,
}

impl Nats {
    pub fn new(url: &str, queue: &str) -> Nats {
        Nats {
            url: url.to_string(),
            // Stream names may not hold `.`, `*`, `>` or spaces.
            name: queue.replace(['.', '*', '>', ' '], "_"),
        }
    }

    async fn context(&self) -> Result<jetstream::Context> {
        let client = async_nats::connect(&self.url)
            .await
            .with_context(|| format!("cannot connect to NATS at {}", self.url))?;
        Ok(jetstream::new(client))
    }
}

pub struct Producer {
    js: jetstream::Context,
    subject: String,
}

impl crate::Producer for Producer {
    async fn send(&mut self, body: Bytes) -> Result<()> {
        self.js
            .publish(self.subject.clone(), body)
            .await
            .map_err(|e| anyhow!("JetStream publish: {e}"))?
            .await
            .map_err(|e| anyhow!("JetStream PubAck: {e}"))?;
        Ok(())
    }
}

pub struct Consumer {
    consumer: consumer::Consumer<consumer::pull::Config>,
    pending: Vec<jetstream::Message>,
    /// Fetches given up for want of an end.
    stalled: u64,
}

impl crate::Consumer for Consumer {
    async fn receive(&mut self, n: usize, wait: Duration) -> Result<Vec<Bytes>> {
        // What is there now, up to n, without waiting...
        let mut messages = self
            .consumer
            .fetch()
            .max_messages(n)
            .messages()
            .await
            .map_err(|e| anyhow!("JetStream fetch: {e}"))?;
        // A fetch has no timer of its own: one whose end the server does not
        // send is given up after a while (counted, and told at the end).
        let fetched = tokio::time::timeout(wait + Duration::from_secs(2), async {
            while let Some(m) = messages.next().await {
                self.pending
                    .push(m.map_err(|e| anyhow!("JetStream fetch: {e}"))?);
            }
            anyhow::Ok(())
        })
        .await;
        match fetched {
            Ok(outcome) => outcome?,
            Err(_) => {
                self.stalled += 1;
                eprintln!(
                    "loadgen: a JetStream fetch got no end within {:?} ({} so far on this connection)",
                    wait + Duration::from_secs(2),
                    self.stalled
                );
            }
        }
        // ...or else the first that arrives within `wait`.
        if self.pending.is_empty() {
            let mut messages = self
                .consumer
                .batch()
                .max_messages(1)
                .expires(wait)
                .messages()
                .await
                .map_err(|e| anyhow!("JetStream pull: {e}"))?;
            while let Some(m) = messages.next().await {
                self.pending
                    .push(m.map_err(|e| anyhow!("JetStream pull: {e}"))?);
            }
        }
        Ok(self.pending.iter().map(|m| m.payload.clone()).collect())
    }

    async fn ack(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let acks = futures_util::future::join_all(pending.iter().map(|m| m.double_ack())).await;
        for a in acks {
            a.map_err(|e| anyhow!("JetStream ack: {e}"))?;
        }
        Ok(())
    }
}

impl crate::System for Nats {
    type P = Producer;
    type C = Consumer;

    async fn setup(&mut self, _batch: usize) -> Result<()> {
        let js = self.context().await?;
        let stream = js
            .create_stream(stream::Config {
                name: self.name.clone(),
                subjects: vec![self.name.clone()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("creating the stream: {e}"))?;
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(CONSUMER.to_string()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("creating the consumer: {e}"))?;
        Ok(())
    }

    async fn producer(&self) -> Result<Producer> {
        Ok(Producer {
            js: self.context().await?,
            subject: self.name.clone(),
        })
    }

    async fn consumer(&self, _batch: usize) -> Result<Consumer> {
        let js = self.context().await?;
        let stream = js
            .get_stream(&self.name)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let consumer = stream
            .get_consumer(CONSUMER)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        Ok(Consumer {
            consumer,
            pending: Vec::new(),
            stalled: 0,
        })
    }

    async fn fill(&self, n: u64) -> Result<()> {
        let js = self.context().await?;
        let mut i = 0;
        while i < n {
            let chunk = (n - i).min(1000);
            let mut acks = Vec::new();
            for k in i..i + chunk {
                acks.push(
                    js.publish(self.name.clone(), crate::body(k))
                        .await
                        .map_err(|e| anyhow!("JetStream publish: {e}"))?,
                );
            }
            for a in futures_util::future::join_all(
                acks.into_iter().map(std::future::IntoFuture::into_future),
            )
            .await
            {
                a.map_err(|e| anyhow!("JetStream PubAck: {e}"))?;
            }
            i += chunk;
        }
        Ok(())
    }

    async fn cleanup(&mut self) -> Result<()> {
        let js = self.context().await?;
        js.delete_stream(&self.name)
            .await
            .map_err(|e| anyhow!("deleting the stream: {e}"))?;
        Ok(())
    }
}
