// The panel's on-screen keyboard. The kiosk browser on the classroom's touch
// panel brings none, yet the teacher types messages, addresses, questions,
// correction reasons and PINs; this one types Vietnamese the Telex way
// (telex.js) and needs nothing from the rest of the page.
//
// # Design
// - It opens when a text field is touched (touch or pen; a mouse means a
//   keyboard is at hand) and closes on "Xong" (done), on ↵ (which also
//   submits the field's form), or on a touch anywhere outside it and the field.
//   Fields are found by delegation, so fields a view adds later get it too.
// - Which keys: a field with inputmode="numeric" (the PIN) gets a numeric pad;
//   inputmode="url" gets the letters with Telex off and / : on the first page;
//   every other text field gets the letters with Telex as the teacher last
//   left it (on by default, remembered on this panel). Pages: letters, numbers
//   and symbols. Shift is for one letter; touched twice it stays (caps lock).
// - Size: keys are sized in viewport widths, so they are the same size on a
//   1080p and a 4K panel of the same inches, about 9 cm wide on an 86-inch
//   panel; the keyboard takes at most 60% of the width, so a teacher standing
//   at one side reaches every key.
// - Never over the field: the keyboard docks at the bottom, or at the top when
//   the field is low on the screen. It never scrolls the page, so nothing moves
//   under the teacher's finger; "Xong" and ↵, which close it, act when their
//   touch ends and keep its click from what the keyboard covered.
// - Typing: each key edits the field's value at the caret and fires an
//   `input` event, as a physical keyboard would; the field keeps its focus and
//   caret, because keys act on pointerdown and cancel it. In Telex mode a
//   letter rewrites the word before the caret with `Telex.applyKey`.
"use strict";

(function () {
  const LABELS = {
    vi: { done: "Xong", space: "dấu cách", enter: "Gửi", backspace: "Xoá", shift: "Chữ hoa",
      symbols: "?123", letters: "ABC", keyboard: "Bàn phím", telex: "Telex", plain: "ABC" },
    en: { done: "Done", space: "space", enter: "Send", backspace: "Delete", shift: "Shift",
      symbols: "?123", letters: "ABC", keyboard: "Keyboard", telex: "Telex", plain: "ABC" },
  };
  const LETTERS = [
    ["q", "w", "e", "r", "t", "y", "u", "i", "o", "p", "backspace"],
    ["a", "s", "d", "f", "g", "h", "j", "k", "l", "enter"],
    ["shift", "z", "x", "c", "v", "b", "n", "m", ",", ".", "-"],
    ["symbols", "mode", "space", "done"],
  ];
  const URL_LETTERS = [
    LETTERS[0], LETTERS[1], LETTERS[2],
    ["symbols", "mode", "/", ":", "space", "done"],
  ];
  const SYMBOLS = [
    ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "backspace"],
    ["@", "#", "%", "&", "*", "+", "=", "(", ")", "enter"],
    ["/", ":", ";", "'", "\"", "!", "?", ",", ".", "_"],
    ["letters", "space", "done"],
  ];
  const NUMBERS = [["1", "2", "3"], ["4", "5", "6"], ["7", "8", "9"], ["backspace", "0", "enter"], ["done"]];
  const GLYPHS = { backspace: "⌫", shift: "⇧", enter: "↵" };
  const TYPABLE = new Set(["text", "search", "url", "password", "tel", "email"]);

  const keyboard = document.createElement("div");
  keyboard.id = "osk";
  keyboard.className = "osk";
  keyboard.hidden = true;
  keyboard.setAttribute("role", "group");
  document.body.append(keyboard);

  const state = {
    field: null,       // the field being typed into
    kind: "text",      // "text", "url" or "numeric"
    page: "letters",   // "letters" or "symbols"
    shift: 0,          // 0 off, 1 for the next letter, 2 locked
    telex: localStorage.getItem("panel.keyboard.telex") !== "off",
  };

  const labels = () => LABELS[document.documentElement.lang] || LABELS.vi;

  function isTypable(node) {
    if (!node || node.disabled || node.readOnly) return false;
    if (node.tagName === "TEXTAREA") return true;
    return node.tagName === "INPUT" && TYPABLE.has(node.type);
  }

  // The field's own inputmode, kept aside while the keyboard sets it to "none".
  function inputMode(field) {
    return field.dataset.oskInputmode ?? (field.getAttribute("inputmode") || "");
  }

  function kindOf(field) {
    const mode = inputMode(field);
    if (mode === "numeric" || mode === "decimal" || field.type === "tel") return "numeric";
    if (mode === "url" || field.type === "url" || field.type === "email") return "url";
    return "text";
  }

  function rows() {
    if (state.kind === "numeric") return NUMBERS;
    if (state.page === "symbols") return SYMBOLS;
    return state.kind === "url" ? URL_LETTERS : LETTERS;
  }

  function render() {
    const text = labels();
    const telex = state.telex && state.kind === "text";
    keyboard.dataset.kind = state.kind;
    keyboard.dataset.page = state.page;
    keyboard.dataset.telex = String(telex);
    keyboard.setAttribute("aria-label", text.keyboard);
    keyboard.replaceChildren(...rows().map(row => {
      const line = document.createElement("div");
      line.className = "osk-row";
      for (const key of row) {
        const button = document.createElement("button");
        button.type = "button";
        button.tabIndex = -1;
        button.dataset.key = key;
        button.className = `osk-key osk-${key.length > 1 ? key : "char"}`;
        if (key.length === 1) {
          button.textContent = state.shift ? key.toUpperCase() : key;
        } else if (key === "mode") {
          button.textContent = telex ? text.telex : text.plain;
          button.setAttribute("aria-pressed", String(telex));
        } else {
          button.textContent = GLYPHS[key] || text[key];
          if (GLYPHS[key]) button.setAttribute("aria-label", text[key]);
        }
        if (key === "shift") button.setAttribute("aria-pressed", String(state.shift > 0));
        if (key === "shift" && state.shift === 2) button.classList.add("osk-locked");
        line.append(button);
      }
      return line;
    }));
  }

  // Docks the keyboard at the bottom, or at the top where the bottom would
  // cover the field. It never scrolls the page: the field stays under the finger.
  function place() {
    const overlap = () => {
      const f = state.field.getBoundingClientRect(), k = keyboard.getBoundingClientRect();
      const high = Math.min(f.bottom, k.bottom) - Math.max(f.top, k.top);
      const wide = Math.min(f.right, k.right) - Math.max(f.left, k.left);
      return Math.max(0, high) * Math.max(0, wide);
    };
    keyboard.classList.remove("osk-top");
    const below = overlap();
    if (below === 0) return;
    keyboard.classList.add("osk-top");
    if (overlap() > below) keyboard.classList.remove("osk-top");
  }

  function open(field) {
    if (state.field !== field) {
      if (state.field) restoreInputMode(state.field);
      state.field = field;
      state.kind = kindOf(field);
      state.page = "letters";
      state.shift = 0;
      holdSystemKeyboard(field);
    }
    render();
    keyboard.hidden = false;
    place();
  }

  // The system's own keyboard, where there is one, stays away while this one is open.
  function holdSystemKeyboard(field) {
    field.dataset.oskInputmode = inputMode(field);
    field.setAttribute("inputmode", "none");
  }

  function restoreInputMode(field) {
    const mode = field.dataset.oskInputmode;
    if (mode === undefined) return;
    if (mode) field.setAttribute("inputmode", mode); else field.removeAttribute("inputmode");
    delete field.dataset.oskInputmode;
  }

  function close() {
    if (state.field) restoreInputMode(state.field);
    state.field = null;
    keyboard.hidden = true;
    keyboard.classList.remove("osk-top");
  }

  function edit(before, after) {
    const field = state.field;
    const value = before + after;
    if (field.maxLength >= 0 && value.length > field.maxLength && value.length > field.value.length) return;
    field.value = value;
    field.setSelectionRange(before.length, before.length);
    field.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function type(char) {
    const field = state.field;
    const start = field.selectionStart ?? field.value.length;
    const end = field.selectionEnd ?? start;
    let before = field.value.slice(0, start);
    const after = field.value.slice(end);
    if (state.kind === "numeric" && !/^[0-9]$/.test(char)) return;
    if (state.telex && state.kind === "text" && start === end && /^\p{L}$/u.test(char)) {
      const word = before.match(/\p{L}*$/u)[0];
      before = before.slice(0, before.length - word.length) + Telex.applyKey(word, char);
    } else {
      before += char;
    }
    edit(before, after);
  }

  function erase() {
    const field = state.field;
    const start = field.selectionStart ?? field.value.length;
    const end = field.selectionEnd ?? start;
    const before = field.value.slice(0, start);
    const kept = start === end ? Array.from(before).slice(0, -1).join("") : before;
    edit(kept, field.value.slice(end));
  }

  function press(key) {
    switch (key) {
      case "backspace": erase(); return;
      case "space": type(" "); return;
      case "shift": state.shift = (state.shift + 1) % 3; render(); return;
      case "symbols": state.page = "symbols"; render(); return;
      case "letters": state.page = "letters"; render(); return;
      case "mode":
        state.telex = !state.telex;
        localStorage.setItem("panel.keyboard.telex", state.telex ? "on" : "off");
        render();
        return;
      case "done": case "enter": return; // when the touch ends: see below
    }
    type(state.shift ? key.toUpperCase() : key);
    if (state.shift === 1) { state.shift = 0; render(); }
  }

  const touched = event => event.pointerType === "touch" || event.pointerType === "pen";
  const typableAt = event => {
    const node = event.target.closest ? event.target.closest("input, textarea") : null;
    return isTypable(node) ? node : null;
  };

  // Keys act on pointerdown, cancelled so that the focus and the caret stay in the field.
  keyboard.addEventListener("pointerdown", event => {
    event.preventDefault();
    const key = event.target.closest("[data-key]");
    if (key && state.field) press(key.dataset.key);
  });

  // Done and ↵ close the keyboard, so they act when the touch ends, and the
  // click that may follow is kept from whatever the keyboard covered.
  let swallowClick = false;
  keyboard.addEventListener("pointerup", event => {
    const key = event.target.closest("[data-key]");
    if (!key || !state.field || !["done", "enter"].includes(key.dataset.key)) return;
    const field = state.field;
    swallowClick = true;
    close();
    if (key.dataset.key === "done") field.blur();
    else if (field.form) field.form.requestSubmit();
  });
  document.addEventListener("click", event => {
    if (!swallowClick) return;
    swallowClick = false;
    event.preventDefault();
    event.stopImmediatePropagation();
  }, true);

  // A touch elsewhere closes the keyboard at once; the keyboard floats over the
  // page, so hiding it moves nothing under the finger.
  let touchedField = null;
  document.addEventListener("pointerdown", event => {
    swallowClick = false;
    if (keyboard.contains(event.target)) return;
    const field = typableAt(event);
    touchedField = field && touched(event) ? field : null;
    if (touchedField) holdSystemKeyboard(touchedField);
    if (state.field && field !== state.field) close();
  }, true);

  // A field opens the keyboard when the touch on it ends (not on a click,
  // which a quick second tap may never get).
  document.addEventListener("pointerup", event => {
    const field = typableAt(event);
    if (field && field === touchedField && touched(event)) open(field);
    touchedField = null;
  }, true);

  // The field typed into was taken away (its view hidden or replaced): so is the keyboard.
  document.addEventListener("focusout", () => {
    requestAnimationFrame(() => {
      if (state.field && state.field.getClientRects().length === 0) close();
    });
  });
  window.addEventListener("resize", () => { if (state.field) place(); });
  new MutationObserver(() => { if (state.field) render(); })
    .observe(document.documentElement, { attributes: true, attributeFilter: ["lang"] });
})();
