// Signal names as Docker reads them (moby/sys/signal's ParseSignal): STOPSIGNAL, --stop-signal,
// `kill -s`. Its own module: the builder validates STOPSIGNAL with it, `stop` and `kill` send it.
import { constants } from "node:os";
import { TsrunError } from "../errors.js";

// Linux's real-time signals as glibc numbers them (32 and 33 are the C library's own), the
// values Docker's SignalMap gives RTMIN, RTMIN+n and RTMAX-n.
const SIGRTMIN = 34;
const SIGRTMAX = 64;

function realtimeSignal(name: string): number | undefined {
  const m = /^RT(MIN|MAX)(?:([+-])(\d+))?$/.exec(name);
  if (!m) return undefined;
  const [, base, sign, offset] = m;
  const n = Number(offset ?? 0);
  // Docker names RTMIN..RTMIN+15 and RTMAX-14..RTMAX.
  if (base === "MIN" && (sign === undefined || (sign === "+" && n <= 15))) return SIGRTMIN + n;
  if (base === "MAX" && (sign === undefined || (sign === "-" && n <= 14))) return SIGRTMAX - n;
  return undefined;
}

/** "SIGTERM", "term", "15", "SIGRTMIN+3" -> the signal's number; anything else is an error. */
export function signalNumber(name: string): number {
  const trimmed = name.trim().toUpperCase();
  if (/^\d+$/.test(trimmed)) {
    const n = Number(trimmed);
    if (n < 1 || n > SIGRTMAX) throw new TsrunError(`invalid signal: ${name}`);
    return n;
  }
  const bare = trimmed.startsWith("SIG") ? trimmed.slice(3) : trimmed;
  const n = constants.signals[`SIG${bare}` as keyof typeof constants.signals] ?? realtimeSignal(bare);
  if (n === undefined) throw new TsrunError(`invalid signal: ${name}`);
  return n;
}
