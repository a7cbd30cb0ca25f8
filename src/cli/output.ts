// Human-readable output as the Docker CLI prints it (go-units sizes and durations, tabwriter
// tables, --format templates).
import { compileTemplate, formatTemplate, isTableFormat, parseTableFormat, renderTable, TemplateError } from "../format/template.js";
import { TsrunError } from "../errors.js";

/** go-units' CustomSize: the value scaled by base into its unit, with precision significant digits. */
function scaledSize(bytes: number, base: number, units: readonly string[], precision: number): string {
  let v = bytes;
  let i = 0;
  while (v >= base && i < units.length - 1) {
    v /= base;
    i++;
  }
  return `${Number(v.toPrecision(precision))}${units[i]}`;
}

/** go-units HumanSizeWithPrecision(size, precision): decimal units; 3 significant digits as `images` prints, 4 as units.HumanSize (`system df`). */
export function humanSize(bytes: number, precision = 3): string {
  return scaledSize(bytes, 1000, ["B", "kB", "MB", "GB", "TB", "PB"], precision);
}

/** go-units BytesSize: binary units, 4 significant digits (`stats` memory). */
export function bytesSize(bytes: number): string {
  return scaledSize(bytes, 1024, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"], 4);
}

/** go-units HumanDuration. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return "Less than a second";
  if (seconds === 1) return "1 second";
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(seconds / 60);
  if (minutes === 1) return "About a minute";
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.round(seconds / 3600);
  if (hours === 1) return "About an hour";
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(hours / 24 / 365)} years`;
}

export function ago(iso: string, now = Date.now()): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "N/A";
  return `${humanDuration(now - t)} ago`;
}

/** Docker's tabwriter settings: minwidth 10, padding 3, spaces. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(Math.max(10, (widths[i] ?? 0) + 3))))
        .join("")
        .trimEnd(),
    )
    .join("\n") + "\n";
}

export function shortId(id: string): string {
  return id.replace(/^sha256:/, "").slice(0, 12);
}

export function templateError(err: unknown): never {
  if (err instanceof TemplateError) throw new TsrunError(err.message);
  throw err;
}

/** Renders rows with a table, json or plain template format (docker/cli's formatter). */
/** docker/cli's LABELS column (and logs --details' attributes): KEY=VALUE, sorted, comma-separated. */
export function labelsColumn(labels: Record<string, string>): string {
  return Object.entries(labels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

/** docker/cli's header for {{.Label "com.example.some-key"}}: the last dotted part, - and _ as spaces. */
export function labelHeader(name: string): string {
  return (name.split(".").pop() ?? "").replace(/[-_]/g, " ");
}

/** `--format json` (one line) or a Go template over data. */
export function formatData(format: string, data: unknown): string {
  if (format === "json") return `${JSON.stringify(data)}\n`;
  try {
    return `${formatTemplate(format, data)}\n`;
  } catch (err) {
    templateError(err);
  }
}

export function formatRows(format: string, rows: readonly Record<string, unknown>[], headers: Readonly<Record<string, unknown>>): string {
  try {
    if (isTableFormat(format)) return renderTable(format, rows, headers);
    const template = compileTemplate(parseTableFormat(format).template);
    return rows.map((r) => `${template.execute(r)}\n`).join("");
  } catch (err) {
    templateError(err);
  }
}

// Time formats Docker prints

const pad = (n: number, width = 2): string => String(n).padStart(width, "0");

function zoneOffset(d: Date, separator: string): string {
  const minutes = -d.getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const abs = Math.abs(minutes);
  return `${sign}${pad(Math.floor(abs / 60))}${separator}${pad(abs % 60)}`;
}

let zoneFormat: Intl.DateTimeFormat | undefined;

function zoneName(d: Date): string {
  zoneFormat ??= new Intl.DateTimeFormat("en-US", { timeZoneName: "short" });
  const part = zoneFormat.formatToParts(d).find((p) => p.type === "timeZoneName");
  return part?.value ?? "UTC";
}

function localDate(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function localTime(d: Date): string {
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Go's time.Time.String() in local time, as `images` shows CreatedAt: "2024-01-02 15:04:05 +0000 UTC". */
export function goTimeString(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${localDate(d)} ${localTime(d)} ${zoneOffset(d, "")} ${zoneName(d)}`;
}

/** RFC 3339 in local time, as `history` shows CreatedAt: "2024-01-02T15:04:05Z" or "...+01:00". */
export function rfc3339Local(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const offset = d.getTimezoneOffset() === 0 ? "Z" : zoneOffset(d, ":");
  return `${localDate(d)}T${localTime(d)}${offset}`;
}
