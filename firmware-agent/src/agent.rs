//! What every running part of the agent shares: the config as it is now, the
//! store, the clock, the health registry and the shutdown signal.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::health::Health;
use crate::store::Store;

/// Handed to every subsystem at start.
pub struct Agent {
    /// The config in force (the file with the hub's timetable over it); replaced
    /// when SIGHUP brings a valid new file or the hub pushes a timetable.
    pub config: watch::Sender<Arc<Config>>,
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub health: Health,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// The room's bells, lights and switches.
    pub actuators: Arc<crate::actuators::controller::Controller>,
    /// Where the teacher's roll-call corrections go.
    pub attendance: Arc<crate::attendance::desk::Desk>,
    /// Cancelled once, on SIGTERM or SIGINT: every task drains and returns.
    pub shutdown: CancellationToken,
    /// The certificate HTTPS serves browsers, when the room serves HTTPS;
    /// the hub's `PutCertificate` replaces it.
    pub lan_certificate: Option<Arc<crate::tls::served::ServedCertificate>>,
}

impl Agent {
    /// A snapshot of the config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }
}

#[cfg(test)]
pub mod testing {
    use super::*;

    /// An agent on `config`, `store` and `clock`, its devices opened, as the daemon makes it.
    pub fn agent(
        config: Config,
        store: Arc<Store>,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> (Arc<Agent>, Option<crate::actuators::runner::MqttParts>) {
        let (actuators, mqtt) =
            crate::actuators::runner::open(&config, store.clone(), clock.clone()).unwrap();
        let agent = Agent {
            config: watch::channel(Arc::new(config)).0,
            store,
            health: Health::new(clock.clone()),
            clock,
            metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
                .build_recorder()
                .handle(),
            actuators,
            attendance: Default::default(),
            shutdown: CancellationToken::new(),
            lan_certificate: None,
        };
        (Arc::new(agent), mqtt)
    }

    /// Returns once `sleepers` sleeps wait on `clock`: the loops a test drives
    /// have done what the last move woke them for. Checked every millisecond;
    /// panics after 10 s.
    pub async fn until_asleep(clock: &crate::clock::ManualClock, sleepers: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while clock.sleepers() != sleepers {
            assert!(
                std::time::Instant::now() < deadline,
                "{} sleeps wait on the clock, not {sleepers}",
                clock.sleepers()
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}
