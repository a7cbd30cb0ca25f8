// The floor of `tsrun run --rm busybox true`: Node, the addon and the kernel's work alone. Replays
// a launch plan that tsrun encoded (prepare.mjs) as launchPlan does: connect to the holder, spawn,
// start slirp4netns and wait until it has configured the network (as startSlirp4netns does),
// resume, wait for the exit, end with _exit. No tsrun code: no argument parsing, no store, no
// container record, no removal. CommonJS, as bin/tsrun, for the same start-up.
// Usage: node bench/floor/replay.cjs PLAN.json
"use strict";
const { closeSync, readFileSync, readSync, writeSync } = require("node:fs");
const path = require("node:path");
const release = path.join(__dirname, "..", "..", "build", "Release");
const addon = require(path.join(release, "tsrun_native.node"));
const meta = JSON.parse(readFileSync(process.argv[2], "utf8"));
const holder = addon.netnsConnect(meta.holderSocket);
if (holder.pid !== meta.holderPid) {
  process.stderr.write("the network holder was restarted since the plan was made: run prepare.mjs again\n");
  process.exit(1);
}
const child = addon.spawn(Buffer.from(meta.plan, "base64"));
let exitWrite = -1;
if (meta.slirp4netns) {
  writeSync(child.syncFd, "G");
  const [readyRead, readyWrite] = addon.pipe();
  const [exitRead, exitPipe] = addon.pipe();
  const args = ["--configure", "--mtu=65520", "--ready-fd=3", "--exit-fd=4", `--userns-path=/proc/${child.pid}/ns/user`, String(child.pid), "eth0"];
  addon.spawnDetached(meta.slirp4netns, args, readyWrite, exitRead);
  closeSync(readyWrite);
  closeSync(exitRead);
  if (!(addon.pollIn(readyRead, 10000) && readSync(readyRead, Buffer.alloc(1)) === 1)) throw new Error("slirp4netns did not configure the network");
  closeSync(readyRead);
  exitWrite = exitPipe;
}
const resumed = addon.resume(child.syncFd, child.errorFd, child.socketFd, false);
if (resumed.error) throw new Error(`${resumed.error.step}: ${resumed.error.message}`);
addon.waitPid(child.pid).then((status) => {
  if (exitWrite >= 0) closeSync(exitWrite);
  closeSync(holder.fd);
  addon.exitNow(status.code);
});
