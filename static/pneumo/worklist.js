// Worklist: refresh rows and lane counts every few seconds (background requests, which do not
// count as activity for the idle logout) and raise a banner when the AI flags a stat or urgent
// study. Filters and search go by POST and stay in the session, never in a URL.
(function () {
  "use strict";
  const root = document.getElementById("worklist");
  if (!root) return;

  // Messages float over the page (reading.css): they go by themselves, or on a click.
  document.querySelectorAll(".messages").forEach((list) => {
    const dismiss = () => { list.classList.add("fading"); setTimeout(() => list.remove(), 700); };
    list.addEventListener("click", dismiss);
    setTimeout(dismiss, 6000);
  });
  const tbody = document.getElementById("worklist-rows");
  const banner = document.getElementById("alert-banner");
  const alertList = document.getElementById("alert-list");
  const dot = document.getElementById("live-dot");
  const liveText = document.getElementById("live-text");
  const count = document.getElementById("wl-count");
  const period = 1000 * Number(root.dataset.pollSeconds || 5);
  const alertsOn = root.dataset.alerts === "1";
  const baseTitle = document.title;
  let since = root.dataset.since;
  let fingerprint = "";
  let known = new Set(Array.from(tbody.querySelectorAll("tr[data-study-id]")).map((tr) => tr.dataset.studyId));
  const alerted = new Set();
  let failures = 0;

  // Whole rows open the study (links inside keep working as links).
  tbody.addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-href]");
    if (tr && !e.target.closest("a, button")) window.location.href = tr.dataset.href;
  });

  // "/" jumps to the search box, as in most reading tools.
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && !e.target.closest("input, textarea, select")) {
      e.preventDefault();
      document.getElementById("wl-search").focus();
    }
  });

  function live(state, text) {
    dot.className = "live-dot" + (state === "ok" ? "" : " " + state);
    liveText.textContent = text;
  }

  function showAlerts(alerts) {
    const fresh = alerts.filter((a) => !alerted.has(a.id));
    if (!fresh.length) return;
    fresh.forEach((a) => {
      alerted.add(a.id);
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = a.url;
      link.textContent = "Open";
      const pct = a.probability === null ? "" : " " + Math.round(100 * a.probability) + "%";
      li.textContent = a.priority_display.toUpperCase() + " study flagged by the AI" + pct + " (unconfirmed): "
        + a.patient_id + " " + (a.patient_name || "") + " · " + a.site + " — ";
      li.appendChild(link);
      alertList.prepend(li);
    });
    banner.hidden = false;
    document.title = "(" + alertList.children.length + ") AI flag · " + baseTitle;
  }

  document.getElementById("alert-dismiss").addEventListener("click", () => {
    banner.hidden = true;
    alertList.textContent = "";
    document.title = baseTitle;
  });

  function update(body) {
    if (body.html !== null) {
      tbody.innerHTML = body.html;  // rendered and escaped by the server's template
      tbody.querySelectorAll("tr[data-study-id]").forEach((tr) => {
        if (!known.has(tr.dataset.studyId)) tr.classList.add("new-row");
      });
      known = new Set(body.ids.map(String));
    }
    fingerprint = body.fp;
    Object.entries(body.lanes).forEach(([key, value]) => {
      root.querySelectorAll('[data-lane="' + key + '"]').forEach((el) => { el.textContent = value; });
    });
    if (count) count.textContent = body.count;
    since = body.now;
    if (alertsOn) showAlerts(body.alerts);
  }

  // Every second, ask the cheap version endpoint whether anything changed; fetch the rows only
  // then (or every 15 s, to refresh the waiting times).
  let version = root.dataset.version || null; // as rendered: changes before the first check count
  let lastRows = Date.now();
  async function check() {
    let changed = Date.now() - lastRows > 15000;
    try {
      const response = await fetch(root.dataset.versionUrl, {
        credentials: "same-origin",
        headers: { "X-Pneumo-Background": "1", Accept: "application/json" },
      });
      if (response.status === 401 || response.redirected) { window.location.reload(); return; }
      if (response.ok) {
        const body = await response.json();
        changed = changed || (version !== null && body.version !== version);
        version = body.version;
      }
    } catch (e) {
      changed = true; // let poll() report the connection state
    }
    if (changed) { lastRows = Date.now(); await poll(false); }
    setTimeout(check, document.hidden ? period * 3 : period);
  }

  async function poll(reschedule = true) {
    const url = root.dataset.rowsUrl + "?page=" + encodeURIComponent(root.dataset.page) + "&since="
      + encodeURIComponent(since) + "&fp=" + encodeURIComponent(fingerprint);
    try {
      const response = await fetch(url, {
        credentials: "same-origin",
        headers: { "X-Pneumo-Background": "1", Accept: "application/json" },
      });
      if (response.status === 401 || response.redirected) { window.location.reload(); return; }
      if (!response.ok) throw new Error(String(response.status));
      update(await response.json());
      failures = 0;
      live("ok", "Live");
    } catch (e) {
      failures += 1;
      live(failures > 2 ? "off" : "stale", failures > 2 ? "Not updating: check the connection" : "Retrying…");
    }
    if (reschedule) setTimeout(poll, document.hidden ? period * 3 : period);
  }
  setTimeout(check, period);
})();
