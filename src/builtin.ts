// Node built-in modules loaded on first use, for code that a short command rarely reaches: each of
// net, tty, crypto and child_process costs 5-11 ms to load on a slow machine, and `tsrun run` needs none of them
// unless it publishes ports, has a terminal or runs a storage helper. (Not `await import()`: in
// the CommonJS bundle that goes through Node's ES module loader, slower, with a warning.)
import { createRequire } from "node:module";

const load = createRequire(import.meta.url);

export const lazyNet = (): typeof import("node:net") => load("node:net") as typeof import("node:net");
export const lazyTty = (): typeof import("node:tty") => load("node:tty") as typeof import("node:tty");
export const lazyDgram = (): typeof import("node:dgram") => load("node:dgram") as typeof import("node:dgram");
export const lazyReadline = (): typeof import("node:readline") => load("node:readline") as typeof import("node:readline");
export const lazyChildProcess = (): typeof import("node:child_process") => load("node:child_process") as typeof import("node:child_process");
export const lazyCrypto = (): typeof import("node:crypto") => load("node:crypto") as typeof import("node:crypto");
