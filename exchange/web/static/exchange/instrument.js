// The instrument page's price chart: trades as a line, daily settlements as points, on one
// time axis (epoch milliseconds; no date adapter needed). Prices arrive as exact decimal strings.
(function () {
  var HOUR_MS = 3600 * 1000;
  function draw() {
    var source = document.getElementById("chart-data");
    var canvas = document.getElementById("price-chart");
    if (!source || !canvas || !window.Chart) return;
    var data = JSON.parse(source.textContent);
    var points = function (rows) {
      return rows.map(function (row) { return { x: Date.parse(row.t), y: Number(row.price) }; });
    };
    var trades = points(data.trades), settlements = points(data.settlements);
    // The axis spans the data (a lone point gets an hour either side), not Chart.js's default.
    var times = trades.concat(settlements).map(function (point) { return point.x; });
    var first = Math.min.apply(null, times), last = Math.max.apply(null, times);
    if (first === last) { first -= HOUR_MS; last += HOUR_MS; }
    var muted = "#8b96a3", grid = "#222b36";
    new window.Chart(canvas, {
      type: "line",
      data: {
        datasets: [
          { label: "Trades", data: trades, borderColor: "#58a6ff", backgroundColor: "#58a6ff", pointRadius: 2, borderWidth: 1.5, tension: 0 },
          { label: "Daily settlement", data: settlements, borderColor: "#d29922", backgroundColor: "#d29922", showLine: false, pointRadius: 4 }
        ]
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false, parsing: false,
        scales: {
          x: { type: "linear", min: first, max: last, ticks: { color: muted, maxTicksLimit: 6, callback: function (value) { return new Date(value).toISOString().slice(5, 16).replace("T", " "); } }, grid: { color: grid } },
          y: { ticks: { color: muted }, grid: { color: grid }, title: { display: true, text: "$/GPU-hr", color: muted } }
        },
        plugins: { legend: { labels: { color: "#e6e9ed" } } }
      }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw); else draw();
})();
