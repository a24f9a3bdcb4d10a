//! Turns everything wrong with a config file into `PATH:LINE:COL: what is wrong`
//! messages, each with a hint, so IT staff can fix a file in one pass.
//!
//! # Design
//! serde stops at the first error. To find the next one, the offending entry is
//! blanked out with spaces (so every byte offset, and so every line and column,
//! stays true to the original file) and the file is deserialized again, until it
//! passes or an error cannot be attributed to an entry (a missing key). Rules that
//! serde cannot express are checked afterwards and located by their key path.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml_edit::{Document, Item, TableLike};

/// A problem with a position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// A problem known by the key path it concerns, before it is given a position.
#[derive(Debug, Clone)]
pub struct Unlocated {
    pub key: String,
    pub message: String,
    pub hint: String,
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {reason}\n  hint: check the path and that this user may read it", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{}", render(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems found, empty when the file could not be read at all.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Unreadable { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn render(path: &Path, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, problem) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "{}:{}:{}: {}",
            path.display(),
            problem.line,
            problem.column,
            problem.message
        ));
        if let Some(hint) = &problem.hint {
            out.push_str(&format!("\n  hint: {hint}"));
        }
    }
    out
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// How many entries may be blanked before giving up: a file this broken is better fixed from the top.
const MAX_PROBLEMS: usize = 50;

/// Deserializes `source`, collecting every problem serde reports.
pub fn deserialize<T: DeserializeOwned>(path: &Path, source: &str) -> Result<T, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    };
    let document = match Document::parse(source) {
        Ok(document) => document,
        Err(err) => {
            let offset = err.span().map_or(0, |span| span.start);
            let (line, column) = line_column(source, offset);
            let message = format!("not valid TOML: {}", err.message().trim());
            let hint = "check quotes, brackets and `=` on this line".to_owned();
            return Err(invalid(vec![Problem {
                line,
                column,
                message,
                hint: Some(hint),
            }]));
        }
    };
    let entries = entries(&document);
    let mut working = source.to_owned();
    let mut problems = Vec::new();
    let mut blanked_keys = Vec::new();
    loop {
        let err = match toml::from_str::<T>(&working) {
            Ok(value) if problems.is_empty() => return Ok(value),
            Ok(_) => return Err(invalid(sorted(problems))),
            Err(err) => err,
        };
        // A key blanked for a wrong value is then missing; its first problem says enough.
        if blanked_keys
            .iter()
            .any(|key| err.message().starts_with(&format!("missing field `{key}`")))
        {
            return Err(invalid(sorted(problems)));
        }
        let offset = err.span().map_or(0, |span| span.start);
        let (line, column) = line_column(source, offset);
        let (message, hint) = explain(err.message());
        problems.push(Problem {
            line,
            column,
            message,
            hint,
        });
        let blank = err
            .span()
            .and_then(|span| entries.iter().find(|entry| entry.covers(&span)));
        if let Some(entry) = blank {
            blanked_keys.push(entry.key.clone());
        }
        match blank {
            Some(entry)
                if problems.len() < MAX_PROBLEMS && !is_blank(&working[entry.blank.clone()]) =>
            {
                blank_out(&mut working, entry.blank.clone());
            }
            _ => return Err(invalid(sorted(problems))),
        }
    }
}

/// The file's text, or the line and column of its first byte that is not
/// UTF-8: a file saved by an editor in a legacy Vietnamese encoding
/// (Windows-1258, TCVN3/ABC, VNI) reads as TOML until its first accented letter.
pub fn utf8_text(path: &Path, bytes: Vec<u8>) -> Result<String, ConfigError> {
    String::from_utf8(bytes).map_err(|err| {
        let bytes = err.as_bytes();
        let offset = err.utf8_error().valid_up_to();
        let valid = std::str::from_utf8(&bytes[..offset]).unwrap_or_default();
        let (line, column) = line_column(valid, offset);
        let problem = Problem {
            line,
            column,
            message: format!("byte 0x{:02X} is not UTF-8 text", bytes[offset]),
            hint: Some(
                "save the file as UTF-8 (in the editor: Save As, Encoding: UTF-8); a legacy Vietnamese encoding such as Windows-1258, TCVN3 or VNI is not read"
                    .to_owned(),
            ),
        };
        ConfigError::Invalid { path: path.to_owned(), problems: vec![problem] }
    })
}

fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

/// Gives each semantic problem the position of its key (or of its table when the key is absent).
pub fn located(path: &Path, source: &str, problems: Vec<Unlocated>) -> ConfigError {
    let document = Document::parse(source).ok();
    let problems = problems
        .into_iter()
        .map(|problem| {
            let offset = document
                .as_ref()
                .and_then(|doc| key_offset(doc, &problem.key))
                .unwrap_or(0);
            let (line, column) = line_column(source, offset);
            Problem {
                line,
                column,
                message: format!("{}: {}", problem.key, problem.message),
                hint: Some(problem.hint),
            }
        })
        .collect();
    ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    }
}

/// An entry of the file: the bytes to blank when serde rejects it, and the bytes serde may point at.
struct Entry {
    key: String,
    blank: Range<usize>,
    reported: Range<usize>,
}

impl Entry {
    fn covers(&self, span: &Range<usize>) -> bool {
        self.reported.start <= span.start
            && span.start < self.reported.end.max(self.reported.start + 1)
    }
}

/// The innermost entries first, so an error inside a table blanks the key, not the table.
fn entries<S: AsRef<str>>(document: &Document<S>) -> Vec<Entry> {
    fn walk(table: &dyn TableLike, out: &mut Vec<Entry>) {
        for (key, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(key) else {
                continue;
            };
            let key_span = key.span();
            match item {
                Item::Table(sub) => {
                    walk(sub, out);
                    if let Some(header) = sub.span() {
                        // A whole unknown section: blank its header and every entry under it.
                        let end = out
                            .iter()
                            .map(|entry| entry.blank.end)
                            .chain([header.end])
                            .max()
                            .unwrap_or(header.end);
                        out.push(Entry {
                            key: key.get().to_owned(),
                            blank: header.start..end,
                            reported: key_span.unwrap_or(header),
                        });
                    }
                }
                Item::ArrayOfTables(array) => {
                    for sub in array.iter() {
                        walk(sub, out);
                    }
                    if let (Some(key_span), Some(span)) = (key_span, item.span()) {
                        out.push(Entry {
                            key: key.get().to_owned(),
                            blank: span.clone(),
                            reported: key_span.start..span.end,
                        });
                    }
                }
                Item::Value(value) => {
                    if let Some(inline) = value.as_inline_table() {
                        walk(inline, out);
                    }
                    if let (Some(key_span), Some(value_span)) = (key_span, value.span()) {
                        let range = key_span.start..value_span.end;
                        out.push(Entry {
                            key: key.get().to_owned(),
                            blank: range.clone(),
                            reported: range,
                        });
                    }
                }
                Item::None => {}
            }
        }
    }
    let mut out = Vec::new();
    if let Some(root) = document.as_item().as_table_like() {
        walk(root, &mut out);
    }
    out
}

/// Where the key path `path` is written; numeric parts index arrays (`schedule.shifts.0.periods.2.end`).
/// A part that is absent leaves the position of the nearest enclosing entry.
fn key_offset<S: AsRef<str>>(document: &Document<S>, path: &str) -> Option<usize> {
    enum Node<'a> {
        Table(&'a dyn TableLike),
        Tables(&'a toml_edit::ArrayOfTables),
        Array(&'a toml_edit::Array),
        Leaf,
    }
    fn node(item: &Item) -> Node<'_> {
        match item {
            Item::ArrayOfTables(tables) => Node::Tables(tables),
            Item::Value(toml_edit::Value::Array(array)) => Node::Array(array),
            other => other.as_table_like().map_or(Node::Leaf, Node::Table),
        }
    }
    fn value_node(value: &toml_edit::Value) -> Node<'_> {
        match value {
            toml_edit::Value::InlineTable(table) => Node::Table(table),
            toml_edit::Value::Array(array) => Node::Array(array),
            _ => Node::Leaf,
        }
    }
    let mut current = node(document.as_item());
    let mut best = None;
    for part in path.split('.') {
        let index = part.parse::<usize>().ok();
        current = match (current, index) {
            (Node::Table(table), _) => {
                let Some((key, item)) = table.get_key_value(part) else {
                    break;
                };
                best = key.span().map(|span| span.start).or(best);
                node(item)
            }
            (Node::Tables(tables), Some(i)) => {
                let Some(table) = tables.get(i) else { break };
                best = table.span().map(|span| span.start).or(best);
                Node::Table(table)
            }
            (Node::Array(array), Some(i)) => {
                let Some(value) = array.get(i) else { break };
                best = value.span().map(|span| span.start).or(best);
                value_node(value)
            }
            _ => break,
        };
    }
    best
}

fn blank_out(text: &mut String, range: Range<usize>) {
    let blanked: String = text[range.clone()]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    // Multi-byte characters become several spaces so every later offset is kept.
    let blanked: String = blanked
        .chars()
        .zip(text[range.clone()].chars())
        .flat_map(|(b, orig)| std::iter::repeat_n(b, orig.len_utf8()))
        .collect();
    text.replace_range(range, &blanked);
}

fn is_blank(text: &str) -> bool {
    text.chars().all(char::is_whitespace)
}

/// One-based line and column (in characters) of a byte offset.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Rewords serde's message where a hint helps; keeps it as it is otherwise.
fn explain(message: &str) -> (String, Option<String>) {
    let message = message.trim().to_owned();
    let hint = if let Some(rest) = message.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
        let closest = expected
            .iter()
            .map(|candidate| (strsim::jaro_winkler(unknown, candidate), *candidate))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        Some(match closest {
            Some((_, candidate)) => {
                format!("did you mean `{candidate}`? see config/agent.example.toml")
            }
            None => "remove it; config/agent.example.toml lists every key".to_owned(),
        })
    } else if message.starts_with("missing field") {
        Some("add it; config/agent.example.toml shows every key with its meaning".to_owned())
    } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
        Some("config/agent.example.toml shows the expected form of each value".to_owned())
    } else if [
        "as hour",
        "as minute",
        "as second",
        "parse civil time",
        "parse time",
    ]
    .iter()
    .any(|part| message.contains(part))
    {
        Some("write times as \"HH:MM\" (24-hour clock), such as \"07:30\" or \"13:45\"".to_owned())
    } else if message.contains("invalid socket address") {
        Some("write an address and port, such as \"0.0.0.0:8080\" or \"127.0.0.1:8080\"".to_owned())
    } else {
        None
    };
    (message, hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn problems(source: &str) -> Vec<Problem> {
        match Config::parse(Path::new("room.toml"), source) {
            Ok(_) => Vec::new(),
            Err(err) => err.problems().to_vec(),
        }
    }

    #[test]
    fn reports_every_unknown_key_and_wrong_type_with_position() {
        let source = "[room]\nschool_code = \"LC01\"\nroom_id = \"6A1\"\nnmae = \"Lớp 6A1\"\n\n[http]\nlisten = 8080\n\n[log]\nfiltr = \"debug\"\n";
        let found = problems(source);
        let summary: Vec<(usize, usize)> = found.iter().map(|p| (p.line, p.column)).collect();
        assert_eq!(summary, vec![(4, 1), (7, 10), (10, 1)], "{found:#?}");
        assert!(found[0].message.contains("unknown field `nmae`"));
        assert_eq!(
            found[0].hint.as_deref(),
            Some("did you mean `name`? see config/agent.example.toml")
        );
        assert!(
            found[1].message.contains("invalid type"),
            "{}",
            found[1].message
        );
        assert!(found[2].hint.as_deref().unwrap().contains("`filter`"));
    }

    #[test]
    fn reports_an_unknown_section() {
        let source = "[room]\nschool_code = \"LC01\"\nroom_id = \"6A1\"\n\n[camera]\ndevice = 0\n\n[http]\nlisten = \"x\"\n";
        let found = problems(source);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!((found[0].line, found[1].line), (5, 9));
    }

    #[test]
    fn syntax_error_has_its_position() {
        let found = problems("[room]\nschool_code = \"LC01\nroom_id = \"6A1\"\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, 2);
        assert!(found[0].message.starts_with("not valid TOML"));
    }

    #[test]
    fn missing_required_key_is_reported() {
        let found = problems("[room]\nschool_code = \"LC01\"\n");
        assert_eq!(found.len(), 1);
        assert!(
            found[0].message.contains("missing field `room_id`"),
            "{:?}",
            found[0]
        );
    }

    #[test]
    fn a_file_not_in_utf8_is_located_at_its_first_invalid_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("room.toml");
        // "Lớp 6A1" saved in Windows-1258: `ớ` is `ơ` (0xF5) and a combining acute (0xEC).
        std::fs::write(
            &path,
            b"[room]\nschool_code = \"LC01\"\nroom_id = \"6A1\"\nname = \"L\xF5\xECp 6A1\"\n",
        )
        .unwrap();
        let text = Config::load(&path).unwrap_err().to_string();
        assert!(
            text.starts_with(&format!(
                "{}:4:10: byte 0xF5 is not UTF-8 text",
                path.display()
            )),
            "{text}"
        );
        assert!(text.contains("hint: save the file as UTF-8"), "{text}");

        std::fs::write(
            &path,
            "name = \"Lớp\"\n# Đ"
                .bytes()
                .chain([0xFF])
                .collect::<Vec<u8>>(),
        )
        .unwrap();
        let err = Config::load(&path).unwrap_err();
        assert_eq!(
            err.problems()
                .iter()
                .map(|p| (p.line, p.column))
                .collect::<Vec<_>>(),
            [(2, 4)],
            "columns count characters: {err}"
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(line_column("name = \"Lớp\"\nx", 14), (1, 13));
        assert_eq!(line_column("a\nb", 2), (2, 1));
    }
}
