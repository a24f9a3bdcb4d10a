//! The daemon's side of bells and lights: opens the devices, follows the
//! timetable with the clock it is handed, takes home-automation commands,
//! keeps `/healthz` true to the broker and to each device's availability, and
//! leaves every device off on the way out.
//!
//! # Design
//! The loop asks the [`Scheduler`] what is due now, performs it, and sleeps on
//! the agent's clock until the next action is due, but never longer than
//! [`MAX_SLEEP`], so a clock stepped by NTP is noticed within that time (well
//! inside the grace; `DESIGN.md`, "Time"). A
//! decision is persisted as the action starts, not before it: waiting for the
//! commit (a synced write) would make every bell late by a disk flush. The
//! in-memory scheduler already guarantees once per process; only an agent
//! killed within the few milliseconds of that commit could, after a restart
//! within the grace, ring the same bell again. Timetable changes in a reloaded config apply at once; device changes at
//! the next restart.
//!
//! At the stop signal the runner, not the stop signal itself, closes the MQTT
//! link: first every device is switched off and confirmed (bounded by
//! [`SWITCH_OFF_PATIENCE`](super::controller::SWITCH_OFF_PATIENCE)), then the link says goodbye. Closing the link on
//! the same signal would race the `OFF`s still queued for the broker.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::controller::{Controller, OpenError, Request};
use super::mqtt::{MqttLink, RemoteCommand};
use crate::agent::Agent;
use crate::clock::Clock;
use crate::config::Config;
use crate::proto::{self, actuation::Cause, actuation::Outcome};
use crate::schedule::{Decision, Scheduler, Timetable};
use crate::store::actuators::ScheduleDecision;
use crate::store::outbox::NewEvent;
use crate::store::{Store, StoreError};

/// The longest the loop sleeps before looking at the clock again.
pub const MAX_SLEEP: Duration = Duration::from_secs(15);

/// What `run` needs from the MQTT link, when there is one.
pub struct MqttParts {
    commands: mpsc::Receiver<RemoteCommand>,
    task: tokio::task::JoinHandle<()>,
    /// Closes the link: cancelled by `run` once every device is off.
    close: CancellationToken,
}

impl MqttParts {
    /// Closes the link and waits for its goodbye to the broker.
    async fn close(self) {
        self.close.cancel();
        let _ = self.task.await;
    }
}

/// Opens the devices (and the broker link) at start, each in its safe state. It takes
/// the whole config, as [`Controller::open`] does, and the room's identity for the broker.
pub fn open(
    config: &Config,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<Controller>, Option<MqttParts>), OpenError> {
    let (link, parts) = match &config.actuators.mqtt {
        Some(mqtt) => {
            let close = CancellationToken::new();
            let (link, commands, task) = MqttLink::start(
                mqtt,
                &config.room,
                &config.actuators.device,
                close.clone(),
                clock.clone(),
            );
            (
                Some(link),
                Some(MqttParts {
                    commands,
                    task,
                    close,
                }),
            )
        }
        None => (None, None),
    };
    let controller = Arc::new(Controller::open(config, store, clock, link)?);
    cut_bells_on_panic(&controller);
    Ok((controller, parts))
}

/// A panic anywhere switches every bell off before the process goes on unwinding.
fn cut_bells_on_panic(controller: &Controller) {
    let bells: Vec<_> = controller.bells().iter().map(Arc::downgrade).collect();
    if bells.is_empty() {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        for bell in bells.iter().filter_map(std::sync::Weak::upgrade) {
            bell.safe_state();
        }
        previous(info);
    }));
}

/// Follows the timetable until shutdown, then switches every device off before the MQTT link closes.
pub async fn run(agent: Arc<Agent>, controller: Arc<Controller>, mut mqtt: Option<MqttParts>) {
    if let Some(connected) = controller.mqtt_connected() {
        tokio::spawn(report_broker(agent.clone(), connected));
        tokio::spawn(report_devices(agent.clone(), controller.clone()));
    }
    let remote = mqtt.as_mut().map(|parts| &mut parts.commands);
    follow_timetable(&agent, &controller, remote).await;
    controller.switch_all_off().await;
    tracing::info!("bells and lights in their safe state");
    if let Some(parts) = mqtt {
        parts.close().await;
    }
}

/// The runner's loop: the timetable and home automation's commands, until shutdown.
async fn follow_timetable(
    agent: &Arc<Agent>,
    controller: &Arc<Controller>,
    mut remote: Option<&mut mpsc::Receiver<RemoteCommand>>,
) {
    let mut config_rx = agent.config.subscribe();
    let mut scheduler = match resume(&agent.store, timetable(&agent.config()), agent.clock.now()) {
        Ok(scheduler) => scheduler,
        Err(err) => {
            agent
                .health
                .set("schedule", crate::health::State::Failed, err.to_string());
            tracing::error!("the timetable is not followed: {err}");
            agent.shutdown.cancelled().await;
            return;
        }
    };
    agent.health.set(
        "schedule",
        crate::health::State::Ok,
        "following the timetable".to_owned(),
    );
    loop {
        let now = agent.clock.now();
        for decision in scheduler.poll(now) {
            if let Decision::Fire { action, late_by } = &decision {
                let note = if late_by.as_millis() >= 1000 {
                    format!("muộn {} (late)", crate::clock::text::human(*late_by))
                } else {
                    String::new()
                };
                let request = Request {
                    device: action.device.clone(),
                    action: action.action.clone(),
                    cause: Cause::Timetable,
                    hold_until: Some(action.valid_until),
                    note,
                };
                let controller = controller.clone();
                tokio::spawn(async move { controller.perform(request).await });
            }
            if let Err(err) = agent
                .store
                .blocking(move |store| record_decision(store, &decision))
                .await
            {
                tracing::error!(%err, "cannot record a timetable decision");
            }
        }
        let wake_at = match scheduler.next_due(now) {
            Some(next) => agent.clock.deadline_toward(next, MAX_SLEEP),
            None => agent.clock.deadline_in(MAX_SLEEP),
        };
        tokio::select! {
            () = agent.clock.sleep_until(wake_at) => {}
            () = agent.shutdown.cancelled() => break,
            changed = config_rx.changed() => {
                if changed.is_ok() {
                    let fresh = timetable(&config_rx.borrow_and_update().clone());
                    scheduler = scheduler.with_timetable(fresh);
                    tracing::info!("timetable reloaded");
                }
            }
            Some(command) = next_remote(&mut remote) => {
                let request = Request { device: command.device, action: crate::schedule::Action::Switch { on: command.on }, cause: Cause::Automation, hold_until: None, note: "MQTT".to_owned() };
                let controller = controller.clone();
                tokio::spawn(async move { controller.perform(request).await });
            }
        }
    }
}

/// Keeps the `mqtt` health entry true to the link: degraded while the broker is away.
async fn report_broker(agent: Arc<Agent>, mut connected: tokio::sync::watch::Receiver<bool>) {
    loop {
        let (state, detail) = if *connected.borrow_and_update() {
            (crate::health::State::Ok, "connected to the broker")
        } else {
            (
                crate::health::State::Degraded,
                "broker not reachable; retrying (MQTT devices time out meanwhile)",
            )
        };
        agent.health.set("mqtt", state, detail.to_owned());
        tokio::select! {
            changed = connected.changed() => if changed.is_err() { return },
            () = agent.shutdown.cancelled() => return,
        }
    }
}

/// Keeps one health entry per device that says whether it is online (`device.<name>`): degraded while its last will says offline.
async fn report_devices(agent: Arc<Agent>, controller: Arc<Controller>) {
    let mut changes = controller.subscribe_changes();
    loop {
        changes.borrow_and_update();
        for device in controller.status() {
            let Some(online) = device.online else {
                continue;
            };
            let (state, detail) = if online {
                (crate::health::State::Ok, "trực tuyến (online)".to_owned())
            } else {
                (
                    crate::health::State::Degraded,
                    format!(
                        "thiết bị `{}` mất kết nối (offline, said its last will): commands to it time out",
                        device.name
                    ),
                )
            };
            agent
                .health
                .set(&format!("device.{}", device.name), state, detail);
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = agent.shutdown.cancelled() => return,
        }
    }
}

async fn next_remote(
    remote: &mut Option<&mut mpsc::Receiver<RemoteCommand>>,
) -> Option<RemoteCommand> {
    match remote {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

fn timetable(config: &Config) -> Arc<Timetable> {
    let timetable = Timetable::new(config.schedule.clone(), &config.room.timezone)
        .expect("the config checked the time zone");
    Arc::new(timetable)
}

/// A scheduler resuming from the decisions persisted in the store.
pub fn resume(
    store: &Store,
    timetable: Arc<Timetable>,
    now: Timestamp,
) -> Result<Scheduler, StoreError> {
    let horizon = now
        .checked_sub(crate::schedule::scheduler::LOOKBACK * 2)
        .unwrap_or(now);
    store.prune_schedule_decisions(horizon)?;
    let decided = store.schedule_decisions_since(horizon)?;
    Ok(Scheduler::new(timetable, decided, now))
}

/// Persists a decision; a skipped action gets its outbox record in the same transaction.
pub fn record_decision(store: &Store, decision: &Decision) -> Result<(), crate::store::StoreError> {
    let action = decision.action();
    match decision {
        Decision::Fire { late_by, .. } => {
            let detail = if late_by.is_zero() {
                String::new()
            } else {
                format!("late by {}", crate::clock::text::human(*late_by))
            };
            store.record_schedule_decision(
                &action.key(),
                action.at,
                ScheduleDecision::Fired,
                &detail,
                None,
            )
        }
        Decision::Skip { reason, .. } => {
            tracing::warn!(action = %action.key(), reason, "timetable action skipped");
            let record = proto::Actuation {
                device: action.device.clone(),
                command: action.action.command(),
                cause: Cause::Timetable as i32,
                outcome: Outcome::Skipped as i32,
                detail: format!("{}: {reason}", action.label),
                ..Default::default()
            };
            store.record_schedule_decision(
                &action.key(),
                action.at,
                ScheduleDecision::Skipped,
                reason,
                Some(NewEvent::new(action.at, record)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuators::controller::tests::{ring_through, until_shown};
    use crate::schedule::scheduler::tests::{at, school};
    use crate::store::testing;

    /// A morning shift of five 45-minute periods, a 3-second bell at each start and two 1-second rings
    /// at each end, and the room's lights on five minutes before the first period and off ten after the last.
    fn morning() -> Config {
        let source = r#"
            [room]
            school_code = "LC-0101"
            room_id = "6A1"
            [schedule]
            bell = "bell"
            lights = ["lights"]
            [schedule.patterns.start]
            pulses_ms = [3000]
            [schedule.patterns.end]
            pulses_ms = [1000, 1000]
            gap_ms = 500
            [[schedule.shifts]]
            name = "Sáng"
            days = ["mon", "tue", "wed", "thu", "fri", "sat"]
            periods = [
                { start = "07:00", end = "07:45" },
                { start = "07:50", end = "08:35" },
                { start = "08:55", end = "09:40" },
                { start = "09:45", end = "10:30" },
                { start = "10:35", end = "11:20" },
            ]
            [[actuators.device]]
            name = "bell"
            kind = "bell"
            max_on_seconds = 10
            driver = { type = "simulated" }
            [[actuators.device]]
            name = "lights"
            kind = "light"
            driver = { type = "simulated" }
        "#;
        Config::parse(std::path::Path::new("room.toml"), source).unwrap()
    }

    /// A whole morning on the manual clock, in milliseconds: every bell rings on the second, with its
    /// pattern, and is recorded once, though NTP steps the wall clock back ten minutes after the first bell.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_morning_of_bells_rings_each_once_on_time_though_the_clock_steps_back() {
        let (_dir, clock, store) = testing::store();
        clock.set(at("2026-09-07T06:30"));
        let store = Arc::new(store);
        let config = morning();
        let (agent, mqtt) =
            crate::agent::testing::agent(config.clone(), store.clone(), clock.clone());
        let controller = agent.actuators.clone();
        let running = tokio::spawn(run(agent.clone(), controller.clone(), mqtt));
        let pins = controller.pins().clone();
        let mut expected = vec![("on".to_owned(), at("2026-09-07T06:55"))];
        clock.advance_to(at("2026-09-07T06:55"));
        until_shown(&controller, "lights", true).await;
        let periods = [
            ("07:00", "07:45"),
            ("07:50", "08:35"),
            ("08:55", "09:40"),
            ("09:45", "10:30"),
            ("10:35", "11:20"),
        ];
        for (time, pattern) in periods
            .iter()
            .flat_map(|(start, end)| [(*start, "start"), (*end, "end")])
        {
            let due = at(&format!("2026-09-07T{time}"));
            clock.advance_to(due);
            ring_through(
                &clock,
                &controller,
                "bell",
                &config.schedule.patterns[pattern],
            )
            .await;
            expected.push((format!("ring:{pattern}"), due));
            if time == "07:00" {
                // NTP steps the clock back ten minutes while the runner sleeps: 06:55 and 07:00 come round
                // again before its next wake.
                crate::agent::testing::until_asleep(&clock, 1).await;
                clock.set(at("2026-09-07T06:50:03"));
                clock.advance_to(at("2026-09-07T07:00:30"));
            }
        }
        clock.advance_to(at("2026-09-07T11:30"));
        until_shown(&controller, "lights", false).await;
        expected.push(("off".to_owned(), at("2026-09-07T11:30")));
        store
            .subscribe_commits()
            .wait_for(|seq| *seq >= expected.len() as i64)
            .await
            .unwrap();

        // Each record is committed once its action is done: by then a later, shorter one may have been.
        let mut recorded: Vec<(String, Timestamp, i32, u32)> =
            crate::store::outbox::read_after(&store.reader().unwrap(), 0, 100)
                .unwrap()
                .iter()
                .map(|event| match event.payload().unwrap() {
                    Some(proto::event::Payload::Actuation(a)) => {
                        (a.command, event.occurred_at, a.outcome, a.latency_ms)
                    }
                    other => panic!("{other:?}"),
                })
                .collect();
        recorded.sort_by_key(|(_, at, ..)| *at);
        let on_time: Vec<_> = expected
            .iter()
            .map(|(command, at)| (command.clone(), *at, Outcome::Done as i32, 0))
            .collect();
        assert_eq!(recorded, on_time, "each action once, on time");
        let rings: Vec<Timestamp> = pins
            .history("bell")
            .windows(2)
            .filter(|w| !w[0].1 && w[1].1)
            .map(|w| w[1].0)
            .collect();
        let rings_expected: Vec<Timestamp> = expected
            .iter()
            .filter(|(command, _)| command.starts_with("ring"))
            .flat_map(|(command, at)| {
                if command == "ring:end" {
                    vec![*at, *at + jiff::SignedDuration::from_millis(1500)]
                } else {
                    vec![*at]
                }
            })
            .collect();
        assert_eq!(
            rings, rings_expected,
            "the bell's relay closed at each ring's pulses, by the simulated clock"
        );
        agent.shutdown.cancel();
        running.await.unwrap();
        assert_eq!(pins.level("bell"), Some(false));
    }

    #[test]
    fn a_restart_at_10_17_resumes_from_the_database() {
        let (_dir, clock, store) = testing::store();
        clock.set(at("2026-09-07T06:30"));
        let mut before = resume(&store, school(), clock.now()).unwrap();
        for minute in ["07:00", "07:45", "07:50"] {
            clock.set(at(&format!("2026-09-07T{minute}")));
            for decision in before.poll(clock.now()) {
                record_decision(&store, &decision).unwrap();
            }
        }
        drop(before);
        // The agent was down from 07:50 to 10:17.
        clock.set(at("2026-09-07T10:17"));
        let mut after = resume(&store, school(), clock.now()).unwrap();
        let decisions = after.poll(clock.now());
        assert!(
            decisions.iter().all(|d| matches!(d, Decision::Skip { .. })),
            "{decisions:#?}"
        );
        assert!(
            decisions
                .iter()
                .all(|d| d.action().at > at("2026-09-07T07:50")),
            "nothing of the morning is replayed"
        );
        assert_eq!(
            decisions.len(),
            4,
            "the 08:35, 08:55, 09:40 and 09:45 bells"
        );
        for decision in &decisions {
            record_decision(&store, decision).unwrap();
        }
        let skipped = crate::store::outbox::read_after(&store.reader().unwrap(), 0, 100).unwrap();
        assert_eq!(skipped.len(), 4, "each skip is in the outbox");
    }
}
