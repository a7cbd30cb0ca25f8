// Crash points for the fault-injection tests (test/e2e/integrity.test.ts); not a feature.
//
// A multi-step store operation calls faultPoint("NAME") between its steps. Two environment
// variables, read once at start, turn the points on:
//   TSRUN_FAULT=NAME[@N]    kill this process with SIGKILL the Nth time (default: the first) it
//                           reaches point NAME: exactly what `kill -9` at that instant does;
//   TSRUN_FAULT=NAME[@N]:stop  stop it there with SIGSTOP instead, so that a test can run other
//                           commands at that exact point and then let it go on (SIGCONT);
//   TSRUN_FAULT_TRACE=FILE  append every point reached to FILE, so that a test can list an
//                           operation's points and then crash it at each of them.
// Unset (always, outside the tests) a call costs one comparison.
import { appendFileSync } from "node:fs";

const target = process.env.TSRUN_FAULT;
const trace = process.env.TSRUN_FAULT_TRACE;
const enabled = Boolean(target) || Boolean(trace);
const [targetName, targetCount, action] = ((): [string, number, NodeJS.Signals] => {
  if (!target) return ["", 0, "SIGKILL"];
  const stop = target.endsWith(":stop");
  const spec = stop ? target.slice(0, -":stop".length) : target;
  const at = spec.lastIndexOf("@");
  const signal = stop ? "SIGSTOP" : "SIGKILL";
  return at > 0 ? [spec.slice(0, at), Number(spec.slice(at + 1)) || 1, signal] : [spec, 1, signal];
})();
let reached = 0;

export function faultPoint(name: string): void {
  if (!enabled) return;
  if (trace) appendFileSync(trace, `${name}\n`);
  if (name === targetName && ++reached === targetCount) process.kill(process.pid, action);
}
