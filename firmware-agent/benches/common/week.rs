//! A busy week of a classroom offline, for the benches that carry it by USB
//! (the agent's `usb_week` and the province hub's `usb_import`, which includes
//! this file by `#[path]`): 40 pupils, 10 periods a day (two shifts of five),
//! 6 school days. Each period has a roll-call mark per pupil (2 400), 8
//! questions answered by every pupil (19 200) and 10 commands to the tablets
//! (600); each day 20 bells and 4 light switches (144). 22 344 events.

use firmware_agent::proto;
use firmware_agent::store::Store;
use firmware_agent::store::outbox::NewEvent;

const PUPILS: u32 = 40;
const PERIODS_A_DAY: u32 = 10;
const DAYS: u32 = 6;
const QUESTIONS_A_PERIOD: u32 = 8;
const COMMANDS_A_PERIOD: u32 = 10;
const ACTUATIONS_A_DAY: u32 = 24;

/// Appends the week's events, one transaction a period as the room commits them.
pub fn record_a_busy_week(store: &Store) -> u64 {
    let now = jiff::Timestamp::now();
    let mut count = 0;
    for day in 0..DAYS {
        for period in 0..PERIODS_A_DAY {
            let lesson = format!("2026-09-{:02}/p{period}", 7 + day);
            let mut batch = Vec::new();
            for pupil in 0..PUPILS {
                let personal_id = format!("{:012}", 10_206_000_000u64 + u64::from(pupil));
                batch.push(NewEvent::new(
                    now,
                    proto::AttendanceMark {
                        session_id: format!("0192f0c4-1b2a-7c3d-8e4f-{day:02}{period:02}00000000"),
                        lesson_id: lesson.clone(),
                        personal_id: personal_id.clone(),
                        status: proto::MarkStatus::Present as i32,
                        source: proto::MarkSource::Face as i32,
                        best_similarity: 0.71,
                        ..Default::default()
                    },
                ));
                for question in 0..QUESTIONS_A_PERIOD {
                    batch.push(NewEvent::new(
                        now,
                        proto::QuestionAnswer {
                            lesson_id: lesson.clone(),
                            question_id: format!("q{question}"),
                            tablet_id: format!("0192f0c4-0000-7000-8000-0000000000{pupil:02}"),
                            pupil_personal_id: personal_id.clone(),
                            choices: vec!["B".into()],
                            graded: true,
                            correct: question % 3 != 0,
                            time_to_answer_ms: 4_000 + pupil * 97,
                            ..Default::default()
                        },
                    ));
                }
            }
            for command in 0..COMMANDS_A_PERIOD {
                batch.push(NewEvent::new(
                    now,
                    proto::LessonRecord {
                        lesson_id: lesson.clone(),
                        command_id: format!("c{command}"),
                        command: "question.start".into(),
                        arguments_json:
                            r#"{"question_id":"q1","kind":"choice","choices":["A","B","C","D"]}"#
                                .into(),
                        acknowledged: 39,
                        connected: 40,
                        ..Default::default()
                    },
                ));
            }
            if period == 0 {
                for actuation in 0..ACTUATIONS_A_DAY {
                    batch.push(NewEvent::new(
                        now,
                        proto::Actuation {
                            device: if actuation < 20 {
                                "bell"
                            } else {
                                "lights-front"
                            }
                            .into(),
                            command: "ring:start".into(),
                            ..Default::default()
                        },
                    ));
                }
            }
            count += batch.len() as u64;
            store.append_batch(batch).unwrap();
        }
    }
    count
}
