// `tsrun build`, end to end: every instruction, the cache (hits, and misses after a changed file,
// ARG or earlier line), .dockerignore, multi-stage builds with COPY --from and --target, ONBUILD
// across two builds, reproducible IDs with SOURCE_DATE_EPOCH, contexts and Dockerfiles on
// standard input, errors, rmi/prune with the build cache, and an image built here run by Podman.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, chownSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { env, filesDir, importBusybox, podmanCli, scratchDir, shAsUser, tsrun, unique, tsrunOk } from "./helpers.js";

/** A context directory with these files (mode 0644, or [content, mode]), owned by the test user. */
const context = (files: Record<string, string | [string, number]>): string => filesDir(files, "build");

async function build(args: string[], opts: { env?: Record<string, string>; input?: string | Buffer } = {}): Promise<{ code: number; stdout: string; stderr: string; id: string }> {
  const r = await tsrun(["build", ...args], { ...opts, timeout: 120_000 });
  const last = r.stdout.trim().split("\n").at(-1) ?? "";
  return { ...r, id: /^sha256:[a-f0-9]{64}$/.test(last) ? last : "" };
}

async function built(args: string[], opts: { env?: Record<string, string>; input?: string | Buffer } = {}): Promise<{ stdout: string; stderr: string; id: string }> {
  const r = await build(args, opts);
  if (r.code !== 0 || !r.id) throw new Error(`build ${args.join(" ")} exited ${r.code}: ${r.stderr}\n${r.stdout}`);
  return r;
}

const ok = (args: string[]): Promise<string> => tsrunOk(args);

async function inspect(image: string, format: string): Promise<string> {
  return (await ok(["inspect", "-f", format, image])).trim();
}

/** A blob of the store, by digest. */
function blob(digest: string): string {
  return readFileSync(path.join(env.storeRoot, "blobs", "sha256", digest.slice(7)), "utf8");
}

const usingCache = (out: string): number => (out.match(/^--> Using cache /gm) ?? []).length;

/** What must not change when a build fails: the image index. */
function indexSnapshot(): string {
  const file = path.join(env.storeRoot, "images", "index.json");
  return existsSync(file) ? readFileSync(file, "utf8") : "";
}

let server: Server;
let baseUrl = "";

beforeAll(async () => {
  await importBusybox("busybox");
  server = createServer((req, res) => {
    if (req.url === "/remote.txt") {
      res.writeHead(200, { "Last-Modified": "Tue, 14 Nov 2023 22:13:20 GMT" });
      res.end("remote content\n");
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe("instructions", () => {
  it("every instruction lands in the config, the layers and the history; the image runs", async () => {
    const archiveDir = scratchDir("build-archive");
    mkdirSync(path.join(archiveDir, "pkg"));
    writeFileSync(path.join(archiveDir, "pkg", "inarchive.txt"), "from the archive\n");
    execFileSync("tar", ["-czf", path.join(archiveDir, "a.tar.gz"), "--owner=1001", "--group=1001", "--numeric-owner", "-C", archiveDir, "pkg"]);
    const dockerfile = `ARG BASE=busybox
FROM \${BASE} AS base
LABEL stage=base

FROM base
ARG VERSION=1.0
ENV APP_HOME=/app PATH=/app/bin:/bin:/usr/bin
LABEL version=$VERSION "multi word"="a b"
MAINTAINER Jane <jane@example.com>
EXPOSE 8080 53/udp
WORKDIR $APP_HOME
COPY --chmod=755 tool.sh bin/tool
COPY --chown=alice:staff data/ data/
ADD a.tar.gz /opt/
ADD ${baseUrl}/remote.txt /remote/
COPY <<EOF /etc/motd
version $VERSION
EOF
SHELL ["/bin/sh", "-ec"]
RUN echo "$VERSION at $APP_HOME" > built.txt; id -u > uid-root.txt
USER alice
RUN id -u > /tmp/uid-alice.txt
USER root
VOLUME /data
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=30s --retries=2 CMD true
ONBUILD RUN echo child
ENTRYPOINT ["/app/bin/tool"]
CMD ["default-arg"]
`;
    const tool = "#!/bin/sh\necho \"tool $1\"\ncat /app/built.txt /etc/motd /remote/remote.txt /opt/pkg/inarchive.txt /app/uid-root.txt /tmp/uid-alice.txt\nstat -c '%n %u:%g %a' /app/data/f /app/bin/tool /remote/remote.txt /opt/pkg/inarchive.txt\n";
    const dir = context({ Dockerfile: dockerfile, "tool.sh": [tool, 0o600], "data/f": "data\n" });
    execFileSync("cp", [path.join(archiveDir, "a.tar.gz"), dir]);
    if (env.user) chownSync(path.join(dir, "a.tar.gz"), env.user.uid, env.user.gid);
    const name = unique("every");
    const r = await built(["-t", name, "--build-arg", "VERSION=2.5", dir]);
    expect(r.stdout).toMatch(/^\[2\/2\] STEP 1\/23: FROM base$/m);
    expect(r.stdout).toMatch(/^Successfully tagged [\w-]+:latest$/m);

    const config = JSON.parse(await inspect(name, "{{json .Config}}")) as Record<string, unknown>;
    expect(config).toMatchObject({
      // BuildKit gives every stage a PATH first; ENV PATH then replaces it where it is.
      Env: ["PATH=/app/bin:/bin:/usr/bin", "APP_HOME=/app"],
      Labels: { stage: "base", version: "2.5", "multi word": "a b" },
      ExposedPorts: { "8080/tcp": {}, "53/udp": {} },
      WorkingDir: "/app",
      User: "root",
      Volumes: { "/data": {} },
      StopSignal: "SIGUSR1",
      Healthcheck: { Test: ["CMD-SHELL", "true"], Interval: 30_000_000_000, Retries: 2 },
      OnBuild: ["RUN echo child"],
      Entrypoint: ["/app/bin/tool"],
      Cmd: ["default-arg"],
      Shell: ["/bin/sh", "-ec"],
    });
    expect(await inspect(name, "{{.Author}}")).toBe("Jane <jane@example.com>");
    // HEALTHCHECK, ONBUILD and SHELL exist only in Docker's format: the image keeps it.
    const record = (JSON.parse(indexSnapshot()) as { images: { id: string; manifest: string }[] }).images.find((i) => i.id === r.id);
    const manifest = JSON.parse(blob(record?.manifest ?? "")) as { mediaType: string; config: { mediaType: string } };
    expect(manifest.config.mediaType).toBe("application/vnd.docker.container.image.v1+json");

    // One history entry per instruction after the base image's; layers only for COPY, ADD, RUN
    // and a WORKDIR that makes its directory (BuildKit's rule).
    const history = (JSON.parse(blob(r.id)) as { history: { created_by: string; empty_layer?: boolean }[] }).history;
    expect(history.length).toBe(1 + 1 + 22);
    const made = history.filter((h) => !h.empty_layer);
    expect(made.map((h) => h.created_by.split(" ")[0])).toEqual(["", "WORKDIR", "COPY", "COPY", "ADD", "ADD", "COPY", "RUN", "RUN"]);
    expect(await inspect(name, "{{len .RootFS.Layers}}")).toBe("9");
    expect(history.map((h) => h.created_by)).toContain("RUN |1 VERSION=2.5 /bin/sh -ec echo \"$VERSION at $APP_HOME\" > built.txt; id -u > uid-root.txt");

    const run = await tsrun(["run", "--rm", name]);
    expect(run.stderr).toBe("");
    expect(run.stdout).toBe(
      [
        "tool default-arg",
        "2.5 at /app",
        "version 2.5",
        "remote content",
        "from the archive",
        "0",
        "1000",
        "/app/data/f 1000:50 644",
        "/app/bin/tool 0:0 755",
        "/remote/remote.txt 0:0 600",
        "/opt/pkg/inarchive.txt 1001:1001 644",
        "",
      ].join("\n"),
    );
    // The ADD of a URL keeps the server's Last-Modified time.
    expect((await tsrun(["run", "--rm", "--entrypoint", "stat", name, "-c", "%Y", "/remote/remote.txt"])).stdout.trim()).toBe("1700000000");
  });

  it("ENTRYPOINT resets an inherited CMD; ENV sees the values from before its line; legacy ENV expands", async () => {
    const parent = unique("with-cmd");
    await built(["-q", "-t", parent, context({ Dockerfile: 'FROM busybox\nCMD ["inherited"]\n' })]);
    const dir = context({ Dockerfile: `FROM ${parent}\nENV A=1\nENV A=2 B=$A\nENV C $A and $B\nENTRYPOINT ["echo"]\n` });
    const r = await built(["-q", dir]);
    expect(await inspect(r.id, "{{json .Config.Cmd}} {{json .Config.Entrypoint}} {{json .Config.Env}}")).toBe('null ["echo"] ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","A=2","B=1","C=2 and 1"]');
  });

  it("RUN --mount: a cache kept between builds, a read-only bind of the context, a tmpfs; none of them in the layer", async () => {
    const id = unique("cache-id");
    const dir = context({
      Dockerfile: `FROM busybox\nRUN --mount=type=cache,id=${id},target=/cache --mount=type=bind,source=conf,target=/conf --mount=type=tmpfs,target=/scratch \\\n  echo run >> /cache/log && echo count=$(wc -l < /cache/log) && cat /conf/c && touch /scratch/t && cp /conf/c /copied && (touch /conf/w 2>/dev/null || echo read-only)\n`,
      "conf/c": "conf-content\n",
    });
    const first = await built(["--no-cache", dir]);
    expect(first.stdout).toMatch(/^count=1\nconf-content\nread-only$/m);
    const second = await built(["--no-cache", dir]);
    expect(second.stdout).toMatch(/^count=2$/m);
    const out = await tsrun(["run", "--rm", second.id, "sh", "-c", "cat /copied; ls /cache /scratch /conf 2>/dev/null | wc -w"]);
    expect(out.stdout).toBe("conf-content\n0\n");
    // A secret no --secret gives: skipped when optional (BuildKit's default), an error when required.
    const optional = await build([context({ Dockerfile: "FROM busybox\nRUN --mount=type=secret,id=s true\n" })]);
    expect(optional.code, optional.stderr).toBe(0);
    const required = await build([context({ Dockerfile: "FROM busybox\nRUN --mount=type=secret,id=s,required=true true\n" })]);
    expect([required.code, required.stderr]).toEqual([1, "Error: Dockerfile:2: RUN --mount=type=secret,id=s,required=true: secret s not found (give it with build --secret id=s,src=FILE)\n"]);
  });

  it("-q prints only the ID; --label, --iidfile; RUN sees its network: private by default, none on request", async () => {
    const dir = context({ Dockerfile: "FROM busybox\nRUN echo interfaces: $(ls /sys/class/net | wc -l)\n" });
    const iid = path.join(scratchDir("build-iid"), "iid");
    const quiet = await built(["-q", "--no-cache", "--label", "a=b", "--iidfile", iid, dir]);
    expect(quiet.stdout).toBe(`${quiet.id}\n`);
    expect(readFileSync(iid, "utf8")).toBe(quiet.id);
    expect(await inspect(quiet.id, "{{json .Config.Labels}}")).toBe('{"a":"b"}');
    const none = await built(["--no-cache", "--network", "none", dir]);
    expect(none.stdout).toMatch(/^interfaces: 1$/m);
    const priv = await built(["--no-cache", dir]);
    expect(priv.stdout).toMatch(/^interfaces: 2$/m);
  });
});

describe("cache", () => {
  it("hits reuse layers without running anything; a changed file, ARG or earlier line invalidates what follows", async () => {
    const dockerfile = "FROM busybox\nARG FLAVOR=plain\nCOPY a.txt /a.txt\nRUN echo \"run-marker $FLAVOR\" && cat /a.txt > /b.txt\nCOPY c.txt /c.txt\n";
    const dir = context({ Dockerfile: dockerfile, "a.txt": "a1\n", "c.txt": "c1\n" });
    const first = await built(["--no-cache", dir]);
    expect(first.stdout).toMatch(/^run-marker plain$/m);

    const again = await built([dir]);
    expect(usingCache(again.stdout)).toBe(3);
    expect(again.stdout).not.toMatch(/^run-marker/m);
    expect(again.id).toBe(first.id);

    // Only a file's time changed: still cached (times are not part of the key).
    utimesSync(path.join(dir, "a.txt"), new Date(2001, 1, 1), new Date(2001, 1, 1));
    expect(usingCache((await built([dir])).stdout)).toBe(3);

    // The last COPY's file changed: the steps before it are cached.
    writeFileSync(path.join(dir, "c.txt"), "c2\n");
    const changedLast = await built([dir]);
    expect(usingCache(changedLast.stdout)).toBe(2);
    expect(changedLast.stdout).not.toMatch(/^run-marker/m);

    // A new ARG value: the COPY before the RUN is cached, the RUN and everything after run again.
    const arg = await built(["--build-arg", "FLAVOR=spicy", dir]);
    expect(usingCache(arg.stdout)).toBe(1);
    expect(arg.stdout).toMatch(/^run-marker spicy$/m);

    // The first COPY's file changed: nothing after FROM is cached.
    writeFileSync(path.join(dir, "a.txt"), "a2\n");
    const changedFirst = await built([dir]);
    expect(usingCache(changedFirst.stdout)).toBe(0);
    expect(changedFirst.stdout).toMatch(/^run-marker plain$/m);
    expect((await tsrun(["run", "--rm", changedFirst.id, "cat", "/b.txt", "/c.txt"])).stdout).toBe("a2\nc2\n");

    // An earlier line changed: everything after it runs again.
    writeFileSync(path.join(dir, "Dockerfile"), dockerfile.replace("ARG FLAVOR", "ENV EARLY=1\nARG FLAVOR"));
    const earlier = await built([dir]);
    expect(usingCache(earlier.stdout)).toBe(0);

    const noCache = await built(["--no-cache", dir]);
    expect(usingCache(noCache.stdout)).toBe(0);
    expect(noCache.stdout).toMatch(/^run-marker plain$/m);
  });

  it("the predefined proxy ARGs reach RUN without an ARG line, and stay out of the history, the config and the cache key", async () => {
    const dir = context({ Dockerfile: "FROM busybox\nRUN echo \"$HTTP_PROXY $https_proxy $NO_PROXY $ALL_PROXY $ftp_proxy\" > /proxies\n" });
    const proxies = (n: number): string[] => ["HTTP_PROXY", "https_proxy", "NO_PROXY", "ALL_PROXY", "ftp_proxy"].flatMap((k) => ["--build-arg", `${k}=http://secret-${n}-${k}:3128`]);
    const tag = unique("proxy-args");
    const first = await built(["-t", tag, ...proxies(1), dir]);
    expect(first.stderr).not.toMatch(/were not consumed/);
    const seen = await tsrun(["run", "--rm", tag, "cat", "/proxies"]);
    expect(seen.stdout).toBe(["HTTP_PROXY", "https_proxy", "NO_PROXY", "ALL_PROXY", "ftp_proxy"].map((k) => `http://secret-1-${k}:3128`).join(" ") + "\n");
    const history = await ok(["history", "--no-trunc", "--format", "{{.CreatedBy}}", tag]);
    expect(history).toContain("RUN ");
    expect(history).not.toContain("secret");
    expect(await inspect(tag, "{{json .Config.Env}}")).not.toContain("secret");
    // Other proxy values: the step is a cache hit, as in Docker ("exempt from caching").
    const second = await built(["-t", tag, ...proxies(2), dir]);
    expect(usingCache(second.stdout)).toBe(1);
    expect(second.id).toBe(first.id);
    // Declared with ARG, a proxy variable is an ordinary ARG: in the history and the cache key.
    const declared = context({ Dockerfile: "FROM busybox\nARG HTTP_PROXY\nRUN echo \"$HTTP_PROXY\" > /proxies\n" });
    const withArg = await built(["--build-arg", "HTTP_PROXY=http://declared:1", declared]);
    expect(await ok(["history", "--no-trunc", "--format", "{{.CreatedBy}}", withArg.id])).toContain("HTTP_PROXY=http://declared:1");
    const otherValue = await built(["--build-arg", "HTTP_PROXY=http://declared:2", declared]);
    expect(usingCache(otherValue.stdout)).toBe(0);
  });

  it("rmi keeps the layers a rebuild reuses; image prune and builder prune drop the cache no image holds", async () => {
    const name = unique("cached");
    const dir = context({ Dockerfile: `FROM busybox\nRUN echo ${name} > /marker\n` });
    const first = await built(["-t", name, dir]);
    const layer = await inspect(name, "{{index .RootFS.Layers 1}}");
    await ok(["rmi", name]);
    const rebuilt = await built(["-t", name, dir]);
    expect(usingCache(rebuilt.stdout)).toBe(1);
    expect(rebuilt.id).toBe(first.id);

    // A stage that is no image: its layer is held by the cache only, until a prune.
    const stageDir = context({ Dockerfile: `FROM busybox AS only-a-stage\nRUN echo ${name}-stage > /s\nFROM busybox\nCOPY --from=only-a-stage /s /s\n` });
    await built([stageDir]);
    await ok(["rmi", name]);
    const blobs = path.join(env.storeRoot, "blobs", "sha256");
    expect(existsSync(path.join(blobs, layer.slice(7)))).toBe(true);
    const pruned = await ok(["image", "prune", "-f"]);
    expect(pruned).toMatch(/Total reclaimed space/);
    expect(existsSync(path.join(blobs, layer.slice(7)))).toBe(false);
    const afterPrune = await built([dir]);
    expect(usingCache(afterPrune.stdout)).toBe(0);
    expect((await ok(["builder", "prune", "-a", "-f"]))).toMatch(/Total reclaimed space/);
    expect(usingCache((await built([dir])).stdout)).toBe(0);
  });
});

describe(".dockerignore", () => {
  it("excludes with **, re-includes with !, and an excluded source is not found", async () => {
    const dir = context({
      Dockerfile: "FROM busybox\nCOPY . /ctx/\nRUN cd /ctx && find . -type f | sort\n",
      ".dockerignore": "# comment\n**/*.log\n!keep.log\nsecret\nbuild/**\n!build/keep/**\nDockerfile\n",
      "a.txt": "a",
      "drop.log": "x",
      "keep.log": "k",
      "sub/deep/x.log": "x",
      "sub/deep/y.txt": "y",
      "secret/key": "k",
      "build/out/o": "o",
      "build/keep/k": "k",
    });
    const r = await built(["--no-cache", dir]);
    const listed = r.stdout.split("\n").filter((l) => l.startsWith("./")).sort();
    expect(listed).toEqual(["./.dockerignore", "./a.txt", "./build/keep/k", "./keep.log", "./sub/deep/y.txt"]);
    writeFileSync(path.join(dir, "Dockerfile"), "FROM busybox\nCOPY secret/key /key\n");
    const missing = await build([dir]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe("Error: Dockerfile:2: COPY secret/key: file not found in build context or excluded by .dockerignore\n");
  });

  it("COPY wildcards, directory semantics, a symlinked destination, hardlinks kept", async () => {
    const dir = context({
      Dockerfile: "FROM busybox\nRUN mkdir -p /real && ln -s /real /link\nCOPY *.txt /link/\nCOPY dir /copied\nCOPY dir/ /existing-tmp/\nCOPY one.md /named\n",
      "a.txt": "a",
      "b.txt": "b",
      "one.md": "one",
      "dir/x": "x",
      "dir/sub/y": "y",
    });
    linkSync(path.join(dir, "dir", "x"), path.join(dir, "dir", "x-hardlink"));
    const r = await built([dir]);
    const out = await tsrun(["run", "--rm", r.id, "sh", "-c", "ls /real; readlink /link; find /copied /existing-tmp -type f | sort; cat /named; echo; test $(stat -c %i /copied/x) = $(stat -c %i /copied/x-hardlink) && echo same-inode"]);
    expect(out.stdout).toBe("a.txt\nb.txt\n/real\n/copied/sub/y\n/copied/x\n/copied/x-hardlink\n/existing-tmp/sub/y\n/existing-tmp/x\n/existing-tmp/x-hardlink\none\nsame-inode\n");
  });
});

describe("multi-stage", () => {
  it("COPY --from a stage (by name and index) keeps owners; --target builds only what it needs", async () => {
    const dir = context({
      Dockerfile: [
        "FROM busybox AS compile",
        "RUN mkdir /out && echo compiled > /out/bin && chown 1000:1000 /out/bin && chmod 700 /out/bin",
        "FROM busybox AS broken",
        "RUN echo should-not-run && exit 9",
        "FROM busybox AS docs",
        "RUN echo docs > /doc",
        "FROM busybox",
        "COPY --from=compile /out/bin /usr/local/bin/app",
        "COPY --from=2 /doc /doc",
        "",
      ].join("\n"),
    });
    const r = await built([dir]);
    expect(r.stdout).not.toContain("should-not-run");
    expect(r.stdout).toMatch(/^\[4\/4\] STEP 3\/3: COPY --from=2 \/doc \/doc$/m);
    const out = await tsrun(["run", "--rm", r.id, "sh", "-c", "stat -c '%u:%g %a' /usr/local/bin/app; cat /usr/local/bin/app /doc"]);
    expect(out.stdout).toBe("1000:1000 700\ncompiled\ndocs\n");
    const docs = await built(["--target", "docs", dir]);
    expect(docs.stdout).not.toMatch(/compile/);
    expect((await tsrun(["run", "--rm", docs.id, "cat", "/doc"])).stdout).toBe("docs\n");
    const broken = await build(["--target", "broken", dir]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toBe("Error: The command '/bin/sh -c echo should-not-run && exit 9' returned a non-zero code: 9\n");
  });

  it("ONBUILD triggers run in the next build, once", async () => {
    const parent = unique("parent");
    await built(["-t", parent, context({ Dockerfile: "FROM busybox\nONBUILD COPY hello.txt /hello\nONBUILD RUN cat /hello > /seen\n" })]);
    const child = await built([context({ Dockerfile: `FROM ${parent}\nRUN cat /seen\n`, "hello.txt": "triggered\n" })]);
    expect(child.stdout).toContain("--> Executing 2 build triggers");
    expect(child.stdout).toContain("triggered");
    expect(await inspect(child.id, "{{json .Config.OnBuild}}")).toBe("null");
  });
});

describe("reproducible builds", () => {
  it("two --no-cache builds with SOURCE_DATE_EPOCH give the same image ID", async () => {
    const dir = context({ Dockerfile: "FROM busybox\nCOPY f /f\nRUN echo made > /made && mkdir -p /d/e\nCMD [\"cat\", \"/made\"]\n", f: "f" });
    const sde = { SOURCE_DATE_EPOCH: "1700000000" };
    const one = await built(["-q", "--no-cache", dir], { env: sde });
    await new Promise((r) => setTimeout(r, 1100));
    const two = await built(["-q", "--no-cache", dir], { env: sde });
    expect(two.id).toBe(one.id);
    expect(await inspect(one.id, "{{.Created}}")).toMatch(/^2023-11-14T22:13:20/);
    const times = await tsrun(["run", "--rm", one.id, "stat", "-c", "%Y", "/made", "/f", "/d/e"]);
    expect(times.stdout).toBe("1700000000\n1700000000\n1700000000\n");
    // Without it, times are real: a new ID.
    const three = await built(["-q", "--no-cache", dir]);
    expect(three.id).not.toBe(one.id);
  });
});

describe("standard input", () => {
  it("a tarball context, a Dockerfile alone, and -f - with a directory context", async () => {
    const dir = context({ Dockerfile: "FROM busybox\nCOPY x /x\nCMD [\"cat\", \"/x\"]\n", x: "from tar\n" });
    const tar = execFileSync("tar", ["-cz", "-C", dir, "."]);
    const fromTar = await built(["-"], { input: tar });
    expect((await tsrun(["run", "--rm", fromTar.id])).stdout).toBe("from tar\n");
    const alone = await built(["-"], { input: "FROM busybox\nRUN echo no-context > /n\n" });
    expect((await tsrun(["run", "--rm", alone.id, "cat", "/n"])).stdout).toBe("no-context\n");
    const noCopy = await build(["-"], { input: "FROM busybox\nCOPY x /x\n" });
    expect(noCopy.code).toBe(1);
    expect(noCopy.stderr).toMatch(/COPY x: file not found/);
    const dashF = await built(["-f", "-", dir], { input: "FROM busybox\nCOPY x /y\n" });
    expect((await tsrun(["run", "--rm", dashF.id, "cat", "/y"])).stdout).toBe("from tar\n");
  });

  it("a tarball context with read-only directories: unpacked, copied, and its temporary copy removed", async () => {
    const dir = context({ Dockerfile: "FROM busybox\nCOPY ro /ro\nCOPY . /ctx\n", "ro/deep/file": "read-only\n" });
    chmodSync(path.join(dir, "ro", "deep"), 0o555);
    chmodSync(path.join(dir, "ro"), 0o500);
    const tar = execFileSync("tar", ["-c", "-C", dir, "."]);
    chmodSync(path.join(dir, "ro"), 0o755);
    chmodSync(path.join(dir, "ro", "deep"), 0o755);
    const tmp = path.join(env.storeRoot, "tmp");
    const before = existsSync(tmp) ? readdirSync(tmp).filter((n) => n.includes("context")) : [];
    const r = await built(["-"], { input: tar });
    const check = await tsrun(["run", "--rm", r.id, "sh", "-c", "cat /ro/deep/file; stat -c %a /ctx/ro /ctx/ro/deep"]);
    expect(check.stdout).toBe("read-only\n500\n555\n");
    expect(existsSync(tmp) ? readdirSync(tmp).filter((n) => n.includes("context")) : []).toEqual(before);
  });
});

describe("errors", () => {
  it("one line with the Dockerfile line, status 1, no image written", async () => {
    const before = indexSnapshot();
    const containersBefore = (await ok(["ps", "-a", "-q", "--no-trunc"])).trim();
    const cases: [string, string][] = [
      ["FROM busybox\nFOO bar\n", "Error: Dockerfile:2: unknown instruction: FOO\n"],
      ["FROM busybox\nRUN echo\nCOPY\n", "Error: Dockerfile:3: COPY requires at least two arguments, but only one was provided. Destination could not be determined.\n"],
      ["FROM busybox\nCOPY --from=7 /x /x\n", "Error: Dockerfile:2: invalid from flag value 7: there is no build stage 7\n"],
      ["FROM busybox\nENV A=\"unterminated\n", "Error: Dockerfile:2: failed to process \"\\\"unterminated\": unexpected end of statement while looking for matching double-quote\n"],
      ["FROM busybox\nUSER nobody-here\nRUN true\n", "Error: Dockerfile:3: unable to find user nobody-here: no matching entries in passwd file\n"],
      ["FROM busybox\nRUN echo half > /half && exit 3\n", "Error: The command '/bin/sh -c echo half > /half && exit 3' returned a non-zero code: 3\n"],
    ];
    for (const [dockerfile, message] of cases) {
      const r = await build(["-t", "never-made", context({ Dockerfile: dockerfile })]);
      expect(r.code, dockerfile).toBe(1);
      expect(r.stderr, dockerfile).toBe(message);
    }
    const exec = await build([context({ Dockerfile: 'FROM busybox\nRUN ["/no/such/command"]\n' })]);
    expect(exec.code).toBe(1);
    expect(exec.stderr).toMatch(/^Error: The command '\/no\/such\/command' returned a non-zero code: 127: .*\/no\/such\/command.*\n$/);
    const target = await build(["--target", "nope", context({ Dockerfile: "FROM busybox\n" })]);
    expect(target.stderr).toBe('Error: target stage "nope" could not be found\n');
    const noDir = await build(["/no/such/context"]);
    expect(noDir.stderr).toBe('Error: unable to prepare context: path "/no/such/context" not found\n');
    expect(indexSnapshot()).toBe(before);
    // The failed RUNs' containers are gone too.
    expect((await ok(["ps", "-a", "-q", "--no-trunc"])).trim()).toBe(containersBefore);
  });
});

describe("interop", () => {
  it("an image built here (Docker format: it has a HEALTHCHECK) runs under Podman with the same config", async () => {
    const name = `localhost/${unique("for-podman")}:v1`;
    const dir = context({ Dockerfile: "FROM busybox\nENV WHO=podman\nWORKDIR /w\nCOPY f .\nRUN echo ran > r\nEXPOSE 80\nLABEL l=v\nHEALTHCHECK --interval=7s CMD true\nCMD [\"sh\", \"-c\", \"echo $WHO $(pwd) $(cat f r)\"]\n", f: "file\n" });
    const r = await built(["-t", name, dir]);
    const p = podmanCli(dir);
    const out = await shAsUser(
      `set -e; "$TSRUN" save ${name} | ${p} load -q >/dev/null; ${p} inspect --format '{{.Id}} {{json .Config.Env}} {{.Config.WorkingDir}} {{json .Config.Cmd}} {{json .Config.ExposedPorts}} {{json .Config.Labels}} {{json .HealthCheck}}' ${name}; ${p} run --rm --net none ${name}`,
      { timeout: 90_000 },
    );
    expect(out.code, out.stderr).toBe(0);
    const [inspected, ran] = out.stdout.trim().split("\n");
    expect(inspected).toBe(`${r.id.slice(7)} ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","WHO=podman"] /w ["sh","-c","echo $WHO $(pwd) $(cat f r)"] {"80/tcp":{}} {"l":"v"} {"Test":["CMD-SHELL","true"],"Interval":7000000000}`);
    expect(ran).toBe("podman /w file ran");
  });
});

afterAll(() => {
  // Nothing of the builds' temporary files stays in the store's tmp dir.
  const tmp = path.join(env.storeRoot, "tmp");
  expect(existsSync(tmp) ? readdirSync(tmp).filter((n) => n.startsWith("build-")) : []).toEqual([]);
});
