// Weekly active learners: a line with one point per ISO week (oldest first), learners who logged in as a
// second, dashed line; each point's tooltip has the week's three numbers.
import { axisBottom, axisLeft, extent, line, max, scaleLinear, scaleUtc, utcDay, utcFormat, utcParse } from "d3";
import { bindTooltip } from "../tooltip.js";
import { empty, fmt, frame } from "./frame.js";

const parseDay = utcParse("%Y-%m-%d");
const weekLabel = utcFormat("%b %-d, %Y");

export function drawWeekly(section, weeks) {
  if (weeks.length === 0) return empty(section, "no activity in the export");
  const rows = weeks.map((w) => ({ ...w, date: parseDay(w.week_start) }));
  const { g, width, height } = frame(section, 280, { top: 28, right: 24, bottom: 32, left: 56 });

  const [first, last] = extent(rows, (w) => w.date);
  // A single week still gets a visible span: half a week either side.
  const x = scaleUtc().domain(first < last ? [first, last] : [utcDay.offset(first, -4), utcDay.offset(last, 4)])
    .range([0, width]);
  const y = scaleLinear().domain([0, max(rows, (w) => Math.max(w.active_learners, w.learners_logged_in)) || 1])
    .nice().range([height, 0]);

  g.append("g").attr("class", "axis axis-x").attr("transform", `translate(0,${height})`)
    .call(axisBottom(x).ticks(Math.min(rows.length, 8)));
  g.append("g").attr("class", "axis axis-y").call(axisLeft(y).ticks(5, "~s"));

  g.append("path").datum(rows).attr("class", "line logged-in")
    .attr("d", line().x((w) => x(w.date)).y((w) => y(w.learners_logged_in)));
  g.append("path").datum(rows).attr("class", "line active")
    .attr("d", line().x((w) => x(w.date)).y((w) => y(w.active_learners)));

  const points = g.selectAll("circle.point").data(rows).join("circle")
    .attr("class", "point")
    .attr("data-week", (w) => w.week_start)
    .attr("data-value", (w) => w.active_learners)
    .attr("cx", (w) => x(w.date))
    .attr("cy", (w) => y(w.active_learners))
    .attr("r", 4);
  bindTooltip(points, (w) => `Week of ${weekLabel(w.date)}: ${fmt.format(w.active_learners)} active learners, `
    + `${fmt.format(w.learners_logged_in)} logged in, ${fmt.format(w.activity_events)} activity events`);

  const legend = g.append("g").attr("class", "legend").attr("transform", "translate(0,-20)");
  [["active", "active learners"], ["logged-in", "learners who logged in"]].forEach(([cls, label], i) => {
    legend.append("line").attr("class", `line ${cls}`).attr("x1", i * 130).attr("x2", i * 130 + 18)
      .attr("y1", 0).attr("y2", 0);
    legend.append("text").attr("x", i * 130 + 24).attr("y", 4).text(label);
  });
  section.dataset.state = "ready";
  return "ready";
}
