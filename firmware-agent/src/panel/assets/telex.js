// Telex: Vietnamese typed on Latin letters, the way Vietnamese teachers type.
// A pure function of the word before the caret and the key touched, with no
// state of its own, so the on-screen keyboard (keyboard.js) and its tests
// share one engine.
//
// # Design
// - `applyKey(word, key)` returns what `word` becomes when `key` is typed after
//   it. The word is the run of letters just before the caret; the keyboard
//   hands every letter key to the engine and inserts anything else as it is.
// - A word is read as one syllable: initial consonants ("qu" and "gi" count as
//   initials when a vowel follows), a cluster of vowels, final consonants, and
//   one tone. Marks and tone are kept apart and the word is written out again
//   after each key, so the tone moves to the right vowel as letters arrive
//   ("hoá" then "n" gives "hoán").
// - Keys: aa → â, aw → ă, ee → ê, oo → ô, ow → ơ, uw → ư, "uo" + w → ươ,
//   dd → đ, w with no vowel → ư ("nhw" → "như"); the tones s (sắc), f (huyền),
//   r (hỏi), x (ngã), j (nặng); z takes the tone off. A mark or tone key may
//   come after the whole word ("thuongw" → "thương", "Nguyeenx" → "Nguyễn").
// - Typing the same mark or tone again undoes it and types the letter: "ss"
//   gives "s", "aa" then "a" gives "aa", "dd" then "d" gives "dd". A lone ư
//   undone by w gives "w" ("ww" → "w"), since w alone is the usual way to it.
// - A key changes a word only when the result is a Vietnamese syllable (known
//   initial, vowel cluster and final; only sắc and nặng on a syllable closed
//   by c, ch, p or t); otherwise it is typed as the letter. Without any memory
//   of earlier keys this keeps undone words from changing again ("bas" stays
//   as typed) and lets most foreign words through.
// - Tone placement follows the modern rule (kiểu mới): the tone goes on the
//   main vowel, the one a glide (o, u before another vowel) leads into. So
//   "hoà", "khoẻ", "thuỷ" (not "hòa", "khỏe", "thủy"); a marked vowel carries
//   it ("thương", "giữa", "Nguyễn"); of three vowels the middle ("khuỷu",
//   "ngoài"); of two with a final consonant the second ("hoàn", "toán"); of
//   two otherwise the first ("mùa", "tài").
// - Output is NFC: every vowel is written as one precomposed character.
"use strict";

(function (root) {
  const TONE_KEYS = ["", "s", "f", "r", "x", "j"];
  // Each vowel with the five tones, in the order of TONE_KEYS.
  const VOWELS = {
    a: "aáàảãạ", ă: "ăắằẳẵặ", â: "âấầẩẫậ", e: "eéèẻẽẹ", ê: "êếềểễệ", i: "iíìỉĩị",
    o: "oóòỏõọ", ô: "ôốồổỗộ", ơ: "ơớờởỡợ", u: "uúùủũụ", ư: "ưứừửữự", y: "yýỳỷỹỵ",
  };
  const TONED = new Map();
  for (const [vowel, forms] of Object.entries(VOWELS)) {
    [...forms].forEach((form, tone) => TONED.set(form, { vowel, tone }));
  }
  const PLAIN = { ă: "a", â: "a", ê: "e", ô: "o", ơ: "o", ư: "u" };
  const CIRCUMFLEX = { a: "â", ă: "â", e: "ê", o: "ô", ơ: "ô" };
  const HORN = { a: "ă", o: "ơ", u: "ư" };
  const INITIALS = new Set(["", "b", "c", "ch", "d", "đ", "g", "gh", "gi", "h", "k", "kh", "l", "m", "n", "ng",
    "ngh", "nh", "p", "ph", "qu", "r", "s", "t", "th", "tr", "v", "x"]);
  const FINALS = new Set(["", "c", "ch", "m", "n", "ng", "nh", "p", "t"]);
  const STOPS = new Set(["c", "ch", "p", "t"]);
  // Vowel clusters of Vietnamese syllables, marks included, tones left out
  // (iê, oă, uâ, uô, ươ, yê, uyê are only ever followed by a final).
  const CLUSTERS = new Set([
    "a", "ă", "â", "e", "ê", "i", "o", "ô", "ơ", "u", "ư", "y",
    "ai", "ao", "au", "ay", "âu", "ây", "eo", "êu", "ia", "iê", "iu", "oa", "oă", "oe", "oi", "oo", "ôi",
    "ơi", "ua", "uâ", "uê", "ui", "uô", "uơ", "uy", "ưa", "ưi", "ưu", "ươ", "yê",
    "iêu", "oai", "oay", "oeo", "uây", "uôi", "uya", "uyê", "uyu", "ươi", "ươu", "yêu",
  ]);
  const plain = cluster => [...cluster].map(v => PLAIN[v] || v).join("");
  // The same clusters by their letters alone, for words whose marks are still to come ("thuong").
  const CLUSTER_LETTERS = new Set([...CLUSTERS].map(plain));

  const isVowel = letter => letter.ch in VOWELS;
  const spell = letters => letters.map(l => l.ch).join("");

  // The word as one syllable, or null when it is not one (not all letters, or two toned vowels).
  function parse(word) {
    const letters = [];
    let tone = 0;
    for (const char of word) {
      const lower = char.toLowerCase();
      const upper = char !== lower;
      const toned = TONED.get(lower);
      if (toned) {
        if (toned.tone) {
          if (tone) return null;
          tone = toned.tone;
        }
        letters.push({ ch: toned.vowel, upper });
      } else if (/^[a-zđ]$/.test(lower)) {
        letters.push({ ch: lower, upper });
      } else {
        return null;
      }
    }
    let start = 0;
    while (start < letters.length && !isVowel(letters[start])) start++;
    // "qu" and "gi" are initials when another vowel follows: "quốc", "giữa" (but "gì").
    const next = letters[start + 1];
    if (next && isVowel(next) && start === 1 &&
        ((letters[0].ch === "q" && letters[1].ch === "u") || (letters[0].ch === "g" && letters[1].ch === "i"))) {
      start++;
    }
    let end = start;
    while (end < letters.length && isVowel(letters[end])) end++;
    if (letters.slice(end).some(isVowel)) return null;
    return { initial: letters.slice(0, start), vowels: letters.slice(start, end), final: letters.slice(end), tone };
  }

  // Which vowel of the cluster carries the tone, by the modern rule (see the head of this file).
  function toneIndex(vowels, final) {
    const n = vowels.length;
    if (n === 0) return -1;
    let marked = -1;
    vowels.forEach((v, i) => { if (v.ch in PLAIN) marked = i; });
    if (marked >= 0) return marked;
    if (n >= 3) return 1;
    if (n === 2) {
      if (final.length) return 1;
      return ["oa", "oe", "uy"].includes(spell(vowels)) ? 1 : 0;
    }
    return 0;
  }

  function render(syllable) {
    const at = toneIndex(syllable.vowels, syllable.final);
    const write = (letter, tone) => {
      const ch = letter.ch in VOWELS ? [...VOWELS[letter.ch]][tone] : letter.ch;
      return letter.upper ? ch.toUpperCase() : ch;
    };
    return [
      ...syllable.initial.map(l => write(l, 0)),
      ...syllable.vowels.map((l, i) => write(l, i === at ? syllable.tone : 0)),
      ...syllable.final.map(l => write(l, 0)),
    ].join("").normalize("NFC");
  }

  // Whether the syllable is Vietnamese; `marksFinal` asks that its marks be, too.
  function isSyllable(s, marksFinal) {
    const final = spell(s.final);
    if (!INITIALS.has(spell(s.initial)) || !FINALS.has(final)) return false;
    if (s.vowels.length === 0) return s.tone === 0 && final === "";
    if (STOPS.has(final) && ![0, 1, 5].includes(s.tone)) return false;
    const cluster = spell(s.vowels);
    return marksFinal ? CLUSTERS.has(cluster) : CLUSTER_LETTERS.has(plain(cluster));
  }

  const copy = s => ({
    initial: s.initial.map(l => ({ ...l })), vowels: s.vowels.map(l => ({ ...l })),
    final: s.final.map(l => ({ ...l })), tone: s.tone,
  });

  // The word after a tone key, or null when the key is to be typed as a letter.
  function tone(s, key) {
    if (!s.vowels.length) return null;
    const wanted = TONE_KEYS.indexOf(key);
    if (s.tone === wanted) return { ...s, tone: 0, undone: true };
    const toned = { ...s, tone: wanted };
    return isSyllable(toned, false) ? toned : null;
  }

  // a, e, o: the circumflex on the cluster's vowel of that letter, or its undoing.
  function circumflex(s, key) {
    const family = { a: "aăâ", e: "eê", o: "oơô" }[key];
    const index = s.vowels.map(v => family.includes(v.ch)).lastIndexOf(true);
    if (index < 0) return null;
    const target = s.vowels[index];
    if (target.ch === CIRCUMFLEX[key]) {
      target.ch = key;
      return { ...s, undone: true };
    }
    target.ch = CIRCUMFLEX[target.ch];
    // ươ + o is uô: the horn goes from both.
    if (key === "o" && index > 0 && s.vowels[index - 1].ch === "ư") s.vowels[index - 1].ch = "u";
    return isSyllable(s, true) ? s : null;
  }

  // w: ư on its own, ươ, the horn or breve on the vowel it fits, or their undoing.
  function horn(s, upper) {
    const v = s.vowels;
    if (!v.length) {
      if (s.final.length || !INITIALS.has(spell(s.initial))) return null;
      v.push({ ch: "ư", upper });
      return s;
    }
    if (v.length === 1 && v[0].ch === "ư" && !s.final.length) {
      // A lone ư, most likely from w alone: undone, it is the w.
      v.length = 0;
      return { ...s, undone: true };
    }
    const pair = v.findIndex((l, i) => "uư".includes(l.ch) && v[i + 1] && "oôơ".includes(v[i + 1].ch));
    if (pair >= 0 && !(v[pair].ch === "ư" && v[pair + 1].ch === "ơ")) {
      v[pair].ch = "ư";
      v[pair + 1].ch = "ơ";
      return isSyllable(s, true) ? s : null;
    }
    if (v.some(l => "ăơư".includes(l.ch))) {
      for (const l of v) if ("ăơư".includes(l.ch)) l.ch = PLAIN[l.ch];
      return { ...s, undone: true };
    }
    for (let i = v.length - 1; i >= 0; i--) {
      if (!(v[i].ch in HORN)) continue;
      const tried = copy(s);
      tried.vowels[i].ch = HORN[v[i].ch];
      if (isSyllable(tried, true)) return tried;
    }
    return null;
  }

  // d: đ at the head of the word, or its undoing.
  function stroke(s) {
    const head = s.initial[0];
    if (!head || s.initial.length !== 1) return null;
    if (head.ch === "d") { head.ch = "đ"; return s; }
    if (head.ch === "đ") { head.ch = "d"; return { ...s, undone: true }; }
    return null;
  }

  /**
   * What `word` becomes when `key` (one character) is typed after it, in NFC.
   * A key that is not a letter is simply added: words end there.
   */
  function applyKey(word, key) {
    word = String(word).normalize("NFC");
    const typed = word + key;
    const lower = key.toLowerCase();
    const parsed = /^[a-z]$/.test(lower) ? parse(word) : null;
    if (!parsed) return typed.normalize("NFC");
    const s = copy(parsed);
    let changed = null;
    if (TONE_KEYS.indexOf(lower) > 0) changed = tone(s, lower);
    else if (lower === "z") changed = s.tone ? { ...s, tone: 0 } : null;
    else if (lower === "a" || lower === "e" || lower === "o") changed = circumflex(s, lower);
    else if (lower === "w") changed = horn(s, key !== lower);
    else if (lower === "d") changed = stroke(s);
    if (changed) return changed.undone ? render(changed) + key : render(changed);
    // Typed as a letter: the tone may move to another vowel ("hoá" + "n" → "hoán").
    const appended = parse(typed);
    return appended ? render(appended) : typed.normalize("NFC");
  }

  /** Types `keys` one by one from an empty field: what a sequence of touches writes. */
  function typeText(keys, text = "") {
    for (const key of keys) {
      const word = text.match(/\p{L}*$/u)[0];
      text = text.slice(0, text.length - word.length) + applyKey(word, key);
    }
    return text;
  }

  const Telex = { applyKey, typeText };
  if (typeof module === "object" && module.exports) module.exports = Telex;
  else root.Telex = Telex;
})(this);
