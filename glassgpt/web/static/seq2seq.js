// Translation panel: shown only when the server has a seq2seq run under --runs. Translate a
// source, then draw one decoder layer's cross-attention (heads averaged) as a table:
// rows = output characters (their queries), columns = source characters (keys), rows sum to 1.

import { getJSON, postJSON } from "./api.js";

const $ = (id) => document.getElementById(id);
const state = { models: [], result: null, request: 0 };

function visible(piece) {
  return { " ": "␣", "<eos>": "⏎" }[piece] ?? piece;
}

export function renderAlignment(container, info, pattern, source, output) {
  const table = document.createElement("table");
  table.className = "heatmap alignment";
  const head = table.createTHead().insertRow();
  head.append(document.createElement("th"));
  source.forEach((c, s) => {
    const th = document.createElement("th");
    th.className = "source-label";
    th.dataset.pos = s;
    th.textContent = visible(c);
    head.append(th);
  });
  const body = table.createTBody();
  output.forEach((c, t) => {
    const tr = body.insertRow();
    const th = document.createElement("th");
    th.className = "query-label";
    th.textContent = visible(c);
    tr.append(th);
    source.forEach((_, s) => {
      const td = tr.insertCell();
      const w = pattern[t][s];
      td.dataset.t = t;
      td.dataset.s = s;
      td.title = w.toFixed(4);
      td.style.background = `rgba(25, 64, 165, ${w})`;
    });
  });
  container.replaceChildren(table);
  table.addEventListener("mouseover", (ev) => {
    const td = ev.target.closest("td");
    if (!td) return;
    const t = +td.dataset.t, s = +td.dataset.s;
    info.textContent = `output “${visible(output[t])}” (position ${t}) read source “${visible(source[s])}” ` +
      `(position ${s}) with weight ${pattern[t][s].toFixed(4)}`;
  });
  table.addEventListener("mouseleave", () => { info.textContent = ""; });
}

function draw() {
  const r = state.result;
  if (!r) return;
  const layer = +$("seq2seq-layer").value;
  renderAlignment($("seq2seq-heatmap"), $("seq2seq-hover"), r.alignment[layer], r.source_tokens, r.output_tokens);
  $("seq2seq-info").textContent = `decoder layer ${layer}, the mean of its ${r.n_heads} heads — ` +
    "row = an output character's query, column = the source character it reads; hover a cell";
}

function describe(m) {
  $("seq2seq-text").value = m.example;
  $("seq2seq-text").placeholder = m.example;
  $("seq2seq-layer").replaceChildren(...Array.from({ length: m.n_dec_layers }, (_, i) => new Option(String(i), i)));
  $("seq2seq-layer").value = m.n_dec_layers - 1;
  $("seq2seq-info").textContent = `${m.task}: at most ${m.src_ctx} characters from ${JSON.stringify(m.source_chars)}`;
}

async function translate() {
  const request = ++state.request;
  $("seq2seq-go").disabled = true;
  try {
    const body = { model: $("seq2seq-model").value, text: $("seq2seq-text").value };
    const result = await postJSON("/api/seq2seq/translate", body);
    if (request !== state.request) return;
    state.result = result;
    $("seq2seq-output").textContent = result.output_text;
    $("seq2seq-output").classList.remove("failed");
    draw();
  } catch (e) {
    if (request !== state.request) return;
    state.result = null;
    $("seq2seq-output").textContent = e.message;
    $("seq2seq-output").classList.add("failed");
    $("seq2seq-heatmap").replaceChildren();
  } finally {
    $("seq2seq-go").disabled = false;
  }
}

async function start() {
  const { models } = await getJSON("/api/seq2seq/models");
  if (!models.length) return;  // no translator: the panel stays hidden
  state.models = models;
  $("seq2seq-model").replaceChildren(...models.map((m) => new Option(m.label, m.id)));
  const pick = async () =>
    describe(await getJSON(`/api/seq2seq/models/${encodeURIComponent($("seq2seq-model").value)}`));
  await pick();
  $("seq2seq-panel").hidden = false;
  $("seq2seq-model").addEventListener("change", () => { state.result = null; pick().then(translate); });
  $("seq2seq-form").addEventListener("submit", (ev) => { ev.preventDefault(); translate(); });
  $("seq2seq-layer").addEventListener("change", draw);
}

start().catch((e) => { $("seq2seq-info").textContent = e.message; });
