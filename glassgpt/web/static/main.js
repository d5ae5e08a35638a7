// Wiring: the model picker and the prompt drive every panel; the sliders recompute the
// distribution locally. Each panel asks the server through its own Channel (panel.js), so it
// shows a loading state, greys out on an error, and never draws an answer older than its newest.

import { decodeBytes, decodeFloat32, getJSON, postJSON } from "./api.js";
import { renderGrid, renderHeatmap } from "./attention.js";
import { entropyBits, probabilities, renderBars } from "./distribution.js";
import { parsePairs, parseWords, renderEmbed } from "./embed.js";
import { Generator } from "./generate.js";
import { renderLens } from "./lens.js";
import { Channel } from "./panel.js";
import { renderPipeline } from "./pipeline.js";
import { label, renderChips } from "./tokens.js";

const $ = (id) => document.getElementById(id);
const state = {
  model: null, models: [], info: null, tokens: [], next: null, sorted: null, head: null, drawn: null,
  pipe: { position: null, layer: 0, head: 0 }, lang: localStorage.getItem("glassgpt-lang") || "en",
};
const channels = {
  analyze: new Channel($("dist-panel"), $("error")),
  attention: new Channel($("attn-panel"), $("attn-error")),
  heatmap: new Channel($("heatmap-box"), $("attn-error")),
  lens: new Channel($("lens-panel"), $("lens-error")),
  pipeline: new Channel($("pipeline-panel"), $("pipe-error")),
  embed: new Channel($("embed-panel"), $("embed-error")),
};
let pipelineData = null;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function settings() {
  const k = +$("top-k").value, minP = +$("min-p").value;
  return { temperature: +$("temperature").value, topK: k, topP: +$("top-p").value, minP };
}

function samplingBody() {
  const s = settings(), seed = $("seed").value;
  return {
    temperature: s.temperature, top_k: s.topK > 0 ? s.topK : null, top_p: s.topP < 1 ? s.topP : null,
    min_p: s.minP > 0 ? s.minP : null, seed: seed === "" ? null : +seed,
  };
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
  renderBars($("bars"), state.next.top, p, pT1, { info: $("bar-info"), drawn: state.drawn });
}

async function loadModels() {
  const { models } = await getJSON("/api/models");
  state.models = models;
  $("model-picker").replaceChildren(...models.map((m) => new Option(m.label, m.id)));
  state.model = models.length ? models[0].id : null;
  await describeModel();
}

function options(select, n, prefix, keep) {
  select.replaceChildren(...Array.from({ length: n }, (_, i) => new Option(`${prefix}${i}`, i)));
  select.value = String(Math.min(keep, n - 1));
}

async function describeModel() {
  if (!state.model) { showError("this server offers no model"); return; }
  $("model-info").textContent = "loading…";
  const m = await getJSON(`/api/models/${encodeURIComponent(state.model)}`);
  $("model-info").textContent =
    `${m.n_layers} layers · ${m.n_heads} heads · d_model ${m.d_model} · context ${m.n_ctx} · ` +
    `vocabulary ${m.d_vocab.toLocaleString()} · ${(m.params / 1e6).toFixed(1)}M parameters`;
  state.info = m;
  state.pipe.layer = Math.min(state.pipe.layer, m.n_layers - 1);
  state.pipe.head = Math.min(state.pipe.head, m.n_heads - 1);
  options($("pipe-layer"), m.n_layers, "L", state.pipe.layer);
  options($("pipe-head"), m.n_heads, "h", state.pipe.head);
}

function showTokens(tokens) {
  state.tokens = tokens;
  const last = tokens.length - 1;
  const position = state.pipe.position === null ? last : Math.min(state.pipe.position, last);
  renderChips($("tokens"), tokens, { selected: position, onPick: pickPosition, info: $("chip-info") });
  $("token-count").textContent = `${tokens.length} tokens (context window ${state.info?.n_ctx ?? "?"})`;
  $("pipe-position").replaceChildren(...tokens.map((t, i) => new Option(`${i} · ${label(t)}`, i)));
  $("pipe-position").value = String(position);
}

function pickPosition(i) {
  state.pipe.position = i === state.tokens.length - 1 ? null : i;  // the last one follows the prompt's end
  $("pipe-position").value = String(i);
  $("tokens").querySelectorAll(".chip").forEach((c) => c.classList.toggle("selected", +c.dataset.pos === i));
  runPipeline();
}

function refresh() {
  const body = { model: state.model, prompt: $("prompt").value };
  if (!body.prompt) return;
  channels.analyze.run((signal) => postJSON("/api/analyze", body, signal), (analysis) => {
    state.next = analysis.next;
    state.sorted = decodeFloat32(analysis.next.sorted_logits);
    showTokens(analysis.tokens);
    state.drawn = null;
    drawDistribution();
  });
  channels.attention.run((signal) => postJSON("/api/attention", body, signal), (attention) => {
    renderGrid($("attn-grid"), decodeBytes(attention.pattern_u8), attention.shape, openHead);
  });
  channels.lens.run((signal) => postJSON("/api/lens", { ...body, k: 5 }, signal), (lens) => {
    renderLens($("lens"), lens.tokens, lens.layers, $("lens-info"));
  });
  runPipeline();
  if (state.head) openHead(...state.head);
}

function runPipeline() {
  const prompt = $("prompt").value;
  if (!prompt) return;
  const body = { model: state.model, prompt, position: state.pipe.position, layer: state.pipe.layer,
    head: state.pipe.head, ...samplingBody() };
  channels.pipeline.run((signal) => postJSON("/api/pipeline", body, signal), (data) => {
    pipelineData = data;
    if (!state.tokens.length || state.tokens.length !== data.tokens.length) showTokens(data.tokens);
    renderPipeline($("pipeline"), data, data.tokens, state.lang);
  });
}

function openHead(layer, head) {
  state.head = [layer, head];
  const body = { model: state.model, prompt: $("prompt").value, layer, head };
  $("heatmap-title").textContent = `layer ${layer}, head ${head} — loading…`;
  channels.heatmap.run((signal) => postJSON("/api/attention/head", body, signal), (result) => {
    $("heatmap-title").textContent = `layer ${layer}, head ${head} — row = a token's query, column = the key it reads; `
      + "point at or click a cell (or focus it and use the arrow keys and Enter)";
    renderHeatmap($("heatmap"), $("hover-info"), result.pattern, result.tokens);
  });
}

function runEmbed(op, words, pairs, title, signed) {
  const space = $("embed-space").value;
  const body = { model: state.model, op, words, pairs, k: 12, space };
  channels.embed.run((signal) => postJSON("/api/embed", body, signal),
    (result) => renderEmbed($("embed-result"), title, result, signed));
}

function setLang(lang) {
  state.lang = lang;
  localStorage.setItem("glassgpt-lang", lang);
  $("lang-en").setAttribute("aria-pressed", String(lang === "en"));
  $("lang-zh").setAttribute("aria-pressed", String(lang === "zh"));
  if (pipelineData) renderPipeline($("pipeline"), pipelineData, pipelineData.tokens, lang);
}

// A model switch: nothing the old model drew may stay on the page.
function clearPanels() {
  for (const c of Object.values(channels)) c.clear();
  state.head = null;
  state.tokens = [];
  state.next = state.sorted = pipelineData = null;
  for (const id of ["tokens", "bars", "attn-grid", "heatmap", "hover-info", "lens", "lens-info", "pipeline",
    "embed-result", "bar-info", "dist-summary", "token-count", "chip-info"]) $(id).replaceChildren();
  $("heatmap-title").textContent = "Click a thumbnail (or Tab to it and press Enter) to open its pattern.";
  state.pipe.position = null;
}

async function step() {
  const button = $("step");
  button.disabled = true;
  $("gen-status").textContent = "drawing one token…";
  try {
    const result = await postJSON("/api/step", { model: state.model, prompt: $("prompt").value, ...samplingBody() });
    state.drawn = result.next.id;
    drawDistribution();  // the drawn bar, highlighted, before the panels move on
    $("gen-status").textContent = `drew “${label(result.next)}” (id ${result.next.id})`;
    $("gen-status").dataset.drawn = result.next.id;
    await new Promise((done) => setTimeout(done, 400));  // see the draw, then the longer prompt
    $("prompt").value = result.text;
    refresh();
  } catch (e) {
    $("gen-status").textContent = `error: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

function wire() {
  let timer = null, pipeTimer = null;
  $("prompt").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 250); });
  for (const id of ["temperature", "top-k", "top-p", "min-p"]) {
    $(id).addEventListener("input", () => {
      drawDistribution();
      clearTimeout(pipeTimer);
      pipeTimer = setTimeout(runPipeline, 300);  // the pipeline's last stage samples with these settings
    });
  }
  $("model-picker").addEventListener("change", async (ev) => {
    state.model = ev.target.value;
    clearPanels();
    try { await describeModel(); refresh(); } catch (e) { showError(e.message); }
  });
  $("pipe-position").addEventListener("change", (ev) => pickPosition(+ev.target.value));
  $("pipe-layer").addEventListener("change", (ev) => { state.pipe.layer = +ev.target.value; runPipeline(); });
  $("pipe-head").addEventListener("change", (ev) => { state.pipe.head = +ev.target.value; runPipeline(); });
  $("lang-en").addEventListener("click", () => setLang("en"));
  $("lang-zh").addEventListener("click", () => setLang("zh"));
  $("step").addEventListener("click", step);

  const generator = new Generator({
    output: $("gen-output"), status: $("gen-status"), startButton: $("generate"), stopButton: $("stop"),
  });
  $("generate").addEventListener("click", () => {
    generator.start({
      model: state.model, prompt: $("prompt").value, max_new_tokens: +$("max-new").value,
      ...samplingBody(), chat: $("chat").checked,
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
setLang(state.lang);
loadModels().then(refresh).catch((e) => showError(e.message));
