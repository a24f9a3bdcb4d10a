//! Performs every actuation, whoever asks (the timetable, the teacher,
//! automation), and records each one in the outbox.
//!
//! # Design
//! - One command at a time per device: a ring is a sequence of pulses, and a
//!   second command waits for it rather than interleaving with it.
//! - Every command passes the [`Arbiter`] first; one that yields is recorded
//!   as skipped with the reason and not performed.
//! - A ring always ends with "off", even when "on" failed, and a failed "off"
//!   falls back to the driver's safe state.
//! - The outcome recorded is the worst of the pulses': failed, then timed out,
//!   then done (a relay), then confirmed (every step reported by the device).
//! - Every record goes through the store's recorder: a command whose record
//!   could not be kept is refused before it is done (a teacher's as soon as the
//!   store refuses, the room's own once the queue is full); the record of one
//!   done is kept, queued while the store refuses
//!   ([`crate::store::recorder`]).
//! - At shutdown every device is switched off and waited for, and from then on
//!   nothing is switched on: a ring under way stops at its next pulse.
//! - A ring's pulses and gaps are timed on the clock's monotonic time, and the
//!   end of each is fixed before the change it times is shown: whoever sees the
//!   bell go on and moves a simulated clock cannot move it before the pulse
//!   has begun to count.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use super::arbiter::{Arbiter, Verdict};
use super::config::{DeviceConfig, DeviceKind, DriverConfig};
use super::mqtt::{MqttLink, MqttSwitch};
use super::relay::{CdevLine, Relay, RppalLine, SimulatedPinBank};
use super::{Actuator, ActuatorError, Confirmation};
use crate::clock::Clock;
use crate::config::Config;
use crate::proto::{self, actuation::Cause, actuation::Outcome};
use crate::schedule::Action;
use crate::schedule::config::BellPattern;
use crate::store::Store;
use crate::store::recorder::{Kept, Refusal, Who, Write};

/// One device and what the controller knows of it.
struct Device {
    config: DeviceConfig,
    actuator: Arc<dyn Actuator>,
    busy: tokio::sync::Mutex<()>,
    on: AtomicBool,
}

/// A command for the controller.
#[derive(Debug, Clone)]
pub struct Request {
    pub device: String,
    pub action: Action,
    pub cause: Cause,
    /// For a switch: hold it against lower-ranked causes until then.
    pub hold_until: Option<Timestamp>,
    /// Added to the record's detail, such as "rung 90 s late".
    pub note: String,
}

/// Why a request could not even be tried.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("no device named `{0}`")]
    UnknownDevice(String),
    #[error("no bell pattern named `{name}`; known: {known}")]
    UnknownPattern { name: String, known: String },
    #[error("`{0}` is not a bell")]
    NotABell(String),
    #[error("{0}")]
    NotKept(#[from] Refusal),
}

/// A device that could not be opened at start.
#[derive(Debug, thiserror::Error)]
#[error("device `{device}` (actuators.device): {source}")]
pub struct OpenError {
    pub device: String,
    pub source: ActuatorError,
}

/// A command done (or yielded), with what became of its record.
#[derive(Debug, Clone)]
pub struct Performed {
    pub record: proto::Actuation,
    pub kept: Kept,
}

/// A device as the panel and the API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceStatus {
    pub name: String,
    pub kind: &'static str,
    pub zone: String,
    /// As the device reported it; the last command's result for a device that cannot report.
    pub on: bool,
    /// Whether the device says it is online; `None` for a device that cannot say, or has not yet.
    pub online: Option<bool>,
}

/// The longest the agent waits at shutdown for every device to confirm it is off.
pub const SWITCH_OFF_PATIENCE: Duration = Duration::from_secs(2);

/// The room's devices.
pub struct Controller {
    devices: BTreeMap<String, Device>,
    patterns: BTreeMap<String, BellPattern>,
    teacher_hold: SignedDuration,
    arbiter: Mutex<Arbiter>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    link: Option<Arc<MqttLink>>,
    pins: SimulatedPinBank,
    /// Bumped by every change of what [`Controller::status`] shows: the agent's commands and the devices' own reports.
    changes: Arc<watch::Sender<u64>>,
    /// Set at shutdown: from then on nothing is switched on, so a ring under way cannot undo the final "off".
    stopping: AtomicBool,
}

/// Why a command to switch on was refused at shutdown.
const STOPPING: &str = "the agent is stopping: nothing is switched on any more";

impl Controller {
    /// Opens every configured device, each in its safe state. A device that cannot be opened stops the start:
    /// a room whose bell silently does not ring is worse than an agent that says why it cannot start.
    /// It takes the whole config: the devices of `[actuators]`, the bell patterns and teacher's hold of
    /// `[schedule]`, and the room's id, which names the agent to the GPIO lines it holds.
    pub fn open(
        config: &Config,
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        link: Option<Arc<MqttLink>>,
    ) -> Result<Controller, OpenError> {
        let pins = SimulatedPinBank::new(clock.clone());
        let mut devices = BTreeMap::new();
        let consumer = format!("firmware-agent:{}", config.room.room_id);
        for device in &config.actuators.device {
            let max_on = device.max_on();
            let opened: Result<Arc<dyn Actuator>, ActuatorError> = match &device.driver {
                DriverConfig::Simulated { active_low } => Ok(Relay::new(
                    &device.name,
                    pins.line(&device.name, *active_low),
                    max_on,
                    clock.clone(),
                )),
                DriverConfig::Gpio {
                    chip,
                    line,
                    active_low,
                } => CdevLine::request(chip, *line, *active_low, &consumer).map(|line| {
                    Relay::new(&device.name, Box::new(line), max_on, clock.clone())
                        as Arc<dyn Actuator>
                }),
                DriverConfig::Rppal { pin, active_low } => RppalLine::request(*pin, *active_low)
                    .map(|line| {
                        Relay::new(&device.name, Box::new(line), max_on, clock.clone())
                            as Arc<dyn Actuator>
                    }),
                DriverConfig::Mqtt(mqtt) => match (&link, &config.actuators.mqtt) {
                    (Some(link), Some(broker)) => Ok(Arc::new(MqttSwitch::new(
                        &device.name,
                        link.clone(),
                        mqtt,
                        broker,
                    ))),
                    _ => Err(ActuatorError::Failed(
                        "an MQTT device needs [actuators.mqtt]".to_owned(),
                    )),
                },
            };
            let actuator = opened.map_err(|source| OpenError {
                device: device.name.clone(),
                source,
            })?;
            actuator.safe_state();
            let entry = Device {
                config: device.clone(),
                actuator,
                busy: tokio::sync::Mutex::new(()),
                on: AtomicBool::new(false),
            };
            devices.insert(device.name.clone(), entry);
        }
        Ok(Controller {
            devices,
            patterns: config.schedule.patterns.clone(),
            teacher_hold: SignedDuration::from_mins(config.schedule.teacher_hold_minutes.into()),
            arbiter: Mutex::default(),
            store,
            clock,
            changes: link.as_ref().map_or_else(
                || Arc::new(watch::channel(0).0),
                |link| link.reports().clone(),
            ),
            link,
            pins,
            stopping: AtomicBool::new(false),
        })
    }

    /// Wakes whenever what [`Controller::status`] shows may have changed.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether the MQTT link is connected, when the room has one.
    pub fn mqtt_connected(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.link.as_ref().map(|link| link.subscribe_connected())
    }

    /// The simulated pins (for the API, the tests and the demo).
    pub fn pins(&self) -> &SimulatedPinBank {
        &self.pins
    }

    /// Every device with its state as it reported it, or as last commanded when it cannot report.
    pub fn status(&self) -> Vec<DeviceStatus> {
        self.devices
            .values()
            .map(|device| (device, device.actuator.reported()))
            .map(|(device, reported)| DeviceStatus {
                name: device.config.name.clone(),
                kind: match device.config.kind {
                    DeviceKind::Bell => "bell",
                    DeviceKind::Light => "light",
                    DeviceKind::Switch => "switch",
                },
                zone: device.config.zone().to_owned(),
                on: reported
                    .on
                    .unwrap_or_else(|| device.on.load(Ordering::SeqCst)),
                online: reported.online,
            })
            .collect()
    }

    /// The names of the lights in `zone` ("all" for every light).
    pub fn lights_in(&self, zone: &str) -> Vec<String> {
        self.devices
            .values()
            .filter(|d| {
                d.config.kind == DeviceKind::Light && (zone == "all" || d.config.zone() == zone)
            })
            .map(|d| d.config.name.clone())
            .collect()
    }

    /// The first bell, for a ring that names no device.
    pub fn default_bell(&self) -> Option<String> {
        self.devices
            .values()
            .find(|d| d.config.kind == DeviceKind::Bell)
            .map(|d| d.config.name.clone())
    }

    /// The bells, for the panic hook.
    pub fn bells(&self) -> Vec<Arc<dyn Actuator>> {
        self.devices
            .values()
            .filter(|d| d.config.kind == DeviceKind::Bell)
            .map(|d| d.actuator.clone())
            .collect()
    }

    /// Switches every device off and waits for each to confirm, up to [`SWITCH_OFF_PATIENCE`]: at shutdown,
    /// while the MQTT link is still up. A device that does not confirm in time gets its safe state as well.
    pub async fn switch_all_off(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let offs = self.devices.values().map(|device| async move {
            // Bounds a wait on the devices at the process's exit, on the runtime's real time: a simulated
            // clock is not moved any more at that point.
            let switched = tokio::time::timeout(SWITCH_OFF_PATIENCE, device.actuator.switch(false)).await;
            if !matches!(switched, Ok(Ok(_))) {
                tracing::warn!(device = %device.config.name, ?switched, "no confirmation that the device is off; its safe state was sent");
                device.actuator.safe_state();
            }
            self.note_state(device, false);
        });
        futures_util::future::join_all(offs).await;
    }

    /// The hook for attendance's face count: an empty room switches its lights off (as automation,
    /// so the timetable's lesson and the teacher's command both win).
    pub async fn room_occupancy(&self, people: u32) -> Vec<proto::Actuation> {
        if people > 0 {
            return Vec::new();
        }
        let mut records = Vec::new();
        for device in self.lights_in("all") {
            let request = Request {
                device,
                action: Action::Switch { on: false },
                cause: Cause::Automation,
                hold_until: None,
                note: "phòng trống (room empty)".to_owned(),
            };
            if let Ok(record) = self.perform(request).await {
                records.push(record);
            }
        }
        records
    }

    /// Checks a request without performing it.
    pub fn validate(&self, request: &Request) -> Result<(), RequestError> {
        let device = self
            .devices
            .get(&request.device)
            .ok_or_else(|| RequestError::UnknownDevice(request.device.clone()))?;
        if let Action::Ring { pattern } = &request.action {
            if device.config.kind != DeviceKind::Bell {
                return Err(RequestError::NotABell(request.device.clone()));
            }
            if !self.patterns.contains_key(pattern) {
                let known = self.patterns.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(RequestError::UnknownPattern {
                    name: pattern.clone(),
                    known,
                });
            }
        }
        Ok(())
    }

    /// Performs a request (or records why it yielded) and returns its record, already in the outbox.
    pub async fn perform(&self, request: Request) -> Result<proto::Actuation, RequestError> {
        self.perform_and_keep(request)
            .await
            .map(|performed| performed.record)
    }

    /// Performs a request unless its record could not be kept, and says what became of the record.
    pub async fn perform_and_keep(&self, request: Request) -> Result<Performed, RequestError> {
        self.validate(&request)?;
        let who = if request.cause == Cause::Teacher {
            Who::Teacher
        } else {
            Who::Room
        };
        self.store.recorder().admit(who).inspect_err(|refusal| tracing::warn!(device = %request.device, %refusal, "command refused: its record could not be kept"))?;
        let device = &self.devices[&request.device];
        let occurred_at = self.clock.now();
        let hold_until = match (&request.action, request.cause) {
            (Action::Switch { .. }, Cause::Teacher) => {
                occurred_at.checked_add(self.teacher_hold).ok()
            }
            (Action::Switch { on: true }, _) => request.hold_until,
            _ => None,
        };
        let verdict = match request.action {
            Action::Ring { .. } => Verdict::Proceed,
            Action::Switch { .. } => self.arbiter.lock().unwrap().admit(
                &request.device,
                request.cause,
                occurred_at,
                hold_until,
            ),
        };
        let mut record = proto::Actuation {
            device: request.device.clone(),
            device_kind: match device.config.kind {
                DeviceKind::Bell => proto::actuation::Kind::Bell,
                DeviceKind::Light => proto::actuation::Kind::Light,
                DeviceKind::Switch => proto::actuation::Kind::Switch,
            } as i32,
            command: request.action.command(),
            cause: request.cause as i32,
            ..Default::default()
        };
        let (outcome, detail, latency) = match verdict {
            Verdict::Yield(reason) => (Outcome::Skipped, reason, Duration::ZERO),
            Verdict::Proceed => {
                let _busy = device.busy.lock().await;
                self.execute(device, &request.action).await
            }
        };
        record.outcome = outcome as i32;
        record.detail = [request.note.as_str(), detail.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("; ");
        record.latency_ms = latency.as_millis().min(u32::MAX as u128) as u32;
        // Kept before it is logged, so a logged actuation is a recorded (or queued) one.
        let kept = self
            .store
            .recorder()
            .keep(Write::event(occurred_at, record.clone()))
            .await;
        tracing::info!(
            device = %record.device,
            command = %record.command,
            cause = request.cause.as_str_name(),
            outcome = outcome.as_str_name(),
            latency_ms = record.latency_ms,
            detail = %record.detail,
            "actuation"
        );
        metrics::counter!("actuations_total", "device" => record.device.clone(), "outcome" => outcome.as_str_name()).increment(1);
        Ok(Performed { record, kept })
    }

    /// Drives the device; returns the outcome, a detail and the latency of the first step.
    async fn execute(&self, device: &Device, action: &Action) -> (Outcome, String, Duration) {
        let started = self.clock.monotonic();
        let elapsed = || self.clock.monotonic().saturating_since(started);
        match action {
            Action::Switch { on } => {
                let result = if *on && self.stopping.load(Ordering::SeqCst) {
                    Err(ActuatorError::Failed(STOPPING.to_owned()))
                } else {
                    device.actuator.switch(*on).await
                };
                let latency = elapsed();
                if result.is_ok() {
                    self.note_state(device, *on);
                }
                let (outcome, detail) = describe(&[result]);
                (outcome, detail, latency)
            }
            Action::Ring { pattern } => {
                let pattern = &self.patterns[pattern];
                let mut results = Vec::new();
                let mut latency = None;
                let mut next_pulse_at = None;
                for pulse in &pattern.pulses_ms {
                    if let Some(at) = next_pulse_at {
                        self.clock.sleep_until(at).await;
                    }
                    if self.stopping.load(Ordering::SeqCst) {
                        results.push(Err(ActuatorError::Failed(STOPPING.to_owned())));
                        break;
                    }
                    let on = device.actuator.switch(true).await;
                    latency.get_or_insert_with(elapsed);
                    if on.is_ok() {
                        let pulse_ends = self
                            .clock
                            .deadline_in(Duration::from_millis((*pulse).into()));
                        self.note_state(device, true);
                        self.clock.sleep_until(pulse_ends).await;
                    }
                    let off = device.actuator.switch(false).await;
                    if off.is_err() {
                        device.actuator.safe_state();
                    }
                    next_pulse_at = Some(
                        self.clock
                            .deadline_in(Duration::from_millis(pattern.gap_ms.into())),
                    );
                    self.note_state(device, false);
                    let failed = on.is_err() || off.is_err();
                    results.extend([on, off]);
                    if failed {
                        break;
                    }
                }
                let (outcome, detail) = describe(&results);
                (outcome, detail, latency.unwrap_or_default())
            }
        }
    }

    fn note_state(&self, device: &Device, on: bool) {
        device.on.store(on, Ordering::SeqCst);
        self.changes.send_modify(|version| *version += 1);
        if let Some(link) = &self.link {
            link.publish_state(&device.config.name, on);
        }
    }
}

/// The worst outcome of the steps, and the first error's words.
fn describe(results: &[Result<Confirmation, ActuatorError>]) -> (Outcome, String) {
    let outcome = results
        .iter()
        .map(|result| match result {
            Ok(Confirmation::Confirmed) => (0, Outcome::Confirmed),
            Ok(Confirmation::Done) => (1, Outcome::Done),
            Err(ActuatorError::TimedOut { .. }) => (2, Outcome::TimedOut),
            Err(ActuatorError::Failed(_)) => (3, Outcome::Failed),
        })
        .max_by_key(|(rank, _)| *rank)
        .map_or(Outcome::Failed, |(_, outcome)| outcome);
    let detail = results
        .iter()
        .find_map(|result| result.as_ref().err())
        .map(ToString::to_string)
        .unwrap_or_default();
    (outcome, detail)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::testing;

    /// Lets a ring of `pattern` on `device`, due or under way, run its course
    /// on the manual clock: each time the controller shows the bell on, lets
    /// the pulse pass, and each time it shows it off between pulses, the gap.
    pub(crate) async fn ring_through(
        clock: &ManualClock,
        controller: &Controller,
        device: &str,
        pattern: &BellPattern,
    ) {
        for (i, pulse) in pattern.pulses_ms.iter().enumerate() {
            if i > 0 {
                clock.advance(Duration::from_millis(pattern.gap_ms.into()));
            }
            until_shown(controller, device, true).await;
            clock.advance(Duration::from_millis((*pulse).into()));
            until_shown(controller, device, false).await;
        }
    }

    /// Returns once the controller shows `device` on (or off): by then the
    /// actuation's latency is measured and any wait it times has begun, so a
    /// manual clock may be moved.
    pub(crate) async fn until_shown(controller: &Controller, device: &str, on: bool) {
        let mut changes = controller.subscribe_changes();
        changes
            .wait_for(|_| {
                controller
                    .status()
                    .iter()
                    .any(|d| d.name == device && d.on == on)
            })
            .await
            .unwrap();
    }

    fn config() -> Config {
        let source = r#"
            [room]
            school_code = "T-01"
            room_id = "P101"
            [schedule.patterns.short]
            pulses_ms = [20, 20]
            gap_ms = 10
            [[actuators.device]]
            name = "bell"
            kind = "bell"
            driver = { type = "simulated" }
            [[actuators.device]]
            name = "lights"
            kind = "light"
            zone = "front"
            driver = { type = "simulated", active_low = true }
        "#;
        Config::parse(std::path::Path::new("room.toml"), source).unwrap()
    }

    #[tokio::test]
    async fn a_ring_pulses_the_pin_and_is_recorded() {
        let (_dir, clock, store) = testing::store();
        let store = Arc::new(store);
        let config = config();
        let controller =
            Controller::open(&config, store.clone(), store.clock().clone(), None).unwrap();
        assert_eq!(
            controller.pins().level("lights"),
            Some(true),
            "an active-low light starts off: high"
        );
        let request = Request {
            device: "bell".into(),
            action: Action::Ring {
                pattern: "short".into(),
            },
            cause: Cause::Teacher,
            hold_until: None,
            note: String::new(),
        };
        let started = clock.now();
        let (record, ()) = tokio::join!(
            controller.perform(request),
            ring_through(
                &clock,
                &controller,
                "bell",
                &config.schedule.patterns["short"]
            )
        );
        let record = record.unwrap();
        assert_eq!(record.outcome, Outcome::Done as i32);
        let levels: Vec<(i128, bool)> = controller
            .pins()
            .history("bell")
            .iter()
            .map(|(at, level)| (at.duration_since(started).as_millis(), *level))
            .collect();
        assert_eq!(
            levels,
            [
                (0, false),
                (0, false),
                (0, true),
                (20, false),
                (30, true),
                (50, false)
            ],
            "safe at start, then two pulses of 20 ms 10 ms apart, ending off"
        );
        let stored = crate::store::outbox::read_after(&store.reader().unwrap(), 0, 10).unwrap();
        assert_eq!(stored.len(), 1);
        assert!(
            matches!(stored[0].payload().unwrap(), Some(proto::event::Payload::Actuation(a)) if a.command == "ring:short")
        );
    }

    #[tokio::test]
    async fn after_the_final_off_nothing_is_switched_on() {
        let (_dir, _clock, store) = testing::store();
        let controller = Controller::open(
            &config(),
            Arc::new(store),
            Arc::new(crate::clock::SystemClock),
            None,
        )
        .unwrap();
        controller.switch_all_off().await;
        let ring = Request {
            device: "bell".into(),
            action: Action::Ring {
                pattern: "short".into(),
            },
            cause: Cause::Timetable,
            hold_until: None,
            note: String::new(),
        };
        let record = controller.perform(ring).await.unwrap();
        assert_eq!(record.outcome, Outcome::Failed as i32);
        assert!(
            record.detail.contains("the agent is stopping"),
            "{}",
            record.detail
        );
        assert!(
            controller
                .pins()
                .history("bell")
                .iter()
                .all(|(_, level)| !level),
            "the bell never went on"
        );
    }

    #[tokio::test]
    async fn automation_yields_to_the_teacher_and_is_recorded_as_skipped() {
        let (_dir, _clock, store) = testing::store();
        let controller = Controller::open(
            &config(),
            Arc::new(store),
            Arc::new(crate::clock::SystemClock),
            None,
        )
        .unwrap();
        let switch = |on, cause| Request {
            device: "lights".into(),
            action: Action::Switch { on },
            cause,
            hold_until: None,
            note: String::new(),
        };
        assert_eq!(
            controller
                .perform(switch(true, Cause::Teacher))
                .await
                .unwrap()
                .outcome,
            Outcome::Done as i32
        );
        let empty = controller.room_occupancy(0).await;
        assert_eq!(empty[0].outcome, Outcome::Skipped as i32);
        assert_eq!(
            controller.pins().level("lights"),
            Some(false),
            "still on (active-low)"
        );
        assert_eq!(controller.lights_in("front"), ["lights"]);
    }
}
