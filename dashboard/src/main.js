// The CoriSync dashboard: fetch the export (data/dashboard.json next to the page, or ?data=<url>), check it
// against the contract, draw the three charts. document.body.dataset.state ends as "ready" (some chart has
// data), "empty" (every chart shows its empty state) or "error" (the export could not be loaded or read).
import "./style.css";
import { drawAttendance } from "./charts/attendance.js";
import { drawFunnel } from "./charts/funnel.js";
import { drawWeekly } from "./charts/weekly.js";
import { validateExport } from "./validate.js";

const DEFAULT_DATA_URL = "data/dashboard.json";

async function loadExport(url) {
  let response;
  try {
    response = await fetch(url, { cache: "no-store" });
  } catch (err) {
    throw new Error(`could not fetch ${url}: ${err.message}`);
  }
  if (response.status === 404) {
    throw new Error(`no export at ${url} yet (HTTP 404): materialize exports/dashboard_json in Dagster`);
  }
  if (!response.ok) throw new Error(`could not load ${url}: HTTP ${response.status} ${response.statusText}`.trim());
  const text = await response.text();
  let data;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new Error(`${url} is not JSON: ${err.message}`);
  }
  try {
    return validateExport(data);
  } catch (err) {
    throw new Error(`${url} is not a dashboard export (version 1): ${err.message}`);
  }
}

function showError(message) {
  for (const section of document.querySelectorAll("section.chart")) section.hidden = true;
  document.getElementById("meta").textContent = "";
  const box = document.createElement("div");
  box.className = "error";
  box.setAttribute("role", "alert");
  const title = document.createElement("strong");
  title.textContent = "The dashboard data could not be shown. ";
  const reason = document.createElement("span");
  reason.className = "reason";
  reason.textContent = message;
  box.append(title, reason);
  document.querySelector("main.dashboard").append(box);
}

async function main() {
  const url = new URLSearchParams(window.location.search).get("data") || DEFAULT_DATA_URL;
  try {
    const data = await loadExport(url);
    const generated = new Date(data.generated_at);
    document.getElementById("meta").textContent = `Exported ${Number.isNaN(generated.getTime())
      ? data.generated_at : generated.toISOString().replace("T", " ").slice(0, 16) + " UTC"} from ${data.warehouse}`;
    const states = [
      drawFunnel(document.getElementById("funnel"), data.funnel),
      drawWeekly(document.getElementById("weekly-actives"), data.weekly_actives),
      drawAttendance(document.getElementById("attendance"), data.attendance),
    ];
    document.body.dataset.state = states.includes("ready") ? "ready" : "empty";
  } catch (err) {
    console.error(err);
    showError(err.message);
    document.body.dataset.state = "error";
  }
}

main();
