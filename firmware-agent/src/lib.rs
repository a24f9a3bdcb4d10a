//! The classroom agent. The modules follow the flow of the room's data:
//! sources (config, roster, clock) feed the store; the daemon runs the live
//! parts around it; the HTTP server shows its state.
//!
//! The architecture and its invariants are described in `DESIGN.md` beside
//! this crate and in each module's own documentation.

pub mod actuators;
pub mod agent;
pub mod attendance;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod events;
pub mod exit;
pub mod health;
pub mod http;
pub mod hub;
pub mod panel;
pub mod proto;
pub mod roster;
pub mod schedule;
pub mod store;
pub mod systemd;
pub mod tablets;
pub mod telemetry;
pub mod tls;
