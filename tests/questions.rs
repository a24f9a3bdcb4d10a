//! Questions as teachers use them, end to end: the real agent on a simulated
//! Monday morning with its roll call, the panel in headless Chromium driven by
//! touch, one browser tablet (a Chromium page) and protocol-level tablets for
//! the rest of the class. A timed multiple-choice question (its countdown on
//! the panel and the tablet, a late answer refused once the agent's clock says
//! time is up), a true/false and a short answer in Vietnamese, a prepared set
//! of three run one after another, the results per pupil on the panel, and the
//! lesson's summary read back from its workbook and its CSV.

#[path = "common/browser.rs"]
mod browser;
#[path = "common/classroom.rs"]
mod classroom;
mod common;
#[path = "common/lesson.rs"]
mod lesson;

use std::net::SocketAddr;

use classroom::{FIRST_PERIOD, MONDAY_0659, MONDAY_0700, RULES, faces, room_without_roster};
use common::{Room, api_call as call};
use lesson::{
    FIRST_LESSON as LESSON, PATIENCE, ProtocolTablet, browser_tablet, choose_pupil, import_pupils,
    open_pairing, open_panel, pair, screenshots,
};
use serde_json::json;

const SET: &str = r#"title = "Ôn tập đầu giờ"

[[question]]
kind = "single_choice"
prompt = "5 × 6 = ?"
choices = ["11", "30", "56"]
correct = ["B"]

[[question]]
kind = "true_false"
prompt = "Sông Hồng chảy qua Lào Cai."
correct = true

[[question]]
kind = "short_answer"
prompt = "Đỉnh núi cao nhất Việt Nam?"
accepted = ["Phan Xi Păng", "Fansipan"]
"#;

/// The class 6A1 with a Vietnamese roster, a roll call over a camera that sees
/// only a stranger, and a question set (and a broken one) in the content store.
fn classroom() -> (Room, tempfile::TempDir) {
    let frames = tempfile::tempdir().unwrap();
    std::fs::copy(
        faces().join("probe/stranger_a.png"),
        frames.path().join("frame000.png"),
    )
    .unwrap();
    let source = format!(
        "kind = \"folder\"\npath = \"{}\"\nrate = 1.0\nrepeat = true\n",
        frames.path().display()
    );
    let room = room_without_roster(&source, RULES, FIRST_PERIOD);
    import_pupils(&room, 4);
    let content = room.data_dir().join("content/on-tap");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("dau-gio.quiz.toml"), SET).unwrap();
    std::fs::write(
        content.join("loi.quiz.toml"),
        SET.replace("correct = [\"B\"]", "correct = [\"D\"]"),
    )
    .unwrap();
    (room, frames)
}

/// A protocol tablet paired with `code` whose pupil chose `pupil` from the roster.
async fn protocol_tablet(
    address: SocketAddr,
    code: &str,
    desk: &str,
    pupil: &str,
) -> ProtocolTablet {
    let (_, token) = pair(address, code, desk).await;
    choose_pupil(address, &token, pupil).await;
    ProtocolTablet::connect(address, &token, 0).await.0
}

/// Sets a field of the panel's page as the on-screen keyboard would leave it.
async fn fill(page: &mut browser::Chromium, selector: &str, text: &str) {
    let (selector, text) = (
        serde_json::to_string(selector).unwrap(),
        serde_json::to_string(text).unwrap(),
    );
    page.evaluate(&format!(
        "(() => {{ const e = document.querySelector({selector}); e.value = {text}; e.dispatchEvent(new Event('input', {{ bubbles: true }})); return true; }})()"
    ))
    .await;
}

/// How many times the panel's page asked the agent for the question's results.
async fn results_asked_for(panel: &mut browser::Chromium) -> u64 {
    panel
        .evaluate("performance.getEntriesByType('resource').filter(e => new URL(e.name).pathname === '/api/lesson/quiz').length")
        .await
        .as_u64()
        .expect("a count")
}

/// The panel's row of the pupil `name` in the per-pupil table: [answered, answer, right].
async fn pupil_row(panel: &mut browser::Chromium, name: &str) -> Vec<String> {
    let cells = panel
        .evaluate(&format!(
            "[...document.querySelectorAll('#quiz-pupils tbody tr')].filter(r => r.cells[0].textContent === '{name}').map(r => [...r.cells].slice(1, 4).map(c => c.textContent))[0]"
        ))
        .await;
    serde_json::from_value(cells).unwrap()
}

fn download(address: SocketAddr, path: &str) -> Vec<u8> {
    let mut response = ureq::get(&format!("http://{address}{path}"))
        .call()
        .unwrap();
    response.body_mut().read_to_vec().unwrap()
}

/// The first sheet of a workbook, as text cells.
fn sheet_rows(bytes: Vec<u8>) -> Vec<Vec<String>> {
    use calamine::{Reader, Xlsx};
    let mut workbook: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
    let range = workbook.worksheet_range("Tổng kết tiết học").unwrap();
    range
        .rows()
        .map(|row| row.iter().map(|cell| cell.to_string()).collect())
        .collect()
}

/// The summary's line of the pupil `name`, by its headings.
fn line_of<'a>(rows: &'a [Vec<String>], headings: &[String], name: &str) -> Vec<(&'a str, String)> {
    let row = rows
        .iter()
        .find(|row| row.get(2).is_some_and(|cell| cell == name))
        .unwrap_or_else(|| panic!("{name} has a line: {rows:?}"));
    row.iter()
        .zip(headings)
        .map(|(cell, heading)| (cell.as_str(), heading.clone()))
        .collect()
}

fn cell<'a>(line: &'a [(&'a str, String)], heading: &str) -> &'a str {
    line.iter()
        .find(|(_, h)| h == heading)
        .map(|(cell, _)| *cell)
        .unwrap_or_else(|| panic!("no column {heading}: {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lesson_of_questions_from_the_panel_to_the_summary() {
    let (room, _frames) = classroom();
    let address = room.http;
    let mut agent = room.start_at(MONDAY_0659);
    agent.advance_to(MONDAY_0700);
    agent.wait_for_log("roll call opened", PATIENCE);
    // The teacher marks An present and Bình late; the others stay unseen.
    for (id, status) in [("010206000001", "PRESENT"), ("010206000002", "LATE")] {
        let (code, reply) = call(
            address,
            "POST",
            "/api/attendance/correct",
            Some(json!({ "personal_id": id, "status": status, "reason": "Có mặt trong lớp" })),
        )
        .await;
        assert_eq!(code, 200, "{reply}");
    }
    agent.advance("16m");
    agent.wait_for_log("roll call closed", PATIENCE);

    let mut panel = open_panel(address, 1920, 1080).await;
    // Every request the page makes is kept, to show it never asks for the results.
    panel
        .evaluate("performance.setResourceTimingBufferSize(100000); true")
        .await;
    let code = open_pairing(address).await;
    let mut an = browser_tablet(address, &code, Some("Bàn 1"), Some("Nguyễn Văn An")).await;
    let mut binh = protocol_tablet(address, &code, "Bàn 2", "Lò Thị Bình").await;
    let mut cuong = protocol_tablet(address, &code, "Bàn 3", "Phạm Văn Cường").await;
    let mut dung = protocol_tablet(address, &code, "Bàn 4", "Hà Thị Dung").await;

    // A timed multiple-choice question, written and given by touch.
    panel.tap("[data-view=questions]").await;
    assert_eq!(
        panel
            .evaluate("document.querySelector('[data-kind=multiple_choice]').textContent")
            .await,
        "Nhiều lựa chọn"
    );
    panel.tap("[data-kind=multiple_choice]").await;
    fill(&mut panel, "#quiz-prompt", "Những số nào là số nguyên tố?").await;
    for (id, text) in [("A", "2"), ("B", "4"), ("C", "5"), ("D", "9")] {
        fill(&mut panel, &format!("#quiz-choice-{id}"), text).await;
    }
    panel.tap("[data-correct=A]").await;
    panel.tap("[data-correct=C]").await;
    panel.tap("[data-limit='15']").await;
    panel.tap("#quiz-start").await;
    let asked = binh.command_of("question_start").await;
    assert_eq!(
        (&asked["question_kind"], &asked["time_limit_s"]),
        (&json!("multiple_choice"), &json!(15))
    );
    assert_eq!(
        asked.get("correct"),
        None,
        "the answers never reach tablets"
    );
    cuong.command_of("question_start").await;
    dung.command_of("question_start").await;
    an.wait_for("document.getElementById('time-left').textContent.startsWith('⏱ Còn ')")
        .await;
    panel
        .wait_for(
            "(document.getElementById('quiz-countdown') || {}).textContent?.startsWith('⏱ Còn ')",
        )
        .await;
    assert_eq!(
        binh.answer(&asked, json!({ "choices": ["C", "A"] })).await["type"],
        "answer_received"
    );
    assert_eq!(
        cuong.answer(&asked, json!({ "choices": ["A"] })).await["type"],
        "answer_received"
    );
    an.evaluate("for (const id of ['A', 'C']) document.querySelector(`#choices .choice[data-id=\"${id}\"]`).click(); document.getElementById('send-answer').click(); true")
        .await;
    an.wait_for("document.getElementById('answer-state').className === 'sent'")
        .await;
    panel
        .wait_for("document.querySelectorAll('#quiz-pupils tr.answered').length === 3")
        .await;
    assert_eq!(
        pupil_row(&mut panel, "Lò Thị Bình").await,
        ["Có", "C, A", "✓"]
    );
    assert_eq!(
        pupil_row(&mut panel, "Phạm Văn Cường").await,
        ["Có", "A", "✗"]
    );
    assert_eq!(pupil_row(&mut panel, "Nguyễn Văn An").await[2], "✓");
    assert_eq!(pupil_row(&mut panel, "Hà Thị Dung").await[0], "Chưa");
    assert_eq!(
        results_asked_for(&mut panel).await,
        0,
        "the answers reach the panel on its feed, never by asking"
    );
    // A panel that (re)connects now shows the answers so far at once.
    let mut another =
        browser::Chromium::open_sized(&format!("http://{address}/panel/"), 1280, 800).await;
    another
        .wait_for("document.querySelectorAll('#quiz-pupils tr.answered').length === 3")
        .await;
    assert_eq!(
        pupil_row(&mut another, "Lò Thị Bình").await,
        ["Có", "C, A", "✓"]
    );
    drop(another);
    screenshots_of_step(&mut panel, &mut an, "timed").await;

    // The agent's clock says time is up: the tablets are told, and Dung's answer is refused.
    // (Within the heartbeat timeout: a protocol tablet here sends no pings.)
    agent.advance("16s");
    let stop = dung.command_of("question_stop").await;
    assert_eq!(stop["question"], asked["id"]);
    let late = dung.answer(&asked, json!({ "choices": ["A", "C"] })).await;
    assert_eq!(late["type"], "error", "{late}");
    assert_eq!(late["code"], "question_closed", "{late}");
    assert!(
        late["detail"].as_str().unwrap().contains("time is up"),
        "{late}"
    );
    panel
        .wait_for("document.getElementById('quiz-countdown').textContent === '⏱ Hết giờ' && document.getElementById('quiz-results').textContent.includes('1 trả lời muộn')")
        .await;
    assert!(
        panel
            .evaluate("document.getElementById('quiz-results').textContent")
            .await
            .as_str()
            .unwrap()
            .starts_with("3/4 đã trả lời · 67% đúng"),
    );
    an.wait_for("document.getElementById('question').hidden")
        .await;
    binh.command_of("question_stop").await;
    cuong.command_of("question_stop").await;

    // True or false, no time limit.
    panel.tap("[data-kind=true_false]").await;
    fill(&mut panel, "#quiz-prompt", "Hà Nội là thủ đô của Việt Nam.").await;
    panel.tap("[data-correct=true]").await;
    panel.tap("[data-limit='0']").await;
    panel.tap("#quiz-start").await;
    let asked = binh.command_of("question_start").await;
    assert_eq!(
        asked["choices"],
        json!([{ "id": "true", "text": "Đúng" }, { "id": "false", "text": "Sai" }])
    );
    cuong.command_of("question_start").await;
    an.wait_for("document.querySelectorAll('#choices .choice').length === 2 && document.getElementById('time-left').textContent === ''")
        .await;
    an.evaluate("document.querySelector('#choices .choice[data-id=\"true\"]').click(); document.getElementById('send-answer').click(); true")
        .await;
    assert_eq!(
        binh.answer(&asked, json!({ "choices": ["false"] })).await["type"],
        "answer_received"
    );
    let two = cuong
        .answer(&asked, json!({ "choices": ["true", "false"] }))
        .await;
    assert_eq!(two["code"], "invalid_answer", "one of true or false: {two}");
    panel
        .wait_for("document.querySelectorAll('#quiz-pupils tr.answered').length === 2")
        .await;
    assert_eq!(
        pupil_row(&mut panel, "Nguyễn Văn An").await,
        ["Có", "Đúng", "✓"]
    );
    assert_eq!(
        pupil_row(&mut panel, "Lò Thị Bình").await,
        ["Có", "Sai", "✗"]
    );
    panel.tap("#quiz-stop").await;
    binh.command_of("question_stop").await;
    cuong.command_of("question_stop").await;

    // A short answer in Vietnamese: compared after NFC, case folding and trimming.
    panel.tap("[data-kind=short_answer]").await;
    fill(&mut panel, "#quiz-prompt", "Thủ đô của Việt Nam là gì?").await;
    fill(&mut panel, "#quiz-accepted", "Hà Nội; Ha Noi").await;
    panel.tap("#quiz-start").await;
    let asked = binh.command_of("question_start").await;
    assert_eq!(asked["question_kind"], "short_answer");
    cuong.command_of("question_start").await;
    an.wait_for("!document.getElementById('answer-text').hidden")
        .await;
    an.evaluate("document.getElementById('answer-text').value = '  HÀ NỘI '; document.getElementById('send-answer').click(); true")
        .await;
    // Decomposed: a base letter followed by its combining marks, as some keyboards type it.
    let decomposed = "ha\u{300} no\u{302}\u{323}i";
    assert_eq!(
        binh.answer(&asked, json!({ "text": decomposed })).await["type"],
        "answer_received"
    );
    assert_eq!(
        cuong.answer(&asked, json!({ "text": "Huế" })).await["type"],
        "answer_received"
    );
    panel
        .wait_for("document.querySelectorAll('#quiz-pupils tr.answered').length === 3")
        .await;
    assert_eq!(pupil_row(&mut panel, "Nguyễn Văn An").await[2], "✓");
    assert_eq!(pupil_row(&mut panel, "Lò Thị Bình").await[2], "✓");
    assert_eq!(
        pupil_row(&mut panel, "Phạm Văn Cường").await,
        ["Có", "Huế", "✗"]
    );
    panel.tap("#quiz-stop").await;
    binh.command_of("question_stop").await;
    cuong.command_of("question_stop").await;

    // The prepared set: the broken file is named with its line, the good one runs.
    let (_, sets) = call(address, "GET", "/api/lesson/quiz/sets", None).await;
    let broken = sets["sets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|set| set["file"] == "on-tap/loi.quiz.toml")
        .expect("the broken set is listed");
    assert_eq!(
        broken["problems"][0],
        "on-tap/loi.quiz.toml:3:1: question 1: correct answer `D` is not one of the choice ids"
    );
    panel
        .wait_for("[...document.querySelectorAll('#quiz-set option')].some(o => o.value === 'on-tap/dau-gio.quiz.toml')")
        .await;
    panel
        .evaluate("document.getElementById('quiz-set').value = 'on-tap/dau-gio.quiz.toml'; true")
        .await;
    panel.tap("#quiz-run").await;
    let answers = [
        json!({ "choices": ["B"] }),
        json!({ "choices": ["true"] }),
        json!({ "text": "phan xi păng" }),
    ];
    let mut prompts = Vec::new();
    for (index, answer) in answers.iter().enumerate() {
        if index > 0 {
            panel
                .wait_for(&format!(
                    "document.getElementById('quiz-progress').textContent === 'Ôn tập đầu giờ: câu {index}/3' && !document.getElementById('quiz-next').disabled"
                ))
                .await;
            panel.tap("#quiz-next").await;
            binh.command_of("question_stop").await;
            cuong.command_of("question_stop").await;
        }
        let asked = binh.command_of("question_start").await;
        cuong.command_of("question_start").await;
        prompts.push(asked["prompt"].as_str().unwrap().to_owned());
        assert_eq!(
            binh.answer(&asked, answer.clone()).await["type"],
            "answer_received"
        );
    }
    assert_eq!(
        prompts,
        [
            "5 × 6 = ?",
            "Sông Hồng chảy qua Lào Cai.",
            "Đỉnh núi cao nhất Việt Nam?"
        ]
    );
    panel
        .wait_for("document.getElementById('quiz-progress').textContent === 'Ôn tập đầu giờ: câu 3/3' && document.getElementById('quiz-next').disabled")
        .await;
    panel
        .wait_for("document.getElementById('quiz-question').textContent === 'Đỉnh núi cao nhất Việt Nam?' && document.querySelectorAll('#quiz-pupils tr.answered').length === 1")
        .await;
    assert_eq!(
        pupil_row(&mut panel, "Lò Thị Bình").await,
        ["Có", "phan xi păng", "✓"]
    );
    screenshots_of_step(&mut panel, &mut an, "set").await;
    let (status, finished) = call(address, "POST", "/api/lesson/quiz/next", None).await;
    assert_eq!(
        (status, finished["error"].as_str()),
        (409, Some("question_set_finished"))
    );

    // The summary, from the panel's buttons: one line a pupil with the roll call's mark and the score.
    let href = panel
        .evaluate("document.getElementById('quiz-xlsx').getAttribute('href')")
        .await;
    let workbook = {
        let href = href.as_str().unwrap().to_owned();
        tokio::task::spawn_blocking(move || download(address, &href))
            .await
            .unwrap()
    };
    let rows = sheet_rows(workbook);
    assert_eq!(rows[0][0], format!("Tiết học: {LESSON}"));
    let headings = rows[1].clone();
    assert_eq!(headings.len(), 4 + 6 + 5, "{headings:?}");
    let an_line = line_of(&rows, &headings, "Nguyễn Văn An");
    assert_eq!(
        (
            cell(&an_line, "Mã định danh"),
            cell(&an_line, "Điểm danh"),
            cell(&an_line, "Câu 2"),
            cell(&an_line, "Câu 3"),
            cell(&an_line, "Điểm")
        ),
        ("010206000001", "Có mặt", "Đúng ✓", "HÀ NỘI ✓", "3/6")
    );
    let binh_line = line_of(&rows, &headings, "Lò Thị Bình");
    assert_eq!(
        (
            cell(&binh_line, "Điểm danh"),
            cell(&binh_line, "Số câu đã trả lời"),
            cell(&binh_line, "Điểm")
        ),
        ("Đi muộn", "6", "5/6")
    );
    let dung_line = line_of(&rows, &headings, "Hà Thị Dung");
    assert_eq!(
        (
            cell(&dung_line, "Điểm danh"),
            cell(&dung_line, "Câu 1"),
            cell(&dung_line, "Điểm")
        ),
        ("Vắng", "", "0/6"),
        "Dung's late answer is not kept"
    );

    let csv = {
        let href = panel
            .evaluate("document.getElementById('quiz-csv').getAttribute('href')")
            .await;
        let href = href.as_str().unwrap().to_owned();
        tokio::task::spawn_blocking(move || download(address, &href))
            .await
            .unwrap()
    };
    let csv = String::from_utf8(csv).unwrap();
    let csv = csv
        .strip_prefix('\u{feff}')
        .expect("a byte-order mark for Excel");
    let cuong_line = csv
        .lines()
        .find(|line| line.contains("Phạm Văn Cường"))
        .expect("Cường has a line");
    assert!(
        cuong_line.starts_with("4,010206000003,Phạm Văn Cường,Vắng,A ✗,,Huế ✗,"),
        "{cuong_line}"
    );
    assert!(cuong_line.contains(",0/6,"), "{cuong_line}");

    // The same summary from the command line.
    drop((an, panel));
    lesson::stop(&mut agent, PATIENCE);
    let out = room.dir.path().join("tong-ket.xlsx");
    let written = room.command(&[
        "lesson",
        "summary",
        "--lesson",
        LESSON,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    assert_eq!(sheet_rows(std::fs::read(&out).unwrap()), rows);
    let wrong = room.command(&[
        "lesson",
        "summary",
        "--lesson",
        LESSON,
        "--out",
        room.dir.path().join("tong-ket.pdf").to_str().unwrap(),
    ]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains(".xlsx"));
}

/// The panel's question tab at the panel's two usual sizes, and the tablet, kept as test artefacts.
async fn screenshots_of_step(
    panel: &mut browser::Chromium,
    tablet: &mut browser::Chromium,
    step: &str,
) {
    let dir = screenshots(panel, "questions", &format!("{step}-panel")).await;
    let png = tablet.screenshot().await;
    std::fs::write(dir.join(format!("{step}-tablet.png")), png).unwrap();
    println!("question screenshots: {}", dir.display());
}
