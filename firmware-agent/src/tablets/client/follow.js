// Follow the teacher on the tablet: shows the content-store material the
// teacher leads (a PDF drawn by pdf.js, an image, or a folder of slides) at
// the teacher's page, and turns with every `page` command; after `release`
// the pupil turns the pages. Only the newest page asked for is drawn: turns
// that arrive while a page is being drawn are skipped to the last one.
// tablet.js calls classroomFollow.apply(command) and .applyState(state.follow).
"use strict";

const classroomFollow = (() => {
  const token = () => localStorage.getItem("classroom.token") || "";
  const withToken = (path) => `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token())}`;
  const contentUrl = (name) => withToken("/content/" + name.split("/").map(encodeURIComponent).join("/"));
  const view = {
    material: null,   // { name, kind, slides }
    pdf: null,        // the pdf.js document of a PDF
    pages: 1,
    wanted: 1,        // the page to show: the teacher's while following, the pupil's after release
    drawing: false,
    following: false,
  };

  const box = document.createElement("section");
  box.id = "follow";
  box.hidden = true;
  box.innerHTML = `
    <p id="follow-banner" role="status"></p>
    <div id="follow-page"><canvas id="follow-canvas"></canvas><img id="follow-image" alt="" hidden></div>
    <p id="follow-text" class="follow-text"></p>
    <div id="follow-controls" hidden>
      <button type="button" id="follow-previous">◀ Trang trước</button>
      <span id="follow-number"></span>
      <button type="button" id="follow-next">Trang sau ▶</button>
    </div>`;
  const style = document.createElement("style");
  style.textContent = `
    #follow { padding: .5rem 0; }
    #follow-banner { background: #e8f0fe; padding: .6rem 1rem; border-radius: .5rem; margin: 0 0 .5rem; }
    #follow-page { display: flex; justify-content: center; background: #fff; border: 1px solid #ccc; }
    #follow-canvas, #follow-image { max-width: 100%; max-height: 75vh; }
    #follow-controls { display: flex; justify-content: space-between; align-items: center; }
    #follow-controls button { min-width: 9rem; min-height: 3.5rem; }
    .follow-text { position: absolute; left: -10000px; }`;
  document.head.append(style);
  document.getElementById("lesson").prepend(box);
  const $ = (id) => document.getElementById(id);

  let pdfjsLoading = null;
  function loadPdfjs() {
    if (window.pdfjsLib) return Promise.resolve(window.pdfjsLib);
    pdfjsLoading = pdfjsLoading || new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = withToken("/tablet/pdfjs/pdf.js");
      script.onload = () => {
        window.pdfjsLib.GlobalWorkerOptions.workerSrc = withToken("/tablet/pdfjs/pdf.worker.js");
        resolve(window.pdfjsLib);
      };
      script.onerror = () => { pdfjsLoading = null; reject(new Error("pdf.js")); };
      document.head.append(script);
    });
    return pdfjsLoading;
  }

  async function open(name) {
    if (view.material && view.material.name === name) return;
    const response = await fetch(withToken(`/tablet/material?name=${encodeURIComponent(name)}`));
    if (!response.ok) throw new Error(`material ${name}: ${response.status}`);
    const material = await response.json();
    view.pdf = null;
    view.pages = 1;
    if (material.kind === "pdf") {
      const pdfjs = await loadPdfjs();
      view.pdf = await pdfjs.getDocument({ url: contentUrl(material.name) }).promise;
      view.pages = view.pdf.numPages;
    } else if (material.kind === "slides") {
      view.pages = material.slides.length;
    }
    view.material = material;
  }

  // Draws view.wanted, and again if a newer page was asked for meanwhile.
  async function draw() {
    if (view.drawing || !view.material) return;
    view.drawing = true;
    try {
      let page;
      do {
        page = Math.min(Math.max(1, view.wanted), view.pages);
        await drawPage(page);
      } while (page !== Math.min(Math.max(1, view.wanted), view.pages));
      $("follow-number").textContent = `Trang ${page} / ${view.pages}`;
      showBanner(page);
    } finally {
      view.drawing = false;
    }
  }

  async function drawPage(number) {
    const canvas = $("follow-canvas");
    const image = $("follow-image");
    if (view.pdf) {
      const page = await view.pdf.getPage(number);
      const fit = Math.min(2, (box.clientWidth || 800) / page.getViewport({ scale: 1 }).width);
      const viewport = page.getViewport({ scale: fit * (window.devicePixelRatio || 1) });
      canvas.width = viewport.width;
      canvas.height = viewport.height;
      await page.render({ canvasContext: canvas.getContext("2d"), viewport }).promise;
      const text = await page.getTextContent();
      $("follow-text").textContent = text.items.map((item) => item.str).join(" ");
      canvas.hidden = false;
      image.hidden = true;
    } else {
      const name = view.material.kind === "slides" ? view.material.slides[number - 1] : view.material.name;
      image.src = contentUrl(name);
      await image.decode().catch(() => {});
      $("follow-text").textContent = "";
      canvas.hidden = true;
      image.hidden = false;
    }
    box.dataset.page = String(number);
    box.dataset.pages = String(view.pages);
    box.dataset.file = view.material.name;
  }

  function showBanner(page) {
    box.dataset.following = String(view.following);
    $("follow-banner").textContent = view.following
      ? `Đang theo cô/thầy · trang ${page}`
      : "Em tự xem tài liệu: chạm ◀ ▶ để lật trang";
    $("follow-controls").hidden = view.following;
  }

  async function follow(file, page) {
    view.following = true;
    view.wanted = page;
    box.hidden = false;
    $("waiting").hidden = true;
    await open(file);
    await draw();
  }

  function release() {
    if (!view.following) return;
    view.following = false;
    showBanner(view.wanted);
  }

  function turnBy(step) {
    if (view.following) return;
    view.wanted = Math.min(Math.max(1, view.wanted + step), view.pages);
    draw();
  }

  $("follow-previous").onclick = () => turnBy(-1);
  $("follow-next").onclick = () => turnBy(1);

  const failed = (error) => { $("follow-banner").textContent = "Không mở được tài liệu của cô/thầy"; console.error(error); };

  return {
    apply(command) {
      switch (command.kind) {
        case "follow": follow(command.file, command.page).catch(failed); break;
        case "page":
          if (view.following) { view.wanted = command.page; draw().catch(failed); }
          break;
        case "release": release(); break;
      }
    },
    // What `welcome` says: the material and page to follow, or null to browse freely.
    applyState(following) {
      if (following) follow(following.file, following.page).catch(failed); else release();
    },
  };
})();
