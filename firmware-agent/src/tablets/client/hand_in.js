// Hand-in from the tablet: a photo from the camera, a drawing on the page or
// a text, posted to the agent over HTTP with the tablet's token (see
// hand_in.rs). The agent checks, shrinks and keeps it; the reply's message,
// in Vietnamese, is shown to the pupil as it is.
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);
  const make = (tag, attributes = {}, text = "") => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    if (text) node.textContent = text;
    return node;
  };

  const section = make("section", { id: "hand-in" });
  section.append(make("h2", {}, "Nộp bài"));
  const choices = make("div", { class: "hand-in-choices" });
  const photoLabel = make("label", { class: "button", for: "hand-in-photo" }, "📷 Chụp ảnh");
  const photo = make("input", { id: "hand-in-photo", type: "file", accept: "image/*", capture: "environment", hidden: "" });
  const drawButton = make("button", { id: "hand-in-draw", type: "button" }, "✏️ Vẽ");
  const writeButton = make("button", { id: "hand-in-write", type: "button" }, "📝 Viết");
  choices.append(photoLabel, photo, drawButton, writeButton);

  const drawing = make("div", { id: "hand-in-drawing", hidden: "" });
  const canvas = make("canvas", { id: "hand-in-canvas", width: "800", height: "500" });
  const clear = make("button", { id: "hand-in-clear", type: "button" }, "Xóa hình");
  const sendDrawing = make("button", { id: "hand-in-send-drawing", type: "button", class: "primary" }, "Nộp hình vẽ");
  drawing.append(canvas, make("br"), clear, sendDrawing);

  const writing = make("div", { id: "hand-in-writing", hidden: "" });
  const text = make("textarea", { id: "hand-in-text", rows: "5", maxlength: "10000" });
  const sendText = make("button", { id: "hand-in-send-text", type: "button", class: "primary" }, "Nộp bài viết");
  writing.append(text, make("br"), sendText);

  const state = make("p", { id: "hand-in-state", role: "status" });
  section.append(choices, drawing, writing, state);
  byId("lesson").insertBefore(section, byId("raise-hand"));

  const pen = canvas.getContext("2d");
  function blank() {
    pen.fillStyle = "#fff";
    pen.fillRect(0, 0, canvas.width, canvas.height);
  }
  blank();
  pen.lineWidth = 4;
  pen.lineCap = "round";
  pen.strokeStyle = "#1b1f24";
  let drawn = false;
  let last = null;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => { canvas.setPointerCapture(event.pointerId); last = at(event); });
  canvas.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = at(event);
    pen.beginPath();
    pen.moveTo(...last);
    pen.lineTo(...next);
    pen.stroke();
    last = next;
    drawn = true;
  });
  const lift = () => { last = null; };
  canvas.addEventListener("pointerup", lift);
  canvas.addEventListener("pointercancel", lift);
  canvas.style.touchAction = "none";

  drawButton.addEventListener("click", () => { drawing.hidden = !drawing.hidden; writing.hidden = true; });
  writeButton.addEventListener("click", () => { writing.hidden = !writing.hidden; drawing.hidden = true; });
  clear.addEventListener("click", () => { blank(); drawn = false; });

  function show(message, ok) {
    state.textContent = message;
    state.className = ok ? "sent" : "refused";
  }

  let sending = false;
  async function send(body) {
    if (sending) return false;
    sending = true;
    show("Đang gửi bài…", true);
    try {
      const response = await fetch("/tablet/hand-in", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${localStorage.getItem("classroom.token")}` },
        body: JSON.stringify(body),
      });
      const reply = await response.json().catch(() => ({}));
      if (!response.ok) {
        show(reply.message || "Chưa nộp được bài. Em hãy thử lại.", false);
        return false;
      }
      show("Đã nộp bài ✓", true);
      section.dataset.lastHandIn = reply.hand_in_id;
      return true;
    } catch (_) {
      show("Mất kết nối, bài chưa được gửi. Em hãy thử lại.", false);
      return false;
    } finally {
      sending = false;
    }
  }

  const base64Of = (dataUrl) => dataUrl.slice(dataUrl.indexOf(",") + 1);

  photo.addEventListener("change", () => {
    const file = photo.files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => { send({ kind: "photo", image: base64Of(reader.result) }).finally(() => { photo.value = ""; }); };
    reader.onerror = () => show("Không đọc được ảnh. Em hãy chụp lại.", false);
    reader.readAsDataURL(file);
  });
  sendDrawing.addEventListener("click", async () => {
    if (!drawn) { show("Em hãy vẽ trước khi nộp.", false); return; }
    if (await send({ kind: "drawing", image: base64Of(canvas.toDataURL("image/png")) })) { blank(); drawn = false; }
  });
  sendText.addEventListener("click", async () => {
    if (!text.value.trim()) { show("Em chưa viết gì để nộp.", false); return; }
    if (await send({ kind: "text", text: text.value })) text.value = "";
  });
})();
