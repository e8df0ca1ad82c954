// The r1 chat page: streams /v1/chat/completions, shows the reasoning (collapsible) above the answer.
// Plain DOM, no build step; text is always inserted as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const conversation = [];     // {role, content} of the conversation so far (reasoning is not sent back)
let modelName = null;
let controller = null;       // AbortController of the answer being streamed

const settingsKey = "r1-chat-settings";
const saved = JSON.parse(localStorage.getItem(settingsKey) || "{}");
for (const id of ["temperature", "top-p", "max-tokens", "system", "api-key"]) {
  if (saved[id] !== undefined) $(id).value = saved[id];
  $(id).addEventListener("change", () => {
    saved[id] = $(id).value;
    localStorage.setItem(settingsKey, JSON.stringify(saved));
  });
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    if (r.status === 401) { showError("This server needs an API key: enter it under Settings."); $("settings").open = true; return; }
    const body = await r.json();
    modelName = body.data[0].id;
    $("model-name").textContent = modelName;
    const defaults = body.data[0].sampling_defaults || {};  // the server's, unless the user set their own
    if (saved["temperature"] === undefined && defaults.temperature !== undefined) $("temperature").value = defaults.temperature;
    if (saved["top-p"] === undefined && defaults.top_p !== undefined) $("top-p").value = defaults.top_p;
  } catch (e) { showError("Cannot reach the server: " + e); }
}

function addMessage(role) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  $("messages").appendChild(div);
  return div;
}

function addUser(text) {
  const div = addMessage("user");
  const p = document.createElement("div");
  p.className = "user-text";
  p.textContent = text;
  div.appendChild(p);
}

function addAssistant() {
  const div = addMessage("assistant");
  const details = document.createElement("details");
  details.className = "reasoning";
  details.open = true;
  details.hidden = true;
  const summary = document.createElement("summary");
  summary.textContent = "Thinking…";
  const reasoning = document.createElement("div");
  reasoning.className = "reasoning-text";
  details.append(summary, reasoning);
  const answer = document.createElement("div");
  answer.className = "answer";
  const meta = document.createElement("div");
  meta.className = "meta";
  div.append(details, answer, meta);
  return { div, details, summary, reasoning, answer, meta };
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").hidden = !busy;
}

// Server-sent events from a fetch body: yields each "data:" payload.
async function* sseEvents(response) {
  const reader = response.body.getReader();
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
      for (const line of event.split("\n")) {
        if (line.startsWith("data:")) yield line.slice(5).trim();
      }
    }
  }
}

async function send(text) {
  showError("");
  addUser(text);
  conversation.push({ role: "user", content: text });
  const view = addAssistant();
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...conversation);
  const body = {
    messages, stream: true, stream_options: { include_usage: true },
    max_tokens: parseInt($("max-tokens").value, 10),
  };
  // empty fields are left out: the server applies its defaults
  if ($("temperature").value !== "") body.temperature = parseFloat($("temperature").value);
  if ($("top-p").value !== "") body.top_p = parseFloat($("top-p").value);
  if (modelName) body.model = modelName;
  controller = new AbortController();
  setBusy(true);
  const started = performance.now();
  let thoughtFor = null, content = "", finish = null, usage = null;
  try {
    const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!r.ok) {
      let message = r.status + " " + r.statusText;
      try { message = (await r.json()).error.message; } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    for await (const data of sseEvents(r)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        const delta = choice.delta || {};
        if (delta.reasoning_content) {
          view.details.hidden = false;
          view.reasoning.textContent += delta.reasoning_content;
        }
        if (delta.content) {
          if (thoughtFor === null) thoughtFor = (performance.now() - started) / 1000;
          content += delta.content;
          view.answer.textContent = content;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      $("messages").scrollTop = $("messages").scrollHeight;
    }
  } catch (e) {
    if (e.name !== "AbortError") showError(String(e.message || e));
    else finish = "stopped";
  } finally {
    const seconds = (thoughtFor ?? (performance.now() - started) / 1000).toFixed(1);
    view.summary.textContent = thoughtFor === null && finish !== "stop" ? `Reasoning (${seconds} s)` : `Thought for ${seconds} s`;
    if (content) view.details.open = false;  // collapse the reasoning once the answer is there
    const parts = [];
    if (finish) parts.push("finish: " + finish);
    if (usage) parts.push(`${usage.completion_tokens} tokens`);
    view.meta.textContent = parts.join(" · ");
    conversation.push({ role: "assistant", content });
    controller = null;
    setBusy(false);
  }
}

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || controller) return;
  $("prompt").value = "";
  send(text);
});
$("prompt").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("composer").requestSubmit(); }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("new-chat").addEventListener("click", () => {
  if (controller) controller.abort();
  conversation.length = 0;
  $("messages").replaceChildren();
  showError("");
});
$("api-key").addEventListener("change", loadModel);
loadModel();
