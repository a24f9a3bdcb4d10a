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
    pub attendance: crate::attendance::desk::Desk,
    /// Cancelled once, on SIGTERM or SIGINT: every task drains and returns.
    pub shutdown: CancellationToken,
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
    pub fn agent(config: Config, store: Arc<Store>, clock: Arc<dyn crate::clock::Clock>) -> (Arc<Agent>, Option<crate::actuators::runner::MqttParts>) {
        let (actuators, mqtt) = crate::actuators::runner::open(&config, store.clone(), clock.clone()).unwrap();
        let agent = Agent {
            config: watch::channel(Arc::new(config)).0,
            store,
            health: Health::new(clock.clone()),
            clock,
            metrics: metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle(),
            actuators,
            attendance: Default::default(),
            shutdown: CancellationToken::new(),
        };
        (Arc::new(agent), mqtt)
    }
}
