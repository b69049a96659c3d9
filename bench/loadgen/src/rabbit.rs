//! RabbitMQ in its durable mode: a durable classic queue, persistent
//! messages (delivery mode 2), publisher confirms, manual acks. One
//! connection (one channel) per client. Consumers get pushed messages with
//! `basic.consume` and a prefetch of the batch size, and ack a batch with
//! one `basic.ack` (`multiple`). AMQP 0-9-1 has no answer to `basic.ack`:
//! an ack is done once it is sent.

use std::time::Duration;

use anyhow::{Result, bail};
use bytes::Bytes;
use futures_util::{FutureExt as _, StreamExt as _};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

pub struct Rabbit {
    url: String,
    queue: String,
}

impl Rabbit {
    pub fn new(url: &str, queue: &str) -> Rabbit {
        Rabbit {
            url: url.to_string(),
            queue: queue.to_string(),
        }
    }

    async fn channel(&self) -> Result<(Connection, Channel)> {
        let conn = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        Ok((conn, channel))
    }
}

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

pub struct Producer {
    _conn: Connection,
    channel: Channel,
    queue: String,
}

impl crate::Producer for Producer {
    async fn send(&mut self, body: Bytes) -> Result<()> {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                persistent(),
            )
            .await?
            .await?;
        if !confirm.is_ack() {
            bail!("RabbitMQ did not confirm a publish: {confirm:?}");
        }
        Ok(())
    }
}

pub struct Consumer {
    _conn: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
    /// The delivery tag of the last message received and not acked.
    last: Option<u64>,
}

impl crate::Consumer for Consumer {
    async fn receive(&mut self, n: usize, wait: Duration) -> Result<Vec<Bytes>> {
        let mut bodies = Vec::new();
        let first = match tokio::time::timeout(wait, self.consumer.next()).await {
            Err(_) => return Ok(bodies),
            Ok(None) => bail!("RabbitMQ closed the consumer"),
            Ok(Some(d)) => d?,
        };
        self.last = Some(first.delivery_tag);
        bodies.push(Bytes::from(first.data));
        // Then what has already arrived, up to n.
        while bodies.len() < n {
            match self.consumer.next().now_or_never() {
                Some(Some(d)) => {
                    let d = d?;
                    self.last = Some(d.delivery_tag);
                    bodies.push(Bytes::from(d.data));
                }
                Some(None) => bail!("RabbitMQ closed the consumer"),
                None => break,
            }
        }
        Ok(bodies)
    }

    async fn ack(&mut self) -> Result<()> {
        if let Some(tag) = self.last.take() {
            self.channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await?;
        }
        Ok(())
    }
}

impl crate::System for Rabbit {
    type P = Producer;
    type C = Consumer;

    async fn setup(&mut self, _batch: usize) -> Result<()> {
        let (conn, channel) = self.channel().await?;
        channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await?;
        conn.close(200, "done".into()).await?;
        Ok(())
    }

    async fn producer(&self) -> Result<Producer> {
        let (conn, channel) = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Producer {
            _conn: conn,
            channel,
            queue: self.queue.clone(),
        })
    }

    async fn consumer(&self, batch: usize) -> Result<Consumer> {
        let (conn, channel) = self.channel().await?;
        channel
            .basic_qos(
                batch.min(u16::MAX as usize) as u16,
                BasicQosOptions::default(),
            )
            .await?;
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Consumer {
            _conn: conn,
            channel,
            consumer,
            last: None,
        })
    }

    async fn fill(&self, n: u64) -> Result<()> {
        let (conn, channel) = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut i = 0;
        while i < n {
            let chunk = (n - i).min(1000);
            for k in i..i + chunk {
                // Confirmed all together below (wait_for_confirms).
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        self.queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &crate::body(k),
                        persistent(),
                    )
                    .await?;
                drop(confirm);
            }
            let returned = channel.wait_for_confirms().await?;
            if !returned.is_empty() {
                bail!("RabbitMQ returned {} messages of the fill", returned.len());
            }
            i += chunk;
        }
        conn.close(200, "done".into()).await?;
        Ok(())
    }

    async fn cleanup(&mut self) -> Result<()> {
        let (conn, channel) = self.channel().await?;
        channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
        conn.close(200, "done".into()).await?;
        Ok(())
    }
}
