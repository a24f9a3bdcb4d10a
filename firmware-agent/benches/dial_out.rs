//! The dial-out link's throughput against the ordinary Pull, in the same run
//! (run with `cargo bench --bench dial_out`): the same backlog pulled, from
//! the start, by a hub that opened the connection itself (the baseline) and by
//! a hub whose client runs over the connection the room dialled (the province
//! hub's acceptor, `province_hub::sync::dial_in`). Both over loopback in plaintext, so the
//! difference is the link and nothing else; rounds alternate, and each figure
//! is given with its spread.
//!
//! `DIAL_OUT_BENCH_EVENTS` sets the backlog (200 000 by default),
//! `DIAL_OUT_BENCH_ROUNDS` the rounds (5).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use firmware_agent::agent::Agent;
use firmware_agent::clock::{Clock, SystemClock};
use firmware_agent::config::Config;
use firmware_agent::health::Health;
use firmware_agent::proto::sync_service_client::SyncServiceClient;
use firmware_agent::proto::{PullRequest, pull_response};
use firmware_agent::store::Store;
use province_hub::sync::dial_in;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

fn from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Pulls every event from the start over `client`, checking order; returns the count and time.
async fn pull(mut client: SyncServiceClient<Channel>) -> (usize, Duration) {
    let started = Instant::now();
    let request = PullRequest {
        after_seq: 0,
        max_batch: 0,
        follow: false,
    };
    let mut stream = client.pull(request).await.unwrap().into_inner();
    let (mut last, mut count) = (0, 0usize);
    while let Some(message) = stream.message().await.unwrap() {
        let Some(pull_response::Message::Batch(batch)) = message.message else {
            continue;
        };
        for event in batch.events {
            assert!(
                event.seq > last && event.payload.is_some(),
                "in order and typed"
            );
            last = event.seq;
            count += 1;
        }
    }
    (count, started.elapsed())
}

/// Median and the spread (lowest to highest) of `rates`.
fn summary(rates: &mut [f64]) -> (f64, f64, f64) {
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], rates[0], rates[rates.len() - 1])
}

fn main() {
    let backlog = from_env("DIAL_OUT_BENCH_EVENTS", 200_000);
    let rounds = from_env("DIAL_OUT_BENCH_ROUNDS", 5).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hub = runtime
        .block_on(dial_in::DialIn::bind("127.0.0.1:0".parse().unwrap(), None))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "[room]\nschool_code = \"BENCH-01\"\nroom_id = \"P101\"\n[storage]\ndata_dir = {:?}\n[hub]\nlisten = \"127.0.0.1:0\"\nplaintext = true\nconnect = \"{}\"\n",
        dir.path().to_str().unwrap(),
        hub.local_addr()
    );
    let config = Config::parse(&dir.path().join("agent.toml"), &source).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(Store::open(&config.database_path(), clock.clone()).unwrap());
    common::fill_backlog(&store, backlog);

    let (actuators, _) =
        firmware_agent::actuators::runner::open(&config, store.clone(), clock.clone()).unwrap();
    let (config, _) = tokio::sync::watch::channel(Arc::new(config));
    let agent = Arc::new(Agent {
        config,
        store,
        health: Health::new(clock.clone()),
        clock,
        metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle(),
        actuators,
        attendance: Default::default(),
        lan_certificate: None,
        shutdown: CancellationToken::new(),
    });
    let listener = runtime
        .block_on(firmware_agent::hub::bind(&agent.config().hub))
        .unwrap()
        .expect("plaintext is configured");
    let address = listener.local_addr().unwrap();
    let dialler = firmware_agent::hub::dial_out::prepare(&agent.config().hub)
        .unwrap()
        .expect("hub.connect is configured");
    let tasks = tokio_util::task::TaskTracker::new();
    {
        let _entered = runtime.enter();
        firmware_agent::hub::start(&agent, Some(listener), Some(dialler), &tasks);
    }
    let link = runtime
        .block_on(async { hub.accept().await?.admit().await })
        .unwrap();
    let dialled_client = SyncServiceClient::new(link.channel).max_decoding_message_size(64 << 20);

    let (mut pulled, mut dialled) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let client = runtime.block_on(async {
            SyncServiceClient::connect(format!("http://{address}"))
                .await
                .unwrap()
        });
        let (count, time) = runtime.block_on(pull(client.max_decoding_message_size(64 << 20)));
        assert_eq!(count, backlog);
        pulled.push(count as f64 / time.as_secs_f64());
        let (count, time) = runtime.block_on(pull(dialled_client.clone()));
        assert_eq!(count, backlog);
        dialled.push(count as f64 / time.as_secs_f64());
    }
    let (pull_median, pull_low, pull_high) = summary(&mut pulled);
    let (dial_median, dial_low, dial_high) = summary(&mut dialled);
    println!("{backlog} events pulled from the start, {rounds} rounds, alternating:");
    println!(
        "  Pull over a connection the hub opened (baseline): median {pull_median:.0} events/s (range {pull_low:.0} to {pull_high:.0})"
    );
    println!(
        "  Pull over the link the room dialled:              median {dial_median:.0} events/s (range {dial_low:.0} to {dial_high:.0})"
    );
    println!(
        "  the dial-out link runs at {:.2}x the baseline",
        dial_median / pull_median
    );

    agent.shutdown.cancel();
    tasks.close();
    runtime.block_on(tasks.wait());
}
