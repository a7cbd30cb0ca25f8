// Containers to images, end to end: commit (stopped and running containers, whiteouts, opaque
// directories, owners, setuid, hardlinks, xattrs, --change), export -> import, and diff.
import { beforeAll, describe, expect, it } from "vitest";
import { existsSync, readdirSync, readFileSync, chownSync, writeFileSync } from "node:fs";
import path from "node:path";
import { env, importBusybox, scratchDir, shAsUser, tsrun, unique, tsrunOk } from "./helpers.js";
import { rawTar } from "../unit/tar-builder.js";
import { startPausedAt } from "./faults.js";

const ok = (args: string[]): Promise<string> => tsrunOk(args);

/** What must not change when a command fails: the image index, the layers, the blobs. */
function storeSnapshot(): string {
  const list = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir).filter((n) => !n.startsWith(".tmp")).sort() : []);
  const index = existsSync(path.join(env.storeRoot, "images", "index.json")) ? readFileSync(path.join(env.storeRoot, "images", "index.json"), "utf8") : "";
  return JSON.stringify({ index, layers: list(path.join(env.storeRoot, "layers")), blobs: list(path.join(env.storeRoot, "blobs", "sha256")) });
}

beforeAll(async () => {
  await importBusybox("busybox");
});

describe("commit", () => {
  it("run -> commit -> run sees the change: new, deleted, opaque dir, setuid, owner 1000, hardlink, symlink, fifo", async () => {
    // A first commit gives a layer with /data/old1 and /data/old2 for the opaque test below.
    const first = unique("base");
    await ok(["run", "--name", first, "busybox", "sh", "-c", "mkdir /data && echo 1 > /data/old1 && echo 2 > /data/old2"]);
    const baseId = (await ok(["commit", first, `${first}:img`])).trim();
    expect(baseId).toMatch(/^sha256:[a-f0-9]{64}$/);

    const name = unique("changed");
    const script = [
      "echo hello > /etc/motd",
      "ln /etc/motd /etc/motd.hard",
      "ln -s /etc/motd /etc/motd.sym",
      "rm /etc/group",
      "rm -rf /data && mkdir /data && echo new > /data/new",
      "cp /bin/busybox /usr/bin/suid && chmod 4755 /usr/bin/suid",
      "echo mine > /home/alice/own && chown 1000:1000 /home/alice/own && chmod 640 /home/alice/own",
      "mkfifo /tmp/fifo",
    ].join(" && ");
    await ok(["run", "--name", name, `${first}:img`, "sh", "-c", script]);
    const id = (await ok(["commit", name, `${name}:img`])).trim();
    expect(id).toMatch(/^sha256:[a-f0-9]{64}$/);

    const check = [
      "cat /etc/motd",
      "test ! -e /etc/group && echo group-gone",
      "ls /data | tr '\\n' ' '; echo",
      "stat -c '%a %u:%g' /usr/bin/suid /home/alice/own",
      "cat /home/alice/own",
      "test $(stat -c %i /etc/motd) = $(stat -c %i /etc/motd.hard) && stat -c %h /etc/motd",
      "readlink /etc/motd.sym",
      "test -p /tmp/fifo && echo fifo",
    ].join("; ");
    const r = await tsrun(["run", "--rm", `${name}:img`, "sh", "-c", check]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(["hello", "group-gone", "new ", "4755 0:0", "640 1000:1000", "mine", "2", "/etc/motd", "fifo", ""].join("\n"));
    // Three layers: busybox, the first commit, this one.
    const layers = (await ok(["inspect", "-f", "{{len .RootFS.Layers}}", `${name}:img`])).trim();
    expect(layers).toBe("3");
    // The layer is an OCI layer: whiteout and opaque marker in OCI form, sorted entries.
    const top = (await ok(["inspect", "-f", "{{index .RootFS.Layers 2}}", `${name}:img`])).trim();
    const list = await shAsUser(`tar -tf ${path.join(env.storeRoot, "blobs", "sha256", top.slice(7))}`);
    const entries = list.stdout.trim().split("\n");
    expect(entries).toContain("etc/.wh.group");
    expect(entries).toContain("data/.wh..wh..opq");
    expect(entries).not.toContain("etc/hosts"); // runtime mount points are not the container's change
    expect(entries.indexOf("data/")).toBeLessThan(entries.indexOf("etc/"));
    await tsrun(["rm", first, name]);
  });

  // Changes owned by the container's root alone are packed by the CLI itself, outside the user
  // namespace (Store.pack); what it cannot read or recreate there goes to the storage worker.
  it("a change made by root alone: modes, read-only dirs, user xattrs, whiteouts, links and fifo come out as in the container", async () => {
    const name = unique("rootonly");
    const script = [
      "echo hello > /etc/motd && chmod 600 /etc/motd",
      "ln /etc/motd /etc/motd.hard",
      "ln -s motd /etc/motd.sym",
      "rm /etc/group",
      "mkdir -p /ro/sub && echo inside > /ro/sub/f && chmod 555 /ro/sub /ro",
      "cp /bin/busybox /usr/bin/suid && chmod 4755 /usr/bin/suid",
      "mkdir /sticky && chmod 1777 /sticky",
      "mkfifo /tmp/fifo",
    ].join(" && ");
    await ok(["run", "--name", name, "busybox", "sh", "-c", script]);
    // A user xattr, put there by cp as the container's root.
    const dir = scratchDir("rootonly");
    const file = path.join(dir, "x.tar");
    writeFileSync(file, rawTar([{ name: "noted", mode: 0o644, content: "n\n", pax: { "SCHILY.xattr.user.note": "kept" } }]));
    if (env.user) chownSync(file, env.user.uid, env.user.gid);
    expect((await shAsUser(`"$TSRUN" cp - ${name}:/ < ${file}`)).code).toBe(0);
    await ok(["commit", name, `${name}:img`]);

    const check = [
      "cat /etc/motd /ro/sub/f",
      "stat -c '%a %u:%g %n' /etc/motd /ro /ro/sub /usr/bin/suid /sticky /noted",
      "stat -c %h /etc/motd",
      "readlink /etc/motd.sym",
      "test ! -e /etc/group && echo group-gone",
      "test -p /tmp/fifo && echo fifo",
    ].join("; ");
    const r = await tsrun(["run", "--rm", `${name}:img`, "sh", "-c", check]);
    expect(r.stderr).toBe("");
    expect(r.stdout.split("\n")).toEqual([
      "hello",
      "inside",
      "600 0:0 /etc/motd",
      "555 0:0 /ro",
      "555 0:0 /ro/sub",
      "4755 0:0 /usr/bin/suid",
      "1777 0:0 /sticky",
      "644 0:0 /noted",
      "2",
      "motd",
      "group-gone",
      "fifo",
      "",
    ]);
    // The layer: owners 0:0 (not the host user's ids), the xattr, the whiteout in OCI form.
    const top = (await ok(["inspect", "-f", "{{index .RootFS.Layers 1}}", `${name}:img`])).trim();
    const blobFile = path.join(env.storeRoot, "blobs", "sha256", top.slice(7));
    const listing = (await shAsUser(`tar -tvf ${blobFile} --numeric-owner`)).stdout.trim().split("\n");
    const owners = new Set(listing.map((l) => l.split(/\s+/)[1]));
    expect([...owners]).toEqual(["0/0"]);
    expect(listing.some((l) => l.endsWith(" etc/.wh.group"))).toBe(true);
    expect(readFileSync(blobFile).includes("SCHILY.xattr.user.note=kept\n")).toBe(true);
    // The blob is the tar its digest names (hashed while written, by the CLI this time).
    const sum = (await shAsUser(`sha256sum ${blobFile}`)).stdout.split(" ")[0];
    expect(`sha256:${sum}`).toBe(top);
    await tsrun(["rm", name]);
  });

  it("a root-owned file its owner cannot read (mode 000) is committed through the user namespace", async () => {
    const name = unique("noread");
    await ok(["run", "--name", name, "busybox", "sh", "-c", "echo secret > /secret && chmod 000 /secret && echo open > /open"]);
    await ok(["commit", name, `${name}:img`]);
    const r = await tsrun(["run", "--rm", `${name}:img`, "sh", "-c", "stat -c '%a %u:%g' /secret; cat /secret /open"]);
    expect(r.stdout).toBe("0 0:0\nsecret\nopen\n");
    await tsrun(["rm", name]);
  });

  it("leaves out the HOME run added also for a container whose record has no home (an older tsrun's)", async () => {
    const name = unique("oldrec");
    await ok(["run", "--name", name, "-u", "nobody", "busybox", "true"]);
    const id = (await ok(["inspect", "-f", "{{.Id}}", name])).trim();
    const file = path.join(env.storeRoot, "containers", id, "container.json");
    const record = JSON.parse(readFileSync(file, "utf8")) as { config: { home?: string; env: string[] } };
    expect(record.config.home).toBe("/nonexistent");
    delete record.config.home;
    writeFileSync(file, JSON.stringify(record));
    const img = unique("oldrec-img");
    await ok(["commit", name, img]);
    const committed = JSON.parse(await ok(["inspect", "-f", "{{json .Config.Env}}", img])) as string[];
    expect(committed.some((e) => e.startsWith("HOME="))).toBe(false);
    expect(committed.some((e) => e.startsWith("PATH="))).toBe(true);
    await tsrun(["rm", name]);
  });

  it("-c, -a and -m show in inspect and history; the container's own Cmd and Env are kept otherwise", async () => {
    const name = unique("meta");
    await ok(["run", "--name", name, "-e", "FROM_RUN=1", "busybox", "sh", "-c", "echo x > /x"]);
    const plain = unique("plain");
    await ok(["commit", name, plain]);
    expect((await ok(["inspect", "-f", "{{json .Config.Cmd}}", plain])).trim()).toBe('["sh","-c","echo x > /x"]');
    const env1 = JSON.parse(await ok(["inspect", "-f", "{{json .Config.Env}}", plain])) as string[];
    expect(env1).toContain("FROM_RUN=1");
    expect(env1.some((e) => e.startsWith("HOSTNAME="))).toBe(false);
    // HOME=/root is what run added (root's home in busybox's passwd), not the image's.
    expect(env1.some((e) => e.startsWith("HOME="))).toBe(false);

    const img = unique("changed");
    await ok(["commit", "-c", 'CMD ["echo","x"]', "-c", "ENV A=b", "-c", "LABEL l=v", "-a", "Jane <jane@example.com>", "-m", "my message", name, `${img}:v1`]);
    expect((await ok(["run", "--rm", `${img}:v1`])).trim()).toBe("x");
    const info = JSON.parse(await ok(["inspect", `${img}:v1`])) as Record<string, unknown>[];
    expect(info).toHaveLength(1);
    const image = info[0] as { Author: string; Comment: string; Config: { Cmd: string[]; Env: string[]; Labels: Record<string, string> }; Parent: string };
    expect(image.Author).toBe("Jane <jane@example.com>");
    expect(image.Comment).toBe("my message");
    expect(image.Config.Cmd).toEqual(["echo", "x"]);
    expect(image.Config.Env).toContain("A=b");
    expect(image.Config.Labels).toEqual({ l: "v" });
    expect(image.Parent).toMatch(/^sha256:/);
    const history = await ok(["history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", `${img}:v1`]);
    expect(history.split("\n")[0]).toBe("sh -c echo x > /x|my message");
    await tsrun(["rm", name]);
  });

  it("commits a running container (paused meanwhile, running after) and an unchanged one as an empty layer", async () => {
    const name = unique("live");
    await ok(["run", "-d", "--name", name, "busybox", "sh", "-c", "echo live > /live; sleep 60"]);
    await new Promise((r) => setTimeout(r, 300));
    await ok(["commit", name, `${name}:img`]);
    expect((await ok(["inspect", "-f", "{{.State.Running}}", name])).trim()).toBe("true");
    // Not left stopped by the pause: the container still answers.
    expect((await ok(["exec", name, "cat", "/live"])).trim()).toBe("live");
    await ok(["commit", "-p=false", name, `${name}:nopause`]);
    expect((await ok(["run", "--rm", `${name}:img`, "cat", "/live"])).trim()).toBe("live");
    await tsrun(["rm", "-f", name]);

    const idle = unique("idle");
    await ok(["run", "--name", idle, "busybox", "true"]);
    await ok(["commit", idle, `${idle}:img`]);
    expect((await ok(["inspect", "-f", "{{len .RootFS.Layers}}", `${idle}:img`])).trim()).toBe("1");
    const sizes = await ok(["history", "--format", "{{.Size}}", `${idle}:img`]);
    expect(sizes.split("\n")[0]).toBe("0B");
    await tsrun(["rm", idle]);
  });

  it("commits the same changes again on the stored layer, as Podman does, and makes it again when an rmi took it meanwhile", async () => {
    const name = unique("again");
    // A read-only directory: the layer dir is made by the host user, who must open it up meanwhile.
    await ok(["run", "--name", name, "busybox", "sh", "-c", "mkdir -p /many/sub && for i in 1 2 3; do echo $i > /many/sub/f$i; done && chmod 500 /many/sub && chmod 555 /many"]);
    const layersDir = path.join(env.storeRoot, "layers");
    const layerDirs = (): string[] => readdirSync(layersDir).filter((n) => !n.startsWith(".")).sort();
    const leftovers = (): string[] => readdirSync(layersDir).filter((n) => n.startsWith(".tmp"));
    const top = async (image: string): Promise<string> => (await ok(["inspect", "-f", "{{index .RootFS.Layers 1}}", image])).trim();
    const check = "cat /many/sub/f1 /many/sub/f2 /many/sub/f3; stat -c %a /many /many/sub";

    await ok(["commit", name, `${name}:one`]);
    const withLayer = layerDirs();
    const again = (await ok(["commit", "-m", "again", name, `${name}:two`])).trim();
    expect(again).toMatch(/^sha256:/);
    expect(layerDirs()).toEqual(withLayer);
    expect(await top(`${name}:two`)).toBe(await top(`${name}:one`));
    expect(leftovers()).toEqual([]);
    expect((await ok(["run", "--rm", `${name}:two`, "sh", "-c", check]))).toBe("1\n2\n3\n555\n500\n");

    // Stopped after packing, when it has found the layer stored; both images go meanwhile, and
    // their layer with them: the commit makes it again from its tar.
    const paused = await startPausedAt(["commit", name, `${name}:three`], {}, "commit:packed");
    await ok(["rmi", `${name}:one`, `${name}:two`]);
    expect(layerDirs().length).toBe(withLayer.length - 1);
    const r = await paused.resume();
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(layerDirs()).toEqual(withLayer);
    expect(leftovers()).toEqual([]);
    expect((await ok(["run", "--rm", `${name}:three`, "sh", "-c", check]))).toBe("1\n2\n3\n555\n500\n");
    await tsrun(["rm", name]);
  });

  it("keeps xattrs, file capabilities included, in the layer and the layer dir", async () => {
    const name = unique("caps");
    await ok(["run", "--name", name, "busybox", "true"]);
    // VFS_CAP_REVISION_2 with the effective flag, cap_net_bind_service (bit 10) permitted.
    const cap = Buffer.from([0x01, 0, 0, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const tar = rawTar([{ name: "capfile", mode: 0o755, content: "#!/bin/sh\n", pax: { "SCHILY.xattr.security.capability": cap, "SCHILY.xattr.user.note": "kept" } }]);
    const dir = scratchDir("caps");
    const file = path.join(dir, "caps.tar");
    writeFileSync(file, tar);
    if (env.user) chownSync(file, env.user.uid, env.user.gid);
    expect((await shAsUser(`"$TSRUN" cp - ${name}:/ < ${file}`)).code).toBe(0);
    await ok(["commit", name, `${name}:img`]);
    const top = (await ok(["inspect", "-f", "{{index .RootFS.Layers 1}}", `${name}:img`])).trim();
    const blob = readFileSync(path.join(env.storeRoot, "blobs", "sha256", top.slice(7)));
    const at = blob.indexOf("SCHILY.xattr.security.capability=");
    expect(at).toBeGreaterThan(0);
    const start = at + "SCHILY.xattr.security.capability=".length;
    expect(blob.subarray(start, start + cap.length).equals(cap)).toBe(true);
    expect(blob.includes("SCHILY.xattr.user.note=kept\n")).toBe(true);
    expect(blob.includes("user.overlay.")).toBe(false);
    await tsrun(["rm", name]);
  });

  it("bad input: one line, exit 125, store unchanged", async () => {
    const name = unique("bad");
    await ok(["run", "--name", name, "busybox", "sh", "-c", "echo x > /x"]);
    const before = storeSnapshot();
    for (const args of [
      ["commit", "no-such-container"],
      ["commit", "-c", "RUN echo hi", name],
      ["commit", "-c", "NOTANINSTRUCTION x", name],
      ["commit", name, "Bad:Reference"],
      ["commit", name, "x@sha256:" + "0".repeat(64)],
      ["export", "no-such-container"],
      ["diff", "no-such-container"],
    ]) {
      const r = await tsrun(args);
      expect(r.code, args.join(" ")).toBe(125);
      expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
      expect(r.stdout).toBe("");
    }
    expect(storeSnapshot()).toBe(before);
    await tsrun(["rm", name]);
  });
});

describe("export", () => {
  it("export -> import gives the same content; - and -o both work", async () => {
    const name = unique("exp");
    await ok(["run", "--name", name, "busybox", "sh", "-c", "echo exported > /etc/motd && rm /etc/group && mkdir -p /d/e && ln /etc/motd /d/e/hard && chown 1000:1000 /d/e"]);
    const dir = scratchDir("export");
    const out = path.join(dir, "rootfs.tar");
    await ok(["export", "-o", out, name]);
    const listing = (await shAsUser(`tar -tvf ${out} --numeric-owner`)).stdout;
    // Sorted by name: d/e/hard comes first and carries the data; etc/motd links to it.
    expect(listing).toMatch(/^-\S+ 0\/0 +9 .* d\/e\/hard$/m);
    expect(listing).toMatch(/^h.* etc\/motd link to d\/e\/hard$/m);
    expect(listing).not.toMatch(/etc\/group$/m);
    expect(listing).toMatch(/^d\S+ 1000\/1000 .* d\/e\/$/m);
    const piped = await shAsUser(`"$TSRUN" export ${name} | cmp - ${out} && echo same`);
    expect(piped.stdout.trim()).toBe("same");
    // Standard output a pipe made non-blocking by someone else (the file description is shared),
    // read late: a full pipe is waited for, not an error.
    const nonBlocking = [
      "import os, subprocess, sys, time",
      "r, w = os.pipe()",
      "os.set_blocking(w, False)",
      `p = subprocess.Popen([os.environ["TSRUN"], "export", "${name}"], stdout=w)`,
      "os.close(w)",
      "time.sleep(0.5)",
      'data = b"".join(iter(lambda: os.read(r, 1 << 16), b""))',
      `sys.exit(p.wait() or (0 if data == open("${out}", "rb").read() else 3))`,
    ].join("\n");
    const slowReader = await shAsUser(`python3 -c '${nonBlocking}'`);
    expect(slowReader.code, slowReader.stderr).toBe(0);

    const img = unique("reimported");
    await ok(["import", out, img]);
    const r = await ok(["run", "--rm", img, "sh", "-c", "cat /etc/motd; test -e /etc/group || echo no-group; stat -c '%u' /d/e; stat -c %h /d/e/hard"]);
    expect(r).toBe("exported\nno-group\n1000\n2\n");
    await tsrun(["rm", name]);
  });

  it("exports exactly the tree the running container sees, its layers merged as overlayfs merges them", async () => {
    // Two committed layers over busybox, then a running container's own changes: whiteouts,
    // opaque directories, a directory replacing a file and a file replacing a directory in each.
    const first = unique("merge-a");
    await ok(["run", "--name", first, "busybox", "sh", "-c", "mkdir -p /m/keep /m/gone /m/opq/sub /m/todir /m/tofile && echo k > /m/keep/f && echo g > /m/gone/f && echo o > /m/opq/sub/f && echo t > /m/todir/x && echo f > /m/tofile/x && echo plain > /m/todir2 && ln /m/keep/f /m/keep/link"]);
    await ok(["commit", first, `${first}:img`]);
    const second = unique("merge-b");
    await ok(["run", "--name", second, `${first}:img`, "sh", "-c", "rm -rf /m/gone /m/opq && mkdir -p /m/opq && echo new > /m/opq/n && rm -rf /m/todir && mkdir /m/todir && echo d > /m/todir/y && rm -rf /m/tofile && echo file > /m/tofile && rm /etc/group && echo 2 >> /m/keep/f"]);
    await ok(["commit", second, `${second}:img`]);
    const live = unique("merge-live");
    await ok(["run", "-d", "--name", live, `${second}:img`, "sleep", "600"]);
    await ok(["exec", live, "sh", "-c", "rm -rf /m/keep/f /bin/vi /m/todir2 && mkdir /m/todir2 && echo z > /m/todir2/z && rm -rf /m/opq && mkdir /m/opq && touch /m/opq/only && rm /m/tofile && mkdir /m/tofile && mkdir -p /usr/share/new && chown 1000:1000 /m/opq/only"]);
    // The overlay's own view, from inside (runtime mounts left out: other filesystems, and the
    // files the runtime binds over).
    const listing = "find / -xdev | grep -v -e '^/$' -e '^/proc' -e '^/sys' -e '^/dev' -e '^/etc/hosts$' -e '^/etc/hostname$' -e '^/etc/resolv.conf$' | sort | while read -r f; do stat -c '%n %f %u %g %s %Y' \"$f\"; done";
    const seen = await ok(["exec", live, "sh", "-c", listing]);
    const dir = scratchDir("export-merge");
    await ok(["export", "-o", path.join(dir, "root.tar"), live]);
    const flat = unique("merge-flat");
    await ok(["import", path.join(dir, "root.tar"), flat]);
    const exported = await ok(["run", "--rm", flat, "sh", "-c", listing]);
    expect(exported.split("\n").length).toBeGreaterThan(200);
    expect(exported).toBe(seen);
    expect(seen).toMatch(/^\/m\/opq\/only \S+ 1000 1000 0 /m);
    expect(seen).not.toMatch(/^\/m\/opq\/(n|sub)/m);
    await tsrun(["rm", "-f", live, first, second]);
  });
});

describe("diff", () => {
  it("lists A, C and D like Docker: parents as C, sorted, runtime mount points left out", async () => {
    const name = unique("diff");
    await ok(["run", "--name", name, "busybox", "sh", "-c", "echo x > /newfile; rm /etc/group; echo y >> /etc/passwd; mkdir -p /a/b; touch /a/b/c; mkdir /a-b"]);
    const r = await ok(["diff", name]);
    expect(r).toBe(["A /a", "A /a/b", "A /a/b/c", "A /a-b", "C /etc", "D /etc/group", "C /etc/passwd", "A /newfile", ""].join("\n"));
    await tsrun(["rm", name]);
  });

  it("a directory deleted and made again: C for it, D for what it hid, A for what is new", async () => {
    const base = unique("dbase");
    await ok(["run", "--name", base, "busybox", "sh", "-c", "mkdir -p /data/sub && touch /data/old /data/sub/deep /data/keep"]);
    await ok(["commit", base, `${base}:img`]);
    const name = unique("dopq");
    await ok(["run", "--name", name, `${base}:img`, "sh", "-c", "rm -rf /data && mkdir /data && touch /data/keep /data/new"]);
    expect(await ok(["diff", name])).toBe(["C /data", "C /data/keep", "A /data/new", "D /data/old", "D /data/sub", ""].join("\n"));
    await tsrun(["rm", base, name]);
  });
});
