//! A lesson's summary for the teacher and the school office: every pupil of
//! the class with the roll call's mark for the lesson, their answer to each
//! question, how many they answered and got right, and the time they took;
//! as an Excel workbook or as CSV.
//!
//! # Design
//! - One row a pupil, by name, whether they answered or not: an absent pupil
//!   shows as absent with no answers, not as a missing line.
//! - The score counts graded questions only (`2/3`); an ungraded question's
//!   answers are shown but score nothing.
//! - CSV is UTF-8 with a byte-order mark so that Excel shows the diacritics;
//!   the workbook keeps personal IDs as text and adds a sheet of the questions.
//! - Columns come from [`columns`] in one place, so a column (the pupils'
//!   hand-ins, say) is one more entry there.

use crate::store::lessons::{LessonRows, PupilLine};

/// The roll call's mark as the office reads it.
fn attendance_label(status: Option<&str>) -> &'static str {
    match status {
        Some("present") => "Có mặt",
        Some("late") => "Đi muộn",
        Some("absent") => "Vắng",
        Some("excused") => "Có phép",
        Some(_) => "?",
        None => "Chưa điểm danh",
    }
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "single_choice" => "Một lựa chọn",
        "multiple_choice" => "Nhiều lựa chọn",
        "true_false" => "Đúng/Sai",
        "short_answer" => "Trả lời ngắn",
        _ => "?",
    }
}

/// The headings and, for each pupil, the cells, in the same order.
pub fn columns(rows: &LessonRows) -> (Vec<String>, Vec<Vec<String>>) {
    let mut headings: Vec<String> = ["STT", "Mã định danh", "Họ và tên", "Điểm danh"]
        .map(String::from)
        .to_vec();
    headings.extend((1..=rows.questions.len()).map(|n| format!("Câu {n}")));
    headings.extend(
        [
            "Số câu đã trả lời",
            "Số câu đúng",
            "Điểm",
            "Thời gian trả lời (giây)",
            "Bài đã nộp",
        ]
        .map(String::from),
    );
    let graded = rows.questions.iter().filter(|q| q.graded).count();
    let lines = rows
        .pupils
        .iter()
        .enumerate()
        .map(|(index, pupil)| pupil_cells(rows, pupil, index + 1, graded))
        .collect();
    (headings, lines)
}

fn pupil_cells(rows: &LessonRows, pupil: &PupilLine, number: usize, graded: usize) -> Vec<String> {
    let mut cells = vec![
        number.to_string(),
        pupil.personal_id.clone(),
        pupil.full_name.clone(),
        attendance_label(pupil.attendance.as_deref()).to_owned(),
    ];
    cells.extend(rows.questions.iter().map(
        |question| match pupil.answers.get(&question.question_id) {
            None => String::new(),
            Some(answer) => {
                let mark = match answer.correct {
                    Some(true) => " ✓",
                    Some(false) => " ✗",
                    None => "",
                };
                let shown = match answer.answer.trim() {
                    "true" if question.question_kind == "true_false" => "Đúng",
                    "false" if question.question_kind == "true_false" => "Sai",
                    other => other,
                };
                format!("{shown}{mark}")
            }
        },
    ));
    cells.push(pupil.answered().to_string());
    cells.push(pupil.correct().to_string());
    cells.push(format!("{}/{graded}", pupil.correct()));
    cells.push(format!("{:.1}", pupil.time_taken_ms() as f64 / 1000.0));
    cells.push(pupil.hand_ins.to_string());
    cells
}

/// CSV, UTF-8 with a byte-order mark.
pub fn csv(rows: &LessonRows) -> Vec<u8> {
    let (headings, lines) = columns(rows);
    let mut out = b"\xEF\xBB\xBF".to_vec();
    {
        let mut writer = csv::Writer::from_writer(&mut out);
        writer.write_record(&headings).expect("writing to memory");
        for line in &lines {
            writer.write_record(line).expect("writing to memory");
        }
        writer.flush().expect("writing to memory");
    }
    out
}

/// An Excel workbook: the pupils' sheet, then the questions' sheet.
pub fn xlsx(rows: &LessonRows) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let (headings, lines) = columns(rows);
    let bold = Format::new().set_bold();
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet().set_name("Tổng kết tiết học")?;
    sheet.write_string_with_format(0, 0, format!("Tiết học: {}", rows.lesson_id), &bold)?;
    for (column, heading) in headings.iter().enumerate() {
        sheet.write_string_with_format(1, column as u16, heading, &bold)?;
    }
    for (index, line) in lines.iter().enumerate() {
        for (column, cell) in line.iter().enumerate() {
            sheet.write_string(index as u32 + 2, column as u16, cell)?;
        }
    }
    sheet.autofit();
    let questions = workbook.add_worksheet().set_name("Câu hỏi")?;
    for (column, heading) in ["Câu", "Loại", "Nội dung", "Có đáp án"].iter().enumerate() {
        questions.write_string_with_format(0, column as u16, *heading, &bold)?;
    }
    for (index, question) in rows.questions.iter().enumerate() {
        let row = index as u32 + 1;
        questions.write_string(row, 0, format!("Câu {}", index + 1))?;
        questions.write_string(row, 1, kind_label(&question.question_kind))?;
        questions.write_string(row, 2, &question.prompt)?;
        questions.write_string(row, 3, if question.graded { "Có" } else { "Không" })?;
    }
    questions.autofit();
    workbook.save_to_buffer()
}

/// A file name stem such as `tong-ket-2026-09-07-Sang-1`: the lesson id in
/// plain ASCII (any browser and file system takes it), separators made dashes.
pub fn file_stem(lesson_id: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let safe: String = lesson_id
        .nfd()
        .filter_map(|c| match c {
            'đ' => Some('d'),
            'Đ' => Some('D'),
            c if c.is_ascii_alphanumeric() || c == '-' => Some(c),
            c if c.is_ascii() => Some('-'),
            _ => None,
        })
        .collect();
    format!("tong-ket-{safe}")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::store::lessons::{AskedQuestion, PupilAnswer};

    fn rows() -> LessonRows {
        let question = |id: &str, kind: &str| AskedQuestion {
            lesson_id: "2026-09-07/Sáng/1".into(),
            question_id: id.into(),
            question_kind: kind.into(),
            prompt: "?".into(),
            graded: true,
            asked_at: jiff::Timestamp::UNIX_EPOCH,
        };
        let answer = |given: &str, correct: bool| PupilAnswer {
            answer: given.into(),
            correct: Some(correct),
            time_to_answer_ms: 1500,
        };
        LessonRows {
            lesson_id: "2026-09-07/Sáng/1".into(),
            questions: vec![question("q1", "true_false"), question("q2", "short_answer")],
            pupils: vec![
                PupilLine {
                    personal_id: "010206000001".into(),
                    full_name: "Nguyễn Văn An".into(),
                    attendance: Some("present".into()),
                    answers: HashMap::from([
                        ("q1".into(), answer("true", true)),
                        ("q2".into(), answer("Hà Nội", true)),
                    ]),
                    hand_ins: 2,
                },
                PupilLine {
                    personal_id: "010206000002".into(),
                    full_name: "Lò Thị Bình".into(),
                    attendance: Some("absent".into()),
                    answers: HashMap::new(),
                    hand_ins: 0,
                },
            ],
            unnamed_answers: 0,
        }
    }

    #[test]
    fn csv_names_each_pupil_with_attendance_answers_score_and_hand_ins() {
        let text = String::from_utf8(csv(&rows())).unwrap();
        let text = text.strip_prefix('\u{feff}').expect("a byte-order mark");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "STT,Mã định danh,Họ và tên,Điểm danh,Câu 1,Câu 2,Số câu đã trả lời,Số câu đúng,Điểm,Thời gian trả lời (giây),Bài đã nộp"
        );
        assert_eq!(
            lines[1],
            "1,010206000001,Nguyễn Văn An,Có mặt,Đúng ✓,Hà Nội ✓,2,2,2/2,3.0,2"
        );
        assert_eq!(lines[2], "2,010206000002,Lò Thị Bình,Vắng,,,0,0,0/2,0.0,0");
    }

    #[test]
    fn the_file_stem_keeps_the_lesson_readable() {
        assert_eq!(file_stem("2026-09-07/Sáng/1"), "tong-ket-2026-09-07-Sang-1");
        assert_eq!(file_stem("Đêm/1"), "tong-ket-Dem-1");
    }
}
