// Training attendance: one horizontal bar per trainer · location, attended and no-shows stacked, with the
// attendance rate at the end of the bar. Rows come in the export's order (most registrations first).
import { axisBottom, axisLeft, max, scaleBand, scaleLinear } from "d3";
import { bindTooltip } from "../tooltip.js";
import { empty, fmt, frame, pct } from "./frame.js";

const ROW = 26;
const trainer = (r) => r.trainer_name ?? "(no trainer)";
const label = (r) => `${trainer(r)} · ${r.location}`;
const rate = (r) => (r.attendance_rate === null ? "–" : pct.format(r.attendance_rate));
/** The bar's data-key: "<trainer_name>|<location>", an empty trainer name when it is null. */
export const keyOf = (r) => `${r.trainer_name ?? ""}|${r.location}`;

export function drawAttendance(section, rows) {
  if (rows.length === 0) return empty(section, "no trainings held in the export");
  const margin = { top: 8, right: 56, bottom: 40, left: 200 };
  const { g, width, height } = frame(section, rows.length * ROW + margin.top + margin.bottom + 8, margin);

  const y = scaleBand().domain(rows.map(keyOf)).range([0, height]).padding(0.2);
  const x = scaleLinear().domain([0, max(rows, (r) => r.attended + r.no_shows) || 1]).nice().range([0, width]);

  g.append("g").attr("class", "axis axis-x").attr("transform", `translate(0,${height})`)
    .call(axisBottom(x).ticks(6, "~s"));
  const labels = new Map(rows.map((r) => [keyOf(r), label(r)]));
  g.append("g").attr("class", "axis axis-y")
    .call(axisLeft(y).tickFormat((k) => (labels.get(k).length > 32 ? `${labels.get(k).slice(0, 31)}…` : labels.get(k))));

  const tip = (r) => `${label(r)}: ${fmt.format(r.attended)} attended, ${fmt.format(r.no_shows)} no-shows of `
    + `${fmt.format(r.registrations)} registrations in ${fmt.format(r.trainings_held)} trainings `
    + `(attendance ${rate(r)})`;
  const attended = g.selectAll("rect.bar").data(rows).join("rect")
    .attr("class", "bar attended")
    .attr("data-key", keyOf)
    .attr("data-value", (r) => r.attended)
    .attr("data-rate", (r) => r.attendance_rate ?? "")
    .attr("x", 0).attr("y", (r) => y(keyOf(r)))
    .attr("width", (r) => x(r.attended)).attr("height", y.bandwidth());
  const noShows = g.selectAll("rect.no-shows").data(rows).join("rect")
    .attr("class", "no-shows")
    .attr("data-key", keyOf)
    .attr("data-value", (r) => r.no_shows)
    .attr("x", (r) => x(r.attended)).attr("y", (r) => y(keyOf(r)))
    .attr("width", (r) => x(r.attended + r.no_shows) - x(r.attended)).attr("height", y.bandwidth());
  bindTooltip(attended, tip);
  bindTooltip(noShows, tip);

  g.selectAll("text.rate").data(rows).join("text")
    .attr("class", "rate")
    .attr("x", (r) => x(r.attended + r.no_shows) + 6)
    .attr("y", (r) => y(keyOf(r)) + y.bandwidth() / 2)
    .attr("dy", "0.35em")
    .text(rate);

  const legend = g.append("g").attr("class", "legend").attr("transform", `translate(${width - 160},${height + 26})`);
  [["attended", "attended"], ["no-shows", "no-shows"]].forEach(([cls, text], i) => {
    legend.append("rect").attr("class", `swatch ${cls}`).attr("x", i * 90).attr("y", 0).attr("width", 10).attr("height", 10);
    legend.append("text").attr("x", i * 90 + 14).attr("y", 9).text(text);
  });
  section.dataset.state = "ready";
  return "ready";
}
