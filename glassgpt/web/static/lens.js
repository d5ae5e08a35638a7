// The logit lens (G6): a table, one row per stage (embedding, then each block), one
// column per position; each cell is that stage's best guess for the next token. A cell's
// top five show on hover (its tooltip), and on a tap, a click or keyboard focus (in `info`).

import { describe, label } from "./tokens.js";

export function renderLens(container, tokens, layers, info = null) {
  const table = document.createElement("table");
  table.className = "lens";
  const head = table.createTHead().insertRow();
  head.append(th("stage \\ position"));
  tokens.forEach((t, i) => {
    const cell = th(label(t));
    cell.title = describe(t, `position ${i}`);
    head.append(cell);
  });
  const body = table.createTBody();
  for (const layer of [...layers].reverse()) {  // the output layer on top, as the model stacks them
    const tr = body.insertRow();
    tr.append(th(layer.name));
    layer.positions.forEach((guesses, i) => {
      const td = tr.insertCell();
      const best = guesses[0];
      td.textContent = label(best);
      td.style.background = `rgba(200, 90, 20, ${Math.min(1, best.prob * 1.2)})`;
      if (best.prob > 0.6) td.style.color = "white";
      const top = guesses.map((g) => `${label(g)} ${(100 * g.prob).toFixed(1)}%`).join("  ");
      td.title = guesses.map((g) => `${label(g)} ${(100 * g.prob).toFixed(1)}%`).join("\n");
      td.tabIndex = 0;
      const say = () => { if (info) info.textContent = `${layer.name}, after “${label(tokens[i])}” (position ${i}): ${top}`; };
      td.addEventListener("focus", say);
      td.addEventListener("click", say);
    });
  }
  container.replaceChildren(table);
}

function th(text) {
  const cell = document.createElement("th");
  cell.textContent = text;
  return cell;
}
