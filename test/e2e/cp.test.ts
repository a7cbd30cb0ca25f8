// `cp` end to end, both directions, running and stopped containers, tar streams, and the
// symlink attacks that hit Docker and Podman (CVE-2019-10152, CVE-2018-15664).
import { beforeAll, describe, expect, it } from "vitest";
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync, chownSync } from "node:fs";
import path from "node:path";
import { env, importBusybox, scratchDir, shAsUser, tsrun, unique } from "./helpers.js";

function hostTree(): string {
  const dir = scratchDir("cpsrc");
  mkdirSync(path.join(dir, "tree", "sub"), { recursive: true });
  writeFileSync(path.join(dir, "tree", "sub", "f"), "deep\n");
  writeFileSync(path.join(dir, "tree", "top"), "top\n");
  if (env.user) {
    for (const p of ["tree", "tree/sub", "tree/sub/f", "tree/top"]) chownSync(path.join(dir, p), env.user.uid, env.user.gid);
  }
  return dir;
}

beforeAll(async () => {
  await importBusybox("busybox");
});

describe("cp", () => {
  it("copies out of a running container: a file, a directory, its contents (dir/.), and - as tar", async () => {
    const name = unique("cpout");
    await tsrun(["run", "-d", "--name", name, "busybox", "sh", "-c", "mkdir -p /data/d; echo one > /data/d/one; ln -s /etc/passwd /data/d/link; sleep 60"]);
    await new Promise((r) => setTimeout(r, 300));
    const out = scratchDir("cpout");
    expect((await tsrun(["cp", `${name}:/data/d/one`, path.join(out, "renamed")])).code).toBe(0);
    expect(readFileSync(path.join(out, "renamed"), "utf8")).toBe("one\n");
    expect((await tsrun(["cp", `${name}:/data/d`, out])).code).toBe(0);
    expect(readFileSync(path.join(out, "d", "one"), "utf8")).toBe("one\n");
    expect(readlinkSync(path.join(out, "d", "link"))).toBe("/etc/passwd");
    const contents = path.join(out, "contents");
    mkdirSync(contents);
    if (env.user) chownSync(contents, env.user.uid, env.user.gid);
    expect((await tsrun(["cp", `${name}:/data/d/.`, contents])).code).toBe(0);
    expect(existsSync(path.join(contents, "one"))).toBe(true);
    const follow = await tsrun(["cp", "-L", `${name}:/data/d/link`, path.join(out, "passwd")]);
    expect(follow.code).toBe(0);
    expect(readFileSync(path.join(out, "passwd"), "utf8")).toContain("alice:x:1000");
    const tar = await shAsUser(`"$TSRUN" cp ${name}:/data/d/one - | tar -tvf -`);
    expect(tar.stdout).toMatch(/one$/m);
    await tsrun(["rm", "-f", name]);
  });

  it("copies into running and stopped containers; owned by root unless -a; stdin tar with -", async () => {
    const src = hostTree();
    const name = unique("cpin");
    await tsrun(["run", "-d", "--name", name, "busybox", "sleep", "60"]);
    await new Promise((r) => setTimeout(r, 300));
    expect((await tsrun(["cp", path.join(src, "tree"), `${name}:/tmp/`])).code).toBe(0);
    const r = await tsrun(["exec", name, "sh", "-c", "cat /tmp/tree/sub/f; stat -c '%u' /tmp/tree/top"]);
    expect(r.stdout).toBe("deep\n0\n");
    expect((await tsrun(["cp", path.join(src, "tree", "top"), `${name}:/tmp/newname`])).code).toBe(0);
    expect((await tsrun(["exec", name, "cat", "/tmp/newname"])).stdout).toBe("top\n");
    const uid = String(env.user?.uid ?? process.getuid?.());
    expect((await tsrun(["cp", "-a", path.join(src, "tree", "top"), `${name}:/tmp/kept`])).code).toBe(0);
    expect((await tsrun(["exec", name, "stat", "-c", "%u", "/tmp/kept"])).stdout.trim()).toBe(uid);
    const piped = await shAsUser(`tar -C ${path.join(src, "tree")} -cf - top | "$TSRUN" cp - ${name}:/home`);
    expect(piped.code).toBe(0);
    expect((await tsrun(["exec", name, "cat", "/home/top"])).stdout).toBe("top\n");
    await tsrun(["rm", "-f", name]);
    const stopped = unique("cpstopped");
    await tsrun(["run", "--name", stopped, "busybox", "sh", "-c", "echo before > /st"]);
    expect((await tsrun(["cp", path.join(src, "tree", "top"), `${stopped}:/added`])).code).toBe(0);
    const out = scratchDir("cpstopped");
    expect((await tsrun(["cp", `${stopped}:/st`, out])).code).toBe(0);
    expect(readFileSync(path.join(out, "st"), "utf8")).toBe("before\n");
    const again = await tsrun(["start", "-a", stopped]);
    expect(again.code).toBe(0);
    await tsrun(["rm", stopped]);
  });

  it("a symlink inside the container never leads to a host path, in either direction", async () => {
    const hostTarget = scratchDir("victim");
    writeFileSync(path.join(hostTarget, "secret"), "host secret\n");
    const name = unique("hostile");
    // The container points links at host paths that exist on the host.
    await tsrun(["run", "-d", "--name", name, "busybox", "sh", "-c", `mkdir -p ${hostTarget}; ln -s ${hostTarget} /escape; ln -s ${hostTarget}/secret /secretlink; ln -s ../../../../../.. /up; sleep 60`]);
    await new Promise((r) => setTimeout(r, 300));
    const src = hostTree();
    // Into the container through the link: lands in the container's own directory of that name.
    expect((await tsrun(["cp", path.join(src, "tree", "top"), `${name}:/escape/dropped`])).code).toBe(0);
    expect(existsSync(path.join(hostTarget, "dropped"))).toBe(false);
    expect((await tsrun(["exec", name, "cat", `${hostTarget}/dropped`])).stdout).toBe("top\n");
    const hostPath = `/tmp/tsrun-cp-escape-${process.pid}-${Date.now()}`;
    expect((await tsrun(["cp", path.join(src, "tree", "top"), `${name}:/up${hostPath}`])).code).toBe(0);
    expect(existsSync(hostPath)).toBe(false);
    // Out of the container, following the link: reads the container's file, not the host's.
    const out = scratchDir("hostileout");
    const r = await tsrun(["cp", "-L", `${name}:/secretlink`, path.join(out, "got")]);
    expect(r.code).not.toBe(0); // the container has no such file
    expect(existsSync(path.join(out, "got")) && readFileSync(path.join(out, "got"), "utf8").includes("host secret")).toBe(false);
    // Without -L the link itself is copied.
    expect((await tsrun(["cp", `${name}:/secretlink`, path.join(out, "link")])).code).toBe(0);
    expect(lstatSync(path.join(out, "link")).isSymbolicLink()).toBe(true);
    await tsrun(["rm", "-f", name]);
  });

  it("bad arguments are one-line errors", async () => {
    for (const args of [["cp", "a", "b"], ["cp", "nope-x:/a", "/tmp/b"], ["cp", "/no/such/file", "nope-x:/a"]]) {
      const r = await tsrun(args);
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  });

  it("host-side failures are one line, name the cause and leave nothing behind: an unreadable source, a read-only destination", async () => {
    const name = unique("cphostfail");
    expect((await tsrun(["create", "--name", name, "busybox", "true"])).code).toBe(0);
    const src = hostTree();
    if (env.user) {
      // A file the user cannot read (root's, mode 0600: the suite runs as root) in the middle of the tree.
      writeFileSync(path.join(src, "tree", "sub", "secret"), "root only\n", { mode: 0o600 });
      const unreadable = await tsrun(["cp", path.join(src, "tree"), `${name}:/copied`]);
      expect(unreadable.code).toBe(125);
      expect(unreadable.stderr).toMatch(/^Error: cp: open secret: Permission denied\n$/);
    }
    const readOnly = scratchDir("cp-readonly");
    chmodSync(readOnly, 0o555);
    const denied = await tsrun(["cp", `${name}:/etc/passwd`, path.join(readOnly, "passwd")]);
    expect(denied.code).toBe(125);
    expect(denied.stderr).toMatch(/^Error: cp: [^\n]*Permission denied\n$/);
    expect(readdirSync(readOnly)).toEqual([]);
    const listing = await shAsUser(`"$TSRUN" cp ${name}:/ - | tar -tf - | grep -c -e tsrun-cp -e copied`);
    expect(listing.stdout.trim()).toBe("0");
    await tsrun(["rm", "-f", name]);
  });

  it("follows Docker's documented rules for what DEST means, in both directions, on a stopped container", async () => {
    // docker cp: SRC dir/. into a DEST that does not exist creates DEST with the contents; a
    // directory never replaces a file; a file never creates a missing "DEST/"; a trailing "/" on
    // a symlinked source resolves it; a failed copy leaves nothing behind.
    const name = unique("cprules");
    expect((await tsrun(["create", "--name", name, "busybox", "true"])).code).toBe(0);
    const src = hostTree();
    const tree = path.join(src, "tree");
    const fail = async (args: string[], message: RegExp): Promise<void> => {
      const r = await tsrun(["cp", ...args]);
      expect(r.code, r.stderr).toBe(125);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    };
    const okCp = async (args: string[]): Promise<void> => {
      const r = await tsrun(["cp", ...args]);
      expect(r.code, r.stderr).toBe(0);
    };
    await okCp([`${tree}/.`, `${name}:/copied`]);
    await okCp([path.join(tree, "top"), `${name}:/file`]);
    await fail([tree, `${name}:/file`], /^Error: cp: cannot copy a directory to a file/);
    await fail([path.join(tree, "top"), `${name}:/missing/`], /no such directory/);
    await fail([path.join(tree, "top"), `${name}:/missing/x`], /no such directory/);
    await fail(["-", `${name}:/file`], /must be a directory/);
    const out = scratchDir("cprules-out");
    await okCp([`${name}:/copied/.`, path.join(out, "new")]);
    expect(readFileSync(path.join(out, "new", "sub", "f"), "utf8")).toBe("deep\n");
    writeFileSync(path.join(out, "afile"), "keep\n");
    if (env.user) chownSync(path.join(out, "afile"), env.user.uid, env.user.gid);
    await fail([`${name}:/copied`, path.join(out, "afile")], /cannot copy a directory to a file/);
    expect(readFileSync(path.join(out, "afile"), "utf8")).toBe("keep\n");
    await fail([`${name}:/file`, path.join(out, "nodir") + "/"], /no such directory/);
    expect(existsSync(path.join(out, "nodir"))).toBe(false);
    await fail([`${name}:/nothing`, out], /\/nothing: no such file or directory in the container/);
    // A symlink to a directory is copied as a link; with a trailing "/" as the directory.
    await shAsUser(`ln -s /copied/sub ${path.join(out, "l")} && "$TSRUN" cp ${path.join(out, "l")} ${name}:/link && "$TSRUN" cp ${name}:/link ${path.join(out, "aslink")} && "$TSRUN" cp ${name}:/link/ ${path.join(out, "asdir")}`);
    expect(readlinkSync(path.join(out, "aslink"))).toBe("/copied/sub");
    expect(readFileSync(path.join(out, "asdir", "f"), "utf8")).toBe("deep\n");
    // Nothing of the failed copies is left in the container.
    const listing = await shAsUser(`"$TSRUN" cp ${name}:/ - | tar -tf - | grep -c tsrun-cp`);
    expect(listing.stdout.trim()).toBe("0");
    await tsrun(["rm", "-f", name]);
  });
});

