// vaekit's latent-space explorer: plain JavaScript against the server's JSON API, no build step
// and nothing fetched from elsewhere. A token given as #token=... in the address (or typed in
// after a 401) is sent as "Authorization: Bearer ..." with every request.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
const $ = (id) => document.getElementById(id);

const explorer = {
  runs: [], run: null, z: [], dims: [0, 1], points: [], labels: null, codes: [],
  selected: null, ends: [null, null], seed: 1, decodes: 0, pending: false, busy: false,
};
window.explorer = explorer;

// -- requests --------------------------------------------------------------------------------

function token() { return sessionStorage.getItem("vaekit-token") || ""; }

async function api(path, body) {
  const headers = {};
  if (token()) headers.Authorization = "Bearer " + token();
  const init = { headers };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify({ run: explorer.run && explorer.run.name, ...body });
  }
  const answer = await fetch(path, init);
  const data = await answer.json().catch(() => ({ error: answer.statusText }));
  if (answer.status === 401) $("token-form").hidden = false;
  if (!answer.ok) throw new Error(data.error || answer.statusText);
  return data;
}

function say(text) { $("status").textContent = text || ""; }

// -- drawing examples ------------------------------------------------------------------------

function flat(values) {
  const out = [];
  (function walk(v) { if (Array.isArray(v)) v.forEach(walk); else out.push(v); })(values);
  return out;
}

// An example (nested numbers) drawn on a canvas: an image for image and sound runs (a
// spectrogram, low frequencies at the bottom), bars for a table's row.
function drawExample(canvas, values) {
  const run = explorer.run, v = flat(values), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!run.image_shape) return drawBars(ctx, canvas, v);
  const [c, h, w] = run.image_shape;
  let [lo, hi] = run.value_range || [Math.min(...v), Math.max(...v)];
  if (hi - lo < 1e-12) hi = lo + 1;
  const tile = new OffscreenCanvas(w, h), tctx = tile.getContext("2d");
  const img = tctx.createImageData(w, h);
  for (let y = 0; y < h; y++) {
    const row = run.flip_rows ? h - 1 - y : y;
    for (let x = 0; x < w; x++) {
      const at = (y * w + x) * 4;
      for (let k = 0; k < 3; k++) {
        const ch = c === 3 ? k : 0;
        const value = (v[ch * h * w + row * w + x] - lo) / (hi - lo);
        img.data[at + k] = Math.round(255 * Math.min(1, Math.max(0, value)));
      }
      img.data[at + 3] = 255;
    }
  }
  tctx.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  const scale = Math.min(canvas.width / w, canvas.height / h);
  ctx.drawImage(tile, (canvas.width - w * scale) / 2, (canvas.height - h * scale) / 2,
    w * scale, h * scale);
}

function drawBars(ctx, canvas, v) {
  const lo = Math.min(0, ...v), hi = Math.max(0, ...v), span = hi - lo || 1;
  const bw = canvas.width / v.length, zero = canvas.height * (hi / span);
  ctx.fillStyle = "#1f77b4";
  v.forEach((value, i) => {
    const y = canvas.height * ((hi - Math.max(value, 0)) / span);
    ctx.fillRect(i * bw + 1, y, Math.max(1, bw - 2), Math.abs(value) / span * canvas.height || 1);
  });
  ctx.strokeStyle = "#999";
  ctx.beginPath(); ctx.moveTo(0, zero); ctx.lineTo(canvas.width, zero); ctx.stroke();
}

// One decoded example as a small element: a canvas, or a word for a text run.
function tile(decoded, i, size) {
  if (decoded.texts) {
    const span = document.createElement("span");
    span.className = "word";
    span.textContent = decoded.texts[i] || "\u2205";
    return span;
  }
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = size;
  drawExample(canvas, decoded.x[i]);
  return canvas;
}

function show(decoded, canvasId, textId) {
  const text = $(textId);
  if (decoded.texts) {
    $(canvasId).hidden = true;
    text.hidden = false;
    text.textContent = decoded.texts[0] || "\u2205";
  } else {
    text.hidden = true;
    $(canvasId).hidden = false;
    drawExample($(canvasId), decoded.x[0]);
  }
}

// Sound runs: E[x|z] of the point as a WAV file (Griffin-Lim on the server), played.
async function play(body) {
  try {
    const data = await api("/decode", { ...body, format: "wav" });
    const player = $("player");
    player.src = "data:audio/wav;base64," + data.wav[0];
    await player.play();
  } catch (err) { say(err.message); }
}

// -- the plane -------------------------------------------------------------------------------

function plane() { return explorer.run.plane; }

function toPixel(zx, zy) {
  const p = plane(), [dx, dy] = explorer.dims, c = $("plane");
  const fx = (zx - p.low[dx]) / (p.high[dx] - p.low[dx]);
  const fy = dy === undefined ? 0.5 : (p.high[dy] - zy) / (p.high[dy] - p.low[dy]);
  return [fx * c.width, fy * c.height];
}

function fromPixel(px, py) {
  const p = plane(), [dx, dy] = explorer.dims, c = $("plane");
  const zx = p.low[dx] + (px / c.width) * (p.high[dx] - p.low[dx]);
  const zy = dy === undefined ? 0 : p.high[dy] - (py / c.height) * (p.high[dy] - p.low[dy]);
  return [zx, zy];
}

function drawPlane() {
  const c = $("plane"), ctx = c.getContext("2d"), run = explorer.run;
  ctx.clearRect(0, 0, c.width, c.height);
  if (!run.plane) return;
  const [dx, dy] = explorer.dims;
  ctx.strokeStyle = "#e4e7ec";
  const [ox, oy] = toPixel(0, 0);
  ctx.beginPath(); ctx.moveTo(ox, 0); ctx.lineTo(ox, c.height);
  ctx.moveTo(0, oy); ctx.lineTo(c.width, oy); ctx.stroke();
  explorer.points.forEach((z, i) => {
    const [x, y] = toPixel(z[dx], dy === undefined ? 0 : z[dy]);
    const label = explorer.labels ? explorer.labels[i] : null;
    ctx.fillStyle = label === null ? "#98a2b3" : PALETTE[((label % 10) + 10) % 10];
    ctx.globalAlpha = i === explorer.selected ? 1 : 0.7;
    ctx.beginPath(); ctx.arc(x, y, i === explorer.selected ? 6 : 3.2, 0, 2 * Math.PI); ctx.fill();
  });
  ctx.globalAlpha = 1;
  explorer.ends.forEach((end, k) => {
    if (!end) return;
    const [x, y] = toPixel(end.z[dx], dy === undefined ? 0 : end.z[dy]);
    ctx.fillStyle = "#1d2330";
    ctx.font = "bold 13px sans-serif";
    ctx.fillText("AB"[k], x + 6, y - 6);
  });
  const [mx, my] = toPixel(explorer.z[dx], dy === undefined ? 0 : explorer.z[dy]);
  ctx.strokeStyle = "#d6336c"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.arc(mx, my, 8, 0, 2 * Math.PI);
  ctx.moveTo(mx - 13, my); ctx.lineTo(mx + 13, my); ctx.moveTo(mx, my - 13); ctx.lineTo(mx, my + 13);
  ctx.stroke(); ctx.lineWidth = 1;
}

// Where dot i is on the page (for a person's script or a test to click it).
explorer.dotPosition = function (i) {
  const z = explorer.points[i], [dx, dy] = explorer.dims;
  const [x, y] = toPixel(z[dx], dy === undefined ? 0 : z[dy]);
  const r = $("plane").getBoundingClientRect();
  return { x: r.left + x * (r.width / $("plane").width), y: r.top + y * (r.height / $("plane").height) };
};

function nearestDot(px, py) {
  let best = null, bestD = 36; // within 6 pixels
  const [dx, dy] = explorer.dims;
  explorer.points.forEach((z, i) => {
    const [x, y] = toPixel(z[dx], dy === undefined ? 0 : z[dy]);
    const d = (x - px) ** 2 + (y - py) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  });
  return best;
}

function planeXY(event) {
  const c = $("plane"), r = c.getBoundingClientRect();
  return [(event.clientX - r.left) * (c.width / r.width), (event.clientY - r.top) * (c.height / r.height)];
}

function moveTo(px, py) {
  const [zx, zy] = fromPixel(px, py), [dx, dy] = explorer.dims;
  explorer.z[dx] = zx;
  if (dy !== undefined) explorer.z[dy] = zy;
  syncSliders();
  drawPlane();
  requestDecode();
}

function wirePlane() {
  const c = $("plane");
  let dragging = false;
  c.addEventListener("pointerdown", (e) => {
    const [px, py] = planeXY(e), dot = nearestDot(px, py);
    if (dot !== null) { selectExample(dot); return; }
    dragging = true;
    c.setPointerCapture(e.pointerId);
    moveTo(px, py);
  });
  c.addEventListener("pointermove", (e) => {
    if (dragging || $("follow").checked) moveTo(...planeXY(e));
  });
  const stop = () => { dragging = false; };
  c.addEventListener("pointerup", stop);
  c.addEventListener("pointercancel", stop);
}

// -- decoding, throttled: at most one request in flight, the latest z wins ------------------------

function requestDecode() {
  explorer.pending = true;
  if (!explorer.busy) setTimeout(decodeNow, 16);
}

async function decodeNow() {
  if (explorer.busy || !explorer.pending) return;
  explorer.busy = true;
  explorer.pending = false;
  const run = explorer.run;
  const body = run.latent === "categorical" ? { codes: [explorer.codes] } : { z: [explorer.z.slice()] };
  if (run.condition_dim) body.labels = 0;
  try {
    const data = await api("/decode", body);
    if (run === explorer.run) {
      show(data, "decoded", "decoded-text");
      explorer.decodes += 1;
      $("z-text").textContent = run.latent === "categorical" ? "codes " + explorer.codes.join(" ")
        : "z = [" + explorer.z.map((v) => v.toFixed(2)).join(", ") + "]";
      say("");
    }
  } catch (err) { say(err.message); }
  explorer.busy = false;
  if (explorer.pending) setTimeout(decodeNow, 0);
}

// -- sliders and selects -----------------------------------------------------------------------

function buildSliders() {
  const box = $("sliders"), p = plane();
  box.innerHTML = "";
  if (!p) return;
  explorer.z.forEach((value, d) => {
    if (explorer.dims.includes(d)) return;
    const label = document.createElement("label");
    label.textContent = "z" + d;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: p.low[d], max: p.high[d],
      step: (p.high[d] - p.low[d]) / 200, value });
    input.dataset.dim = d;
    const out = document.createElement("span");
    out.className = "mono";
    out.textContent = value.toFixed(2);
    input.addEventListener("input", () => {
      explorer.z[d] = Number(input.value);
      out.textContent = explorer.z[d].toFixed(2);
      requestDecode();
    });
    box.append(label, input, out);
  });
}

function syncSliders() {
  document.querySelectorAll("#sliders input").forEach((input) => {
    input.value = explorer.z[Number(input.dataset.dim)];
  });
}

function buildDimSelects() {
  const n = explorer.run.latent_dim, kl = (plane() && plane().kl_per_dim) || [];
  for (const [id, k] of [["dim-x", 0], ["dim-y", 1]]) {
    const sel = $(id);
    sel.innerHTML = "";
    for (let d = 0; d < n; d++) {
      const kltext = kl.length ? " (KL " + kl[d].toFixed(2) + ")" : "";
      sel.add(new Option("z" + d + kltext, d, false, d === explorer.dims[k]));
    }
    sel.disabled = n < 2 && k === 1;
    sel.onchange = () => {
      const other = explorer.dims[1 - k], pick = Number(sel.value);
      if (pick === other) { sel.value = explorer.dims[k]; return; }
      explorer.dims[k] = pick;
      buildSliders(); drawPlane();
    };
  }
}

function buildCodes() {
  const box = $("codes"), run = explorer.run;
  box.innerHTML = "";
  explorer.codes = Array(run.n_latents).fill(0);
  for (let l = 0; l < run.n_latents; l++) {
    const label = document.createElement("label");
    label.textContent = "z" + l;
    const sel = document.createElement("select");
    for (let c = 0; c < run.n_categories; c++) sel.add(new Option(String(c), c));
    sel.addEventListener("change", () => { explorer.codes[l] = Number(sel.value); requestDecode(); });
    box.append(label, sel, document.createElement("span"));
  }
}

// -- examples, interpolation, samples ---------------------------------------------------------

async function selectExample(i) {
  explorer.selected = i;
  drawPlane();
  try {
    const data = await api(`/runs/${encodeURIComponent(explorer.run.name)}/examples/${i}`);
    explorer.example = { index: i, z: data.z[0] };
    $("example-label").textContent = `#${i}` + (data.label === null ? "" : ` label ${data.label}`);
    if (data.example.texts) {
      $("example").hidden = $("reconstruction").hidden = true;
      $("example-text").hidden = false;
      $("example-text").textContent = `${data.example.texts[0]} \u2192 ${data.reconstruction.texts[0]}`;
    } else {
      $("example").hidden = $("reconstruction").hidden = false;
      $("example-text").hidden = true;
      drawExample($("example"), data.example.x[0]);
      drawExample($("reconstruction"), data.reconstruction.x[0]);
    }
    $("set-a").disabled = $("set-b").disabled = false;
    explorer.shownExample = i;
  } catch (err) { say(err.message); }
}

function setEnd(k) {
  if (!explorer.example) return;
  explorer.ends[k] = explorer.example;
  const names = explorer.ends.map((e) => (e ? "#" + e.index : "?"));
  $("ends").textContent = `A ${names[0]} \u2192 B ${names[1]}`;
  drawPlane();
  if (explorer.ends[0] && explorer.ends[1]) interpolate();
}

async function interpolate() {
  const [a, b] = explorer.ends, body = { z: [a.z, b.z], steps: 10 };
  if (explorer.run.condition_dim) body.labels = 0;
  try {
    const data = await api("/interpolate", body);
    const strip = $("interpolation");
    strip.innerHTML = "";
    data.z.forEach((_, i) => strip.append(tile(data, i, 56)));
  } catch (err) { say(err.message); }
}

async function samples() {
  const body = { n: 16, seed: explorer.seed };
  if (explorer.run.condition_dim) body.label = explorer.seed % explorer.run.condition_dim;
  $("seed").textContent = "seed " + explorer.seed;
  try {
    const data = await api("/sample", body);
    const grid = $("samples");
    grid.innerHTML = "";
    data.z.forEach((_, i) => grid.append(tile(data, i, 56)));
  } catch (err) { say(err.message); }
}

// -- choosing a run ----------------------------------------------------------------------------

async function chooseRun(name) {
  const run = explorer.runs.find((r) => r.name === name);
  Object.assign(explorer, { run, selected: null, ends: [null, null], example: null, points: [], labels: null });
  $("interpolation").innerHTML = "";
  $("ends").textContent = "";
  const m = run.metrics && run.metrics.last_epoch, elbo = m && m.valid_elbo;
  $("about").textContent = `${run.model} model, ${run.media} ${JSON.stringify(run.data_shape)}, ` +
    `${run.latent_dim} latent dims (${run.latent}), ${run.likelihood} likelihood` +
    (elbo !== undefined ? `, valid ELBO ${elbo.toFixed(2)} nats` : "");
  const sound = run.media === "audio";
  for (const id of ["play-decoded", "play-example", "play-reconstruction"]) $(id).hidden = !sound;
  const discrete = run.latent === "categorical";
  $("plane").hidden = $("plane-tools").hidden = discrete;
  $("codes").hidden = !discrete;
  $("set-a").hidden = $("set-b").hidden = discrete;
  if (discrete) {
    buildCodes();
  } else {
    explorer.dims = run.plane.dims.slice();
    explorer.z = run.plane.centre.slice();
    buildDimSelects();
    buildSliders();
    const pts = await api(`/runs/${encodeURIComponent(run.name)}/points`);
    explorer.points = pts.z;
    explorer.labels = pts.labels;
    buildLegend();
    drawPlane();
  }
  requestDecode();
  samples();
}

function buildLegend() {
  const legend = $("legend");
  legend.innerHTML = "";
  if (!explorer.labels) return;
  [...new Set(explorer.labels)].sort((a, b) => a - b).forEach((label) => {
    const span = document.createElement("span");
    span.style.setProperty("--dot", PALETTE[((label % 10) + 10) % 10]);
    span.textContent = String(label);
    legend.append(span);
  });
}

async function start() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    sessionStorage.setItem("vaekit-token", hash.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  try {
    explorer.runs = (await api("/runs")).runs;
  } catch (err) { say(err.message); return; }
  const select = $("run");
  explorer.runs.forEach((r) => select.add(new Option(`${r.name} (${r.media})`, r.name)));
  select.onchange = () => chooseRun(select.value);
  await chooseRun(explorer.runs[0].name);
  explorer.ready = true;
}

function wire() {
  wirePlane();
  $("set-a").onclick = () => setEnd(0);
  $("set-b").onclick = () => setEnd(1);
  $("reseed").onclick = () => { explorer.seed = Math.floor(Math.random() * 1e9); samples(); };
  $("play-decoded").onclick = () => play({ z: [explorer.z] });
  const playExample = (which) => () => api(
    `/runs/${encodeURIComponent(explorer.run.name)}/examples/${explorer.shownExample}?format=wav`
  ).then((d) => { $("player").src = "data:audio/wav;base64," + d[which].wav[0]; return $("player").play(); })
    .catch((err) => say(err.message));
  $("play-example").onclick = playExample("example");
  $("play-reconstruction").onclick = playExample("reconstruction");
  $("token-form").onsubmit = (e) => {
    e.preventDefault();
    sessionStorage.setItem("vaekit-token", $("token").value.trim());
    $("token-form").hidden = true;
    say("");
    start();
  };
}

wire();
start();
