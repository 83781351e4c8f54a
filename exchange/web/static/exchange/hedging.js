// The hedging calculator's cost distribution: simulated paths per cost bin, one bar series per
// strategy, on shared bins.
(function () {
  function draw() {
    var source = document.getElementById("hedge-chart-data");
    var canvas = document.getElementById("hedge-chart");
    if (!source || !canvas || !window.Chart) return;
    var data = JSON.parse(source.textContent);
    var colours = ["#f85149", "#58a6ff", "#3fb950", "#d29922"];
    var muted = "#8b96a3", grid = "#222b36";
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: data.series.map(function (series, index) {
          return { label: series.label, data: series.counts, backgroundColor: colours[index % colours.length], borderWidth: 0, barPercentage: 1.0, categoryPercentage: 0.9 };
        })
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        scales: {
          x: { ticks: { color: muted, maxTicksLimit: 8 }, grid: { color: grid }, title: { display: true, text: "Cost of the need (USD)", color: muted } },
          y: { ticks: { color: muted }, grid: { color: grid }, title: { display: true, text: "Simulated paths", color: muted } }
        },
        plugins: { legend: { labels: { color: "#e6e9ed" } } }
      }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw); else draw();
})();
