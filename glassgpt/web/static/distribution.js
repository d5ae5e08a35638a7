import { visible } from "./tokens.js";

// The next-token distribution, recomputed in the browser from the raw logits (G12).
// Same order as the server's sampler: temperature, then top-k, top-p, min-p.
// `sorted` holds every logit of the vocabulary, highest first.

export function probabilities(sorted, { temperature, topK, topP, minP }) {
  const n = sorted.length;
  const p = new Float64Array(n);
  if (temperature === 0) {  // the limit T → 0: all the mass on the largest logit
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

export function renderBars(container, top, p, pT1, shown = 20) {
  const rows = top.slice(0, shown).map((t, i) => {
    const row = document.createElement("div");
    row.className = "bar-row" + (p[i] === 0 ? " cut" : "");
    row.title = `id ${t.id} · logit ${t.logit.toFixed(3)} · p at T=1: ${(100 * pT1[i]).toFixed(2)}%`;
    const label = document.createElement("span");
    label.className = "bar-label";
    label.textContent = visible(t.text);
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
    row.append(label, track, value);
    return row;
  });
  container.replaceChildren(...rows);
}
