// `build`: a Dockerfile and a context become an image.
//
// The Dockerfile is split into stages (stages.ts); the target stage is built, and before it, or
// when a COPY --from needs it, every stage it depends on. Each instruction is a step with a cache
// key (cache-keys.ts) chained from the one before. RUN, COPY and ADD make layers: on a cache hit
// the stored layer is reused and nothing runs (no container, no storage worker), otherwise RUN
// runs a container (run-step.ts) and COPY/ADD start the storage worker (copy-step.ts), and the
// new layer goes into the store and the cache index under the store lock. The other
// instructions change the config and add a history entry with empty_layer. Finally the target
// stage's config, history and layers are written as an image, under the store lock too; a
// failed build writes no image (the layers of its finished steps stay cached).
//
// Crash safety and concurrency (see store/leases.ts): the build holds a lease from its start to
// its end, and adds to it, under the store lock, everything it relies on that no image refers
// to yet: the base images it resolved (and their layers), the layers of cache hits (checked
// and leased in one lock hold), the layers its steps made (leased in the transaction that
// stores them). So rmi, prune and `system check --repair` running meanwhile never take them.
// A new layer and its cache entry go into the store in one transaction, so a build killed after
// a step reuses that step next time; what a killed build leaves (temporaries named with its
// pid, its RUN container) is swept by the next command.
//
// Reproducibility: with SOURCE_DATE_EPOCH every history time and the config's time is that
// moment, and no file time in a new layer is later; the layers' tars are written in name order
// with numeric owners, so two builds of the same context give the same image ID.
import type { Containers } from "../container/run.js";
import type { NetworkMode } from "../container/mounts.js";
import type { ImageRecord, LayerRecord } from "../store/images.js";
import type { BuildCacheEntry } from "../store/build-cache.js";
import { chainIds } from "../store/digest.js";
import { MEDIA, hostPlatform, type ContainerConfig, type HistoryEntry, type ImageConfig } from "../image/types.js";
import { applyInstruction, type ConfigState } from "../image/config-changes.js";
import { isHostPlatform } from "../image/platform-spec.js";
import { installPackedLayer, recordImage, tagName } from "../image/commit.js";
import { familiarName } from "../image/inspect.js";
import { pullImage } from "../image/registry/pull.js";
import type { TransferListener } from "../image/registry/progress.js";
import { ReferenceError } from "../image/reference.js";
import { TsrunError } from "../errors.js";
import { DockerfileParseError, parseDockerfile, chompHeredocContent, parseHeredoc, type Dockerfile, type Instruction } from "./dockerfile.js";
import { ShellExpansionError, ShellLex } from "./shell-words.js";
import { findStage, parseFlags, stageGraph, targetStage, type Stage, type StageGraph } from "./stages.js";
import { BuildArgs, StageArgs } from "./build-args.js";
import { stepKey } from "./cache-keys.js";
import { prepareContext, removeContextDir, type BuildContext } from "./context.js";
import { SourceTree } from "./source-tree.js";
import { ignoreMatcher, prepareCopy, resolveOwner, runCopy, type CopyContext } from "./copy-step.js";
import { layeredDirectoryExists } from "../container/rootfs-files.js";
import { runStep } from "./run-step.js";
import { contextKey, NamedContextError, parseNamedContexts, type NamedContext } from "./named-contexts.js";
import { hashSources } from "./cache-keys.js";
import { chownInUserNamespace, makeRunMounts, runMounts, type RunMountContext } from "./run-mounts.js";
import type { FromSource } from "./copy-step.js";
import { mkdirSync, writeFileSync } from "node:fs";
import { randomBytes } from "../random.js";
import path from "node:path";
import { DEFAULT_PATH } from "../container/spec.js";
import { BuildCancelledError, BuildError } from "./errors.js";
import type { Lease } from "../store/leases.js";
import { faultPoint } from "../store/fault.js";
import type { SecurityFlags } from "../container/security/options.js";
import { removeFile } from "../remove-file.js";

export interface BuildOptions {
  /** The context: a directory, or "-" for standard input (a tar archive, or a Dockerfile). */
  context: string;
  /** -f: the Dockerfile (relative to the current directory), "-" for standard input. */
  file?: string | undefined;
  /** Standard input, when the context or the Dockerfile come from it (process.stdin by default). */
  stdin?: AsyncIterable<Buffer | string>;
  /** -t: names for the image. */
  tags?: string[];
  /** --build-arg values. */
  buildArgs?: Record<string, string>;
  noCache?: boolean;
  /** --no-cache-filter: the stages (by name) built without the cache. */
  noCacheFilter?: string[];
  /** --target: the stage to build (the last one by default). */
  target?: string | undefined;
  /** --label: labels added to the image. */
  labels?: Record<string, string>;
  /** -q: no progress, no RUN output. */
  quiet?: boolean;
  /** The network RUN commands get (the private network by default). */
  network?: NetworkMode;
  /** When FROM and COPY --from images are pulled: missing (default), always, never. */
  pull?: "missing" | "always" | "never";
  tlsVerify?: boolean | undefined;
  /** --add-host NAME:IP for RUN containers' /etc/hosts. */
  addHosts?: string[];
  /** --ulimit NAME=SOFT[:HARD] for RUN containers. */
  ulimits?: string[];
  /** --security-opt, --memory, --cpu-shares, ... for RUN containers, as `run` takes them. */
  runSecurity?: Omit<SecurityFlags, "ulimits">;
  /** --shm-size: /dev/shm's size in bytes for RUN containers. */
  shmSize?: number;
  /** --build-context NAME=DIRECTORY|docker-image://REF: what NAME means in FROM, --from and stage names. */
  buildContexts?: string[];
  /** --secret values by id, for RUN --mount=type=secret (never stored, never in a cache key). */
  secrets?: Record<string, Buffer>;
  /** SOURCE_DATE_EPOCH, seconds: times in the image are clamped to it. */
  sourceDateEpoch?: number | undefined;
  /** Progress lines ("STEP 1/3: FROM busybox"), without newline. */
  log?: (line: string) => void;
  /** Warnings (unused build args, Dockerfile warnings). */
  warn?: (message: string) => void;
  /** Pull progress. */
  listener?: TransferListener;
}

/** An image a FROM or COPY --from uses. */
interface BaseImage {
  id: string;
  layers: LayerRecord[];
  config: ImageConfig;
}

/** Where a stage is while it is built. */
interface StageState {
  stage: Stage;
  /** The image the stage's layers start from ("" for scratch): shown for RUN containers. */
  imageId: string;
  imageName: string;
  config: ImageConfig;
  layers: LayerRecord[];
  history: HistoryEntry[];
  key: string;
  args: StageArgs;
  configState: ConfigState;
  /** The created time of the last step (the config's `created`). */
  created: string;
}

const DEFAULT_SHELL = ["/bin/sh", "-c"];
/** Where a `RUN <<EOF` script with a #! line is mounted, as BuildKit mounts it. */
const SCRIPT_DIR = "/dev/pipes";
/** Instructions that take no flags (FROM, RUN, COPY, ADD and HEALTHCHECK check their own). */
const FLAGLESS = new Set(["arg", "cmd", "entrypoint", "env", "expose", "label", "maintainer", "onbuild", "shell", "stopsignal", "user", "volume", "workdir"]);

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

class Builder {
  private readonly store;
  private readonly cache: Map<string, BuildCacheEntry>;
  /** Entries this build made, written to the index with the next layer or the image. */
  private readonly fresh = new Map<string, BuildCacheEntry>();
  private readonly stages = new Map<number, Promise<StageState>>();
  private readonly images = new Map<string, Promise<BaseImage>>();
  private readonly buildArgs: BuildArgs;
  private readonly globals: Map<string, string>;
  private readonly multiStage: boolean;
  private readonly context: SourceTree;
  private readonly secrets: ReadonlyMap<string, Buffer>;
  private readonly namedContexts: ReadonlyMap<string, NamedContext>;
  /** The directory named contexts, opened once each. */
  private readonly contextTrees = new Map<string, SourceTree>();
  /** Chain IDs this build's lease names already. */
  private readonly leasedLayers = new Set<string>();
  private running: number | undefined;
  private cancelled: NodeJS.Signals | undefined;

  constructor(
    private readonly containers: Containers,
    private readonly opts: BuildOptions,
    private readonly ctx: BuildContext,
    private readonly dockerfile: Dockerfile,
    private readonly graph: StageGraph,
    private readonly lease: Lease,
    namedContexts: ReadonlyMap<string, NamedContext> = new Map(),
  ) {
    this.store = containers.store;
    this.cache = this.store.buildCache.load();
    this.buildArgs = new BuildArgs(new Map(Object.entries(opts.buildArgs ?? {})), hostPlatform(), dockerfile.escapeChar, ctx.dockerfileName);
    this.globals = this.buildArgs.globalScope(graph.globalArgs);
    this.multiStage = graph.stages.length > 1;
    let ignore;
    try {
      ignore = ignoreMatcher(ctx.ignore);
    } catch (err) {
      throw new BuildError(`.dockerignore: ${errorMessage(err)}`);
    }
    this.context = new SourceTree(ctx.dir, ignore);
    this.secrets = new Map(Object.entries(opts.secrets ?? {}));
    this.namedContexts = namedContexts;
  }

  /** Warnings about one instruction, named by its Dockerfile line. */
  private warnAt(ins: Instruction): (message: string) => void {
    return (message) => this.opts.warn?.(`${this.ctx.dockerfileName}:${ins.startLine}: ${message}`);
  }

  private log(line: string): void {
    if (!this.opts.quiet) this.opts.log?.(line);
  }

  /** Seconds for new files and directories: SOURCE_DATE_EPOCH, or now. */
  private nowSeconds(): number {
    return this.opts.sourceDateEpoch ?? Math.floor(Date.now() / 1000);
  }

  /** A step's history time: SOURCE_DATE_EPOCH, or the cached one (so a cached build repeats its config), or now. */
  private createdFor(key: string): string {
    if (this.opts.sourceDateEpoch !== undefined) return new Date(this.opts.sourceDateEpoch * 1000).toISOString();
    const cached = this.opts.noCache ? undefined : this.cache.get(key)?.created;
    return cached ?? new Date().toISOString();
  }

  /** A usable cache entry for a layer step: its layers continue the stage's and all still exist. */
  private lookup(key: string, layers: readonly LayerRecord[]): BuildCacheEntry | undefined {
    if (this.opts.noCache) return undefined;
    const entry = this.cache.get(key);
    if (!entry || entry.layers.length < layers.length) return undefined;
    if (!layers.every((l, i) => entry.layers[i]?.chainId === l.chainId)) return undefined;
    if (!entry.layers.every((l) => this.store.layers.has(l.chainId) && this.store.blobs.has(l.digest))) return undefined;
    return entry;
  }

  /** Adds layers (and their blobs) to the build's lease. Call under the store lock. */
  private leaseLayers(layers: readonly LayerRecord[], images: string[] = []): void {
    const added = layers.filter((l) => !this.leasedLayers.has(l.chainId));
    if (added.length === 0 && images.length === 0) return;
    this.lease.add({ images, layers: added.map((l) => l.chainId), blobs: added.map((l) => l.digest) });
    for (const l of added) this.leasedLayers.add(l.chainId);
  }

  /** Records a step's result; only what the index does not have yet is written back. */
  private remember(key: string, entry: BuildCacheEntry): void {
    const known = this.cache.get(key);
    if (known && known.created === entry.created && known.emptyLayer === entry.emptyLayer && known.layers.length === entry.layers.length && known.layers.every((l, i) => l.chainId === entry.layers[i]?.chainId)) return;
    this.cache.set(key, entry);
    this.fresh.set(key, entry);
  }

  private checkCancelled(): void {
    if (this.cancelled) throw new BuildCancelledError(this.cancelled);
  }

  /** Ends a step: the new key, history entry, and cache entry. */
  private finishStep(state: StageState, key: string, createdBy: string, layers: LayerRecord[], emptyLayer: boolean, created = this.createdFor(key)): void {
    const entry: HistoryEntry = { created, created_by: createdBy };
    if (emptyLayer) entry.empty_layer = true;
    state.history.push(entry);
    state.layers = layers;
    state.key = key;
    state.created = created;
    this.remember(key, { created, layers, emptyLayer });
  }

  // ------------------------------------------------------------------------------------------
  // Images and stages

  private resolveImage(ref: string): Promise<BaseImage> {
    let found = this.images.get(ref);
    if (!found) {
      found = this.loadImage(ref);
      this.images.set(ref, found);
    }
    return found;
  }

  /** The image a FROM or COPY --from names, found (or pulled) and leased for the rest of the build. */
  private async loadImage(ref: string): Promise<BaseImage> {
    const policy = this.opts.pull ?? "missing";
    // Found and leased in one lock hold: no rmi or prune can take it in between.
    const leaseImage = (find: () => ImageRecord | undefined): Promise<ImageRecord | undefined> =>
      this.store.lock(() => {
        const found = find();
        if (found) this.leaseLayers(found.layers, [found.id]);
        return found;
      });
    let image: ImageRecord | undefined;
    if (policy !== "always") {
      image = await leaseImage(() => {
        try {
          return this.store.images.find(ref);
        } catch (err) {
          if (err instanceof ReferenceError) throw new Error(`invalid image reference "${ref}": ${err.message}`);
          throw err;
        }
      });
    }
    if (!image) {
      if (policy === "never") throw new Error(`${ref}: image not known (and --pull=never)`);
      let pulled: ImageRecord;
      try {
        pulled = (await pullImage(this.store, { reference: ref, tlsVerify: this.opts.tlsVerify, listener: this.opts.listener })).image;
      } catch (err) {
        throw new Error(policy === "missing" ? `${ref}: image not known locally, and pulling it failed: ${errorMessage(err)}` : errorMessage(err));
      }
      image = await leaseImage(() => this.store.images.list().find((i) => i.id === pulled.id));
      if (!image) throw new Error(`${ref}: the image was removed right after it was pulled (rmi or prune meanwhile): build again`);
    }
    const config = JSON.parse(this.store.blobs.read(image.id).toString("utf8")) as ImageConfig;
    return { id: image.id, layers: image.layers, config };
  }

  private buildStage(stage: Stage): Promise<StageState> {
    let result = this.stages.get(stage.index);
    if (!result) {
      result = this.runStage(stage);
      this.stages.set(stage.index, result);
    }
    return result;
  }

  /** Stages a stage needs that its text names plainly (FROM, COPY --from): built before it, in order. */
  private staticDependencies(stage: Stage, base: string): Stage[] {
    const refs = [base];
    for (const ins of stage.instructions) {
      if (ins.keyword !== "copy") continue;
      for (const flag of ins.flags) if (flag.startsWith("--from=") && !flag.includes("$")) refs.push(flag.slice(7));
    }
    const deps = new Set<Stage>();
    for (const ref of refs) {
      // The base as its FROM line sees it (the last stage of that name above); --from names the last one.
      const dep = ref === base ? findStage(this.graph, ref, stage.index) : findStage(this.graph, ref);
      if (dep && dep.index < stage.index && !this.replacedStage(dep)) deps.add(dep);
    }
    return [...deps].sort((a, b) => a.index - b.index);
  }

  private label(stage: Stage, step: number): string {
    const total = stage.instructions.length + 1;
    const prefix = this.multiStage ? `[${stage.index + 1}/${this.graph.stages.length}] ` : "";
    return `${prefix}STEP ${step}/${total}`;
  }

  private async runStage(stage: Stage): Promise<StageState> {
    const fileName = this.ctx.dockerfileName;
    const fail = (ins: Instruction, reason: string): BuildError => new BuildError(`${fileName}:${ins.startLine}: ${reason}`);
    const replacement = this.replacedStage(stage);
    if (replacement) {
      // --build-context NAME replaces the stage NAME: none of its instructions run.
      this.log(`${this.label(stage, 1)}: ${stage.from.original.trim()} (replaced by --build-context ${replacement.name})`);
      return this.fromStep(stage, stage.name ?? "", replacement).catch((err: unknown) => {
        throw err instanceof TsrunError ? err : fail(stage.from, errorMessage(err));
      });
    }
    let base: string;
    try {
      base = new ShellLex(this.dockerfile.escapeChar).processWord(stage.base, this.globals);
    } catch (err) {
      throw fail(stage.from, errorMessage(err));
    }
    if (base === "") throw fail(stage.from, `base name (${stage.base}) should not be blank`);
    for (const dep of this.staticDependencies(stage, base)) await this.buildStage(dep);

    this.log(`${this.label(stage, 1)}: ${stage.from.original.trim()}`);
    const state = await this.fromStep(stage, base).catch((err: unknown) => {
      throw err instanceof TsrunError ? err : fail(stage.from, errorMessage(err));
    });
    const triggers = state.config.config?.OnBuild ?? [];
    if (state.config.config) delete state.config.config.OnBuild;
    if (triggers.length > 0) this.log(`--> Executing ${triggers.length} build trigger${triggers.length > 1 ? "s" : ""}`);
    for (const trigger of triggers) {
      let parsed: Instruction[];
      try {
        parsed = parseDockerfile(trigger, { fileName }).instructions;
      } catch (err) {
        throw fail(stage.from, `ONBUILD trigger "${trigger}": ${errorMessage(err)}`);
      }
      for (const ins of parsed) {
        if (ins.keyword === "onbuild" || ins.keyword === "from" || ins.keyword === "maintainer") {
          throw fail(stage.from, `${ins.keyword.toUpperCase()} isn't allowed as an ONBUILD trigger`);
        }
        this.log(`--> Trigger: ${ins.original.trim()}`);
        await this.step(state, ins, stage.from);
      }
    }
    for (const [i, ins] of stage.instructions.entries()) {
      this.log(`${this.label(stage, i + 2)}: ${ins.original.trim()}`);
      await this.step(state, ins);
    }
    return state;
  }

  private async fromStep(stage: Stage, base: string, replacement?: NamedContext): Promise<StageState> {
    let identity: string;
    let imageId = "";
    let config: ImageConfig;
    let layers: LayerRecord[] = [];
    let args: StageArgs | undefined;
    if (stage.platform !== undefined) {
      // Any spelling of the host's platform (linux/amd64, amd64, x86_64, linux): containerd's rules.
      const platform = new ShellLex(this.dockerfile.escapeChar).processWord(stage.platform, this.globals);
      if (platform === "") throw new Error(`empty platform value from expression ${stage.platform}`);
      let host: boolean;
      try {
        host = isHostPlatform(platform);
      } catch (err) {
        throw new Error(`failed to parse platform ${stage.platform}: ${errorMessage(err)}`);
      }
      const p = hostPlatform();
      if (!host) throw new Error(`FROM --platform=${platform}: only the build host's platform (${p.os}/${p.architecture}) can be built here`);
    }
    const dep = replacement ? undefined : findStage(this.graph, base, stage.index);
    // A base that is no stage may be a named context.
    const named = replacement ?? (dep ? undefined : this.namedContext(base));
    if (named?.kind === "dir") {
      ({ identity, config, layers } = await this.directoryBase(named));
    } else if (dep && dep.name !== undefined && dep.name === base.toLowerCase() && dep.index < stage.index) {
      const from = await this.buildStage(dep);
      identity = from.key;
      imageId = from.imageId;
      config = structuredClone(from.config);
      config.history = [...from.history];
      config.config = structuredClone(from.config.config ?? {});
      layers = from.layers;
      args = from.args.derive();
    } else if (named?.kind === "scratch" || (!named && base.toLowerCase() === "scratch")) {
      identity = "scratch";
      const p = hostPlatform();
      config = { architecture: p.architecture, os: p.os, config: {}, rootfs: { type: "layers", diff_ids: [] }, history: [] };
    } else {
      const image = await this.resolveImage(named?.kind === "image" ? named.ref : base);
      identity = image.id;
      imageId = image.id;
      config = structuredClone(image.config);
      layers = image.layers;
    }
    // BuildKit makes sure every stage has a PATH (appended when the base image sets none), so the
    // image says what RUN and `run` use.
    const inner = (config.config ??= {});
    if (!(inner.Env ?? []).some((e) => e.startsWith("PATH="))) inner.Env = [...(inner.Env ?? []), `PATH=${DEFAULT_PATH}`];
    // SOURCE_DATE_EPOCH changes every layer (file times are clamped to it): it starts the key chain.
    const key = stepKey("", { from: identity, ...(this.opts.sourceDateEpoch !== undefined ? { epoch: this.opts.sourceDateEpoch } : {}) });
    const created = this.createdFor(key);
    this.remember(key, { created, layers, emptyLayer: true });
    args ??= new StageArgs(this.buildArgs, this.globals);
    return {
      stage,
      imageId,
      imageName: base,
      config,
      layers,
      history: [...(config.history ?? [])],
      key,
      args,
      configState: { cmdSet: false },
      created,
    };
  }

  // ------------------------------------------------------------------------------------------
  // Steps

  /** Runs one instruction; errors name the Dockerfile line (a trigger's: its FROM line). */
  private async step(state: StageState, ins: Instruction, at: Instruction = ins): Promise<void> {
    this.checkCancelled();
    try {
      await this.dispatch(state, ins);
    } catch (err) {
      if (err instanceof BuildError || err instanceof BuildCancelledError) throw err;
      // Named by this build's Dockerfile, whatever name the parser was given.
      if (err instanceof DockerfileParseError) throw new BuildError(`${this.ctx.dockerfileName}:${at === ins ? err.line : at.startLine}: ${err.reason}`);
      throw new BuildError(`${this.ctx.dockerfileName}:${at.startLine}: ${errorMessage(err)}`);
    }
    this.checkCancelled();
  }

  private async dispatch(state: StageState, ins: Instruction): Promise<void> {
    if (FLAGLESS.has(ins.keyword)) parseFlags(ins, {}, this.ctx.dockerfileName);
    const config = (state.config.config ??= {});
    switch (ins.keyword) {
      case "arg": {
        const declared = state.args.declare(ins, config.Env ?? []);
        const text = declared.map((d) => (d.value === undefined ? d.name : `${d.name}=${d.value}`)).join(" ");
        this.finishStep(state, stepKey(state.key, { arg: ins.args }), `ARG ${text}`, state.layers, true);
        return;
      }
      case "maintainer":
        if (ins.args.length !== 1) throw new Error("MAINTAINER requires exactly one argument");
        state.config.author = ins.args[0] as string;
        this.finishStep(state, stepKey(state.key, { maintainer: ins.args[0] }), `MAINTAINER ${ins.args[0] ?? ""}`, state.layers, true);
        return;
      case "run":
        await this.runInstruction(state, ins);
        return;
      case "copy":
      case "add":
        await this.copyInstruction(state, ins);
        return;
      case "from":
        throw new Error("FROM cannot be used here");
      default: {
        const scope = state.args.expansionScope(config.Env ?? []);
        try {
          applyInstruction(config, ins, state.configState, { scope, escapeChar: this.dockerfile.escapeChar });
        } catch (err) {
          if (err instanceof ShellExpansionError) throw new Error(err.message);
          throw err;
        }
        if (ins.keyword === "env") state.args.envSet(ins.args.filter((_, i) => i % 3 === 0));
        const key = stepKey(state.key, { instruction: ins.original, config });
        if (ins.keyword === "workdir") await this.makeWorkdir(state, key, this.historyText(ins, config), this.warnAt(ins));
        else this.finishStep(state, key, this.historyText(ins, config), state.layers, true);
      }
    }
  }

  /** The history's created_by for a config instruction, with its words expanded as BuildKit writes them. */
  private historyText(ins: Instruction, config: ContainerConfig): string {
    const word = ins.keyword.toUpperCase();
    switch (ins.keyword) {
      case "env":
        return `ENV ${(config.Env ?? []).filter((e) => ins.args.some((a, i) => i % 3 === 0 && e.startsWith(`${a}=`))).join(" ")}`.trimEnd();
      case "workdir":
        return `WORKDIR ${config.WorkingDir ?? ""}`;
      case "user":
        return `USER ${config.User ?? ""}`;
      case "cmd":
        return `CMD ${JSON.stringify(config.Cmd ?? [])}`;
      case "entrypoint":
        return `ENTRYPOINT ${JSON.stringify(config.Entrypoint ?? [])}`;
      case "shell":
        return `SHELL ${JSON.stringify(config.Shell ?? [])}`;
      default:
        return `${word} ${ins.original.trim().slice(ins.keyword.length).trim()}`;
    }
  }

  /**
   * RUN's command line: exec form as written, shell form through SHELL (heredocs included). A
   * `RUN <<EOF` whose body starts with `#!` is a script run by its own interpreter (BuildKit
   * mounts it at /dev/pipes/EOF): `script` is that file's name and content.
   */
  private runArgv(ins: Instruction, config: ContainerConfig): { argv: string[]; script?: { name: string; content: string } } {
    if (ins.json) {
      if (ins.args.length === 0) throw new Error("RUN requires at least one argument");
      return { argv: ins.args };
    }
    const shell = config.Shell ?? DEFAULT_SHELL;
    let command = ins.args[0] ?? "";
    if (command.trim() === "") throw new Error("RUN requires at least one argument");
    if (ins.heredocs.length > 0) {
      const only = ins.heredocs[0];
      if (ins.heredocs.length === 1 && only && parseHeredoc(command.trim())?.name === only.name) {
        // `RUN <<EOF` alone: the body is the script.
        command = only.chomp ? chompHeredocContent(only.content) : only.content;
        if (command.startsWith("#!")) {
          if (only.name.includes("/") || only.name === "." || only.name === "..") throw new Error(`heredoc name ${only.name} cannot name a file`);
          return { argv: [...shell, `${SCRIPT_DIR}/${only.name}`], script: { name: only.name, content: command } };
        }
      } else {
        // The shell reads the heredocs itself, from the text after the command line.
        command += "\n" + ins.heredocs.map((h) => `${h.content}${h.name}\n`).join("");
      }
    }
    return { argv: [...shell, command] };
  }

  private async runInstruction(state: StageState, ins: Instruction): Promise<void> {
    const flags = parseFlags(ins, { network: "string", mount: "strings", security: "string" }, this.ctx.dockerfileName);
    if (flags.has("security")) throw new Error("RUN --security is not supported");
    const config = state.config.config ?? {};
    const lex = new ShellLex(this.dockerfile.escapeChar);
    const scope = state.args.expansionScope(config.Env ?? []);
    const mountFlags = flags.get("mount");
    const mountContext: RunMountContext = {
      store: this.store,
      context: this.context,
      contextDir: this.ctx.dir,
      workdir: config.WorkingDir ?? "/",
      secrets: this.secrets,
      ignore: this.ctx.ignore,
      now: this.nowSeconds(),
      resolveFrom: (ref) => this.resolveFrom(state, ref),
    };
    const mounts = await runMounts(Array.isArray(mountFlags) ? mountFlags.map((m) => lex.processWord(m, scope)) : [], mountContext);
    let network: NetworkMode = this.opts.network ?? "private";
    const wanted = flags.get("network");
    if (typeof wanted === "string" && wanted !== "default") {
      if (wanted !== "none" && wanted !== "host") throw new Error(`RUN --network=${wanted}: expected default, none or host`);
      network = wanted;
    }
    const { argv, script } = this.runArgv(ins, config);
    const { args, proxies } = state.args.runEnvironment(config.Env ?? []);
    const hostsAndLimits = { ...(this.opts.addHosts?.length ? { addHosts: this.opts.addHosts } : {}), ...(this.opts.ulimits?.length ? { ulimits: this.opts.ulimits } : {}) };
    const key = stepKey(state.key, { run: argv, args, network, ...(mounts.description.length > 0 ? { mounts: mounts.description } : {}), ...(script ? { script } : {}), ...hostsAndLimits });
    const argText = args.length > 0 ? `|${args.length} ${args.map(([k, v]) => `${k}=${v}`).join(" ")} ` : "";
    const createdBy = `RUN ${argText}${argv.join(" ")}`;
    if (await this.fromCache(state, key, createdBy)) return;
    await makeRunMounts(mountContext, mounts);
    const runMountSpecs = [...mounts.mounts];
    // Files made for this RUN only (a #! script, secrets), removed when it ends.
    const runFiles: string[] = [];
    const runFile = (content: string | Buffer, mode: number, target: string): string => {
      mkdirSync(this.store.paths.tmp, { recursive: true, mode: 0o700 });
      const file = path.join(this.store.paths.tmp, `build-run-${process.pid}-${randomBytes(6).toString("hex")}`);
      runFiles.push(file);
      writeFileSync(file, content, { mode });
      if (target.includes(",")) throw new Error(`RUN: the mount target ${target} has a comma, which a mount spec cannot carry`);
      runMountSpecs.push(`type=bind,source=${file},target=${target},readonly`);
      return file;
    };
    let result;
    try {
      if (script) runFile(script.content, 0o755, `${SCRIPT_DIR}/${script.name}`);
      for (const secret of mounts.secretFiles) {
        const file = runFile(secret.content, secret.mode, secret.target);
        if (secret.uid !== 0 || secret.gid !== 0) await chownInUserNamespace(file, secret.uid, secret.gid);
      }
      result = await runStep(this.containers, {
        imageId: state.imageId,
        displayName: state.imageName,
        layers: state.layers.map((l) => l.chainId),
        config: state.config,
        argv,
        env: [...args, ...proxies, ...mounts.secretEnv].map(([k, v]) => `${k}=${v}`),
        mounts: runMountSpecs,
        network,
        addHosts: this.opts.addHosts ?? [],
        ulimits: this.opts.ulimits ?? [],
        ...(this.opts.runSecurity ? { security: this.opts.runSecurity } : {}),
        ...(this.opts.shmSize !== undefined ? { shmSize: this.opts.shmSize } : {}),
        quiet: this.opts.quiet ?? false,
        clampMtime: this.opts.sourceDateEpoch,
        onStart: (pid) => {
          this.running = pid;
        },
      });
    } catch (err) {
      // The command could not be started (not found, not executable): its status is Docker's.
      if (err instanceof TsrunError && (err.exitCode === 126 || err.exitCode === 127)) {
        throw new BuildError(`The command '${argv.join(" ")}' returned a non-zero code: ${err.exitCode}: ${err.message}`);
      }
      throw err;
    } finally {
      this.running = undefined;
      for (const file of runFiles) removeFile(file);
      await this.store.removeTrees(mounts.scratch);
    }
    this.checkCancelled();
    if (!("packed" in result)) throw new BuildError(`The command '${argv.join(" ")}' returned a non-zero code: ${result.status}`);
    for (const w of result.packed.warnings) this.opts.warn?.(w);
    if (result.packed.entries === 0) {
      await this.store.removeTree(result.layerTmp);
      this.finishStep(state, key, createdBy, state.layers, true);
      return;
    }
    const digest = result.packed.digest;
    const layer: LayerRecord = {
      diffId: digest,
      chainId: chainIds([...state.layers.map((l) => l.diffId), digest]).at(-1) as string,
      digest,
      mediaType: MEDIA.ociLayer,
      size: result.packed.size,
    };
    await this.addLayer(state, key, createdBy, layer, result.layerTmp, result.tarFile);
  }

  /** A layer step's cache hit: the step ends with the cached layers, and true; else false. */
  private async fromCache(state: StageState, key: string, createdBy: string): Promise<boolean> {
    if (this.opts.noCache || !this.cache.has(key)) return false;
    if (state.stage.name !== undefined && (this.opts.noCacheFilter ?? []).some((n) => n.toLowerCase() === state.stage.name)) return false;
    // Checked and leased in one lock hold: a prune cannot take the layers in between.
    const hit = await this.store.lock(() => {
      const entry = this.lookup(key, state.layers);
      if (entry) this.leaseLayers(entry.layers);
      return entry;
    });
    if (!hit) return false;
    this.log(`--> Using cache ${key.slice(7)}`);
    this.finishStep(state, key, createdBy, hit.layers, hit.emptyLayer);
    return true;
  }

  /** Ends a layer step with its new layer: into the store, with its cache entry, first. */
  private async addLayer(state: StageState, key: string, createdBy: string, layer: LayerRecord, layerTmp: string, tarFile: string): Promise<void> {
    const layers = [...state.layers, layer];
    const created = this.createdFor(key);
    this.remember(key, { created, layers, emptyLayer: false });
    await this.installLayer(state.layers, layer, layerTmp, tarFile);
    this.log(`--> ${layer.chainId.slice(7, 19)}`);
    this.finishStep(state, key, createdBy, layers, false, created);
  }

  /**
   * Moves a new layer into the store in one transaction with the cache entries so far (the
   * step's own included) and the layer's lease: killed after it, the next build reuses the step.
   */
  private async installLayer(below: readonly LayerRecord[], layer: LayerRecord, layerTmp: string, tarFile: string): Promise<void> {
    try {
      await this.store.transact(async (tx) => {
        await installPackedLayer(tx, layerTmp, tarFile, layer, below.at(-1)?.chainId ?? null);
        faultPoint("build:layer-committed");
        this.leaseLayers([layer]);
        this.store.buildCache.add(this.fresh);
        faultPoint("build:cache-written");
      });
      this.fresh.clear();
    } catch (err) {
      removeFile(tarFile);
      await this.store.removeTree(layerTmp);
      throw err;
    }
  }

  /**
   * WORKDIR makes its directory, with the parents it lacks, owned by the stage's USER (as
   * BuildKit does, so that `USER app` + `WORKDIR /home/app/src` + `RUN make` can write there): a
   * layer when something was made, none when the directory exists.
   */
  private async makeWorkdir(state: StageState, key: string, createdBy: string, warn: (message: string) => void): Promise<void> {
    const config = state.config.config ?? {};
    const dir = config.WorkingDir ?? "/";
    if (dir === "/") {
      this.finishStep(state, key, createdBy, state.layers, true);
      return;
    }
    if (await this.fromCache(state, key, createdBy)) return;
    const layerDirs = [...state.layers].reverse().map((l) => this.store.layers.diffDir(l.chainId));
    if (layeredDirectoryExists(layerDirs, dir) === true) {
      this.finishStep(state, key, createdBy, state.layers, true);
      return;
    }
    const user = config.User ?? "";
    const owner = user === "" ? { uid: 0, gid: 0 } : resolveOwner(user, layerDirs, warn);
    const copied = await runCopy(this.copyContext(state), { description: undefined, sources: [], dest: `${dir}/`, destIsDir: true, owner, makeDest: true, temporaries: [] });
    if (copied.result.entries === 0) {
      removeFile(copied.tarFile);
      await this.store.removeTree(copied.layerTmp);
      this.finishStep(state, key, createdBy, state.layers, true);
      return;
    }
    await this.addLayer(state, key, createdBy, copied.layer, copied.layerTmp, copied.tarFile);
  }

  private copyContext(state: StageState): CopyContext {
    const config = state.config.config ?? {};
    return {
      store: this.store,
      context: this.context,
      contextDir: this.ctx.dir,
      ignore: this.ctx.ignore,
      workdir: config.WorkingDir ?? "/",
      layers: state.layers,
      scope: state.args.expansionScope(config.Env ?? []),
      escapeChar: this.dockerfile.escapeChar,
      now: this.nowSeconds(),
      clampMtime: this.opts.sourceDateEpoch,
      resolveFrom: (ref) => this.resolveFrom(state, ref),
    };
  }

  /**
   * --from of COPY and RUN --mount: a stage before this one (built first if needed), a named
   * context (which also replaces a stage of its name), or an image.
   */
  private async resolveFrom(state: StageState, ref: string): Promise<FromSource> {
    const stage = findStage(this.graph, ref);
    // A number names a stage by position: never an image.
    if (!stage && /^\d+$/.test(ref)) throw new Error(`invalid from flag value ${ref}: there is no build stage ${ref}`);
    const named = stage ? this.replacedStage(stage) : this.namedContext(ref);
    if (named?.kind === "dir") return { identity: `context ${named.name}`, context: { dir: named.dir, ignore: named.ignore, tree: this.contextTree(named) } };
    if (named?.kind === "scratch") return { identity: "scratch", layers: [] };
    if (named?.kind === "image") {
      const image = await this.resolveImage(named.ref);
      return { identity: image.id, layers: image.layers };
    }
    if (stage) {
      if (stage.index >= state.stage.index) throw new Error(`invalid from flag value ${ref}: refers to the current or a later build stage`);
      const built = await this.buildStage(stage);
      // Its content (the last layer's chain ID), not its steps: a stage built again (--no-cache-filter,
      // a pruned cache) with other files makes the COPY --from that reads it miss too.
      return { identity: built.layers.at(-1)?.chainId ?? built.key, layers: built.layers };
    }
    const image = await this.resolveImage(ref);
    return { identity: image.id, layers: image.layers };
  }

  /** The --build-context a FROM base or a --from reference names, if any. */
  private namedContext(ref: string): NamedContext | undefined {
    return this.namedContexts.size > 0 ? this.namedContexts.get(contextKey(ref)) : undefined;
  }

  /** The --build-context that replaces a named stage, if any. */
  private replacedStage(stage: Stage): NamedContext | undefined {
    return stage.name !== undefined ? this.namedContext(stage.name) : undefined;
  }

  private contextTree(named: Extract<NamedContext, { kind: "dir" }>): SourceTree {
    let tree = this.contextTrees.get(named.dir);
    if (!tree) {
      tree = new SourceTree(named.dir, ignoreMatcher(named.ignore));
      this.contextTrees.set(named.dir, tree);
    }
    return tree;
  }

  /**
   * `FROM NAME` of a directory context: one layer with the directory's files (owned by root, its
   * .dockerignore applied), cached by their content, and an empty config as BuildKit gives it.
   */
  private async directoryBase(named: Extract<NamedContext, { kind: "dir" }>): Promise<{ identity: string; config: ImageConfig; layers: LayerRecord[] }> {
    const tree = this.contextTree(named);
    const key = stepKey("", { context: named.name, content: hashSources(tree, ["."]), ...(this.opts.sourceDateEpoch !== undefined ? { epoch: this.opts.sourceDateEpoch } : {}) });
    const p = hostPlatform();
    const created = this.createdFor(key);
    const config: ImageConfig = { architecture: p.architecture, os: p.os, config: {}, rootfs: { type: "layers", diff_ids: [] }, history: [{ created, created_by: `COPY --build-context ${named.name} /` }] };
    const hit = await this.store.lock(() => {
      const entry = this.lookup(key, []);
      if (entry) this.leaseLayers(entry.layers);
      return entry;
    });
    if (hit) return { identity: key, config, layers: hit.layers };
    const copied = await runCopy(
      { store: this.store, layers: [], now: this.nowSeconds(), clampMtime: this.opts.sourceDateEpoch },
      { description: undefined, sources: [{ kind: "tree", root: { dir: named.dir }, ignore: named.ignore, paths: ["."], keepOwners: false, extractArchives: false }], dest: "/", destIsDir: true, temporaries: [] },
    );
    if (copied.result.entries === 0) {
      removeFile(copied.tarFile);
      await this.store.removeTree(copied.layerTmp);
      config.history = [{ created, created_by: `COPY --build-context ${named.name} /`, empty_layer: true }];
      this.remember(key, { created, layers: [], emptyLayer: true });
      return { identity: key, config, layers: [] };
    }
    this.remember(key, { created, layers: [copied.layer], emptyLayer: false });
    await this.installLayer([], copied.layer, copied.layerTmp, copied.tarFile);
    return { identity: key, config, layers: [copied.layer] };
  }

  private async copyInstruction(state: StageState, ins: Instruction): Promise<void> {
    const ctx = { ...this.copyContext(state), warn: this.warnAt(ins) };
    const prepared = await prepareCopy(ctx, ins);
    try {
      const key = stepKey(state.key, prepared.description);
      const createdBy = ins.original.trim();
      if (await this.fromCache(state, key, createdBy)) return;
      const copied = await runCopy(ctx, prepared);
      faultPoint("build:copy-packed");
      for (const w of copied.result.warnings) this.opts.warn?.(w);
      if (copied.result.entries === 0) {
        // Nothing copied (a wildcard that matched nothing): no layer, as for a RUN that changed nothing.
        removeFile(copied.tarFile);
        await this.store.removeTree(copied.layerTmp);
        this.finishStep(state, key, createdBy, state.layers, true);
        return;
      }
      await this.addLayer(state, key, createdBy, copied.layer, copied.layerTmp, copied.tarFile);
    } finally {
      for (const f of prepared.temporaries) removeFile(f);
    }
  }

  // ------------------------------------------------------------------------------------------
  // The whole build

  async build(): Promise<ImageRecord> {
    const target = (() => {
      try {
        return targetStage(this.graph, this.opts.target);
      } catch (err) {
        throw new BuildError(errorMessage(err));
      }
    })();
    const tags = (this.opts.tags ?? []).map((t) => tagName(t));
    const onSignal = (sig: NodeJS.Signals): void => {
      this.cancelled ??= sig;
      if (this.running !== undefined) {
        try {
          process.kill(this.running, "SIGKILL");
        } catch {
          // Gone already.
        }
      }
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    try {
      const state = await this.buildStage(target);
      const image = await this.commit(state, tags);
      const unused = this.buildArgs.unconsumed();
      if (unused.length > 0) this.opts.warn?.(`one or more build-args [${unused.join(" ")}] were not consumed`);
      return image;
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      this.context.close();
      for (const tree of this.contextTrees.values()) tree.close();
    }
  }

  private async commit(state: StageState, tags: string[]): Promise<ImageRecord> {
    const c: ContainerConfig = structuredClone(state.config.config ?? {});
    const labels = this.opts.labels ?? {};
    if (Object.keys(labels).length > 0) c.Labels = { ...(c.Labels ?? {}), ...labels };
    const base = state.config;
    // Only what a build decides: a base image's extra fields (container, docker_version...) describe it, not this image.
    const config: ImageConfig = {
      created: state.created,
      ...(base.author !== undefined ? { author: base.author } : {}),
      architecture: base.architecture,
      ...(base.variant !== undefined ? { variant: base.variant } : {}),
      os: base.os,
      config: c,
      rootfs: { type: "layers", diff_ids: state.layers.map((l) => l.diffId) },
      history: state.history,
    };
    this.log(`COMMIT ${tags[0] !== undefined ? familiarName(tags[0]) : ""}`.trimEnd());
    const image = await this.store.transact(async (tx) => {
      // The lease keeps them from tsrun's own deleters; this catches hands in the store's files.
      const missing = state.layers.find((l) => !this.store.layers.has(l.chainId) || !this.store.blobs.has(l.digest));
      if (missing) throw new BuildError(`layer ${missing.chainId} of this build was removed while it ran: build again`);
      // Before the index: a rollback takes back blobs and layers, not a saved index.
      this.store.buildCache.add(this.fresh);
      faultPoint("build:image-recording");
      return await recordImage(tx, config, state.layers, tags, new Date().toISOString(), "build:blobs-stored");
    });
    this.fresh.clear();
    this.log(`--> ${image.id.slice(7, 19)}`);
    for (const t of tags) this.log(`Successfully tagged ${familiarName(t)}`);
    return image;
  }
}

/** Builds an image from a Dockerfile and a context (`tsrun build`). */
export async function buildImage(containers: Containers, opts: BuildOptions): Promise<ImageRecord> {
  for (const t of opts.tags ?? []) tagName(t);
  let namedContexts: Map<string, NamedContext>;
  try {
    namedContexts = parseNamedContexts(opts.buildContexts ?? []);
  } catch (err) {
    if (err instanceof NamedContextError) throw new TsrunError(err.message);
    throw err;
  }
  const ctx = await prepareContext({ context: opts.context, file: opts.file, stdin: opts.stdin, tmpDir: containers.store.paths.tmp, warn: opts.warn });
  try {
    let dockerfile: Dockerfile;
    let graph: StageGraph;
    try {
      dockerfile = parseDockerfile(ctx.dockerfile, { fileName: ctx.dockerfileName });
      graph = stageGraph(dockerfile, ctx.dockerfileName);
    } catch (err) {
      throw new BuildError(errorMessage(err));
    }
    for (const w of [...dockerfile.warnings, ...graph.warnings]) opts.warn?.(`${ctx.dockerfileName}:${w.line}: ${w.message}`);
    // The lease starts with a sweep of what killed operations (earlier builds too) left.
    const lease = await containers.store.begin(`build ${opts.tags?.[0] ? familiarName(tagName(opts.tags[0])) : opts.context}`, "images");
    try {
      return await new Builder(containers, opts, ctx, dockerfile, graph, lease, namedContexts).build();
    } finally {
      lease.release();
    }
  } finally {
    if (ctx.temporary) removeContextDir(ctx.temporary);
  }
}
