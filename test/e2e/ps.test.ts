// `ps` as Docker's: --size, --filter (every key, Docker's any-of/all-of rules, which containers
// it looks at), -n/-l, and `container prune --filter`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importBusybox, tsrun, tsrunOk, unique } from "./helpers.js";

// Every container of this file carries this label: filters on it keep other files' containers out.
const suite = unique("ps-suite");
const created: string[] = [];

async function make(args: string[], code = 0): Promise<string> {
  const name = unique("ps");
  created.push(name);
  const r = await tsrun(["run", "--name", name, "-l", `suite=${suite}`, ...args]);
  if (r.code !== code) throw new Error(`run ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return name;
}

/** Names that `ps ARGS --filter label=suite=...` lists, in its order (label filters must all match). */
async function names(args: string[]): Promise<string[]> {
  const out = await tsrunOk(["ps", ...args, "--filter", `label=suite=${suite}`, "--format", "{{.Names}}"]);
  return out.split("\n").filter(Boolean);
}

/** The same, among the three containers made first. */
const baseNames = (args: string[]): Promise<string[]> => names([...args, "--filter", "label=base=yes"]);

let exited3 = "";
let exited0 = "";
let web = "";

beforeAll(async () => {
  await importBusybox("busybox");
  // Oldest first: exited3, exited0, web (running, a volume, a published and an exposed port).
  exited3 = await make(["-l", "base=yes", "--expose", "7070", "busybox", "sh", "-c", "exit 3"], 3);
  exited0 = await make(["-l", "base=yes", "-l", "role=zero", "busybox", "true"]);
  web = await make(["-l", "base=yes", "-d", "-v", `${suite}-vol:/data`, "-p", "127.0.0.1::80", "busybox", "sleep", "300"]);
});

afterAll(async () => {
  await tsrun(["rm", "-f", "-v", ...created]);
  await tsrun(["volume", "rm", `${suite}-vol`]);
});

describe("ps --size", () => {
  it("SIZE is the writable layer (files of any owner, hard links once) and the virtual size with the image", async () => {
    const name = await make([
      "-d",
      "busybox",
      "sh",
      "-c",
      // 12 + 1000 bytes; the second file is in a directory only uid 1000 may read.
      "head -c 12 /dev/zero > /f; ln /f /f2; mkdir -p /home/u; head -c 1000 /dev/zero > /home/u/g; chown -R 1000 /home/u; chmod 700 /home/u; touch /ready; sleep 300",
    ]);
    for (let i = 0; i < 100 && (await tsrun(["exec", name, "test", "-e", "/ready"])).code !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    const table = await tsrunOk(["ps", "-s", "--filter", `name=^${name}$`]);
    const [header, row] = table.split("\n");
    expect(header).toMatch(/\s+NAMES\s+SIZE$/);
    expect(row).toMatch(new RegExp(`\\s${name}\\s+1\\.01kB \\(virtual \\d+(\\.\\d+)?[kM]B\\)$`));
    expect(await tsrunOk(["ps", "--filter", `name=^${name}$`, "--format", "{{.Size}}"])).toBe(`${row?.split(/\s{2,}/).pop()}\n`);
    expect(JSON.parse(await tsrunOk(["ps", "--filter", `name=^${name}$`, "--format", "json"])).Size).toMatch(/^1\.01kB \(virtual/);
    expect(JSON.parse(await tsrunOk(["ps", "--filter", `name=^${name}$`, "--format", "{{json .}}"])).Size).toMatch(/^1\.01kB/);
  });
});

describe("ps --filter", () => {
  it("values of one key are alternatives, different keys must all match", async () => {
    expect(await baseNames(["--filter", "status=exited", "--filter", "status=running"])).toEqual(expect.arrayContaining([exited3, exited0, web]));
    expect(await baseNames(["--filter", "status=exited", "--filter", "exited=3"])).toEqual([exited3]);
    expect(await baseNames(["-a", "--filter", "exited=3", "--filter", "exited=0"])).toEqual([exited0, exited3]);
    expect(await baseNames(["-a", "--filter", "label=role=zero"])).toEqual([exited0]);
  });

  it("without -a only running containers, unless a status, before or since filter asks for more", async () => {
    expect(await baseNames(["--filter", "exited=3"])).toEqual([]);
    expect(await baseNames(["--filter", `name=${exited3}`])).toEqual([]);
    expect(await baseNames(["--filter", `before=${web}`])).toEqual([exited0, exited3]);
    expect(await baseNames(["--filter", `since=${exited3}`])).toEqual([web, exited0]);
    expect(await baseNames(["-a", "--filter", `since=${exited3}`, "--filter", `before=${web}`])).toEqual([exited0]);
  });

  it("name (with or without Docker's leading slash), volume, publish, expose, health, ancestor", async () => {
    expect(await baseNames(["-a", "--filter", `name=^/${web}$`])).toEqual([web]);
    expect(await baseNames(["-a", "--filter", `name=^${web}$`])).toEqual([web]);
    expect(await baseNames(["-a", "--filter", `volume=${suite}-vol`])).toEqual([web]);
    expect(await baseNames(["-a", "--filter", "volume=/data"])).toEqual([web]);
    expect(await baseNames(["-a", "--filter", "publish=80"])).toEqual([web]);
    expect(await baseNames(["-a", "--filter", "publish=80/udp"])).toEqual([]);
    expect(await baseNames(["-a", "--filter", "expose=7000-7100"])).toEqual([exited3]);
    expect(await baseNames(["-a", "--filter", "expose=80/tcp"])).toEqual([web]);
    expect(await baseNames(["-a", "--filter", "health=healthy"])).toEqual([]);
    expect(await baseNames(["-a", "--filter", "health=none"])).toEqual([web, exited0, exited3]);
    expect(await baseNames(["-a", "--filter", "ancestor=busybox"])).toEqual([web, exited0, exited3]);
    expect(await baseNames(["-a", "--filter", "label=role=zero", "--filter", "label=base=no"])).toEqual([]);
    expect(await baseNames(["-a", "--filter", "ancestor=no-such-image"])).toEqual([]);
  });

  it("bad filters: one line, exit 125", async () => {
    const cases: [string, string][] = [
      ["status=sleeping", "Error: invalid filter 'status=sleeping'\n"],
      ["exited=x", "Error: invalid filter 'exited=x'\n"],
      ["health=great", "Error: invalid filter 'health=great'\n"],
      ["colour=red", "Error: invalid filter 'colour'\n"],
      ["publish=http", "Error: invalid filter 'publish=http'\n"],
      ["before=no-such-ctr", "Error: no such container: no-such-ctr\n"],
      ["name=(", "Error: invalid filter 'name=(': not a regular expression\n"],
      ["status", 'Error: bad format of filter "status" (expected name=value)\n'],
    ];
    for (const [filter, message] of cases) {
      const r = await tsrun(["ps", "--filter", filter]);
      expect(r.code, filter).toBe(125);
      expect(r.stderr).toBe(message);
    }
  });
});

describe("ps -n and -l", () => {
  it("-n N lists the N newest of every state; -l the newest; a bad number is an error", async () => {
    const newest = await make(["busybox", "true"]);
    expect(await names(["-n", "1"])).toEqual([newest]);
    expect(await names(["-n", "2"])).toHaveLength(2);
    expect((await tsrunOk(["ps", "-l", "--filter", `label=suite=${suite}`, "--format", "{{.Names}} {{.State}}"])).trim()).toBe(`${newest} exited`);
    const r = await tsrun(["ps", "-n", "many"]);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/^Error: invalid argument "many" for "-n, --last"/);
  });
});

describe("container prune --filter", () => {
  it("label=, label!= and until= choose what goes; bad filters fail before anything is removed", async () => {
    const tag = unique("prune");
    const keep = await make(["-l", `prune=${tag}`, "-l", "keep=yes", "busybox", "true"]);
    const drop = await make(["-l", `prune=${tag}`, "busybox", "true"]);
    const bad = await tsrun(["container", "prune", "-f", "--filter", "until=soon"]);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toBe('Error: invalid until filter value "soon"\n');
    // until=1h: created within the hour, so nothing of ours goes.
    expect(await tsrunOk(["container", "prune", "-f", "--filter", `label=prune=${tag}`, "--filter", "until=1h"])).toBe("Total reclaimed space: 0B\n");
    const out = await tsrunOk(["container", "prune", "-f", "--filter", `label=prune=${tag}`, "--filter", "label!=keep"]);
    const id = (await tsrunOk(["inspect", "-f", "{{.Id}}", keep])).trim();
    expect(out).not.toContain(id);
    expect(await names(["-a", "--filter", `label=prune=${tag}`])).toEqual([keep]);
    expect(await names(["-a", "--filter", `name=^${drop}$`])).toEqual([]);
  });
});

describe("commands on several containers", () => {
  it("wait and kill go on past an unknown container, report it, and fail with 125", async () => {
    const a = await make(["-d", "busybox", "sh", "-c", "sleep 0.2; exit 6"]);
    const b = await make(["-d", "busybox", "sleep", "300"]);
    const wait = await tsrun(["wait", a, "no-such-ctr"]);
    expect(wait).toEqual({ code: 125, stdout: "6\n", stderr: "Error: no such container: no-such-ctr\n" });
    const kill = await tsrun(["kill", "no-such-ctr", b]);
    expect(kill).toEqual({ code: 125, stdout: `${b}\n`, stderr: "Error: no such container: no-such-ctr\n" });
    expect((await tsrunOk(["wait", b])).trim()).toBe("137");
  });
});
