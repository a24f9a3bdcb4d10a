// The class at a glance: every paired tablet as a tile, laid out in the
// roster's order, live from the feed's `class` events. Touching tiles (or a
// saved group) chooses them; the command buttons then act on the chosen tiles
// only, or on the whole class when none is chosen. A tile's "⋯" opens what the
// teacher may change about that tablet: its name, its pupil, its pairing.
// Loaded before app.js, whose helpers (t, el, act, model) it uses when called.
"use strict";

const CLASS_TEXT = {
  vi: {
    "tab.class": "Cả lớp", "class.title": "Cả lớp",
    "class.summary": "{c}/{n} máy kết nối · {w} rời bài học · {h} giơ tay · {l} đã khóa · {a} đã trả lời",
    "class.none": "Chưa có máy tính bảng nào được ghép nối.",
    "class.chosen": "Đã chọn {n} máy", "class.all": "Lệnh gửi cho cả lớp", "class.choose_none": "Bỏ chọn",
    "class.text": "Nội dung tin nhắn hoặc địa chỉ tài liệu", "class.message": "Gửi tin nhắn", "class.open": "Mở tài liệu",
    "class.group_name": "Tên nhóm", "class.group_save": "Lưu nhóm", "class.group_delete": "Xóa nhóm",
    "class.online": "trực tuyến", "class.offline": "ngoại tuyến", "class.locked": "🔒 đã khóa",
    "class.disagrees": "⚠ máy báo khác lệnh khóa", "class.away": "⚠ rời bài học", "class.hand": "✋ giơ tay",
    "class.battery": "pin {b}%", "class.showing": "Đang mở: {x}", "class.question": "Câu hỏi {q}: {s}",
    "class.answered": "đã trả lời", "class.not_answered": "chưa trả lời", "class.more": "Thêm",
    "class.nobody": "Chưa có học sinh", "class.rename": "Đổi tên máy", "class.bind": "Gán học sinh",
    "class.unbind": "Bỏ gán", "class.revoke": "Thu hồi máy", "class.close": "Đóng",
    "class.revoke_confirm": "Thu hồi máy này? Máy phải ghép nối lại mới dùng được.",
    "class.bind_offer": "Gán máy…", "class.pupil": "Học sinh",
    "class.follows": "Theo cô/thầy: {x}, trang {p}",
  },
  en: {
    "tab.class": "Class", "class.title": "The class",
    "class.summary": "{c}/{n} tablets connected · {w} left the lesson · {h} hands up · {l} locked · {a} answered",
    "class.none": "No tablet paired yet.",
    "class.chosen": "{n} tablets chosen", "class.all": "Commands go to the whole class", "class.choose_none": "Choose none",
    "class.text": "Message text or material address", "class.message": "Send message", "class.open": "Open material",
    "class.group_name": "Group name", "class.group_save": "Save group", "class.group_delete": "Delete group",
    "class.online": "online", "class.offline": "offline", "class.locked": "🔒 locked",
    "class.disagrees": "⚠ tablet reports another lock", "class.away": "⚠ left the lesson", "class.hand": "✋ hand up",
    "class.battery": "battery {b}%", "class.showing": "Showing: {x}", "class.question": "Question {q}: {s}",
    "class.answered": "answered", "class.not_answered": "not answered", "class.more": "More",
    "class.nobody": "No pupil yet", "class.rename": "Rename tablet", "class.bind": "Bind pupil",
    "class.unbind": "Unbind", "class.revoke": "Revoke tablet", "class.close": "Close",
    "class.revoke_confirm": "Revoke this tablet? It must pair again to be used.",
    "class.bind_offer": "Bind a tablet…", "class.pupil": "Pupil",
    "class.follows": "Follows: {x}, page {p}",
  },
};

const classState = {
  view: null,           // the newest `class` event: { lesson_id, tiles, counts }
  chosen: new Set(),    // tablet ids the teacher touched
  group: null,          // the group whose tiles are chosen, while the choice is exactly it
  groups: [],           // the saved groups: [{ name, tablet_ids }]
  detail: null,         // the tablet id whose "⋯" is open
};

function tileFacts(tile) {
  const s = tile.status || {};
  const facts = [[tile.connected ? "class.online" : "class.offline", "link"]];
  if (tile.locked) facts.push(["class.locked", "locked"]);
  if (tile.lock_disagrees) facts.push(["class.disagrees", "disagrees"]);
  if (tile.away) facts.push(["class.away", "away"]);
  if (s.hand_raised) facts.push(["class.hand", "hand"]);
  const out = facts.map(([key, kind]) => el("span", { class: `fact ${kind}` }, t(key)));
  if (s.battery != null) out.push(el("span", { class: "fact battery" }, t("class.battery", { b: s.battery })));
  return out;
}

function tileShows(tile) {
  const lines = [];
  if (tile.open) lines.push(t("class.showing", { x: tile.open }));
  if (tile.follow) lines.push(t("class.follows", { x: tile.follow.file, p: tile.follow.page }));
  if (tile.question) lines.push(t("class.question", { q: tile.question.id, s: t(tile.question.answered ? "class.answered" : "class.not_answered") }));
  return lines.join(" · ");
}

function renderTile(tile) {
  const chosen = classState.chosen.has(tile.tablet_id);
  const classes = ["tile", tile.connected ? "connected" : "disconnected"];
  if (tile.away) classes.push("away");
  if (chosen) classes.push("chosen");
  const more = el("button", { type: "button", class: "more", "aria-label": t("class.more") }, "⋯");
  more.addEventListener("click", event => { event.stopPropagation(); classState.detail = tile.tablet_id; renderClass(); });
  const node = el("div", {
    class: classes.join(" "), role: "button", "aria-pressed": String(chosen), "data-tablet-id": tile.tablet_id,
    "data-connected": String(tile.connected), "data-away": String(tile.away), "data-locked": String(tile.locked),
    "data-answered": String(!!(tile.question && tile.question.answered)),
  },
  el("div", { class: "who" }, tile.pupil_full_name || t("class.nobody")),
  el("div", { class: "device" }, tile.name),
  el("div", { class: "facts" }, ...tileFacts(tile)),
  el("div", { class: "shows" }, tileShows(tile)), more);
  node.addEventListener("click", () => {
    if (classState.chosen.has(tile.tablet_id)) classState.chosen.delete(tile.tablet_id); else classState.chosen.add(tile.tablet_id);
    classState.group = null;
    renderClass();
  });
  return node;
}

function renderDetail() {
  const box = document.getElementById("tile-detail");
  const tile = classState.view && classState.view.tiles.find(x => x.tablet_id === classState.detail);
  box.hidden = !tile;
  if (!tile) { box.replaceChildren(); delete box.dataset.shows; return; }
  // Redrawn only when the tablet changed, so a choice being made there survives the feed's updates.
  const shows = JSON.stringify([tile.tablet_id, tile.name, tile.pupil_personal_id, model.lang]);
  if (box.dataset.shows === shows) return;
  box.dataset.shows = shows;
  const name = el("input", { id: "detail-name", type: "text", maxlength: "64", "aria-label": t("class.rename") });
  name.value = tile.name;
  const rename = el("button", { type: "button", id: "detail-rename" }, t("class.rename"));
  rename.addEventListener("click", () => act("POST", `/api/tablets/${tile.tablet_id}/rename`, { name: name.value }));
  const pupils = el("select", { id: "detail-pupil", "aria-label": t("class.pupil") },
    ...[...model.pupils.entries()].map(([id, fullName]) => el("option", { value: id }, fullName)));
  if (tile.pupil_personal_id) pupils.value = tile.pupil_personal_id;
  const bind = el("button", { type: "button", id: "detail-bind" }, t("class.bind"));
  bind.addEventListener("click", () => act("POST", `/api/tablets/${tile.tablet_id}/bind`, { pupil_personal_id: pupils.value }));
  const unbind = el("button", { type: "button", id: "detail-unbind" }, t("class.unbind"));
  unbind.addEventListener("click", () => act("POST", `/api/tablets/${tile.tablet_id}/bind`, { pupil_personal_id: null }));
  const revoke = el("button", { type: "button", id: "detail-revoke" }, t("class.revoke"));
  revoke.addEventListener("click", () => {
    if (!confirm(t("class.revoke_confirm"))) return;
    classState.chosen.delete(tile.tablet_id);
    classState.detail = null;
    act("POST", `/api/tablets/${tile.tablet_id}/revoke`);
  });
  const close = el("button", { type: "button", id: "detail-close" }, t("class.close"));
  close.addEventListener("click", () => { classState.detail = null; renderClass(); });
  box.replaceChildren(el("h2", {}, `${tile.pupil_full_name || t("class.nobody")} · ${tile.name}`),
    name, rename, pupils, bind, unbind, revoke, close);
}

function renderGroups() {
  const chips = classState.groups.map(group => {
    const chip = el("button", { type: "button", class: "group", "data-group": group.name, "aria-pressed": String(classState.group === group.name) }, group.name);
    chip.addEventListener("click", () => {
      classState.chosen = new Set(group.tablet_ids);
      classState.group = group.name;
      renderClass();
    });
    return chip;
  });
  document.getElementById("class-groups").replaceChildren(...chips);
  document.getElementById("group-delete").hidden = !classState.group;
}

function renderClass() {
  const view = classState.view;
  if (!view || !document.getElementById("view-class")) return;
  const known = new Set(view.tiles.map(tile => tile.tablet_id));
  for (const id of classState.chosen) if (!known.has(id)) classState.chosen.delete(id);
  document.getElementById("class-summary").textContent = view.tiles.length
    ? t("class.summary", { c: view.connected, n: view.tiles.length, w: view.away, h: view.hands, l: view.locked, a: view.answered })
    : t("class.none");
  document.getElementById("class-lesson").textContent = view.lesson_id;
  document.getElementById("class-chosen").textContent = classState.chosen.size
    ? t("class.chosen", { n: classState.chosen.size }) : t("class.all");
  document.getElementById("class-tiles").replaceChildren(...view.tiles.map(renderTile));
  renderGroups();
  renderDetail();
}

// Who a command from the class view is for: the chosen group by its name, the chosen tiles, or everyone.
function classAudience() {
  if (classState.group) return { group: classState.group };
  if (classState.chosen.size) return { tablets: [...classState.chosen] };
  return undefined;
}

function classCommand(action, fields) {
  const to = classAudience();
  act("POST", `/api/lesson/${action}?wait_ms=3000`, to ? { ...fields, to } : fields);
}

async function loadGroups() {
  const response = await fetch("/api/lesson/groups");
  if (response.ok) { classState.groups = (await response.json()).groups; renderGroups(); }
}

// A present pupil without a tablet is offered the tablets nobody holds, in the roll call's grid.
function bindOffer(personalId, status) {
  const view = classState.view;
  if (!view || !["PRESENT", "LATE"].includes(status)) return "";
  if (view.tiles.some(tile => tile.pupil_personal_id === personalId)) return "";
  const free = view.tiles.filter(tile => !tile.pupil_personal_id);
  if (!free.length) return "";
  const offer = el("select", { class: "bind-offer", "aria-label": t("class.bind_offer") },
    el("option", { value: "" }, t("class.bind_offer")), ...free.map(tile => el("option", { value: tile.tablet_id }, tile.name)));
  offer.addEventListener("change", () => {
    if (offer.value) act("POST", `/api/tablets/${offer.value}/bind`, { pupil_personal_id: personalId });
  });
  return offer;
}

function wireClassView() {
  for (const lang of Object.keys(CLASS_TEXT)) Object.assign(TEXT[lang], CLASS_TEXT[lang]);
  document.getElementById("class-lock").addEventListener("click", () => classCommand("lock", { message: t("tablets.lock_message") }));
  document.getElementById("class-unlock").addEventListener("click", () => classCommand("unlock", {}));
  document.getElementById("class-message").addEventListener("click", () =>
    classCommand("message", { text: document.getElementById("class-text").value }));
  document.getElementById("class-open").addEventListener("click", () => {
    const target = document.getElementById("class-text").value.trim();
    classCommand("open", /^https?:\/\//.test(target) ? { url: target } : { file: target });
  });
  document.getElementById("class-choose-none").addEventListener("click", () => {
    classState.chosen.clear(); classState.group = null; renderClass();
  });
  document.getElementById("group-save").addEventListener("click", async () => {
    const name = document.getElementById("group-name").value.trim();
    const reply = await act("PUT", `/api/lesson/groups/${encodeURIComponent(name)}`, { tablets: [...classState.chosen] });
    if (reply.group) { classState.group = reply.group.name; await loadGroups(); renderClass(); }
  });
  document.getElementById("group-delete").addEventListener("click", async () => {
    if (!classState.group) return;
    await act("DELETE", `/api/lesson/groups/${encodeURIComponent(classState.group)}`);
    classState.group = null; classState.chosen.clear();
    await loadGroups(); renderClass();
  });
}
