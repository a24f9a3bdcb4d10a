// The Telex engine of the panel's on-screen keyboard, word by word.
// Run with `node --test tests/js/`; tests/panel_keyboard.rs runs it under `cargo test`.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const { applyKey, typeText } = require("../../firmware-agent/src/panel/assets/telex.js");

// Keys as touched → what the field shows.
const TYPED = [
  // The words the panel's teachers type most.
  ["DDieemr danh", "Điểm danh"],
  ["DDieerm danh", "Điểm danh"],
  ["Nguyeenx", "Nguyễn"],
  ["Nguyenex", "Nguyễn"],
  ["thuongw", "thương"],
  ["thuwowng", "thương"],
  ["khuyur", "khuỷu"],
  ["khuyru", "khuỷu"],
  ["giuwax", "giữa"],
  ["giuaxw", "giữa"],
  ["quoocs", "quốc"],
  ["quocos", "quốc"],
  ["Cos mawtj", "Có mặt"],
  ["Vawngs", "Vắng"],
  ["DDi muoonj", "Đi muộn"],
  ["Khoas manf hinhf", "Khoá màn hình"],
  ["Hocj sinh", "Học sinh"],
  ["Giaos vieen", "Giáo viên"],
  ["Trar lowfi", "Trả lời"],
  ["DDoongf booj", "Đồng bộ"],
  ["nguwowfi", "người"],
  ["ruwowuj", "rượu"],
  ["hoawcj", "hoặc"],
  ["tuaanf", "tuần"],
  ["yeeu", "yêu"],
  ["gif", "gì"],
  ["gieengs", "giếng"],
  ["muaf", "mùa"],
  ["cais", "cái"],
  // Tone placement, the modern rule: the main vowel of oa, oe, uy in an open syllable.
  ["hoaf", "hoà"],
  ["hofa", "hoà"],
  ["khoer", "khoẻ"],
  ["thuyr", "thuỷ"],
  ["hoafn", "hoàn"],
  ["toans", "toán"],
  ["ngoaif", "ngoài"],
  ["huyfnh", "huỳnh"],
  ["tair", "tải"],
  // Tone keys change the tone, z takes it off.
  ["basf", "bà"],
  ["basz", "ba"],
  ["baz", "baz"],
  // Undo: the same key again types the letter.
  ["bass", "bas"],
  ["basss", "bass"],
  ["caaa", "caa"],
  ["xooong", "xoong"],
  ["ddd", "dd"],
  ["ww", "w"],
  // A lone ư is taken to come from w alone, since the engine keeps no memory of keys.
  ["tuww", "tw"],
  ["thuongww", "thuongw"],
  ["eee", "ee"],
  // w alone is ư; with a vowel it is the horn or the breve where it fits.
  ["w", "ư"],
  ["nhw", "như"],
  ["tuw", "tư"],
  ["muwa", "mưa"],
  ["muaw", "mưa"],
  ["quawng", "quăng"],
  ["cuwus", "cứu"],
  ["guwir", "gửi"],
  // Only sắc and nặng close on c, ch, p, t; anything else is typed as the letter.
  ["hocf", "hocf"],
  ["hocj", "học"],
  // Letters that make no Vietnamese word are typed as they are.
  ["http", "http"],
  ["pdf", "pdf"],
  ["www", "ww"],
  // Capitals keep their case through every change.
  ["DDIEEMR", "ĐIỂM"],
  ["NGUYEENX", "NGUYỄN"],
  ["Uw", "Ư"],
  ["W", "Ư"],
  // Digits and symbols end a word.
  ["lop 6A1", "lop 6A1"],
  ["Tieets 3-4", "Tiết 3-4"],
];

test("typed words", () => {
  const wrong = TYPED.filter(([keys, expected]) => typeText(keys) !== expected)
    .map(([keys, expected]) => `${keys} gave ${typeText(keys)}, not ${expected}`);
  assert.deepEqual(wrong, []);
});

test("every result is NFC", () => {
  for (const [keys] of TYPED) {
    const text = typeText(keys);
    assert.equal(text, text.normalize("NFC"), `typing ${JSON.stringify(keys)}`);
  }
});

test("a decomposed word is read as its NFC form", () => {
  const decomposed = "hoa\u0300".normalize("NFD");
  assert.equal(applyKey(decomposed, "n"), "hoàn");
  assert.equal(applyKey("Đie\u0302\u0309", "m"), "Điểm");
});

test("applyKey works on the word before the caret alone", () => {
  assert.equal(applyKey("", "a"), "a");
  assert.equal(applyKey("Đie", "e"), "Điê");
  assert.equal(applyKey("Điê", "m"), "Điêm");
  assert.equal(applyKey("Điêm", "r"), "Điểm");
  assert.equal(applyKey("Điểm", "r"), "Điêmr");
  assert.equal(applyKey("dung", "d"), "đung");
  assert.equal(applyKey("abc", "1"), "abc1");
});
