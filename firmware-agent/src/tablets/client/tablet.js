// The browser tablet client: pairs with the code the teacher shows, lets the
// pupil choose their name from the class roster, then follows the live
// channel (protocol version 1, see PROTOCOL.md) and tells the agent whether
// the lesson page is in front of the pupil.
"use strict";

const PROTOCOL = 1;
const $ = (id) => document.getElementById(id);
const saved = {
  get token() { return localStorage.getItem("classroom.token"); },
  set token(value) { value ? localStorage.setItem("classroom.token", value) : localStorage.removeItem("classroom.token"); },
  get lastCommand() { return Number(localStorage.getItem("classroom.lastCommand") || 0); },
  set lastCommand(value) { localStorage.setItem("classroom.lastCommand", String(value)); },
};

let socket = null;
let heartbeat = null;
let question = null;
let chosen = new Set();
let locked = false;

function setStatus(online, text) {
  $("status").dataset.state = online ? "online" : "offline";
  $("status").textContent = text;
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function showPairing() {
  $("pairing").hidden = false;
  $("lesson").hidden = true;
  $("choose-pupil").hidden = true;
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("code");
  if (fromLink) $("code").value = fromLink;
}

async function pair() {
  $("pair-error").textContent = "";
  const response = await fetch("/tablet/pair", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ code: $("code").value.trim(), name: $("name").value.trim() }),
  });
  const body = await response.json();
  if (!response.ok) {
    $("pair-error").textContent = body.message || "Không ghép nối được";
    return;
  }
  saved.token = body.token;
  saved.lastCommand = 0;
  history.replaceState(null, "", location.pathname);
  connect();
}

function connect() {
  $("pairing").hidden = true;
  $("lesson").hidden = false;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/tablet/ws`);
  socket.onopen = () => send({ type: "hello", v: PROTOCOL, token: saved.token, last_command: saved.lastCommand });
  socket.onmessage = (event) => receive(JSON.parse(event.data));
  socket.onclose = () => {
    clearInterval(heartbeat);
    setStatus(false, "Mất kết nối, đang thử lại…");
    if (saved.token) setTimeout(connect, 2000);
  };
}

// A tablet nobody holds yet offers the class's names; the pupil touches theirs.
async function offerNames() {
  const response = await fetch("/tablet/roster", { headers: { authorization: `Bearer ${saved.token}` } });
  if (!response.ok) return;
  const roster = await response.json();
  if (roster.pupil || !roster.choices.length) { $("choose-pupil").hidden = true; return; }
  const names = roster.choices.map((choice) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.pupil = choice.pupil;
    button.textContent = choice.full_name;
    button.onclick = () => choosePupil(choice.pupil);
    return button;
  });
  $("pupil-names").replaceChildren(...names);
  $("choose-error").textContent = "";
  $("choose-pupil").hidden = false;
}

async function choosePupil(reference) {
  const response = await fetch("/tablet/pupil", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${saved.token}` },
    body: JSON.stringify({ pupil: reference }),
  });
  const body = await response.json();
  if (!response.ok) {
    $("choose-error").textContent = body.message || "Không chọn được";
    if (body.error === "unknown_pupil" || body.error === "pupil_taken") offerNames();
    return;
  }
  $("choose-pupil").hidden = true;
  $("pupil").textContent = body.pupil;
}

// Whether the lesson page is in front of the pupil: shown, and holding the focus.
function reportPresence() {
  send({ type: "presence", visible: document.visibilityState === "visible", focused: document.hasFocus() });
}

function receive(message) {
  switch (message.type) {
    case "welcome":
      setStatus(true, message.name);
      $("pupil").textContent = message.pupil || "";
      if (!message.pupil) offerNames().catch(() => {});
      reportPresence();
      clearInterval(heartbeat);
      heartbeat = setInterval(() => send({ type: "ping" }), message.heartbeat_s * 1000);
      applyState(message.state);
      for (const envelope of message.missed) {
        if (envelope.command.kind === "message") showMessage(envelope.command.text);
      }
      saved.lastCommand = message.state.last_command;
      reportStatus();
      break;
    case "command":
      apply(message.command);
      saved.lastCommand = message.id;
      send({ type: "ack", id: message.id });
      break;
    case "answer_received":
      $("answer-state").textContent = "Đã gửi câu trả lời ✓";
      $("answer-state").className = "sent";
      $("send-answer").disabled = true;
      break;
    case "error":
      if (message.code === "unauthorized") {
        saved.token = null;
        showPairing();
        $("pair-error").textContent = "Máy này cần ghép nối lại.";
      } else if (question) {
        $("answer-state").textContent = message.detail;
      }
      break;
  }
}

function applyState(state) {
  setLocked(state.locked, state.lock_message);
  if (state.open) apply(state.open);
  if (state.question) {
    showQuestion(state.question.question, state.question.started_at);
    if (state.question.answered) {
      $("answer-state").textContent = "Đã gửi câu trả lời ✓";
      $("answer-state").className = "sent";
      $("send-answer").disabled = true;
    }
  } else {
    hideQuestion();
  }
  classroomFollow.applyState(state.follow);
}

function apply(command) {
  switch (command.kind) {
    case "lock": setLocked(true, command.message); break;
    case "unlock": setLocked(false, ""); break;
    case "message": showMessage(command.text); break;
    case "open": openContent(command.url || "/content/" + command.file.split("/").map(encodeURIComponent).join("/") + "?token=" + encodeURIComponent(saved.token)); break;
    case "question_start": showQuestion(command); break;
    case "question_stop": if (question && question.id === command.question) hideQuestion(); break;
    case "follow": case "page": case "release": classroomFollow.apply(command); break;
  }
}

function setLocked(value, text) {
  locked = value;
  $("lock").hidden = !value;
  $("lock-message").textContent = text || "";
  reportStatus();
}

function reportStatus() {
  const battery = navigator.getBattery ? navigator.getBattery() : Promise.resolve(null);
  battery.then((b) => send({ type: "status", locked, battery: b ? Math.round(b.level * 100) : null })).catch(() => {});
}

function showMessage(text) {
  $("waiting").hidden = true;
  $("message").hidden = false;
  $("message").textContent = text;
}

function openContent(url) {
  $("waiting").hidden = true;
  $("content").hidden = false;
  $("content-link").href = url;
  $("content-frame").src = url;
}

function showQuestion(q, startedAt) {
  question = q;
  quizShown(q, startedAt);
  chosen = new Set();
  $("waiting").hidden = true;
  $("question").hidden = false;
  $("prompt").textContent = q.prompt;
  $("answer-state").textContent = "";
  $("answer-state").className = "";
  $("send-answer").disabled = false;
  const choices = $("choices");
  choices.replaceChildren();
  $("answer-text").hidden = q.question_kind !== "short_answer";
  $("answer-text").value = "";
  for (const choice of q.choices || []) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "choice";
    button.dataset.id = choice.id;
    button.textContent = choice.text;
    button.onclick = () => {
      if (q.question_kind !== "multiple_choice") chosen.clear();
      chosen.has(choice.id) ? chosen.delete(choice.id) : chosen.add(choice.id);
      for (const b of choices.children) b.classList.toggle("chosen", chosen.has(b.dataset.id));
    };
    choices.append(button);
  }
}

function hideQuestion() {
  question = null;
  quizHidden();
  $("question").hidden = true;
}

$("question").onsubmit = (event) => {
  event.preventDefault();
  if (!question) return;
  if (question.question_kind === "short_answer") {
    send({ type: "answer", question: question.id, text: $("answer-text").value });
  } else if (chosen.size === 0) {
    $("answer-state").textContent = "Hãy chọn một đáp án.";
  } else {
    send({ type: "answer", question: question.id, choices: [...chosen] });
  }
};
$("raise-hand").onclick = () => send({ type: "raise_hand" });
document.addEventListener("visibilitychange", reportPresence);
window.addEventListener("focus", reportPresence);
window.addEventListener("blur", reportPresence);
$("pair-button").onclick = () => pair().catch(() => { $("pair-error").textContent = "Không kết nối được với máy của lớp"; });

if (saved.token) connect(); else showPairing();
