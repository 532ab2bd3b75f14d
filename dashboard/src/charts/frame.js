// What the three charts share: an SVG sized by its viewBox (it scales to the width of its container), and
// the empty state.
import { select } from "d3";

export const WIDTH = 640;
export const fmt = new Intl.NumberFormat("en");
export const pct = new Intl.NumberFormat("en", { style: "percent", maximumFractionDigits: 0 });

/** A fresh <svg> in the chart's section (replacing an earlier one) with an inner <g> inside the margins. */
export function frame(section, height, margin) {
  const root = select(section);
  root.selectAll("svg, p.empty").remove();
  const svg = root.append("svg")
    .attr("viewBox", `0 0 ${WIDTH} ${height}`)
    .attr("preserveAspectRatio", "xMidYMid meet")
    .attr("role", "img");
  const g = svg.append("g").attr("transform", `translate(${margin.left},${margin.top})`);
  return { svg, g, width: WIDTH - margin.left - margin.right, height: height - margin.top - margin.bottom };
}

/** The chart's empty state: "No data yet" in place of the chart. */
export function empty(section, what) {
  const root = select(section);
  root.selectAll("svg, p.empty").remove();
  root.attr("data-state", "empty");
  root.append("p").attr("class", "empty").text("No data yet").attr("title", what);
  return "empty";
}
