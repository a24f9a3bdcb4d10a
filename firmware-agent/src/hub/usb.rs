//! Rooms with no network: records carried out, and the province's answers
//! carried in, on a USB stick. The bundle format is the `classroom-bundle`
//! crate's; this module is the room's side of it that the commands
//! (`hub export`, `hub import-ack`, `hub import`) and the daemon share.
//!
//! # Design
//! - **The room's keys** are made on first need in the data directory
//!   (`bundle-keys`, mode 0600): an Ed25519 key that signs its records
//!   bundles and an age identity that opens the office's bundles for it.
//! - **The outcome of the last stick** (exported, acknowledged, imported, or
//!   why not) is written by the command to `usb-stick.json` in the data
//!   directory, atomically; the running agent looks at it every
//!   [`LOOK_INTERVAL`] and shows it in health as the subsystem `usb_stick`, so
//!   the teacher who plugged the stick in reads on the panel, in Vietnamese,
//!   whether it worked. A failure shows as degraded until a stick works.
//! - Commands and daemon share only the file: a command never needs the
//!   daemon running, and the daemon never waits on a stick.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::agent::Agent;
use crate::health::State;

/// The room's key file in the data directory.
pub const KEYS_FILE: &str = "bundle-keys";
/// The last stick's outcome in the data directory.
pub const OUTCOME_FILE: &str = "usb-stick.json";
/// How often the running agent looks for a new outcome.
pub const LOOK_INTERVAL: Duration = Duration::from_secs(2);

/// The room's key file.
pub fn keys_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_FILE)
}

/// What the last stick did, for the panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// When, RFC 3339.
    pub at: String,
    pub ok: bool,
    /// For the teacher, in Vietnamese.
    pub message: String,
    /// For the logs and IT staff, in English.
    pub detail: String,
}

impl Outcome {
    pub fn new(at: jiff::Timestamp, ok: bool, message: String, detail: String) -> Outcome {
        Outcome {
            at: at.to_string(),
            ok,
            message,
            detail,
        }
    }
}

/// Writes `outcome` for the running agent to show; a failure to write it is
/// only logged, since the command's own output says the same.
pub fn record(data_dir: &Path, outcome: &Outcome) {
    let bytes = serde_json::to_vec(outcome).expect("an outcome serialises");
    if let Err(err) = classroom_bundle::atomic::write_file(data_dir, OUTCOME_FILE, &bytes) {
        tracing::warn!(%err, "cannot record the USB stick's outcome for the panel");
    }
}

/// The last outcome recorded, if any (and readable).
pub fn last(data_dir: &Path) -> Option<Outcome> {
    let bytes = std::fs::read(data_dir.join(OUTCOME_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Shows the last stick's outcome in health, and each new one as it is
/// recorded, until the agent stops.
pub async fn follow_outcomes(agent: Arc<Agent>) {
    let data_dir = agent.config().storage.data_dir.clone();
    let path = data_dir.join(OUTCOME_FILE);
    let mut seen: Option<SystemTime> = None;
    loop {
        let modified = tokio::fs::metadata(&path)
            .await
            .and_then(|metadata| metadata.modified())
            .ok();
        if modified.is_some() && modified != seen {
            seen = modified;
            let dir = data_dir.clone();
            if let Ok(Some(outcome)) = tokio::task::spawn_blocking(move || last(&dir)).await {
                let state = if outcome.ok {
                    State::Ok
                } else {
                    State::Degraded
                };
                agent.health.set(
                    "usb_stick",
                    state,
                    format!("{} ({})", outcome.message, outcome.at),
                );
            }
        }
        tokio::select! {
            _ = agent.shutdown.cancelled() => return,
            () = agent.clock.sleep(LOOK_INTERVAL) => {}
        }
    }
}
