// Durations as Go writes them, for HEALTHCHECK and its flags, and the times Docker's --since,
// --until and until= filters take. Its own module: `run` needs it without the Dockerfile parser
// that the rest of config-changes brings.
import { TsrunError } from "../errors.js";

/** Go's time.ParseDuration for the forms HEALTHCHECK takes ("30s", "1m30s", "500ms"), in ns. */
export function parseDuration(s: string): number {
  if (s === "0") return 0;
  const unit: Record<string, number> = { ns: 1, us: 1e3, "\u00b5s": 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  const re = /(\d+(?:\.\d+)?)(ns|us|\u00b5s|ms|s|m|h)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * (unit[m[2] as string] as number);
    matched = re.lastIndex;
  }
  if (matched !== s.length || s.length === 0) throw new TsrunError(`invalid duration "${s}"`);
  return Math.round(total);
}

/**
 * A time as Docker's --since/--until and until= take it: a Go duration before now ("10m",
 * "1h30m"), Unix seconds, or an RFC 3339 time or date.
 */
export function parseTimeArgument(s: string, flag: string): Date {
  if (/^(\d+(\.\d+)?(ns|us|\u00b5s|ms|s|m|h))+$/.test(s)) return new Date(Date.now() - parseDuration(s) / 1e6);
  if (/^\d+(\.\d+)?$/.test(s)) return new Date(Number(s) * 1000);
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) throw new TsrunError(`invalid ${flag} value "${s}"`);
  return d;
}
