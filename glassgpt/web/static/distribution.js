import { describe, label } from "./tokens.js";

// The next-token distribution, recomputed in the browser from the raw logits (G12).
// Same order as the server's sampler: temperature, then top-k, top-p, min-p.
// `sorted` holds every logit of the vocabulary, highest first.

export function probabilities(sorted, { temperature, topK, topP, minP }) {
  const n = sorted.length;
  const p = new Float64Array(n);
  if (temperature === 0) {  // greedy: all the mass on the largest logit (the server sorts ties lowest id first)
    p[0] = 1;
    return p;
  }
  let keep = n;
  if (topK > 0 && topK < n) {
    keep = topK;
    while (keep < n && sorted[keep] === sorted[topK - 1]) keep++;  // ties with the k-th stay
  }
  const max = sorted[0] / temperature;
  let total = 0;
  for (let i = 0; i < keep; i++) { p[i] = Math.exp(sorted[i] / temperature - max); total += p[i]; }
  for (let i = 0; i < keep; i++) p[i] /= total;
  if (topP < 1) {  // nucleus: keep a token while the mass ranked above it is below p
    let above = 0, cut = keep;
    for (let i = 0; i < keep; i++) {
      if (above >= topP) { cut = i; break; }
      above += p[i];
    }
    keep = Math.max(1, cut);
  }
  if (minP > 0) {  // keep tokens at least minP × the top token's probability
    let cut = 1;
    while (cut < keep && p[cut] >= minP * p[0]) cut++;
    keep = cut;
  }
  total = 0;
  for (let i = 0; i < n; i++) { if (i >= keep) p[i] = 0; total += p[i]; }
  for (let i = 0; i < keep; i++) p[i] /= total;
  return p;
}

export function entropyBits(p) {
  let h = 0;
  for (const x of p) if (x > 0) h -= x * Math.log2(x);
  return h;
}

// The bars of the top tokens. Each row is focusable: a tap, a click or keyboard focus shows its
// id, logit and probability at T = 1 in `info` (what the tooltip shows to a mouse).
export function renderBars(container, top, p, pT1, { shown = 20, info = null, drawn = null } = {}) {
  const rows = top.slice(0, shown).map((t, i) => {
    const row = document.createElement("div");
    row.className = "bar-row" + (p[i] === 0 ? " cut" : "") + (t.id === drawn ? " drawn" : "");
    const details = `${label(t)} · ${describe(t)} · logit ${t.logit.toFixed(3)} · p ${(100 * p[i]).toFixed(2)}% · p at T=1: ${(100 * pT1[i]).toFixed(2)}%`;
    row.title = details;
    row.tabIndex = 0;
    row.dataset.id = t.id;
    const say = () => { if (info) info.textContent = details; };
    row.addEventListener("focus", say);
    row.addEventListener("click", say);
    const name = document.createElement("span");
    name.className = "bar-label";
    name.textContent = label(t);
    const track = document.createElement("span");
    track.className = "bar-track";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${100 * p[i]}%`;
    const ref = document.createElement("span");
    ref.className = "bar-ref";  // where the bar would be at T = 1, unfiltered
    ref.style.left = `${100 * pT1[i]}%`;
    track.append(bar, ref);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = `${(100 * p[i]).toFixed(2)}%`;
    row.append(name, track, value);
    return row;
  });
  container.replaceChildren(...rows);
}
