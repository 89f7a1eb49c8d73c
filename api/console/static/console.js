// The console's little bit of behaviour: chart tooltips and confirmations. No framework.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const tip = document.getElementById("chart-tip");
  document.querySelectorAll("svg#chart .mark").forEach((mark) => {
    const show = () => { if (tip) tip.textContent = mark.dataset.label || ""; };
    mark.addEventListener("mouseenter", show);
    mark.addEventListener("click", show);
  });
  const chart = document.getElementById("chart");
  if (chart) chart.dataset.ready = String(chart.querySelectorAll("path.ats-line").length);
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
});
