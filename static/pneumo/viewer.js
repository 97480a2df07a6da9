// Study page: a canvas viewer that windows the full-depth pixels itself, the AI heatmap overlay,
// the reading form's agreement hint, the claim (posted on load) and its keep-alive. The report page
// only uses the print button. No inline script or style anywhere: CSP allows this file alone.
(function () {
  "use strict";

  document.querySelectorAll("[data-print]").forEach((b) => b.addEventListener("click", () => window.print()));

  // Messages float over the page (reading.css): they go by themselves, or on a click.
  document.querySelectorAll(".messages").forEach((list) => {
    const dismiss = () => { list.classList.add("fading"); setTimeout(() => list.remove(), 700); };
    list.addEventListener("click", dismiss);
    setTimeout(dismiss, 6000);
  });

  const study = document.getElementById("study");
  if (!study) return;
  const csrf = (study.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";

  // --- Reading form: show the overrule reason when the finding disagrees with the AI -----------
  // The server decides (review_sign); this only spares a round trip.
  document.querySelectorAll(".reading-form").forEach((form) => {
    const ai = form.dataset.aiLabel || "";
    const hint = form.querySelector("[data-agreement-hint]");
    const reasonField = form.querySelector("[data-reason-field]");
    const reason = reasonField && reasonField.querySelector("select");
    const aiText = ai === "pneumonia" ? "pneumonia" : "no pneumonia";
    function update() {
      const checked = form.querySelector("input[name=finding]:checked");
      const finding = checked ? checked.value : "";
      const disagrees = ai && finding && finding !== "indeterminate" && (finding === "pneumonia") !== (ai === "pneumonia");
      reasonField.hidden = !disagrees;
      reason.required = Boolean(disagrees);
      if (!disagrees) reason.value = "";
      hint.classList.toggle("disagree", Boolean(disagrees));
      hint.classList.toggle("agree", Boolean(ai && finding && !disagrees && finding !== "indeterminate"));
      if (!ai && form.dataset.aiMuted) hint.textContent = "AI not validated for this image: your finding is not compared with it.";
      else if (!ai) hint.textContent = "No AI result to compare with.";
      else if (!finding) hint.textContent = "AI suggests " + aiText + " (unconfirmed).";
      else if (finding === "indeterminate") hint.textContent = "Indeterminate: not counted as agreeing or overruling the AI.";
      else if (disagrees) hint.textContent = "Your finding overrules the AI (" + aiText + "): give a reason.";
      else hint.textContent = "Your finding agrees with the AI.";
    }
    form.addEventListener("change", update);
    form.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
    });
    update();
  });

  // --- Claim on load, then keep it alive ------------------------------------------------------------
  // Opening the page (a GET) changes nothing: the claim is this POST, which carries the CSRF token
  // that another web site sending the browser here does not have.
  const claimUrl = study.dataset.claimUrl;
  const touchUrl = study.dataset.touchUrl;
  const postJson = (url) =>
    fetch(url, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrf, Accept: "application/json" } })
      .then((r) => r.json().then((body) => ({ ok: r.ok, body })));
  if (claimUrl) {
    const box = document.getElementById("claim-box");
    const claimed = (text, kind) => { box.className = "claim-box " + kind; box.textContent = text; };
    postJson(claimUrl)
      .then(({ ok, body }) => {
        if (ok) {
          study.dataset.status = body.status;
          study.dataset.claimedBy = body.claimed_by || "";
          study.dataset.claimed = "mine";
          claimed("You are reading this study. Others see it as in review by you.", "mine");
          keepAlive();
          return;
        }
        // A colleague claimed it a moment earlier (or it changed): read only.
        study.dataset.claimed = "refused";
        claimed((body.detail || "This study could not be claimed.") + " Read only.", "other");
        document.querySelectorAll(".panel.reading, #release-form").forEach((el) => el.remove());
      })
      .catch(() => {
        study.dataset.claimed = "failed";
        claimed("The study could not be claimed (no connection?). Reload the page to try again.", "other");
      });
  } else if (touchUrl) {
    keepAlive();
  }

  // At most one touch a minute, only on real interaction.
  function keepAlive() {
    const every = 1000 * Number(study.dataset.touchSeconds || 60);
    let last = Date.now();
    const lapsed = document.getElementById("claim-lapsed");
    const touch = () => {
      if (Date.now() - last < every) return;
      last = Date.now();
      postJson(touchUrl)
        .then(({ ok, body }) => {
          if (ok) return;
          lapsed.hidden = false;
          lapsed.textContent = body.claimed_by
            ? "Your claim lapsed: this study is now in review by " + body.claimed_by + ". Your reading cannot be signed."
            : "Your claim lapsed after a long pause. Reload the page to claim the study again.";
        })
        .catch(() => {});
    };
    ["pointerdown", "keydown", "wheel", "pointermove"].forEach((t) => document.addEventListener(t, touch, { passive: true }));
  }

  if (!touchUrl && ["in_review", "awaiting_review", "received", "queued", "analyzing"].includes(study.dataset.status)) {
    // Read-only view of a study that may change (a colleague signs, the AI finishes): say so (background poll).
    const initial = study.dataset.status + "|" + (study.dataset.claimedBy || "");
    const lapsed = document.getElementById("claim-lapsed");
    // Waiting for the AI: check every second and show the result as soon as it is stored
    // (nothing typed can be lost on a read-only page).
    const aiPending = ["received", "queued", "analyzing"].includes(study.dataset.status);
    const every = aiPending ? 1000 : 10000;
    const poll = () => fetch(study.dataset.statusUrl, { headers: { "X-Pneumo-Background": "1" }, credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((body) => {
        const s = body.studies[0];
        if (!s) return;
        if (s.status + "|" + (s.claimed_by || "") !== initial) {
          if (aiPending) { window.location.reload(); return; }
          lapsed.hidden = false;
          lapsed.textContent = "This study changed (" + s.status_display + (s.claimed_by ? ", " + s.claimed_by : "") + "). Reload to see it.";
          return;
        }
        setTimeout(poll, every);
      })
      .catch(() => {});
    setTimeout(poll, every);
  }

  // --- Viewer -------------------------------------------------------------------------------------
  const stage = document.getElementById("viewer");
  if (!stage || !stage.dataset.pixelsUrl) { if (stage) stage.dataset.state = "empty"; return; }
  const canvas = document.getElementById("viewer-canvas");
  const ctx = canvas.getContext("2d");
  const msg = document.getElementById("viewer-msg");
  const ov = { wl: byId("ov-wl"), zoom: byId("ov-zoom"), inv: byId("ov-inv"), px: byId("ov-px"), heat: byId("ov-heat"), image: byId("ov-image") };
  const heatButton = document.querySelector("[data-action=heatmap]");
  const opacity = byId("heat-opacity");
  const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

  const view = { zoom: 1, panX: 0, panY: 0, fitted: true, invert: false, tool: "wl" };
  let img = null;        // {w, h, data: Uint16Array, min, max, offset, defC, defW, hist}
  let win = { c: 0, w: 1 };
  let heat = null;       // {canvas, max}
  let heatOn = false;
  let loadToken = 0;
  const imageCanvas = document.createElement("canvas");
  const imageCtx = imageCanvas.getContext("2d");
  let imageData = null;
  let frame = 0;
  let windowDirty = true;

  function byId(id) { return document.getElementById(id); }
  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);

  function show(text, isError) {
    msg.hidden = !text;
    msg.textContent = text || "";
    msg.classList.toggle("error", Boolean(isError));
  }

  async function load(pixelsUrl, heatmapUrl, notice) {
    const token = ++loadToken;
    if (notice) {  // the file was deleted by the retention policy: say so, fetch nothing
      img = null; heat = null;
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      stage.dataset.state = "purged";
      show(notice, true);
      return;
    }
    stage.dataset.state = "loading";
    show("Loading image…");
    img = null; heat = null;
    delete stage.dataset.heatmap;
    try {
      const response = await fetch(pixelsUrl, { credentials: "same-origin" });
      if (!response.ok) throw new Error(response.status === 404 ? "This image cannot be displayed." : "Image request failed (" + response.status + ").");
      const h = (name) => Number(response.headers.get("X-Pneumo-" + name));
      const buffer = await response.arrayBuffer();
      if (token !== loadToken) return;
      const w = h("Width"), hgt = h("Height");
      const data = littleEndian ? new Uint16Array(buffer) : swap(buffer);
      if (data.length !== w * hgt) throw new Error("The image data is incomplete.");
      img = { w, h: hgt, data, min: h("Min"), max: h("Max"), offset: h("Offset"), defC: h("Window-Center") + h("Offset"), defW: h("Window-Width") };
      img.hist = histogram(img);
      imageCanvas.width = w; imageCanvas.height = hgt;
      imageData = imageCtx.createImageData(w, hgt);
      setWindow(img.defC, img.defW);
      fit();
      show("");
      stage.dataset.state = "ready";
    } catch (error) {
      if (token !== loadToken) return;
      stage.dataset.state = "error";
      show(error.message || "This image cannot be displayed.", true);
      return;
    }
    loadHeatmap(heatmapUrl, token);
  }

  function swap(buffer) {
    const view16 = new DataView(buffer);
    const out = new Uint16Array(buffer.byteLength / 2);
    for (let i = 0; i < out.length; i++) out[i] = view16.getUint16(2 * i, true);
    return out;
  }

  function histogram(image) {
    const bins = new Uint32Array(image.max - image.min + 1);
    const d = image.data;
    for (let i = 0; i < d.length; i++) bins[d[i] - image.min]++;
    return bins;
  }

  function percentile(p) {
    const target = (img.data.length * p) / 100;
    let seen = 0;
    for (let i = 0; i < img.hist.length; i++) {
      seen += img.hist[i];
      if (seen >= target) return img.min + i;
    }
    return img.max;
  }

  // Presets from the image's own histogram: plain X-ray values carry no calibrated unit.
  const PRESETS = {
    default: () => [img.defC, img.defW],
    lung: () => span(percentile(1), percentile(60)),
    soft: () => span(percentile(15), percentile(92)),
    bone: () => span(percentile(45), percentile(99.8)),
  };
  function span(lo, hi) { return [(lo + hi) / 2, Math.max(hi - lo, 2)]; }

  function setWindow(c, w) {
    win = { c, w: Math.max(1, w) };
    windowDirty = true;
    schedule();
  }

  // The DICOM LINEAR window (PS3.3 C.11.2.1.2) through a lookup table over the value range.
  function applyWindow() {
    const { min, max, data } = img;
    const lut = new Uint32Array(max - min + 1);
    const lo = win.c - 0.5 - (win.w - 1) / 2;
    const scale = 255 / Math.max(win.w - 1, 1);
    for (let v = min; v <= max; v++) {
      let g = Math.round(clamp((v - lo) * scale, 0, 255));
      if (view.invert) g = 255 - g;
      lut[v - min] = 0xff000000 | (g << 16) | (g << 8) | g;
    }
    const out = new Uint32Array(imageData.data.buffer);
    for (let i = 0; i < data.length; i++) out[i] = lut[data[i] - min];
    imageCtx.putImageData(imageData, 0, 0);
    windowDirty = false;
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function resize() {
    const dpr = window.devicePixelRatio || 1;
    const rect = stage.getBoundingClientRect();
    canvas.width = Math.max(1, Math.round(rect.width * dpr));
    canvas.height = Math.max(1, Math.round(rect.height * dpr));
    if (view.fitted) fit(); else schedule();
  }

  function draw() {
    frame = 0;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (!img) return;
    if (windowDirty) applyWindow();
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr * view.zoom, 0, 0, dpr * view.zoom, canvas.width / 2 + dpr * view.panX - (dpr * view.zoom * img.w) / 2,
      canvas.height / 2 + dpr * view.panY - (dpr * view.zoom * img.h) / 2);
    ctx.imageSmoothingEnabled = view.zoom < 4;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(imageCanvas, 0, 0);
    if (heat && heatOn) {
      ctx.globalAlpha = Number(opacity.value) / 100;
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(heat.canvas, 0, 0, img.w, img.h);
      ctx.globalAlpha = 1;
    }
    ov.wl.textContent = "W " + Math.round(win.w) + "  L " + Math.round(win.c - img.offset);
    ov.zoom.textContent = "Zoom " + Math.round(view.zoom * 100) + "%";
    ov.inv.textContent = view.invert ? " · Inverted" : "";
    stage.dataset.window = Math.round(win.c) + "/" + Math.round(win.w);
  }

  function fit() {
    if (!img) return;
    const rect = stage.getBoundingClientRect();
    view.zoom = Math.min(rect.width / img.w, rect.height / img.h) * 0.98 || 1;
    view.panX = view.panY = 0;
    view.fitted = true;
    schedule();
  }

  function zoomAt(factor, clientX, clientY) {
    if (!img) return;
    const rect = stage.getBoundingClientRect();
    const x = (clientX === undefined ? rect.width / 2 : clientX - rect.left) - rect.width / 2;
    const y = (clientY === undefined ? rect.height / 2 : clientY - rect.top) - rect.height / 2;
    const next = clamp(view.zoom * factor, 0.05, 40);
    const k = next / view.zoom;
    // Keep the point under the pointer where it is.
    view.panX = x - (x - view.panX) * k;
    view.panY = y - (y - view.panY) * k;
    view.zoom = next;
    view.fitted = false;
    schedule();
  }

  function reset() {
    if (!img) return;
    view.invert = false;
    pressed("[data-action=invert]", false);
    setWindow(img.defC, img.defW);
    fit();
  }

  function pressed(selector, on) {
    const b = document.querySelector(selector);
    if (b) b.setAttribute("aria-pressed", on ? "true" : "false");
  }

  function imagePoint(clientX, clientY) {
    const rect = stage.getBoundingClientRect();
    const x = (clientX - rect.left - rect.width / 2 - view.panX) / view.zoom + img.w / 2;
    const y = (clientY - rect.top - rect.height / 2 - view.panY) / view.zoom + img.h / 2;
    return [Math.floor(x), Math.floor(y)];
  }

  // --- Heatmap: bilinear between cell centres, coloured by the server's colour map -------------
  async function loadHeatmap(url, token) {
    heatButton.disabled = opacity.disabled = !url;
    ov.heat.textContent = url ? "" : "No AI heatmap";
    if (!url) { heatOn = false; pressed("[data-action=heatmap]", false); schedule(); return; }
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) throw new Error();
      const grid = await response.json();
      if (token !== loadToken) return;
      heat = { canvas: heatCanvas(grid), max: grid.max };
      colourBar(grid.colour_map);
      heatButton.title = "AI heatmap on/off (H). " + grid.scale_note;
      ov.heat.textContent = heatOn ? "AI heatmap (unconfirmed)" : "";
      stage.dataset.heatmap = "ready";
      schedule();
    } catch (e) {
      heatButton.disabled = opacity.disabled = true;
      ov.heat.textContent = "Heatmap unavailable";
    }
  }

  function colour(map, v) {
    const stops = map.stops;
    let i = 1;
    while (i < stops.length - 1 && v > stops[i][0]) i++;
    const [p0, c0] = stops[i - 1], [p1, c1] = stops[i];
    const t = clamp((v - p0) / (p1 - p0 || 1), 0, 1);
    const a = map.alpha;
    const alpha = clamp((v - a.start) / (a.full - a.start), 0, 1) * a.max;
    return [c0[0] + (c1[0] - c0[0]) * t, c0[1] + (c1[1] - c0[1]) * t, c0[2] + (c1[2] - c0[2]) * t, alpha * 255];
  }

  function heatCanvas(grid) {
    const longest = 256;
    const scale = longest / Math.max(img.w, img.h);
    const w = Math.max(2, Math.round(img.w * scale)), h = Math.max(2, Math.round(img.h * scale));
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    const g = c.getContext("2d");
    const out = g.createImageData(w, h);
    const rows = grid.rows, cols = grid.columns, values = grid.values;
    for (let y = 0; y < h; y++) {
      const gy = clamp(((y + 0.5) * rows) / h - 0.5, 0, rows - 1);
      const y0 = Math.floor(gy), y1 = Math.min(y0 + 1, rows - 1), wy = gy - y0;
      for (let x = 0; x < w; x++) {
        const gx = clamp(((x + 0.5) * cols) / w - 0.5, 0, cols - 1);
        const x0 = Math.floor(gx), x1 = Math.min(x0 + 1, cols - 1), wx = gx - x0;
        const top = values[y0][x0] * (1 - wx) + values[y0][x1] * wx;
        const bottom = values[y1][x0] * (1 - wx) + values[y1][x1] * wx;
        const rgba = colour(grid.colour_map, top * (1 - wy) + bottom * wy);
        const o = 4 * (y * w + x);
        out.data[o] = rgba[0]; out.data[o + 1] = rgba[1]; out.data[o + 2] = rgba[2]; out.data[o + 3] = rgba[3];
      }
    }
    g.putImageData(out, 0, 0);
    return c;
  }

  function colourBar(map) {
    const bar = byId("heat-colourbar");
    if (!bar) return;
    const g = bar.getContext("2d");
    for (let x = 0; x < bar.width; x++) {
      const [r, gr, b] = colour(map, x / (bar.width - 1));
      g.fillStyle = "rgb(" + Math.round(r) + "," + Math.round(gr) + "," + Math.round(b) + ")";
      g.fillRect(x, 0, 1, bar.height);
    }
  }

  function toggleHeat(on) {
    if (!heat) return;
    heatOn = on === undefined ? !heatOn : on;
    pressed("[data-action=heatmap]", heatOn);
    ov.heat.textContent = heatOn ? "AI heatmap (unconfirmed)" : "";
    stage.dataset.heatmapOn = heatOn ? "1" : "0";
    schedule();
  }

  function nudgeOpacity(delta) {
    opacity.value = clamp(Number(opacity.value) + delta, 0, 100);
    if (!heatOn) toggleHeat(true); else schedule();
  }

  // --- Pointer, wheel, keyboard, toolbar ------------------------------------------------------------
  let drag = null;
  stage.addEventListener("contextmenu", (e) => e.preventDefault());
  stage.addEventListener("pointerdown", (e) => {
    if (!img) return;
    stage.focus({ preventScroll: true });
    const pan = view.tool === "pan" || e.button === 1 || e.button === 2 || e.shiftKey;
    drag = { pan, x: e.clientX, y: e.clientY, c: win.c, w: win.w, panX: view.panX, panY: view.panY };
    stage.setPointerCapture(e.pointerId);
    stage.classList.add("dragging");
    e.preventDefault();
  });
  stage.addEventListener("pointermove", (e) => {
    if (!img) return;
    if (!drag) { pixelReadout(e); return; }
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (drag.pan) {
      view.panX = drag.panX + dx; view.panY = drag.panY + dy; view.fitted = false; schedule();
    } else {
      // Full value range across about two screen widths: fine control, still quick.
      const k = (img.max - img.min + 1) / 800;
      setWindow(drag.c + dy * k, drag.w + dx * k);
    }
  });
  const endDrag = (e) => {
    if (!drag) return;
    drag = null;
    stage.classList.remove("dragging");
    if (stage.hasPointerCapture(e.pointerId)) stage.releasePointerCapture(e.pointerId);
  };
  stage.addEventListener("pointerup", endDrag);
  stage.addEventListener("pointercancel", endDrag);
  stage.addEventListener("pointerleave", () => { ov.px.textContent = ""; });
  stage.addEventListener("dblclick", fit);
  stage.addEventListener("wheel", (e) => {
    e.preventDefault();
    zoomAt(Math.exp(-clamp(e.deltaY, -300, 300) * 0.0015), e.clientX, e.clientY);
  }, { passive: false });

  function pixelReadout(e) {
    const [x, y] = imagePoint(e.clientX, e.clientY);
    if (x < 0 || y < 0 || x >= img.w || y >= img.h) { ov.px.textContent = ""; return; }
    ov.px.textContent = "x " + x + "  y " + y + "  value " + (img.data[y * img.w + x] - img.offset);
  }

  function setTool(tool) {
    view.tool = tool;
    document.querySelectorAll("[data-tool]").forEach((b) => {
      const on = b.dataset.tool === tool;
      b.classList.toggle("active", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
    stage.classList.toggle("tool-pan", tool === "pan");
  }

  function preset(name) {
    if (!img) return;
    const [c, w] = PRESETS[name]();
    setWindow(c, w);
  }

  const actions = {
    invert: () => { if (!img) return; view.invert = !view.invert; pressed("[data-action=invert]", view.invert); windowDirty = true; schedule(); },
    "zoom-in": () => zoomAt(1.25),
    "zoom-out": () => zoomAt(0.8),
    fit,
    reset,
    heatmap: () => toggleHeat(),
  };
  document.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
  document.querySelectorAll("[data-preset]").forEach((b) => b.addEventListener("click", () => preset(b.dataset.preset)));
  document.querySelectorAll("[data-action]").forEach((b) => b.addEventListener("click", () => actions[b.dataset.action]()));
  opacity.addEventListener("input", () => { if (!heatOn) toggleHeat(true); else schedule(); });

  const thumbs = Array.from(document.querySelectorAll(".thumb"));
  function select(thumb) {
    thumbs.forEach((t) => { t.classList.toggle("active", t === thumb); t.setAttribute("aria-selected", t === thumb ? "true" : "false"); });
    document.querySelectorAll("[data-image-panel]").forEach((p) => { p.hidden = p.dataset.imagePanel !== thumb.dataset.imageId; });
    stage.dataset.imageId = thumb.dataset.imageId;
    ov.image.textContent = thumb.dataset.caption || "";
    load(thumb.dataset.pixelsUrl, thumb.dataset.heatmapUrl, thumb.dataset.notice);
  }
  thumbs.forEach((t) => t.addEventListener("click", () => select(t)));
  function step(delta) {
    if (thumbs.length < 2) return;
    const i = thumbs.findIndex((t) => t.classList.contains("active"));
    select(thumbs[(i + delta + thumbs.length) % thumbs.length]);
  }

  const keys = {
    h: () => toggleHeat(), i: actions.invert, r: reset, f: fit, "+": actions["zoom-in"], "=": actions["zoom-in"], "-": actions["zoom-out"],
    "[": () => nudgeOpacity(-10), "]": () => nudgeOpacity(10), 1: () => preset("default"), 2: () => preset("lung"),
    3: () => preset("soft"), 4: () => preset("bone"), n: () => step(1), p: () => step(-1),
  };
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest("input, textarea, select, [contenteditable]")) return;
    const run = keys[e.key.toLowerCase()];
    if (run) { e.preventDefault(); run(); }
  });

  new ResizeObserver(resize).observe(stage);
  resize();
  load(stage.dataset.pixelsUrl, stage.dataset.heatmapUrl, stage.dataset.notice);
})();
