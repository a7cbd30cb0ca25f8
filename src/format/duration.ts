// Durations as Go writes them, for HEALTHCHECK and its flags. Its own module: `run` needs it
// without the Dockerfile parser that the rest of config-changes brings.
import { TsrunError } from "../errors.js";

/** Go's time.ParseDuration for the forms HEALTHCHECK takes ("30s", "1m30s", "500ms"), in ns. */
export function parseDuration(s: string): number {
  if (s === "0") return 0;
  const unit: Record<string, number> = { ns: 1, us: 1e3, "µs": 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * (unit[m[2] as string] as number);
    matched = re.lastIndex;
  }
  if (matched !== s.length || s.length === 0) throw new TsrunError(`invalid duration "${s}"`);
  return Math.round(total);
}
