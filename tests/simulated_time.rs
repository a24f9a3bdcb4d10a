//! The daemon on a simulated clock (`FIRMWARE_AGENT_SIMULATED_CLOCK`): time
//! stands still until the test moves it, and what the agent records carries
//! the simulated time, a step back included, as on a real room's clock.

mod common;

use std::sync::Arc;

use common::Room;
use firmware_agent::clock::SystemClock;
use firmware_agent::store::Store;
use firmware_agent::store::outbox::{StoredEvent, read_after};
use jiff::Timestamp;

const LIGHTS: &str = r#"
[[actuators.device]]
name = "lights"
kind = "light"
zone = "front"
driver = { type = "simulated" }
"#;

/// Switches the lights by the teacher's command and returns the records it made.
fn switch_lights(room: &Room, state: &str, after: &mut i64) -> Vec<StoredEvent> {
    let switched = room.command(&["light", state, "front"]);
    assert_eq!(
        switched.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&switched.stderr)
    );
    let store = Store::open(&room.database(), Arc::new(SystemClock)).unwrap();
    let events = read_after(&store.reader().unwrap(), *after, 100).unwrap();
    assert!(!events.is_empty(), "switching the lights is recorded");
    *after = events.last().unwrap().seq;
    events
}

fn instant(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[test]
fn records_carry_the_simulated_time_which_moves_only_when_told_and_a_step_back_is_flagged() {
    let room = Room::new(LIGHTS);
    let mut agent = room.start_at("2026-09-07T06:59:00+07:00");
    let mut seen = 0;

    let first = switch_lights(&room, "on", &mut seen);
    let command = first
        .iter()
        .find(|event| event.kind == "actuation")
        .expect("the command's record");
    assert_eq!(
        (command.occurred_at, command.recorded_at),
        (
            instant("2026-09-07T06:59:00+07:00"),
            instant("2026-09-07T06:59:00+07:00")
        ),
        "time stands still"
    );

    agent.advance("45m");
    for event in switch_lights(&room, "off", &mut seen) {
        assert_eq!(
            event.recorded_at,
            instant("2026-09-07T07:44:00+07:00"),
            "{event:?}"
        );
        assert_eq!(event.clock_step_back_ms, 0);
    }

    agent.step_to("2026-09-07T06:00:00+07:00");
    let stepped = switch_lights(&room, "on", &mut seen);
    assert_eq!(stepped[0].recorded_at, instant("2026-09-07T06:00:00+07:00"));
    assert_eq!(
        stepped[0].clock_step_back_ms,
        104 * 60 * 1000,
        "the step back is flagged on the next record"
    );
}

#[test]
fn a_start_that_is_not_an_instant_is_refused_with_its_fix() {
    let room = Room::new("");
    let mut agent = common::RunningAgent::spawn(
        &room.config_path,
        &[("FIRMWARE_AGENT_SIMULATED_CLOCK", "tomorrow at seven")],
    );
    let exit = agent
        .wait_exit(std::time::Duration::from_secs(20))
        .expect("the agent stops");
    assert_eq!(exit.code(), Some(1));
    let log = agent.log.lock().unwrap().join("\n");
    assert!(
        log.contains("FIRMWARE_AGENT_SIMULATED_CLOCK=\"tomorrow at seven\" is not an instant")
            && log.contains("2026-09-07T06:59:00+07:00"),
        "{log}"
    );
}
