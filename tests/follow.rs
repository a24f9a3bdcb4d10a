//! Follow the teacher, end to end: the real agent, a real five-page PDF made
//! by ghostscript in the content store, the panel in headless Chromium driven
//! by touch, two browser tablets (Chromium pages drawing the PDF with pdf.js)
//! and protocol-level WebSocket tablets for the rest of the class.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/lesson.rs"]
mod lesson;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Room, api_call as call};
use lesson::{
    PairedTablet, ProtocolTablet, browser_tablet, open_panel, protocol_tablets, screenshots,
    tablet_id_named,
};
use serde_json::{Value, json};

const PROTOCOL_TABLETS: usize = 4;
const PDF: &str = "toan/bai-3.pdf";
const PAGES: u32 = 5;

/// Writes a PDF of `PAGES` pages to `path`, page N showing "Trang N" and a big N.
fn make_pdf(path: &Path) {
    let mut postscript = String::from("%!PS\n");
    for page in 1..=PAGES {
        postscript.push_str(&format!(
            "/Helvetica-Bold findfont 300 scalefont setfont 200 350 moveto ({page}) show\n\
             /Helvetica findfont 40 scalefont setfont 72 720 moveto (Trang {page}) show\nshowpage\n"
        ));
    }
    let source = path.with_extension("ps");
    std::fs::write(&source, postscript).unwrap();
    let made = std::process::Command::new("ps2pdf")
        .arg(&source)
        .arg(path)
        .output()
        .expect("ps2pdf (Debian package ghostscript) is installed");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    std::fs::remove_file(source).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Waits until the tablet page shows page `page` of the PDF, drawn by pdf.js:
/// pdf.js read the page's text ("Trang N") and inked its canvas.
async fn shows_page(tablet: &mut browser::Chromium, page: u32, following: bool) {
    tablet
        .wait_for(&format!(
            "document.getElementById('follow')?.dataset.page === '{page}' && document.getElementById('follow').dataset.following === '{following}' \
             && document.getElementById('follow-text').textContent.includes('Trang {page}')"
        ))
        .await;
    // The big number covers many pixels: a drawn canvas, not a blank one.
    let inked = tablet
        .evaluate(
            "(() => { const c = document.getElementById('follow-canvas'); \
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; \
             for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i] < 128) n++; return n; })()",
        )
        .await;
    assert!(
        inked.as_u64().unwrap() > 2000,
        "the page's ink on the canvas: {inked}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_class_follows_the_teachers_pdf_page_by_page_and_is_released_to_browse() {
    let room = Room::new("");
    let content = room.data_dir().join("content");
    std::fs::create_dir_all(content.join("toan")).unwrap();
    make_pdf(&content.join(PDF));
    let _agent = room.start();
    let address = room.http;

    let (status, health) = call(address, "GET", "/healthz", None).await;
    assert_eq!(status, 200, "{health}");
    assert!(
        health.to_string().contains("pdf.js from"),
        "health says where pdf.js comes from: {health}"
    );
    let (status, _) = call(address, "GET", "/tablet/pdfjs/pdf.js", None).await;
    assert_eq!(
        status, 401,
        "pdf.js is for paired tablets and the panel only"
    );

    let mut panel = open_panel(address, 1920, 1080).await;
    panel
        .wait_for("document.querySelector('[data-view=follow]').textContent === 'Tài liệu'")
        .await;
    let code = lesson::open_pairing(address).await;

    let mut an = browser_tablet(address, &code, Some("Bàn 1"), None).await;
    let mut binh = browser_tablet(address, &code, Some("Bàn 2"), None).await;
    let binh_id = tablet_id_named(address, &json!("Bàn 2")).await;
    let mut protocol = protocol_tablets(address, &code, 3, PROTOCOL_TABLETS).await;
    for paired in &protocol {
        assert_eq!(
            paired.welcome["state"]["follow"],
            Value::Null,
            "nobody follows yet"
        );
    }

    // The teacher opens the PDF from the content store on the panel.
    panel.tap("[data-view=follow]").await;
    panel
        .wait_for(&format!(
            "document.querySelector('#follow-list [data-name=\"{PDF}\"]') !== null"
        ))
        .await;
    panel
        .tap(&format!("#follow-list [data-name=\"{PDF}\"]"))
        .await;
    panel
        .wait_for("document.getElementById('follow-viewer').dataset.page === '1'")
        .await;
    assert_eq!(
        panel
            .evaluate("document.getElementById('follow-number').textContent")
            .await,
        format!("Trang 1 / {PAGES}")
    );

    // One touch: the whole class follows.
    assert_eq!(
        panel
            .evaluate("document.getElementById('follow-lead').textContent")
            .await,
        "Cả lớp theo cô/thầy"
    );
    panel.tap("#follow-lead").await;
    for PairedTablet { tablet, .. } in &mut protocol {
        let (_, command) = tablet.command().await;
        assert_eq!(command, json!({ "kind": "follow", "file": PDF, "page": 1 }));
    }
    shows_page(&mut an, 1, true).await;

    // The teacher turns to page 3: every tablet follows.
    panel.tap("#follow-next").await;
    panel.tap("#follow-next").await;
    panel
        .wait_for("document.getElementById('follow-viewer').dataset.page === '3'")
        .await;
    let mut page_three = 0;
    for PairedTablet { tablet, .. } in &mut protocol {
        page_three = tablet.until_page(3).await;
    }
    shows_page(&mut an, 3, true).await;
    shows_page(&mut binh, 3, true).await;

    // A tablet that reconnects lands on the current page, without replaying the turns.
    let PairedTablet { token, tablet, .. } = &mut protocol[0];
    tablet.socket.close(None).await.unwrap();
    let (reconnected, welcome) = ProtocolTablet::connect(address, token, 0).await;
    *tablet = reconnected;
    assert_eq!(
        welcome["state"]["follow"],
        json!({ "file": PDF, "page": 3 })
    );
    let missed: Vec<&Value> = welcome["missed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|envelope| &envelope["command"])
        .collect();
    assert_eq!(
        missed,
        [&json!({ "kind": "page", "page": 3 })],
        "only the newest of the follow commands is kept for catching up"
    );
    assert_eq!(welcome["missed"][0]["id"], page_three);
    // The old document may still answer until the reload replaces it: wait for the new one.
    an.evaluate("window.beforeReload = true; location.reload(); true")
        .await;
    an.wait_for("window.beforeReload === undefined && document.readyState === 'complete'")
        .await;
    shows_page(&mut an, 3, true).await;

    // Release: the pupils browse on their own; the protocol tablets hear it.
    panel.tap("#follow-release").await;
    for PairedTablet { tablet, .. } in &mut protocol {
        let (_, command) = tablet.command().await;
        assert_eq!(command, json!({ "kind": "release" }));
    }
    an.wait_for("document.getElementById('follow').dataset.following === 'false' && !document.getElementById('follow-controls').hidden")
        .await;
    an.evaluate("document.getElementById('follow-next').click(); true")
        .await;
    shows_page(&mut an, 4, false).await;
    let (status, refused) = call(
        address,
        "POST",
        "/api/lesson/follow/page",
        Some(json!({ "page": 2 })),
    )
    .await;
    assert_eq!(status, 400, "nobody follows: {refused}");

    // A group follows; the others keep browsing and hear nothing.
    panel.tap("[data-view=class]").await;
    panel
        .wait_for("document.querySelectorAll('#class-tiles .tile').length === 6")
        .await;
    for id in [&protocol[0].id, &protocol[1].id, &binh_id] {
        panel
            .tap(&format!("#class-tiles .tile[data-tablet-id=\"{id}\"]"))
            .await;
    }
    panel
        .evaluate("document.getElementById('group-name').value = 'Nhóm 1'; true")
        .await;
    panel.tap("#group-save").await;
    panel
        .wait_for("document.querySelector('#class-groups [data-group=\"Nhóm 1\"]') !== null && classState.group === 'Nhóm 1'")
        .await;
    panel.tap("[data-view=follow]").await;
    panel
        .wait_for("document.getElementById('follow-lead').textContent === 'Nhóm 1 theo cô/thầy'")
        .await;
    panel.tap("#follow-lead").await;
    for PairedTablet { tablet, .. } in &mut protocol[..2] {
        let (_, command) = tablet.command().await;
        assert_eq!(command, json!({ "kind": "follow", "file": PDF, "page": 3 }));
    }
    shows_page(&mut binh, 3, true).await;
    panel.tap("#follow-next").await;
    for PairedTablet { tablet, .. } in &mut protocol[..2] {
        tablet.until_page(4).await;
    }
    shows_page(&mut binh, 4, true).await;
    for PairedTablet { tablet, .. } in &mut protocol[2..] {
        tablet
            .heard_nothing("the group's follow reaches no tablet outside it")
            .await;
    }
    assert_eq!(
        an.evaluate("document.getElementById('follow').dataset.following")
            .await,
        "false",
        "An is outside the group and still browses"
    );

    screenshots(&mut panel, "follow", "panel").await;
    let dir = screenshots(&mut binh, "follow", "tablet").await;
    println!("follow screenshots: {}", dir.display());
}
