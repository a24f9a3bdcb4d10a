// The teacher's screen. Renders from a snapshot of the room's state, then keeps
// it current from the agent's live feed (Server-Sent Events). No polling.
"use strict";

const TEXT = {
  vi: {
    "tab.now": "Bây giờ", "tab.rollcall": "Điểm danh", "tab.tablets": "Máy tính bảng",
    "tab.questions": "Câu hỏi", "tab.room": "Phòng học", "tab.status": "Trạng thái",
    "login.title": "Đăng nhập giáo viên", "login.pin": "Mã PIN của phòng", "login.submit": "Vào",
    "login.wrong": "Sai mã PIN. Còn {n} lần thử.", "login.locked": "Thử sai quá nhiều lần. Thử lại sau {n} giây.",
    "login.panel_only": "Chỉ dùng được trên màn hình của lớp.",
    "now.title": "Tiết học hiện tại", "now.period": "Tiết", "now.next_bell": "Chuông tiếp theo",
    "now.rollcall": "Điểm danh", "now.sync": "Đồng bộ",
    "rollcall.title": "Điểm danh", "rollcall.none": "Chưa có buổi điểm danh nào.",
    "rollcall.summary": "Có mặt {p} · Đi muộn {l} · Vắng {a} · Có phép {e}",
    "status.PRESENT": "Có mặt", "status.LATE": "Đi muộn", "status.ABSENT": "Vắng", "status.EXCUSED": "Có phép",
    "tablets.title": "Máy tính bảng", "tablets.none": "Chưa có máy tính bảng nào được ghép nối.",
    "questions.title": "Câu hỏi", "questions.none": "Chưa có câu trả lời nào.",
    "room.title": "Chuông và đèn", "room.none": "Chưa có lần bật chuông hay đèn nào.",
    "status.title": "Trạng thái", "status.part": "Bộ phận", "status.state": "Tình trạng", "status.detail": "Chi tiết",
    "state.ok": "Tốt", "state.degraded": "Có vấn đề", "state.failed": "Hỏng", "state.starting": "Đang khởi động",
    "state.disabled": "Tắt",
    "facts": "Phiên bản {v} · Bản ghi mới nhất #{s} · Đồng hồ {c}",
    "clock.synced": "đã đồng bộ", "clock.unsynced": "CHƯA đồng bộ",
    "sync.records": "{n} bản ghi", "offline": "Mất kết nối với máy chủ của lớp",
    "part.database": "Cơ sở dữ liệu", "part.http": "Máy chủ web", "part.hub": "Đồng bộ với Sở",
    "part.attendance": "Điểm danh", "part.camera": "Camera", "part.scheduler": "Lịch chuông",
    "part.actuators": "Chuông và đèn", "part.broker": "MQTT", "part.tablets": "Máy tính bảng",
  },
  en: {
    "tab.now": "Now", "tab.rollcall": "Roll call", "tab.tablets": "Tablets",
    "tab.questions": "Questions", "tab.room": "Room", "tab.status": "Status",
    "login.title": "Teacher sign-in", "login.pin": "The room's PIN", "login.submit": "Enter",
    "login.wrong": "Wrong PIN. {n} tries left.", "login.locked": "Too many wrong tries. Try again in {n} seconds.",
    "login.panel_only": "Available on the classroom panel only.",
    "now.title": "Current lesson", "now.period": "Period", "now.next_bell": "Next bell",
    "now.rollcall": "Roll call", "now.sync": "Sync",
    "rollcall.title": "Roll call", "rollcall.none": "No roll call yet.",
    "rollcall.summary": "Present {p} · Late {l} · Absent {a} · Excused {e}",
    "status.PRESENT": "Present", "status.LATE": "Late", "status.ABSENT": "Absent", "status.EXCUSED": "Excused",
    "tablets.title": "Tablets", "tablets.none": "No tablet paired yet.",
    "questions.title": "Questions", "questions.none": "No answers yet.",
    "room.title": "Bells and lights", "room.none": "No bell or light switched yet.",
    "status.title": "Status", "status.part": "Part", "status.state": "State", "status.detail": "Detail",
    "state.ok": "OK", "state.degraded": "Degraded", "state.failed": "Failed", "state.starting": "Starting",
    "state.disabled": "Off",
    "facts": "Version {v} · Newest record #{s} · Clock {c}",
    "clock.synced": "synchronised", "clock.unsynced": "NOT synchronised",
    "sync.records": "{n} records", "offline": "Lost the connection to the classroom agent",
    "part.database": "Database", "part.http": "Web server", "part.hub": "Hub sync",
    "part.attendance": "Roll call", "part.camera": "Camera", "part.scheduler": "Bell timetable",
    "part.actuators": "Bells and lights", "part.broker": "MQTT", "part.tablets": "Tablets",
  },
};

const model = {
  lang: localStorage.getItem("panel.lang") || "vi",
  view: "now",
  room: {}, health: {}, lastSeq: 0, version: "", clockSynced: true, timezone: "Asia/Ho_Chi_Minh",
  marks: new Map(),      // personal_id -> mark payload, for the newest session
  session: null,         // newest attendance session payload
  tablets: new Map(),    // tablet_id -> pairing payload
  answers: [],           // question answers of the newest question
  actuations: [],        // newest first
};

function t(key, vars) {
  let s = (TEXT[model.lang] && TEXT[model.lang][key]) || TEXT.vi[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace(`{${k}}`, v);
  return s;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

// ---- state from records

function apply(record) {
  model.lastSeq = Math.max(model.lastSeq, record.seq);
  const p = record.payload || {};
  switch (record.kind) {
    case "attendance.session":
      if (!model.session || model.session.session_id !== p.session_id) model.marks.clear();
      model.session = p;
      break;
    case "attendance.mark":
      if (!model.session || model.session.session_id !== p.session_id) {
        model.session = { session_id: p.session_id, class_name: "" };
        model.marks.clear();
      }
      model.marks.set(p.personal_id, p);
      break;
    case "tablet.pairing":
      if (p.action === "REVOKED") model.tablets.delete(p.tablet_id); else model.tablets.set(p.tablet_id, p);
      break;
    case "lesson.answer":
      if (model.answers.length && model.answers[0].question_id !== p.question_id) model.answers = [];
      model.answers.push(p);
      break;
    case "actuation":
      model.actuations.unshift({ ...p, at: record.occurred_at });
      model.actuations.length = Math.min(model.actuations.length, 20);
      break;
  }
}

// ---- rendering

function render() {
  document.documentElement.lang = model.lang;
  document.querySelectorAll("[data-i18n]").forEach(n => { n.textContent = t(n.dataset.i18n); });
  document.getElementById("lang").textContent = model.lang === "vi" ? "English" : "Tiếng Việt";
  document.getElementById("room-name").textContent = model.room.name || model.room.room_id || "";
  document.querySelectorAll(".tabs button").forEach(b => b.setAttribute("aria-selected", String(b.dataset.view === model.view)));
  document.querySelectorAll("main .view").forEach(v => { v.hidden = v.id !== `view-${model.view}`; });
  renderNow(); renderRollcall(); renderTablets(); renderQuestions(); renderRoom(); renderStatus();
}

function counts() {
  const c = { PRESENT: 0, LATE: 0, ABSENT: 0, EXCUSED: 0 };
  for (const m of model.marks.values()) if (m.status in c) c[m.status]++;
  return c;
}

function renderNow() {
  const c = counts();
  document.getElementById("now-rollcall").textContent =
    model.session ? `${c.PRESENT + c.LATE} / ${model.session.enrolled || model.marks.size}` : "–";
  document.getElementById("now-sync").textContent = t("sync.records", { n: model.lastSeq });
}

function renderRollcall() {
  const c = counts();
  document.getElementById("rollcall-summary").textContent =
    model.session ? t("rollcall.summary", { p: c.PRESENT, l: c.LATE, a: c.ABSENT, e: c.EXCUSED }) : t("rollcall.none");
  const grid = document.getElementById("rollcall-grid");
  grid.replaceChildren(...[...model.marks.values()].map(m =>
    el("div", { class: `pupil ${m.status}`, "data-personal-id": m.personal_id },
      el("div", { class: "name" }, m.full_name || m.personal_id),
      el("div", { class: "mark" }, t(`status.${m.status}`)))));
}

function renderTablets() {
  const list = document.getElementById("tablets-list");
  const items = [...model.tablets.values()].map(p => el("li", {}, `${p.name || p.tablet_id}`));
  list.replaceChildren(...(items.length ? items : [el("li", {}, t("tablets.none"))]));
}

function renderQuestions() {
  const box = document.getElementById("answers");
  if (!model.answers.length) { box.replaceChildren(el("p", {}, t("questions.none"))); return; }
  const tally = new Map();
  for (const a of model.answers) for (const c of (a.choices.length ? a.choices : [a.text])) tally.set(c, (tally.get(c) || 0) + 1);
  const max = Math.max(...tally.values());
  box.replaceChildren(...[...tally.entries()].sort().map(([choice, n]) =>
    el("div", { class: "bar" }, el("span", {}, choice),
      el("div", { class: "fill", style: `width:${Math.round(60 * n / max)}%` }), el("span", {}, String(n)))));
}

function renderRoom() {
  const list = document.getElementById("actuations");
  const items = model.actuations.map(a => el("li", {}, `${a.device} · ${a.command} · ${a.outcome}`));
  list.replaceChildren(...(items.length ? items : [el("li", {}, t("room.none"))]));
}

function renderStatus() {
  const rows = Object.entries(model.health).map(([part, r]) => el("tr", {},
    el("td", {}, t(`part.${part}`) === `part.${part}` ? part : t(`part.${part}`)),
    el("td", { class: `state-${r.state}` }, t(`state.${r.state}`)),
    el("td", {}, r.detail || "")));
  document.getElementById("status-rows").replaceChildren(...rows);
  document.getElementById("status-facts").textContent = t("facts", {
    v: model.version, s: model.lastSeq, c: t(model.clockSynced ? "clock.synced" : "clock.unsynced") });
}

function tickClock() {
  const now = new Date().toLocaleTimeString(model.lang === "vi" ? "vi-VN" : "en-GB",
    { hour: "2-digit", minute: "2-digit", second: "2-digit", timeZone: model.timezone });
  document.getElementById("clock").textContent = now;
}

// ---- wiring

async function load() {
  const response = await fetch("/api/panel/state");
  if (response.status === 401) { showLogin(); return; }
  const state = await response.json();
  model.room = state.room; model.health = state.health; model.version = state.version;
  model.clockSynced = state.clock_synced; model.timezone = state.room.timezone || model.timezone;
  for (const record of state.recent) apply(record);
  model.lastSeq = state.last_seq;
  render();
  listen();
}

function listen() {
  const source = new EventSource("/api/panel/events");
  const offline = document.getElementById("offline");
  source.addEventListener("open", () => { offline.hidden = true; });
  source.addEventListener("error", () => { offline.hidden = false; });
  source.addEventListener("hello", e => { model.health = JSON.parse(e.data).health; render(); });
  source.addEventListener("health", e => { model.health = JSON.parse(e.data); render(); });
  source.addEventListener("record", e => { apply(JSON.parse(e.data)); render(); });
}

function showLogin() {
  document.querySelectorAll("main .view").forEach(v => { v.hidden = v.id !== "view-login"; });
  document.querySelector(".tabs").hidden = true;
  document.querySelectorAll("[data-i18n]").forEach(n => { n.textContent = t(n.dataset.i18n); });
}

document.getElementById("login-form").addEventListener("submit", async event => {
  event.preventDefault();
  const pin = document.getElementById("pin").value;
  const response = await fetch("/api/panel/login", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ pin }) });
  const body = await response.json();
  const error = document.getElementById("login-error");
  if (response.ok) { document.querySelector(".tabs").hidden = false; load(); return; }
  if (body.error === "wrong_pin") error.textContent = t("login.wrong", { n: body.tries_left });
  else if (body.error === "locked_out") error.textContent = t("login.locked", { n: body.retry_after_seconds });
  else error.textContent = t("login.panel_only");
});

document.querySelector(".tabs").addEventListener("click", event => {
  const view = event.target.dataset && event.target.dataset.view;
  if (view) { model.view = view; render(); }
});

document.getElementById("lang").addEventListener("click", () => {
  model.lang = model.lang === "vi" ? "en" : "vi";
  localStorage.setItem("panel.lang", model.lang);
  render(); tickClock();
});

setInterval(tickClock, 1000);
tickClock();
render();
load();
