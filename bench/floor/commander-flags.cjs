// The commander floor: what loading commander and parsing one `run` command line cost, with
// nothing of tsrun: 110 options as Docker's `run` has (tsrun registers as many), one parse.
// bench/startup-floor.sh bundles it (esbuild, as tsrun's CLI) and runs it through a V8 code
// cache (cached.cjs), as bin/tsrun runs its bundle. Stock commander: tsrun's bundle also indexes
// the options (scripts/bundle.mjs), so this is slightly slower than what tsrun pays.
"use strict";
const { Command } = require("commander");

const program = new Command("tsrun").exitOverride();
const run = program.command("run").argument("<image>").argument("[command...]");
for (let i = 0; i < 110; i++) run.option(`--option-number-${i} <value>`, `what option ${i} does, in a line of help`);
run.action(() => undefined);
program.parse(["node", "tsrun", "run", "--option-number-3", "x", "busybox", "true"]);
