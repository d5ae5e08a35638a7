// Attention (T8, T12): a layer × head grid of small pattern images; one click opens the
// full n×n heatmap with token labels. Hovering a token shows what it attends to (its row)
// and what attends to it (its column).

import { visible } from "./tokens.js";

// pattern: Uint8Array of shape (L, H, T, T), values p·255.
export function renderGrid(container, pattern, [L, H, T], onPick) {
  const rows = [];
  const header = document.createElement("div");
  header.className = "attn-row";
  header.append(cell("", "attn-corner"));
  for (let h = 0; h < H; h++) header.append(cell(`h${h}`, "attn-head-label"));
  rows.push(header);
  for (let l = 0; l < L; l++) {
    const row = document.createElement("div");
    row.className = "attn-row";
    row.append(cell(`L${l}`, "attn-layer-label"));
    for (let h = 0; h < H; h++) {
      const canvas = document.createElement("canvas");
      canvas.width = T;
      canvas.height = T;
      canvas.className = "thumb";
      canvas.dataset.layer = l;
      canvas.dataset.head = h;
      canvas.title = `layer ${l}, head ${h}`;
      drawPattern(canvas, pattern.subarray(((l * H) + h) * T * T, ((l * H) + h + 1) * T * T), T);
      canvas.addEventListener("click", () => {
        container.querySelectorAll(".thumb.selected").forEach((c) => c.classList.remove("selected"));
        canvas.classList.add("selected");
        onPick(l, h);
      });
      row.append(canvas);
    }
    rows.push(row);
  }
  container.replaceChildren(...rows);
}

function cell(text, className) {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = text;
  return span;
}

function drawPattern(canvas, bytes, T) {
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(T, T);
  for (let i = 0; i < T * T; i++) {  // white → dark blue as the weight goes 0 → 1
    const v = bytes[i] / 255;
    image.data[4 * i] = Math.round(255 * (1 - 0.9 * v));
    image.data[4 * i + 1] = Math.round(255 * (1 - 0.75 * v));
    image.data[4 * i + 2] = Math.round(255 * (1 - 0.35 * v));
    image.data[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

// The full pattern of one head: a table, queries as rows, keys as columns.
export function renderHeatmap(container, info, pattern, tokens) {
  const T = tokens.length;
  const table = document.createElement("table");
  table.className = "heatmap";
  const head = table.createTHead().insertRow();
  head.append(document.createElement("th"));
  tokens.forEach((t, j) => {
    const th = document.createElement("th");
    th.className = "key-label";
    th.dataset.pos = j;
    th.innerHTML = `<span>${escape(visible(t.text))}</span>`;
    head.append(th);
  });
  const body = table.createTBody();
  for (let i = 0; i < T; i++) {
    const tr = body.insertRow();
    const th = document.createElement("th");
    th.className = "query-label";
    th.dataset.pos = i;
    th.textContent = visible(tokens[i].text);
    tr.append(th);
    for (let j = 0; j < T; j++) {
      const td = tr.insertCell();
      const v = pattern[i][j];
      td.dataset.q = i;
      td.dataset.k = j;
      td.style.background = `rgba(25, 64, 165, ${v})`;
      if (j > i) td.className = "future";
    }
  }
  container.replaceChildren(table);

  const clear = () => table.querySelectorAll(".hl-row, .hl-col, .hl-label").forEach((e) =>
    e.classList.remove("hl-row", "hl-col", "hl-label"));
  const focus = (pos, q, k) => {
    clear();
    table.querySelectorAll(`td[data-q="${q}"]`).forEach((e) => e.classList.add("hl-row"));
    table.querySelectorAll(`td[data-k="${k}"]`).forEach((e) => e.classList.add("hl-col"));
    table.querySelectorAll(`th[data-pos="${pos}"]`).forEach((e) => e.classList.add("hl-label"));
  };
  table.addEventListener("mouseover", (ev) => {
    const target = ev.target.closest("td, th");
    if (!target) return;
    if (target.tagName === "TD") {
      const q = +target.dataset.q, k = +target.dataset.k;
      focus(-1, q, k);
      info.textContent = `${quote(tokens[q].text)} (pos ${q}) → ${quote(tokens[k].text)} (pos ${k}): ${pattern[q][k].toFixed(4)}`;
    } else if (target.dataset.pos !== undefined) {
      const pos = +target.dataset.pos;
      focus(pos, pos, pos);
      showToken(info, pattern, tokens, pos);
    }
  });
  table.addEventListener("mouseleave", () => { clear(); info.textContent = ""; });
}

// Two strips for one token: what it attends to (its row) and what attends to it (its column).
function showToken(info, pattern, tokens, pos) {
  const strip = (title, weight) => {
    const line = document.createElement("div");
    line.className = "strip";
    const label = document.createElement("b");
    label.textContent = title;
    line.append(label);
    tokens.forEach((t, j) => {
      const chip = document.createElement("span");
      chip.className = "strip-chip";
      const w = weight(j);
      chip.style.background = `rgba(25, 64, 165, ${w})`;
      chip.style.color = w > 0.5 ? "white" : "black";
      chip.textContent = visible(t.text);
      chip.title = w.toFixed(4);
      line.append(chip);
    });
    return line;
  };
  info.replaceChildren(
    strip(`${quote(tokens[pos].text)} attends to: `, (j) => pattern[pos][j]),
    strip(`attends to ${quote(tokens[pos].text)}: `, (j) => pattern[j][pos]),
  );
}

function quote(text) { return `“${visible(text)}”`; }

function escape(text) {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}
