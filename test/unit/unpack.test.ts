// The layer unpacker against real and hand-crafted tarballs. Runs as root (like the user
// namespace helper it stands in for), so owners, setuid bits, xattrs and whiteouts are real.
import { describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  closeSync,
  constants as fsConstants,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import * as tar from "tar";
import { readReused, unpackLayer, type UnpackResult } from "../../src/store/unpack.js";
import { paxRecords, rawTar, type RawTarEntry } from "./tar-builder.js";
import { at, base, dest, dir, file, fileType, hardlink, perms, sentinel, symlink, unpack, useUnpackSandbox, warnings, xattrsOf } from "./unpack-harness.js";

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFIFO } = fsConstants;

const sha256 = (data: Buffer): string => "sha256:" + createHash("sha256").update(data).digest("hex");
const zstd = (data: Buffer): Buffer => execFileSync("zstd", ["-c", "-q"], { input: data });

useUnpackSandbox();

describe("unpackLayer: archives made by node-tar", () => {
  async function makeTar(): Promise<Buffer> {
    const src = path.join(base, "src");
    mkdirSync(path.join(src, "bin"), { recursive: true });
    mkdirSync(path.join(src, "data"));
    writeFileSync(path.join(src, "bin", "tool"), "#!/bin/sh\necho hi\n");
    chmodSync(path.join(src, "bin", "tool"), 0o755);
    writeFileSync(path.join(src, "bin", "su"), "setuid binary");
    chownSync(path.join(src, "bin", "su"), 0, 0);
    chmodSync(path.join(src, "bin", "su"), 0o4755);
    writeFileSync(path.join(src, "data", "owned"), "by 1000");
    chownSync(path.join(src, "data", "owned"), 1000, 1001);
    symlinkSync("../bin/tool", path.join(src, "data", "link"));
    utimesSync(path.join(src, "data", "owned"), 1_600_000_000, 1_600_000_000);
    utimesSync(path.join(src, "data"), 1_500_000_000, 1_500_000_000);
    const tarFile = path.join(base, "layer.tar");
    await tar.c({ file: tarFile, cwd: src }, ["bin", "data"]);
    const bytes = readFileSync(tarFile);
    rmSync(src, { recursive: true });
    rmSync(tarFile);
    return bytes;
  }

  it.each([
    ["uncompressed", (b: Buffer) => b],
    ["gzip", (b: Buffer) => gzipSync(b)],
    ["zstd", zstd],
  ])("unpacks a %s layer and reports both digests", async (_name, compress) => {
    const layer = await makeTar();
    const blob = compress(layer);
    const result = await unpack(blob, {}, 1000);
    expect(result.diffId).toBe(sha256(layer));
    expect(result.compressedDigest).toBe(sha256(blob));
    expect(result.size).toBe(layer.length);
    expect(result.entries).toBe(6);
    expect(readFileSync(at("bin/tool"), "utf8")).toBe("#!/bin/sh\necho hi\n");
    expect(perms("bin/tool")).toBe(0o755);
    expect(perms("bin/su")).toBe(0o4755);
    const owned = lstatSync(at("data/owned"));
    expect([owned.uid, owned.gid]).toEqual([1000, 1001]);
    expect(owned.mtimeMs).toBe(1_600_000_000_000);
    expect(readlinkSync(at("data/link"))).toBe("../bin/tool");
    // Directory times survive the children created after them.
    expect(statSync(at("data")).mtimeMs).toBe(1_500_000_000_000);
    expect(warnings).toEqual([]);
  });

  it("takes the caller's digest of the input: a plain layer's diffId is that digest, a compressed one is still hashed", async () => {
    const layer = await makeTar();
    // A plain tar is not hashed again: the given digest is its diffId (whatever it says).
    const given = `sha256:${"ab".repeat(32)}`;
    expect(await unpack(layer, { inputDigest: given })).toMatchObject({ diffId: given, compressedDigest: given, size: layer.length });
    const blob = gzipSync(layer);
    expect(await unpack(blob, { inputDigest: sha256(blob) })).toMatchObject({ diffId: sha256(layer), compressedDigest: sha256(blob) });
  });
});

describe("unpackLayer: entry types", () => {
  it("writes regular files with mode, owner and mtime, streaming large ones", async () => {
    const big = Buffer.alloc(24 * 1024 * 1024 + 123);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    const layer = rawTar([
      file("etc/motd", "hello", { mode: 0o640, uid: 12, gid: 34, mtime: 1_234_567_890 }),
      { name: "big.bin", content: big, mode: 0o600 },
      file("empty", ""),
    ]);
    const result = await unpack(gzipSync(layer));
    expect(result.diffId).toBe(sha256(layer));
    const motd = lstatSync(at("etc/motd"));
    expect(motd.mode & S_IFMT).toBe(S_IFREG);
    expect(motd.mode & 0o7777).toBe(0o640);
    expect([motd.uid, motd.gid]).toEqual([12, 34]);
    expect(motd.mtimeMs).toBe(1_234_567_890_000);
    expect(readFileSync(at("etc/motd"), "utf8")).toBe("hello");
    expect(createHash("sha256").update(readFileSync(at("big.bin"))).digest("hex")).toBe(createHash("sha256").update(big).digest("hex"));
    expect(lstatSync(at("empty")).size).toBe(0);
    // The parent the tar did not list was created 0755, owned by root.
    expect(perms("etc")).toBe(0o755);
    expect(lstatSync(at("etc")).uid).toBe(0);
  });

  it("keeps the contents of a directory listed twice but takes the new mode and owner", async () => {
    await unpack(rawTar([dir("d/"), file("d/f", "x"), dir("d/", { mode: 0o700, uid: 5, gid: 6 })]));
    expect(readFileSync(at("d/f"), "utf8")).toBe("x");
    const st = lstatSync(at("d"));
    expect(st.mode & 0o7777).toBe(0o700);
    expect([st.uid, st.gid]).toEqual([5, 6]);
  });

  it("applies a './' entry to the layer root", async () => {
    await unpack(rawTar([dir("./", { mode: 0o711, uid: 3, gid: 4, mtime: 1_000_000 })]));
    const st = lstatSync(dest);
    expect(st.mode & 0o7777).toBe(0o711);
    expect([st.uid, st.gid]).toEqual([3, 4]);
    expect(st.mtimeMs).toBe(1_000_000_000);
  });

  it("creates symlinks with their own owner and mtime (lchown, no follow)", async () => {
    await unpack(rawTar([file("target", "t", { uid: 1, gid: 1, mtime: 1_000 }), symlink("link", "target", { uid: 7, gid: 8, mtime: 2_000 })]));
    const link = lstatSync(at("link"));
    expect(link.mode & S_IFMT).toBe(S_IFLNK);
    expect(readlinkSync(at("link"))).toBe("target");
    expect([link.uid, link.gid]).toEqual([7, 8]);
    expect(link.mtimeMs).toBe(2_000_000);
    const target = lstatSync(at("target"));
    expect([target.uid, target.gid, target.mtimeMs]).toEqual([1, 1, 1_000_000]);
  });

  it("creates hardlinks to files extracted earlier", async () => {
    await unpack(rawTar([file("a/orig", "shared", { mode: 0o755, uid: 9 }), hardlink("b/copy", "a/orig"), hardlink("/abs-copy", "/a/orig")]));
    const orig = lstatSync(at("a/orig"));
    expect(lstatSync(at("b/copy")).ino).toBe(orig.ino);
    expect(lstatSync(at("abs-copy")).ino).toBe(orig.ino);
    expect(orig.nlink).toBe(3);
    expect(orig.uid).toBe(9);
  });

  it("hardlinks a symlink extracted earlier as one more name of the link (as Docker and Podman do)", async () => {
    await unpack(rawTar([symlink("s", "/etc/passwd"), hardlink("h", "s")]));
    expect(readlinkSync(at("h"))).toBe("/etc/passwd");
    expect(lstatSync(at("h")).ino).toBe(lstatSync(at("s")).ino);
  });

  it.each([
    ["a missing file", [hardlink("h", "nope")]],
    ["a directory", [dir("d/"), hardlink("h", "d")]],
    ["a path above the root", [hardlink("h", "../../etc/passwd")]],
    ["a host path that is not in the layer", [hardlink("h", "/etc/passwd")]],
  ])("refuses a hardlink to %s", async (_what, entries) => {
    await expect(unpack(rawTar(entries))).rejects.toThrow(/layer entry "h": .*(hardlink target|climbs above)/);
    expect(existsSync(at("h"))).toBe(false);
  });

  it("creates FIFOs", async () => {
    await unpack(rawTar([{ name: "run/pipe", type: "6", mode: 0o620, uid: 3, gid: 5, mtime: 5_000 }]));
    const st = lstatSync(at("run/pipe"));
    expect(st.mode & S_IFMT).toBe(S_IFIFO);
    expect(st.mode & 0o7777).toBe(0o620);
    expect([st.uid, st.gid, st.mtimeMs]).toEqual([3, 5, 5_000_000]);
  });

  it("skips character and block devices with one warning", async () => {
    const result = await unpack(
      rawTar([
        { name: "dev/null", type: "3", mode: 0o666, devMajor: 1, devMinor: 3 },
        { name: "dev/sda", type: "4", mode: 0o660, devMajor: 8, devMinor: 0 },
        file("dev/ok", "x"),
      ]),
    );
    expect(result.entries).toBe(3);
    expect(existsSync(at("dev/null"))).toBe(false);
    expect(existsSync(at("dev/sda"))).toBe(false);
    expect(existsSync(at("dev/ok"))).toBe(true);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/device nodes.*"dev\/null" \(char 1:3\).*"dev\/sda" \(block 8:0\)/);
  });

  it("keeps setuid, setgid and sticky bits on owned entries (chmod after chown)", async () => {
    await unpack(
      rawTar([
        file("suid", "x", { mode: 0o4755, uid: 1000, gid: 1000 }),
        file("sgid", "x", { mode: 0o2711, uid: 0, gid: 50 }),
        dir("tmp/", { mode: 0o1777, uid: 2, gid: 2 }),
      ]),
    );
    expect(perms("suid")).toBe(0o4755);
    expect(lstatSync(at("suid")).uid).toBe(1000);
    expect(perms("sgid")).toBe(0o2711);
    expect(perms("tmp")).toBe(0o1777);
  });

  it("sets xattrs from PAX records, including binary file capabilities", async () => {
    // vfs_cap_data v2, effective, permitted = CAP_SETUID (bit 7: a 0x80 byte, not UTF-8) | CAP_NET_RAW.
    const capability = Buffer.from([0x01, 0, 0, 0x02, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    await unpack(
      rawTar([
        file("bin/ping", "elf", {
          mode: 0o755,
          uid: 0,
          pax: {
            "SCHILY.xattr.security.capability": capability,
            "SCHILY.xattr.user.comment": "hello=world\nwith a newline",
            "SCHILY.xattr.trusted.secret": "no",
            "LIBARCHIVE.xattr.user.from%20libarchive": Buffer.from("bin\u0000ary").toString("base64"),
          },
        }),
        dir("d/", { pax: { "SCHILY.xattr.user.dir": "yes", "SCHILY.xattr.user.overlay.redirect": "/elsewhere" } }),
      ]),
    );
    const ping = xattrsOf("bin/ping");
    expect(ping["security.capability"]).toEqual(capability);
    expect(ping["user.comment"]?.toString()).toBe("hello=world\nwith a newline");
    expect(ping["user.from libarchive"]).toEqual(Buffer.from("bin\u0000ary"));
    expect(ping["trusted.secret"]).toBeUndefined();
    expect(perms("bin/ping")).toBe(0o755);
    const d = xattrsOf("d");
    expect(d["user.dir"]?.toString()).toBe("yes");
    expect(d["user.overlay.redirect"]).toBeUndefined();
    expect(warnings.join("\n")).toMatch(/trusted\.secret.*"bin\/ping"/);
    // Another overlay's bookkeeping (Podman 4 leaks it into layers): dropped quietly.
    expect(warnings.join("\n")).not.toMatch(/overlay/);
  });
});

describe("unpackLayer: sparse files (GNU tar --sparse)", () => {
  /** A file of 200 data runs that ends in a hole, one that is all hole, and a plain one after them. */
  function sparseSource(): { src: string; contents: Record<string, Buffer> } {
    const src = path.join(base, "src");
    mkdirSync(src);
    const many = Buffer.alloc(200 * 65536 + 3 * 4096);
    for (let i = 0; i < 200; i++) many.fill(i + 1, i * 65536 + i, i * 65536 + i + 100 + i);
    const fd = openSync(path.join(src, "many"), "w");
    for (let i = 0; i < 200; i++) writeSync(fd, many, i * 65536 + i, 100 + i, i * 65536 + i);
    closeSync(fd);
    truncateSync(path.join(src, "many"), many.length);
    writeFileSync(path.join(src, "hole"), "");
    truncateSync(path.join(src, "hole"), 5 << 20);
    writeFileSync(path.join(src, "plain"), "after the sparse ones\n");
    return { src, contents: { many, hole: Buffer.alloc(5 << 20), plain: Buffer.from("after the sparse ones\n") } };
  }

  it.each([
    ["old GNU headers with extension blocks", ["tar", "--sparse", "--format=gnu"]],
    ["PAX 0.0", ["tar", "--sparse", "--format=posix", "--sparse-version=0.0"]],
    ["PAX 0.1", ["tar", "--sparse", "--format=posix", "--sparse-version=0.1"]],
    ["PAX 1.0 (a map of several blocks)", ["tar", "--sparse", "--format=posix", "--sparse-version=1.0"]],
    ["bsdtar's PAX 1.0", ["bsdtar", "--format=pax"]],
  ])("unpacks %s with their contents, sizes and holes", async (_format, [tool, ...flags]) => {
    const { src, contents } = sparseSource();
    const layer = execFileSync(tool as string, [...flags, "-cf", "-", "-C", src, "many", "hole", "plain"], { maxBuffer: 64 << 20 });
    rmSync(src, { recursive: true });
    // Small chunks: maps, runs and headers cross chunk boundaries everywhere.
    const result = await unpack(layer, {}, 1000);
    expect(result.entries).toBe(3);
    for (const [name, expected] of Object.entries(contents)) {
      const got = readFileSync(at(name));
      expect(got.length, name).toBe(expected.length);
      expect(got.equals(expected), name).toBe(true);
    }
    // The holes stay holes: the 13 MB file takes well under a megabyte, the 5 MB hole nothing.
    expect(statSync(at("many")).blocks * 512).toBeLessThan(1 << 20);
    expect(statSync(at("hole")).blocks).toBe(0);
  });
});

describe("unpackLayer: OCI whiteouts in overlay form", () => {
  it("turns .wh.NAME into a 0:0 char device and .wh..wh..opq into the opaque xattr", async () => {
    const result = await unpack(
      rawTar([
        dir("etc/"),
        file("etc/.wh.gone", ""),
        dir("var/cache/"),
        file("var/cache/.wh..wh..opq", ""),
        file("var/cache/new", "n"),
        file("opt/.wh..wh..opq", ""), // parent not listed: created, then made opaque
        file(".wh..wh..plnk", ""), // other AUFS metadata: ignored
      ]),
    );
    expect(result.entries).toBe(7);
    const gone = lstatSync(at("etc/gone"));
    expect(gone.mode & S_IFMT).toBe(S_IFCHR);
    expect(gone.rdev).toBe(0);
    expect(existsSync(at("etc/.wh.gone"))).toBe(false);
    expect(xattrsOf("var/cache")["user.overlay.opaque"]?.toString()).toBe("y");
    expect(readFileSync(at("var/cache/new"), "utf8")).toBe("n");
    expect(xattrsOf("opt")["user.overlay.opaque"]?.toString()).toBe("y");
    expect(readdirSync(dest).sort()).toEqual(["etc", "opt", "var"]);
  });

  it("hides only lower layers: entries of the same layer stay, in either order", async () => {
    await unpack(
      rawTar([
        file("kept", "mine"),
        file(".wh.kept", ""),
        dir("d/"),
        file("d/inner", "i"),
        file(".wh.d", ""),
        file(".wh.later", ""),
        file("later/child", "c"),
        file(".wh.replaced", ""),
        file("replaced", "r"),
      ]),
    );
    expect(readFileSync(at("kept"), "utf8")).toBe("mine");
    // A directory of this layer whose lower version is whited out hides the lower contents.
    expect(readFileSync(at("d/inner"), "utf8")).toBe("i");
    expect(xattrsOf("d")["user.overlay.opaque"]?.toString()).toBe("y");
    expect(fileType("later")).toBe(S_IFDIR);
    expect(xattrsOf("later")["user.overlay.opaque"]?.toString()).toBe("y");
    expect(readFileSync(at("later/child"), "utf8")).toBe("c");
    expect(fileType("replaced")).toBe(S_IFREG);
  });

  it("refuses whiteouts that name the directory itself or its parent", async () => {
    await expect(unpack(rawTar([file("a/.wh..", "")]))).rejects.toThrow(/whiteout does not name an entry/);
  });
});

describe("unpackLayer: entries replacing earlier ones", () => {
  it("removes the old entry first; a directory with its whole tree", async () => {
    await unpack(
      rawTar([
        file("p", "file"),
        symlink("p", "elsewhere"),
        dir("q/"),
        dir("q/deep/", { mode: 0o500 }),
        file("q/deep/f", "x", { mode: 0o000 }),
        symlink("q/deep/l", "/"),
        file("q", "now a file"),
        symlink("r", "/"),
        dir("r/", { mode: 0o750 }),
        file("s", "old"),
        file("s", "new"),
      ]),
    );
    expect(readlinkSync(at("p"))).toBe("elsewhere");
    expect(readFileSync(at("q"), "utf8")).toBe("now a file");
    expect(fileType("r")).toBe(S_IFDIR);
    expect(perms("r")).toBe(0o750);
    expect(readFileSync(at("s"), "utf8")).toBe("new");
  });

  it("sets directory mtimes after all their children", async () => {
    await unpack(rawTar([dir("d/", { mtime: 1_000 }), dir("d/e/", { mtime: 2_000 }), file("d/e/f", "x", { mtime: 3_000 }), file("d/g", "y")]));
    expect(lstatSync(at("d")).mtimeMs).toBe(1_000_000);
    expect(lstatSync(at("d/e")).mtimeMs).toBe(2_000_000);
    expect(lstatSync(at("d/e/f")).mtimeMs).toBe(3_000_000);
  });
});

describe("unpackLayer: owners outside the user namespace", () => {
  it("refuses them by default, naming the file and the id", async () => {
    await expect(unpack(rawTar([file("home/u/f", "x", { uid: 70000 })]))).rejects.toThrow(/layer entry "home\/u\/f": is owned by uid 70000, but the user namespace only has uids 0-65535/);
    await expect(unpack(rawTar([file("g", "x", { gid: 65536 })]), { maxGid: 65535 })).rejects.toThrow(/"g": is owned by gid 65536/);
  });

  it("squashes them to root with one warning when asked", async () => {
    await unpack(rawTar([file("a", "x", { uid: 70000, gid: 5 }), file("b", "x", { uid: 1, gid: 99999 }), symlink("c", "a", { uid: 80000 })]), {
      squashUnmappedOwners: true,
    });
    expect([lstatSync(at("a")).uid, lstatSync(at("a")).gid]).toEqual([0, 5]);
    expect([lstatSync(at("b")).uid, lstatSync(at("b")).gid]).toEqual([1, 0]);
    expect(lstatSync(at("c")).uid).toBe(0);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/changed to root.*"a" uid 70000.*"b" gid 99999.*"c" uid 80000/);
  });
});

describe("unpackLayer: hostile archives", () => {
  it("makes absolute paths relative to the layer root", async () => {
    await unpack(rawTar([file("/abs/file", "x"), file("//double", "y")]));
    expect(readFileSync(at("abs/file"), "utf8")).toBe("x");
    expect(readFileSync(at("double"), "utf8")).toBe("y");
  });

  it.each(["../escape", "a/../../escape", "./../escape"])("refuses %s, which climbs above the root", async (name) => {
    await expect(unpack(rawTar([file(name, "pwned")]))).rejects.toThrow(/climbs above the layer root/);
    expect(existsSync(path.join(base, "escape"))).toBe(false);
  });

  it("resolves an absolute symlink inside the root when a later entry goes through it", async () => {
    // The layer holds its own copy of the sentinel's path; "/<sentinel>" means dest/<sentinel>.
    const inLayer = sentinel.slice(1);
    await unpack(rawTar([dir(`${inLayer}/`), symlink("escape", sentinel), file("escape/pwned", "pwned"), file("escape/keep", "overwritten")]));
    expect(readFileSync(at(`${inLayer}/pwned`), "utf8")).toBe("pwned");
    expect(readFileSync(at(`${inLayer}/keep`), "utf8")).toBe("overwritten");
    // afterEach checks the real sentinel is untouched.
  });

  it("refuses to write through a symlink to a host directory the layer does not have", async () => {
    const outside = path.join(base, "outside");
    await expect(unpack(rawTar([symlink("link", outside), file("link/passwd", "pwned")]))).rejects.toThrow(
      /"link\/passwd": parent "link" is a symlink that does not lead to a directory inside the layer/,
    );
    expect(existsSync(outside)).toBe(false);
  });

  it("keeps a symlink to ../../.. inside the root", async () => {
    await unpack(rawTar([symlink("up", "../../.."), file("up/pwned", "x"), dir("up/sub/"), file("up/sub/f", "y")]));
    expect(readFileSync(at("pwned"), "utf8")).toBe("x");
    expect(readFileSync(at("sub/f"), "utf8")).toBe("y");
    expect(existsSync(path.join(base, "pwned"))).toBe(false);
    expect(existsSync(path.join(path.dirname(base), "pwned"))).toBe(false);
  });

  it("replaces a symlink rather than writing through it", async () => {
    const target = path.join(sentinel, "keep");
    await unpack(rawTar([symlink("f", target), file("f", "new content")]));
    expect(fileType("f")).toBe(S_IFREG);
    expect(readFileSync(at("f"), "utf8")).toBe("new content");
  });

  it.each([
    [".", "."],
    ["./", "./"],
    ["a/..", "a/.."],
  ])("refuses a symlink named %s (CVE-2021-29136)", async (_label, name) => {
    await expect(unpack(rawTar([symlink(name, sentinel)]))).rejects.toThrow(/cannot replace the layer root/);
    expect(lstatSync(dest).isDirectory()).toBe(true);
  });

  it("refuses an entry without a name", async () => {
    await expect(unpack(rawTar([symlink("", "/")]))).rejects.toThrow(/invalid layer tarball/);
  });

  it("refuses NUL bytes and overlong names", async () => {
    await expect(unpack(rawTar([file("x", "a", { pax: { path: "a\u0000b" } })]))).rejects.toThrow(/NUL byte/);
    await expect(unpack(rawTar([file("x", "a", { pax: { path: "n".repeat(300) } })]))).rejects.toThrow(/longer than 255 bytes/);
    await expect(unpack(rawTar([file("x", "a", { pax: { path: "d/".repeat(2100) + "f" } })]))).rejects.toThrow(/longer than 4095 bytes/);
  });

  it.each([
    ["a negative base-256 size", { sizeField: Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]) }, /size is negative/],
    ["a size too large for a number", { sizeField: Buffer.from([0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) }, /size is too large/],
    ["a negative octal size", { sizeField: Buffer.from("-0000000010\0", "latin1") }, /is not an octal number/],
    ["a huge size with no data behind it", { sizeField: Buffer.from("77777777777\0", "latin1") }, /truncated/],
    ["a bad header checksum", { badChecksum: true }, /checksum mismatch/],
  ])("refuses a header with %s", async (_what, fields, message) => {
    await expect(unpack(rawTar([file("a", "content", fields as Partial<RawTarEntry>)]))).rejects.toThrow(message);
  });

  it("refuses data on header-only entries, where tar readers disagree", async () => {
    const smuggled = rawTar([file("hidden", "smuggled")], { end: false });
    await expect(unpack(rawTar([symlink("l", "t", { content: smuggled })]))).rejects.toThrow(/claims 1024 bytes of data/);
    expect(existsSync(at("hidden"))).toBe(false);
  });

  it("refuses unknown entry types", async () => {
    await expect(unpack(rawTar([{ name: "q", type: "Q" }]))).rejects.toThrow(/entry type "Q"/);
  });

  it.each([
    ["a map accounting for more bytes than stored", { "GNU.sparse.size": "100", "GNU.sparse.map": "0,5" }, /accounts for 5 bytes of data, the entry stores 3/],
    ["a map accounting for fewer bytes than stored", { "GNU.sparse.size": "100", "GNU.sparse.map": "0,1" }, /accounts for 1 bytes/],
    ["overlapping runs", { "GNU.sparse.size": "100", "GNU.sparse.map": "0,2,1,1" }, /overlap or are out of order/],
    ["a run past the file's size", { "GNU.sparse.size": "2", "GNU.sparse.map": "0,3" }, /goes past the file's size 2/],
    ["an offset without a length", { "GNU.sparse.size": "100", "GNU.sparse.map": "0,3,5" }, /offset without a length/],
    ["no real size", { "GNU.sparse.map": "0,3" }, /without GNU\.sparse\.size/],
    ["an unknown version", { "GNU.sparse.major": "2", "GNU.sparse.minor": "0", "GNU.sparse.size": "3" }, /unsupported sparse file format "2\.0"/],
    ["a wrong run count", { "GNU.sparse.size": "100", "GNU.sparse.numblocks": "2", "GNU.sparse.map": "0,3" }, /numblocks says 2 runs, the map has 1/],
    ["a 1.0 map past the data", { "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "9" }, /sparse map runs past the entry's data|malformed sparse map/],
    ["a malformed number", { "GNU.sparse.size": "1e3", "GNU.sparse.map": "0,3" }, /GNU\.sparse\.size "1e3" is not a valid number/],
  ])("refuses a sparse file with %s, and reads nothing after it", async (_what, pax, message) => {
    await expect(unpack(rawTar([file("s", "abc", { pax }), file("after", "x")]))).rejects.toThrow(message);
    expect(existsSync(at("after"))).toBe(false);
  });

  it("refuses sparse records on a symlink and in a global header, and a stream that ends inside a sparse map", async () => {
    await expect(unpack(rawTar([symlink("l", "t", { pax: { "GNU.sparse.size": "3", "GNU.sparse.map": "0,3" } })]))).rejects.toThrow(/not a regular file/);
    const global = { name: "g", type: "g", content: paxRecords({ "GNU.sparse.map": "0,1" }) };
    await expect(unpack(rawTar([global, file("f", "x")]))).rejects.toThrow(/global PAX header has sparse file records/);
    // A 1.0 map's count line promises runs the stream never brings.
    const map = "999\n" + "0\n".repeat(254);
    const cut = rawTar([file("s", map, { size: 1024, pax: { "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "9" } })], { end: false });
    await expect(unpack(cut)).rejects.toThrow(/truncated/);
  });

  it("refuses truncated and corrupt streams", async () => {
    const layer = rawTar([file("a", "x".repeat(5000)), file("b", "y")]);
    await expect(unpack(layer.subarray(0, 3000))).rejects.toThrow(/truncated/);
    await expect(unpack(layer.subarray(0, 5000 + 512 + 100))).rejects.toThrow(/truncated/);
    const gz = gzipSync(layer);
    await expect(unpack(gz.subarray(0, gz.length - 20))).rejects.toThrow(/not valid gzip/);
    const corrupt = Buffer.from(gz);
    corrupt[30] = (corrupt[30] ?? 0) ^ 0xff;
    await expect(unpack(corrupt)).rejects.toThrow(/not valid gzip|invalid layer tarball/);
    const zst = zstd(layer);
    await expect(unpack(zst.subarray(0, zst.length - 10))).rejects.toThrow(/not valid zstd/);
    await expect(unpack(Buffer.from("this is not a tar archive at all, just some text that is long enough".repeat(10)))).rejects.toThrow(
      /invalid layer tarball/,
    );
  });

  it("names a header of random bytes by its position, not by its garbage name", async () => {
    const junk = Buffer.alloc(4096);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919 + 13) % 251 || 1;
    const err = await unpack(junk).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/invalid layer tarball: tar header 1: /);
    expect(err?.message).toMatch(/^[\x20-\x7e]*$/);
  });

  it("refuses a layer compressed twice and unsupported compressions", async () => {
    const layer = rawTar([file("a", "x")]);
    await expect(unpack(gzipSync(gzipSync(layer)))).rejects.toThrow(/compressed twice/);
    // Through an UnpackFeed the caller has inflated once already: gzip here is the second one.
    await expect(unpack(gzipSync(layer), { fromFeed: true })).rejects.toThrow(/compressed twice/);
    expect((await unpack(layer, { fromFeed: true })).diffId).toBe(sha256(layer));
    const xz = Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.alloc(100)]);
    await expect(unpack(xz)).rejects.toThrow(/xz-compressed/);
  });
});

describe("unpackLayer: stream handling", () => {
  it("accepts empty layers (only the end marker, or no bytes at all)", async () => {
    const empty = Buffer.alloc(1024);
    const result = await unpack(gzipSync(empty));
    expect(result).toMatchObject({ diffId: sha256(empty), size: 1024, entries: 0 });
    const none = await unpack(Buffer.alloc(0));
    expect(none).toMatchObject({ diffId: sha256(Buffer.alloc(0)), size: 0, entries: 0 });
    expect(readdirSync(dest)).toEqual([]);
  });

  it("gives the same result whatever the chunk boundaries, and hashes bytes after the end marker", async () => {
    const layer = Buffer.concat([
      rawTar([dir("d/", { mtime: 10 }), file("d/f", "z".repeat(1500), { pax: { "SCHILY.xattr.user.k": "v" } }), symlink("d/l", "f")]),
      Buffer.alloc(10 * 1024), // padding some writers add after the end marker
    ]);
    for (const chunkSize of [1, 7, 511, 513, 4096]) {
      rmSync(dest, { recursive: true });
      mkdirSync(dest);
      const result = await unpack(layer, {}, chunkSize);
      expect(result.diffId).toBe(sha256(layer));
      expect(result.size).toBe(layer.length);
      expect(readFileSync(at("d/f"), "utf8")).toBe("z".repeat(1500));
      expect(xattrsOf("d/f")["user.k"]?.toString()).toBe("v");
      expect(readlinkSync(at("d/l"))).toBe("f");
      expect(lstatSync(at("d")).mtimeMs).toBe(10_000);
    }
  });

  it("reads PAX ids and times (with fractions), global PAX defaults, GNU long link targets and base-256 ids", async () => {
    const longTarget = `${"t".repeat(150)}/target`;
    const base256Uid = Buffer.alloc(8);
    base256Uid[0] = 0x80;
    base256Uid.writeUInt32BE(70_000, 4);
    const layer = rawTar([
      file("big-uid", "b", { uidField: base256Uid }),
      { name: "GlobalHead", type: "g", content: paxRecords({ mtime: "1500000000", uid: "41" }) },
      file("pax", "p", { pax: { uid: "2000", gid: "3000", mtime: "1600000000.25", atime: "1600000001.5" } }),
      file("global", "g", { gid: 5 }),
      { name: "././@LongLink", type: "K", content: Buffer.from(`${longTarget}\0`) },
      symlink("long-link", "ignored"),
    ]);
    await unpack(layer, { maxUid: 100_000 });
    const pax = lstatSync(at("pax"), { bigint: true });
    expect([pax.uid, pax.gid]).toEqual([2000n, 3000n]);
    expect(pax.mtimeNs).toBe(1_600_000_000_250_000_000n);
    expect(pax.atimeNs).toBe(1_600_000_001_500_000_000n);
    const global = lstatSync(at("global"));
    expect([global.uid, global.gid, global.mtimeMs]).toEqual([41, 5, 1_500_000_000_000]);
    expect(readlinkSync(at("long-link"))).toBe(longTarget);
    expect(lstatSync(at("big-uid")).uid).toBe(70_000);
  });

  it("never reuses a directory fd for a path that was replaced: a later symlink there is resolved in-root", async () => {
    // d is a real directory (its fd cached), then replaced by a symlink to e: d/f lands in e.
    await unpack(rawTar([dir("d/"), file("d/before", "1"), dir("e/"), symlink("d", "/e"), file("d/f", "through the link")]));
    expect(fileType("d")).toBe(S_IFLNK);
    expect(readFileSync(at("e/f"), "utf8")).toBe("through the link");
    expect(existsSync(at("e/before"))).toBe(false);
  });

  it("leaves no file descriptor open, after success or failure", async () => {
    const openFds = (): number => readdirSync("/proc/self/fd").length;
    const before = openFds();
    await unpack(rawTar([dir("d/"), file("d/f", "x"), symlink("l", "d"), { name: "p", type: "6" }]));
    // Cut inside a file's data: the file being written must still be closed.
    await expect(unpack(rawTar([file("big", "b".repeat(100_000))]).subarray(0, 50_000), {}, 4096)).rejects.toThrow(/truncated/);
    await expect(unpack(rawTar([file("ok", "x"), hardlink("h", "missing")]))).rejects.toThrow(/hardlink/);
    await expect(unpack(rawTar([file("deep/er/f", "x", { uid: 99999 })]))).rejects.toThrow(/uid 99999/);
    expect(openFds()).toBe(before);
  });

  it("reads a file into one reused buffer (readReused): plain, gzip and zstd layers come out whole, digests right", async () => {
    // Files large enough for many reads of the small buffer, and random so that a chunk
    // overwritten before a decompressor read it would show in the content and the digests.
    const big = randomBytes(300_000).toString("base64");
    const layer = rawTar([dir("d/"), file("d/big", big), file("d/small", "s"), symlink("d/l", "big")]);
    for (const [kind, bytes] of [
      ["plain", layer],
      ["gzip", gzipSync(layer)],
      ["zstd", zstd(layer)],
    ] as const) {
      rmSync(dest, { recursive: true });
      mkdirSync(dest);
      const blob = path.join(base, "blob");
      writeFileSync(blob, bytes);
      const fd = openSync(blob, "r");
      let result: UnpackResult;
      try {
        result = await unpackLayer(readReused(fd, 4096), dest, { maxUid: 65535, maxGid: 65535, onWarning: (m) => warnings.push(m), reusedChunks: true });
      } finally {
        closeSync(fd);
        rmSync(blob);
      }
      expect(result.diffId, kind).toBe(sha256(layer));
      expect(result.compressedDigest, kind).toBe(sha256(bytes));
      expect(readFileSync(at("d/big"), "utf8"), kind).toBe(big);
      expect(readlinkSync(at("d/l")), kind).toBe("big");
    }
  });

  it("handles long names from PAX and GNU long-name headers", async () => {
    const longDir = "l".repeat(200);
    const gnuName = Buffer.from(`${longDir}/gnu-file\0`);
    const gnu = rawTar([{ name: "././@LongLink", type: "L", content: gnuName }, file("short", "g")], { end: false });
    const layer = Buffer.concat([gnu, rawTar([file("x", "p", { pax: { path: `${longDir}/pax-file` } })])]);
    const result = await unpack(layer);
    expect(result.entries).toBe(2);
    expect(readFileSync(at(`${longDir}/gnu-file`), "utf8")).toBe("g");
    expect(readFileSync(at(`${longDir}/pax-file`), "utf8")).toBe("p");
  });
});
