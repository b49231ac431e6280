/// The chat page served at `/`: one self-contained HTML document (no build step, nothing fetched from elsewhere).
/// It lists the served models, streams replies from /v1/chat/completions, and with "Compare" sends the same message
/// to two models side by side (e.g. an original and its compressed version), showing tokens/s and time to first
/// token for each. Kept in the binary as a string, so a release build needs no resource bundle beside it.
enum WebPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Squish chat</title>
<style>
  :root { --bg: #f6f7f9; --panel: #fff; --ink: #1d2330; --muted: #6b7280; --line: #dfe3ea; --accent: #2f6feb; --user: #eef3ff; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg);
         display: flex; flex-direction: column; height: 100vh; }
  header { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; padding: 10px 16px; background: var(--panel);
           border-bottom: 1px solid var(--line); }
  header h1 { font-size: 17px; margin: 0 8px 0 0; }
  header label { color: var(--muted); font-size: 13px; display: flex; align-items: center; gap: 6px; }
  select, input[type=number] { font: inherit; font-size: 13px; padding: 3px 6px; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
  input[type=number] { width: 72px; }
  #status { margin-left: auto; font-size: 12px; color: var(--muted); }
  main { flex: 1; display: flex; gap: 12px; padding: 12px 16px; min-height: 0; }
  .pane { flex: 1; display: flex; flex-direction: column; background: var(--panel); border: 1px solid var(--line); border-radius: 10px; min-width: 0; }
  .pane[hidden] { display: none; }
  .pane h2 { font-size: 13px; font-weight: 600; margin: 0; padding: 8px 12px; border-bottom: 1px solid var(--line); display: flex; gap: 8px; }
  .pane h2 .stats { margin-left: auto; font-weight: 400; color: var(--muted); font-variant-numeric: tabular-nums; }
  .log { flex: 1; overflow-y: auto; padding: 12px; }
  .msg { white-space: pre-wrap; word-wrap: break-word; padding: 8px 10px; border-radius: 8px; margin: 0 0 10px; }
  .msg.user { background: var(--user); margin-left: 15%; }
  .msg.assistant { background: #f3f4f6; margin-right: 15%; }
  .msg.error { background: #fdecec; color: #9b1c1c; }
  footer { display: flex; gap: 8px; padding: 10px 16px 14px; background: var(--panel); border-top: 1px solid var(--line); }
  textarea { flex: 1; font: inherit; resize: vertical; min-height: 44px; max-height: 40vh; padding: 8px 10px; border: 1px solid var(--line); border-radius: 8px; }
  button { font: inherit; padding: 0 16px; border: 0; border-radius: 8px; background: var(--accent); color: #fff; cursor: pointer; }
  button.secondary { background: #e5e7eb; color: var(--ink); }
  button:disabled { opacity: .5; cursor: default; }
</style>
</head>
<body>
<header>
  <h1>Squish</h1>
  <label>Model <select id="model-a"></select></label>
  <label><input type="checkbox" id="compare"> Compare with</label>
  <label id="model-b-label" hidden><select id="model-b"></select></label>
  <label>Max tokens <input type="number" id="max-tokens" value="256" min="1"></label>
  <label>Temperature <input type="number" id="temperature" value="0.7" min="0" max="2" step="0.1"></label>
  <span id="status">loading models…</span>
</header>
<main>
  <section class="pane" id="pane-a" data-state="idle" data-chunks="0"><h2><span class="name"></span><span class="stats"></span></h2><div class="log"></div></section>
  <section class="pane" id="pane-b" data-state="idle" data-chunks="0" hidden><h2><span class="name"></span><span class="stats"></span></h2><div class="log"></div></section>
</main>
<footer>
  <textarea id="prompt" placeholder="Message (Enter sends, Shift+Enter for a new line)"></textarea>
  <button id="send">Send</button>
  <button id="stop" class="secondary" disabled>Stop</button>
  <button id="clear" class="secondary">Clear</button>
</footer>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const panes = { a: { el: $("pane-a"), select: $("model-a"), history: [] }, b: { el: $("pane-b"), select: $("model-b"), history: [] } };
let controllers = [];

function apiKey() { return localStorage.getItem("squish-api-key") || ""; }
function headers() {
  const h = { "Content-Type": "application/json" };
  if (apiKey()) h["Authorization"] = "Bearer " + apiKey();
  return h;
}
async function api(path, options = {}) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const r = await fetch(path, { ...options, headers: headers() });
    if (r.status !== 401) return r;
    const key = prompt("This server needs an API key:");
    if (!key) return r;
    localStorage.setItem("squish-api-key", key);
  }
}

async function loadModels() {
  try {
    const r = await api("/v1/models");
    const data = (await r.json()).data || [];
    for (const p of Object.values(panes)) {
      p.select.innerHTML = "";
      for (const m of data) {
        const o = document.createElement("option");
        o.value = m.id;
        o.textContent = m.id + (m.status && m.status !== "ready" ? " (" + m.status + ")" : "");
        p.select.appendChild(o);
      }
    }
    if (data.length > 1) panes.b.select.selectedIndex = 1;
    $("status").textContent = data.length + (data.length === 1 ? " model" : " models");
    if (data.some((m) => m.status === "loading")) setTimeout(loadModels, 1500);
    updateNames();
  } catch (e) {
    $("status").textContent = "cannot reach the server: " + e;
  }
}

function updateNames() {
  for (const p of Object.values(panes)) p.el.querySelector(".name").textContent = p.select.value;
}

function addMessage(pane, role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  const log = pane.el.querySelector(".log");
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

async function streamReply(pane, text) {
  const el = pane.el;
  pane.history.push({ role: "user", content: text });
  addMessage(pane, "user", text);
  const out = addMessage(pane, "assistant", "");
  const stats = el.querySelector(".stats");
  el.dataset.state = "streaming";
  el.dataset.chunks = "0";
  const controller = new AbortController();
  controllers.push(controller);
  const started = performance.now();
  let first = 0, tokens = 0, reply = "";
  const body = { model: pane.select.value, messages: pane.history, stream: true,
                 stream_options: { include_usage: true },
                 max_tokens: parseInt($("max-tokens").value) || 256,
                 temperature: parseFloat($("temperature").value) || 0 };
  try {
    const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!r.ok) {
      const err = await r.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || ("HTTP " + r.status));
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          if (!first) first = performance.now();
          reply += delta.content;
          out.textContent = reply;
          el.dataset.chunks = String(parseInt(el.dataset.chunks) + 1);
          if (!chunk.usage) tokens++;
          const seconds = (performance.now() - first) / 1000;
          stats.textContent = tokens + " tokens · " + (seconds > 0 ? (tokens / seconds).toFixed(1) : "–") + " tok/s · first token " + Math.round(first - started) + " ms";
          el.querySelector(".log").scrollTop = 1e9;
        }
      }
    }
    const seconds = first ? (performance.now() - first) / 1000 : 0;
    stats.textContent = tokens + " tokens · " + (seconds > 0 ? (tokens / seconds).toFixed(1) : "–") + " tok/s · first token " + (first ? Math.round(first - started) : "–") + " ms";
    pane.history.push({ role: "assistant", content: reply });
    el.dataset.state = "done";
  } catch (e) {
    if (e.name === "AbortError") {
      pane.history.push({ role: "assistant", content: reply });
      el.dataset.state = "done";
    } else {
      addMessage(pane, "error", String(e.message || e));
      pane.history.pop();
      el.dataset.state = "error";
    }
  }
}

async function send() {
  const text = $("prompt").value.trim();
  if (!text) return;
  $("prompt").value = "";
  $("send").disabled = true;
  $("stop").disabled = false;
  controllers = [];
  const active = [panes.a];
  if ($("compare").checked) active.push(panes.b);
  await Promise.all(active.map((p) => streamReply(p, text)));
  $("send").disabled = false;
  $("stop").disabled = true;
}

$("send").addEventListener("click", send);
$("stop").addEventListener("click", () => controllers.forEach((c) => c.abort()));
$("clear").addEventListener("click", () => {
  for (const p of Object.values(panes)) { p.history = []; p.el.querySelector(".log").innerHTML = ""; p.el.querySelector(".stats").textContent = ""; }
});
$("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); } });
$("compare").addEventListener("change", () => {
  const on = $("compare").checked;
  panes.b.el.hidden = !on;
  $("model-b-label").hidden = !on;
});
for (const p of Object.values(panes)) p.select.addEventListener("change", () => { p.history = []; p.el.querySelector(".log").innerHTML = ""; updateNames(); });
loadModels();
</script>
</body>
</html>
"""#
}
