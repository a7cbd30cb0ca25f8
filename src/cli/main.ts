// The command line: commander wiring only. Each command group lives in its own file with a
// register function (loaded on demand, src/cli/groups.ts); commands call the library API
// (src/tsrun.ts) and format its result. Errors become one line on stderr with Docker's exit codes.
import { groupsFor, registerGroups } from "./groups.js";
import { exitOnError, newProgram, runProgram } from "./program.js";

const program = newProgram();
registerGroups(program, groupsFor(process.argv)).then(() => runProgram(program, process.argv), exitOnError);
