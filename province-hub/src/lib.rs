//! The provincial hub: pulls every classroom's outbox over gRPC, over links it
//! opens or links the rooms open, and lands its records in PostgreSQL, each
//! event exactly once whatever crashes on either side, in tables a province
//! analyst can query.
//!
//! The modules follow the records: `config` says which rooms, `sync` pulls
//! them, `store` lands them, `health` and `http` show how far each room is; `usb` lands
//! the records rooms with no network send on a USB stick.
//! The design and its exactly-once argument are in `DESIGN.md` beside this
//! crate.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod exit;
pub mod health;
pub mod http;
pub mod proto;
pub mod store;
pub mod sync;
pub mod tls;
pub mod usb;
