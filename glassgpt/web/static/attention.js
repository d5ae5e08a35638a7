// Attention (T8, T12): a layer × head grid of small pattern images; one click (or Enter) opens
// the full n×n heatmap. Pointing at a cell shows its weight; clicking it (or Enter on the
// keyboard) shows what its query token attends to (its row) and what attends to it (its column).

import { label } from "./tokens.js";

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
      canvas.tabIndex = 0;
      canvas.setAttribute("role", "button");
      canvas.setAttribute("aria-label", `open layer ${l}, head ${h}`);
      canvas.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); canvas.click(); }
      });
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

// The full pattern of one head on a canvas (thousands of table cells would not stay interactive):
// queries down, keys across, token labels along the edges when there is room. Pointer, tap and
// keyboard (arrow keys move the cursor, Enter shows the query's strips) all reach a cell's value.
export function renderHeatmap(container, info, pattern, tokens) {
  const T = tokens.length;
  const cell = Math.max(2, Math.min(18, Math.floor(640 / T)));
  const labels = cell >= 10;
  const margin = labels ? Math.min(90, 8 + 7 * Math.max(...tokens.map((t) => label(t).length))) : 0;
  const canvas = document.createElement("canvas");
  canvas.className = "heatmap-canvas";
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `attention pattern, ${T} × ${T}; arrow keys move, Enter shows a token`);
  const size = margin + T * cell;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = size * ratio;
  canvas.height = size * ratio;
  canvas.style.width = `${size}px`;
  canvas.style.maxWidth = "100%";
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  let cursor = null;
  const draw = () => {
    ctx.fillStyle = "white";
    ctx.fillRect(0, 0, size, size);
    for (let i = 0; i < T; i++) {
      for (let j = 0; j < T; j++) {
        if (j > i) { ctx.fillStyle = "#eceef2"; }  // masked: the future
        else { const v = pattern[i][j]; ctx.fillStyle = `rgb(${255 - 230 * v}, ${255 - 191 * v}, ${255 - 90 * v})`; }
        ctx.fillRect(margin + j * cell, margin + i * cell, cell - (cell > 4 ? 1 : 0), cell - (cell > 4 ? 1 : 0));
      }
    }
    if (labels) {
      ctx.fillStyle = "#1d2330";
      ctx.font = "11px ui-monospace, DejaVu Sans Mono, monospace";
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      tokens.forEach((t, i) => ctx.fillText(label(t).slice(0, 12), margin - 4, margin + i * cell + cell / 2));
      tokens.forEach((t, j) => {
        ctx.save();
        ctx.translate(margin + j * cell + cell / 2, margin - 4);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        ctx.fillText(label(t).slice(0, 12), 0, 0);
        ctx.restore();
      });
    }
    if (cursor) {
      ctx.strokeStyle = "#c85a14";
      ctx.lineWidth = 2;
      ctx.strokeRect(margin + cursor[1] * cell, margin + cursor[0] * cell, cell, cell);
    }
  };
  const show = (q, k) => {
    cursor = [q, k];
    draw();
    const value = k > q ? "masked (−∞ before the softmax, weight 0)" : pattern[q][k].toFixed(4);
    const line = document.createElement("div");
    line.className = "cell-info";
    line.textContent = `${quote(tokens[q])} (pos ${q}) → ${quote(tokens[k])} (pos ${k}): ${value}`;
    info.replaceChildren(line);
  };
  const at = (ev) => {
    const box = canvas.getBoundingClientRect();
    const scale = size / box.width;
    const x = (ev.clientX - box.left) * scale - margin, y = (ev.clientY - box.top) * scale - margin;
    const q = Math.floor(y / cell), k = Math.floor(x / cell);
    return q >= 0 && k >= 0 && q < T && k < T ? [q, k] : null;
  };
  canvas.addEventListener("pointermove", (ev) => { const c = at(ev); if (c) show(...c); });
  canvas.addEventListener("click", (ev) => {
    const c = at(ev);
    if (!c) return;
    show(...c);
    info.append(...strips(pattern, tokens, c[0]));
  });
  canvas.addEventListener("keydown", (ev) => {
    const [q, k] = cursor || [T - 1, 0];
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (moves[ev.key]) {
      ev.preventDefault();
      const [dq, dk] = moves[ev.key];
      show(Math.min(T - 1, Math.max(0, q + dq)), Math.min(T - 1, Math.max(0, k + dk)));
    } else if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      show(q, k);
      info.append(...strips(pattern, tokens, q));
    }
  });
  draw();
  container.replaceChildren(canvas);
}

// Two strips for one token: what it attends to (its row) and what attends to it (its column).
function strips(pattern, tokens, pos) {
  const strip = (title, weight) => {
    const line = document.createElement("div");
    line.className = "strip";
    const heading = document.createElement("b");
    heading.textContent = title;
    line.append(heading);
    tokens.forEach((t, j) => {
      const chip = document.createElement("span");
      chip.className = "strip-chip";
      const w = weight(j);
      chip.style.background = `rgba(25, 64, 165, ${w})`;
      chip.style.color = w > 0.5 ? "white" : "black";
      chip.textContent = label(t);
      chip.title = w.toFixed(4);
      chip.dataset.weight = w;
      line.append(chip);
    });
    return line;
  };
  return [
    strip(`${quote(tokens[pos])} attends to: `, (j) => pattern[pos][j]),
    strip(`attends to ${quote(tokens[pos])}: `, (j) => pattern[j][pos]),
  ];
}

function quote(t) { return `“${label(t)}”`; }
