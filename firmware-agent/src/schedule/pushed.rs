//! The timetable the provincial hub pushes (with the roster, through
//! `PutRoster`), laid over the `[schedule]` section of the room's config.
//!
//! # Design
//! - The hub knows the school's periods, shifts and holidays; only the room
//!   knows its devices. So the pushed text is a `[schedule]` section whose keys
//!   replace the same keys of the room's config, and the keys it leaves out
//!   (typically `bell`, `lights`, `switches`) stay as IT staff wrote them.
//! - The result is checked by the same rules as the config file. A push that
//!   does not fit is refused whole with each problem named, and nothing of it
//!   is stored; a stored one that no longer fits a changed config (a device
//!   renamed) is set aside with an error in the log, and the config's own
//!   timetable is followed until the hub pushes again.
//! - The timetable in force is always "config file, then the stored push over
//!   it": at start, on SIGHUP, and when the hub pushes. Every part of the agent
//!   (bells, roll calls, the panel, `schedule show`) reads it from the config in
//!   force, so none of them knows where a key came from.

use super::ScheduleConfig;
use crate::config::Config;
use crate::store::{Store, StoreError};

/// `pushed` laid over `config`'s timetable, checked; or every problem, each a line naming its key.
/// It takes the whole config because the pushed keys replace `[schedule]`'s and are
/// checked against `[actuators]`'s devices.
pub fn overlay(config: &Config, pushed: &str) -> Result<ScheduleConfig, Vec<String>> {
    let mut table = pushed
        .parse::<toml::Table>()
        .map_err(|err| vec![format!("not valid TOML: {}", err.message())])?;
    let Some(toml::Value::Table(section)) = table.remove("schedule") else {
        return Err(vec![
            "no [schedule] section: the timetable goes in one, as in the room's config".to_owned(),
        ]);
    };
    if let Some(other) = table.keys().next() {
        return Err(vec![format!(
            "`{other}`: only a [schedule] section can be pushed"
        )]);
    }
    let given: ScheduleConfig = toml::Value::Table(section.clone())
        .try_into()
        .map_err(|err: toml::de::Error| vec![format!("schedule: {}", err.message())])?;
    let mut schedule = config.schedule.clone();
    for key in section.keys() {
        match key.as_str() {
            "bell" => schedule.bell = given.bell.clone(),
            "lights" => schedule.lights = given.lights.clone(),
            "lights_on_before_minutes" => {
                schedule.lights_on_before_minutes = given.lights_on_before_minutes
            }
            "lights_off_after_minutes" => {
                schedule.lights_off_after_minutes = given.lights_off_after_minutes
            }
            "grace_seconds" => schedule.grace_seconds = given.grace_seconds,
            "teacher_hold_minutes" => schedule.teacher_hold_minutes = given.teacher_hold_minutes,
            "patterns" => schedule.patterns = given.patterns.clone(),
            "shifts" => schedule.shifts = given.shifts.clone(),
            "exceptions" => schedule.exceptions = given.exceptions.clone(),
            "switches" => schedule.switches = given.switches.clone(),
            other => unreachable!("serde refuses unknown keys of [schedule], such as `{other}`"),
        }
    }
    let devices: Vec<&str> = config
        .actuators
        .device
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    let problems = super::config::problems(&schedule, &devices);
    if problems.is_empty() {
        Ok(schedule)
    } else {
        Err(problems
            .into_iter()
            .map(|p| format!("{}: {}; {}", p.key, p.message, p.hint))
            .collect())
    }
}

/// Why the timetable the hub pushed is set aside and the config's own followed.
#[derive(Debug, thiserror::Error)]
pub enum SetAside {
    #[error("the timetable the hub pushed (version {version}) does not fit this room's config; the config's own is followed until the hub pushes again:\n{}", problems.join("\n"))]
    DoesNotFit { version: u64, problems: Vec<String> },
    #[error("cannot read the timetable the hub pushed ({0}); the config's own is followed")]
    Unreadable(#[from] StoreError),
}

/// The config in force: `config` from its file, with the timetable the hub last
/// pushed laid over it. Also says which timetable that is: `Ok(None)` the
/// config's own, `Ok(Some(version))` the hub's, `Err` why the hub's was set aside.
pub fn in_force(mut config: Config, store: &Store) -> (Config, Result<Option<u64>, SetAside>) {
    let followed = match store.pushed_timetable() {
        Ok(None) => Ok(None),
        Ok(Some(pushed)) => match overlay(&config, &pushed.toml) {
            Ok(schedule) => {
                config.schedule = schedule;
                Ok(Some(pushed.version))
            }
            Err(problems) => Err(SetAside::DoesNotFit {
                version: pushed.version,
                problems,
            }),
        },
        Err(err) => Err(SetAside::Unreadable(err)),
    };
    (config, followed)
}

/// [`in_force`], telling the log which timetable is followed.
pub fn in_force_logged(config: Config, store: &Store) -> Config {
    let (config, followed) = in_force(config, store);
    match followed {
        Ok(Some(version)) => tracing::info!(version, "following the timetable the hub pushed"),
        Ok(None) => {}
        Err(set_aside) => tracing::error!("{set_aside}"),
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Config {
        Config::parse(
            std::path::Path::new("agent.toml"),
            r#"
            [room]
            school_code = "LC-0101"
            room_id = "6A1"
            [schedule]
            bell = "bell"
            lights = ["lights"]
            lights_on_before_minutes = 7
            [[schedule.shifts]]
            name = "Sáng"
            days = ["mon"]
            periods = [{ start = "07:00", end = "07:45" }]
            [[actuators.device]]
            name = "bell"
            kind = "bell"
            driver = { type = "simulated" }
            [[actuators.device]]
            name = "lights"
            kind = "light"
            driver = { type = "simulated" }
            "#,
        )
        .unwrap()
    }

    #[test]
    fn pushed_keys_replace_the_configs_and_the_rest_stay() {
        let pushed = r#"
            [schedule]
            [[schedule.shifts]]
            name = "Chiều"
            days = ["mon", "tue"]
            periods = [{ start = "13:30", end = "14:15" }, { start = "14:20", end = "15:05" }]
        "#;
        let schedule = overlay(&room(), pushed).unwrap();
        assert_eq!(schedule.shifts.len(), 1);
        assert_eq!(schedule.shifts[0].name, "Chiều");
        assert_eq!(schedule.shifts[0].periods.len(), 2);
        assert_eq!(
            (schedule.bell.as_str(), schedule.lights.clone()),
            ("bell", vec!["lights".to_owned()])
        );
        assert_eq!(
            schedule.lights_on_before_minutes, 7,
            "a key the hub left out keeps the room's value"
        );
    }

    #[test]
    fn a_push_that_does_not_fit_names_each_problem() {
        let unknown = overlay(&room(), "[schedule]\nperiod_minutes = 45\n").unwrap_err();
        assert!(unknown[0].contains("period_minutes"), "{unknown:?}");
        let no_device = overlay(&room(), "[schedule]\nbell = \"chuong-hanh-lang\"\n").unwrap_err();
        assert!(
            no_device
                .iter()
                .any(|p| p.starts_with("schedule.bell:") && p.contains("chuong-hanh-lang")),
            "{no_device:?}"
        );
        let backwards = "[schedule]\n[[schedule.shifts]]\nname = \"Sáng\"\ndays = [\"mon\"]\nperiods = [{ start = \"08:00\", end = \"07:00\" }]\n";
        assert!(
            overlay(&room(), backwards)
                .unwrap_err()
                .iter()
                .any(|p| p.contains("schedule.shifts.0.periods.0.end"))
        );
        assert!(
            overlay(&room(), "[room]\nroom_id = \"x\"\n").unwrap_err()[0]
                .contains("no [schedule] section")
        );
        assert!(overlay(&room(), "[schedule\n").unwrap_err()[0].contains("not valid TOML"));
    }
}
