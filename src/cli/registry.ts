// `tsrun pull`, `push`, `login`, `logout`, and how transfers look: per-blob lines with bytes and
// speed redrawn in place on a terminal, one plain line per finished blob otherwise, nothing
// with -q. Progress goes to stderr; stdout carries only the result (the image ID for pull, the
// manifest digest for push), so `id=$(tsrun pull -q x)` works.
import { InvalidArgumentError, Option, type Command } from "commander";
import { parseReference, repositoryName, splitName } from "../image/reference.js";
import { Tsrun } from "../tsrun.js";
import { login, logout } from "../image/registry/login.js";
import type { BlobOutcome, TransferListener } from "../image/registry/progress.js";
import { TsrunError } from "../errors.js";
import { humanSize } from "./output.js";
import { subcommand, terminalSelect } from "./util.js";
import { writeOut } from "./stdout.js";

/** --tls-verify, --tls-verify=true, --tls-verify=false (Podman's spelling). */
function parseBool(value: string): boolean {
  if (value === "true") return true;
  if (value === "false") return false;
  throw new InvalidArgumentError(`expected true or false, got "${value}"`);
}

interface BlobLine {
  kind: "blob" | "config";
  digest: string;
  size: number;
  bytes: number;
  started: number;
  outcome?: BlobOutcome;
}

/** Writes transfer progress to a stream; "tty" redraws lines in place, "plain" appends lines. */
export class ProgressPrinter implements TransferListener {
  private readonly lines: BlobLine[] = [];
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly mode: "tty" | "plain" | "quiet",
  ) {}

  message(text: string): void {
    if (this.mode === "quiet") return;
    if (this.mode === "tty") this.freeze();
    this.out.write(`${text}\n`);
  }

  blobStart(kind: "blob" | "config", digest: string, size: number): void {
    if (this.mode === "quiet" || this.lines.some((l) => l.digest === digest)) return;
    this.lines.push({ kind, digest, size, bytes: 0, started: Date.now() });
    if (this.mode === "tty") {
      // Redrawing ten times a second is smooth enough and costs nothing next to the transfer.
      this.timer ??= setInterval(() => this.redraw(), 100);
      this.timer.unref();
      this.redraw();
    }
  }

  blobProgress(digest: string, bytes: number): void {
    const line = this.lines.find((l) => l.digest === digest);
    if (line) line.bytes = bytes;
  }

  blobDone(digest: string, outcome: BlobOutcome): void {
    const line = this.lines.find((l) => l.digest === digest);
    if (!line || line.outcome) return;
    line.outcome = outcome;
    if (outcome === "done") line.bytes = line.size;
    if (this.mode === "plain") this.out.write(`Copying ${line.kind} ${digest} ${outcome}\n`);
    else if (this.mode === "tty") this.redraw();
  }

  finish(): void {
    if (this.mode === "tty") this.freeze();
  }

  private format(line: BlobLine): string {
    const label = `Copying ${line.kind} ${line.digest.replace(/^sha256:/, "").slice(0, 12)}`;
    if (line.outcome && line.outcome !== "done") return `${label} ${line.outcome}`;
    const seconds = Math.max((Date.now() - line.started) / 1000, 0.001);
    const bytes = `${humanSize(line.bytes)} / ${humanSize(line.size)}`;
    if (line.outcome === "done") return `${label} done   ${bytes}`;
    const width = 20;
    const filled = line.size > 0 ? Math.min(width, Math.floor((line.bytes / line.size) * width)) : 0;
    const bar = `[${"=".repeat(filled)}${filled < width ? ">" : ""}${" ".repeat(Math.max(0, width - filled - 1))}]`;
    return `${label} ${bar} ${bytes} ${humanSize(line.bytes / seconds)}/s`;
  }

  private redraw(): void {
    let text = this.drawn > 0 ? `\x1b[${this.drawn}A` : "";
    for (const line of this.lines) text += `\r\x1b[K${this.format(line)}\n`;
    this.drawn = this.lines.length;
    this.out.write(text);
  }

  /** Draws the final state once and starts a fresh block below it. */
  private freeze(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.lines.length > 0) this.redraw();
    this.lines.length = 0;
    this.drawn = 0;
  }
}

export function printer(quiet: boolean): ProgressPrinter {
  return new ProgressPrinter(process.stderr, quiet ? "quiet" : process.stderr.isTTY ? "tty" : "plain");
}

interface TransferFlags {
  quiet: boolean;
  tlsVerify?: boolean;
  authfile?: string;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Reads a line from the terminal; with hide, echoes nothing (passwords). */
function prompt(question: string, hide: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const input = process.stdin;
    process.stderr.write(question);
    if (!hide) {
      let text = "";
      const onData = (d: Buffer): void => {
        text += d.toString("utf8");
        const nl = text.indexOf("\n");
        if (nl >= 0) {
          input.off("data", onData);
          input.pause();
          resolve(text.slice(0, nl).replace(/\r$/, ""));
        }
      };
      input.on("data", onData);
      return;
    }
    input.setRawMode(true);
    let text = "";
    const onData = (d: Buffer): void => {
      for (const ch of d.toString("utf8")) {
        if (ch === "\r" || ch === "\n") {
          input.setRawMode(false);
          input.off("data", onData);
          input.pause();
          process.stderr.write("\n");
          resolve(text);
          return;
        }
        if (ch === "\u0003") {
          input.setRawMode(false);
          process.stderr.write("\n");
          reject(new TsrunError("login: interrupted"));
          return;
        }
        if (ch === "\u007f" || ch === "\b") text = text.slice(0, -1);
        else text += ch;
      }
    };
    input.on("data", onData);
  });
}

export function registerRegistry(program: Command): void {
  registerPullPush(program);
  registerLogin(program);
}

/** pull and push: also under `image` (`image pull`, `image push`), as in Docker. */
export function registerPullPush(program: Command): void {
  subcommand(program, "pull")
    .description("Pull an image from a registry")
    .argument("<name>", "NAME[:TAG|@DIGEST]")
    .option("-q, --quiet", "no progress output; print only the image ID", false)
    .option("--platform <os/arch[/variant]>", "the platform to pull from a multi-platform image")
    .option("--tls-verify [bool]", "require https and verify certificates (default true)", parseBool)
    .option("--authfile <path>", "auth file to read credentials from")
    .option("-a, --all-tags", "pull every tagged image of the repository", false)
    .addOption(new Option("--disable-content-trust", "accepted: image signatures are not verified").hideHelp())
    .action(async (name: string, o: TransferFlags & { platform?: string; allTags: boolean }) => {
      const t = new Tsrun();
      const pullOne = async (reference: string): Promise<void> => {
        const progress = printer(o.quiet);
        try {
          const result = await t.pull({ reference, platform: o.platform, tlsVerify: o.tlsVerify, authFile: o.authfile, listener: progress, selectCandidate: terminalSelect() });
          writeOut(`${result.image.id.replace(/^sha256:/, "")}\n`);
        } finally {
          progress.finish();
        }
      };
      if (!o.allTags) return pullOne(name);
      // Docker's -a: every tag of the repository, one after the other.
      const { repository, tags } = await t.listTags({ reference: name, tlsVerify: o.tlsVerify, authFile: o.authfile });
      if (tags.length === 0) throw new TsrunError(`pull ${repository}: the repository has no tags`);
      for (const tag of tags) await pullOne(`${repository}:${tag}`);
    });

  subcommand(program, "push")
    .description("Push an image to a registry")
    .argument("<image>", "local image name or ID")
    .argument("[destination]", "REGISTRY/NAME[:TAG] (default: the image's name)")
    .option("-q, --quiet", "no progress output; print only the manifest digest", false)
    .option("--tls-verify [bool]", "require https and verify certificates (default true)", parseBool)
    .option("--authfile <path>", "auth file to read credentials from")
    .option("-a, --all-tags", "push every tag the repository has in the local store", false)
    .addOption(new Option("--disable-content-trust", "accepted: images are not signed").hideHelp())
    .action(async (image: string, destination: string | undefined, o: TransferFlags & { allTags: boolean }) => {
      const t = new Tsrun();
      const pushOne = async (name: string, to: string | undefined): Promise<void> => {
        const progress = printer(o.quiet);
        try {
          const result = await t.push({ image: name, destination: to, tlsVerify: o.tlsVerify, authFile: o.authfile, listener: progress });
          writeOut(`${result.manifestDigest}\n`);
        } finally {
          progress.finish();
        }
      };
      if (!o.allTags) return pushOne(image, destination);
      // Docker's -a: every local tag of the repository, in name order.
      if (destination !== undefined) throw new TsrunError("push: a destination cannot be used with --all-tags");
      let ref;
      try {
        ref = parseReference(image);
      } catch (err) {
        throw new TsrunError(`push ${image}: ${(err as Error).message}`);
      }
      // parseReference completes a missing tag with latest: look at what the user wrote.
      if (image.includes("@") || image.lastIndexOf(":") > image.lastIndexOf("/")) throw new TsrunError("tag can't be used with --all-tags/-a");
      const repository = repositoryName(ref);
      const names = t.store.images
        .list()
        .flatMap((i) => i.names)
        .filter((n) => splitName(n).repository === repository)
        .sort();
      if (names.length === 0) throw new TsrunError(`An image does not exist locally with the tag: ${image}`);
      for (const name of names) await pushOne(name, undefined);
    });

}

function registerLogin(program: Command): void {
  subcommand(program, "login")
    .description("Log in to a registry (credentials are checked, then kept in the auth file)")
    .argument("<registry>")
    .option("-u, --username <user>", "user name")
    .option("-p, --password <password>", "password (visible to other users in ps: prefer --password-stdin)")
    .option("--password-stdin", "read the password from standard input", false)
    .option("--tls-verify [bool]", "require https and verify certificates (default true)", parseBool)
    .option("--authfile <path>", "auth file to write")
    .action(async (registry: string, o: { username?: string; password?: string; passwordStdin: boolean; tlsVerify?: boolean; authfile?: string }) => {
      if (o.password !== undefined && o.passwordStdin) throw new TsrunError("login: --password and --password-stdin cannot be used together");
      let username = o.username;
      if (username === undefined) {
        if (!process.stdin.isTTY || o.passwordStdin) throw new TsrunError("login: give a username with -u (standard input is not a terminal)");
        username = (await prompt("Username: ", false)).trim();
      }
      let password = o.password;
      if (o.passwordStdin) password = (await readStdin()).replace(/\r?\n$/, "");
      else if (password === undefined) {
        if (!process.stdin.isTTY) throw new TsrunError("login: give a password with --password-stdin (standard input is not a terminal)");
        password = await prompt("Password: ", true);
      }
      await login(registry, { username, password }, { tlsVerify: o.tlsVerify, authFile: o.authfile });
      writeOut("Login Succeeded!\n");
    });

  subcommand(program, "logout")
    .description("Remove the credentials stored for a registry")
    .argument("[registry]")
    .option("-a, --all", "remove the credentials of every registry", false)
    .option("--authfile <path>", "auth file to edit")
    .action((registry: string | undefined, o: { all: boolean; authfile?: string }) => {
      logout(registry, { all: o.all, authFile: o.authfile });
      writeOut(o.all ? "Removed login credentials for all registries\n" : `Removed login credentials for ${registry ?? ""}\n`);
    });
}
