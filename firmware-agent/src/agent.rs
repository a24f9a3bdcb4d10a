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
}

impl Agent {
    /// A snapshot of the config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }
}
