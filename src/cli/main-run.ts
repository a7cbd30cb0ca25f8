// The CLI for `tsrun run` and `tsrun create` alone, bundled on its own (dist/tsrun-run.cjs):
// bin/tsrun loads it for those two commands, so the most latency-sensitive command reads and
// compiles less than half the code. It must behave exactly as main.ts does for these commands,
// which registers the same group for them (groups.ts).
import { registerRun } from "./run.js";
import { newProgram, runProgram } from "./program.js";

const program = newProgram();
registerRun(program);
runProgram(program, process.argv);
