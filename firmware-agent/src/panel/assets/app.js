// The teacher's screen. Renders from a snapshot of the room's state, then keeps
// it current from the agent's live feed (Server-Sent Events), resumed after the
// newest record the page holds, so none is lost or applied twice. No polling.
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
    "questions.title": "Câu hỏi",
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
    "part.device": "Thiết bị", "part.attendance_source": "Camera điểm danh", "part.teacher_sign_in": "Đăng nhập của giáo viên",
    "part.usb_stick": "USB chép dữ liệu",
    "tablets.pair": "Ghép nối máy mới", "tablets.lock": "Khóa màn hình", "tablets.unlock": "Mở khóa",
    "tablets.code": "Mã ghép nối:", "tablets.message": "Gửi tin nhắn", "tablets.open": "Mở tài liệu",
    "tablets.send": "Gửi", "tablets.lock_message": "Các em hãy nhìn lên bảng",
    "tablets.connected": "{c} / {n} máy đang kết nối", "tablets.online": "trực tuyến", "tablets.offline": "ngoại tuyến",
    "tablets.battery": "pin {b}%", "tablets.locked": "đã khóa", "tablets.hand": "✋ giơ tay",
    "room.recent": "Gần đây", "room.ring": "Đánh chuông", "room.on": "Bật", "room.off": "Tắt",
    "room.bell": "Chuông", "room.light": "Đèn", "room.switch": "Công tắc", "room.is_on": "Đang bật", "room.is_off": "Đang tắt",
    "room.offline": "Mất kết nối",
    "now.none": "Không có tiết", "now.period_n": "Tiết {n} · {s}–{e}", "now.in": "{t} (còn {m} phút)",
    "rollcall.correct": "Sửa", "rollcall.reason": "Lý do sửa điểm danh:",
    "rollcall.correcting": "{name}: {from} → {to}", "rollcall.save": "Lưu", "rollcall.cancel": "Huỷ",
    "rollcall.export_day": "Tải về Excel (hôm nay)", "rollcall.export_month": "Tải về Excel (tháng này)",
    "error.generic": "Không thực hiện được: {m}",
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
    "questions.title": "Questions",
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
    "part.device": "Device", "part.attendance_source": "Roll-call camera", "part.teacher_sign_in": "Teacher sign-in",
    "part.usb_stick": "USB stick",
    "tablets.pair": "Pair new tablets", "tablets.lock": "Lock screens", "tablets.unlock": "Unlock",
    "tablets.code": "Pairing code:", "tablets.message": "Send a message", "tablets.open": "Open material",
    "tablets.send": "Send", "tablets.lock_message": "Eyes on the board, please",
    "tablets.connected": "{c} / {n} tablets connected", "tablets.online": "online", "tablets.offline": "offline",
    "tablets.battery": "battery {b}%", "tablets.locked": "locked", "tablets.hand": "✋ hand raised",
    "room.recent": "Recent", "room.ring": "Ring", "room.on": "On", "room.off": "Off",
    "room.bell": "Bell", "room.light": "Light", "room.switch": "Switch", "room.is_on": "On", "room.is_off": "Off",
    "room.offline": "Offline",
    "now.none": "No lesson", "now.period_n": "Period {n} · {s}–{e}", "now.in": "{t} (in {m} min)",
    "rollcall.correct": "Correct", "rollcall.reason": "Reason for the correction:",
    "rollcall.correcting": "{name}: {from} → {to}", "rollcall.save": "Save", "rollcall.cancel": "Cancel",
    "rollcall.export_day": "Download Excel (today)", "rollcall.export_month": "Download Excel (this month)",
    "error.generic": "Could not do it: {m}",
  },
};

const model = {
  lang: localStorage.getItem("panel.lang") || "vi",
  view: "now",
  room: {}, health: {}, lastSeq: 0, version: "", clockSynced: true, timezone: "Asia/Ho_Chi_Minh",
  marks: new Map(),      // personal_id -> mark payload, for the newest session
  session: null,         // newest attendance session payload
  tablets: new Map(),    // tablet_id -> pairing payload
  actuations: [],        // newest first
  pupils: new Map(),     // personal_id -> full name, of the roll call's class
  today: null,           // the day's plan: periods and timetable actions
  tabletRows: [],        // from GET /api/tablets
  devices: [],           // from GET /api/actuators
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

function apply(record, live) {
  if (record.seq <= model.lastSeq) return; // already applied: a resumed feed may repeat the newest records
  model.lastSeq = record.seq;
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
      if (live) loadTablets();
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
  renderNow(); renderRollcall(); renderClass(); renderTablets(); renderRoom(); renderStatus();
}

function counts() {
  const c = { PRESENT: 0, LATE: 0, ABSENT: 0, EXCUSED: 0 };
  for (const m of model.marks.values()) if (m.status in c) c[m.status]++;
  return c;
}

function localHHMM(date) {
  return date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false, timeZone: model.timezone });
}

function renderNow() {
  const now = new Date();
  const hhmm = localHHMM(now);
  const periods = (model.today && model.today.periods) || [];
  const current = periods.find(p => p.start <= hhmm && hhmm < p.end);
  document.getElementById("now-period").textContent =
    current ? t("now.period_n", { n: current.number, s: current.start, e: current.end }) : t("now.none");
  const next = ((model.today && model.today.actions) || []).find(a => new Date(a.at) > now && a.command.startsWith("ring"));
  document.getElementById("now-next").textContent = next
    ? t("now.in", { t: localHHMM(new Date(next.at)), m: Math.max(0, Math.round((new Date(next.at) - now) / 60000)) }) : "–";
  const c = counts();
  document.getElementById("now-rollcall").textContent =
    model.session ? `${c.PRESENT + c.LATE} / ${model.session.enrolled || model.marks.size}` : "–";
  document.getElementById("now-sync").textContent = t("sync.records", { n: model.lastSeq });
}

function renderRollcall() {
  const c = counts();
  document.getElementById("rollcall-summary").textContent =
    model.session ? t("rollcall.summary", { p: c.PRESENT, l: c.LATE, a: c.ABSENT, e: c.EXCUSED }) : t("rollcall.none");
  const today = new Date().toLocaleDateString("en-CA", { timeZone: model.timezone });
  document.getElementById("export-day").href = `/api/attendance/export?period=${today}&format=xlsx`;
  document.getElementById("export-month").href = `/api/attendance/export?period=${today.slice(0, 7)}&format=xlsx`;
  const grid = document.getElementById("rollcall-grid");
  const ids = model.pupils.size ? [...model.pupils.keys()] : [...model.marks.keys()];
  grid.replaceChildren(...ids.map(id => {
    const m = model.marks.get(id);
    const status = m ? m.status : "";
    const fix = el("button", { type: "button" }, t("rollcall.correct"));
    fix.addEventListener("click", () => correct(id, status));
    return el("div", { class: `pupil ${status}`, "data-personal-id": id },
      el("div", { class: "name" }, model.pupils.get(id) || id),
      el("div", { class: "mark" }, status ? t(`status.${status}`) : "…"), fix, bindOffer(id, status));
  }));
}

function renderTablets() {
  const rows = model.tabletRows.filter(r => !r.tablet.revoked_at_ms);
  const connected = rows.filter(r => r.connected).length;
  document.getElementById("tablets-summary").textContent = t("tablets.connected", { c: connected, n: rows.length });
  const items = rows.map(r => {
    const s = r.status || {};
    const facts = [t(r.connected ? "tablets.online" : "tablets.offline")];
    if (s.battery != null) facts.push(t("tablets.battery", { b: s.battery }));
    if (s.locked) facts.push(t("tablets.locked"));
    if (s.hand_raised) facts.push(t("tablets.hand"));
    return el("li", { "data-tablet-id": r.tablet.tablet_id }, `${r.tablet.name} · ${facts.join(" · ")}`);
  });
  document.getElementById("tablets-list").replaceChildren(...(items.length ? items : [el("li", {}, t("tablets.none"))]));
}

function renderRoom() {
  document.getElementById("devices").replaceChildren(...model.devices.map(d => {
    const card = el("div", { class: "card device", "data-device": d.name },
      el("h2", {}, `${t(`room.${d.kind}`)} · ${d.name}`),
      el("p", { class: "state" }, t(d.online === false ? "room.offline" : d.on ? "room.is_on" : "room.is_off")));
    const actions = el("div", { class: "actions" });
    const button = (label, action) => { const b = el("button", { type: "button" }, t(label)); b.addEventListener("click", action); actions.append(b); };
    if (d.kind === "bell") button("room.ring", () => act("POST", "/api/bell/ring", { device: d.name }, loadDevices));
    else {
      button("room.on", () => act("POST", `/api/lights/${encodeURIComponent(d.zone || d.name)}`, { on: true }, loadDevices));
      button("room.off", () => act("POST", `/api/lights/${encodeURIComponent(d.zone || d.name)}`, { on: false }, loadDevices));
    }
    card.append(actions);
    return card;
  }));
  const list = document.getElementById("actuations");
  const items = model.actuations.map(a => el("li", {}, `${a.device} · ${a.command} · ${a.outcome}`));
  list.replaceChildren(...(items.length ? items : [el("li", {}, t("room.none"))]));
}

// A subsystem's name for people: `device.<name>` is one of the room's devices.
function partName(part) {
  if (part.startsWith("device.")) return `${t("part.device")} ${part.slice("device.".length)}`;
  return t(`part.${part}`) === `part.${part}` ? part : t(`part.${part}`);
}

function renderStatus() {
  const rows = Object.entries(model.health).map(([part, r]) => el("tr", {},
    el("td", {}, partName(part)),
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

// ---- the room's controls

async function act(method, path, body, then) {
  const response = await fetch(path, {
    method, headers: { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  const reply = await response.json().catch(() => ({}));
  if (!response.ok) alert(t("error.generic", { m: reply.message || response.status }));
  if (then) then(reply);
  return reply;
}

async function loadTablets() {
  const response = await fetch("/api/tablets");
  if (response.ok) { model.tabletRows = (await response.json()).tablets; renderTablets(); }
}

async function loadDevices() {
  const response = await fetch("/api/actuators");
  if (response.ok) { model.devices = (await response.json()).devices; renderRoom(); }
}

// A correction asks its reason in a sheet of the page, not the browser's own
// prompt, so the panel's on-screen keyboard can type it.
function correct(personalId, status) {
  const order = ["PRESENT", "LATE", "ABSENT", "EXCUSED"];
  const next = order[(order.indexOf(status) + 1) % order.length];
  const form = document.getElementById("reason-form");
  document.getElementById("reason-what").textContent = t("rollcall.correcting", {
    name: model.pupils.get(personalId) || personalId, from: status ? t(`status.${status}`) : "…", to: t(`status.${next}`) });
  document.getElementById("reason-text").value = "";
  form.onsubmit = event => {
    event.preventDefault();
    form.hidden = true;
    act("POST", "/api/attendance/correct", { personal_id: personalId, status: next, reason: document.getElementById("reason-text").value });
  };
  form.hidden = false;
}
document.getElementById("reason-cancel").addEventListener("click", () => { document.getElementById("reason-form").hidden = true; });

document.getElementById("pair-open").addEventListener("click", () => act("POST", "/api/tablets/pairing", undefined, reply => {
  if (!reply.window) return;
  document.getElementById("pairing").hidden = false;
  document.getElementById("pair-code").textContent = reply.window.code;
  document.getElementById("pair-qr").src = `${reply.qr_svg}?code=${reply.window.code}`;
}));
document.getElementById("lock-all").addEventListener("click", () =>
  act("POST", "/api/lesson/lock?wait_ms=3000", { message: t("tablets.lock_message") }, loadTablets));
document.getElementById("unlock-all").addEventListener("click", () => act("POST", "/api/lesson/unlock?wait_ms=3000", {}, loadTablets));
document.getElementById("message-form").addEventListener("submit", event => {
  event.preventDefault();
  act("POST", "/api/lesson/message", { text: document.getElementById("message-text").value });
});
document.getElementById("open-form").addEventListener("submit", event => {
  event.preventDefault();
  const target = document.getElementById("open-url").value.trim();
  act("POST", "/api/lesson/open", /^https?:\/\//.test(target) ? { url: target } : { file: target });
});

// ---- wiring

async function load() {
  const response = await fetch("/api/panel/state");
  if (response.status === 401) { showLogin(); return; }
  const state = await response.json();
  model.room = state.room; model.health = state.health; model.version = state.version;
  model.clockSynced = state.clock_synced; model.timezone = state.room.timezone || model.timezone;
  model.today = state.today;
  model.pupils = new Map((state.rollcall_pupils || []).map(p => [p.personal_id, p.full_name]));
  model.devices = state.devices || [];
  for (const record of state.recent) apply(record, false);
  if (state.rollcall) {
    // The roll call comes whole, whatever the window of recent records held.
    model.session = state.rollcall.session.payload;
    model.marks = new Map(state.rollcall.marks.map(m => [m.personal_id, m]));
  }
  model.lastSeq = state.last_seq;
  render();
  listen(model.lastSeq);
  loadTablets();
  loadGroups();
}

// The feed resumes after `after`; the browser's own reconnects resume after the
// last record received (Last-Event-ID, which the agent prefers to `after`).
function listen(after) {
  const source = new EventSource(`/api/panel/events?after=${after}`);
  const offline = document.getElementById("offline");
  source.addEventListener("open", () => { offline.hidden = true; });
  source.addEventListener("error", () => { offline.hidden = false; });
  source.addEventListener("hello", e => { model.health = JSON.parse(e.data).health; render(); });
  source.addEventListener("health", e => { model.health = JSON.parse(e.data); render(); });
  source.addEventListener("record", e => { apply(JSON.parse(e.data), true); render(); });
  source.addEventListener("devices", e => { model.devices = JSON.parse(e.data); renderRoom(); });
  source.addEventListener("class", e => {
    classState.view = JSON.parse(e.data);
    renderClass();
    if (model.view === "rollcall") renderRollcall();
  });
  source.addEventListener("quiz", e => quizShow(JSON.parse(e.data)));
  // The room's database was replaced: what this page holds no longer matches it.
  source.addEventListener("reset", () => { source.close(); location.reload(); });
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
  if (!view) return;
  model.view = view;
  if (view === "tablets") loadTablets();
  if (view === "room") loadDevices();
  render();
});

document.getElementById("lang").addEventListener("click", () => {
  model.lang = model.lang === "vi" ? "en" : "vi";
  localStorage.setItem("panel.lang", model.lang);
  render(); tickClock();
});

wireClassView();
setInterval(() => { tickClock(); renderNow(); }, 1000);
tickClock();
render();
load();
