// Container lifecycle commands: create, start, ps, logs, stop, kill, rm, wait, restart.
import { Option, type Command } from "commander";
import { Tsrun } from "../tsrun.js";
import type { ContainerRecord } from "../container/records.js";
import type { ContainerSize } from "../container/size.js";
import type { ContainerStats } from "../container/stats.js";
import { filterContainers, stateWord } from "../container/filters.js";
import { killContainer, pauseContainer, readLogs, type LogRecord, removeContainer, renameContainer, restartContainer, stopContainer, unpauseContainer, waitContainer } from "../container/lifecycle.js";
import { NotFoundError, TsrunError } from "../errors.js";
import { execInContainer } from "../container/exec.js";
import { updateContainer, type UpdateOptions } from "../container/update.js";
import { topLines } from "../container/top.js";
import { formatPort } from "../network/ports.js";
import { copyFromContainer, copyToContainer, splitContainerPath } from "../container/copy.js";
import { ago, bytesSize, formatRows, goTimeString, humanDuration, humanSize, labelHeader, labelsColumn } from "./output.js";
import { familiarRepository, splitName } from "../image/reference.js";
import { addResourceOptions, collect, parseBoolFlag } from "./util.js";
import { parseTimeArgument } from "../format/duration.js";
import { signalNumber } from "../format/signal.js";
import { attachContainer, parseDetachKeys, startAttached } from "../container/attach.js";
import { writeOut } from "./stdout.js";

/** Docker's STATUS column: "Up 3 seconds", "Exited (0) 5 seconds ago", "Created". */
export function statusText(r: ContainerRecord, now = Date.now()): string {
  switch (r.state.status) {
    case "running": {
      const health = r.state.health ? ` (${r.state.health.Status === "starting" ? "health: starting" : r.state.health.Status})` : "";
      if (r.state.restarting) return `Restarting (${r.state.exitCode}) ${ago(r.state.finishedAt, now)}`;
      if (r.state.paused) return `Up ${humanDuration(now - Date.parse(r.state.startedAt))} (Paused)`;
      return `Up ${humanDuration(now - Date.parse(r.state.startedAt))}${health}`;
    }
    case "exited":
      return `Exited (${r.state.exitCode}) ${ago(r.state.finishedAt, now)}`;
    default:
      return "Created";
  }
}

function imageColumn(r: ContainerRecord): string {
  if (r.imageName.startsWith("sha256:")) return r.imageName.slice(7, 19);
  const { repository, tag } = splitName(r.imageName);
  const repo = familiarRepository(repository);
  return tag === "latest" ? repo : `${repo}:${tag}`;
}

function commandColumn(r: ContainerRecord, trunc: boolean): string {
  const full = [r.path, ...r.args].join(" ");
  return `"${trunc && full.length > 20 ? `${full.slice(0, 19)}…` : full}"`;
}

/** Docker's PORTS column: "0.0.0.0:8080->80/tcp, ...". */
function portsColumn(r: ContainerRecord): string {
  if (r.state.status !== "running") return "";
  return (r.hostConfig.portBindings ?? []).map((p) => `${p.hostIp || "0.0.0.0"}:${p.hostPort}->${p.containerPort}/${p.protocol}`).join(", ");
}

interface PsFlags {
  all: boolean;
  quiet: boolean;
  last?: string;
  latest: boolean;
  trunc: boolean;
  filter: string[];
  format?: string;
  size: boolean;
}

const PS_HEADERS = {
  ID: "CONTAINER ID",
  Image: "IMAGE",
  Command: "COMMAND",
  CreatedAt: "CREATED AT",
  RunningFor: "CREATED",
  Ports: "PORTS",
  State: "STATE",
  Status: "STATUS",
  Size: "SIZE",
  Names: "NAMES",
  Labels: "LABELS",
  Mounts: "MOUNTS",
  Networks: "NETWORKS",
  LocalVolumes: "LOCAL VOLUMES",
  Label: labelHeader,
};

const PS_DEFAULT_FORMAT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";


/** One `ps` row with the fields docker/cli's container formatter has (keys sorted, as its json prints them). */
function psRow(r: ContainerRecord, trunc: boolean, size?: ContainerSize): Record<string, unknown> {
  const mounts = r.hostConfig.mounts.filter((m) => m.type !== "tmpfs");
  const row = {
    Command: commandColumn(r, trunc),
    // A getter: the zone name needs ICU, slow on first use, and most formats do not show it.
    get CreatedAt(): string {
      return goTimeString(r.created);
    },
    ID: trunc ? r.id.slice(0, 12) : r.id,
    Image: imageColumn(r),
    Labels: labelsColumn(r.config.labels),
    LocalVolumes: String(mounts.filter((m) => m.type === "volume").length),
    Mounts: mounts.map((m) => (trunc && m.source.length > 15 ? `${m.source.slice(0, 14)}…` : m.source)).join(","),
    Names: r.name,
    // The private network is what Docker calls its default bridge.
    Networks: ["private", "bridge", "default", ""].includes(r.hostConfig.networkMode) ? "bridge" : r.hostConfig.networkMode,
    Ports: portsColumn(r),
    RunningFor: ago(r.created),
    Size: sizeColumn(size),
    State: stateWord(r),
    Status: statusText(r),
  };
  // A method, as docker/cli's {{.Label "KEY"}}: not enumerable, so `json` leaves it out.
  Object.defineProperty(row, "Label", { value: (name: string): string => r.config.labels[name] ?? "", enumerable: false });
  return row;
}

/** docker/cli's SIZE: "12B (virtual 2.14MB)", or "0B" when sizes were not asked for. */
function sizeColumn(size: ContainerSize | undefined): string {
  if (!size) return "0B";
  const rw = humanSize(size.sizeRw);
  return size.sizeRootFs > 0 ? `${rw} (virtual ${humanSize(size.sizeRootFs)})` : rw;
}

async function psCommand(o: PsFlags): Promise<void> {
  const t = new Tsrun();
  let list = t.containers.list().sort((a, b) => b.created.localeCompare(a.created));
  if (o.last !== undefined && !/^-?\d+$/.test(o.last)) throw new TsrunError(`invalid argument "${o.last}" for "-n, --last": a number`);
  const last = o.last === undefined ? -1 : Number(o.last);
  const limit = last > 0 ? last : o.latest ? 1 : 0;
  // Docker's rule: stopped containers too with -a, -n/-l, or a status, before or since filter.
  const keys = new Set(o.filter.map((f) => f.slice(0, Math.max(0, f.indexOf("="))).toLowerCase()));
  if (!o.all && limit === 0 && !["status", "before", "since"].some((k) => keys.has(k))) list = list.filter((r) => r.state.status === "running");
  list = filterContainers(list, o.filter, {
    all: t.containers.list(),
    findImage: (ref) => {
      const image = t.store.images.find(ref);
      return image && { id: image.id, layers: image.layers.map((l) => l.chainId) };
    },
    imageExposedPorts: (r) => Object.keys(t.containers.imageConfigOf(r)?.config?.ExposedPorts ?? {}),
  });
  if (limit > 0) list = list.slice(0, limit);
  const id = (r: ContainerRecord): string => (o.trunc ? r.id.slice(0, 12) : r.id);
  if (o.quiet) {
    for (const r of list) writeOut(`${id(r)}\n`);
    return;
  }
  // As docker/cli: -s adds the SIZE column to the table; a format that shows .Size computes it too.
  const format = o.format && o.format !== "table" ? o.format : o.size ? `${PS_DEFAULT_FORMAT}\t{{.Size}}` : PS_DEFAULT_FORMAT;
  // ({{json .}} and json print every field, .Size included.)
  const sizes = o.size || /\.Size\b|json\s+\.\s*}}/.test(format) || format === "json" ? await t.containerSizes(list) : undefined;
  writeOut(formatRows(format, list.map((r) => psRow(r, o.trunc, sizes?.get(r.id))), PS_HEADERS));
}

const STATS_HEADERS = {
  Container: "CONTAINER",
  Name: "NAME",
  ID: "CONTAINER ID",
  CPUPerc: "CPU %",
  MemUsage: "MEM USAGE / LIMIT",
  MemPerc: "MEM %",
  NetIO: "NET I/O",
  BlockIO: "BLOCK I/O",
  PIDs: "PIDS",
};

const STATS_DEFAULT_FORMAT = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

/** One `stats` row with docker/cli's fields; `asked` is how the user named the container. */
function statsRow(s: ContainerStats, asked: string | undefined, trunc: boolean): Record<string, unknown> {
  return {
    BlockIO: `${humanSize(s.blockRead)} / ${humanSize(s.blockWrite)}`,
    CPUPerc: `${s.cpuPercent.toFixed(2)}%`,
    Container: asked ?? (trunc ? s.id.slice(0, 12) : s.id),
    ID: trunc ? s.id.slice(0, 12) : s.id,
    MemPerc: `${(s.memoryLimit > 0 ? (s.memoryUsage / s.memoryLimit) * 100 : 0).toFixed(2)}%`,
    MemUsage: `${bytesSize(s.memoryUsage)} / ${bytesSize(s.memoryLimit)}`,
    Name: s.name,
    NetIO: `${humanSize(s.netRx)} / ${humanSize(s.netTx)}`,
    PIDs: String(s.pids),
  };
}

async function statsCommand(names: string[], o: { all: boolean; stream: boolean; trunc: boolean; format?: string }): Promise<void> {
  const t = new Tsrun();
  const format = o.format && o.format !== "table" ? o.format : STATS_DEFAULT_FORMAT;
  // Named containers are looked up once (an unknown one is an error before anything is shown).
  const named = names.map((n) => ({ asked: n, id: t.containers.get(n).id }));
  const pick = (): { record: ContainerRecord; asked: string | undefined }[] =>
    named.length > 0
      ? named.map((n) => ({ record: t.containers.get(n.id), asked: n.asked }))
      : t.containers
          .list()
          .filter((r) => o.all || r.state.status === "running")
          .sort((a, b) => b.created.localeCompare(a.created))
          .map((record) => ({ record, asked: undefined }));
  for (;;) {
    const chosen = pick();
    const stats = await t.containerStats(chosen.map((c) => c.record), 1000);
    const text = formatRows(format, stats.map((s, i) => statsRow(s, chosen[i]?.asked, o.trunc)), STATS_HEADERS);
    if (!o.stream) {
      writeOut(text);
      return;
    }
    // Docker's live view: the screen cleared, the table redrawn every second, until interrupted.
    writeOut(`\x1b[2J\x1b[H${text}`);
  }
}

/**
 * Runs fn for each container named, as docker/cli does for stop, kill, wait...: a failure is
 * reported and the others still get their turn; the command then fails (125).
 */
async function eachContainer(names: string[], fn: (name: string) => void | Promise<void>): Promise<void> {
  let failed = false;
  for (const name of names) {
    try {
      await fn(name);
    } catch (err) {
      if (!(err instanceof TsrunError)) throw err;
      process.stderr.write(`Error: ${err.message}\n`);
      failed = true;
    }
  }
  if (failed) process.exit(125);
}

function detailsPrefix(attrs: Record<string, string> | undefined): string {
  return labelsColumn(attrs ?? {});
}

/** stop/restart -t: whole seconds (a negative number waits forever, as in Docker); undefined without -t. */
function stopTime(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw new TsrunError(`invalid --timeout "${value}": a number of seconds`);
  return Number(value);
}

export function registerContainers(program: Command): void {
  program
    .command("cp")
    .description("Copy files between a container and the host (CONTAINER:PATH, host path, or - for a tar stream)")
    .argument("<src>")
    .argument("<dest>")
    .option("-a, --archive", "keep uid/gid information", false)
    .option("-L, --follow-link", "follow a symbolic link in the source path", false)
    .addOption(new Option("-q, --quiet", "accepted: cp prints nothing on success").hideHelp())
    .action(async (src: string, dest: string, o: { archive: boolean; followLink: boolean }) => {
      const from = splitContainerPath(src);
      const to = splitContainerPath(dest);
      const t = new Tsrun();
      if (from && !to) await copyFromContainer(t.containers, from.container, from.path, dest, { follow: o.followLink });
      else if (to && !from) await copyToContainer(t.containers, src, to.container, to.path, { archive: o.archive, follow: o.followLink });
      else throw new TsrunError("cp: exactly one of the source and the destination must be CONTAINER:PATH");
    });

  program
    .command("exec")
    .description("Run a command in a running container")
    .argument("<container>")
    .argument("<command...>")
    .helpOption("--help")
    .option("-i, --interactive", "keep standard input open", false)
    .option("-t, --tty", "allocate a pseudo-terminal", false)
    .option("-d, --detach", "run the command in the background", false)
    .option("-e, --env <KEY=VALUE>", "set an environment variable", collect, [])
    .option("--env-file <file>", "read environment variables from a file", collect, [])
    .option("-w, --workdir <dir>", "working directory inside the container")
    .option("-u, --user <user[:group]>", "user name or uid, optionally with group")
    .option("--privileged", "give the command every capability", false)
    .passThroughOptions()
    .action(async (name: string, command: string[], o: { interactive: boolean; tty: boolean; detach: boolean; env: string[]; envFile: string[]; workdir?: string; user?: string; privileged: boolean }) => {
      const { envFile, ...rest } = o;
      process.exit(await execInContainer(new Tsrun().containers, name, { command, ...rest, envFiles: envFile }));
    });

  program
    .command("ps")
    .description("List containers")
    .option("-a, --all", "show all containers (default shows just running)", false)
    .option("-q, --quiet", "only display container IDs", false)
    .option("-n, --last <n>", "show n last created containers")
    .option("-l, --latest", "show the latest created container", false)
    .option("--no-trunc", "do not truncate output")
    .option("-f, --filter <filter>", "filter output (id, name, label, exited, status, health, ancestor, before, since, volume, network, publish, expose)", collect, [])
    .option("--format <format>", "format output: table, json, or a Go template (fields ID, Image, Command, CreatedAt, RunningFor, Ports, State, Status, Size, Names, Labels, Mounts, Networks, LocalVolumes)")
    .option("-s, --size", "display total file sizes", false)
    .action((o: PsFlags) => psCommand(o));

  program
    .command("port")
    .description("List a container's published ports")
    .argument("<container>")
    .argument("[private-port]")
    .action((name: string, privatePort?: string) => {
      const record = new Tsrun().containers.get(name);
      let list = record.hostConfig.portBindings ?? [];
      if (privatePort) {
        const [p, proto] = privatePort.split("/");
        list = list.filter((m) => m.containerPort === Number(p) && m.protocol === (proto ?? "tcp"));
        if (list.length === 0) throw new TsrunError(`no public port '${proto ? privatePort : `${privatePort}/tcp`}' published for ${name}`);
        for (const m of list) writeOut(`${m.hostIp || "0.0.0.0"}:${m.hostPort}\n`);
        return;
      }
      for (const m of list) writeOut(`${formatPort(m)}\n`);
    });

  addResourceOptions(program.command("update"))
    .description("Update the restart policy and resource limits of containers")
    .argument("<container...>")
    .option("--restart <policy>", "restart policy: no, always, unless-stopped, on-failure[:N]")
    .action(async (names: string[], o: UpdateOptions) => {
      if (Object.values(o).every((v) => v === undefined)) throw new TsrunError("you must provide one or more flags when using this command");
      const t = new Tsrun();
      await eachContainer(names, async (name) => {
        await updateContainer(t.containers, name, o);
        writeOut(`${name}\n`);
      });
    });

  program
    .command("rename")
    .description("Rename a container")
    .argument("<container>")
    .argument("<new-name>")
    .action(async (name: string, newName: string) => {
      await renameContainer(new Tsrun().containers, name, newName);
    });

  program
    .command("top")
    .description("Display the running processes of a container (ps options may follow)")
    .argument("<container>")
    .argument("[ps-options...]")
    .helpOption("--help")
    .allowUnknownOption()
    .passThroughOptions()
    .action((name: string, psOptions: string[]) => {
      const t = new Tsrun();
      const record = t.containers.get(name);
      if (record.state.status !== "running") throw new TsrunError(`container ${name} is not running`);
      writeOut(topLines(record.state.pid, psOptions));
    });

  program
    .command("attach")
    .description("Attach your terminal's input and output to a running container (detach with ctrl-p,ctrl-q)")
    .argument("<container>")
    .option("--no-stdin", "do not attach stdin")
    .option("--detach-keys <keys>", "the key sequence that detaches", "ctrl-p,ctrl-q")
    .option("--sig-proxy [bool]", "proxy received signals to the process (non-tty)", parseBoolFlag, true)
    .action(async (name: string, o: { stdin: boolean; detachKeys: string; sigProxy: boolean }) => {
      const t = new Tsrun();
      const status = await attachContainer(t.containers, name, { stdin: o.stdin, detachKeys: o.detachKeys, sigProxy: o.sigProxy });
      process.exit(status === "detached" ? 0 : status);
    });

  program
    .command("start")
    .description("Start one or more created or stopped containers")
    .argument("<container...>")
    .option("-a, --attach", "attach to the output and return the exit status", false)
    .option("-i, --interactive", "attach stdin", false)
    .option("--detach-keys <keys>", "the key sequence that detaches", "ctrl-p,ctrl-q")
    .action(async (names: string[], o: { attach: boolean; interactive: boolean; detachKeys: string }) => {
      const t = new Tsrun();
      const attach = o.attach || o.interactive;
      if (attach && names.length > 1) throw new TsrunError("you cannot start and attach multiple containers at once");
      if (!attach) {
        // As docker/cli: each container gets its turn; those that failed are named at the end.
        const failed: string[] = [];
        for (const name of names) {
          try {
            const record = t.containers.get(name);
            if (record.state.status !== "running") await t.containers.startDetached(record);
            writeOut(`${name}\n`);
          } catch (err) {
            // One container: its error alone, with its status (126 or 127 when its command could not run).
            if (!(err instanceof TsrunError) || names.length === 1) throw err;
            process.stderr.write(`Error: ${err.message}\n`);
            failed.push(name);
          }
        }
        if (failed.length > 0) throw new TsrunError(`failed to start containers: ${failed.join(", ")}`);
        return;
      }
      parseDetachKeys(o.detachKeys);
      for (const name of names) {
        const record = t.containers.get(name);
        if (record.state.status === "running") continue;
        if (record.config.tty && o.interactive && record.config.openStdin && !process.stdin.isTTY) throw new TsrunError("the input device is not a TTY", 1);
        // The monitor waits for us before the container starts: no output is missed.
        const status = await startAttached(t.containers, record, { stdin: o.interactive, detachKeys: o.detachKeys, closeStdinOnEnd: true });
        process.exit(status === "detached" ? 0 : status);
      }
    });

  program
    .command("logs")
    .description("Fetch the logs of a container")
    .argument("<container>")
    .option("-f, --follow", "follow log output", false)
    .option("-n, --tail <n>", "number of lines to show from the end", "all")
    .option("-t, --timestamps", "show timestamps", false)
    .option("--since <time>", "show logs since a timestamp or relative time (e.g. 10m)")
    .option("--until <time>", "show logs before a timestamp or relative time (e.g. 10m)")
    .option("--details", "show the extra attributes of each line (json-file's attrs) before it", false)
    .action(async (name: string, o: { follow: boolean; tail: string; timestamps: boolean; since?: string; until?: string; details: boolean }) => {
      // As Docker's daemon reads it: "all", or a number (a negative one means all).
      const tail = o.tail === "all" || /^-\d+$/.test(o.tail) ? undefined : Number(o.tail);
      if (tail !== undefined && !(/^\d+$/.test(o.tail) && Number.isSafeInteger(tail))) throw new TsrunError(`invalid --tail value "${o.tail}": a number of lines, or all`);
      // Records are gathered and written in large pieces: a write per line made a log of
      // millions of lines take seconds of system time. The order across streams is kept.
      let pending: string[] = [];
      let pendingSize = 0;
      let pendingStream = "stdout";
      const flush = (): void => {
        if (pending.length > 0) (pendingStream === "stderr" ? process.stderr : process.stdout).write(pending.join(""));
        pending = [];
        pendingSize = 0;
      };
      const opts = {
        follow: o.follow,
        onRecord: (r: LogRecord) => {
          if (r.stream !== pendingStream || pendingSize >= 1 << 16) flush();
          pendingStream = r.stream;
          // Docker's --details: the record's attributes (KEY=VALUE, sorted, comma-separated) and a space.
          const line = o.details ? `${detailsPrefix(r.attrs)} ${r.log}` : r.log;
          const text = o.timestamps ? `${r.time} ${line}` : line;
          pending.push(text);
          pendingSize += text.length;
        },
        onBatchEnd: flush,
        ...(tail !== undefined ? { tail } : {}),
        ...(o.since ? { since: parseTimeArgument(o.since, "--since") } : {}),
        ...(o.until ? { until: parseTimeArgument(o.until, "--until") } : {}),
      };
      await readLogs(new Tsrun().containers, name, opts);
    });

  for (const [verb, description, fn] of [
    ["stop", "Stop running containers (STOPSIGNAL, then SIGKILL after the timeout)", stopContainer],
    ["restart", "Restart containers", restartContainer],
  ] as const) {
    program
      .command(verb)
      .description(description)
      .argument("<container...>")
      .option("-t, --timeout <seconds>", "seconds to wait before killing (default: the container's --stop-timeout, else 10)")
      // docker/cli's older name (still Podman's).
      .addOption(new Option("--time <seconds>", "same as --timeout").hideHelp())
      .option("-s, --signal <signal>", "signal to stop the container with (default: its --stop-signal or STOPSIGNAL, else SIGTERM)")
      .action(async (names: string[], o: { timeout?: string; time?: string; signal?: string }) => {
        const t = new Tsrun();
        const timeout = stopTime(o.timeout ?? o.time);
        // A bad signal is refused before any container is touched.
        if (o.signal !== undefined) signalNumber(o.signal);
        await eachContainer(names, async (name) => {
          await fn(t.containers, name, timeout, o.signal);
          writeOut(`${name}\n`);
        });
      });
  }

  for (const [verb, description, fn] of [
    ["pause", "Pause all processes within containers", pauseContainer],
    ["unpause", "Unpause all processes within containers", unpauseContainer],
  ] as const) {
    program
      .command(verb)
      .description(description)
      .argument("<container...>")
      .action(async (names: string[]) => {
        const t = new Tsrun();
        await eachContainer(names, (name) => {
          fn(t.containers, name);
          writeOut(`${name}\n`);
        });
      });
  }

  program
    .command("kill")
    .description("Send a signal to running containers")
    .argument("<container...>")
    .option("-s, --signal <signal>", "signal to send", "SIGKILL")
    .action(async (names: string[], o: { signal: string }) => {
      const t = new Tsrun();
      await eachContainer(names, (name) => {
        killContainer(t.containers, name, o.signal);
        writeOut(`${name}\n`);
      });
    });

  program
    .command("rm")
    .description("Remove containers")
    .argument("<container...>")
    .option("-f, --force", "kill a running container first", false)
    .option("-v, --volumes", "remove anonymous volumes too", false)
    .action(async (names: string[], o: { force: boolean; volumes: boolean }) => {
      const t = new Tsrun();
      let failed = false;
      for (const name of names) {
        try {
          await removeContainer(t.containers, name, o.force, o.volumes);
          writeOut(`${name}\n`);
        } catch (err) {
          process.stderr.write(`Error: ${(err as Error).message}\n`);
          // docker rm -f: a container that does not exist is reported but does not fail the command.
          if (!(o.force && err instanceof NotFoundError)) failed = true;
        }
      }
      if (failed) process.exit(1);
    });

  program
    .command("stats")
    .description("Display a live stream of containers' resource usage (from /proc: see README)")
    .argument("[container...]")
    .option("-a, --all", "all containers (default shows just running)", false)
    .option("--no-stream", "print the first result only")
    .option("--no-trunc", "do not truncate output")
    .option("--format <format>", "format output: table, json, or a Go template (fields Container, Name, ID, CPUPerc, MemUsage, MemPerc, NetIO, BlockIO, PIDs)")
    .action((names: string[], o: { all: boolean; stream: boolean; trunc: boolean; format?: string }) => statsCommand(names, o));

  program
    .command("wait")
    .description("Block until containers stop, then print their exit codes")
    .argument("<container...>")
    .action(async (names: string[]) => {
      const t = new Tsrun();
      await eachContainer(names, async (name) => {
        writeOut(`${await waitContainer(t.containers, name)}\n`);
      });
    });

}
