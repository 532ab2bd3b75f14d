// One positioned <div class="tooltip"> for the page; charts call bindTooltip(selection, textOf) on their marks.
import { select } from "d3";

const tip = select(document.body).append("div").attr("class", "tooltip").attr("role", "tooltip")
  .attr("aria-hidden", "true");

function show(pageX, pageY, text) {
  tip.text(text).classed("visible", true);
  const { width } = tip.node().getBoundingClientRect();
  const maxLeft = window.scrollX + document.documentElement.clientWidth - width - 4;
  tip.style("left", `${Math.max(4, Math.min(pageX + 12, maxLeft))}px`).style("top", `${pageY + 14}px`);
}

function hide() {
  tip.classed("visible", false);
}

/** A tooltip on hover and on keyboard focus for every mark of the selection; its text is also the aria-label. */
export function bindTooltip(selection, textOf) {
  selection
    .attr("tabindex", 0)
    .attr("aria-label", textOf)
    .on("pointerenter pointermove", (event, d) => show(event.pageX, event.pageY, textOf(d)))
    .on("focus", function (event, d) {
      const box = this.getBoundingClientRect();
      show(box.x + box.width / 2 + window.scrollX, box.y + window.scrollY, textOf(d));
    })
    .on("pointerleave blur", hide);
}
