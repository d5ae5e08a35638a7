// The logit lens (G6): a table, one row per stage (embedding, then each block), one
// column per position; each cell is that stage's best guess for the next token.

import { visible } from "./tokens.js";

export function renderLens(container, tokens, layers) {
  const table = document.createElement("table");
  table.className = "lens";
  const head = table.createTHead().insertRow();
  head.append(th("stage \\ position"));
  tokens.forEach((t) => head.append(th(visible(t.text))));
  const body = table.createTBody();
  for (const layer of [...layers].reverse()) {  // the output layer on top, as the model stacks them
    const tr = body.insertRow();
    tr.append(th(layer.name));
    for (const guesses of layer.positions) {
      const td = tr.insertCell();
      const best = guesses[0];
      td.textContent = visible(best.text);
      td.style.background = `rgba(200, 90, 20, ${Math.min(1, best.prob * 1.2)})`;
      if (best.prob > 0.6) td.style.color = "white";
      td.title = guesses.map((g) => `${JSON.stringify(g.text)} ${(100 * g.prob).toFixed(1)}%`).join("\n");
    }
  }
  container.replaceChildren(table);
}

function th(text) {
  const cell = document.createElement("th");
  cell.textContent = text;
  return cell;
}
