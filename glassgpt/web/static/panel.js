// Never stale: each panel runs its requests through a Channel. A new request aborts the
// previous one, and an answer that arrives after a newer request started is dropped, so the
// newest request always wins. The panel's data-state says what it shows:
//   loading (greyed, a request is running) · ready · error (greyed, with the message) · empty.

export class Channel {
  constructor(panel, message) {
    this.panel = panel;
    this.message = message;  // where an error is written
    this.n = 0;
    this.controller = null;
    panel.dataset.state = "empty";
  }

  // fetcher(signal) → Promise of the answer; render(answer) draws it (only the newest is drawn).
  async run(fetcher, render) {
    const n = ++this.n;
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.panel.dataset.state = "loading";
    this.panel.setAttribute("aria-busy", "true");
    try {
      const answer = await fetcher(controller.signal);
      if (n !== this.n) return;
      this.setMessage("");
      render(answer);
      this.panel.dataset.state = "ready";
    } catch (e) {
      if (n !== this.n || e.name === "AbortError") return;
      this.setMessage(e.message);
      this.panel.dataset.state = "error";
    } finally {
      if (n === this.n) {
        this.panel.removeAttribute("aria-busy");
        this.controller = null;
      }
    }
  }

  // Drop what the panel shows (a model switch): outstanding answers are ignored.
  clear(message = "") {
    this.n++;
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.setMessage(message);
    this.panel.dataset.state = "empty";
    this.panel.removeAttribute("aria-busy");
  }

  setMessage(text) {
    if (!this.message) return;
    this.message.textContent = text;
    this.message.hidden = !text;
  }
}
