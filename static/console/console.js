/* The console's small scripts (no inline script: the pages work under a strict Content-Security-Policy).
   Each part starts only when its element is on the page. */
(function () {
  "use strict";

  function size(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  function seconds(s) {
    if (s === null || s === undefined) return "—";
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  /* Job page: poll the job's JSON until it is finished; the bar, bytes, rate, ETA and log follow. */
  function jobPage(box) {
    const url = box.dataset.progressUrl;
    const bar = document.getElementById("job-bar");
    const status = document.getElementById("job-status");
    const log = document.getElementById("job-log");
    function show(d) {
      status.textContent = d.status;
      status.className = "status-" + d.status;
      if (d.percent !== null) { bar.value = d.percent; bar.removeAttribute("data-indeterminate"); }
      else if (!d.finished) { bar.removeAttribute("value"); }
      if (d.finished) { bar.value = d.status === "succeeded" ? 100 : (d.percent || 0); }
      document.getElementById("job-percent").textContent = d.percent !== null ? d.percent + "%" : "";
      document.getElementById("job-bytes").textContent = size(d.done) + (d.total ? " of " + size(d.total) : "");
      document.getElementById("job-rate").textContent = d.rate ? size(d.rate) + "/s" : "—";
      document.getElementById("job-eta").textContent = d.finished ? "done" : seconds(d.eta_seconds);
      if (log.textContent !== d.log) { log.textContent = d.log; log.scrollTop = log.scrollHeight; }
      const err = document.getElementById("job-error");
      if (d.error) { err.textContent = "Error: " + d.error; err.hidden = false; }
      if (d.finished) {
        box.dataset.finished = "1";
        const res = document.getElementById("job-result");
        if (res && d.result && !res.textContent.trim()) {
          res.textContent = Object.entries(d.result).map(([k, v]) => k + ": " + JSON.stringify(v)).join("\n");
        }
      }
    }
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(r => r.ok ? r.json() : Promise.reject(r.status))
        .then(d => { show(d); if (!d.finished) setTimeout(poll, 700); })
        .catch(() => setTimeout(poll, 2000));
    }
    if (box.dataset.finished !== "1") poll();
  }

  /* Document source page: "Restore…" fills the version into the restore form. */
  function versionPicker() {
    document.querySelectorAll(".pick-version").forEach(b => b.addEventListener("click", () => {
      document.getElementById("id_version").value = b.dataset.version;
      document.getElementById("id_directory").focus();
    }));
  }

  /* Dashboard: sizes and durations over 30 days, storage per location and tier, open alerts by severity. */
  function dashboardCharts(el) {
    if (typeof Chart === "undefined") return;
    const data = JSON.parse(el.textContent);
    const palette = ["#3b6fd8", "#17803d", "#dc6803", "#b42318", "#7a5af8", "#0e9384", "#c11574"];
    // The 30 days the series cover, whatever the points: one point alone made Chart.js pad the axis by months.
    const day = 86400000, now = Date.now();
    const axis = { type: "linear", min: now - 31 * day, max: now, ticks: { stepSize: 7 * day,
      callback: v => new Date(v).toISOString().slice(5, 10) } };
    function line(id, key, label, series) {
      const canvas = document.getElementById(id);
      if (!canvas) return;
      new Chart(canvas, {
        type: "line",
        data: { datasets: series.map((s, i) => ({ label: s.name + (s.kind === "documents" ? " (documents)" : ""),
          borderColor: palette[i % palette.length], backgroundColor: palette[i % palette.length],
          data: s[key].map(p => ({ x: Date.parse(p.x), y: p.y })) })) },
        options: { parsing: false, animation: false, scales: { x: axis, y: { title: { display: true, text: label } } } }
      });
    }
    /* The 30-day lines come from their own JSON endpoint, so the page does not wait for them. */
    const source = document.getElementById("dashboard-chart-series");
    if (source) fetch(source.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(r => r.ok ? r.json() : Promise.reject(new Error(r.status)))
      .then(d => {
        line("sizes-chart", "sizes", "bytes stored", d.series);
        line("durations-chart", "durations", "seconds", d.series);
      })
      .catch(err => {
        ["sizes-chart", "durations-chart"].forEach(id => {
          const canvas = document.getElementById(id);
          if (canvas) canvas.insertAdjacentText("afterend", "Chart data could not be loaded (" + err.message + ").");
        });
      });
    const tiers = [...new Set(data.storage.flatMap(s => Object.keys(s.tiers)))];
    const storage = document.getElementById("storage-chart");
    if (storage) new Chart(storage, {
      type: "bar",
      data: { labels: data.storage.map(s => s.location),
              datasets: tiers.map((t, i) => ({ label: t, backgroundColor: palette[i % palette.length],
                                               data: data.storage.map(s => s.tiers[t] || 0) })) },
      options: { animation: false, scales: { x: { stacked: true }, y: { stacked: true } } }
    });
    const alerts = document.getElementById("alerts-chart");
    if (alerts) new Chart(alerts, {
      type: "doughnut",
      data: { labels: Object.keys(data.alerts), datasets: [{ data: Object.values(data.alerts),
              backgroundColor: ["#b42318", "#dc6803", "#eaaa08", "#3b6fd8"] }] },
      options: { animation: false }
    });
  }

  /* Monitoring page: sizes over 30 days, storage by location and tier, open alerts. */
  function monitoringCharts(el) {
    if (typeof Chart === "undefined") return;
    const data = JSON.parse(el.textContent);
    const palette = ["#3b6fd8", "#17803d", "#dc6803", "#b42318", "#7a5af8", "#0e9384", "#c11574"];
    new Chart(document.getElementById("sizes-chart"), {
      type: "line",
      data: { datasets: data.sizes.map((s, i) => ({ label: s.target, borderColor: palette[i % palette.length],
        data: s.points.map(p => ({ x: Date.parse(p.x), y: p.y })) })) },
      options: { parsing: false, scales: { x: { type: "linear", ticks: { callback: v => new Date(v).toISOString().slice(5, 10) } },
                                           y: { title: { display: true, text: "bytes stored" } } } }
    });
    const tiers = [...new Set(data.storage.flatMap(s => Object.keys(s.tiers)))];
    new Chart(document.getElementById("storage-chart"), {
      type: "bar",
      data: { labels: data.storage.map(s => s.location),
              datasets: tiers.map((t, i) => ({ label: t, backgroundColor: palette[i % palette.length],
                                               data: data.storage.map(s => s.tiers[t] || 0) })) },
      options: { scales: { x: { stacked: true }, y: { stacked: true } } }
    });
    new Chart(document.getElementById("alerts-chart"), {
      type: "doughnut",
      data: { labels: Object.keys(data.alerts), datasets: [{ data: Object.values(data.alerts),
              backgroundColor: ["#b42318", "#dc6803", "#eaaa08", "#3b6fd8"] }] }
    });
  }

  /* PITR wizard: the destination fields that go with the chosen mode. */
  function pitrMode(form) {
    const radios = form.querySelectorAll("input[name=mode]");
    function sync() {
      const mode = form.querySelector("input[name=mode]:checked");
      form.querySelectorAll("[data-mode]").forEach(el => { el.hidden = !mode || el.dataset.mode !== mode.value; });
    }
    radios.forEach(r => r.addEventListener("change", sync));
    sync();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const job = document.getElementById("job-live");
    if (job) jobPage(job);
    versionPicker();
    document.querySelectorAll(".tl-span, .tl-hole").forEach(el => {
      el.style.left = el.dataset.left + "%";
      el.style.width = el.dataset.width + "%";
    });
    const charts = document.getElementById("dashboard-chart-data");
    if (charts) dashboardCharts(charts);
    const monitoring = document.getElementById("chart-data");
    if (monitoring) monitoringCharts(monitoring);
    const pitr = document.getElementById("pitr-destination-form");
    if (pitr) pitrMode(pitr);
  });
})();
