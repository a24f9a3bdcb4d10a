//! Smart switches over MQTT (Tasmota, Shelly, or topics from the config), and
//! the room's own presence on the broker for home-automation systems.
//!
//! # Design
//! - One connection per agent ([`MqttLink`]), one event-loop task. Every
//!   message on a subscribed topic is kept as the topic's latest value with a
//!   sequence number on a `watch` channel; a command waits for a value newer
//!   than the one before it was sent, so an old retained state never confirms a
//!   new command.
//! - Commands go out with QoS 1. A command not confirmed on the device's state
//!   topic within `confirm_timeout_ms` is sent again, up to `retries` times,
//!   then reported as timed out. ON and OFF are idempotent, so a repeat is safe.
//! - What a device reports is what the agent shows: its state topic (Tasmota
//!   `stat/<topic>/POWER`) says whether it is on, whoever switched it (the
//!   agent, the wall, its own PulseTime), and its availability topic (Tasmota
//!   `tele/<topic>/LWT`, Shelly `shellies/<id>/online`, its last will) whether
//!   it is online. Every such report bumps [`MqttLink::reports`].
//! - The agent's availability is its last will: `<base>/availability` is
//!   `online` (retained) while it is connected and `offline` once it is not.
//! - Home Assistant discovery: each device of the room is announced as a
//!   switch whose state is `<base>/<device>/state` and whose commands arrive on
//!   `<base>/<device>/set`; those commands reach the controller as automation.
//! - After a broker restart the link reconnects, subscribes again and
//!   re-announces itself; commands sent meanwhile time out and are reported.
//! - Tasmota devices are told their `PulseTime` at every connection and every
//!   time they come online (their last will turns `Online`), so a bell switched
//!   on over MQTT goes off by itself even if the agent never says so, however
//!   late the bell joined or often it restarted.
//! - The link closes when its owner says so, not on the agent's stop signal:
//!   the owner first switches every device off and waits for that, so the
//!   `OFF`s are on the wire before the goodbye.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config::{DeviceConfig, DriverConfig, MqttConfig, MqttDeviceConfig, MqttFlavor};
use super::{Actuator, ActuatorError, BoxFuture, Confirmation, Reported};
use crate::clock::Clock;
use crate::config::RoomConfig;

/// How long to wait, on the link's clock, before reconnecting to a broker that went away.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// A command from home automation: switch `device` on or off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCommand {
    pub device: String,
    pub on: bool,
}

/// The agent's connection to the broker.
pub struct MqttLink {
    client: AsyncClient,
    base: String,
    topics: Mutex<HashMap<String, watch::Sender<(u64, String)>>>,
    connected: watch::Sender<bool>,
    reports: Arc<watch::Sender<u64>>,
}

/// A device's MQTT topics, whatever its flavor.
#[derive(Debug, Clone)]
pub struct SwitchTopics {
    pub command: String,
    pub state: String,
    pub payload_on: String,
    pub payload_off: String,
    pub availability: Option<String>,
}

impl SwitchTopics {
    pub fn of(config: &MqttDeviceConfig) -> SwitchTopics {
        match config.flavor {
            MqttFlavor::Tasmota => {
                let power = if config.channel == 0 {
                    "POWER".to_owned()
                } else {
                    format!("POWER{}", config.channel)
                };
                SwitchTopics {
                    command: format!("cmnd/{}/{power}", config.topic),
                    state: format!("stat/{}/{power}", config.topic),
                    payload_on: "ON".to_owned(),
                    payload_off: "OFF".to_owned(),
                    availability: Some(format!("tele/{}/LWT", config.topic)),
                }
            }
            MqttFlavor::Shelly => SwitchTopics {
                command: format!("shellies/{}/relay/{}/command", config.topic, config.channel),
                state: format!("shellies/{}/relay/{}", config.topic, config.channel),
                payload_on: "on".to_owned(),
                payload_off: "off".to_owned(),
                availability: Some(format!("shellies/{}/online", config.topic)),
            },
            MqttFlavor::Generic => SwitchTopics {
                command: config.command_topic.clone(),
                state: config.state_topic.clone(),
                payload_on: config.payload_on.clone(),
                payload_off: config.payload_off.clone(),
                availability: (!config.availability_topic.is_empty())
                    .then(|| config.availability_topic.clone()),
            },
        }
    }
}

impl MqttLink {
    /// Connects (in the background) and keeps connected until `close`; home-automation commands arrive on the receiver.
    pub fn start(
        config: &MqttConfig,
        room: &RoomConfig,
        devices: &[DeviceConfig],
        close: CancellationToken,
        clock: Arc<dyn Clock>,
    ) -> (
        Arc<MqttLink>,
        mpsc::Receiver<RemoteCommand>,
        tokio::task::JoinHandle<()>,
    ) {
        let base = config
            .base_topic
            .clone()
            .unwrap_or_else(|| format!("classroom/{}/{}", room.school_code, room.room_id));
        let client_id = format!("firmware-agent-{}-{}", room.school_code, room.room_id);
        let mut options = MqttOptions::new(client_id, config.host.clone(), config.port);
        options.set_keep_alive(Duration::from_secs(10));
        options.set_clean_session(true);
        options.set_last_will(LastWill::new(
            format!("{base}/availability"),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            options.set_credentials(user.clone(), password.clone());
        }
        let (client, mut event_loop) = AsyncClient::new(options, 256);
        // Commands are a few bytes each: send them at once rather than waiting to fill a segment.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        event_loop.set_network_options(network);
        let link = Arc::new(MqttLink {
            client,
            base,
            topics: Mutex::default(),
            connected: watch::channel(false).0,
            reports: Arc::new(watch::channel(0).0),
        });
        let announcements = Announcements::new(&link.base, config, room, devices);
        for topic in &announcements.subscriptions {
            link.topic(topic);
        }
        let (commands_tx, commands) = mpsc::channel(32);
        let task =
            tokio::spawn(
                link.clone()
                    .drive(event_loop, announcements, commands_tx, close, clock),
            );
        (link, commands, task)
    }

    /// Publishes the state of a device of the room for home automation (retained).
    pub fn publish_state(&self, device: &str, on: bool) {
        let topic = format!("{}/{device}/state", self.base);
        if let Err(err) =
            self.client
                .try_publish(topic, QoS::AtLeastOnce, true, if on { "ON" } else { "OFF" })
        {
            tracing::debug!(%err, device, "cannot queue the device's state for MQTT");
        }
    }

    /// Whether the link is connected to the broker now.
    pub fn subscribe_connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Bumped whenever a device reports its state or its availability. The controller bumps it
    /// too for its own commands, so that one channel carries every change the room shows.
    pub fn reports(&self) -> &Arc<watch::Sender<u64>> {
        &self.reports
    }

    /// The latest value on `topic`, if anything arrived there since the link started.
    fn latest(&self, topic: &str) -> Option<String> {
        let topics = self.topics.lock().unwrap();
        topics
            .get(topic)
            .map(|sender| sender.borrow().clone())
            .and_then(|(seq, value)| (seq > 0).then_some(value))
    }

    fn topic(&self, topic: &str) -> watch::Receiver<(u64, String)> {
        let mut topics = self.topics.lock().unwrap();
        topics
            .entry(topic.to_owned())
            .or_insert_with(|| watch::channel((0, String::new())).0)
            .subscribe()
    }

    async fn drive(
        self: Arc<Self>,
        mut event_loop: rumqttc::EventLoop,
        announcements: Announcements,
        commands: mpsc::Sender<RemoteCommand>,
        close: CancellationToken,
        clock: Arc<dyn Clock>,
    ) {
        loop {
            let event = tokio::select! {
                event = event_loop.poll() => event,
                () = close.cancelled() => break,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!(base = %self.base, "connected to the MQTT broker");
                    self.announce(&announcements);
                    self.connected.send_replace(true);
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let payload = String::from_utf8_lossy(&publish.payload).trim().to_owned();
                    self.received(&publish.topic, &payload, &announcements, &commands);
                }
                Ok(_) => {}
                Err(err) => {
                    if self.connected.send_replace(false) {
                        tracing::warn!(%err, "lost the MQTT broker; reconnecting");
                    } else {
                        tracing::debug!(%err, "MQTT broker not reachable; retrying");
                    }
                    tokio::select! {
                        () = clock.sleep(RECONNECT_DELAY) => {}
                        () = close.cancelled() => break,
                    }
                }
            }
        }
        // A clean goodbye: say offline ourselves, since a clean disconnect does not trigger the will.
        if *self.connected.borrow() {
            let _ = self.client.try_publish(
                format!("{}/availability", self.base),
                QoS::AtLeastOnce,
                true,
                "offline",
            );
            let _ = self.client.try_disconnect();
            let flush = async {
                while let Ok(event) = event_loop.poll().await {
                    if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            };
            // A bounded wait on the socket, on the runtime's real time: the goodbye is I/O, not policy.
            let _ = tokio::time::timeout(Duration::from_millis(500), flush).await;
        }
    }

    fn announce(&self, announcements: &Announcements) {
        for topic in &announcements.subscriptions {
            if let Err(err) = self.client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                tracing::error!(%err, topic, "cannot subscribe");
            }
        }
        for (topic, payload, retain) in &announcements.publications {
            if let Err(err) =
                self.client
                    .try_publish(topic.clone(), QoS::AtLeastOnce, *retain, payload.clone())
            {
                tracing::error!(%err, topic, "cannot publish");
            }
        }
    }

    fn received(
        &self,
        topic: &str,
        payload: &str,
        announcements: &Announcements,
        commands: &mpsc::Sender<RemoteCommand>,
    ) {
        if let Some(device) = announcements.set_topics.get(topic) {
            let on = payload.eq_ignore_ascii_case("on")
                || payload == "1"
                || payload.eq_ignore_ascii_case("true");
            let off = payload.eq_ignore_ascii_case("off")
                || payload == "0"
                || payload.eq_ignore_ascii_case("false");
            if on || off {
                let _ = commands.try_send(RemoteCommand {
                    device: device.clone(),
                    on,
                });
            } else {
                tracing::warn!(
                    topic,
                    payload,
                    "ignored a home-automation command: expected ON or OFF"
                );
            }
            return;
        }
        if let Some(device) = announcements.availability.get(topic) {
            tracing::info!(device, availability = payload, "device availability");
            if availability(payload) == Some(true) {
                for (topic, payload) in announcements.on_online.get(device).into_iter().flatten() {
                    if let Err(err) = self.client.try_publish(
                        topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        payload.clone(),
                    ) {
                        tracing::error!(%err, topic, device, "cannot tell a device that came online its settings");
                    }
                }
            }
        }
        if let Some(sender) = self.topics.lock().unwrap().get(topic) {
            sender.send_modify(|(seq, value)| {
                *seq += 1;
                payload.clone_into(value);
            });
            self.reports.send_modify(|version| *version += 1);
        }
    }
}

/// What the link subscribes to and publishes at every connection.
struct Announcements {
    subscriptions: Vec<String>,
    /// (topic, payload, retained)
    publications: Vec<(String, String, bool)>,
    /// `<base>/<device>/set` → device.
    set_topics: HashMap<String, String>,
    /// A device's availability topic → device.
    availability: HashMap<String, String>,
    /// device → (topic, payload) sent whenever it comes online: a Tasmota bell's PulseTime.
    on_online: HashMap<String, Vec<(String, String)>>,
}

impl Announcements {
    fn new(
        base: &str,
        config: &MqttConfig,
        room: &RoomConfig,
        devices: &[DeviceConfig],
    ) -> Announcements {
        let mut out = Announcements {
            subscriptions: Vec::new(),
            publications: vec![(format!("{base}/availability"), "online".to_owned(), true)],
            set_topics: HashMap::new(),
            availability: HashMap::new(),
            on_online: HashMap::new(),
        };
        let node: String = format!("{}_{}", room.school_code, room.room_id)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        for device in devices {
            let set = format!("{base}/{}/set", device.name);
            out.subscriptions.push(set.clone());
            out.set_topics.insert(set.clone(), device.name.clone());
            if !config.discovery_prefix.is_empty() {
                let discovery = serde_json::json!({
                    "name": device.name,
                    "unique_id": format!("{node}_{}", device.name),
                    "command_topic": set,
                    "state_topic": format!("{base}/{}/state", device.name),
                    "availability_topic": format!("{base}/availability"),
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "icon": match device.kind { super::DeviceKind::Bell => "mdi:bell-ring", super::DeviceKind::Light => "mdi:lightbulb", super::DeviceKind::Switch => "mdi:toggle-switch" },
                    "device": {
                        "identifiers": [node],
                        "name": if room.name.is_empty() { room.room_id.clone() } else { room.name.clone() },
                        "model": "firmware-agent",
                        "sw_version": env!("CARGO_PKG_VERSION"),
                    },
                });
                out.publications.push((
                    format!(
                        "{}/switch/{node}/{}/config",
                        config.discovery_prefix, device.name
                    ),
                    discovery.to_string(),
                    true,
                ));
            }
            let DriverConfig::Mqtt(mqtt) = &device.driver else {
                continue;
            };
            let topics = SwitchTopics::of(mqtt);
            out.subscriptions.push(topics.state.clone());
            if let Some(availability) = topics.availability {
                out.subscriptions.push(availability.clone());
                out.availability.insert(availability, device.name.clone());
            }
            if let (MqttFlavor::Tasmota, Some(max_on)) = (mqtt.flavor, device.max_on()) {
                let power = if mqtt.channel == 0 {
                    String::new()
                } else {
                    mqtt.channel.to_string()
                };
                let pulse_time = (
                    format!("cmnd/{}/PulseTime{power}", mqtt.topic),
                    tasmota_pulse_time(max_on).to_string(),
                );
                out.publications
                    .push((pulse_time.0.clone(), pulse_time.1.clone(), false));
                out.on_online
                    .entry(device.name.clone())
                    .or_default()
                    .push(pulse_time);
            }
        }
        out
    }
}

/// What an availability payload says: Tasmota's `Online`/`Offline`, Shelly's `true`/`false`, or `online`/`offline`.
fn availability(payload: &str) -> Option<bool> {
    match payload.to_ascii_lowercase().as_str() {
        "online" | "true" | "1" => Some(true),
        "offline" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Tasmota's PulseTime units: tenths of a second up to 11.1 s, then seconds plus 100.
fn tasmota_pulse_time(max_on: Duration) -> u64 {
    let tenths = max_on.as_millis().div_ceil(100) as u64;
    if tenths <= 111 {
        tenths.max(1)
    } else {
        max_on.as_secs() + 100
    }
}

/// A smart switch reached through the link.
pub struct MqttSwitch {
    name: String,
    link: Arc<MqttLink>,
    topics: SwitchTopics,
    confirm_timeout: Duration,
    retries: u32,
}

impl MqttSwitch {
    pub fn new(
        name: &str,
        link: Arc<MqttLink>,
        device: &MqttDeviceConfig,
        broker: &MqttConfig,
    ) -> MqttSwitch {
        MqttSwitch {
            name: name.to_owned(),
            link,
            topics: SwitchTopics::of(device),
            confirm_timeout: Duration::from_millis(broker.confirm_timeout_ms),
            retries: broker.retries,
        }
    }

    async fn command(&self, on: bool) -> Result<Confirmation, ActuatorError> {
        let payload = if on {
            &self.topics.payload_on
        } else {
            &self.topics.payload_off
        };
        let mut state = self.link.topic(&self.topics.state);
        let started = Instant::now();
        for attempt in 0..=self.retries {
            let before = state.borrow_and_update().0;
            self.link
                .client
                .publish(
                    self.topics.command.clone(),
                    QoS::AtLeastOnce,
                    false,
                    payload.clone(),
                )
                .await
                .map_err(|err| {
                    ActuatorError::Failed(format!("cannot queue the MQTT command: {err}"))
                })?;
            let confirmed =
                state.wait_for(|(seq, value)| *seq > before && value.eq_ignore_ascii_case(payload));
            // How long a device may take to answer on the network: a bounded I/O wait, on the runtime's real time.
            match tokio::time::timeout(self.confirm_timeout, confirmed).await {
                Ok(Ok(_)) => return Ok(Confirmation::Confirmed),
                Ok(Err(_)) => {
                    return Err(ActuatorError::Failed("the MQTT link is gone".to_owned()));
                }
                Err(_) => {
                    tracing::debug!(device = %self.name, attempt, "no confirmation on {}", self.topics.state)
                }
            }
        }
        Err(ActuatorError::TimedOut {
            attempts: self.retries + 1,
            waited: started.elapsed(),
        })
    }
}

impl Actuator for MqttSwitch {
    fn name(&self) -> &str {
        &self.name
    }

    fn switch(&self, on: bool) -> BoxFuture<'_, Result<Confirmation, ActuatorError>> {
        self.command(on).boxed()
    }

    fn safe_state(&self) {
        let _ = self.link.client.try_publish(
            self.topics.command.clone(),
            QoS::AtLeastOnce,
            false,
            self.topics.payload_off.clone(),
        );
    }

    fn reported(&self) -> Reported {
        let on = self.link.latest(&self.topics.state).and_then(|state| {
            if state.eq_ignore_ascii_case(&self.topics.payload_on) {
                Some(true)
            } else {
                state
                    .eq_ignore_ascii_case(&self.topics.payload_off)
                    .then_some(false)
            }
        });
        let online = self
            .topics
            .availability
            .as_deref()
            .and_then(|topic| self.link.latest(topic))
            .and_then(|payload| availability(&payload));
        Reported { on, online }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulse_time_follows_tasmota_units() {
        assert_eq!(tasmota_pulse_time(Duration::from_secs(5)), 50);
        assert_eq!(tasmota_pulse_time(Duration::from_secs(15)), 115);
    }
}
