// Follow the teacher, on the panel: a touch-first browser of the content
// store's material (PDFs, images, folders of slides); the chosen material
// shown large with big page buttons (and a swipe); one touch makes the class
// (or the tiles or group chosen in the class view) follow, another releases
// them. While they follow, every page turn goes to their tablets; turns made
// faster than the agent answers are sent as the newest page only.
// Loaded before app.js, whose helpers (t, el, act, TEXT, classAudience) it uses when called.
"use strict";

const FOLLOW_TEXT = {
  vi: {
    "tab.follow": "Tài liệu", "follow.title": "Tài liệu bài học",
    "follow.empty": "Kho tài liệu chưa có tệp PDF, ảnh hay thư mục trình chiếu nào.",
    "follow.no_pdfjs": "Chưa cài pdf.js: chưa hiện được tệp PDF (nhờ cán bộ kỹ thuật cài gói libjs-pdf).",
    "follow.back": "◀ Danh sách", "follow.previous": "◀ Trang trước", "follow.next": "Trang sau ▶",
    "follow.page": "Trang {p} / {n}", "follow.lead_class": "Cả lớp theo cô/thầy",
    "follow.lead_some": "{n} máy đã chọn theo cô/thầy", "follow.lead_group": "{g} theo cô/thầy",
    "follow.release": "Cho các em tự xem", "follow.following": "Đang dẫn: {n} máy theo trang này",
    "follow.free": "Các em đang tự xem", "kind.pdf": "PDF", "kind.image": "Ảnh", "kind.slides": "Trình chiếu",
  },
  en: {
    "tab.follow": "Material", "follow.title": "Lesson material",
    "follow.empty": "The content store holds no PDF, image or folder of slides yet.",
    "follow.no_pdfjs": "pdf.js is not installed: PDFs cannot be shown (ask IT staff to install libjs-pdf).",
    "follow.back": "◀ List", "follow.previous": "◀ Previous", "follow.next": "Next ▶",
    "follow.page": "Page {p} / {n}", "follow.lead_class": "Class, follow me",
    "follow.lead_some": "{n} chosen tablets, follow me", "follow.lead_group": "{g}, follow me",
    "follow.release": "Let them browse", "follow.following": "Leading: {n} tablets on this page",
    "follow.free": "Pupils browse freely", "kind.pdf": "PDF", "kind.image": "Image", "kind.slides": "Slides",
  },
};

const followState = {
  materials: [], pdfjs: true,
  open: null,        // { name, kind, slides }
  pdf: null, pages: 1, page: 1,
  leading: false,    // whether tablets follow this material now
  drawing: false, drawn: 0,
  sending: false, sent: 0,   // the page turn on its way, and the last page the agent took
};

const followPath = name => name.split("/").map(encodeURIComponent).join("/");
const followFile = name => `/api/lesson/material/file/${followPath(name)}`;

function loadPanelPdfjs() {
  if (window.pdfjsLib) return Promise.resolve(window.pdfjsLib);
  return new Promise((resolve, reject) => {
    const script = el("script", { src: "/api/lesson/pdfjs/pdf.js" });
    script.onload = () => {
      window.pdfjsLib.GlobalWorkerOptions.workerSrc = "/api/lesson/pdfjs/pdf.worker.js";
      resolve(window.pdfjsLib);
    };
    script.onerror = reject;
    document.head.append(script);
  });
}

async function loadMaterials() {
  const response = await fetch("/api/lesson/material");
  if (!response.ok) return;
  const body = await response.json();
  followState.materials = body.materials;
  followState.pdfjs = body.pdfjs;
  const lead = await fetch("/api/lesson/follow").then(r => r.json()).catch(() => ({}));
  if (lead.follow && !followState.open) {
    const material = followState.materials.find(m => m.name === lead.follow.file);
    if (material) { followState.leading = true; await openMaterial(material, lead.follow.page); return; }
  }
  renderFollow();
}

function renderFollow() {
  const root = document.getElementById("view-follow");
  if (!root) return;
  document.getElementById("follow-list").hidden = !!followState.open;
  document.getElementById("follow-viewer").hidden = !followState.open;
  if (!followState.open) {
    const items = followState.materials
      .filter(m => m.kind !== "pdf" || followState.pdfjs)
      .map(material => {
        const button = el("button", { type: "button", class: `material ${material.kind}`, "data-name": material.name },
          el("span", { class: "kind" }, t(`kind.${material.kind}`)), el("span", { class: "name" }, material.name));
        button.addEventListener("click", () => openMaterial(material, 1));
        return button;
      });
    const notes = [];
    if (!followState.pdfjs) notes.push(el("p", { class: "error" }, t("follow.no_pdfjs")));
    if (!items.length) notes.push(el("p", { class: "summary" }, t("follow.empty")));
    document.getElementById("follow-list").replaceChildren(...notes, ...items);
    return;
  }
  document.getElementById("follow-name").textContent = followState.open.name;
  document.getElementById("follow-number").textContent = t("follow.page", { p: followState.page, n: followState.pages });
  const to = classAudience();
  const lead = document.getElementById("follow-lead");
  lead.textContent = !to ? t("follow.lead_class") : to.group ? t("follow.lead_group", { g: to.group }) : t("follow.lead_some", { n: to.tablets.length });
  document.getElementById("follow-release").disabled = !followState.leading;
  document.getElementById("follow-viewer").dataset.leading = String(followState.leading);
  document.getElementById("follow-previous").disabled = followState.page <= 1;
  document.getElementById("follow-next").disabled = followState.page >= followState.pages;
}

async function openMaterial(material, page) {
  followState.open = material;
  followState.pdf = null;
  followState.pages = material.kind === "slides" ? material.slides.length : 1;
  if (material.kind === "pdf") {
    const pdfjs = await loadPanelPdfjs();
    followState.pdf = await pdfjs.getDocument({ url: followFile(material.name) }).promise;
    followState.pages = followState.pdf.numPages;
  }
  followState.page = Math.min(Math.max(1, page), followState.pages);
  renderFollow();
  drawFollow();
}

// Draws the newest page asked for; pages asked for while drawing are skipped to the last.
async function drawFollow() {
  if (followState.drawing || !followState.open) return;
  followState.drawing = true;
  try {
    while (followState.drawn !== followState.page || followState.drawnName !== followState.open.name) {
      const page = followState.page;
      const name = followState.open.name;
      const canvas = document.getElementById("follow-canvas");
      const image = document.getElementById("follow-image");
      if (followState.pdf) {
        const pdfPage = await followState.pdf.getPage(page);
        const frame = document.getElementById("follow-frame");
        const base = pdfPage.getViewport({ scale: 1 });
        const fit = Math.min(frame.clientWidth / base.width, frame.clientHeight / base.height) || 1;
        const viewport = pdfPage.getViewport({ scale: fit * (window.devicePixelRatio || 1) });
        canvas.width = viewport.width; canvas.height = viewport.height;
        canvas.style.width = `${viewport.width / (window.devicePixelRatio || 1)}px`;
        await pdfPage.render({ canvasContext: canvas.getContext("2d"), viewport }).promise;
        canvas.hidden = false; image.hidden = true;
      } else {
        const shown = followState.open.kind === "slides" ? followState.open.slides[page - 1] : name;
        image.src = followFile(shown);
        await image.decode().catch(() => {});
        canvas.hidden = true; image.hidden = false;
      }
      followState.drawn = page;
      followState.drawnName = name;
      document.getElementById("follow-viewer").dataset.page = String(page);
    }
  } finally {
    followState.drawing = false;
  }
}

function turnFollow(step) {
  const page = Math.min(Math.max(1, followState.page + step), followState.pages);
  if (page === followState.page) return;
  followState.page = page;
  renderFollow();
  drawFollow();
  if (followState.leading) sendPage();
}

// One page turn on its way at a time; the newest page goes when it returns.
async function sendPage() {
  if (followState.sending) return;
  followState.sending = true;
  try {
    while (followState.leading && followState.sent !== followState.page) {
      const page = followState.page;
      await act("POST", "/api/lesson/follow/page", { page });
      followState.sent = page;
    }
  } finally {
    followState.sending = false;
  }
}

async function leadFollow() {
  const to = classAudience();
  const fields = { file: followState.open.name, page: followState.page };
  if (followState.leading) await act("POST", "/api/lesson/follow/release", {});
  const reply = await act("POST", "/api/lesson/follow/start?wait_ms=3000", to ? { ...fields, to } : fields);
  followState.leading = reply.id !== undefined;
  followState.sent = followState.page;
  renderFollow();
  if (followState.leading) {
    document.getElementById("follow-status").textContent = t("follow.following", { n: reply.connected });
    sendPage();
  }
}

async function releaseFollow() {
  await act("POST", "/api/lesson/follow/release", {});
  followState.leading = false;
  document.getElementById("follow-status").textContent = t("follow.free");
  renderFollow();
}

function wireFollowView() {
  for (const lang of Object.keys(FOLLOW_TEXT)) Object.assign(TEXT[lang], FOLLOW_TEXT[lang]);
  document.getElementById("follow-previous").addEventListener("click", () => turnFollow(-1));
  document.getElementById("follow-next").addEventListener("click", () => turnFollow(1));
  document.getElementById("follow-lead").addEventListener("click", leadFollow);
  document.getElementById("follow-release").addEventListener("click", releaseFollow);
  document.getElementById("follow-back").addEventListener("click", () => { followState.open = null; followState.drawn = 0; renderFollow(); });
  // A swipe across the page turns it, as on paper.
  const frame = document.getElementById("follow-frame");
  let start = null;
  frame.addEventListener("pointerdown", event => { start = event.clientX; });
  frame.addEventListener("pointerup", event => {
    if (start === null) return;
    const moved = event.clientX - start;
    start = null;
    if (Math.abs(moved) > 80) turnFollow(moved < 0 ? 1 : -1);
  });
  document.querySelector(".tabs").addEventListener("click", event => {
    if (event.target.dataset && event.target.dataset.view === "follow") loadMaterials();
  });
}

document.addEventListener("DOMContentLoaded", wireFollowView);
