// Enrollment funnel: one bar per stage (enrolled -> started -> completed), each with its count and its share
// of enrolled; dropped enrollments are noted beside the chart.
import { axisBottom, axisLeft, max, scaleBand, scaleLinear } from "d3";
import { bindTooltip } from "../tooltip.js";
import { WIDTH, empty, fmt, frame, pct } from "./frame.js";

const ORDER = ["enrolled", "started", "completed"];
const LABEL = { enrolled: "Enrolled", started: "Started", completed: "Completed" };

export function drawFunnel(section, funnel) {
  const stages = ORDER.map((stage) => funnel.stages.find((s) => s.stage === stage)).filter(Boolean);
  if (stages.length === 0 || stages.every((s) => s.enrollments === 0)) {
    return empty(section, "no enrollments in the export");
  }
  const enrolled = stages.find((s) => s.stage === "enrolled")?.enrollments ?? 0;
  const share = (n) => (enrolled > 0 ? pct.format(n / enrolled) : "–");
  const { svg, g, width, height } = frame(section, 260, { top: 24, right: 16, bottom: 48, left: 56 });

  const x = scaleBand().domain(stages.map((s) => s.stage)).range([0, width]).padding(0.3);
  const y = scaleLinear().domain([0, max(stages, (s) => s.enrollments)]).nice().range([height, 0]);

  g.append("g").attr("class", "axis axis-x").attr("transform", `translate(0,${height})`)
    .call(axisBottom(x).tickFormat((s) => LABEL[s]));
  g.append("g").attr("class", "axis axis-y").call(axisLeft(y).ticks(5, "~s"));

  const bars = g.selectAll("rect.bar").data(stages).join("rect")
    .attr("class", (s) => `bar stage-${s.stage}`)
    .attr("data-stage", (s) => s.stage)
    .attr("data-value", (s) => s.enrollments)
    .attr("x", (s) => x(s.stage))
    .attr("width", x.bandwidth())
    .attr("y", (s) => y(s.enrollments))
    .attr("height", (s) => height - y(s.enrollments));
  bindTooltip(bars, (s) => `${LABEL[s.stage]}: ${fmt.format(s.enrollments)} enrollments (${share(s.enrollments)} of enrolled)`);

  g.selectAll("text.value").data(stages).join("text")
    .attr("class", "value")
    .attr("x", (s) => x(s.stage) + x.bandwidth() / 2)
    .attr("y", (s) => y(s.enrollments) - 6)
    .attr("text-anchor", "middle")
    .text((s) => `${fmt.format(s.enrollments)} · ${share(s.enrollments)}`);

  svg.append("text").attr("class", "dropped note")
    .attr("data-value", funnel.dropped)
    .attr("x", WIDTH - 16).attr("y", 260 - 8).attr("text-anchor", "end")
    .text(`Dropped: ${fmt.format(funnel.dropped)} (${share(funnel.dropped)} of enrolled)`);
  section.dataset.state = "ready";
  return "ready";
}
