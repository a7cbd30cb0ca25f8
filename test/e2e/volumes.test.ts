// Volumes and mounts end to end: binds (rw/ro), named volumes filled from the image and kept
// across containers, anonymous volumes from VOLUME, --mount, --tmpfs, --volumes-from, rm -v,
// owners inside volumes, and targets that are symlinks inside the image.
import { beforeAll, describe, expect, it } from "vitest";
import { chownSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { env, importBusybox, scratchDir, tsrun, unique } from "./helpers.js";

function subordinateStart(): number {
  const name = env.user ? "tsrun-test" : String(process.getuid?.());
  const line = readFileSync("/etc/subuid", "utf8").split("\n").find((l) => l.startsWith(`${name}:`));
  return Number(line?.split(":")[1]);
}

beforeAll(async () => {
  await importBusybox("busybox");
  await importBusybox("withvolume", ['VOLUME ["/home/alice"]', 'CMD ["sh"]']);
});

describe("bind mounts", () => {
  it("-v HOST:CTR reads and writes the host directory; :ro refuses writes", async () => {
    const dir = scratchDir("bind");
    writeFileSync(path.join(dir, "in"), "from host\n");
    if (env.user) chownSync(path.join(dir, "in"), env.user.uid, env.user.gid);
    const r = await tsrun(["run", "--rm", "-v", `${dir}:/data`, "busybox", "sh", "-c", "cat /data/in; echo from container > /data/out"]);
    expect(r.stdout).toBe("from host\n");
    expect(readFileSync(path.join(dir, "out"), "utf8")).toBe("from container\n");
    const ro = await tsrun(["run", "--rm", "-v", `${dir}:/data:ro`, "busybox", "sh", "-c", "echo x > /data/blocked"]);
    expect(ro.code).not.toBe(0);
    expect(ro.stderr).toMatch(/Read-only file system/);
    expect(existsSync(path.join(dir, "blocked"))).toBe(false);
    const m = await tsrun(["run", "--rm", "--mount", `type=bind,source=${dir},target=/m,readonly`, "busybox", "cat", "/m/in"]);
    expect(m.stdout).toBe("from host\n");
  });

  it("a target that is a symlink in the image resolves inside the container, never on the host", async () => {
    const dir = scratchDir("symlinktarget");
    // /bin/sh -> busybox in the image: mounting on /etc/../bin/.. paths and absolute symlinks stays inside.
    const r = await tsrun(["run", "--rm", "-v", `${dir}:/tmp/../tmp/x`, "busybox", "sh", "-c", "ls -d /tmp/x && touch /tmp/x/ok"]);
    expect(r.code).toBe(0);
    expect(existsSync(path.join(dir, "ok"))).toBe(true);
  });

  it("bad specs are one-line errors", async () => {
    for (const spec of ["rel/ative:/x", "/a:relative", "/a:/b:bogus", ":/x"]) {
      const r = await tsrun(["run", "--rm", "-v", spec, "busybox", "true"]);
      expect(r.code, spec).toBe(125);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
    const missing = await tsrun(["run", "--rm", "--mount", "type=bind,source=/no/such/dir,target=/x", "busybox", "true"]);
    expect(missing.stderr).toMatch(/does not exist/);
  });
});

describe("volumes", () => {
  it("a named volume is created on first use, filled from the image with its owners, and persists", async () => {
    const vol = unique("vol");
    const r = await tsrun(["run", "--rm", "-u", "alice", "-v", `${vol}:/home/alice`, "busybox", "sh", "-c", "echo hi > /home/alice/note; ls -ln /home/alice"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/1000\s+1000\s+3 .* note/);
    const again = await tsrun(["run", "--rm", "-v", `${vol}:/v`, "busybox", "sh", "-c", "cat /v/note; stat -c '%u:%g %a' /v"]);
    expect(again.stdout).toBe("hi\n1000:1000 755\n");
    // On the host the file belongs to the subordinate uid for container uid 1000.
    const data = path.join(env.storeRoot, "volumes", vol, "_data");
    expect(statSync(path.join(data, "note")).uid).toBe(subordinateStart() + 999);
    const ls = await tsrun(["volume", "ls", "-q"]);
    expect(ls.stdout.split("\n")).toContain(vol);
    const inspect = JSON.parse((await tsrun(["volume", "inspect", vol])).stdout);
    expect(inspect[0]).toMatchObject({ Name: vol, Driver: "local", Mountpoint: data });
    expect((await tsrun(["volume", "rm", vol])).code).toBe(0);
    expect(existsSync(path.join(env.storeRoot, "volumes", vol))).toBe(false);
  });

  it("a volume in use cannot be removed", async () => {
    const vol = unique("busy");
    const name = unique("holder");
    await tsrun(["run", "--name", name, "-v", `${vol}:/v`, "busybox", "true"]);
    const rm = await tsrun(["volume", "rm", vol]);
    expect(rm.code).not.toBe(0);
    expect(rm.stderr).toMatch(/in use/);
    await tsrun(["rm", name]);
    expect((await tsrun(["volume", "rm", vol])).code).toBe(0);
  });

  it("VOLUME in the image gets an anonymous volume; --volumes-from shares it; rm -v removes it", async () => {
    const a = unique("anon");
    const b = unique("from");
    expect((await tsrun(["run", "--name", a, "withvolume", "sh", "-c", "echo shared > /home/alice/s"])).code).toBe(0);
    const record = JSON.parse(readFileSync(path.join(env.storeRoot, "containers", (await tsrun(["ps", "-a", "-q", "--no-trunc", "--filter", `name=${a}`])).stdout.trim(), "container.json"), "utf8"));
    const mount = record.hostConfig.mounts.find((m: { target: string }) => m.target === "/home/alice");
    expect(mount).toMatchObject({ type: "volume", anonymous: true });
    const r = await tsrun(["run", "--rm", "--name", b, "--volumes-from", `${a}:ro`, "busybox", "sh", "-c", "cat /home/alice/s; touch /home/alice/t"]);
    expect(r.stdout).toBe("shared\n");
    expect(r.stderr).toMatch(/Read-only/);
    expect(existsSync(path.join(env.storeRoot, "volumes", mount.source))).toBe(true);
    expect((await tsrun(["rm", "-v", a])).code).toBe(0);
    expect(existsSync(path.join(env.storeRoot, "volumes", mount.source))).toBe(false);
  });

  it("--rm removes anonymous volumes but keeps named ones", async () => {
    const before = readdirSync(path.join(env.storeRoot, "volumes")).length;
    expect((await tsrun(["run", "--rm", "-v", "/anon", "withvolume", "true"])).code).toBe(0);
    expect(readdirSync(path.join(env.storeRoot, "volumes")).length).toBe(before);
  });
});

describe("volume ls, inspect and prune as Docker's", () => {
  it("ls --filter (dangling, label, name, driver) and --format; inspect --format; prune --filter, its question and the space it freed", async () => {
    // A store of its own: prune must not touch the other tests' volumes.
    const e = { env: { TSRUN_ROOT: scratchDir("store-volumes") } };
    const ok = async (args: string[], input?: string): Promise<string> => {
      const r = await tsrun(args, { ...e, ...(input !== undefined ? { input } : {}) });
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    expect((await tsrun(["import", path.join(env.base, "busybox.tar"), "busybox"], e)).code).toBe(0);
    await ok(["volume", "create", "--label", "team=core", "--label", "tier=db", "data-core"]);
    await ok(["volume", "create", "--label", "team=web", "data-web"]);
    await ok(["volume", "create", "scratch"]);
    await ok(["run", "-d", "--name", "holder", "-v", "data-web:/w", "busybox", "sleep", "60"]);
    expect(await ok(["volume", "ls", "-q", "--filter", "dangling=true"])).toBe("data-core\nscratch\n");
    expect(await ok(["volume", "ls", "-q", "--filter", "dangling=false"])).toBe("data-web\n");
    expect(await ok(["volume", "ls", "-q", "--filter", "label=team"])).toBe("data-core\ndata-web\n");
    expect(await ok(["volume", "ls", "-q", "--filter", "label=team=core", "--filter", "label=tier"])).toBe("data-core\n");
    expect(await ok(["volume", "ls", "-q", "--filter", "name=data", "--filter", "driver=local"])).toBe("data-core\ndata-web\n");
    expect(await ok(["volume", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}} {{.Labels}} {{.Label \"team\"}}", "--filter", "name=data-core"])).toBe("data-core local local team=core,tier=db core\n");
    expect(await ok(["volume", "ls", "--format", "table {{.Name}}\t{{.Driver}}", "--filter", "name=scratch"])).toBe("VOLUME NAME   DRIVER\nscratch       local\n");
    expect(JSON.parse(await ok(["volume", "ls", "--format", "json", "--filter", "name=scratch"]))).toMatchObject({ Name: "scratch", Driver: "local", Scope: "local", Labels: "" });
    expect(await ok(["volume", "inspect", "--format", "{{.Name}}: {{index .Labels \"tier\"}}", "data-core"])).toBe("data-core: db\n");
    const bad = await tsrun(["volume", "ls", "--filter", "color=red"], e);
    expect([bad.code, bad.stderr]).toEqual([125, "Error: invalid filter 'color'\n"]);

    // prune asks first (no answer: nothing removed); -a with label filters; the volume in use stays.
    expect(await ok(["volume", "prune", "-a"], "n\n")).toContain("WARNING! This will remove all local volumes not used by at least one container.");
    expect(await ok(["volume", "ls", "-q"])).toBe("data-core\ndata-web\nscratch\n");
    const pruned = await ok(["volume", "prune", "-f", "-a", "--filter", "label!=team"]);
    expect(pruned).toMatch(/^Deleted Volumes:\nscratch\n\nTotal reclaimed space: \d+(\.\d+)?[kM]?B\n$/);
    expect(await ok(["volume", "prune", "-f", "--filter", "all=true", "--filter", "label=team=core"])).toMatch(/^Deleted Volumes:\ndata-core\n\n/);
    expect(await ok(["volume", "ls", "-q"])).toBe("data-web\n");
    await tsrun(["rm", "-f", "holder"], e);
  });
});

describe("local driver options (volume create -o)", () => {
  it("type=tmpfs mounts a fresh tmpfs with its options; o=bind mounts the device; rm leaves the device; other types are one line", async () => {
    const tmpfsVolume = unique("vtmpfs");
    expect((await tsrun(["volume", "create", "-d", "local", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=8m,mode=0770", tmpfsVolume])).stdout).toBe(`${tmpfsVolume}\n`);
    const inTmpfs = await tsrun(["run", "--rm", "-v", `${tmpfsVolume}:/data`, "busybox", "sh", "-c", "awk '$2 == \"/data\" {print $3, $4}' /proc/mounts; stat -c %a /data; echo kept > /data/f"]);
    expect(inTmpfs.stdout, inTmpfs.stderr).toMatch(/^tmpfs rw,.*size=8192k.*\n770\n$/);
    // A fresh tmpfs at each mount, as Docker's local driver mounts it.
    expect((await tsrun(["run", "--rm", "-v", `${tmpfsVolume}:/data`, "busybox", "ls", "/data"])).stdout).toBe("");
    expect(JSON.parse((await tsrun(["volume", "inspect", "-f", "{{json .Options}}", tmpfsVolume])).stdout)).toEqual({ type: "tmpfs", device: "tmpfs", o: "size=8m,mode=0770" });

    const device = scratchDir("bind-device");
    writeFileSync(path.join(device, "from-host"), "host\n");
    const bindVolume = unique("vbind");
    expect((await tsrun(["volume", "create", "-o", "type=none", "-o", "o=bind", "-o", `device=${device}`, bindVolume])).code).toBe(0);
    const inBind = await tsrun(["run", "--rm", "-v", `${bindVolume}:/b`, "busybox", "sh", "-c", "cat /b/from-host; echo ctr > /b/from-ctr"]);
    expect(inBind.stdout, inBind.stderr).toBe("host\n");
    expect(readFileSync(path.join(device, "from-ctr"), "utf8")).toBe("ctr\n");
    expect((await tsrun(["run", "--rm", "-v", `${bindVolume}:/b:ro`, "busybox", "sh", "-c", "echo x > /b/no"])).code).not.toBe(0);
    expect((await tsrun(["volume", "rm", tmpfsVolume, bindVolume])).code).toBe(0);
    expect(readdirSync(device).sort()).toEqual(["from-ctr", "from-host"]);

    // --mount makes such a volume when it is new (volume-opt, volume-label; a quoted field may hold commas).
    const byMount = unique("vmount");
    const mounted = await tsrun(["run", "--rm", "--mount", `type=volume,src=${byMount},dst=/d,volume-driver=local,volume-opt=type=tmpfs,"volume-opt=o=size=4m,mode=0700",volume-label=made=by-mount`, "busybox", "sh", "-c", "awk '$2 == \"/d\" {print $3}' /proc/mounts; stat -c %a /d"]);
    expect(mounted.stdout, mounted.stderr).toBe("tmpfs\n700\n");
    expect(await tsrun(["volume", "inspect", "-f", "{{json .Options}} {{json .Labels}}", byMount])).toMatchObject({ code: 0, stdout: '{"o":"size=4m,mode=0700","type":"tmpfs"} {"made":"by-mount"}\n' });
    expect((await tsrun(["volume", "rm", byMount])).code).toBe(0);
    for (const [spec, message] of [
      ["type=volume,src=x1,dst=/d,volume-opt=type=nfs", /^Error: volume type "nfs" needs root to mount/],
      ["type=bind,src=/tmp,dst=/d,volume-opt=type=tmpfs", /volume-opt, volume-label and volume-driver are for type=volume$/],
      ["type=volume,src=x1,dst=/d,volume-driver=nfs", /volume driver nfs is not supported: volumes are local$/],
      ['type=volume,src=x1,dst=/d,"volume-opt=o=x', /a quote is not closed$/],
    ] as [string, RegExp][]) {
      const r = await tsrun(["run", "--rm", "--mount", spec, "busybox", "true"]);
      expect(r.code, spec).toBe(125);
      expect(r.stderr.trim().split("\n"), spec).toEqual([expect.stringMatching(message)]);
    }
    for (const [args, message] of [
      [["-o", "type=nfs", "-o", "device=:/export"], /^Error: volume type "nfs" needs root to mount; rootless, the local driver takes type=tmpfs, or o=bind with device=PATH$/],
      [["-o", "o=bind", "-o", "device=relative/dir"], /^Error: a bind volume needs device=\/absolute\/host\/path/],
      [["-o", "colour=red"], /^Error: invalid option key: "colour"/],
      [["-d", "nfs"], /^Error: volume driver nfs is not supported: volumes are local$/],
    ] as [string[], RegExp][]) {
      const name = unique("vbad");
      const r = await tsrun(["volume", "create", ...args, name]);
      expect(r.code, args.join(" ")).toBe(125);
      expect(r.stderr.trim().split("\n"), args.join(" ")).toEqual([expect.stringMatching(message)]);
      expect((await tsrun(["volume", "ls", "-q", "--filter", `name=${name}`])).stdout).toBe("");
    }
  });
});

describe("tmpfs", () => {
  it("--tmpfs and --mount type=tmpfs give a fresh writable tmpfs, also with --read-only", async () => {
    const r = await tsrun(["run", "--rm", "--read-only", "--tmpfs", "/scratch", "--mount", "type=tmpfs,target=/small,tmpfs-size=1m", "busybox", "sh", "-c", "touch /scratch/a && echo ok; grep -E ' /(scratch|small) ' /proc/mounts | cut -d' ' -f1-3 | sort"]);
    expect(r.stdout).toBe("ok\ntmpfs /scratch tmpfs\ntmpfs /small tmpfs\n");
  });
});
