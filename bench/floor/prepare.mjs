// Prepares bench/startup-floor.sh's replay: creates a container for `busybox true` through the
// library API, starts it once, and keeps the launch plan tsrun encoded for it (the buffer the
// addon's spawn gets: mounts, namespaces, user, seccomp, everything the child does) beside the
// container's id and the network helper it needs. replay.cjs then runs that same plan with
// nothing of tsrun loaded.
// Usage: node bench/floor/prepare.mjs OUT.json NAME IMAGE [none]   (as the bench user)
import { writeFileSync } from "node:fs";
import { Tsrun } from "../../dist/index.js";
import { native } from "../../dist/native.js";
import { connectHolder, closeHolder } from "../../dist/network/holder.js";
import { storePaths } from "../../dist/store/paths.js";

const [out, name, image, network] = process.argv.slice(2);
if (!out || !name || !image) throw new Error("usage: prepare.mjs OUT.json NAME IMAGE [none]");
const tsrun = new Tsrun();
const addon = native();
const realSpawn = addon.spawn.bind(addon);
let plan;
addon.spawn = (encoded) => {
  plan = Buffer.from(encoded);
  return realSpawn(encoded);
};
const record = await tsrun.containers.create({ image, args: ["true"], name, ...(network ? { network } : {}) });
// Its own stdin, stdout and stderr (fds 0-2): the replay's are there too.
const proc = await tsrun.containers.start(record, [0, 1, 2]);
const status = await addon.waitPid(proc.pid);
if (status.code !== 0 || !plan) throw new Error(`the container did not run: ${JSON.stringify(status)}`);
// The plan joins the holder's user namespace by its pid (/proc/PID/ns/user): the replay checks
// that the same holder still runs.
const holder = await connectHolder(storePaths().runRoot);
closeHolder(holder);
writeFileSync(
  out,
  JSON.stringify({
    plan: plan.toString("base64"),
    holderSocket: `${storePaths().runRoot}/netns-1.sock`,
    holderPid: holder.pid,
    slirp4netns: network === "none" ? undefined : "/usr/bin/slirp4netns",
  }),
);
process.exit(0);
