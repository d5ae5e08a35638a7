// Generation, streamed token by token over server-sent events. Stop aborts the request;
// the server notices the closed connection and stops generating.

import { postEvents } from "./api.js";

export class Generator {
  constructor({ output, status, startButton, stopButton }) {
    Object.assign(this, { output, status, startButton, stopButton });
    this.controller = null;
    stopButton.addEventListener("click", () => this.stop());
  }

  async start(body) {
    this.stop();
    const controller = new AbortController();
    this.controller = controller;
    this.output.querySelector(".prompt-part").textContent = body.prompt;
    const fresh = this.output.querySelector(".new-part");
    fresh.textContent = "";
    this.startButton.disabled = true;
    this.stopButton.disabled = false;
    this.status.textContent = "generating…";
    this.output.dataset.state = "running";
    let pieces = 0;
    try {
      await postEvents("/api/generate", body, controller.signal, (event, data) => {
        if (event === "start") this.output.querySelector(".prompt-part").textContent = data.prompt;
        else if (event === "message") { fresh.textContent += data.text; pieces++; this.status.textContent = `${pieces} pieces…`; }
        else if (event === "done") this.status.textContent = `done: ${data.pieces} pieces`;
        else if (event === "error") this.status.textContent = `error: ${data.error}`;
      });
      this.output.dataset.state = "done";
    } catch (e) {
      if (e.name === "AbortError") {
        this.status.textContent = `stopped after ${pieces} pieces`;
        this.output.dataset.state = "stopped";
      } else {
        this.status.textContent = `error: ${e.message}`;
        this.output.dataset.state = "error";
      }
    } finally {
      if (this.controller === controller) {
        this.controller = null;
        this.startButton.disabled = false;
        this.stopButton.disabled = true;
      }
    }
  }

  stop() {
    if (this.controller) this.controller.abort();
  }
}
