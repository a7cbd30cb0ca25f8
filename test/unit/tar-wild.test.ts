// Layer tarballs as they come from the wild, through the unpacker: archives of GNU tar (every
// --format), bsdtar and Python's tarfile, names that are not valid UTF-8, old V7 and ustar
// headers, base-256 numbers, archives without an end marker or with garbage after it, entries
// in awkward orders, a great many entries, and hostile variants of each. Every case asserts
// what ends up on disk, or the one error line and nothing beside the layer dir.
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { constants as fsConstants, existsSync, linkSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { latin1 as bytes, makeLatin1Tree } from "./latin1-tree.js";
import { paxRecords, rawEntry, rawTar, rewriteChecksum, withoutEnd, type RawTarEntry } from "./tar-builder.js";
import { at, base, dest, dir, file, fileType, hardlink, perms, sentinel, symlink, unpack, useUnpackSandbox, warnings, xattrsOf } from "./unpack-harness.js";

const { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR } = fsConstants;

useUnpackSandbox();

const sha256 = (data: Buffer): string => "sha256:" + createHash("sha256").update(data).digest("hex");

/**
 * A directory tree as a comparable list: each entry's path (its bytes shown as Latin-1), type,
 * permissions, owner, size, content digest, link target bytes, and for a further name of a
 * multiply-linked file the first name. Walks with Buffer names, so no byte is lost.
 */
function snapshot(root: string): string[] {
  const out: string[] = [];
  const inodes = new Map<number, string>();
  const walk = (rel: Buffer): void => {
    const abs = Buffer.concat([Buffer.from(root), rel.length ? Buffer.from("/") : Buffer.alloc(0), rel]);
    const names = readdirSync(abs, { encoding: "buffer" }).sort(Buffer.compare);
    for (const name of names) {
      const childRel = rel.length ? Buffer.concat([rel, Buffer.from("/"), name]) : name;
      const child = Buffer.concat([abs, Buffer.from("/"), name]);
      const st = lstatSync(child);
      const shown = childRel.toString("latin1");
      const type = st.mode & S_IFMT;
      const first = type === S_IFREG && st.nlink > 1 ? inodes.get(st.ino) : undefined;
      if (type === S_IFREG && st.nlink > 1 && first === undefined) inodes.set(st.ino, shown);
      const what =
        type === S_IFDIR
          ? "dir"
          : type === S_IFLNK
            ? `link -> ${readlinkSync(child, { encoding: "buffer" }).toString("latin1")}`
            : type === S_IFREG
              ? first !== undefined
                ? `hardlink of ${first}`
                : `file ${st.size} ${sha256(readFileSync(child)).slice(7, 19)}`
              : `type ${type.toString(8)}`;
      out.push(`${shown}: ${what} ${type === S_IFLNK ? "" : (st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`);
      if (type === S_IFDIR) walk(childRel);
    }
  };
  walk(Buffer.alloc(0));
  return out;
}

/** Runs a Python script with the arguments given (a tarfile to write, the source tree...). */
function python(script: string, ...args: string[]): Buffer {
  return execFileSync("python3", ["-c", script, ...args], { maxBuffer: 256 << 20 });
}

/** The Latin-1 tree in base/src. */
function latin1Tree(): string {
  const src = path.join(base, "src");
  makeLatin1Tree(src);
  return src;
}

describe("names that are not valid UTF-8 land with their exact bytes", () => {
  const writers: [string, (src: string) => Buffer][] = [
    ["GNU tar --format=gnu", (src) => execFileSync("tar", ["--format=gnu", "-cf", "-", "-C", src, "."])],
    ["GNU tar --format=posix", (src) => execFileSync("tar", ["--format=posix", "-cf", "-", "-C", src, "."])],
    ["bsdtar (restricted pax)", (src) => execFileSync("bsdtar", ["-cf", "-", "-C", src, "."], { env: { ...process.env, LC_ALL: "C" }, stdio: ["ignore", "pipe", "pipe"] })],
    [
      "Python tarfile, PAX (hdrcharset=BINARY)",
      (src) => python("import sys,tarfile,io; b=io.BytesIO(); t=tarfile.open(fileobj=b,mode='w',format=tarfile.PAX_FORMAT); t.add(sys.argv[1],arcname='.'); t.close(); sys.stdout.buffer.write(b.getvalue())", src),
    ],
    [
      "Python tarfile, GNU",
      (src) => python("import sys,tarfile,io; b=io.BytesIO(); t=tarfile.open(fileobj=b,mode='w',format=tarfile.GNU_FORMAT); t.add(sys.argv[1],arcname='.'); t.close(); sys.stdout.buffer.write(b.getvalue())", src),
    ],
  ];

  it.each(writers)("%s", async (_writer, write) => {
    const src = latin1Tree();
    const layer = write(src);
    const expected = snapshot(src);
    rmSync(src, { recursive: true });
    await unpack(layer, {}, 700);
    expect(snapshot(dest)).toEqual(expected);
    expect(warnings).toEqual([]);
  });

  it("whiteouts and opaque markers with such names, and a 255-byte Latin-1 name (NAME_MAX counts bytes)", async () => {
    const long = "\xe9".repeat(255);
    const raw = (name: string, extra: Partial<RawTarEntry> = {}): RawTarEntry => ({ name: "x", content: "", ...extra, pax: { path: bytes(name), ...extra.pax } });
    await unpack(rawTar([raw(".wh.caf\xe9"), { ...raw("d\xe9/"), type: "5", mode: 0o755 }, raw("d\xe9/.wh..wh..opq"), raw(long, { content: "max" })]));
    const gone = lstatSync(Buffer.concat([Buffer.from(`${dest}/`), bytes("caf\xe9")]));
    expect([gone.mode & S_IFMT, gone.rdev]).toEqual([S_IFCHR, 0]);
    expect(readFileSync(Buffer.concat([Buffer.from(`${dest}/`), bytes(long)]), "utf8")).toBe("max");
    expect(snapshot(dest).map((l) => l.split(":")[0])).toEqual(["caf\xe9", "d\xe9", long]);
    await expect(unpack(rawTar([raw("\xe9".repeat(256))]))).rejects.toThrow(/component longer than 255 bytes/);
  });
});

describe("headers of every age and tool", () => {
  it("V7 headers from GNU tar --format=v7 and old-style directories (a file type with a trailing slash)", async () => {
    const src = path.join(base, "src");
    mkdirSync(path.join(src, "d"), { recursive: true });
    writeFileSync(path.join(src, "d", "f"), "v7 file\n");
    symlinkSync("f", path.join(src, "d", "l"));
    linkSync(path.join(src, "d", "f"), path.join(src, "d", "h"));
    const layer = Buffer.concat([
      withoutEnd(execFileSync("tar", ["--format=v7", "-cf", "-", "-C", src, "d"])),
      // What pre-POSIX tars wrote for a directory: type '0' (or NUL) and a trailing slash.
      rawTar([{ name: "old/", type: "\0", mode: 0o700 }, file("old/inside", "i")]),
    ]);
    const expected = snapshot(src);
    rmSync(src, { recursive: true });
    await unpack(layer);
    expect(snapshot(dest).filter((l) => l.startsWith("d"))).toEqual(expected);
    expect(fileType("old")).toBe(S_IFDIR);
    expect(perms("old")).toBe(0o700);
    expect(readFileSync(at("old/inside"), "utf8")).toBe("i");
  });

  it("GNU tar incremental dumps: 'D' directory entries whose data is a listing, and --format=oldgnu", async () => {
    const src = path.join(base, "src");
    mkdirSync(path.join(src, "d", "e"), { recursive: true });
    writeFileSync(path.join(src, "d", "f"), "x\n");
    const expected = snapshot(src);
    const incremental = execFileSync("tar", ["--format=gnu", `--listed-incremental=${path.join(base, "snar")}`, "-cf", "-", "-C", src, "d"]);
    const oldgnu = execFileSync("tar", ["--format=oldgnu", "-cf", "-", "-C", src, "d"]);
    rmSync(src, { recursive: true });
    rmSync(path.join(base, "snar"));
    expect(incremental.subarray(156, 157).toString()).toBe("D");
    for (const layer of [incremental, oldgnu]) {
      rmSync(dest, { recursive: true });
      mkdirSync(dest);
      await unpack(layer);
      expect(snapshot(dest)).toEqual(expected);
    }
  });

  it("ustar prefix fields (GNU tar and Python, --format=ustar) and bsdtar's ustar and gnutar formats", async () => {
    const src = path.join(base, "src");
    const deep = `${"p".repeat(60)}/${"q".repeat(60)}`;
    mkdirSync(path.join(src, deep), { recursive: true });
    writeFileSync(path.join(src, deep, "n".repeat(90)), "split between prefix and name");
    const expected = snapshot(src);
    const layers = [
      execFileSync("tar", ["--format=ustar", "-cf", "-", "-C", src, "."]),
      python("import sys,tarfile,io; b=io.BytesIO(); t=tarfile.open(fileobj=b,mode='w',format=tarfile.USTAR_FORMAT); t.add(sys.argv[1],arcname='.'); t.close(); sys.stdout.buffer.write(b.getvalue())", src),
      execFileSync("bsdtar", ["--format=ustar", "-cf", "-", "-C", src, "."]),
      execFileSync("bsdtar", ["--format=gnutar", "-cf", "-", "-C", src, "."]),
    ];
    rmSync(src, { recursive: true });
    for (const layer of layers) {
      rmSync(dest, { recursive: true });
      mkdirSync(dest);
      await unpack(layer);
      expect(snapshot(dest)).toEqual(expected);
    }
  });

  it("base-256 numbers (Python's GNU format: big uid and gid, mtimes before 1970 and after 2242) and a base-256 size", async () => {
    const layer = python(
      [
        "import sys,tarfile,io",
        "b=io.BytesIO(); t=tarfile.open(fileobj=b,mode='w',format=tarfile.GNU_FORMAT)",
        "for name,uid,mtime in [('big-ids',3000000,1),('past',0,-1000),('future',0,2**33+1)]:",
        "  i=tarfile.TarInfo(name); i.size=2; i.uid=uid; i.gid=uid; i.mtime=mtime; t.addfile(i,io.BytesIO(b'ok'))",
        "t.close(); sys.stdout.buffer.write(b.getvalue())",
      ].join("\n"),
    );
    expect(layer.subarray(108, 109)[0]).toBe(0x80); // the uid field really is base-256
    const size256 = Buffer.alloc(12);
    size256[0] = 0x80;
    size256[11] = 5;
    await unpack(Buffer.concat([withoutEnd(layer), rawTar([file("size256", "12345", { sizeField: size256 })])]), { maxUid: 4_000_000, maxGid: 4_000_000 });
    const big = lstatSync(at("big-ids"));
    expect([big.uid, big.gid]).toEqual([3_000_000, 3_000_000]);
    expect(lstatSync(at("past")).mtimeMs).toBe(-1_000_000);
    expect(lstatSync(at("future")).mtimeMs).toBe((2 ** 33 + 1) * 1000);
    expect(readFileSync(at("size256"), "utf8")).toBe("12345");
  });

  it("PAX overrides: size, uid, gid, mtime, path and linkpath (also after a global header), hardlinks with GNU long link names", async () => {
    const longTarget = `${"t".repeat(120)}/target`;
    await unpack(
      rawTar([
        { name: "GlobalHead", type: "g", content: paxRecords({ path: "ignored-global", uid: "4000" }) },
        // The header's size says 0; the PAX size (as Go writes for files over 8 GiB) decides.
        file("x", "from pax size", { size: 0, pax: { size: "13", path: "sized", uid: "5", gid: "6", mtime: "1234.5" } }),
        file("global-uid", "g"),
        file("y", "t", { pax: { path: longTarget } }),
        { name: "././@LongLink", type: "K", content: Buffer.from(`${longTarget}\0`) },
        hardlink("to-long", "ignored"),
        symlink("z", "ignored", { pax: { linkpath: longTarget } }),
      ]),
    );
    expect(readFileSync(at("sized"), "utf8")).toBe("from pax size");
    const sized = lstatSync(at("sized"), { bigint: true });
    expect([sized.uid, sized.gid, sized.mtimeNs]).toEqual([5n, 6n, 1_234_500_000_000n]);
    expect(lstatSync(at("global-uid")).uid).toBe(4000);
    expect(existsSync(at("ignored-global"))).toBe(false);
    expect(lstatSync(at("to-long")).ino).toBe(lstatSync(at(longTarget)).ino);
    expect(readlinkSync(at("z"))).toBe(longTarget);
  });

  it("NUL-terminated fields with junk after the NUL, octal fields with leading NULs or spaces, and a signed checksum (old Sun tar)", async () => {
    const junk = rawEntry(file("name", "data", { linkname: "" }));
    junk.write("name\0junk after the NUL", 0, "latin1");
    // Mode "000751" after two NULs (Go trims them), uid " 12 " between spaces.
    junk.write("\x00\x00000751", 100, 8, "latin1");
    junk.write("    12 \0", 108, 8, "latin1");
    rewriteChecksum(junk);
    const signed = rawEntry(file("x", "signed"));
    signed.write("sign\xe9d", 0, "latin1"); // a byte above 0x7f: signed and unsigned sums differ
    rewriteChecksum(signed, true);
    await unpack(Buffer.concat([junk, signed, Buffer.alloc(1024)]));
    expect(readFileSync(at("name"), "utf8")).toBe("data");
    expect(perms("name")).toBe(0o751);
    expect(lstatSync(at("name")).uid).toBe(0o12);
    expect(readFileSync(Buffer.concat([Buffer.from(`${dest}/`), bytes("sign\xe9d")]), "utf8")).toBe("signed");
  });
});

describe("where the archive ends", () => {
  const entries = [dir("d/"), file("d/f", "x".repeat(600))];

  it("accepts an archive without the two zero blocks, or with only one (Go's archive/tar, hence Docker, does)", async () => {
    for (const layer of [rawTar(entries, { end: false }), Buffer.concat([rawTar(entries, { end: false }), Buffer.alloc(512)])]) {
      rmSync(dest, { recursive: true });
      mkdirSync(dest);
      const result = await unpack(layer, {}, 100);
      expect(result).toMatchObject({ entries: 2, diffId: sha256(layer) });
      expect(readFileSync(at("d/f"), "utf8")).toBe("x".repeat(600));
    }
  });

  it("ignores, but hashes, whatever follows the end marker, as GNU tar and Go do", async () => {
    const garbage = Buffer.alloc(5000);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 131 + 7) % 256;
    const layer = Buffer.concat([rawTar(entries), rawEntry(file("after-the-end", "no")), garbage]);
    const result = await unpack(layer, {}, 333);
    expect(result).toMatchObject({ entries: 2, diffId: sha256(layer), size: layer.length });
    expect(existsSync(at("after-the-end"))).toBe(false);
  });

  it("refuses a zero block followed by another header, as Go does (GNU tar and bsdtar would stop there, others read on)", async () => {
    const layer = Buffer.concat([rawTar([file("a", "1")], { end: false }), Buffer.alloc(512), rawTar([file("hidden", "2")])]);
    await expect(unpack(layer)).rejects.toThrow(/^invalid layer tarball: a zero block is followed by more headers/);
    expect(existsSync(at("hidden"))).toBe(false);
  });
});

describe("entries in awkward orders", () => {
  it("a directory's own entry after its files: its mode, owner and time apply", async () => {
    await unpack(rawTar([file("late/a", "a"), dir("late/sub/", { mode: 0o700 }), file("late/sub/b", "b"), dir("late/", { mode: 0o555, uid: 7, gid: 8, mtime: 1_000 })]));
    const st = lstatSync(at("late"));
    expect([st.mode & 0o7777, st.uid, st.gid, st.mtimeMs]).toEqual([0o555, 7, 8, 1_000_000]);
    expect(readFileSync(at("late/sub/b"), "utf8")).toBe("b");
  });

  it("a hardlink keeps the content its target had when linked, whatever replaces the target later (as GNU tar and Docker extract it)", async () => {
    await unpack(rawTar([file("t", "first"), hardlink("h", "t"), file("t", "second"), hardlink("h2", "t"), hardlink("h2", "h")]));
    expect(readFileSync(at("t"), "utf8")).toBe("second");
    expect(readFileSync(at("h"), "utf8")).toBe("first");
    // Listed twice: the later entry wins.
    expect(lstatSync(at("h2")).ino).toBe(lstatSync(at("h")).ino);
  });

  it("'./' prefixes, '//' and trailing slashes name the same entries", async () => {
    await unpack(rawTar([dir("./a//b/"), file("./a//b///c", "1"), file("a/b/c", "2"), dir("a/b//", { mode: 0o711 }), symlink(".//a/./b/s", "c")]));
    expect(readFileSync(at("a/b/c"), "utf8")).toBe("2");
    expect(perms("a/b")).toBe(0o711);
    expect(readFileSync(at("a/b/s"), "utf8")).toBe("2");
    expect(readdirSync(dest)).toEqual(["a"]);
  });
});

describe("size", () => {
  it("unpacks 10,000 entries, and replaces a tree 1,000 directories deep with a file", async () => {
    const many: RawTarEntry[] = [];
    for (let d = 0; d < 100; d++) {
      many.push(dir(`d${d}/`));
      for (let f = 0; f < 100; f++) many.push(file(`d${d}/f${f}`, ""));
    }
    const deep = Array.from({ length: 1000 }, () => "n").join("/");
    const layer = rawTar([...many, file("deep", "deep", { pax: { path: `${deep}/bottom` } }), file("n", "the tree is gone")]);
    const result = await unpack(layer);
    expect(result.entries).toBe(10_102);
    expect(readdirSync(at("d99")).length).toBe(100);
    expect(readFileSync(at("n"), "utf8")).toBe("the tree is gone");
  }, 60_000);
});

describe("huge declared sizes", () => {
  it("refuses a GNU long name of 2 GiB before reading it, and a sparse file beyond what the filesystem holds, in one line", async () => {
    const hugeName = rawTar([{ name: "././@LongLink", type: "L", sizeField: Buffer.from("20000000000\0", "latin1") }], { end: false });
    await expect(unpack(hugeName)).rejects.toThrow(/^invalid layer tarball: tar header for "\.\/\.\/@LongLink": extended header of 2147483648 bytes is too large$/);
    // 4 PiB with 3 bytes of data at its end: a hole no ext4 or XFS file can have.
    const far = 2 ** 52;
    const sparse = rawTar([file("s", "abc", { pax: { "GNU.sparse.size": String(far), "GNU.sparse.map": `${far - 3},3` } })]);
    const err = await unpack(sparse).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/^layer entry "s": cannot write: EFBIG: file too large/);
    expect(err?.message).not.toContain("\n");
  });
});

describe("hostile archives", () => {
  it.each([
    ["a PAX path", [file("innocent", "x", { pax: { path: "a/../../escape" } })], /climbs above the layer root/],
    ["a GNU long name", [{ name: "././@LongLink", type: "L", content: Buffer.from(`${"a/".repeat(60)}${"../".repeat(61)}escape\0`) }, file("innocent", "x")], /climbs above the layer root/],
    ["a sparse file's real name", [file("innocent", "abc", { pax: { "GNU.sparse.name": "../escape", "GNU.sparse.size": "3", "GNU.sparse.map": "0,3" } })], /climbs above the layer root/],
    ["a PAX linkpath of a hardlink", [hardlink("h", "ignored")].map((e) => ({ ...e, pax: { linkpath: "../sentinel/keep" } })), /climbs above the layer root/],
    ["a GNU long link name of a hardlink", [{ name: "././@LongLink", type: "K", content: Buffer.from("../../sentinel/keep\0") }, hardlink("h", "ignored")], /climbs above the layer root/],
    ["a whiteout", [file("../.wh.sentinel", "")], /climbs above the layer root/],
    ["a whiteout through '..'", [dir("a/"), file("a/../../.wh.sentinel", "")], /climbs above the layer root/],
    ["an opaque marker above the root", [file("../.wh..wh..opq", "")], /climbs above the layer root/],
  ] as [string, RawTarEntry[], RegExp][])("refuses '..' out of the root in %s", async (_where, entries, message) => {
    await expect(unpack(rawTar(entries))).rejects.toThrow(message);
    expect(existsSync(path.join(base, "escape"))).toBe(false);
  });

  it("keeps whiteouts and opaque markers behind a symlink inside the root, or refuses them", async () => {
    await unpack(rawTar([dir("real/"), file("real/x", "x"), symlink("up", "../../.."), symlink("in", "/real"), file("up/.wh.gone", ""), file("in/.wh..wh..opq", "")]));
    expect(fileType("gone")).toBe(S_IFCHR);
    expect(xattrsOf("real")["user.overlay.opaque"]?.toString()).toBe("y");
    // A symlink to a host directory the layer does not have: nothing to resolve it to.
    await expect(unpack(rawTar([symlink("host", sentinel), file("host/.wh.keep", "")]))).rejects.toThrow(/symlink that does not lead to a directory inside the layer/);
    await expect(unpack(rawTar([symlink("host2", base), file("host2/.wh..wh..opq", "")]))).rejects.toThrow(/symlink that does not lead to a directory inside the layer/);
  });

  it("refuses a hardlink whose target path leaves the root through a symlink, and symlink loops", async () => {
    await expect(unpack(rawTar([symlink("etc", path.dirname(sentinel)), hardlink("h", "etc/sentinel/keep")]))).rejects.toThrow(/layer entry "h": hardlink target "etc\/sentinel\/keep" does not exist in the layer/);
    await expect(unpack(rawTar([symlink("a", "b"), symlink("b", "a"), file("a/x", "loop")]))).rejects.toThrow(/layer entry "a\/x": parent "a" is a symlink that does not lead to a directory inside the layer/);
    expect(existsSync(at("h"))).toBe(false);
  });
});
