// Questions as teachers use them, on the panel's "Câu hỏi" tab: a question of
// any kind (one choice, several choices, true/false, short answer) with an
// optional time limit, asked of the whole class, the tiles chosen in the class
// view or a saved group; question sets from the content store run one after
// another; the results live, per choice and per pupil, with the time left;
// and the lesson's summary as Excel or CSV, one touch each.
//
// Design: the agent keeps the time and the answers. This page never asks for
// them: the live feed sends the whole view (a `quiz` event) when the page
// connects and whenever it changes, at most a few times a second, and the page
// counts the seconds left down between two views.
"use strict";

const QUIZ_TEXT = {
  vi: {
    "quiz.kind": "Loại câu hỏi", "quiz.single_choice": "Một lựa chọn", "quiz.multiple_choice": "Nhiều lựa chọn",
    "quiz.true_false": "Đúng / Sai", "quiz.short_answer": "Trả lời ngắn", "quiz.prompt": "Câu hỏi",
    "quiz.choices": "Các lựa chọn (chạm ✓ để đánh dấu đáp án đúng)", "quiz.accepted": "Đáp án chấp nhận, cách nhau bởi dấu ;",
    "quiz.true": "Đúng", "quiz.false": "Sai", "quiz.correct": "Đáp án đúng", "quiz.time": "Thời gian",
    "quiz.no_limit": "Không giới hạn", "quiz.seconds": "{n} giây", "quiz.audience": "Hỏi ai",
    "quiz.class": "Cả lớp", "quiz.chosen": "Máy đã chọn ({n})", "quiz.group": "Nhóm…", "quiz.start": "Bắt đầu",
    "quiz.stop": "Kết thúc", "quiz.sets": "Bộ câu hỏi soạn sẵn", "quiz.run": "Chạy bộ câu hỏi",
    "quiz.next": "Câu tiếp theo ▶", "quiz.progress": "{title}: câu {given}/{total}", "quiz.none_sets": "Chưa có bộ câu hỏi nào",
    "quiz.left": "⏱ Còn {n} giây", "quiz.time_up": "⏱ Hết giờ", "quiz.closed": "Đã kết thúc",
    "quiz.results": "{answers}/{asked} đã trả lời · {correct}% đúng · {late} trả lời muộn",
    "quiz.pupil": "Học sinh", "quiz.answered": "Đã trả lời", "quiz.answer": "Câu trả lời", "quiz.right": "Đúng/Sai",
    "quiz.taken": "Thời gian", "quiz.yes": "Có", "quiz.no": "Chưa", "quiz.summary": "Tổng kết tiết học",
    "quiz.xlsx": "Tải Excel", "quiz.csv": "Tải CSV", "quiz.no_question": "Chưa có câu hỏi nào.",
    "quiz.nobody": "(chưa gắn học sinh)",
  },
  en: {
    "quiz.kind": "Kind", "quiz.single_choice": "One choice", "quiz.multiple_choice": "Several choices",
    "quiz.true_false": "True / False", "quiz.short_answer": "Short answer", "quiz.prompt": "Question",
    "quiz.choices": "Choices (touch ✓ to mark the correct ones)", "quiz.accepted": "Accepted answers, separated by ;",
    "quiz.true": "True", "quiz.false": "False", "quiz.correct": "Correct answer", "quiz.time": "Time",
    "quiz.no_limit": "No limit", "quiz.seconds": "{n} s", "quiz.audience": "Ask",
    "quiz.class": "Whole class", "quiz.chosen": "Chosen tablets ({n})", "quiz.group": "Group…", "quiz.start": "Start",
    "quiz.stop": "Stop", "quiz.sets": "Prepared question sets", "quiz.run": "Run the set",
    "quiz.next": "Next question ▶", "quiz.progress": "{title}: question {given}/{total}", "quiz.none_sets": "No question sets yet",
    "quiz.left": "⏱ {n} s left", "quiz.time_up": "⏱ Time is up", "quiz.closed": "Stopped",
    "quiz.results": "{answers}/{asked} answered · {correct}% correct · {late} late",
    "quiz.pupil": "Pupil", "quiz.answered": "Answered", "quiz.answer": "Answer", "quiz.right": "Right/Wrong",
    "quiz.taken": "Time", "quiz.yes": "Yes", "quiz.no": "Not yet", "quiz.summary": "Lesson summary",
    "quiz.xlsx": "Download Excel", "quiz.csv": "Download CSV", "quiz.no_question": "No question yet.",
    "quiz.nobody": "(no pupil bound)",
  },
};

const quiz = {
  kind: "single_choice",
  correct: new Set(),     // choice ids marked correct in the form
  limit: 0,               // seconds; 0 for none
  audience: "class",      // "class", "chosen" or "group"
  group: "",
  live: null,             // the newest view from the feed
  endsAt: 0,              // when the open question's time is up, on this page's clock
  sets: [],
};

const QUIZ_KINDS = ["single_choice", "multiple_choice", "true_false", "short_answer"];
const QUIZ_LIMITS = [0, 15, 30, 60, 120];
const QUIZ_LETTERS = ["A", "B", "C", "D"];

function quizAudience() {
  if (quiz.audience === "chosen" && classState.chosen.size) return { tablets: [...classState.chosen] };
  if (quiz.audience === "group" && quiz.group) return { group: quiz.group };
  return undefined;
}

function quizToggle(label, pressed, onPress, attrs) {
  const button = el("button", { type: "button", class: "quiz-toggle", "aria-pressed": String(pressed), ...attrs }, label);
  button.addEventListener("click", onPress);
  return button;
}

function renderQuizForm() {
  const form = document.getElementById("quiz-form");
  const kinds = el("div", { class: "quiz-row", role: "group", "aria-label": t("quiz.kind") },
    ...QUIZ_KINDS.map(kind => quizToggle(t(`quiz.${kind}`), quiz.kind === kind, () => {
      quiz.kind = kind; quiz.correct.clear(); renderQuizForm();
    }, { "data-kind": kind })));
  let answers;
  if (quiz.kind === "true_false") {
    answers = el("div", { class: "quiz-row", role: "group", "aria-label": t("quiz.correct") },
      ...["true", "false"].map(id => quizToggle(t(`quiz.${id}`), quiz.correct.has(id), () => {
        quiz.correct = new Set([id]); renderQuizForm();
      }, { "data-correct": id })));
  } else if (quiz.kind === "short_answer") {
    answers = el("label", {}, t("quiz.accepted"), el("input", { id: "quiz-accepted", type: "text", maxlength: "300" }));
  } else {
    answers = el("div", { class: "quiz-choices" }, el("span", {}, t("quiz.choices")),
      ...QUIZ_LETTERS.map(id => el("div", { class: "quiz-choice" },
        quizToggle(`✓ ${id}`, quiz.correct.has(id), () => {
          if (quiz.kind === "single_choice") quiz.correct.clear();
          quiz.correct.has(id) ? quiz.correct.delete(id) : quiz.correct.add(id);
          renderQuizForm();
        }, { "data-correct": id }),
        el("input", { id: `quiz-choice-${id}`, type: "text", maxlength: "200", value: id }))));
  }
  const limits = el("div", { class: "quiz-row", role: "group", "aria-label": t("quiz.time") },
    ...QUIZ_LIMITS.map(n => quizToggle(n ? t("quiz.seconds", { n }) : t("quiz.no_limit"), quiz.limit === n,
      () => { quiz.limit = n; renderQuizForm(); }, { "data-limit": String(n) })));
  const groups = el("select", { id: "quiz-group", "aria-label": t("quiz.group") },
    el("option", { value: "" }, t("quiz.group")), ...classState.groups.map(g => el("option", { value: g.name }, g.name)));
  groups.value = quiz.group;
  groups.addEventListener("change", () => { quiz.group = groups.value; quiz.audience = groups.value ? "group" : "class"; renderQuizForm(); });
  const audience = el("div", { class: "quiz-row", role: "group", "aria-label": t("quiz.audience") },
    quizToggle(t("quiz.class"), quiz.audience === "class", () => { quiz.audience = "class"; renderQuizForm(); }, { "data-audience": "class" }),
    quizToggle(t("quiz.chosen", { n: classState.chosen.size }), quiz.audience === "chosen", () => { quiz.audience = "chosen"; renderQuizForm(); }, { "data-audience": "chosen" }),
    groups);
  // The prompt and the choices' texts survive a re-render: they are kept by id.
  const kept = new Map([...form.querySelectorAll("input[id]")].map(input => [input.id, input.value]));
  form.replaceChildren(
    el("label", {}, t("quiz.prompt"), el("input", { id: "quiz-prompt", type: "text", maxlength: "300" })),
    el("span", { class: "quiz-label" }, t("quiz.kind")), kinds, answers,
    el("span", { class: "quiz-label" }, t("quiz.time")), limits,
    el("span", { class: "quiz-label" }, t("quiz.audience")), audience,
    el("div", { class: "actions" },
      el("button", { type: "submit", class: "primary", id: "quiz-start" }, t("quiz.start")),
      el("button", { type: "button", id: "quiz-stop" }, t("quiz.stop"))));
  for (const [id, value] of kept) { const input = document.getElementById(id); if (input) input.value = value; }
  document.getElementById("quiz-stop").addEventListener("click", quizStop);
}

function quizQuestion() {
  const prompt = document.getElementById("quiz-prompt").value.trim();
  const question = { id: `q-${Date.now().toString(36)}`, question_kind: quiz.kind, prompt };
  if (quiz.kind === "true_false") {
    question.choices = [{ id: "true", text: "Đúng" }, { id: "false", text: "Sai" }];
    question.correct = [...quiz.correct];
  } else if (quiz.kind === "short_answer") {
    question.correct = document.getElementById("quiz-accepted").value.split(";").map(s => s.trim()).filter(Boolean);
  } else {
    question.choices = QUIZ_LETTERS.map(id => ({ id, text: document.getElementById(`quiz-choice-${id}`).value.trim() || id }));
    question.correct = [...quiz.correct];
  }
  if (quiz.limit) question.time_limit_s = quiz.limit;
  const to = quizAudience();
  if (to) question.to = to;
  return question;
}

async function quizStart(event) {
  event.preventDefault();
  await act("POST", "/api/lesson/question/start", quizQuestion());
}

async function quizStop() {
  const results = quiz.live && quiz.live.results;
  if (results && results.open) await act("POST", "/api/lesson/question/stop", { question: results.question.id });
}

async function quizLoadSets() {
  const response = await fetch("/api/lesson/quiz/sets");
  if (!response.ok) return;
  quiz.sets = (await response.json()).sets;
  const select = document.getElementById("quiz-set");
  const chosen = select.value;
  select.replaceChildren(...(quiz.sets.length ? quiz.sets : [null]).map(set => set
    ? el("option", { value: set.file }, set.problems ? `⚠ ${set.file}` : `${set.title || set.file} (${set.questions})`)
    : el("option", { value: "" }, t("quiz.none_sets"))));
  if (chosen) select.value = chosen;
}

async function quizRunSet() {
  const file = document.getElementById("quiz-set").value;
  if (!file) return;
  const to = quizAudience();
  await act("POST", "/api/lesson/quiz/run", to ? { file, to } : { file });
}

async function quizNext() {
  const to = quizAudience();
  await act("POST", "/api/lesson/quiz/next", to ? { to } : {});
}

// A view from the feed's `quiz` event.
function quizShow(live) {
  quiz.live = live;
  quiz.endsAt = live.time_left_ms == null ? 0 : Date.now() + live.time_left_ms;
  renderQuizLive();
}

function quizCountdownText() {
  const results = quiz.live && quiz.live.results;
  if (!results) return "";
  if (results.time_up) return t("quiz.time_up");
  if (!results.open) return t("quiz.closed");
  if (!quiz.endsAt) return "";
  const left = Math.max(0, Math.ceil((quiz.endsAt - Date.now()) / 1000));
  return left ? t("quiz.left", { n: left }) : t("quiz.time_up");
}

function renderQuizLive() {
  const box = document.getElementById("quiz-live");
  const live = quiz.live;
  const run = live && live.run;
  document.getElementById("quiz-progress").textContent = run
    ? t("quiz.progress", { title: run.title || run.file, given: run.given, total: run.total }) : "";
  document.getElementById("quiz-next").disabled = !run || run.given >= run.total;
  if (!live || !live.results) { box.replaceChildren(el("p", {}, t("quiz.no_question"))); return; }
  const results = live.results;
  const question = results.question;
  const answers = results.answers.length;
  const graded = (question.correct || []).length > 0 || results.correct > 0;
  const asked = live.pupils.length;
  const percent = answers ? Math.round(100 * results.correct / answers) : 0;
  const bars = (question.choices || []).map(choice => {
    const n = results.tally[choice.id] || 0;
    return el("div", { class: "quiz-bar", "data-choice": choice.id },
      el("span", { class: "quiz-bar-label" }, `${choice.id === "true" || choice.id === "false" ? "" : choice.id + ". "}${choice.text}`),
      el("span", { class: "quiz-bar-fill", style: `width: ${answers ? Math.round(100 * n / answers) : 0}%` }),
      el("span", { class: "quiz-bar-count" }, String(n)));
  });
  const rows = live.pupils.map(p => el("tr", { "data-tablet": p.tablet_id, class: p.answered ? "answered" : "" },
    el("td", {}, p.pupil || `${p.tablet} ${t("quiz.nobody")}`),
    el("td", {}, p.answered ? t("quiz.yes") : t("quiz.no")),
    el("td", { class: "quiz-given" }, p.answered ? (p.text || (p.choices || []).map(id => id === "true" ? t("quiz.true") : id === "false" ? t("quiz.false") : id).join(", ")) : ""),
    el("td", { class: "quiz-right" }, p.correct === true ? "✓" : p.correct === false ? "✗" : ""),
    el("td", {}, p.answered ? `${(p.time_to_answer_ms / 1000).toFixed(1)} s` : "")));
  box.replaceChildren(
    el("h2", { id: "quiz-question" }, question.prompt),
    el("p", { id: "quiz-countdown", class: "quiz-countdown" }, quizCountdownText()),
    el("p", { id: "quiz-results", class: "summary" }, t("quiz.results", { answers, asked, correct: graded ? percent : "–", late: results.late })),
    el("div", { class: "quiz-bars" }, ...bars),
    el("table", { id: "quiz-pupils", class: "quiz-pupils" },
      el("thead", {}, el("tr", {}, ...["quiz.pupil", "quiz.answered", "quiz.answer", "quiz.right", "quiz.taken"].map(k => el("th", {}, t(k))))),
      el("tbody", {}, ...rows)));
}

function wireQuiz() {
  for (const lang of Object.keys(QUIZ_TEXT)) Object.assign(TEXT[lang], QUIZ_TEXT[lang]);
  const view = document.getElementById("view-questions");
  view.classList.add("quiz-view");
  const form = el("form", { id: "quiz-form", class: "quiz-form" });
  form.addEventListener("submit", quizStart);
  const sets = el("div", { class: "quiz-sets" },
    el("h2", {}, t("quiz.sets")),
    el("div", { class: "quiz-row" },
      el("select", { id: "quiz-set", "aria-label": t("quiz.sets") }),
      el("button", { type: "button", id: "quiz-run", class: "primary" }, t("quiz.run")),
      el("button", { type: "button", id: "quiz-next" }, t("quiz.next"))),
    el("p", { id: "quiz-progress", class: "summary" }));
  const summary = el("div", { class: "quiz-summary" },
    el("h2", {}, t("quiz.summary")),
    el("div", { class: "quiz-row" },
      el("a", { id: "quiz-xlsx", class: "button", href: "/api/lesson/summary?format=xlsx", download: "" }, t("quiz.xlsx")),
      el("a", { id: "quiz-csv", class: "button", href: "/api/lesson/summary?format=csv", download: "" }, t("quiz.csv"))));
  view.append(el("div", { class: "quiz-columns" },
    el("div", { class: "quiz-ask" }, form, sets, summary),
    el("div", { id: "quiz-live", class: "quiz-live" })));
  sets.querySelector("#quiz-run").addEventListener("click", quizRunSet);
  sets.querySelector("#quiz-next").addEventListener("click", quizNext);
  renderQuizForm();
  quizLoadSets();
  renderQuizLive();
  setInterval(() => {
    const shown = document.getElementById("quiz-countdown");
    if (shown) shown.textContent = quizCountdownText();
  }, 250);
  document.querySelector('.tabs button[data-view="questions"]').addEventListener("click", () => { quizLoadSets(); renderQuizForm(); });
}

wireQuiz();
