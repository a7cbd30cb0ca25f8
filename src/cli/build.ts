// `tsrun build`, with docker build's flags and Podman's progress lines (STEP n/N, RUN output as
// it comes, "--> Using cache", COMMIT, the image ID last). Build failures exit with status 1, as
// docker build does; bad flags with 125.
import { Option, type Command } from "commander";
import { readFileSync, writeFileSync } from "node:fs";
import { Tsrun } from "../tsrun.js";
import { TsrunError } from "../errors.js";
import { hostPlatform } from "../image/types.js";
import { isHostPlatform } from "../image/platform-spec.js";
import { BuildError } from "../build/errors.js";
import { collect } from "./util.js";
import { parseSecurityFlags } from "../container/security/options.js";
import { checkResourceLimits } from "../container/security/cgroups.js";
import { parseLabels, parseShmSize } from "./run.js";
import { printer } from "./registry.js";
import { confirm } from "./util.js";
import { humanSize } from "./output.js";
import { pruneBuildCache } from "../image/remove.js";
import { tagName } from "../image/commit.js";
import { writeOut } from "./stdout.js";

interface BuildFlags {
  tag: string[];
  file?: string;
  buildArg: string[];
  cache: boolean;
  target?: string;
  label: string[];
  quiet: boolean;
  network: "private" | "bridge" | "pasta" | "default" | "none" | "host";
  pull: string | boolean;
  tlsVerify?: string;
  iidfile?: string;
  secret: string[];
  buildContext: string[];
  platform?: string;
  progress?: string;
  load: boolean;
  cacheFrom: string[];
  cacheTo: string[];
  output?: string;
  addHost: string[];
  ulimit: string[];
  securityOpt: string[];
  memory?: string;
  memorySwap?: string;
  cpuShares?: string;
  cpuPeriod?: string;
  cpuQuota?: string;
  cpusetCpus?: string;
  cpusetMems?: string;
  shmSize?: string;
  push: boolean;
  metadataFile?: string;
  provenance?: string | boolean;
  sbom?: string | boolean;
  ssh: string[];
  allow: string[];
  /** --no-cache-filter (commander names a --no- option after what follows it). */
  cacheFilter: string[];
}

/**
 * Flags CI scripts pass to docker build (or buildx) that ask for nothing tsrun would do
 * differently: accepted, so those scripts run. What cannot be honoured is an error.
 */
function checkDockerOnlyFlags(o: BuildFlags): void {
  if (o.platform !== undefined) {
    const host = hostPlatform();
    // buildx takes a list; any spelling of the host's platform (linux/amd64, amd64, x86_64) will do.
    const want = o.platform.split(",").map((p) => p.trim().replace(/\/$/, ""));
    let ok: boolean;
    try {
      ok = want.every((p) => isHostPlatform(p));
    } catch (err) {
      throw new TsrunError(`--platform ${o.platform}: ${(err as Error).message}`);
    }
    if (!ok) throw new TsrunError(`--platform ${o.platform}: only the build host's platform (${host.os}/${host.architecture}) can be built here`);
  }
  if (o.progress !== undefined && !["auto", "plain", "tty", "quiet", "rawjson"].includes(o.progress)) {
    throw new TsrunError(`invalid --progress "${o.progress}": expected auto, plain, tty, quiet or rawjson`);
  }
  if (o.output !== undefined) {
    const type = /(?:^|,)type=([^,]+)/.exec(o.output)?.[1] ?? (o.output.includes("=") ? undefined : "local");
    if (type !== "docker" && type !== "image" && type !== "registry") throw new TsrunError(`--output ${o.output}: only type=docker (the image in tsrun's store) and type=registry (pushed too) are supported`);
    // buildx's spellings of --push.
    if (type === "registry" || /(?:^|,)push=true(?:,|$)/.test(o.output)) o.push = true;
  }
  for (const entitlement of o.allow.flatMap((a) => a.split(","))) {
    // buildx's entitlements: RUN --network=host needs none here; RUN --security=insecure stays refused.
    if (entitlement !== "network.host" && entitlement !== "security.insecure") throw new TsrunError(`invalid --allow "${entitlement}": expected network.host or security.insecure`);
  }
  if (o.ssh.length > 0) throw new TsrunError(`--ssh ${o.ssh[0] ?? ""}: SSH agent forwarding is not supported yet (without --ssh, RUN --mount=type=ssh is skipped)`);
  for (const [flag, value] of [["--provenance", o.provenance], ["--sbom", o.sbom]] as const) {
    // Attestations go with a pushed index; an image kept in a local store has none (as with docker --load).
    if (value !== undefined && value !== false && value !== "false" && value !== "0") process.stderr.write(`tsrun: warning: ${flag}: no attestations are made, the image is built without them\n`);
  }
  if (o.cacheFrom.length > 0 || o.cacheTo.length > 0) {
    process.stderr.write("tsrun: warning: --cache-from and --cache-to are ignored: tsrun builds with its own local cache\n");
  }
}

/**
 * --secret id=ID[,src=FILE|,env=VAR][,type=file|env], as docker buildx reads it: a file, or an
 * environment variable of tsrun; with neither, the variable named ID, else the file named ID.
 */
function parseSecrets(list: string[]): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const item of list) {
    const fields = new Map<string, string>();
    for (const field of item.split(",")) {
      const eq = field.indexOf("=");
      if (eq <= 0) throw new TsrunError(`invalid --secret "${item}": expected id=ID,src=FILE or id=ID,env=VAR`);
      fields.set(field.slice(0, eq).toLowerCase(), field.slice(eq + 1));
    }
    for (const key of fields.keys()) {
      if (!["id", "src", "source", "env", "type"].includes(key)) throw new TsrunError(`invalid --secret "${item}": unknown field "${key}"`);
    }
    const id = fields.get("id");
    if (!id) throw new TsrunError(`invalid --secret "${item}": id is required`);
    const type = fields.get("type");
    if (type !== undefined && type !== "file" && type !== "env") throw new TsrunError(`invalid --secret "${item}": type must be file or env`);
    let file = fields.get("src") ?? fields.get("source");
    let env = fields.get("env");
    if (type === "env" && env === undefined) [env, file] = [file ?? id, undefined];
    if (file === undefined && env === undefined) {
      if (type !== "file" && process.env[id] !== undefined) env = id;
      else file = id;
    }
    if (env !== undefined) {
      const value = process.env[env];
      if (value === undefined) throw new TsrunError(`--secret ${id}: the environment variable ${env} is not set`);
      out[id] = Buffer.from(value);
    } else {
      try {
        out[id] = readFileSync(file as string);
      } catch (err) {
        throw new TsrunError(`--secret ${id}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
  }
  return out;
}

/** --build-arg K=V, or K alone for the value in tsrun's environment (skipped when unset). */
function parseBuildArgs(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf("=");
    const key = eq < 0 ? item : item.slice(0, eq);
    if (key === "") throw new TsrunError(`invalid --build-arg "${item}": expected KEY=VALUE`);
    if (eq >= 0) out[key] = item.slice(eq + 1);
    else if (process.env[key] !== undefined) out[key] = process.env[key] as string;
  }
  return out;
}

function pullPolicy(value: string | boolean): "missing" | "always" | "never" {
  if (value === true || value === "true" || value === "always") return "always";
  if (value === false || value === "false" || value === "missing") return "missing";
  if (value === "never") return "never";
  throw new TsrunError(`invalid --pull "${String(value)}": expected always, missing or never`);
}

/** SOURCE_DATE_EPOCH, from --build-arg (as BuildKit takes it) or the environment. */
function sourceDateEpoch(buildArgs: Record<string, string>): number | undefined {
  const raw = buildArgs.SOURCE_DATE_EPOCH ?? process.env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === "") return undefined;
  if (!/^\d+$/.test(raw)) throw new TsrunError(`invalid SOURCE_DATE_EPOCH "${raw}": expected seconds since the epoch`);
  return Number(raw);
}

async function buildCommand(context: string, o: BuildFlags): Promise<void> {
  checkDockerOnlyFlags(o);
  if (o.progress === "quiet") o.quiet = true;
  const buildArgs = parseBuildArgs(o.buildArg);
  const epoch = sourceDateEpoch(buildArgs);
  if (o.tlsVerify !== undefined && o.tlsVerify !== "true" && o.tlsVerify !== "false") throw new TsrunError(`invalid --tls-verify "${o.tlsVerify}": true or false`);
  const network = o.network === "bridge" || o.network === "pasta" || o.network === "default" ? "private" : o.network;
  const progress = printer(o.quiet);
  const out = (line: string): void => {
    writeOut(`${line}\n`);
  };
  let image;
  try {
    image = await new Tsrun().build({
      context,
      file: o.file,
      tags: o.tag,
      buildArgs,
      noCache: !o.cache,
      noCacheFilter: o.cacheFilter.flatMap((f) => f.split(",")).filter((f) => f !== ""),
      target: o.target,
      labels: parseLabels(o.label),
      quiet: o.quiet,
      network,
      pull: pullPolicy(o.pull),
      tlsVerify: o.tlsVerify === undefined ? undefined : o.tlsVerify === "true",
      sourceDateEpoch: epoch,
      secrets: parseSecrets(o.secret),
      buildContexts: o.buildContext,
      addHosts: o.addHost,
      ulimits: o.ulimit,
      ...(() => {
        const runSecurity = { securityOpt: o.securityOpt, memory: o.memory, memorySwap: o.memorySwap, cpuShares: o.cpuShares, cpuPeriod: o.cpuPeriod, cpuQuota: o.cpuQuota, cpusetCpus: o.cpusetCpus, cpusetMems: o.cpusetMems };
        // Checked before the build starts, as `run` checks them (a limit without delegation is one line).
        checkResourceLimits(parseSecurityFlags(runSecurity).resources);
        return { runSecurity };
      })(),
      ...(o.shmSize !== undefined ? { shmSize: parseShmSize(o.shmSize) } : {}),
      log: out,
      warn: (message) => process.stderr.write(`tsrun: warning: ${message}\n`),
      listener: progress,
    });
  } catch (err) {
    // Whatever stopped the build is the build's failure (status 1), unless it says otherwise.
    throw err instanceof TsrunError ? err : new BuildError((err as Error).message);
  } finally {
    progress.finish();
  }
  if (o.iidfile) writeFileSync(o.iidfile, image.id);
  // The names this build gave (the image may have older ones too).
  const names = o.tag.map((t) => tagName(t));
  if (o.push) {
    if (names.length === 0) throw new BuildError("--push: the image has no name to push to: give one with -t");
    const pushProgress = printer(o.quiet);
    try {
      for (const name of names) await new Tsrun().push({ image: name, tlsVerify: o.tlsVerify === undefined ? undefined : o.tlsVerify === "true", listener: pushProgress });
    } catch (err) {
      // The build's failure (status 1), as buildx reports a failed export.
      throw new BuildError(`--push: ${(err as Error).message}`);
    } finally {
      pushProgress.finish();
    }
  }
  if (o.metadataFile) {
    // What buildx writes there, for the scripts that read it (docker/build-push-action's outputs).
    const metadata = {
      "containerimage.config.digest": image.id,
      "containerimage.digest": image.manifest,
      ...(names.length > 0 ? { "image.name": names.join(",") } : {}),
    };
    writeFileSync(o.metadataFile, `${JSON.stringify(metadata, null, 2)}\n`);
  }
  out(image.id);
}

export function registerBuild(program: Command): void {
  program
    .command("build")
    .description("Build an image from a Dockerfile")
    .argument("[context]", "the build context: a directory, or - for a tar archive or a Dockerfile on standard input")
    .option("-t, --tag <name>", "name the image (repeatable)", collect, [])
    .option("-f, --file <file>", "the Dockerfile (default: CONTEXT/Dockerfile; - for standard input)")
    .option("--build-arg <KEY=VALUE>", "set a build-time variable (repeatable)", collect, [])
    .option("--no-cache", "do not use the build cache")
    .option("--no-cache-filter <stage>", "build these stages without the cache (repeatable, or comma-separated)", collect, [])
    .option("--target <stage>", "build this stage of a multi-stage Dockerfile")
    .option("--label <KEY=VALUE>", "set a label on the image (repeatable)", collect, [])
    .option("-q, --quiet", "print only the image ID", false)
    .addOption(new Option("--network <mode>", "network for RUN: private (default), none, host").choices(["private", "bridge", "pasta", "default", "none", "host"]).default("private"))
    .option("--pull [policy]", "pull base images: missing (default), always (--pull alone), never", "missing")
    .option("--tls-verify <bool>", "verify registry certificates when pulling (true or false)")
    .option("--iidfile <file>", "write the image ID to this file")
    .option("--secret <id=ID,src=FILE>", "a secret for RUN --mount=type=secret (src=FILE or env=VAR; repeatable)", collect, [])
    .option("--build-context <name=value>", "a named context: NAME=DIRECTORY or NAME=docker-image://IMAGE, for FROM NAME, --from=NAME and a stage NAME (repeatable)", collect, [])
    .option("--add-host <host:ip>", "add a line to /etc/hosts of RUN containers (repeatable)", collect, [])
    .option("--ulimit <name=soft[:hard]>", "resource limits for RUN containers (repeatable)", collect, [])
    .option("--security-opt <option>", "security options for RUN containers, as run takes them (repeatable)", collect, [])
    .option("-m, --memory <bytes>", "memory limit for RUN containers (needs cgroup v2 delegation)")
    .option("--memory-swap <bytes>", "memory plus swap for RUN containers (needs --memory and cgroup v2 delegation)")
    .option("-c, --cpu-shares <n>", "CPU weight for RUN containers (needs cgroup v2 delegation)")
    .option("--cpu-period <us>", "CFS period for RUN containers (needs cgroup v2 delegation)")
    .option("--cpu-quota <us>", "CFS quota for RUN containers (needs cgroup v2 delegation)")
    .option("--cpuset-cpus <list>", "CPUs RUN containers may use (needs cgroup v2 delegation)")
    .option("--cpuset-mems <list>", "memory nodes RUN containers may use (needs cgroup v2 delegation)")
    .addOption(new Option("--compress", "accepted: the context is not sent anywhere").hideHelp())
    .option("--platform <os/arch>", "the target platform (only the build host's)")
    .option("--progress <type>", "auto, plain, tty, quiet (as -q) or rawjson: tsrun always prints plain progress")
    .option("--load", "keep the image in the local store (always done)", false)
    .option("--cache-from <spec>", "accepted and ignored (tsrun uses its local build cache)", collect, [])
    .option("--cache-to <spec>", "accepted and ignored (tsrun uses its local build cache)", collect, [])
    .option("-o, --output <spec>", "only type=docker: the image goes into tsrun's store")
    .option("--shm-size <bytes>", "size of /dev/shm for RUN (64m by default)")
    .option("--push", "push the image to its registry once built (every -t name)", false)
    .option("--metadata-file <file>", "write the image's digests and names as JSON (as buildx does)")
    .option("--provenance [value]", "accepted; no attestations are made")
    .option("--sbom [value]", "accepted; no attestations are made")
    .option("--allow <entitlement>", "network.host or security.insecure (buildx's entitlements; accepted)", collect, [])
    .option("--ssh <spec>", "not supported yet (SSH agent forwarding)", collect, [])
    .addOption(new Option("--disable-content-trust", "accepted (images are not signed)").hideHelp())
    .addOption(new Option("--rm", "remove intermediate containers (always done)").hideHelp())
    .addOption(new Option("--force-rm", "remove intermediate containers (always done)").hideHelp())
    .action(async (context: string | undefined, o: BuildFlags) => {
      // `--pull .` is docker's boolean --pull before the context: the option took the context as its value.
      if (context === undefined && typeof o.pull === "string" && !["always", "missing", "never", "true", "false"].includes(o.pull)) {
        context = o.pull;
        o.pull = true;
      }
      if (context === undefined) throw new TsrunError('"tsrun build" requires exactly 1 argument: the context (a directory, or -)');
      await buildCommand(context, o);
    });
}

async function builderPrune(o: { all: boolean; force: boolean; filter: string[] }): Promise<void> {
  // Bad filters fail before the question (nothing is removed by a check with nothing to drop).
  for (const f of o.filter) if (!f.startsWith("until=")) throw new TsrunError(`invalid filter '${f.split("=")[0] ?? f}': builder prune takes until=TIME`);
  if (!o.force) {
    const what = o.all ? "all build cache" : "all dangling build cache";
    if (!(await confirm(`WARNING! This will remove ${what}.\nAre you sure you want to continue? [y/N] `))) return;
  }
  const result = await pruneBuildCache(new Tsrun().containers, o.all, o.filter);
  if (result.lines.length > 0) writeOut(`Deleted build cache objects:\n${result.lines.map((l) => l.replace(/^deleted: /, "")).join("\n")}\n\n`);
  writeOut(`Total reclaimed space: ${humanSize(result.reclaimed)}\n`);
}

export function registerBuilder(program: Command): void {
  const builder = program.command("builder").description("Manage the build cache");
  builder
    .command("prune")
    .description("Remove build cache (the entries no image holds; with -a all of it)")
    .option("-a, --all", "remove all build cache, not just what no image holds", false)
    .option("-f, --force", "do not prompt for confirmation", false)
    .option("--filter <filter>", "until=TIME: only entries made before it", collect, [])
    .action(async (o: { all: boolean; force: boolean; filter: string[] }) => {
      await builderPrune(o);
    });
}
