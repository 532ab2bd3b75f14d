// The data contract (dashboard/export.schema.json, schema_version 1), checked by hand: a mismatch throws an
// Error whose message names the first offending field, and the page shows it in its error state.

export const SCHEMA_VERSION = 1;
const STAGES = ["enrolled", "started", "completed"];
const TOP_KEYS = ["schema_version", "generated_at", "warehouse", "funnel", "weekly_actives", "attendance"];

class ExportError extends Error {}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isCount = (v) => Number.isInteger(v) && v >= 0;

function need(ok, where, what) {
  if (!ok) throw new ExportError(`${where} ${what}`);
}

function counts(item, where, keys) {
  for (const key of keys) need(isCount(item[key]), `${where}.${key}`, "must be a non-negative integer");
}

function array(value, where) {
  need(Array.isArray(value), where, "must be an array");
  return value;
}

/** The export if it follows schema_version 1; throws an Error naming what is wrong otherwise. */
export function validateExport(data) {
  need(isObject(data), "the export", "must be a JSON object");
  need(
    data.schema_version === SCHEMA_VERSION,
    "schema_version",
    `is ${JSON.stringify(data.schema_version)}, this page reads version ${SCHEMA_VERSION}`,
  );
  const missing = TOP_KEYS.filter((key) => !(key in data));
  need(missing.length === 0, "the export", `misses required key(s): ${missing.join(", ")}`);
  need(typeof data.generated_at === "string", "generated_at", "must be a string");

  need(isObject(data.funnel), "funnel", "must be an object");
  array(data.funnel.stages, "funnel.stages").forEach((stage, i) => {
    const where = `funnel.stages[${i}]`;
    need(isObject(stage), where, "must be an object");
    need(STAGES.includes(stage.stage), `${where}.stage`, `must be one of ${STAGES.join(", ")}`);
    counts(stage, where, ["enrollments"]);
  });
  need(isCount(data.funnel.dropped), "funnel.dropped", "must be a non-negative integer");

  array(data.weekly_actives, "weekly_actives").forEach((week, i) => {
    const where = `weekly_actives[${i}]`;
    need(isObject(week), where, "must be an object");
    need(/^\d{4}-\d{2}-\d{2}$/.test(week.week_start ?? ""), `${where}.week_start`, "must be a YYYY-MM-DD date");
    counts(week, where, ["active_learners", "learners_logged_in", "activity_events"]);
  });

  array(data.attendance, "attendance").forEach((row, i) => {
    const where = `attendance[${i}]`;
    need(isObject(row), where, "must be an object");
    need(row.trainer_name === null || typeof row.trainer_name === "string", `${where}.trainer_name`,
      "must be a string or null");
    need(typeof row.location === "string", `${where}.location`, "must be a string");
    counts(row, where, ["trainings_held", "registrations", "attended", "no_shows"]);
    const rate = row.attendance_rate;
    need(rate === null || (typeof rate === "number" && rate >= 0 && rate <= 1), `${where}.attendance_rate`,
      "must be a number from 0 to 1, or null");
  });
  return data;
}
