//! What the hub knows of each room's link right now, for `/healthz` and
//! `/metrics`: last contact, the room's newest seq against the stored cursor
//! (the backlog), and how long the newest landed event took to land (the lag).
//!
//! # Design
//! The room tasks write here after each step; the HTTP handlers only read a
//! snapshot. Pulled rooms are on the board from the start; a room that dials
//! in is added by its first link ([`Board::linked`]), and both kinds show the
//! same figures with how they are linked. The same numbers are set as Prometheus series labelled by school
//! and room, so the scrape and the JSON never disagree for long.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::RoomKey;
use crate::store::OutboxPosition;
use crate::sync::content::Unsendable;

/// One room's link, as shown by `/healthz`.
#[derive(Debug, Clone, Serialize)]
pub struct RoomHealth {
    pub school_code: String,
    pub room_id: String,
    /// The room's address: where the hub dials it, or where its own link came from.
    pub address: String,
    /// How the room is linked now: `pull` (the hub dials it) or `dial_in` (it dialled the hub).
    pub link: &'static str,
    /// `connecting`, `pulling`, `caught_up` or `failing`.
    pub state: &'static str,
    /// When the room last answered (Unix seconds); `null` before it ever did.
    pub last_contact_unix: Option<f64>,
    pub outbox_identity: Option<String>,
    /// Every event up to this seq is stored in PostgreSQL.
    pub cursor: i64,
    /// The room's newest seq, from its last heartbeat, status or batch.
    pub newest_seq: i64,
    /// Events the room holds that are not stored yet.
    pub backlog: i64,
    /// From the room recording the newest landed event to its commit here, in seconds.
    pub lag_seconds: Option<f64>,
    pub events_landed: u64,
    /// Failures in a row; 0 while the link works.
    pub failures: u32,
    pub last_error: Option<String>,
}

/// Every room's link.
#[derive(Debug, Clone, Default)]
pub struct Board {
    rooms: Arc<Mutex<BTreeMap<RoomKey, RoomHealth>>>,
    content_unsendable: Arc<Mutex<Vec<Unsendable>>>,
}

fn unix(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

impl Board {
    /// A board with the pulled `rooms` (key and address), none contacted yet.
    pub fn new<'a>(rooms: impl IntoIterator<Item = (RoomKey, &'a str)>) -> Board {
        let board = Board::default();
        for (room, address) in rooms {
            let health = fresh(&room, address, PULL);
            publish(&room, &health);
            board.rooms.lock().unwrap().insert(room, health);
        }
        board
    }

    /// A link of `room` from or to `address` now lands it; `link` is [`PULL`]
    /// or [`DIAL_IN`]. A room first heard of by its own link joins the board.
    pub fn linked(&self, room: &RoomKey, link: &'static str, address: &str) {
        self.rooms
            .lock()
            .unwrap()
            .entry(room.clone())
            .or_insert_with(|| fresh(room, address, link));
        self.update(room, |h| {
            h.link = link;
            h.address = address.to_owned();
        });
    }

    /// Every room's link, in school and room order.
    pub fn snapshot(&self) -> Vec<RoomHealth> {
        self.rooms.lock().unwrap().values().cloned().collect()
    }

    fn update(&self, room: &RoomKey, change: impl FnOnce(&mut RoomHealth)) {
        let mut rooms = self.rooms.lock().unwrap();
        if let Some(health) = rooms.get_mut(room) {
            change(health);
            health.backlog = (health.newest_seq - health.cursor).max(0);
            publish(room, health);
        }
    }

    /// The room answered with its status: the link pulls from `position`.
    pub fn connected(&self, room: &RoomKey, position: OutboxPosition, newest_seq: i64) {
        self.update(room, |h| {
            h.state = "pulling";
            h.last_contact_unix = Some(unix(SystemTime::now()));
            h.outbox_identity = Some(position.identity.to_string());
            h.cursor = position.cursor;
            h.newest_seq = newest_seq;
            h.failures = 0;
            h.last_error = None;
        });
    }

    /// `count` events were stored up to `position`; the newest was recorded by the room at `recorded_at`.
    pub fn landed(
        &self,
        room: &RoomKey,
        count: usize,
        position: OutboxPosition,
        recorded_at: Option<SystemTime>,
    ) {
        let now = SystemTime::now();
        metrics::counter!("province_hub_events_landed_total", &labels(room))
            .increment(count as u64);
        self.update(room, |h| {
            h.last_contact_unix = Some(unix(now));
            h.cursor = position.cursor;
            h.newest_seq = h.newest_seq.max(position.cursor);
            h.events_landed += count as u64;
            h.state = if h.newest_seq > h.cursor {
                "pulling"
            } else {
                "caught_up"
            };
            if let Some(recorded) = recorded_at {
                h.lag_seconds = Some(
                    now.duration_since(recorded)
                        .map_or(0.0, |d| d.as_secs_f64()),
                );
            }
        });
    }

    /// A heartbeat: the room's newest seq is `last_seq`.
    pub fn heartbeat(&self, room: &RoomKey, last_seq: i64) {
        self.update(room, |h| {
            h.last_contact_unix = Some(unix(SystemTime::now()));
            h.newest_seq = last_seq;
            h.state = if last_seq > h.cursor {
                "pulling"
            } else {
                "caught_up"
            };
        });
    }

    /// The link failed with `error`; it is the `failures`th failure in a row.
    pub fn failed(&self, room: &RoomKey, error: String, failures: u32) {
        metrics::counter!("province_hub_link_failures_total", &labels(room)).increment(1);
        self.update(room, |h| {
            h.state = "failing";
            h.failures = failures;
            h.last_error = Some(error);
        });
    }
}

impl Board {
    /// The files of the content directory that are not sent to any room, as of its last listing.
    pub fn content_unsendable(&self, files: Vec<Unsendable>) {
        *self.content_unsendable.lock().unwrap() = files;
    }

    /// What [`Board::content_unsendable`] was told last.
    pub fn unsendable_content(&self) -> Vec<Unsendable> {
        self.content_unsendable.lock().unwrap().clone()
    }
}

/// The room's link is one the hub opened.
pub const PULL: &str = "pull";
/// The room's link is one the room opened.
pub const DIAL_IN: &str = "dial_in";

fn fresh(room: &RoomKey, address: &str, link: &'static str) -> RoomHealth {
    RoomHealth {
        school_code: room.school_code.clone(),
        room_id: room.room_id.clone(),
        address: address.to_owned(),
        link,
        state: "connecting",
        last_contact_unix: None,
        outbox_identity: None,
        cursor: 0,
        newest_seq: 0,
        backlog: 0,
        lag_seconds: None,
        events_landed: 0,
        failures: 0,
        last_error: None,
    }
}

fn labels(room: &RoomKey) -> [(&'static str, String); 2] {
    [
        ("school", room.school_code.clone()),
        ("room", room.room_id.clone()),
    ]
}

/// Sets the room's Prometheus series from its health.
fn publish(room: &RoomKey, health: &RoomHealth) {
    let labels = labels(room);
    metrics::gauge!("province_hub_room_cursor", &labels).set(health.cursor as f64);
    metrics::gauge!("province_hub_room_newest_seq", &labels).set(health.newest_seq as f64);
    metrics::gauge!("province_hub_room_backlog_events", &labels).set(health.backlog as f64);
    metrics::gauge!("province_hub_room_dialled_in", &labels).set(if health.link == DIAL_IN {
        1.0
    } else {
        0.0
    });
    metrics::gauge!("province_hub_room_up", &labels).set(
        if health.failures == 0 && health.last_contact_unix.is_some() {
            1.0
        } else {
            0.0
        },
    );
    if let Some(contact) = health.last_contact_unix {
        metrics::gauge!("province_hub_room_last_contact_seconds", &labels).set(contact);
    }
    if let Some(lag) = health.lag_seconds {
        metrics::gauge!("province_hub_room_lag_seconds", &labels).set(lag);
    }
}
