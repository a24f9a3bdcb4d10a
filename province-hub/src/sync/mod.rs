//! Keeping every room's records landed: one task per pulled room, and one per
//! link a room opens, pulls its outbox, stores each batch with its cursor in
//! one PostgreSQL transaction, then acknowledges it.
//!
//! # Design
//! [`link`] holds the decisions (where to resume, whether a message follows
//! on, how long to back off); [`room`] is the thin async loop that does the
//! I/O. [`room::sync_over`] takes any `SyncServiceClient<Channel>`, so the same
//! code serves a room the hub dials and a room that dials the hub
//! ([`dial_in`]): only how the channel is opened differs. [`lease`] lets one
//! link land a room at a time. [`lan_cert`] is the step after each
//! `GetStatus` that keeps the room's HTTPS certificate from the province's CA
//! current. [`content`] is a task beside each link's Pull that pushes the
//! room the province's learning content it lacks. [`certified_room`] holds a
//! dialled-in room to the room its certificate names.

pub mod acks;
pub mod certified_room;
pub mod content;
pub mod dial_in;
pub mod lan_cert;
pub mod lease;
pub mod link;
pub mod room;
