//! The room's bells, lights and other switches: one [`Actuator`] trait, its
//! drivers (relays on GPIO lines, smart switches over MQTT, a simulated pin
//! bank), the [`controller::Controller`] that performs and records every
//! actuation, and the daemon's loop that follows the timetable.
//!
//! # Design
//! - A driver knows only "on" and "off" and its own safe state (off). Patterns,
//!   precedence and records live above it, in the controller, the same for
//!   every driver; so a simulated pin exercises everything a real relay would.
//! - Safety does not depend on the agent being healthy: bells have a maximum
//!   on-time the driver enforces by itself (see [`relay`] and [`mqtt`]), the
//!   safe state is applied when a device is opened and, at shutdown, every
//!   device is switched off and waited for (bounded) before the MQTT link
//!   closes; a panic anywhere cuts every bell.
//! - What the room shows is what a device reports of itself when it can
//!   ([`Reported`]), and the agent's last command only for a device that
//!   cannot say (a relay).

pub mod arbiter;
pub mod config;
pub mod controller;
pub mod mqtt;
pub mod relay;
pub mod runner;

use std::time::Duration;

pub use config::{ActuatorsConfig, DeviceConfig, DeviceKind, DriverConfig};

/// A boxed future, so that drivers can sit behind `dyn Actuator`.
pub type BoxFuture<'a, T> = futures_util::future::BoxFuture<'a, T>;

/// How a command ended when it worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// The device reported its new state.
    Confirmed,
    /// Done on a device that cannot report (a relay).
    Done,
}

/// Why a command did not work.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActuatorError {
    #[error("no confirmation after {attempts} attempt(s) in {waited:?}")]
    TimedOut { attempts: u32, waited: Duration },
    #[error("{0}")]
    Failed(String),
}

/// A device that can be switched on and off.
pub trait Actuator: Send + Sync {
    fn name(&self) -> &str;
    /// Switches the device on or off.
    fn switch(&self, on: bool) -> BoxFuture<'_, Result<Confirmation, ActuatorError>>;
    /// Switches the device off at once, without waiting for a confirmation: from the panic hook, and when a command failed.
    fn safe_state(&self);
    /// What the device itself last said; nothing for a device that cannot report (a relay).
    fn reported(&self) -> Reported {
        Reported::default()
    }
}

/// What a device that reports has said of itself; `None` where it said nothing yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reported {
    /// Whether it is on, whoever switched it.
    pub on: Option<bool>,
    /// Whether it is online (its last will).
    pub online: Option<bool>,
}
