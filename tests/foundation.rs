//! The foundation, end to end: the real binary, its config checks, its HTTP
//! server, its signals and its store.

mod common;

use std::time::Duration;

use common::{Room, http_get};

#[test]
fn healthz_answers_and_sigterm_exits_zero() {
    let room = Room::new("");
    let mut agent = room.start();
    let (status, body) = http_get(room.http, "/healthz");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"]["state"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["subsystems"]["http"]["state"], "ok");
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(5)).expect("exits within 5 seconds of SIGTERM");
    assert_eq!(status.code(), Some(0));
}
