// The prompt as tokens: one chip per token, showing the vocabulary's piece and the id.

export function visible(text) {
  // Make whitespace visible: a space is ·, a newline ↵, a tab →.
  return text.replace(/ /g, "·").replace(/\n/g, "↵").replace(/\t/g, "→") || "∅";
}

export function renderChips(container, tokens) {
  container.replaceChildren(...tokens.map((t, i) => {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.dataset.pos = i;
    chip.title = `position ${i} · id ${t.id} · text ${JSON.stringify(t.text)}`;
    const piece = document.createElement("span");
    piece.className = "piece";
    piece.textContent = visible(t.piece);
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = t.id;
    chip.append(piece, id);
    return chip;
  }));
}
