//! What each part of the agent says about itself, gathered for `/healthz`, the
//! panel's status view and the hub's status call.
//!
//! Subsystems report through a cloned [`Health`] handle whenever their state
//! changes (a camera unplugged, a broker back); readers take a snapshot. Each
//! change into or out of trouble (degraded, failed) is also recorded for the
//! hub as a `device.health` event, handed to the store's recorder once
//! [`Health::record_in`] has been given it; a start that goes well records
//! nothing. The registry knows the recorder only as that function, so the
//! recorder can report its own state here without the two importing each other.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde::Serialize;

use crate::clock::{Clock, Monotonic};
use crate::proto::DeviceHealth;

/// A subsystem's state, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Working.
    Ok,
    /// Turned off in the config.
    Disabled,
    /// Starting or retrying; not yet working.
    Starting,
    /// Working in part (a device missing, a retry in progress); the agent runs on.
    Degraded,
    /// Not working; the agent cannot do its job.
    Failed,
}

impl State {
    /// The state's name, as `/healthz` and the hub's records spell it.
    pub fn name(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Disabled => "disabled",
            State::Starting => "starting",
            State::Degraded => "degraded",
            State::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub state: State,
    pub detail: String,
    /// Seconds since the agent started when this state was reported.
    pub since_seconds: f64,
}

/// Keeps a change of state for the hub: the store's recorder's `keep_now`.
type KeepChange = Box<dyn Fn(DeviceHealth) + Send + Sync>;

/// A shared, cheap-to-clone registry of subsystem states.
#[derive(Clone)]
pub struct Health {
    clock: Arc<dyn Clock>,
    started: Monotonic,
    reports: Arc<RwLock<BTreeMap<String, Report>>>,
    /// Bumped on every change of any subsystem's state, for live views.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Keeps a change of state for the hub.
    keep: Arc<OnceLock<KeepChange>>,
}

impl Health {
    /// A registry whose uptime is counted on `clock` from now.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let started = clock.monotonic();
        Self {
            clock,
            started,
            reports: Arc::default(),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
            keep: Arc::default(),
        }
    }

    /// Records every change into or out of trouble from now on, as a `device.health`
    /// event handed to `keep` (the store's recorder's `keep_now`, which does not wait).
    pub fn record_in(&self, keep: impl Fn(DeviceHealth) + Send + Sync + 'static) {
        let _ = self.keep.set(Box::new(keep));
    }

    /// Records `subsystem`'s state; logs a change of state.
    pub fn set(&self, subsystem: &str, state: State, detail: impl Into<String>) {
        let detail = detail.into();
        let mut reports = self.reports.write().unwrap_or_else(|e| e.into_inner());
        let changed = reports.get(subsystem).is_none_or(|old| old.state != state);
        if changed {
            match state {
                State::Failed | State::Degraded => {
                    tracing::warn!(subsystem, ?state, %detail, "subsystem state")
                }
                _ => tracing::info!(subsystem, ?state, %detail, "subsystem state"),
            }
            let troubled = |state: State| matches!(state, State::Degraded | State::Failed);
            let recorded = troubled(state)
                || reports
                    .get(subsystem)
                    .is_some_and(|old| troubled(old.state));
            if let Some(keep) = self.keep.get().filter(|_| recorded) {
                keep(DeviceHealth {
                    subsystem: subsystem.to_owned(),
                    state: state.name().to_owned(),
                    detail: detail.clone(),
                });
            }
        }
        let since_seconds = if changed {
            self.uptime().as_secs_f64()
        } else {
            reports.get(subsystem).map_or(0.0, |old| old.since_seconds)
        };
        let changed_detail = reports
            .get(subsystem)
            .is_none_or(|old| old.detail != detail);
        reports.insert(
            subsystem.to_owned(),
            Report {
                state,
                detail,
                since_seconds,
            },
        );
        drop(reports);
        if changed || changed_detail {
            self.changes.send_modify(|version| *version += 1);
        }
    }

    /// Wakes on every change of a subsystem's state or detail.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.clock.monotonic().saturating_since(self.started)
    }

    pub fn snapshot(&self) -> BTreeMap<String, Report> {
        self.reports
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The worst state any subsystem reports (`Ok` when none has reported).
    pub fn overall(&self) -> State {
        let reports = self.reports.read().unwrap_or_else(|e| e.into_inner());
        reports
            .values()
            .map(|r| r.state)
            .filter(|s| *s != State::Disabled)
            .max()
            .unwrap_or(State::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::event::Payload;
    use crate::store::outbox::read_after;
    use crate::store::testing;

    #[tokio::test]
    async fn changes_into_and_out_of_trouble_are_recorded_for_the_hub() {
        let (_dir, _clock, store) = testing::store();
        let store = Arc::new(store);
        let health = Health::new(store.clock().clone());
        let recorder = store.recorder().clone();
        health.record_in(move |change| recorder.keep_now(change));
        health.set("camera", State::Starting, "opening rtsp://camera/stream1");
        health.set("camera", State::Ok, "delivering frames");
        health.set("camera", State::Degraded, "timed out; reopening");
        health.set("camera", State::Degraded, "timed out again; reopening");
        health.set("camera", State::Ok, "delivering frames");
        store.recorder().finish().await;
        let recorded: Vec<(String, String)> = read_after(&store.reader().unwrap(), 0, 100)
            .unwrap()
            .iter()
            .filter_map(|event| match event.payload().unwrap() {
                Some(Payload::DeviceHealth(h)) => Some((h.state, h.detail)),
                _ => None,
            })
            .collect();
        let expected = [
            ("degraded", "timed out; reopening"),
            ("ok", "delivering frames"),
        ]
        .map(|(s, d)| (s.to_owned(), d.to_owned()));
        assert_eq!(recorded, expected);
    }
}
