// The dashboard's behaviour: draws the charts a page describes in `data-chart` (JSON:
// kind, labels, datasets, unit), again whenever htmx swaps new content in, and submits a
// filter form when one of its fields changes. No inline script: the page's
// Content-Security-Policy allows scripts from this origin only.
(function () {
  "use strict";

  var PALETTE = ["#2563eb", "#16a34a", "#f59e0b", "#db2777", "#7c3aed", "#0891b2", "#94a3b8"];

  function config(spec) {
    var horizontal = spec.kind === "horizontal-bar";
    var stacked = spec.kind === "stacked-bar";
    var line = spec.kind === "line";
    var datasets = spec.datasets.map(function (set, n) {
      var color = PALETTE[n % PALETTE.length];
      // One series across categories (a bar per workspace): each bar the colour its
      // workspace has in the stacked chart, whose series are in the same order.
      var fill = horizontal
        ? set.data.map(function (_, i) { return PALETTE[i % PALETTE.length] + "cc"; })
        : color + "cc";
      return {
        label: set.label,
        data: set.data,
        backgroundColor: line ? color : fill,
        borderColor: color,
        borderWidth: line ? 2 : 0,
        pointRadius: line ? 2 : 0,
        spanGaps: false,
      };
    });
    var valueAxis = {
      beginAtZero: true,
      stacked: stacked,
      title: { display: true, text: spec.unit },
    };
    var categoryAxis = { stacked: stacked, ticks: { autoSkip: true, maxRotation: 0 } };
    return {
      type: line ? "line" : "bar",
      data: { labels: spec.labels, datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        indexAxis: horizontal ? "y" : "x",
        plugins: { legend: { display: !horizontal, position: "bottom" } },
        scales: horizontal ? { x: valueAxis, y: categoryAxis } : { x: categoryAxis, y: valueAxis },
      },
    };
  }

  function draw(canvas) {
    var previous = window.Chart.getChart(canvas);
    if (previous) {
      previous.destroy();
    }
    new window.Chart(canvas, config(JSON.parse(canvas.dataset.chart)));
    canvas.dataset.drawn = "true";
  }

  function forgetDetached() {
    Object.values(window.Chart.instances).forEach(function (chart) {
      if (!chart.canvas || !chart.canvas.isConnected) {
        chart.destroy();
      }
    });
  }

  window.htmx.onLoad(function (root) {
    forgetDetached();
    root.querySelectorAll("canvas[data-chart]").forEach(draw);
    root.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
      form.addEventListener("change", function () {
        form.requestSubmit();
      });
    });
  });
})();
