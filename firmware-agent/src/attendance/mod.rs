//! Attendance by face recognition: the camera at the front of the room sees the
//! class and the roll call takes itself. No photograph leaves the room; only
//! marks and counts go to the hub.
//!
//! # Design
//! The path of a frame, one module each:
//! `source` (camera, file, IP camera) → `pipeline` (decode, `detect`, the
//! optional `liveness` check, `align`, `embed`) and `matcher` (1:N against
//! the class's templates) on inference worker threads, driven by `recognise`,
//! which follows each face across frames (`track`) and spares a recognised
//! face the costly stages → `rollcall` (a state machine without I/O:
//! confirmation, present/late/absent, a teacher's correction) → outbox
//! events. `state` decides, without I/O, when roll calls open and close,
//! which frames the camera must deliver and when the room is empty;
//! `service` is the daemon's threads and the loop that drives it; `people`
//! keeps the class and its templates live as enrollments, erasures and
//! rosters change them.
//! `enroll` decides which face of an enrollment photo becomes a template.
//! `models` checks every model file against the manifest before a session is
//! built; a missing or altered model stops attendance alone, with a message in
//! the log and in /healthz.

pub mod align;
pub mod config;
pub mod desk;
pub mod detect;
pub mod embed;
pub mod enroll;
pub mod export;
pub mod lessons;
pub mod liveness;
pub mod matcher;
pub mod models;
pub mod onvif;
pub mod people;
pub mod pipeline;
pub mod recognise;
pub mod rollcall;
pub mod service;
pub mod source;
pub mod state;
pub mod track;

pub use config::AttendanceConfig;

#[cfg(test)]
mod testdata;
