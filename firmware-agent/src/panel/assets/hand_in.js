// The pupils' hand-ins on the panel: a strip of thumbnails above the class's
// tiles, live from the feed (a `lesson.hand_in` record brings the new one, an
// erasure takes a pupil's away); one touch puts a pupil's work full screen
// for the class, another touch closes it. Loaded after app.js, whose helpers
// (t, el, TEXT) it uses; it starts once the page is signed in.
"use strict";

const HAND_IN_TEXT = {
  vi: {
    "hand_in.title": "Bài nộp", "hand_in.none": "Chưa có bài nộp nào trong tiết này.",
    "hand_in.count": "{n} bài", "hand_in.close": "Chạm để đóng",
    "hand_in.photo": "Ảnh chụp", "hand_in.drawing": "Hình vẽ", "hand_in.text": "Bài viết",
    "hand_in.nobody": "Không rõ học sinh",
  },
  en: {
    "hand_in.title": "Hand-ins", "hand_in.none": "No hand-ins in this lesson yet.",
    "hand_in.count": "{n} hand-ins", "hand_in.close": "Touch to close",
    "hand_in.photo": "Photo", "hand_in.drawing": "Drawing", "hand_in.text": "Text",
    "hand_in.nobody": "Unknown pupil",
  },
};
for (const lang of Object.keys(HAND_IN_TEXT)) Object.assign(TEXT[lang], HAND_IN_TEXT[lang]);

const handIns = { list: [], lessonId: "", texts: new Map(), started: false };

function handInStrip() {
  let strip = document.getElementById("hand-ins");
  if (!strip) {
    strip = el("section", { id: "hand-ins", class: "hand-ins", "aria-live": "polite" });
    const tiles = document.getElementById("class-tiles");
    tiles.parentNode.insertBefore(strip, tiles);
  }
  return strip;
}

function whoHandedIn(item) {
  return item.pupil_full_name || item.tablet_name || t("hand_in.nobody");
}

function renderHandIns() {
  const strip = handInStrip();
  const heading = el("h2", {}, t("hand_in.title"), " ",
    el("small", { class: "facts" }, handIns.list.length ? t("hand_in.count", { n: handIns.list.length }) : t("hand_in.none")));
  const row = el("div", { class: "hand-in-row" });
  for (const item of [...handIns.list].reverse()) {
    const preview = item.kind === "text"
      ? el("span", { class: "hand-in-snippet" }, handIns.texts.get(item.id) || "📝")
      : el("img", { src: `/api/hand-ins/${item.id}/thumbnail`, alt: `${t("hand_in." + item.kind)}: ${whoHandedIn(item)}` });
    const card = el("button", { type: "button", class: "hand-in", "data-hand-in-id": item.id, "data-kind": item.kind },
      preview, el("span", { class: "who" }, whoHandedIn(item)));
    card.addEventListener("click", () => showHandIn(item));
    row.append(card);
  }
  strip.replaceChildren(heading, row);
}

async function loadHandIns() {
  const response = await fetch("/api/hand-ins");
  if (!response.ok) return;
  const reply = await response.json();
  handIns.lessonId = reply.lesson_id;
  handIns.list = reply.hand_ins;
  await Promise.all(handIns.list.filter(h => h.kind === "text" && !handIns.texts.has(h.id)).map(async h => {
    const text = await fetch(`/api/hand-ins/${h.id}/file`);
    if (text.ok) handIns.texts.set(h.id, await text.text());
  }));
  renderHandIns();
}

// Full screen for the class; a touch anywhere on it closes it.
function showHandIn(item) {
  closeHandIn();
  const work = item.kind === "text"
    ? el("pre", { class: "hand-in-full-text" }, handIns.texts.get(item.id) || "")
    : el("img", { id: "hand-in-full-image", src: `/api/hand-ins/${item.id}/file`, alt: whoHandedIn(item) });
  const screen = el("div", { id: "hand-in-show", class: "hand-in-show", role: "dialog", "data-hand-in-id": item.id },
    work, el("p", { class: "hand-in-caption" }, `${whoHandedIn(item)} · ${t("hand_in." + item.kind)}`),
    el("p", { class: "hand-in-close" }, t("hand_in.close")));
  screen.addEventListener("click", closeHandIn);
  document.body.append(screen);
}

function closeHandIn() {
  const open = document.getElementById("hand-in-show");
  if (open) open.remove();
}

function followHandIns() {
  const source = new EventSource("/api/panel/events");
  // On every (re)connection the list is read whole, so nothing handed in while away is missed.
  source.addEventListener("open", loadHandIns);
  source.addEventListener("record", e => {
    const record = JSON.parse(e.data);
    const erased = record.kind === "erasure" && record.payload && record.payload.what === "hand_ins";
    if (record.kind === "lesson.hand_in" || erased) loadHandIns();
  });
}

// The panel signs in before it shows its tabs: start then, and only once.
async function startHandIns() {
  if (handIns.started || document.querySelector(".tabs").hidden) return;
  handIns.started = true;
  const signedIn = await fetch("/api/hand-ins").then(r => r.ok, () => false);
  if (!signedIn) { handIns.started = false; return; }
  renderHandIns();
  followHandIns();
}
new MutationObserver(startHandIns).observe(document.querySelector(".tabs"), { attributes: true, attributeFilter: ["hidden"] });
document.addEventListener("DOMContentLoaded", startHandIns);
