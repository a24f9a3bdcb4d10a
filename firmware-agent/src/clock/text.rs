//! Spans of time as people read them, in logs, records and the panel: one
//! formatter, so that "late by 2 min 5 s" reads the same wherever it is said.

use jiff::SignedDuration;

/// "2 min 5 s", "40 s", "350 ms"; over an hour, "1 h 5 min".
pub fn human(span: SignedDuration) -> String {
    let ms = span.as_millis();
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let secs = span.as_secs();
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_span_is_said_in_its_largest_units() {
        assert_eq!(human(SignedDuration::from_millis(350)), "350 ms");
        assert_eq!(human(SignedDuration::from_secs(40)), "40 s");
        assert_eq!(human(SignedDuration::from_secs(125)), "2 min 5 s");
        assert_eq!(human(SignedDuration::from_secs(3900)), "1 h 5 min");
    }
}
