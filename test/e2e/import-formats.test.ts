// `import` of what users feed it: root filesystem tarballs from `podman export`, compressed the
// ways `docker import` accepts (gzip, xz, bzip2, zstd), from a file and from stdin, with
// --change and --message; and `tsrun export` read back by `podman import`. Empty or broken
// compressed inputs are one-line errors that leave the store as it was.
import { beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { env, importBusybox, missingInteropTools, podmanCli, scratchDir, shAsUser, tsrun, unique } from "./helpers.js";
import { checkStore } from "./faults.js";


let dir: string;

beforeAll(async () => {
  dir = scratchDir("import-formats");
  await importBusybox("busybox");
});

describe("compressed root filesystems", () => {
  it("imports gzip, xz, bzip2 and zstd tarballs (file and stdin) as the same layer, with --change and --message", async () => {
    const store = { TSRUN_ROOT: path.join(scratchDir("import-store"), "store") };
    const made = await shAsUser(
      `set -e; cd ${dir}; cp ${env.busyboxTar} root.tar; gzip -k root.tar; xz -k root.tar; bzip2 -k root.tar; zstd -q -k root.tar`,
    );
    expect(made.code, made.stderr).toBe(0);
    const diffIds = new Set<string>();
    for (const ext of ["tar.gz", "tar.xz", "tar.bz2", "tar.zst"]) {
      const name = `imported:${ext.replace(".", "-")}`;
      const r = await tsrun(["import", "-c", "ENV FORMAT=" + ext, "-m", `from ${ext}`, path.join(dir, `root.${ext}`), name], { env: store });
      expect(r.code, `${ext}: ${r.stderr}`).toBe(0);
      const shown = await tsrun(["inspect", "-f", "{{index .RootFS.Layers 0}} {{.Comment}} {{.Config.Env}}", name], { env: store });
      const [diffId, ...rest] = shown.stdout.trim().split(" ");
      diffIds.add(diffId as string);
      expect(rest.join(" ")).toBe(`from ${ext} [FORMAT=${ext}]`);
      expect((await tsrun(["run", "--rm", name, "sh", "-c", "echo $FORMAT"], { env: store })).stdout).toBe(`${ext}\n`);
    }
    // The layer is the tar inside, whatever wrapped it.
    expect([...diffIds]).toEqual([`sha256:${execFileSync("sha256sum", [env.busyboxTar]).toString().split(" ")[0]}`]);
    const piped = await tsrun(["import", "-", "imported:stdin"], { env: store, input: readFileSync(path.join(dir, "root.tar.bz2")) });
    expect(piped.code, piped.stderr).toBe(0);
    expect((await tsrun(["run", "--rm", "imported:stdin", "echo", "ok"], { env: store })).stdout).toBe("ok\n");
  });

  it("imports a root filesystem made with tar --sparse: the file reads back whole, its holes stay holes", async () => {
    const made = await shAsUser(
      `set -e; cd ${dir}; mkdir sparse-root; tar -xf ${env.busyboxTar} -C sparse-root; ` +
        `printf head > sparse-root/lastlog; truncate -s 64M sparse-root/lastlog; printf tail >> sparse-root/lastlog; ` +
        `tar --sparse --format=posix -czf sparse.tar.gz -C sparse-root .; md5sum < sparse-root/lastlog`,
    );
    expect(made.code, made.stderr).toBe(0);
    const name = unique("sparse");
    const imported = await tsrun(["import", path.join(dir, "sparse.tar.gz"), name]);
    expect(imported.code, imported.stderr).toBe(0);
    const r = await tsrun(["run", "--rm", name, "sh", "-c", "stat -c '%s %b' /lastlog; md5sum < /lastlog"]);
    const [sizes, sum] = r.stdout.trim().split("\n");
    const [size, blocks] = (sizes ?? "").split(" ").map(Number);
    expect(size).toBe(64 * 1024 * 1024 + 4);
    expect(blocks).toBeLessThan(1024);
    expect(`${sum}\n`).toBe(made.stdout);
  });

  it("refuses empty and broken compressed tarballs in one line and stores nothing", async () => {
    const store = { TSRUN_ROOT: path.join(scratchDir("import-bad-store"), "store") };
    const made = await shAsUser(
      `set -e; cd ${dir}; for c in gzip xz bzip2 zstd; do printf '' | $c -c > empty.$c; done; ` +
        `head -c 300000 root.tar.xz > cut.xz; head -c 300000 root.tar.bz2 > cut.bz2; printf 'BZh91AY&SYnot really bzip2' > fake.bz2`,
    );
    expect(made.code, made.stderr).toBe(0);
    const cases: [string, RegExp][] = [
      ["empty.gzip", /empty\.gzip is empty/],
      ["empty.xz", /empty\.xz is empty/],
      ["empty.bzip2", /empty\.bzip2 is empty/],
      ["empty.zstd", /empty\.zstd is empty/],
      ["cut.xz", /not valid xz/],
      ["cut.bz2", /not valid bzip2/],
      ["fake.bz2", /not valid bzip2/],
    ];
    for (const [file, message] of cases) {
      const r = await tsrun(["import", path.join(dir, file), "bad:1"], { env: store });
      expect(r.code, `${file}: ${r.stderr}`).toBe(125);
      expect(r.stderr, file).toMatch(/^Error: [^\n]+\n$/);
      expect(r.stderr, file).toMatch(message);
    }
    expect((await tsrun(["images", "-a", "-q"], { env: store })).stdout).toBe("");
    const check = await checkStore(store);
    expect(check.findings, check.raw).toEqual([]);
    expect(check.reclaimable.blobs + check.reclaimable.layers, check.raw).toBe(0);
  });
});

describe.skipIf(missingInteropTools.length > 0)("with podman (skipped when podman or skopeo is not installed)", () => {
  it("imports what podman export writes, and podman imports what tsrun export writes", async () => {
    const p = podmanCli(dir);
    const made = await shAsUser(
      `set -e; cd ${dir}; ${p} import -q ${env.busyboxTar} localhost/src:1 >/dev/null; ` +
        `${p} create --name pc localhost/src:1 sh >/dev/null; ${p} export -o podman-export.tar pc; xz -k podman-export.tar`,
      { timeout: 60_000 },
    );
    expect(made.code, made.stderr).toBe(0);
    const name = unique("from-podman");
    const imported = await tsrun(["import", "-c", 'CMD ["cat", "/etc/passwd"]', path.join(dir, "podman-export.tar.xz"), name]);
    expect(imported.code, imported.stderr).toBe(0);
    expect((await tsrun(["run", "--rm", name])).stdout).toMatch(/^root:x:0:0:/);

    // And back: a container with a change of its own, exported, imported by podman.
    const container = unique("to-podman");
    expect((await tsrun(["run", "--name", container, name, "sh", "-c", "echo exported > /made && chmod 4755 /made"])).code).toBe(0);
    expect((await tsrun(["export", "-o", path.join(dir, "tsrun-export.tar"), container])).code).toBe(0);
    await tsrun(["rm", container]);
    const back = await shAsUser(`set -e; ${p} import -q ${dir}/tsrun-export.tar localhost/back:1 >/dev/null; ${p} run --rm --net none localhost/back:1 sh -c 'cat /made; stat -c %A /made'`, {
      timeout: 60_000,
    });
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toBe("exported\n-rwsr-xr-x\n");
  });
});
