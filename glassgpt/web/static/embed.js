// The embedding lab (G9): nearest neighbours, a − b + c, and projection on a direction.
// Above the bars: how each word splits into tokens (a leading space marked ·; several pieces are
// averaged), and whether the input and output spaces are one matrix (tied: W_U = W_Eᵀ).

import { describe, label } from "./tokens.js";

function words(result) {
  const box = document.createElement("div");
  box.className = "embed-words caption";
  for (const w of result.words || []) {
    const line = document.createElement("div");
    line.className = "embed-word";
    line.append(`“${w.word}” → `);
    for (const t of w.pieces) {
      const chip = document.createElement("span");
      chip.className = "strip-chip" + (t.partial ? " partial" : "");
      chip.textContent = label(t);
      chip.title = describe(t);
      line.append(chip, " ");
    }
    const notes = [];
    if (w.leading_space) notes.push("looked up with its leading space (·), as inside a sentence");
    if (w.pieces.length > 1) notes.push(`${w.pieces.length} pieces: the word's vector is their mean`);
    else notes.push("one token");
    line.append(notes.join("; "));
    box.append(line);
  }
  const tied = document.createElement("div");
  tied.className = "embed-tied";
  tied.textContent = result.tied
    ? "W_E and W_U are the same matrix here (tied: W_U = W_Eᵀ), so the input and output spaces give the same answers."
    : `W_E (input) and W_U (output) are separate matrices; this is the ${result.space === "unembed" ? "output (W_U)" : "input (W_E)"} space.`;
  box.append(tied);
  return box;
}

export function renderEmbed(container, title, result, signed = false) {
  const results = result.results;
  const heading = document.createElement("div");
  heading.className = "caption";
  heading.textContent = title;
  const max = Math.max(1e-9, ...results.map((r) => Math.abs(r.score)));
  const rows = results.map((r) => {
    const row = document.createElement("div");
    row.className = "bar-row";
    const name = document.createElement("span");
    name.className = "bar-label";
    name.textContent = r.text.replace(/ /g, "·").replace(/\n/g, "↵");
    const track = document.createElement("span");
    track.className = "bar-track" + (signed ? " signed" : "");
    const bar = document.createElement("span");
    bar.className = "bar" + (r.score < 0 ? " negative" : "");
    const width = 100 * Math.abs(r.score) / max;
    bar.style.width = `${signed ? width / 2 : width}%`;
    if (signed) bar.style.left = r.score < 0 ? `${50 - width / 2}%` : "50%";
    track.append(bar);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = r.score.toFixed(3);
    row.append(name, track, value);
    return row;
  });
  container.replaceChildren(words(result), heading, ...rows);
}

export function parsePairs(text) {
  return text.split(";").map((p) => p.split(",").map((w) => w.trim())).filter((p) => p.length === 2 && p[0] && p[1]);
}

export function parseWords(text) {
  return text.split(/[\s,]+/).map((w) => w.trim()).filter(Boolean);
}
