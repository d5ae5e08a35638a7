// The Pipeline panel: one token through one layer and head, stage by stage, with the real
// numbers from POST /api/pipeline. Each stage names its seed point and explains itself in two
// sentences, in English or Chinese (the language switch).

import { describe, label } from "./tokens.js";

const TEXT = {
  token: {
    seed: "G2 · G3",
    en: ["Token → embedding",
      "The model reads a token as its id and looks up that row of the embedding matrix W_E: from here on one vector of d_model numbers stands for the token. GPT-2 style models add a learned row of W_pos for its position; Llama-style models add nothing here and rotate q and k by position instead (RoPE)."],
    zh: ["词元 → 嵌入",
      "模型把词元当作一个编号，取出嵌入矩阵 W_E 的那一行：从这里开始，这个词元就是一个 d_model 维的向量。GPT-2 式的模型再加上位置矩阵 W_pos 的一行；Llama 式的模型这里不加位置，而是在后面按位置旋转 q 和 k（RoPE）。"],
  },
  resid: {
    seed: "G8 · T7",
    en: ["Residual stream → norm",
      "The residual stream is the vector this token carries through the model: every block reads it and adds its results to it instead of replacing it. Before attention it is normalised (LayerNorm or RMSNorm), so attention sees a vector of steady size."],
    zh: ["残差流 → 归一化",
      "残差流是这个词元一路携带的向量：每个块都读取它，再把结果加上去，而不是覆盖它。进入注意力之前先做归一化（LayerNorm 或 RMSNorm），让注意力看到的向量大小稳定。"],
  },
  qkv: {
    seed: "T1 · T9",
    en: ["q, k, v of the head",
      "Three learned matrices turn the normalised vector into this head's query q (what the token looks for), key k (what it offers) and value v (what it passes on). They are activations computed from the input, x·W_Q, x·W_K and x·W_V, not parameters."],
    zh: ["这个头的 q、k、v",
      "三个学到的矩阵把归一化后的向量变成这个头的查询 q（它在找什么）、键 k（它能提供什么）和值 v（它传递的内容）。它们是由输入算出的激活 x·W_Q、x·W_K、x·W_V，本身不是参数。"],
  },
  scores: {
    seed: "T2 · T3 · T8",
    en: ["Scores q·kᵢ/√d_head",
      "The query is compared with the key of every token it may read by a dot product, divided by √d_head so the numbers stay in a range where the softmax works well. A large score means that token offers what this one looks for."],
    zh: ["分数 q·kᵢ/√d_head",
      "查询与它能读取的每个词元的键做点积，再除以 √d_head，让数值保持在 softmax 好用的范围内。分数越大，说明那个词元提供的正是这个词元要找的。"],
  },
  mask: {
    seed: "T6",
    en: ["Causal mask",
      "A token may not read the tokens after it, so their scores are set to −∞ before the softmax. Since e^−∞ = 0, the future gets exactly zero weight and cannot change this token's result."],
    zh: ["因果掩码",
      "一个词元不能读取它后面的词元，所以它们的分数在 softmax 之前被设为 −∞。因为 e^−∞ = 0，后面的词元得到的权重正好是零，无法影响这个词元的结果。"],
  },
  softmax: {
    seed: "T2 · T8",
    en: ["Softmax → the pattern",
      "The softmax turns the scores into weights that are positive and sum to 1: this token's row of the attention pattern. It says how much of each earlier token's value this token takes."],
    zh: ["softmax → 注意力模式",
      "softmax 把分数变成正的、总和为 1 的权重：这就是注意力模式中这个词元的那一行。它表示这个词元要从前面每个词元的值里取多少。"],
  },
  z: {
    seed: "T2 · T11 · T12",
    en: ["Weighted sum of values: z",
      "The head's output z is the sum of the value vectors vᵢ, each times its weight in the pattern. The tokens with the largest weights are listed with the size of what each one contributes."],
    zh: ["值的加权和：z",
      "这个头的输出 z 是各个值向量 vᵢ 乘以它在注意力模式中的权重后的总和。下面列出权重最大的几个词元，以及各自贡献的大小。"],
  },
  write: {
    seed: "T10 · T7",
    en: ["W_O writes into the residual stream",
      "This head's slice of W_O maps z (d_head numbers) back up to d_model numbers: what the head writes into the residual stream. The writes of all heads are summed and added to the stream, giving the residual stream after attention."],
    zh: ["W_O 写回残差流",
      "W_O 中属于这个头的那一块把 z（d_head 维）映射回 d_model 维：这就是这个头写进残差流的内容。所有头写入的内容相加后加回残差流，得到注意力之后的残差流。"],
  },
  mlp: {
    seed: "G5 · G3",
    en: ["MLP: up → non-linearity → down",
      "The MLP works on this token alone: it projects up to d_mlp units, applies a non-linearity (GELU, or SwiGLU's gate), and projects back down to d_model. The most active units are listed, and the result is added to the residual stream."],
    zh: ["MLP：升维 → 非线性 → 降维",
      "MLP 只处理这一个词元：先升维到 d_mlp 个单元，经过非线性（GELU，或 SwiGLU 的门控），再降回 d_model 维。下面列出最活跃的单元，结果加回残差流。"],
  },
  lens: {
    seed: "G4 · G6",
    en: ["Logit lens at this layer",
      "The logit lens asks what the model would predict if it stopped after this layer: the final norm and the unembedding applied to this residual stream. Early layers often guess poorly, and the guesses sharpen as the layers stack up."],
    zh: ["这一层的 logit lens（逻辑透镜）",
      "logit lens 问的是：如果模型在这一层之后就停下，它会预测什么？也就是把最终归一化和反嵌入直接用在这一层的残差流上。浅层的猜测常常不准，层数越深越清晰。"],
  },
  final: {
    seed: "G12",
    en: ["Final norm → logits → softmax(logits / T) → the drawn token",
      "After the last block, the final norm and the unembedding W_U give one logit for every token of the vocabulary. Dividing by the temperature T and taking the softmax, e^(x/T) / Σ e^(x/T), after the top-k, top-p and min-p cuts, gives the probabilities the next token is drawn from."],
    zh: ["最终归一化 → logits → softmax(logits / T) → 抽到的词元",
      "最后一个块之后，最终归一化和反嵌入矩阵 W_U 给词表中的每个词元一个 logit。除以温度 T 再做 softmax，即 e^(x/T) / Σ e^(x/T)，并经过 top-k、top-p、min-p 的筛选，就得到抽取下一个词元的概率。"],
  },
};

const WORDS = {
  en: { norm: "norm", cos: "cos to the final residual", numbers: "numbers", all: "all", masked: "masked: −∞",
    rope: "q and k are shown after the RoPE rotation by position", gqa: (h, g, n) => `query head ${h} shares key/value head ${g} with ${n - 1} other heads (grouped-query attention)`,
    unit: "unit", pre: "before", post: "after", drawn: "drawn", kept: "tokens kept", seed: "seed", random: "random",
    tied: "W_U = W_Eᵀ (tied)", untied: "W_U is its own matrix", position: "position", allHeads: "all heads' sum", wrote: "this head wrote",
    weight: "weight", contribution: "|weight · v|", prob: "probability", logit: "logit", token: "token", key: "key" },
  zh: { norm: "范数", cos: "与最终残差的余弦", numbers: "个数", all: "全部", masked: "被掩码：−∞",
    rope: "q 和 k 显示的是按位置做 RoPE 旋转之后的值", gqa: (h, g, n) => `查询头 ${h} 与另外 ${n - 1} 个头共用键/值头 ${g}（分组查询注意力）`,
    unit: "单元", pre: "之前", post: "之后", drawn: "抽到", kept: "个词元保留", seed: "种子", random: "随机",
    tied: "W_U = W_Eᵀ（共享）", untied: "W_U 是单独的矩阵", position: "位置", allHeads: "所有头之和", wrote: "这个头写入",
    weight: "权重", contribution: "|权重 · v|", prob: "概率", logit: "logit", token: "词元", key: "键" },
};

const fmt = (x, digits = 3) => (x === null ? "−∞" : Number(x).toFixed(digits).replace("-", "−"));

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

// A vector: a colour strip (blue > 0, orange < 0), its norm, its first numbers, and all of them on request.
function vector(name, v, w) {
  const box = el("div", "vec");
  box.dataset.name = name;
  const head = el("div", "vec-head");
  head.append(el("b", "", name), el("span", "muted", ` ${v.values.length} ${w.numbers} · ${w.norm} ${fmt(v.norm)}`
    + (v.cos_final !== undefined ? ` · ${w.cos} ${fmt(v.cos_final)}` : "")));
  const canvas = el("canvas", "strip");
  canvas.width = v.values.length;
  canvas.height = 1;
  const max = Math.max(1e-12, ...v.values.map(Math.abs));
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(v.values.length, 1);
  v.values.forEach((x, i) => {
    const a = Math.min(1, Math.abs(x) / max);
    const [r, g, b] = x >= 0 ? [25, 64, 165] : [200, 90, 20];
    image.data.set([255 - (255 - r) * a, 255 - (255 - g) * a, 255 - (255 - b) * a, 255], 4 * i);
  });
  ctx.putImageData(image, 0, 0);
  const details = el("details");
  const summary = el("summary", "nums", v.values.slice(0, 8).map((x) => fmt(x)).join("  ") + (v.values.length > 8 ? "  …" : ""));
  const all = el("div", "nums all", v.values.map((x) => fmt(x, 4)).join("  "));
  details.append(summary, all);
  box.append(head, canvas, details);
  return box;
}

// One row over the prompt's tokens: a label cell, then one cell per key position.
function row(tokens, values, { name, className, format = fmt, shade = null, position }) {
  const wrap = el("div", "row-wrap");
  const table = el("table", "pipe-row " + (className || ""));
  table.dataset.name = name;
  const head = table.createTHead().insertRow();
  head.append(el("th", "", ""));
  tokens.forEach((t, j) => {
    const th = el("th", j === position ? "me" : "", label(t));
    th.title = describe(t, `position ${j}`);
    head.append(th);
  });
  const tr = table.createTBody().insertRow();
  tr.append(el("th", "", name));
  values.forEach((x, j) => {
    const td = tr.insertCell();
    td.textContent = format(x);
    if (x === null) td.className = "masked";
    if (shade && x !== null) td.style.background = `rgba(25, 64, 165, ${Math.min(1, shade(x))})`;
    if (shade && x !== null && shade(x) > 0.55) td.style.color = "white";
  });
  wrap.append(table);
  return wrap;
}

function tokenList(items, value, w) {
  const list = el("ol", "tok-list");
  for (const t of items) {
    const li = el("li");
    const chip = el("span", "strip-chip" + (t.partial ? " partial" : ""), label(t));
    chip.title = describe(t);
    li.append(chip, el("span", "muted", " " + value(t)));
    list.append(li);
  }
  return list;
}

export function renderPipeline(container, data, tokens, lang) {
  const w = WORDS[lang];
  const stages = [];
  const stage = (id, ...body) => {
    const [title, explain] = TEXT[id][lang];
    const section = el("section", "stage" + (["scores", "mask", "softmax"].includes(id) ? " over-tokens" : ""));
    section.dataset.stage = id;
    const h = el("h3");
    h.append(el("span", "stage-n", `${stages.length + 1}`), ` ${title} `, el("span", "seed", TEXT[id].seed));
    section.append(h, el("p", "explain", explain), ...body.filter(Boolean));
    stages.push(section);
  };
  const a = data.arch;
  const p = data.position;
  const t = data.token;

  const chip = el("span", "chip big" + (t.partial ? " partial" : ""));
  chip.title = describe(t, `${w.position} ${p}`);
  chip.append(el("span", "piece", label(t)), el("span", "id", t.id));
  stage("token", el("div", "caption", `${w.position} ${p} · ${a.tied ? w.tied : w.untied}`), chip,
    vector(`W_E[${t.id}]`, data.embed.W_E_row, w),
    data.embed.W_pos_row && vector(`W_pos[${p}]`, data.embed.W_pos_row, w),
    vector("embed", data.embed.x, w));
  stage("resid", vector(`blocks.${data.layer}.resid_pre`, data.resid_pre, w),
    vector(`ln1 (${a.norm})`, data.ln1, w));
  const notes = [];
  if (a.positions === "rope") notes.push(w.rope);
  if (a.n_kv_heads !== a.n_heads) notes.push(w.gqa(data.head, data.kv_head, a.n_heads / a.n_kv_heads));
  stage("qkv", notes.length ? el("div", "caption", notes.join(" · ")) : null,
    vector(`q (head ${data.head})`, data.q, w), vector(`k`, data.k, w), vector(`v`, data.v, w));
  const reach = data.scores.map((s, j) => (j <= p ? s : null));
  stage("scores", el("div", "caption", `× 1/√${a.d_head} = ${fmt(data.scale, 4)}`),
    row(tokens, data.scores.map((s, j) => (j <= p ? s : undefined)),
      { name: "q·k/√d", position: p, format: (x) => (x === undefined ? "" : fmt(x, 2)) }));
  stage("mask", row(tokens, reach, { name: "+ mask", className: "mask", position: p, format: (x) => fmt(x, 2) }));
  stage("softmax", row(tokens, data.pattern, { name: "softmax", position: p, format: (x) => fmt(x, 3), shade: (x) => x }));
  stage("z", tokenList(data.top_keys.map((k) => ({ ...tokens[k.position], k })),
    (x) => `${w.position} ${x.k.position} · ${w.weight} ${fmt(x.k.weight)} · ${w.contribution} ${fmt(x.k.contribution_norm)}`, w),
  vector(`z (head ${data.head})`, data.z, w));
  stage("write", vector(`z · W_O[head ${data.head}] — ${w.wrote}`, data.head_write, w),
    vector(`attn.out — ${w.allHeads}`, data.attn_out, w),
    vector(`blocks.${data.layer}.resid_mid`, data.resid_mid, w));
  const units = el("table", "units");
  units.createTHead().insertRow().append(el("th", "", w.unit), el("th", "", `pre (${w.pre})`), el("th", "", `post (${w.post})`));
  const ub = units.createTBody();
  for (const u of data.mlp.units) {
    const tr = ub.insertRow();
    tr.append(el("td", "", u.unit), el("td", "", fmt(u.pre)), el("td", "", fmt(u.post)));
  }
  stage("mlp", el("div", "caption", `d_mlp ${a.d_mlp} · ${a.mlp === "swiglu" ? "SiLU(x·W_gate) ⊙ x·W_up" : "GELU(x·W_up)"} → ·W_down`),
    vector(`ln2 (${a.norm})`, data.ln2, w), vector("mlp.pre", data.mlp.pre, w), vector("mlp.post", data.mlp.post, w),
    units, vector("mlp.out", data.mlp.out, w), vector(`blocks.${data.layer}.resid_post`, data.resid_post, w));
  stage("lens", tokenList(data.lens, (x) => `${(100 * x.prob).toFixed(1)}%`, w));
  const s = data.sampling;
  const settings = `T = ${s.temperature} · top-k ${s.top_k ?? "off"} · top-p ${s.top_p ?? "off"} · min-p ${s.min_p ?? "off"} · `
    + `${s.kept.toLocaleString()} ${w.kept} · ${w.seed} ${s.seed ?? w.random}`;
  const logits = el("table", "units logits");
  logits.createTHead().insertRow().append(el("th", "", w.token), el("th", "", w.logit), el("th", "", w.prob));
  const lb = logits.createTBody();
  for (const x of data.logits) {
    const tr = lb.insertRow();
    if (x.id === data.sampled.id) tr.className = "drawn";
    const name = el("td", "tok", label(x));
    name.title = describe(x);
    tr.append(name, el("td", "", fmt(x.logit)), el("td", "", `${(100 * x.prob).toFixed(2)}%`));
  }
  const drawn = el("div", "drawn-token");
  drawn.append(`${w.drawn}: `, el("b", "", label(data.sampled)), el("span", "muted",
    ` id ${data.sampled.id} · ${(100 * data.sampled.prob).toFixed(2)}%`));
  stage("final", vector("final_norm", data.final_norm, w), el("div", "caption", settings), logits, drawn);
  container.replaceChildren(...stages);
}
