// Upload page: one request per file so each gets its own progress bar and result line,
// then poll the studies' status (as background requests) until the AI is done.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = document.getElementById("file-input");
  const drop = document.getElementById("dropzone");
  const manual = document.getElementById("manual-patient");
  const start = document.getElementById("upload-start");
  const summary = document.getElementById("upload-summary");
  const table = document.getElementById("upload-results");
  const tbody = table.querySelector("tbody");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const studyCells = new Map();
  let queue = [];

  const isRaster = (f) => /\.(png|jpe?g)$/i.test(f.name) || /^image\/(png|jpeg)$/.test(f.type);

  function choose(files) {
    queue = queue.concat(Array.from(files));
    manual.hidden = !queue.some(isRaster);
    start.disabled = queue.length === 0;
    summary.textContent = queue.length + " file(s) ready";
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function row(file) {
    const tr = document.createElement("tr");
    tr.appendChild(cell(file.name, "filename"));
    const progressCell = document.createElement("td");
    const bar = document.createElement("progress");
    bar.max = 100; bar.value = 0;
    progressCell.appendChild(bar);
    tr.appendChild(progressCell);
    tr.appendChild(cell("waiting", "result"));
    tr.appendChild(cell(""));
    tr.appendChild(cell("", "study-status"));
    tbody.appendChild(tr);
    table.hidden = false;
    return { tr, bar };
  }

  function send(file, batch) {
    return new Promise((resolve) => {
      const { tr, bar } = row(file);
      const data = new FormData(form);
      data.delete("files");
      data.append("files", file, file.name);
      data.set("batch", batch);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-CSRFToken", csrf);
      xhr.setRequestHeader("Accept", "application/json"); // a refusal (such as 413, too large) comes as JSON too
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; };
      xhr.onload = () => { bar.value = 100; show(tr, xhr); resolve(); };
      xhr.onerror = () => { tr.querySelector(".result").textContent = "refused: network error, nothing stored"; resolve(); };
      xhr.send(data);
    });
  }

  function show(tr, xhr) {
    const result = tr.querySelector(".result");
    let body;
    try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
    if (!body || !body.files) {
      const tooLarge = xhr.status === 413 ? "the upload is larger than this site accepts in one request" : "";
      result.textContent = "refused: " + ((body && body.detail) || tooLarge || "server error " + xhr.status);
      result.classList.add("refused");
      return;
    }
    const lines = body.files.map((f) => f.status + (f.reason ? ": " + f.reason : ""));
    result.textContent = lines.join("\n");
    // A zip has a line per member: the row takes the best outcome (skipped members alone store nothing).
    const statuses = body.files.map((f) => f.status);
    result.classList.add(["stored", "duplicate", "refused", "skipped"].find((s) => statuses.includes(s)) || "refused");
    const ids = [...new Set(body.files.map((f) => f.study_id).filter(Boolean))];
    const studyCell = tr.children[3];
    const statusCell = tr.children[4];
    ids.forEach((id) => {
      const a = document.createElement("a");
      a.href = "/studies/" + id + "/";
      a.textContent = "#" + id + " ";
      studyCell.appendChild(a);
      if (!studyCells.has(id)) studyCells.set(id, []);
      studyCells.get(id).push(statusCell);
    });
  }

  async function uploadAll(event) {
    event.preventDefault();
    const files = queue;
    queue = [];
    start.disabled = true;
    const batch = Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
    summary.textContent = "uploading " + files.length + " file(s)…";
    for (const file of files) await send(file, batch);
    summary.textContent = "done: " + files.length + " file(s) sent";
    poll();
  }

  async function poll() {
    const ids = [...studyCells.keys()];
    if (!ids.length) return;
    const url = form.dataset.statusUrl + "?ids=" + ids.join(",");
    const response = await fetch(url, { headers: { "X-Pneumo-Background": "1" }, credentials: "same-origin" });
    if (!response.ok) return;
    const body = await response.json();
    let pending = false;
    body.studies.forEach((s) => {
      const text = s.status_display + (s.ai_probability !== null ? " · AI " + Math.round(100 * s.ai_probability) + "% (unconfirmed)" : "")
        + (s.status_reason ? " · " + s.status_reason : "");
      (studyCells.get(s.id) || []).forEach((td) => { td.textContent = text; td.dataset.status = s.status; });
      if (["received", "queued", "analyzing"].includes(s.status)) pending = true;
    });
    if (pending) setTimeout(poll, 1000);
  }

  input.addEventListener("change", () => { choose(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => choose(e.dataTransfer.files));
  form.addEventListener("submit", uploadAll);
})();
