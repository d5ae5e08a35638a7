// Wiring: the model picker and the prompt drive every panel; the sliders recompute the
// distribution locally; the panels ask the server only when the prompt or model changes.

import { decodeBytes, decodeFloat32, getJSON, postJSON } from "./api.js";
import { renderGrid, renderHeatmap } from "./attention.js";
import { entropyBits, probabilities, renderBars } from "./distribution.js";
import { parsePairs, parseWords, renderEmbed } from "./embed.js";
import { Generator } from "./generate.js";
import { renderLens } from "./lens.js";
import { renderChips } from "./tokens.js";

const $ = (id) => document.getElementById(id);
const state = { model: null, models: [], tokens: [], next: null, sorted: null, request: 0 };

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function settings() {
  const k = +$("top-k").value, minP = +$("min-p").value;
  return { temperature: +$("temperature").value, topK: k, topP: +$("top-p").value, minP };
}

function updateSliderLabels() {
  const s = settings();
  $("temperature-value").textContent = s.temperature.toFixed(2);
  $("top-k-value").textContent = s.topK > 0 ? s.topK : "off";
  $("top-p-value").textContent = s.topP.toFixed(2);
  $("min-p-value").textContent = s.minP > 0 ? s.minP.toFixed(2) : "off";
}

function drawDistribution() {
  updateSliderLabels();
  if (!state.sorted) return;
  const s = settings();
  const p = probabilities(state.sorted, s);
  const pT1 = probabilities(state.sorted, { temperature: 1, topK: 0, topP: 1, minP: 0 });
  let kept = 0;
  for (const x of p) if (x > 0) kept++;
  $("dist-summary").textContent =
    `${kept.toLocaleString()} of ${state.sorted.length.toLocaleString()} tokens possible · ` +
    `entropy ${entropyBits(p).toFixed(2)} bits · the thin mark is each token's probability at T = 1`;
  renderBars($("bars"), state.next.top, p, pT1);
}

async function loadModels() {
  const { models } = await getJSON("/api/models");
  state.models = models;
  $("model-picker").replaceChildren(...models.map((m) => new Option(m.label, m.id)));
  state.model = models.length ? models[0].id : null;
  await describeModel();
}

async function describeModel() {
  if (!state.model) { showError("this server offers no model"); return; }
  $("model-info").textContent = "loading…";
  const m = await getJSON(`/api/models/${encodeURIComponent(state.model)}`);
  $("model-info").textContent =
    `${m.n_layers} layers · ${m.n_heads} heads · d_model ${m.d_model} · context ${m.n_ctx} · ` +
    `vocabulary ${m.d_vocab.toLocaleString()} · ${(m.params / 1e6).toFixed(1)}M parameters`;
  state.info = m;
}

async function refresh() {
  const request = ++state.request;  // only the latest prompt's answers are drawn
  const body = { model: state.model, prompt: $("prompt").value };
  if (!body.prompt) return;
  try {
    const analysis = await postJSON("/api/analyze", body);
    if (request !== state.request) return;
    showError("");
    state.tokens = analysis.tokens;
    state.next = analysis.next;
    state.sorted = decodeFloat32(analysis.next.sorted_logits);
    renderChips($("tokens"), analysis.tokens);
    $("token-count").textContent = `${analysis.tokens.length} tokens (context window ${state.info?.n_ctx ?? "?"})`;
    drawDistribution();
    const [attention, lens] = await Promise.all([
      postJSON("/api/attention", body).catch((e) => ({ error: e.message })),
      postJSON("/api/lens", { ...body, k: 5 }).catch((e) => ({ error: e.message })),
    ]);
    if (request !== state.request) return;
    if (attention.error) $("attn-grid").textContent = attention.error;
    else renderGrid($("attn-grid"), decodeBytes(attention.pattern_u8), attention.shape, openHead);
    if (lens.error) $("lens").textContent = lens.error;
    else renderLens($("lens"), lens.tokens, lens.layers);
    if (state.head) openHead(...state.head);
  } catch (e) {
    if (request === state.request) showError(e.message);
  }
}

async function openHead(layer, head) {
  state.head = [layer, head];
  const request = state.request;
  const body = { model: state.model, prompt: $("prompt").value, layer, head };
  try {
    const result = await postJSON("/api/attention/head", body);
    if (request !== state.request) return;
    $("heatmap-title").textContent = `layer ${layer}, head ${head} — row = a token's query, column = the key it reads; hover a token`;
    renderHeatmap($("heatmap"), $("hover-info"), result.pattern, result.tokens);
  } catch (e) {
    state.head = null;
    showError(e.message);
  }
}

async function runEmbed(op, words, pairs, title, signed) {
  try {
    const space = $("embed-space").value;
    const result = await postJSON("/api/embed", { model: state.model, op, words, pairs, k: 12, space });
    renderEmbed($("embed-result"), title, result.results, signed);
  } catch (e) {
    $("embed-result").textContent = e.message;
  }
}

function wire() {
  let timer = null;
  $("prompt").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 250); });
  for (const id of ["temperature", "top-k", "top-p", "min-p"]) $(id).addEventListener("input", drawDistribution);
  $("model-picker").addEventListener("change", async (ev) => {
    state.model = ev.target.value;
    state.head = null;
    $("heatmap").replaceChildren();
    try { await describeModel(); await refresh(); } catch (e) { showError(e.message); }
  });

  const generator = new Generator({
    output: $("gen-output"), status: $("gen-status"), startButton: $("generate"), stopButton: $("stop"),
  });
  $("generate").addEventListener("click", () => {
    const s = settings(), seed = $("seed").value;
    generator.start({
      model: state.model, prompt: $("prompt").value, max_new_tokens: +$("max-new").value,
      temperature: s.temperature, top_k: s.topK > 0 ? s.topK : null, top_p: s.topP < 1 ? s.topP : null,
      min_p: s.minP > 0 ? s.minP : null, seed: seed === "" ? null : +seed, chat: $("chat").checked,
    });
  });

  $("nearest-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const w = ev.target.w.value.trim();
    runEmbed("nearest", [w], [], `nearest to “${w}” (cosine)`, false);
  });
  $("analogy-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = ev.target, words = [f.a.value.trim(), f.b.value.trim(), f.c.value.trim()];
    runEmbed("analogy", words, [], `${words[0]} − ${words[1]} + ${words[2]} ≈ (cosine)`, false);
  });
  $("project-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const pairs = parsePairs(ev.target.pairs.value), words = parseWords(ev.target.words.value);
    runEmbed("project", words, pairs, `projection on mean(second − first) of ${pairs.map((p) => p.join("→")).join(", ")}`, true);
  });
}

wire();
loadModels().then(refresh).catch((e) => showError(e.message));
