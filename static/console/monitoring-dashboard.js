// Charts of the monitoring dashboard (a static file: the Content-Security-Policy allows no inline script).
(function () {
  const data = JSON.parse(document.getElementById("chart-data").textContent);
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
})();
