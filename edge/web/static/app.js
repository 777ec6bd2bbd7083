// The agent's page: polls /state once a second, draws the slice grid over the MJPEG frame, the stage bars and the
// plots, streams answers from /llm/v1/chat/completions and shows /llm/v1/alerts.
"use strict";

const STAGES = [["preprocess", "preprocess"], ["vpm", "VPM"], ["resampler", "Resampler"], ["sink", "stream"]];
const PLOTS = [["ram_mb", "memory", "MB"], ["power_w", "power", "W"], ["temp_c", "temperature", "°C"],
               ["fps", "fps", "/s"], ["slices", "slices", ""]];
const llmTimes = {prompt_ms: null, decode_ms: null};
let latest = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
  if (text !== undefined) node.textContent = text;
  return node;
}

async function pollState() {
  try {
    const response = await fetch("/state", {cache: "no-store"});
    latest = await response.json();
    render(latest);
  } catch (error) {
    renderBanners([{kind: "agent", text: "agent unreachable: " + error}]);
  }
}

function render(state) {
  renderBanners(state.banners || []);
  const report = state.report;
  const last = (state.history || []).slice(-1)[0];
  if (report) {
    $("summary").textContent = `${report.frames} frames · ${report.encoded} encoded · ${report.reused} reused` +
      (last ? ` · ${last.fps.toFixed(1)} fps` : "") + (state.paused ? " · paused" : "");
  }
  const frame = state.frame;
  if (frame) {
    $("frame-info").textContent = `#${frame.sequence} ${frame.width}×${frame.height}` +
      (frame.grid ? ` · grid ${frame.grid[0]}×${frame.grid[1]}` : " · overview only");
    $("frame-info").dataset.sequence = frame.sequence;
    $("reused").hidden = frame.reused_from === null;
    $("reused").textContent = `tokens reused from #${frame.reused_from}`;
  }
  drawGrid(frame);
  renderBars(frame);
  renderPlots(state.history || []);
  renderGovernor(state.governor);
}

function renderBanners(banners) {
  const box = $("banners");
  box.replaceChildren(...banners.map((b) => el("div", {class: b.kind}, b.text)));
}

function drawGrid(frame) {
  const canvas = $("grid"), image = $("frame");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = image.clientWidth * ratio;
  canvas.height = image.clientHeight * ratio;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  canvas.dataset.grid = frame && frame.grid ? frame.grid.join("x") : "none";
  if (!frame || !frame.grid) return;
  const [cols, rows] = frame.grid;
  ctx.strokeStyle = "rgba(255, 214, 0, 0.9)";
  ctx.lineWidth = 2 * ratio;
  ctx.strokeRect(0, 0, canvas.width, canvas.height);
  ctx.beginPath();
  for (let c = 1; c < cols; c++) {
    ctx.moveTo(canvas.width * c / cols, 0);
    ctx.lineTo(canvas.width * c / cols, canvas.height);
  }
  for (let r = 1; r < rows; r++) {
    ctx.moveTo(0, canvas.height * r / rows);
    ctx.lineTo(canvas.width, canvas.height * r / rows);
  }
  ctx.stroke();
}

function renderBars(frame) {
  const timings = frame ? frame.timings_ms : {};
  const rows = STAGES.map(([key, label]) => [label, timings[key], false]);
  rows.push(["LLM prefill", llmTimes.prompt_ms, true], ["LLM decode", llmTimes.decode_ms, true]);
  const top = Math.max(1, ...rows.map((r) => r[1] || 0));
  $("bars").replaceChildren(...rows.map(([label, ms, llm]) => {
    const row = el("div", {class: "bar"});
    const fill = el("div", {class: llm ? "fill llm" : "fill"});
    fill.style.width = ms == null ? "0" : `${(100 * ms / top).toFixed(1)}%`;
    const track = el("div");
    track.append(fill);
    row.append(el("span", {}, label), track, el("span", {class: "ms"}, ms == null ? "–" : ms.toFixed(1)));
    return row;
  }));
}

function renderPlots(history) {
  const box = $("plots");
  if (!box.children.length) {
    PLOTS.forEach(([key, label]) => {
      const plot = el("div", {class: "plot", id: "plot-" + key});
      const head = el("div", {class: "label"});
      head.append(el("span", {}, label), el("span", {class: "value"}, "–"));
      plot.append(head, el("canvas", {width: 300, height: 60}));
      box.append(plot);
    });
  }
  PLOTS.forEach(([key, , unit]) => {
    const plot = $("plot-" + key);
    const values = history.map((p) => p[key]).filter((v) => v !== null && v !== undefined);
    plot.querySelector(".value").textContent = values.length ? `${values[values.length - 1]} ${unit}` : "n/a";
    const canvas = plot.querySelector("canvas");
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    plot.dataset.points = values.length;
    if (values.length < 2) return;
    const low = Math.min(...values), high = Math.max(...values), span = high - low || 1;
    ctx.strokeStyle = "#3d8bd9";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    values.forEach((v, i) => {
      const x = canvas.width * i / (values.length - 1);
      const y = canvas.height - 4 - (canvas.height - 8) * (v - low) / span;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  });
}

function renderGovernor(governor) {
  const box = $("governor");
  if (!governor) { box.textContent = "no governor (governor.enabled: false)"; return; }
  const levels = Object.entries(governor.state.levels).map(([p, l]) => `${p} ${l}`).join(" · ");
  const d = governor.last_decision;
  box.textContent = `levels: ${levels}` + (d ? ` — last: ${d.policy} ${d.level_from}→${d.level_to} ` +
    `${d.action}: ${d.reason}` : " — no decision yet");
}

async function pollAlerts() {
  const rules = $("rules"), alerts = $("alerts");
  let response;
  try {
    response = await fetch("/llm/v1/alerts", {cache: "no-store"});
  } catch (error) {
    rules.textContent = "alerts unavailable: " + error;
    return;
  }
  if (response.status === 404) {  // an LLM process without the alerts endpoint
    alerts.replaceChildren(el("li", {}, "no alert rules"));
    await pollScene(rules);
    return;
  }
  if (!response.ok) {
    rules.textContent = `alerts unavailable (HTTP ${response.status})`;
    return;
  }
  const body = await response.json();
  const table = el("table");
  const head = el("tr");
  ["rule", "question", "state", "last answer", "frame"].forEach((h) => head.append(el("th", {}, h)));
  table.append(head);
  (body.rules || []).forEach((r) => {
    const row = el("tr");
    [r.name, r.question, r.state, r.last_answer, r.last_frame_id].forEach((v) => row.append(el("td", {}, v ?? "–")));
    table.append(row);
  });
  if (!(body.rules || []).length) {  // no alert rules: the standing question (llm.schedule), if there is one
    await pollScene(rules);
  } else {
    rules.replaceChildren(table);
  }
  const recent = (body.alerts || []).slice(-20).reverse();
  alerts.replaceChildren(...(recent.length ? recent.map((a) => el("li", {class: "alert"},
    `${a.time} ${a.device} · ${a.rule}: ${a.previous} → ${a.state} (frame ${a.frame_id}): ${a.answer}`))
    : [el("li", {}, "no alert yet")]));
}

// Without alert rules: the standing question (llm.schedule) and its answers, newest first, as they come.
const sceneAnswers = [];

async function pollScene(rules) {
  let response;
  try {
    response = await fetch("/llm/v1/scene/latest", {cache: "no-store"});
  } catch (error) {
    rules.textContent = "standing question unavailable: " + error;
    return;
  }
  if (!response.ok) {
    rules.textContent = response.status === 404 ? "no standing question" : `HTTP ${response.status}`;
    return;
  }
  const scene = await response.json();
  if (!sceneAnswers.length || sceneAnswers[0].asked_at !== scene.asked_at) sceneAnswers.unshift(scene);
  sceneAnswers.length = Math.min(sceneAnswers.length, 10);
  const table = el("table");
  const head = el("tr");
  ["question", "answer", "frame"].forEach((h) => head.append(el("th", {}, h)));
  table.append(head);
  sceneAnswers.forEach((a) => {
    const row = el("tr");
    [a.question, a.answer, a.frame_id].forEach((v) => row.append(el("td", {}, v ?? "–")));
    table.append(row);
  });
  rules.replaceChildren(table);
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  const answer = $("answer"), meta = $("answer-meta");
  answer.textContent = "";
  answer.dataset.done = "false";
  meta.textContent = "asking…";
  try {
    const response = await fetch("/llm/v1/chat/completions", {method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({messages: [{role: "user", content: question}], stream: true})});
    if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      const events = buffer.split("\n\n");
      buffer = events.pop();
      events.forEach((event) => onEvent(event.replace(/^data: /, ""), answer, meta));
    }
  } catch (error) {
    meta.textContent = "the LLM did not answer: " + error.message;
  }
  answer.dataset.done = "true";
}

function onEvent(data, answer, meta) {
  if (!data || data === "[DONE]") return;
  const chunk = JSON.parse(data);
  if (chunk.error) { meta.textContent = "the LLM failed: " + chunk.error.message; return; }
  const delta = chunk.choices[0].delta || {};
  if (delta.content) answer.textContent += delta.content;
  if (chunk.timings) {
    llmTimes.prompt_ms = chunk.timings.prompt_ms;
    llmTimes.decode_ms = chunk.timings.decode_ms;
  }
  if (chunk.choices[0].finish_reason) {
    const frame = chunk.frame ? `about frame #${chunk.frame.frame_id}` : "";
    meta.textContent = `${frame} · ${chunk.usage.completion_tokens} tokens · ${chunk.choices[0].finish_reason}`;
    answer.dataset.tokens = chunk.usage.completion_tokens;
    if (latest) renderBars(latest.frame);
  }
}

$("ask").addEventListener("submit", ask);
pollState();
pollAlerts();
setInterval(pollState, 1000);
setInterval(pollAlerts, 3000);
