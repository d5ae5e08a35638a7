// Talking to the server: JSON in, JSON out; errors come back as {error, status}.

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function getJSON(path) {
  return handle(await fetch(path));
}

export async function postJSON(path, body, signal) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
  });
  return handle(response);
}

async function handle(response) {
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new ApiError(response.status, data.error || `HTTP ${response.status}`);
  return data;
}

// base64 → typed arrays (the server sends big arrays this way, with their shape beside them).
export function decodeBytes(b64) {
  const text = atob(b64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

export function decodeFloat32(b64) {
  const bytes = decodeBytes(b64);
  return new Float32Array(bytes.buffer, 0, bytes.length / 4);  // little-endian, as sent
}

// Server-sent events over a POST: calls onEvent(name, data) for each event until the stream ends.
export async function postEvents(path, body, signal, onEvent) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
  });
  if (!response.ok) await handle(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      onEvent(name, JSON.parse(data));
    }
  }
}
