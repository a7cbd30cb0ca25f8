// Which file registers which commands, so that a command line loads only the group it needs:
// `tsrun run ...` loads the run group and what it uses, not the image, build or registry code
// (the bundle is one file, but esbuild defers the top-level code of modules reached only through
// import()). Help, an unknown word and the `image`/`container` parents, which several groups add
// to, load every group.
import type { Command } from "commander";

type Register = (program: Command) => void;

interface CommandGroup {
  /** Top-level command names (and aliases) the group registers. */
  commands: string[];
  load(): Promise<Register[]>;
  /** What the group also adds under `container` (Docker's management command: `container run`, `container ls`, ...). */
  containerCommands?(): Promise<Register[]>;
  /** What the group also adds under `image` (`image pull`, `image save`, `image build`, ...). */
  imageCommands?(): Promise<Register[]>;
}

/** Every group; test/unit/cli-groups.test.ts checks the names against what each group registers. */
export const COMMAND_GROUPS: CommandGroup[] = [
  { commands: ["run", "create"], load: async () => [(await import("./run.js")).registerRun], containerCommands: async () => [(await import("./run.js")).registerRun] },
  {
    commands: ["import", "images", "inspect", "history", "rmi", "tag"],
    load: async () => [(await import("./images.js")).registerImages],
    containerCommands: async () => [(await import("./images.js")).registerContainerInspect],
  },
  {
    commands: ["cp", "exec", "ps", "port", "rename", "top", "attach", "start", "logs", "stop", "restart", "pause", "unpause", "kill", "rm", "wait", "stats", "update"],
    load: async () => [(await import("./containers.js")).registerContainers],
    containerCommands: async () => [(await import("./containers.js")).registerContainers],
  },
  { commands: ["volume"], load: async () => [(await import("./volumes.js")).registerVolumes] },
  {
    commands: ["commit", "export", "diff"],
    load: async () => [(await import("./containers-image.js")).registerContainerImages],
    containerCommands: async () => [(await import("./containers-image.js")).registerContainerImages],
  },
  {
    commands: ["pull", "push", "login", "logout"],
    load: async () => [(await import("./registry.js")).registerRegistry],
    imageCommands: async () => [(await import("./registry.js")).registerPullPush],
  },
  { commands: ["save", "load"], load: async () => [(await import("./archive.js")).registerArchive], imageCommands: async () => [(await import("./archive.js")).registerArchive] },
  {
    commands: ["build", "builder"],
    load: async () => {
      const m = await import("./build.js");
      return [m.registerBuild, m.registerBuilder];
    },
    imageCommands: async () => [(await import("./build.js")).registerBuild],
  },
  { commands: ["system", "info", "version"], load: async () => [(await import("./system.js")).registerSystem] },
  { commands: ["network"], load: async () => [(await import("./networks.js")).registerNetworks] },
];

/** Parents that several groups add subcommands to: a command line naming one loads every group. */
export const SHARED_PARENTS = ["image", "container"];

/** The groups a command line needs: the one owning its first word, none for the version, else all. */
export function groupsFor(argv: string[]): CommandGroup[] {
  const args = argv.slice(2);
  const word = args.find((a) => !a.startsWith("-"));
  if (word === undefined && (args.includes("-v") || args.includes("--version"))) return [];
  const owner = word === undefined ? undefined : COMMAND_GROUPS.find((g) => g.commands.includes(word));
  return owner ? [owner] : COMMAND_GROUPS;
}

/** Registers the groups in their fixed order, so help lists commands the same way every time. */
export async function registerGroups(program: Command, groups: CommandGroup[]): Promise<void> {
  const loaded = await Promise.all(groups.map((g) => g.load()));
  for (const registers of loaded) for (const register of registers) register(program);
  // The `container` subcommands only when every group is loaded, which `container ...` does:
  // a plain `tsrun run` does not build them.
  if (groups === COMMAND_GROUPS) {
    await registerContainerCommands(program, groups);
    await registerImageCommands(program, groups);
  }
}

/** `image pull|push|save|load|build`: those commands again under Docker's management command. */
async function registerImageCommands(program: Command, groups: CommandGroup[]): Promise<void> {
  const parent = program.commands.find((c) => c.name() === "image") ?? program.command("image").description("Manage images");
  const loaded = await Promise.all(groups.map((g) => g.imageCommands?.() ?? Promise.resolve([])));
  for (const registers of loaded) for (const register of registers) register(parent);
}

/** `container run|ls|rm|inspect|...`: the container commands again under Docker's management command, with its aliases. */
async function registerContainerCommands(program: Command, groups: CommandGroup[]): Promise<void> {
  const parent = program.commands.find((c) => c.name() === "container") ?? program.command("container").description("Manage containers");
  const loaded = await Promise.all(groups.map((g) => g.containerCommands?.() ?? Promise.resolve([])));
  for (const registers of loaded) for (const register of registers) register(parent);
  const sub = (name: string): Command | undefined => parent.commands.find((c) => c.name() === name);
  sub("ps")?.aliases(["ls", "list"]);
  sub("rm")?.alias("remove");
}
