//! The `[panel]` section: who may use the teacher's screen from the LAN, and
//! `[panel.power]`, how the panel itself is switched on and off with the
//! school day.
//!
//! # Design
//! The command bytes and the serial speed are read here, once, by the same
//! functions that check them ([`hex_bytes`], [`speed`]), so that what
//! `check-config` accepts is exactly what the power driver can send.

use std::path::PathBuf;

use nix::sys::termios::BaudRate;
use serde::Deserialize;

use crate::config::diagnostics::Unlocated;

/// The `[panel]` section of the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PanelConfig {
    /// The PIN a teacher enters to use the panel from another device on the LAN;
    /// empty: only the panel itself (loopback) has access.
    pub teacher_pin: String,
    /// The fewest digits `teacher_pin` may have (4 to 12): each digit makes
    /// guessing across the room's lockouts ten times longer.
    pub teacher_pin_min_digits: usize,
    /// The panel's own power, switched with the timetable.
    pub power: PowerConfig,
}

impl Default for PanelConfig {
    fn default() -> Self {
        PanelConfig {
            teacher_pin: String::new(),
            teacher_pin_min_digits: 6,
            power: PowerConfig::default(),
        }
    }
}

impl PanelConfig {
    pub(crate) fn problems(&self) -> Vec<Unlocated> {
        let mut problems = self.power.problems();
        let shortest = self.teacher_pin_min_digits;
        if !(4..=12).contains(&shortest) {
            problems.push(Unlocated {
                key: "panel.teacher_pin_min_digits".into(),
                message: format!("must be 4 to 12, not {shortest}"),
                hint: "leave it out for 6, or choose more digits for a room whose network is open to many".into(),
            });
            return problems;
        }
        let pin = &self.teacher_pin;
        if !(pin.is_empty()
            || (pin.len() >= shortest
                && pin.len() <= 12
                && pin.bytes().all(|b| b.is_ascii_digit())))
        {
            problems.push(Unlocated {
                key: "panel.teacher_pin".into(),
                message: format!("must be {shortest} to 12 digits"),
                hint: format!(
                    "choose a PIN of {shortest} digits or more, such as \"482193\" (fewer only by lowering panel.teacher_pin_min_digits), or leave it empty to allow the panel only"
                ),
            });
        }
        problems
    }
}

/// `[panel.power]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PowerConfig {
    pub control: Control,
    /// Minutes before the day's first period the panel is switched on.
    pub on_before_minutes: u32,
    /// Minutes after the day's last period the panel is switched off.
    pub off_after_minutes: u32,
    /// RS-232: the serial device, its speed, and the command bytes in hex.
    pub serial_device: PathBuf,
    pub baud: u32,
    pub on_bytes: String,
    pub off_bytes: String,
    /// A command to run instead, such as `["cec-ctl", "--to", "0", "--image-view-on"]`.
    pub on_command: Vec<String>,
    pub off_command: Vec<String>,
}

impl Default for PowerConfig {
    fn default() -> Self {
        Self {
            control: Control::None,
            on_before_minutes: 10,
            off_after_minutes: 15,
            serial_device: PathBuf::from("/dev/ttyUSB0"),
            baud: 9600,
            on_bytes: String::new(),
            off_bytes: String::new(),
            on_command: Vec::new(),
            off_command: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    None,
    Rs232,
    Command,
}

impl PowerConfig {
    pub(crate) fn problems(&self) -> Vec<Unlocated> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String, hint: &str| {
            problems.push(Unlocated {
                key: format!("panel.power.{key}"),
                message,
                hint: hint.to_owned(),
            })
        };
        match self.control {
            Control::None => {}
            Control::Rs232 => {
                for (key, bytes) in [("on_bytes", &self.on_bytes), ("off_bytes", &self.off_bytes)] {
                    if let Err(err) = hex_bytes(bytes) {
                        problem(
                            key,
                            err.to_string(),
                            "write the panel's command as hex bytes, such as \"AA 11 FE 01 01 11\"",
                        );
                    }
                }
                if speed(self.baud).is_none() {
                    problem(
                        "baud",
                        format!("{} is not a serial speed this agent sets", self.baud),
                        "use 9600, 19200, 38400, 57600 or 115200",
                    );
                }
            }
            Control::Command => {
                for (key, command) in [
                    ("on_command", &self.on_command),
                    ("off_command", &self.off_command),
                ] {
                    if command.is_empty() {
                        problem(
                            key,
                            "is empty".to_owned(),
                            "name the program and its arguments, such as [\"cec-ctl\", \"--to\", \"0\", \"--standby\"]",
                        );
                    }
                }
            }
        }
        problems
    }
}

/// Why a command written in hex is not bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("`{text}` is not hex: `{character}` is not a hex digit (0-9, A-F)")]
    NotADigit { text: String, character: char },
    #[error("`{text}` is not whole hex bytes")]
    NotWholeBytes { text: String },
}

/// The bytes written as hex pairs in `text`, spaces allowed between them.
/// Read as characters, never sliced as bytes, so that whatever was typed is
/// named in the error.
pub fn hex_bytes(text: &str) -> Result<Vec<u8>, HexError> {
    let digits = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|character| {
            character.to_digit(16).ok_or_else(|| HexError::NotADigit {
                text: text.to_owned(),
                character,
            })
        })
        .collect::<Result<Vec<u32>, HexError>>()?;
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return Err(HexError::NotWholeBytes {
            text: text.to_owned(),
        });
    }
    Ok(digits
        .chunks(2)
        .map(|pair| (pair[0] << 4 | pair[1]) as u8)
        .collect())
}

/// The serial speed for `baud`, when it is one the power driver sets.
pub fn speed(baud: u32) -> Option<BaudRate> {
    Some(match baud {
        9600 => BaudRate::B9600,
        19200 => BaudRate::B19200,
        38400 => BaudRate::B38400,
        57600 => BaudRate::B57600,
        115200 => BaudRate::B115200,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_has_six_digits_or_more_unless_the_room_allows_fewer() {
        let problems = |pin: &str, shortest: usize| {
            PanelConfig {
                teacher_pin: pin.into(),
                teacher_pin_min_digits: shortest,
                ..PanelConfig::default()
            }
            .problems()
            .into_iter()
            .map(|problem| format!("{}: {}", problem.key, problem.message))
            .collect::<Vec<_>>()
        };
        assert_eq!(
            problems("4821", 6),
            ["panel.teacher_pin: must be 6 to 12 digits"]
        );
        assert_eq!(
            problems("48219", 6),
            ["panel.teacher_pin: must be 6 to 12 digits"]
        );
        assert!(problems("482193", 6).is_empty());
        assert!(problems("", 6).is_empty(), "no PIN: the panel only");
        assert!(
            problems("4821", 4).is_empty(),
            "a room that chose four digits"
        );
        assert_eq!(
            problems("4821", 3),
            ["panel.teacher_pin_min_digits: must be 4 to 12, not 3"]
        );
        assert_eq!(PanelConfig::default().teacher_pin_min_digits, 6);
    }

    #[test]
    fn bad_settings_are_named() {
        let config = PowerConfig {
            control: Control::Rs232,
            on_bytes: "AA 1".into(),
            off_bytes: "zz".into(),
            baud: 1200,
            ..Default::default()
        };
        let keys: Vec<String> = config.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "panel.power.on_bytes",
                "panel.power.off_bytes",
                "panel.power.baud"
            ]
        );
        assert_eq!(
            hex_bytes("AA 11 fe 01").unwrap(),
            vec![0xAA, 0x11, 0xFE, 0x01]
        );
    }

    #[test]
    fn a_character_beyond_ascii_is_named_not_split() {
        for text in ["Aé1", "AA Aé1", "ÂA 11", "đ", "AA ０1"] {
            let err = hex_bytes(text).expect_err(text).to_string();
            assert!(err.contains("is not a hex digit"), "{text}: {err}");
        }
        let err = hex_bytes("AA 1é 1").unwrap_err();
        assert_eq!(
            err,
            HexError::NotADigit {
                text: "AA 1é 1".to_owned(),
                character: 'é'
            }
        );
        assert!(err.to_string().contains("`é`"), "{err}");
        let config = PowerConfig {
            control: Control::Rs232,
            on_bytes: "Aé1".into(),
            off_bytes: "AA 11".into(),
            ..Default::default()
        };
        let keys: Vec<String> = config.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["panel.power.on_bytes"]);
    }
}
