// The embedding lab (G9): nearest neighbours, a − b + c, and projection on a direction.

export function renderEmbed(container, title, results, signed = false) {
  const heading = document.createElement("div");
  heading.className = "caption";
  heading.textContent = title;
  const max = Math.max(1e-9, ...results.map((r) => Math.abs(r.score)));
  const rows = results.map((r) => {
    const row = document.createElement("div");
    row.className = "bar-row";
    const label = document.createElement("span");
    label.className = "bar-label";
    label.textContent = JSON.stringify(r.text).slice(1, -1);
    const track = document.createElement("span");
    track.className = "bar-track" + (signed ? " signed" : "");
    const bar = document.createElement("span");
    bar.className = "bar" + (r.score < 0 ? " negative" : "");
    const width = 100 * Math.abs(r.score) / max;
    bar.style.width = `${signed ? width / 2 : width}%`;
    if (signed) bar.style.left = r.score < 0 ? `${50 - width / 2}%` : "50%";
    track.append(bar);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = r.score.toFixed(3);
    row.append(label, track, value);
    return row;
  });
  container.replaceChildren(heading, ...rows);
}

export function parsePairs(text) {
  return text.split(";").map((p) => p.split(",").map((w) => w.trim())).filter((p) => p.length === 2 && p[0] && p[1]);
}

export function parseWords(text) {
  return text.split(/[\s,]+/).map((w) => w.trim()).filter(Boolean);
}
