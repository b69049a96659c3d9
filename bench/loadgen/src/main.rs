//! A load generator for `bench/brokers.sh`: the same producers and consumers
//! against spool serve, RabbitMQ, NATS JetStream and Redis, each in its
//! durable mode, one scenario per run, one result line.
//!
//! Scenarios:
//! - `produce`: `--clients` producers, each sending one message per request
//!   and waiting for its confirmation before the next, for `--seconds`.
//! - `consume`: the queue is filled with `--messages` (not timed), then
//!   `--clients` consumers receive up to `--batch` messages and ack them,
//!   until all are acked or `--seconds` pass.
//! - `latency`: `--clients` producers send `--rate` messages per second in
//!   all (one per request, confirmed) while `--clients` consumers receive
//!   and ack them; the latency is from the send to the receive.

mod nats;
mod rabbit;
mod redisq;
mod spool;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SystemKind {
    Spool,
    Rabbitmq,
    Nats,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Produce,
    Consume,
    Latency,
}

/// Drive one broker with one scenario and print one result line.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The system under test
    #[arg(long)]
    system: SystemKind,
    /// Where it listens: http://HOST:PORT (spool), amqp://USER:PASS@HOST:PORT/%2f
    /// (rabbitmq), nats://HOST:PORT (nats), redis://HOST:PORT (redis)
    #[arg(long)]
    url: String,
    /// What to run
    #[arg(long)]
    scenario: Scenario,
    /// Producers, and consumers
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Messages a consumer receives and acks at a time
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// How long the timed part runs at most
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// `consume`: messages put in the queue before the clock starts
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// `latency`: messages per second, all producers together
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Queue (stream, list) name; a unique one by default. It is created
    /// fresh and deleted afterwards (spool: left in its database)
    #[arg(long)]
    queue: Option<String>,
    /// A name for the result line (default: the system's)
    #[arg(long)]
    label: Option<String>,
    /// Print the result as one JSON object too
    #[arg(long)]
    json: bool,
}

/// Nanoseconds since the process started: the send time a message carries.
fn now_nanos() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A message body: a small JSON object with a sequence number and the send
/// time, the same bytes for every system.
fn body(n: u64) -> Bytes {
    Bytes::from(format!(
        "{{\"n\":{n},\"t\":{},\"pad\":\"spool-loadgen-message\"}}",
        now_nanos()
    ))
}

/// The send time of a body made by [`body`].
fn sent_at(body: &[u8]) -> Option<u64> {
    let at = body.windows(4).position(|w| w == b"\"t\":")? + 4;
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// One producer connection: sends one message and waits for the broker to
/// confirm it.
trait Producer: Send + 'static {
    fn send(&mut self, body: Bytes) -> impl Future<Output = Result<()>> + Send;
}

/// One consumer connection. `receive` returns the bodies of up to `n`
/// messages, waiting up to `wait` for the first; `ack` acks all it returned
/// since the last ack, waiting for the broker's answer where it gives one.
trait Consumer: Send + 'static {
    fn receive(
        &mut self,
        n: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Bytes>>> + Send;
    fn ack(&mut self) -> impl Future<Output = Result<()>> + Send;
}

/// A broker: creates the queue, opens connections, fills and deletes.
trait System {
    type P: Producer;
    type C: Consumer;
    async fn setup(&mut self, batch: usize) -> Result<()>;
    async fn producer(&self) -> Result<Self::P>;
    async fn consumer(&self, batch: usize) -> Result<Self::C>;
    /// Puts `n` messages in the queue, fast (batches, pipelining).
    async fn fill(&self, n: u64) -> Result<()>;
    async fn cleanup(&mut self) -> Result<()>;
}

struct Outcome {
    messages: u64,
    elapsed: Duration,
    /// Microseconds: per request (produce), per receive+ack (consume), send
    /// to receive (latency).
    latencies: Vec<u64>,
    /// `latency`: the messages sent per second, reached or not.
    sent_rate: Option<f64>,
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p / 100.0) as usize).min(sorted.len() - 1);
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    now_nanos();
    let queue = args.queue.clone().unwrap_or_else(|| {
        format!("loadgen_{}_{:?}", std::process::id(), args.scenario).to_lowercase()
    });
    if args.clients == 0 || args.batch == 0 {
        bail!("--clients and --batch must be at least 1");
    }
    let outcome = match args.system {
        SystemKind::Spool => run(spool::Spool::new(&args.url, &queue)?, &args).await,
        SystemKind::Rabbitmq => run(rabbit::Rabbit::new(&args.url, &queue), &args).await,
        SystemKind::Nats => run(nats::Nats::new(&args.url, &queue), &args).await,
        SystemKind::Redis => run(redisq::Redis::new(&args.url, &queue)?, &args).await,
    }?;
    report(&args, outcome);
    Ok(())
}

fn report(args: &Args, mut o: Outcome) {
    o.latencies.sort_unstable();
    let rate = o.messages as f64 / o.elapsed.as_secs_f64();
    let (p50, p99) = (pct(&o.latencies, 50.0), pct(&o.latencies, 99.0));
    let max = o.latencies.last().map_or(f64::NAN, |&m| m as f64 / 1000.0);
    // consume: messages per receive, on average.
    let receives = o.latencies.len();
    let label = args
        .label
        .clone()
        .unwrap_or_else(|| format!("{:?}", args.system).to_lowercase());
    let scenario = format!("{:?}", args.scenario).to_lowercase();
    println!(
        "{label:<14} {scenario:<8} batch {:>3}  clients {:>2}  {:>9.0} msg/s  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  ({} messages in {:.2} s{}{})",
        args.batch,
        args.clients,
        rate,
        p50,
        p99,
        max,
        o.messages,
        o.elapsed.as_secs_f64(),
        o.sent_rate
            .map(|r| format!(", sent {r:.0} msg/s"))
            .unwrap_or_default(),
        if args.scenario == Scenario::Consume && receives > 0 {
            format!(", {:.1} per receive", o.messages as f64 / receives as f64)
        } else {
            String::new()
        }
    );
    if args.json {
        let json = serde_json::json!({
            "label": label,
            "system": format!("{:?}", args.system).to_lowercase(),
            "scenario": scenario,
            "batch": args.batch,
            "clients": args.clients,
            "messages": o.messages,
            "seconds": o.elapsed.as_secs_f64(),
            "rate": rate,
            "sent_rate": o.sent_rate,
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": max,
            "receives": receives,
        });
        println!("{json}");
    }
}

/// How long one request may wait for its answer before the run fails.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

/// `f`, or an error if it did not finish within [`ANSWER_LIMIT`].
async fn bounded<T>(what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(ANSWER_LIMIT, f).await {
        Ok(outcome) => outcome,
        Err(_) => bail!("{what} got no answer within {}s", ANSWER_LIMIT.as_secs()),
    }
}

async fn run<S: System>(mut sys: S, args: &Args) -> Result<Outcome> {
    bounded("creating the queue", sys.setup(args.batch)).await?;
    // However a broker behaves, the run ends: the timed part, the filling
    // and the draining get a generous limit together.
    let limit = Duration::from_secs_f64(args.seconds * 2.0) + Duration::from_secs(300);
    let scenario = async {
        match args.scenario {
            Scenario::Produce => produce(&sys, args).await,
            Scenario::Consume => consume(&sys, args).await,
            Scenario::Latency => latency(&sys, args).await,
        }
    };
    let outcome = match tokio::time::timeout(limit, scenario).await {
        Ok(outcome) => outcome,
        Err(_) => Err(anyhow::anyhow!(
            "the run did not end within {}s",
            limit.as_secs()
        )),
    };
    let cleaned = bounded("deleting the queue", sys.cleanup()).await;
    let outcome = outcome?;
    cleaned?;
    Ok(outcome)
}

async fn produce<S: System>(sys: &S, args: &Args) -> Result<Outcome> {
    let mut producers = Vec::new();
    for _ in 0..args.clients {
        producers.push(sys.producer().await.context("connecting a producer")?);
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut p in producers {
        let seq = Arc::clone(&seq);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let b = body(seq.fetch_add(1, Ordering::Relaxed));
                let t0 = Instant::now();
                bounded("a publish", p.send(b)).await?;
                latencies.push(t0.elapsed().as_micros() as u64);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(Outcome {
        messages: latencies.len() as u64,
        elapsed: start.elapsed(),
        latencies,
        sent_rate: None,
    })
}

async fn consume<S: System>(sys: &S, args: &Args) -> Result<Outcome> {
    let fill_start = Instant::now();
    sys.fill(args.messages).await.context("filling the queue")?;
    eprintln!(
        "loadgen: {} messages put in {:.1} s",
        args.messages,
        fill_start.elapsed().as_secs_f64()
    );
    let mut consumers = Vec::new();
    for _ in 0..args.clients {
        consumers.push(
            sys.consumer(args.batch)
                .await
                .context("connecting a consumer")?,
        );
    }
    let target = args.messages;
    let acked = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let batch = args.batch;
    let mut tasks = Vec::new();
    for mut c in consumers {
        let acked = Arc::clone(&acked);
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut last) = (Vec::new(), start);
            while Instant::now() < deadline && acked.load(Ordering::Relaxed) < target {
                let t0 = Instant::now();
                let got =
                    bounded("a receive", c.receive(batch, Duration::from_millis(200))).await?;
                if got.is_empty() {
                    continue;
                }
                bounded("an ack", c.ack()).await?;
                last = Instant::now();
                latencies.push((last - t0).as_micros() as u64);
                acked.fetch_add(got.len() as u64, Ordering::Relaxed);
            }
            anyhow::Ok((latencies, last))
        }));
    }
    let (mut latencies, mut last) = (Vec::new(), start);
    for t in tasks {
        let (l, at) = t.await??;
        latencies.extend(l);
        last = last.max(at);
    }
    Ok(Outcome {
        messages: acked.load(Ordering::Relaxed),
        elapsed: last - start,
        latencies,
        sent_rate: None,
    })
}

async fn latency<S: System>(sys: &S, args: &Args) -> Result<Outcome> {
    if args.rate <= 0.0 {
        bail!("--rate must be above 0");
    }
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    for _ in 0..args.clients {
        producers.push(sys.producer().await.context("connecting a producer")?);
        consumers.push(
            sys.consumer(args.batch)
                .await
                .context("connecting a consumer")?,
        );
    }
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let producing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let start = Instant::now();
    let run_for = Duration::from_secs_f64(args.seconds);
    let batch = args.batch;
    let mut consumer_tasks = Vec::new();
    for mut c in consumers {
        let (sent, received, producing) = (
            Arc::clone(&sent),
            Arc::clone(&received),
            Arc::clone(&producing),
        );
        consumer_tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            // After the producers stop, what is left is drained for at most 10 s.
            let mut drain_until = None;
            loop {
                if !producing.load(Ordering::Relaxed) {
                    let until = *drain_until
                        .get_or_insert_with(|| Instant::now() + Duration::from_secs(10));
                    if received.load(Ordering::Relaxed) >= sent.load(Ordering::Relaxed)
                        || Instant::now() > until
                    {
                        break;
                    }
                }
                let got =
                    bounded("a receive", c.receive(batch, Duration::from_millis(500))).await?;
                if got.is_empty() {
                    continue;
                }
                let now = now_nanos();
                for b in &got {
                    if let Some(t) = sent_at(b) {
                        latencies.push(now.saturating_sub(t) / 1000);
                    }
                }
                bounded("an ack", c.ack()).await?;
                received.fetch_add(got.len() as u64, Ordering::Relaxed);
            }
            anyhow::Ok(latencies)
        }));
    }
    // Producer i sends message k*clients + i at start + (k*clients + i)/rate;
    // one that falls behind sends at once.
    let clients = args.clients as u64;
    let interval = 1.0 / args.rate;
    let mut producer_tasks = Vec::new();
    for (i, mut p) in producers.into_iter().enumerate() {
        let sent = Arc::clone(&sent);
        producer_tasks.push(tokio::spawn(async move {
            let mut k = 0u64;
            loop {
                let n = k * clients + i as u64;
                let at = start + Duration::from_secs_f64(n as f64 * interval);
                if at - start >= run_for {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                bounded("a publish", p.send(body(n))).await?;
                sent.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
            anyhow::Ok(())
        }));
    }
    for t in producer_tasks {
        t.await??;
    }
    let sent_elapsed = start.elapsed();
    producing.store(false, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in consumer_tasks {
        latencies.extend(t.await??);
    }
    let (s, r) = (
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
    );
    if r < s {
        eprintln!(
            "loadgen: {} of {s} messages not received within 10 s after the last send",
            s - r
        );
    }
    Ok(Outcome {
        messages: r,
        elapsed: sent_elapsed,
        latencies,
        sent_rate: Some(s as f64 / sent_elapsed.as_secs_f64()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_carries_its_send_time() {
        let b = body(7);
        let t = sent_at(&b).expect("a send time");
        assert!(t <= now_nanos());
        assert_eq!(sent_at(br#"{"id":1,"body":{"n":1,"t":42}}"#), Some(42));
        assert_eq!(sent_at(b"{\"warm\":1}"), None);
    }

    #[test]
    fn percentiles_pick_from_the_sorted_values() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(pct(&v, 50.0), 51.0);
        assert_eq!(pct(&v, 99.0), 100.0);
        assert!(pct(&[], 50.0).is_nan());
    }
}
