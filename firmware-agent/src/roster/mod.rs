//! The room's people: pupils, teachers and classes, as IT staff provide them in
//! a CSV file and as the hub pushes them.
//!
//! # The CSV format
//! UTF-8 (Excel's "CSV UTF-8", a byte-order mark is accepted), comma-separated,
//! with this header row; columns may come in any order:
//!
//! | column | meaning |
//! |---|---|
//! | `role` | `pupil` / `học sinh` or `teacher` / `giáo viên` |
//! | `personal_id` | the 12-digit mã định danh |
//! | `full_name` | as written in the school's records, with diacritics |
//! | `class` | the pupil's class, such as `6A1` (empty for teachers) |
//! | `face_consent` | `yes`/`có` when a parent (for a pupil) consented to face recognition, else `no`/`không` |
//! | `learning_data_consent` | `yes`/`có` to keep the pupil's learning records for analysis |
//! | `consent_date` | the day consent was recorded, `YYYY-MM-DD`; required when a consent is `yes` |
//!
//! A file is checked whole before anything is written: one bad row and nothing is applied.

pub mod personal_id;

use std::collections::HashMap;
use std::fmt;

use unicode_normalization::UnicodeNormalization;

pub use personal_id::PersonalId;

/// A pupil as the roster knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pupil {
    pub personal_id: PersonalId,
    pub full_name: String,
    pub class_name: String,
    pub face_consent: bool,
    pub learning_data_consent: bool,
    pub consent_date: Option<jiff::civil::Date>,
}

/// A teacher as the roster knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teacher {
    pub personal_id: PersonalId,
    pub full_name: String,
}

/// A checked roster, ready to apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    pub pupils: Vec<Pupil>,
    pub teachers: Vec<Teacher>,
}

/// One thing wrong with one row of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// The row number as a spreadsheet shows it: the header is row 1.
    pub row: usize,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}, {}: {}", self.row, self.field, self.reason)
    }
}

/// Why a roster file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error(
        "the file is not UTF-8 text ({0})\n  hint: in Excel use \"Save As\" > \"CSV UTF-8 (Comma delimited)\"; in LibreOffice choose the Unicode (UTF-8) character set"
    )]
    Encoding(String),
    #[error("{}", header_message(.0))]
    Header(Vec<String>),
    #[error("{} problem(s); nothing was imported:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Rows(Vec<RowProblem>),
}

fn header_message(missing: &[String]) -> String {
    format!(
        "the header row lacks column(s) {}\n  hint: the first row must name the columns: {}",
        missing
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", "),
        COLUMNS.join(",")
    )
}

const COLUMNS: [&str; 7] = [
    "role",
    "personal_id",
    "full_name",
    "class",
    "face_consent",
    "learning_data_consent",
    "consent_date",
];

/// Parses and checks a roster CSV file's bytes.
pub fn parse_csv(bytes: &[u8]) -> Result<Roster, RosterError> {
    let text = decode(bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|err| {
            RosterError::Rows(vec![RowProblem {
                row: 1,
                field: "header".into(),
                reason: err.to_string(),
            }])
        })?
        .iter()
        .map(|h| h.to_lowercase())
        .collect();
    let missing: Vec<String> = COLUMNS
        .iter()
        .filter(|c| !header.iter().any(|h| h == *c))
        .map(|c| c.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(RosterError::Header(missing));
    }
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .expect("checked above")
    };

    let mut roster = Roster::default();
    let mut problems = Vec::new();
    let mut seen: HashMap<PersonalId, String> = HashMap::new();
    for (index, record) in reader.records().enumerate() {
        let row = index + 2;
        let record = match record {
            Ok(record) => record,
            Err(err) => {
                problems.push(RowProblem {
                    row,
                    field: "row".into(),
                    reason: err.to_string(),
                });
                continue;
            }
        };
        let mut problem = |field: &str, reason: String| {
            problems.push(RowProblem {
                row,
                field: field.into(),
                reason,
            })
        };
        let get = |name: &str| record.get(column(name)).unwrap_or("").to_owned();
        let face_consent = yes_no(&get("face_consent")).unwrap_or_else(|reason| {
            problem("face_consent", reason.to_string());
            false
        });
        let learning_data_consent =
            yes_no(&get("learning_data_consent")).unwrap_or_else(|reason| {
                problem("learning_data_consent", reason.to_string());
                false
            });
        let Some(role) = role(&get("role")) else {
            problem(
                "role",
                format!(
                    "`{}` is neither `pupil` (học sinh) nor `teacher` (giáo viên)",
                    get("role")
                ),
            );
            continue;
        };
        let person = Candidate {
            role,
            personal_id: &get("personal_id"),
            full_name: &get("full_name"),
            class_name: &get("class"),
            face_consent,
            learning_data_consent,
            consent_date: &get("consent_date"),
        };
        check_person(
            &person,
            &format!("row {row}"),
            &mut seen,
            &mut roster,
            &mut problem,
        );
    }
    if problems.is_empty() {
        Ok(roster)
    } else {
        Err(RosterError::Rows(problems))
    }
}

/// Writes a roster in the import format, so an export can be edited and imported back.
pub fn write_csv(roster: &Roster, out: impl std::io::Write) -> csv::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(COLUMNS)?;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    for pupil in &roster.pupils {
        let date = pupil
            .consent_date
            .map(|d| d.to_string())
            .unwrap_or_default();
        writer.write_record([
            "pupil",
            pupil.personal_id.as_str(),
            &pupil.full_name,
            &pupil.class_name,
            yes_no(pupil.face_consent),
            yes_no(pupil.learning_data_consent),
            &date,
        ])?;
    }
    for teacher in &roster.teachers {
        writer.write_record([
            "teacher",
            teacher.personal_id.as_str(),
            &teacher.full_name,
            "",
            "no",
            "no",
            "",
        ])?;
    }
    writer.flush()?;
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<String, RosterError> {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(RosterError::Encoding(
            "it is UTF-16, as Excel's \"Unicode Text\" writes".into(),
        ));
    }
    let bytes = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(err) => {
            let offset = err.valid_up_to();
            let row = bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
            Err(RosterError::Encoding(format!(
                "row {row}: byte 0x{:02X} is not UTF-8; the file looks like a legacy Vietnamese encoding such as Windows-1258 or TCVN3",
                bytes[offset]
            )))
        }
    }
}

/// Whether a person is a pupil or a teacher of the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Pupil,
    Teacher,
}

/// One person as given, before checking: a CSV row or an entry of a hub push.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub role: Role,
    pub personal_id: &'a str,
    pub full_name: &'a str,
    /// The pupil's class; ignored for teachers.
    pub class_name: &'a str,
    pub face_consent: bool,
    pub learning_data_consent: bool,
    /// `YYYY-MM-DD`, or empty.
    pub consent_date: &'a str,
}

/// Checks one person, the same way whichever way they came, and adds them to
/// `roster` when their ID is valid. Each problem goes to `problem(field, reason)`.
/// `seen` remembers where each ID was first given; `place` names this one
/// (such as "row 4") for the message about a later duplicate.
pub fn check_person(
    person: &Candidate<'_>,
    place: &str,
    seen: &mut HashMap<PersonalId, String>,
    roster: &mut Roster,
    problem: &mut dyn FnMut(&str, String),
) {
    let personal_id = match person.personal_id.parse::<PersonalId>() {
        Ok(id) => {
            if let Some(first) = seen.get(&id) {
                problem("personal_id", format!("{id} already appears on {first}"));
            } else {
                seen.insert(id.clone(), place.to_owned());
            }
            Some(id)
        }
        Err(err) => {
            problem("personal_id", err.to_string());
            None
        }
    };
    let full_name: String = person.full_name.nfc().collect();
    if full_name.is_empty() {
        problem("full_name", "is empty".into());
    } else if full_name.chars().count() > 100 || full_name.chars().any(char::is_control) {
        problem(
            "full_name",
            "is longer than 100 characters or contains control characters".into(),
        );
    }
    let consent_date = match person.consent_date {
        "" => None,
        text => match text.parse::<jiff::civil::Date>() {
            Ok(date) => Some(date),
            Err(_) => {
                problem(
                    "consent_date",
                    format!("`{text}` is not a date written as YYYY-MM-DD"),
                );
                None
            }
        },
    };
    if (person.face_consent || person.learning_data_consent) && person.consent_date.is_empty() {
        problem(
            "consent_date",
            "a consent is `yes` but the day it was recorded is missing".into(),
        );
    }
    let class_name: String = person.class_name.nfc().collect();
    match person.role {
        Role::Pupil => {
            if class_name.is_empty() {
                problem("class", "a pupil needs a class, such as 6A1".into());
            } else if class_name.chars().count() > 32 {
                problem("class", "is longer than 32 characters".into());
            }
            if let Some(personal_id) = personal_id {
                roster.pupils.push(Pupil {
                    personal_id,
                    full_name,
                    class_name,
                    face_consent: person.face_consent,
                    learning_data_consent: person.learning_data_consent,
                    consent_date,
                });
            }
        }
        Role::Teacher => {
            if let Some(personal_id) = personal_id {
                roster.teachers.push(Teacher {
                    personal_id,
                    full_name,
                });
            }
        }
    }
}

fn role(text: &str) -> Option<Role> {
    match text.nfc().collect::<String>().to_lowercase().as_str() {
        "pupil" | "student" | "học sinh" | "hs" => Some(Role::Pupil),
        "teacher" | "giáo viên" | "gv" => Some(Role::Teacher),
        _ => None,
    }
}

/// A consent column's text that is neither yes nor no, as read (normalised, lower case).
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not yes/có or no/không")]
struct NotYesOrNo(String);

fn yes_no(text: &str) -> Result<bool, NotYesOrNo> {
    match text.nfc().collect::<String>().to_lowercase().as_str() {
        "yes" | "y" | "true" | "1" | "có" | "co" => Ok(true),
        "no" | "n" | "false" | "0" | "không" | "khong" | "" => Ok(false),
        other => Err(NotYesOrNo(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "role,personal_id,full_name,class,face_consent,learning_data_consent,consent_date\n";

    #[test]
    fn parses_vietnamese_rows_with_a_bom() {
        let text = format!(
            "\u{feff}{HEADER}học sinh,010206001234,Nguyễn Thị Hoa,6A1,có,có,2026-08-20\ngiáo viên,010186004321,Trần Văn Nam,,no,no,\n"
        );
        let roster = parse_csv(text.as_bytes()).unwrap();
        assert_eq!(roster.pupils.len(), 1);
        assert_eq!(roster.pupils[0].full_name, "Nguyễn Thị Hoa");
        assert!(roster.pupils[0].face_consent);
        assert_eq!(roster.teachers[0].full_name, "Trần Văn Nam");
    }

    #[test]
    fn an_export_imports_back_to_the_same_roster() {
        let text = format!(
            "{HEADER}pupil,010206001234,\"Nguyễn Thị Hoa, con\",6A1,yes,no,2026-08-20\nteacher,010186004321,Trần Văn Nam,,no,no,\n"
        );
        let roster = parse_csv(text.as_bytes()).unwrap();
        let mut exported = Vec::new();
        write_csv(&roster, &mut exported).unwrap();
        assert_eq!(parse_csv(&exported).unwrap(), roster);
    }

    #[test]
    fn names_in_decomposed_form_are_normalized() {
        let decomposed = "Nguye\u{302}\u{303}n"; // "Nguyễn" as some exports write it
        let text = format!("{HEADER}pupil,010206001234,{decomposed},6A1,no,no,\n");
        assert_eq!(
            parse_csv(text.as_bytes()).unwrap().pupils[0].full_name,
            "Nguyễn"
        );
    }

    #[test]
    fn every_bad_row_is_reported_with_its_number_and_field() {
        let text = format!(
            "{HEADER}pupil,010206001234,Lò Văn A,6A1,yes,no,2026-08-20\npupil,12345,Lò Thị B,6A1,no,no,\npupil,010206001234,Giàng A Páo,6A1,no,no,\npupil,010206009999,Vàng Thị C,,maybe,no,\n"
        );
        let RosterError::Rows(problems) = parse_csv(text.as_bytes()).unwrap_err() else {
            panic!()
        };
        let found: Vec<(usize, &str)> =
            problems.iter().map(|p| (p.row, p.field.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (3, "personal_id"),
                (4, "personal_id"),
                (5, "face_consent"),
                (5, "class")
            ],
            "{problems:#?}"
        );
        assert!(problems[1].reason.contains("row 2"));
    }

    #[test]
    fn legacy_encodings_and_missing_columns_are_explained() {
        let mut bytes = HEADER.as_bytes().to_vec();
        bytes.extend_from_slice(b"pupil,010206001234,Nguy\xEAn,6A1,no,no,\n");
        let err = parse_csv(&bytes).unwrap_err();
        assert!(
            matches!(err, RosterError::Encoding(ref m) if m.starts_with("row 2")),
            "{err}"
        );
        let err = parse_csv(b"role,personal_id,full_name\n").unwrap_err();
        assert!(err.to_string().contains("`class`"), "{err}");
    }
}
