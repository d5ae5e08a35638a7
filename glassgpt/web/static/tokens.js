// Tokens as a reader sees them. The server sends each token's text and bytes (web/tokens.py);
// a byte-level piece that holds only part of a UTF-8 character is shown as its bytes, <E4 B8>,
// with a tooltip naming the character it belongs to (when the prompt tells us).

export function visible(text) {
  // Make whitespace visible: a space is ·, a newline ↵, a tab →.
  return text.replace(/ /g, "·").replace(/\n/g, "↵").replace(/\t/g, "→") || "∅";
}

// The label of one token: its text with visible whitespace, or <bytes> for part of a character.
export function label(t) {
  if (t.partial) return `<${t.bytes}>`;
  return visible(t.text ?? "");
}

// What a tooltip says about a token.
export function describe(t, extra = "") {
  const parts = [`id ${t.id}`, `piece ${JSON.stringify(t.piece)}`, `bytes ${t.bytes}`];
  if (t.partial) parts.push(t.of ? `part of “${t.of}”` : "part of a UTF-8 character");
  else parts.push(`text ${JSON.stringify(t.text)}`);
  return (extra ? extra + " · " : "") + parts.join(" · ");
}

// info: where a chip's details appear on keyboard focus or a tap (what its tooltip says to a mouse).
export function renderChips(container, tokens, { selected = -1, onPick = null, info = null } = {}) {
  container.replaceChildren(...tokens.map((t, i) => {
    const chip = document.createElement(onPick ? "button" : "span");
    chip.className = "chip" + (t.partial ? " partial" : "") + (i === selected ? " selected" : "");
    chip.dataset.pos = i;
    chip.title = describe(t, `position ${i}`);
    const say = () => { if (info) info.textContent = chip.title; };
    chip.addEventListener("focus", say);
    if (onPick) {
      chip.type = "button";
      chip.addEventListener("click", () => { say(); onPick(i); });
    }
    const piece = document.createElement("span");
    piece.className = "piece";
    piece.textContent = label(t);
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = t.id;
    chip.append(piece, id);
    return chip;
  }));
}
