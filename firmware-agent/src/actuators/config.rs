//! The `[actuators]` section: the room's bells, lights and other switches, how
//! each is wired, and the MQTT broker smart switches are reached through.

use serde::Deserialize;

use std::collections::BTreeMap;

use crate::config::diagnostics::Unlocated;
use crate::schedule::config::BellPattern;

/// Every device and the broker.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ActuatorsConfig {
    pub mqtt: Option<MqttConfig>,
    pub device: Vec<DeviceConfig>,
}

/// One device.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The device's name in records, commands and the timetable: 1-32 letters, digits, `-` or `_`.
    pub name: String,
    pub kind: DeviceKind,
    /// For lights: the zone `firmware-agent light on ZONE` names; the device's name when absent.
    #[serde(default)]
    pub zone: Option<String>,
    /// The longest the device may stay on in one go, enforced by the driver itself. Bells default to 15 s.
    #[serde(default)]
    pub max_on_seconds: Option<u32>,
    pub driver: DriverConfig,
}

impl DeviceConfig {
    pub fn zone(&self) -> &str {
        self.zone.as_deref().unwrap_or(&self.name)
    }

    /// The hard limit on one "on", if any.
    pub fn max_on(&self) -> Option<std::time::Duration> {
        let default = (self.kind == DeviceKind::Bell).then_some(15);
        self.max_on_seconds
            .or(default)
            .map(|s| std::time::Duration::from_secs(s.into()))
    }
}

/// What a device is, for records and the panel.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Bell,
    Light,
    Switch,
}

/// How a device is driven.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum DriverConfig {
    /// A pin of the in-memory pin bank: for tests and the demo.
    Simulated {
        #[serde(default)]
        active_low: bool,
    },
    /// A relay on a line of a Linux GPIO character device.
    Gpio {
        #[serde(default = "default_chip")]
        chip: String,
        line: u32,
        #[serde(default)]
        active_low: bool,
    },
    /// A relay on a Raspberry Pi's BCM-numbered pin, through `rppal`.
    Rppal {
        pin: u8,
        #[serde(default)]
        active_low: bool,
    },
    /// A smart switch over MQTT.
    Mqtt(MqttDeviceConfig),
}

fn default_chip() -> String {
    "/dev/gpiochip0".to_owned()
}

/// A smart switch's topics.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttDeviceConfig {
    pub flavor: MqttFlavor,
    /// Tasmota: the device topic (`cmnd/<topic>/POWER`). Shelly: the device id (`shellies/<id>/relay/<channel>/command`).
    #[serde(default)]
    pub topic: String,
    /// Tasmota: the relay number (POWER1, POWER2…), 0 for plain POWER. Shelly: the relay channel.
    #[serde(default)]
    pub channel: u32,
    /// Generic: where commands go.
    #[serde(default)]
    pub command_topic: String,
    /// Generic: where the device reports its state.
    #[serde(default)]
    pub state_topic: String,
    /// Generic: the payloads for on and off (commands and states alike).
    #[serde(default = "on_payload")]
    pub payload_on: String,
    #[serde(default = "off_payload")]
    pub payload_off: String,
    /// Generic: the device's availability topic (its last will), if it has one.
    #[serde(default)]
    pub availability_topic: String,
}

fn on_payload() -> String {
    "ON".to_owned()
}

fn off_payload() -> String {
    "OFF".to_owned()
}

/// Which firmware's topic conventions a smart switch follows.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MqttFlavor {
    Tasmota,
    Shelly,
    Generic,
}

/// The broker and how commands are confirmed.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// How long to wait for a device's state topic to confirm a command, per attempt.
    #[serde(default = "default_confirm_timeout_ms")]
    pub confirm_timeout_ms: u64,
    /// How many times a command is re-sent after an unconfirmed attempt.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The prefix of the agent's own topics; `classroom/<school_code>/<room_id>` when absent.
    #[serde(default)]
    pub base_topic: Option<String>,
    /// Home Assistant discovery prefix; empty to publish no discovery.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
}

fn default_port() -> u16 {
    1883
}

fn default_confirm_timeout_ms() -> u64 {
    2000
}

fn default_retries() -> u32 {
    2
}

fn default_discovery_prefix() -> String {
    "homeassistant".to_owned()
}

/// The rules serde cannot express; `patterns` are the bell patterns any bell may be rung with.
pub fn problems(
    config: &ActuatorsConfig,
    patterns: &BTreeMap<String, BellPattern>,
) -> Vec<Unlocated> {
    let mut out = Vec::new();
    let mut problem = |key: String, message: String, hint: &str| {
        out.push(Unlocated {
            key,
            message,
            hint: hint.to_owned(),
        })
    };
    let mut seen = std::collections::BTreeSet::new();
    for (i, device) in config.device.iter().enumerate() {
        let key = format!("actuators.device.{i}");
        let valid = (1..=32).contains(&device.name.len())
            && device
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            problem(
                format!("{key}.name"),
                format!("`{}` is not a valid device name", device.name),
                "use 1 to 32 letters, digits, `-` or `_`",
            );
        }
        if !seen.insert(device.name.as_str()) {
            problem(
                format!("{key}.name"),
                format!("a second device named `{}`", device.name),
                "give every device its own name",
            );
        }
        if device.max_on_seconds == Some(0) {
            problem(
                format!("{key}.max_on_seconds"),
                "0 would never let the device switch on".into(),
                "use a number of seconds, such as 15 for a bell",
            );
        }
        if let (DeviceKind::Bell, Some(max_on)) = (device.kind, device.max_on()) {
            for (name, pattern) in patterns {
                let longest = pattern
                    .pulses_ms
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, pulse)| **pulse);
                if let Some((i, &pulse)) =
                    longest.filter(|(_, pulse)| u128::from(**pulse) > max_on.as_millis())
                {
                    problem(
                        format!("schedule.patterns.{name}.pulses_ms.{i}"),
                        format!(
                            "a pulse of {pulse} ms is longer than bell `{}` may ring ({} s, its max_on_seconds): its driver would cut it short",
                            device.name,
                            max_on.as_secs()
                        ),
                        "shorten the pulse, or split it into pulses with gaps; or raise the bell's max_on_seconds if it may ring that long",
                    );
                }
            }
        }
        if let DriverConfig::Mqtt(mqtt) = &device.driver {
            if config.mqtt.is_none() {
                problem(
                    format!("{key}.driver"),
                    "an MQTT device needs a broker".into(),
                    "add [actuators.mqtt] with host = \"...\"",
                );
            }
            let missing = match mqtt.flavor {
                MqttFlavor::Tasmota | MqttFlavor::Shelly => {
                    mqtt.topic.is_empty().then_some("topic")
                }
                MqttFlavor::Generic if mqtt.command_topic.is_empty() => Some("command_topic"),
                MqttFlavor::Generic => mqtt.state_topic.is_empty().then_some("state_topic"),
            };
            if let Some(field) = missing {
                problem(
                    format!("{key}.driver"),
                    format!("this {:?} device needs `{field}`", mqtt.flavor).to_lowercase(),
                    "see config/agent.example.toml for each flavor's keys",
                );
            }
        }
    }
    if let Some(mqtt) = &config.mqtt {
        if mqtt.host.is_empty() {
            problem(
                "actuators.mqtt.host".into(),
                "the broker's host is empty".into(),
                "write the broker's name or address, such as \"192.168.1.10\"",
            );
        }
        if mqtt.confirm_timeout_ms == 0 {
            problem(
                "actuators.mqtt.confirm_timeout_ms".into(),
                "a timeout of 0 never confirms".into(),
                "use a few hundred milliseconds or more, such as 2000",
            );
        }
    }
    out
}
