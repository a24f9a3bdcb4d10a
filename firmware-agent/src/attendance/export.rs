//! The roll call for the school office: a day's or a month's marks as CSV or
//! as an Excel workbook, with Vietnamese headings and labels, times in the
//! room's time zone.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::store::attendance::MarkRow;

/// A period asked for that is neither a day nor a month.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is neither a day (YYYY-MM-DD) nor a month (YYYY-MM)")]
pub struct NotAPeriod(pub String);

/// What to export: one day, or one month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day(Date),
    Month { year: i16, month: i8 },
}

impl Period {
    /// Parses `YYYY-MM-DD` (a day) or `YYYY-MM` (a month).
    pub fn parse(text: &str) -> Result<Period, NotAPeriod> {
        if let Ok(date) = text.parse::<Date>() {
            return Ok(Period::Day(date));
        }
        let invalid = || NotAPeriod(text.to_owned());
        let (year, month) = text.split_once('-').ok_or_else(invalid)?;
        let (year, month): (i16, i8) = (
            year.parse().map_err(|_| invalid())?,
            month.parse().map_err(|_| invalid())?,
        );
        Date::new(year, month, 1).map_err(|_| invalid())?;
        Ok(Period::Month { year, month })
    }

    /// The instants it covers in `zone`: from its first midnight to the next period's.
    pub fn bounds(self, zone: &TimeZone) -> Result<(Timestamp, Timestamp), jiff::Error> {
        let (first, next) = match self {
            Period::Day(date) => (date, date.checked_add(1.day())?),
            Period::Month { year, month } => {
                let first = Date::new(year, month, 1)?;
                (first, first.checked_add(1.month())?)
            }
        };
        Ok((
            first.to_zoned(zone.clone())?.timestamp(),
            next.to_zoned(zone.clone())?.timestamp(),
        ))
    }

    /// A file name stem such as `diem-danh-2026-09`.
    pub fn file_stem(self) -> String {
        match self {
            Period::Day(date) => format!("diem-danh-{date}"),
            Period::Month { year, month } => format!("diem-danh-{year:04}-{month:02}"),
        }
    }
}

const HEADINGS: [&str; 8] = [
    "Ngày",
    "Buổi học",
    "Lớp",
    "Mã định danh",
    "Họ và tên",
    "Trạng thái",
    "Nguồn",
    "Giờ ghi nhận",
];

fn status_label(status: &str) -> &'static str {
    match status {
        "present" => "Có mặt",
        "late" => "Đi muộn",
        "absent" => "Vắng",
        "excused" => "Có phép",
        _ => "?",
    }
}

fn source_label(source: &str) -> &'static str {
    match source {
        "face" => "Camera",
        "teacher" => "Giáo viên",
        "window_closed" => "Hết giờ điểm danh",
        _ => "?",
    }
}

fn cells(row: &MarkRow, zone: &TimeZone) -> [String; 8] {
    let local = row.marked_at.to_zoned(zone.clone());
    [
        local.date().to_string(),
        row.lesson_id.clone(),
        row.class_name.clone(),
        row.personal_id.clone(),
        row.full_name.clone(),
        status_label(&row.status).to_owned(),
        source_label(&row.source).to_owned(),
        local.strftime("%H:%M:%S").to_string(),
    ]
}

/// CSV, UTF-8 with a byte-order mark so that Excel shows the diacritics.
pub fn csv(rows: &[MarkRow], zone: &TimeZone) -> Vec<u8> {
    let mut out = b"\xEF\xBB\xBF".to_vec();
    {
        let mut writer = csv::Writer::from_writer(&mut out);
        writer.write_record(HEADINGS).expect("writing to memory");
        for row in rows {
            writer
                .write_record(cells(row, zone))
                .expect("writing to memory");
        }
        writer.flush().expect("writing to memory");
    }
    out
}

/// An Excel workbook with one sheet, headings in bold, personal IDs kept as text.
pub fn xlsx(rows: &[MarkRow], zone: &TimeZone) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet().set_name("Điểm danh")?;
    let bold = Format::new().set_bold();
    for (column, heading) in HEADINGS.iter().enumerate() {
        sheet.write_string_with_format(0, column as u16, *heading, &bold)?;
    }
    for (index, row) in rows.iter().enumerate() {
        for (column, cell) in cells(row, zone).iter().enumerate() {
            sheet.write_string(index as u32 + 1, column as u16, cell)?;
        }
    }
    sheet.autofit();
    workbook.save_to_buffer()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str) -> MarkRow {
        MarkRow {
            lesson_id: "2026-09-07/morning/0700".into(),
            class_name: "6A1".into(),
            personal_id: "001206001000".into(),
            full_name: "Hoàng Thị Mai".into(),
            status: status.into(),
            source: "teacher".into(),
            marked_at: "2026-09-07T00:05:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn csv_has_vietnamese_labels_and_local_times() {
        let zone = TimeZone::get("Asia/Ho_Chi_Minh").unwrap();
        let text = String::from_utf8(csv(&[row("excused")], &zone)).unwrap();
        assert!(text.starts_with('\u{feff}'));
        assert!(text.contains("2026-09-07,2026-09-07/morning/0700,6A1,001206001000,Hoàng Thị Mai,Có phép,Giáo viên,07:05:00"), "{text}");
    }

    #[test]
    fn xlsx_is_a_workbook_holding_the_rows() {
        let zone = TimeZone::get("Asia/Ho_Chi_Minh").unwrap();
        let bytes = xlsx(&[row("present")], &zone).unwrap();
        assert!(
            bytes.starts_with(b"PK\x03\x04"),
            "an xlsx file is a zip archive"
        );
        assert!(bytes.len() > 1000);
    }

    #[test]
    fn periods_parse_and_bound_in_the_room_zone() {
        let zone = TimeZone::get("Asia/Ho_Chi_Minh").unwrap();
        let (from, to) = Period::parse("2026-09").unwrap().bounds(&zone).unwrap();
        assert_eq!(from.to_string(), "2026-08-31T17:00:00Z");
        assert_eq!(to.to_string(), "2026-09-30T17:00:00Z");
        assert_eq!(
            Period::parse("2026-09-07").unwrap(),
            Period::Day("2026-09-07".parse().unwrap())
        );
        assert_eq!(Period::parse("tháng 9"), Err(NotAPeriod("tháng 9".into())));
        let err = Period::parse("2026-13").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`2026-13` is neither a day (YYYY-MM-DD) nor a month (YYYY-MM)"
        );
    }
}
