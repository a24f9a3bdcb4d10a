// The question's countdown on the tablet: the seconds left of a question with
// a time limit, counted from when the question reached the tablet (or from its
// start, when the tablet caught up on reconnecting). The agent's clock decides:
// an answer it receives late is refused whatever this shows, and its
// `question_stop` ends the question here.
"use strict";

const quizCountdown = { timer: null, endsAt: 0 };

function quizShowTimeLeft() {
  const left = Math.max(0, Math.ceil((quizCountdown.endsAt - Date.now()) / 1000));
  const shown = document.getElementById("time-left");
  shown.textContent = left > 0 ? `⏱ Còn ${left} giây` : "⏱ Hết giờ";
  shown.className = left > 0 && left <= 5 ? "hurry" : "";
  if (left === 0) {
    clearInterval(quizCountdown.timer);
    document.getElementById("send-answer").disabled = true;
  }
}

// Called by tablet.js whenever a question is shown: `startedAt` is given on catching up.
function quizShown(q, startedAt) {
  clearInterval(quizCountdown.timer);
  const shown = document.getElementById("time-left");
  shown.textContent = "";
  if (!q.time_limit_s) return;
  const elapsed = startedAt ? Math.min(Math.max(0, Date.now() - Date.parse(startedAt)), q.time_limit_s * 1000) : 0;
  quizCountdown.endsAt = Date.now() + q.time_limit_s * 1000 - elapsed;
  quizShowTimeLeft();
  quizCountdown.timer = setInterval(quizShowTimeLeft, 250);
}

function quizHidden() {
  clearInterval(quizCountdown.timer);
  document.getElementById("time-left").textContent = "";
}
