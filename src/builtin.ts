// Node built-in modules loaded on first use, for code that a short command rarely reaches: each of
// net, tty, crypto and child_process costs 5-11 ms to load on a slow machine, and `tsrun run` needs none of them
// unless it publishes ports, has a terminal or runs a storage helper. (Not `await import()`: in
// the CommonJS bundle that goes through Node's ES module loader, slower, with a warning.)
import { createRequire } from "node:module";

// process.getBuiltinModule (Node 20.16 and later) loads a built-in without a require function;
// before it, a require made from this module's URL, once (URL parsing and createRequire cost
// ~1.5 ms of a command's start, for modules it may never load).
let made: ((id: string) => unknown) | undefined;
function load(id: string): unknown {
  if (typeof process.getBuiltinModule === "function") return process.getBuiltinModule(id);
  made ??= createRequire(import.meta.url);
  return made(id);
}

export const lazyNet = (): typeof import("node:net") => load("node:net") as typeof import("node:net");
export const lazyTty = (): typeof import("node:tty") => load("node:tty") as typeof import("node:tty");
export const lazyDgram = (): typeof import("node:dgram") => load("node:dgram") as typeof import("node:dgram");
export const lazyReadline = (): typeof import("node:readline") => load("node:readline") as typeof import("node:readline");
export const lazyChildProcess = (): typeof import("node:child_process") => load("node:child_process") as typeof import("node:child_process");
export const lazyHttp = (): typeof import("node:http") => load("node:http") as typeof import("node:http");
export const lazyHttps = (): typeof import("node:https") => load("node:https") as typeof import("node:https");
export const lazyTls = (): typeof import("node:tls") => load("node:tls") as typeof import("node:tls");
export const lazyCrypto = (): typeof import("node:crypto") => load("node:crypto") as typeof import("node:crypto");
