// Chart.js on the dark theme, shared by the analysis pages: the forward curve (#curve-chart)
// and the hedging calculator's cost (a seller's revenue) distribution (#hedge-chart, its axis
// title in its data). Each chart reads its data from a json_script element; prices and costs
// arrive as strings (Decimals) and become numbers here.
(function () {
  var theme = {
    text: "#e6e9ed",
    muted: "#8b96a3",
    grid: "#222b36",
    series: ["#f85149", "#58a6ff", "#3fb950", "#d29922"],
    sources: { settlement: "#58a6ff", mid: "#3fb950", last_trade: "#bc8cff", model: "#8b96a3" },
    model: "#d29922"
  };

  function axis(title, extra) {
    var result = {
      ticks: { color: theme.muted },
      grid: { color: theme.grid },
      title: { display: true, text: title, color: theme.muted }
    };
    for (var key in extra || {}) result[key] = extra[key];
    return result;
  }

  // Responsive inside a fixed-height container: the container sets the height, not the width.
  function options(scales, plugins) {
    var base = { legend: { labels: { color: theme.text, usePointStyle: true, pointStyle: "rectRounded" } } };
    for (var key in plugins || {}) base[key] = plugins[key];
    return { responsive: true, maintainAspectRatio: false, animation: false, scales: scales, plugins: base };
  }

  function data(id) {
    var source = document.getElementById(id);
    return source ? JSON.parse(source.textContent) : null;
  }

  function numbers(values) {
    return values.map(function (value) { return value === null ? null : Number(value); });
  }

  function forwardCurve() {
    var canvas = document.getElementById("curve-chart");
    var chart = data("curve-chart-data");
    if (!canvas || !chart) return;
    var sourceNames = { settlement: "settlement", mid: "mid", last_trade: "last trade", model: "model" };
    new window.Chart(canvas, {
      type: "line",
      data: {
        labels: chart.labels,
        datasets: [
          {
            label: "Market ($/GPU-hr)",
            data: numbers(chart.market),
            borderColor: theme.sources.settlement,
            backgroundColor: theme.sources.settlement,
            pointBackgroundColor: chart.sources.map(function (source) { return theme.sources[source] || theme.muted; }),
            pointBorderColor: chart.sources.map(function (source) { return theme.sources[source] || theme.muted; }),
            pointRadius: 4,
            spanGaps: false
          },
          {
            label: "Depreciation model ($/GPU-hr)",
            data: numbers(chart.model),
            borderColor: theme.model,
            backgroundColor: theme.model,
            borderDash: [6, 4],
            pointRadius: 2
          }
        ]
      },
      options: options(
        { x: axis("Delivery month", { ticks: { color: theme.muted, maxTicksLimit: 12 } }), y: axis("$/GPU-hr") },
        {
          tooltip: {
            callbacks: {
              label: function (item) {
                var text = item.dataset.label.replace(" ($/GPU-hr)", "") + ": " + item.formattedValue + " $/GPU-hr";
                if (item.datasetIndex === 0 && chart.sources[item.dataIndex]) text += " (" + sourceNames[chart.sources[item.dataIndex]] + ")";
                return text;
              }
            }
          }
        }
      )
    });
  }

  function costHistogram() {
    var canvas = document.getElementById("hedge-chart");
    var chart = data("hedge-chart-data");
    if (!canvas || !chart) return;
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: chart.labels,
        datasets: chart.series.map(function (series, index) {
          return { label: series.label, data: series.counts, backgroundColor: theme.series[index % theme.series.length], borderWidth: 0, barPercentage: 1.0, categoryPercentage: 0.9 };
        })
      },
      options: options({
        x: axis(chart.axis || "Cost of the need (USD)", { ticks: { color: theme.muted, maxTicksLimit: 8 } }),
        y: axis("Simulated paths")
      })
    });
  }

  function draw() {
    if (!window.Chart) return;
    forwardCurve();
    costHistogram();
  }

  window.ExchangeCharts = { theme: theme, axis: axis, options: options };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw); else draw();
})();
