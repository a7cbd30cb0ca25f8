// The command table that lets `tsrun run` load only the run group: every name in it must be
// what the group registers, and every registered command must be found through it.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { COMMAND_GROUPS, SHARED_PARENTS, groupsFor, registerGroups } from "../../src/cli/groups.js";
import { newProgram } from "../../src/cli/program.js";

const topLevelNames = (program: ReturnType<typeof newProgram>): string[] =>
  program.commands.flatMap((c) => [c.name(), ...c.aliases()]).filter((n) => !SHARED_PARENTS.includes(n)).sort();

describe("command groups", () => {
  it("lists exactly the top-level commands each group registers", async () => {
    for (const group of COMMAND_GROUPS) {
      const program = newProgram();
      await registerGroups(program, [group]);
      expect(topLevelNames(program)).toEqual([...group.commands].sort());
    }
  });

  it("finds every command of the full program through its group, none twice", async () => {
    const program = newProgram();
    await registerGroups(program, COMMAND_GROUPS);
    const all = COMMAND_GROUPS.flatMap((g) => g.commands);
    expect(new Set(all).size).toBe(all.length);
    expect(topLevelNames(program)).toEqual([...all].sort());
    // The shared parents exist, with their subcommands.
    for (const parent of SHARED_PARENTS) expect(program.commands.find((c) => c.name() === parent)?.commands.length).toBeGreaterThan(0);
    // Docker's management command has every container command, with its aliases.
    const container = program.commands.find((c) => c.name() === "container");
    const names = container?.commands.flatMap((c) => [c.name(), ...c.aliases()]) ?? [];
    for (const name of ["run", "create", "ls", "list", "ps", "rm", "remove", "inspect", "exec", "logs", "stop", "start", "kill", "prune", "commit", "export", "diff", "stats", "update"]) expect(names).toContain(name);
    // And Docker's image management command has every image command.
    const image = program.commands.find((c) => c.name() === "image");
    const imageNames = image?.commands.flatMap((c) => [c.name(), ...c.aliases()]) ?? [];
    for (const name of ["build", "history", "import", "inspect", "load", "ls", "list", "prune", "pull", "push", "rm", "remove", "save", "tag"]) expect(imageNames).toContain(name);
  });

  it("bin/tsrun loads the run-only bundle for exactly the run group's commands", () => {
    const launcher = readFileSync(new URL("../../bin/tsrun", import.meta.url), "utf8");
    const words = [...launcher.matchAll(/first === "([a-z]+)"/g)].map((m) => m[1]);
    expect(words.sort()).toEqual([...(COMMAND_GROUPS[0]?.commands ?? [])].sort());
  });

  it("loads one group for a command, none for the version, all for help or an unknown word", () => {
    expect(groupsFor(["node", "tsrun", "run", "--rm", "busybox"]).map((g) => g.commands[0])).toEqual(["run"]);
    expect(groupsFor(["node", "tsrun", "ps", "-a"]).map((g) => g.commands[0])).toEqual(["cp"]);
    expect(groupsFor(["node", "tsrun", "--version"])).toEqual([]);
    expect(groupsFor(["node", "tsrun", "--help"])).toBe(COMMAND_GROUPS);
    expect(groupsFor(["node", "tsrun", "image", "ls"])).toBe(COMMAND_GROUPS);
    expect(groupsFor(["node", "tsrun", "nosuchcommand"])).toBe(COMMAND_GROUPS);
  });
});
