// `tsrun build` with Dockerfiles written the way other projects write them: the cases where it
// differed from Docker (BuildKit) and were fixed, each with the Dockerfile that showed it.
import { beforeAll, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import { chownSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { env, filesDir, importBusybox, scratchDir, shAsUser, tsrun, unique, tsrunOk } from "./helpers.js";

const context = (files: Record<string, string | [string, number]>): string => filesDir(files, "build-compat");

const ok = (args: string[], timeout = 120_000): Promise<string> => tsrunOk(args, { timeout });

beforeAll(async () => {
  await importBusybox("busybox");
});

describe("STOPSIGNAL", () => {
  it("systemd's SIGRTMIN+3 builds and stops the container with signal 37; a name that is no signal is refused", async () => {
    const name = unique("rtmin");
    // The container's shell exits 37 when the signal arrives: stop sent SIGRTMIN+3, not SIGKILL.
    await ok(["build", "-q", "-t", name, context({ Dockerfile: "FROM busybox\nSTOPSIGNAL SIGRTMIN+3\nCMD [\"sh\", \"-c\", \"trap 'exit 37' 37; while true; do sleep 0.1; done\"]\n" })]);
    expect((await ok(["inspect", "-f", "{{.Config.StopSignal}}", name])).trim()).toBe("SIGRTMIN+3");
    const id = (await ok(["run", "-d", name])).trim();
    await ok(["stop", "-t", "30", id]);
    expect((await ok(["inspect", "-f", "{{.State.ExitCode}}", id])).trim()).toBe("37");
    await ok(["rm", id]);
    const bad = await tsrun(["build", "-t", unique("never"), context({ Dockerfile: "FROM busybox\nSTOPSIGNAL SIGFOO\n" })]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe("Error: Dockerfile:2: invalid signal: SIGFOO\n");
  });
});

/** Listens on the first free port of this list (other suites may run beside this one). */
async function listenOnOneOf(server: Server, ports: number[]): Promise<number> {
  for (const port of ports) {
    const bound = await new Promise<boolean>((resolve) => {
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => resolve(true));
    });
    if (bound) return port;
  }
  throw new Error(`none of the ports ${ports.join(", ")} is free`);
}

describe("ADD of a URL", () => {
  it("downloads from ports fetch() refuses (6000, 6665-6669, 10080, ...); a URL path without a file name is BuildKit's __unnamed__", async () => {
    const server = createServer((req, res) => {
      if (req.url === "/file.txt" || req.url === "/") {
        res.writeHead(200, { "Last-Modified": "Thu, 02 Jan 2020 03:04:05 GMT" });
        res.end(req.url === "/" ? "index\n" : "file\n");
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    const port = await listenOnOneOf(server, [6000, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080, 6566, 4045]);
    try {
      const url = `http://127.0.0.1:${port}`;
      const name = unique("add-url");
      await ok(["build", "-q", "-t", name, context({ Dockerfile: `FROM busybox\nADD ${url}/file.txt /dl/\nADD ${url}/ /index.html\nADD ${url}/ /dir/\n` })]);
      const out = await ok(["run", "--rm", "--network", "none", name, "sh", "-c", "stat -c '%n %a %Y' /dl/file.txt /index.html /dir/__unnamed__ && cat /dl/file.txt /index.html"]);
      expect(out).toBe("/dl/file.txt 600 1577934245\n/index.html 600 1577934245\n/dir/__unnamed__ 600 1577934245\nfile\nindex\n");
      const missing = await tsrun(["build", context({ Dockerfile: `FROM busybox\nADD ${url}/nope /x\n` })]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toBe(`Error: Dockerfile:2: failed to download ${url}/nope: HTTP 404 Not Found\n`);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe("RUN --mount", () => {
  it("a bind shows the context as COPY does (.dockerignore applied), rw writes are thrown away, from= binds a stage's or an image's files with their owners; cache and secret take uid/gid", async () => {
    const secret = path.join(context({ "token.txt": "s3cret\n" }), "token.txt");
    const dir = context({
      ".dockerignore": ".env\nnode_modules\n",
      ".env": "API_KEY=leak\n",
      "node_modules/big.js": "x\n",
      "src/main.c": "int main;\n",
      Dockerfile: [
        "FROM busybox AS tools",
        "RUN mkdir -p /opt/tool && echo tool > /opt/tool/bin && chown -R 1000:50 /opt/tool",
        "FROM busybox",
        "RUN --mount=type=bind,target=/ctx ls -A /ctx > /seen",
        "RUN --mount=type=bind,source=src,target=/src,rw echo changed > /src/main.c && echo new > /src/new && cat /src/main.c > /wrote",
        "RUN --mount=type=bind,from=tools,source=/opt/tool,target=/t ls -ln /t | tail -n +2 | awk '{print $3, $4, $9}' > /tool",
        "RUN --mount=type=bind,from=busybox,source=/etc/group,target=/g grep -c staff /g > /group",
        "USER alice",
        "RUN --mount=type=cache,target=/home/alice/.cache,uid=1000,gid=1000,mode=0700 stat -c '%u:%g %a' /home/alice/.cache > /tmp/cache && touch /home/alice/.cache/ok",
        "RUN --mount=type=secret,id=tok,uid=1000,mode=0400 cat /run/secrets/tok > /tmp/secret",
        "",
      ].join("\n"),
    });
    const name = unique("mounts");
    await ok(["build", "-q", "--secret", `id=tok,src=${secret}`, "-t", name, dir]);
    const out = await ok(["run", "--rm", "--network", "none", name, "sh", "-c", "cat /seen /wrote /tool /group /tmp/cache /tmp/secret; ls /src /t /g 2>&1 | wc -l"]);
    expect(out).toBe(".dockerignore\nDockerfile\nsrc\nchanged\n1000 50 bin\n1\n1000:1000 700\ns3cret\n3\n");
    // The user's own file is as it was.
    expect(readFileSync(path.join(dir, "src/main.c"), "utf8")).toBe("int main;\n");
    // The copies and link trees made for the binds are gone.
    expect(readdirSync(path.join(env.storeRoot, "layers")).filter((n) => n.startsWith(".tmp-"))).toEqual([]);
    expect(readdirSync(path.join(env.storeRoot, "tmp")).filter((n) => n.startsWith("build-"))).toEqual([]);
    // A change to an ignored file keeps every step (the stage's and the 6 RUNs) cached.
    writeFileSync(path.join(dir, ".env"), "API_KEY=other\n");
    const again = await ok(["build", "--secret", `id=tok,src=${secret}`, dir]);
    expect((again.match(/^--> Using cache /gm) ?? []).length).toBe(7);
  });
});

describe("a context archive on standard input", () => {
  it("its Dockerfile is looked up inside it: a symlink out of it is refused, a missing -f is named as given", async () => {
    const evil = scratchDir("evil-context");
    symlinkSync("/etc/passwd", path.join(evil, "Dockerfile"));
    if (env.user) chownSync(path.join(evil, "Dockerfile"), env.user.uid, env.user.gid);
    const out = await shAsUser(`tar -C ${evil} -c . | "$TSRUN" build -`);
    expect(out.code).toBe(1);
    expect(out.stderr).toBe("Error: the Dockerfile Dockerfile in the context archive points outside it\n");
    const dir = context({ Containerfile: "FROM busybox\nRUN echo from-containerfile\n" });
    const missing = await shAsUser(`tar -C ${dir} -c . | "$TSRUN" build -f Custom -`);
    expect(missing.stderr).toBe("Error: cannot read the Dockerfile Custom in the context archive: no such file\n");
    // Without -f, a Containerfile is found as in a directory context.
    const found = await shAsUser(`tar -C ${dir} -c . | "$TSRUN" build -`, { timeout: 120_000 });
    expect(found.code, found.stderr).toBe(0);
    expect(found.stdout).toContain("from-containerfile");
  });
});

describe("COPY --exclude and --parents", () => {
  const files = {
    "home.txt": "h",
    "home.md": "h",
    "homer.bin": "h",
    "docs/a.md": "a",
    "docs/b.txt": "b",
    "docs/keep.md": "k",
    "docs/sub/c.md": "c",
    "docs/node_modules/m.js": "m",
    "x/y/a.txt": "a",
    "x/y/b.bin": "b",
    "x/z/c.txt": "c",
  };

  it("select what BuildKit selects: patterns relative to each source, a wildcard's matches excluded by name, --from too, parents kept from / or from a ./ pivot", async () => {
    const dir = context({
      ...files,
      Dockerfile: [
        "FROM busybox AS stage",
        "RUN mkdir -p /src/sub && echo 1 > /src/a.txt && echo 2 > /src/b.log && echo 3 > /src/sub/c.txt",
        "FROM busybox",
        "COPY --exclude=*.txt docs /e1/",
        "COPY --exclude=**/*.md docs /e2/",
        "COPY --exclude=**/*.md --exclude=!keep.md docs /e3/",
        "COPY --exclude=node_modules docs /e4/",
        // home.txt and home.md are matched by the wildcard but excluded; docs' contents are matched relative to docs.
        "COPY --exclude=*.txt --exclude=*.md hom* doc* /e5/",
        "COPY --from=stage --exclude=*.log --exclude=sub /src /e6/",
        "ADD --exclude=*.md docs /a1/",
        "COPY --parents x/y/a.txt x/z/c.txt /p1/",
        "COPY --parents x/*/*.txt /p2/",
        "COPY --parents ./x/./y/*.txt /p3/",
        "COPY --parents --exclude=**/*.bin ./x/./y /p4/",
        "COPY --parents --exclude=x/z x /p5/",
        // A symlink out of the context is copied as the link it is, never followed.
        "COPY --parents x/o* /p6/",
        "",
      ].join("\n"),
    });
    symlinkSync("/etc", path.join(dir, "x", "out"));
    const image = unique("copyflags");
    await ok(["build", "-q", "-t", image, dir]);
    const listed = (await ok(["run", "--rm", image, "find", "/e1", "/e2", "/e3", "/e4", "/e5", "/e6", "/a1", "/p1", "/p2", "/p3", "/p4", "/p5", "/p6"])).trim().split("\n").sort();
    expect(listed).toEqual(
      [
        ...["/e1", "/e1/a.md", "/e1/keep.md", "/e1/node_modules", "/e1/node_modules/m.js", "/e1/sub", "/e1/sub/c.md"],
        ...["/e2", "/e2/b.txt", "/e2/node_modules", "/e2/node_modules/m.js", "/e2/sub"],
        ...["/e3", "/e3/b.txt", "/e3/keep.md", "/e3/node_modules", "/e3/node_modules/m.js", "/e3/sub"],
        ...["/e4", "/e4/a.md", "/e4/b.txt", "/e4/keep.md", "/e4/sub", "/e4/sub/c.md"],
        ...["/e5", "/e5/homer.bin", "/e5/node_modules", "/e5/node_modules/m.js", "/e5/sub", "/e5/sub/c.md"],
        ...["/e6", "/e6/a.txt"],
        ...["/a1", "/a1/b.txt", "/a1/node_modules", "/a1/node_modules/m.js", "/a1/sub", "/a1/sub/c.md"],
        ...["/p1", "/p1/x", "/p1/x/y", "/p1/x/y/a.txt", "/p1/x/z", "/p1/x/z/c.txt"],
        ...["/p2", "/p2/x", "/p2/x/y", "/p2/x/y/a.txt", "/p2/x/z", "/p2/x/z/c.txt"],
        ...["/p3", "/p3/y", "/p3/y/a.txt"],
        ...["/p4", "/p4/y", "/p4/y/a.txt"],
        ...["/p5", "/p5/x", "/p5/x/out", "/p5/x/y", "/p5/x/y/a.txt", "/p5/x/y/b.bin"],
        ...["/p6", "/p6/x", "/p6/x/out"],
      ].sort(),
    );
    expect((await ok(["run", "--rm", image, "readlink", "/p6/x/out"])).trim()).toBe("/etc");
  });

  it("the cache: a change to an excluded file hits, a changed pattern misses", async () => {
    const dir = context({ ...files, Dockerfile: "FROM busybox\nCOPY --exclude=*.txt docs /c/\n" });
    const usingCache = (out: string): number => (out.match(/^--> Using cache /gm) ?? []).length;
    await ok(["build", dir]);
    writeFileSync(path.join(dir, "docs", "b.txt"), "changed");
    expect(usingCache(await ok(["build", dir]))).toBe(1);
    writeFileSync(path.join(dir, "Dockerfile"), "FROM busybox\nCOPY --exclude=*.md docs /c/\n");
    const image = unique("copycache");
    const out = await ok(["build", "-t", image, dir]);
    expect(usingCache(out)).toBe(0);
    expect((await ok(["run", "--rm", image, "cat", "/c/b.txt"])).trim()).toBe("changed");
  });
});

describe("errors", () => {
  it("name the Dockerfile given with -f; flags tsrun lacks are refused as such, not as unknown", async () => {
    const cases: [string, string][] = [
      ["COPY --bogus f /x", "unknown flag: --bogus"],
      ["COPY --exclude=*.txt --exclude=[ f /x/", 'COPY --exclude: syntax error in pattern: "["'],
      ["COPY --parents nowhere/f /x/", "COPY nowhere/f: file not found in build context or excluded by .dockerignore"],
      ["ADD --keep-git-dir=true f /x", "ADD --keep-git-dir is not supported yet"],
      // A repository URL is no download (BuildKit: an http(s) URL whose path ends in .git); COPY takes neither.
      ["ADD https://127.0.0.1:1/moby/buildkit.git#v0.10.1 /src", "ADD of a git repository (https://127.0.0.1:1/moby/buildkit.git#v0.10.1) is not supported"],
      ["COPY http://127.0.0.1:1/f /x", "source can't be a URL for COPY"],
      ["EXPOSE 8080-8000", 'EXPOSE: invalid port range "8080-8000": the end is below the start'],
    ];
    for (const [line, message] of cases) {
      const dir = context({ f: "x\n", "Custom.dockerfile": `FROM busybox\n${line}\n` });
      const r = await tsrun(["build", "-t", unique("never"), "-f", path.join(dir, "Custom.dockerfile"), dir]);
      expect(r.code, line).toBe(1);
      expect(r.stderr, line).toBe(`Error: Custom.dockerfile:2: ${message}\n`);
    }
  });
});

/** The host's architecture as BuildKit names it (TARGETARCH). */
const hostArch = ({ x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" } as Record<string, string>)[process.arch] ?? process.arch;

describe("multi-platform and distroless Dockerfiles", () => {
  it("FROM base-${TARGETARCH} after a global ARG TARGETARCH picks the host's stage; FROM scratch with USER nonroot and COPY --chown=nonroot builds owned by root, with a warning", async () => {
    // docker-library and buildx examples: per-architecture stages; distroless images: a scratch stage with a named user.
    const dir = context({
      app: "app\n",
      Dockerfile: [
        "ARG TARGETARCH",
        ...[...new Set(["amd64", "arm64", hostArch])].flatMap((arch) => [`FROM busybox AS base-${arch}`, `RUN echo ${arch} > /arch`]),
        "FROM --platform=$BUILDPLATFORM base-${TARGETARCH} AS picked",
        "FROM scratch AS dist",
        "USER nonroot:nonroot",
        "WORKDIR /app",
        "COPY --chown=nonroot:nonroot app /app/",
        "COPY --from=picked --chown=nobody /arch /app/arch",
        "FROM busybox",
        "COPY --from=dist /app /app",
        "",
      ].join("\n"),
    });
    const name = unique("distroless");
    const r = await tsrun(["build", "-q", "-t", name, dir], { timeout: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    // WORKDIR (the stage's USER), then the two COPY --chown lines.
    expect(r.stderr.replace(/Dockerfile:\d+/g, "Dockerfile:LINE")).toBe(
      [
        'tsrun: warning: Dockerfile:LINE: "nonroot:nonroot": no user nonroot in /etc/passwd, no group nonroot in /etc/group: 0:0 is used, as Docker does',
        'tsrun: warning: Dockerfile:LINE: "nonroot:nonroot": no user nonroot in /etc/passwd, no group nonroot in /etc/group: 0:0 is used, as Docker does',
        'tsrun: warning: Dockerfile:LINE: "nobody": no user nobody in /etc/passwd: 0:0 is used, as Docker does',
        "",
      ].join("\n"),
    );
    const out = await ok(["run", "--rm", "--network", "none", name, "sh", "-c", "cat /app/arch; stat -c '%n %u:%g' /app /app/app /app/arch"]);
    expect(out).toBe(`${hostArch}\n/app 0:0\n/app/app 0:0\n/app/arch 0:0\n`);
  });
});

describe("COPY and ADD flags of Dockerfile 1.14-1.17", () => {
  it("--chmod takes symbolic modes (applied to each file's own mode, X for directories), not to an ADDed archive's contents; ADD --unpack; a COPY that matches nothing makes no layer", async () => {
    const archiveDir = scratchDir("chmod-archive");
    writeFileSync(path.join(archiveDir, "tool"), "#!/bin/sh\n", { mode: 0o700 });
    execFileSync("tar", ["-czf", path.join(archiveDir, "tool.tar.gz"), "-C", archiveDir, "tool"]);
    const dir = context({
      "run.sh": ["#!/bin/sh\n", 0o644],
      "conf/app.conf": ["x\n", 0o664],
      "conf/sub/more.conf": ["y\n", 0o600],
      Dockerfile: [
        "FROM busybox",
        "COPY --chmod=u=rwx,g=rx,o= run.sh /bin/run.sh",
        "COPY --chmod=+x run.sh /bin/plus-x",
        "COPY --chmod=go-w,a+X conf /etc/conf",
        "ADD --chmod=755 tool.tar.gz /opt/",
        "ADD --unpack=false tool.tar.gz /kept/",
        "COPY *.nomatch /none/",
        "",
      ].join("\n"),
    });
    execFileSync("cp", [path.join(archiveDir, "tool.tar.gz"), dir]);
    if (env.user) chownSync(path.join(dir, "tool.tar.gz"), env.user.uid, env.user.gid);
    execFileSync("chmod", ["0775", path.join(dir, "conf", "sub")]);
    const name = unique("chmod");
    await ok(["build", "-q", "-t", name, dir]);
    const out = await ok(["run", "--rm", "--network", "none", name, "sh", "-c", "stat -c '%n %a' /bin/run.sh /bin/plus-x /etc/conf/app.conf /etc/conf/sub /etc/conf/sub/more.conf /opt/tool /kept/tool.tar.gz; ls /none 2>&1 || true"]);
    expect(out).toBe("/bin/run.sh 750\n/bin/plus-x 755\n/etc/conf/app.conf 644\n/etc/conf/sub 755\n/etc/conf/sub/more.conf 600\n/opt/tool 700\n/kept/tool.tar.gz 644\nls: /none: No such file or directory\n");
    // busybox's layer and one per COPY/ADD that copied something: the unmatched wildcard adds none.
    expect((await ok(["inspect", "-f", "{{len .RootFS.Layers}}", name])).trim()).toBe("6");
    const bad = await tsrun(["build", context({ Dockerfile: "FROM busybox\nCOPY --chmod=u!x Dockerfile /x\n" })]);
    expect([bad.code, bad.stderr]).toEqual([1, "Error: Dockerfile:2: invalid chmod parameter: 'u!x': invalid syntax\n"]);
  });
});

describe("docker/buildx's own Dockerfile", () => {
  it("a stage name used twice is a warning (--from takes the last); RUN --mount without a target mounts at the WORKDIR, without a type is a bind", async () => {
    const dir = context({
      "main.go": "v1.2\n",
      Dockerfile: [
        "# syntax=docker/dockerfile:1.3",
        "FROM busybox AS dockerd-release",
        "RUN echo first > /which",
        "FROM busybox AS binaries",
        "RUN echo bin > /buildx",
        "FROM busybox AS buildx-version",
        "WORKDIR /src",
        "RUN --mount=target=. \\",
        "  echo -n \"$(cat main.go)\" | tee /tmp/.version;",
        "FROM busybox AS releaser",
        "WORKDIR /work",
        "RUN --mount=from=binaries \\",
        "  --mount=type=bind,source=/tmp/.version,target=/tmp/.version,from=buildx-version \\",
        "  mkdir -p /out && cp buildx* \"/out/buildx-$(cat /tmp/.version)\"",
        "FROM busybox AS dockerd-release",
        "RUN echo second > /which",
        "FROM busybox",
        "COPY --from=dockerd-release /which /which",
        "COPY --from=releaser /out/ /out/",
        "",
      ].join("\n"),
    });
    const name = unique("buildx-df");
    const r = await tsrun(["build", "-q", "-t", name, dir], { timeout: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('tsrun: warning: Dockerfile:15: duplicate stage name "dockerd-release", stage names should be unique\n');
    expect(await ok(["run", "--rm", "--network", "none", name, "sh", "-c", "cat /which; ls /out"])).toBe("second\nbuildx-v1.2\n");
    const root = await tsrun(["build", context({ Dockerfile: "FROM busybox\nRUN --mount=type=cache true\n" })]);
    expect([root.code, root.stderr]).toEqual([1, 'Error: Dockerfile:2: RUN --mount=type=cache: invalid mount target "/"\n']);
  });
});

describe("moby/moby's Dockerfile", () => {
  it("FROM --platform spelt as an architecture alone (amd64), an OS alone or x86_64 is the host's platform; global ARGs built from others; FROM cross-${CROSS}; COPY of /absolute context paths", async () => {
    const aliases: Record<string, string> = { amd64: "x86_64", arm64: "aarch64" };
    const dir = context({
      "hack/install.sh": "i\n",
      "hack/x.installer": "x\n",
      Dockerfile: [
        "ARG GO_VERSION=1.19.3",
        'ARG BASE_DEBIAN_DISTRO="bullseye"',
        'ARG GOLANG_IMAGE="golang:${GO_VERSION}-${BASE_DEBIAN_DISTRO}"',
        'ARG CROSS="false"',
        "FROM busybox AS base",
        "ARG GOLANG_IMAGE",
        'RUN echo "$GOLANG_IMAGE" > /img',
        "FROM base AS cross-false",
        "FROM --platform=linux/s390x base AS cross-true",
        "FROM cross-${CROSS} AS dev-base",
        `FROM --platform=${hostArch} busybox AS vpnkit-${hostArch}`,
        "RUN echo vpnkit > /vpnkit",
        `FROM --platform=${aliases[hostArch] ?? hostArch} busybox AS alias`,
        "FROM --platform=linux alias AS os-only",
        "FROM dev-base",
        "COPY /hack/install.sh /hack/x.installer /",
        `COPY --from=vpnkit-${hostArch}     /vpnkit /build/vpnkit`,
        "COPY --from=os-only /etc/group /group",
        "",
      ].join("\n"),
    });
    const name = unique("moby-df");
    await ok(["build", "-q", "-t", name, dir]);
    expect(await ok(["run", "--rm", "--network", "none", name, "sh", "-c", "cat /img /install.sh /x.installer /build/vpnkit; test -s /group && echo group"])).toBe("golang:1.19.3-bullseye\ni\nx\nvpnkit\ngroup\n");
    const other = await tsrun(["build", "--build-arg", "CROSS=true", dir]);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/^Error: Dockerfile:9: FROM --platform=linux\/s390x: only the build host's platform \(linux\/\w+\) can be built here\n$/);
  });
});

describe("build --build-context", () => {
  it("a directory (its own .dockerignore) or an image stands for a name in FROM, COPY --from and RUN --mount from=, and replaces a stage of that name", async () => {
    const docs = context({ "a.md": "doc\n", "skip.tmp": "x\n", ".dockerignore": "*.tmp\n", "sub/s.md": "s\n" });
    const rootfs = context({ "etc/marker": "from-dir\n" });
    const dir = context({
      Dockerfile: [
        "FROM scratch AS src",
        "RUN exit 1",
        "FROM alpine AS base",
        "RUN echo based > /based",
        "FROM base",
        "COPY --from=docs . /docs/",
        "COPY --from=src /etc/marker /marker",
        "RUN --mount=from=docs,target=/mnt/docs ls -A /mnt/docs > /mounted",
        "COPY --from=empty / /empty/",
        "",
      ].join("\n"),
    });
    const name = unique("named-ctx");
    const contexts = ["--build-context", `docs=${docs}`, "--build-context", `src=${rootfs}`, "--build-context", "alpine=docker-image://busybox", "--build-context", "empty=docker-image://scratch"];
    await ok(["build", "-q", ...contexts, "-t", name, dir]);
    expect(await ok(["run", "--rm", "--network", "none", name, "sh", "-c", "cat /based /marker /mounted; find /docs /empty | sort; stat -c '%u:%g' /docs/a.md"])).toBe(
      "based\nfrom-dir\n.dockerignore\na.md\nsub\n/docs\n/docs/.dockerignore\n/docs/a.md\n/docs/sub\n/docs/sub/s.md\n/empty\n0:0\n",
    );
    // A change in the named directory is a change of the step that reads it.
    writeFileSync(path.join(docs, "a.md"), "changed\n");
    const again = await ok(["build", ...contexts, "-t", name, dir]);
    expect(again).not.toMatch(/COPY --from=docs[^\n]*\n--> Using cache/);
    expect(await ok(["run", "--rm", "--network", "none", name, "cat", "/docs/a.md"])).toBe("changed\n");
    for (const [value, message] of [
      ["x=https://github.com/moby/buildkit.git", "Error: --build-context x=https://github.com/moby/buildkit.git: only a local directory or docker-image://REFERENCE is supported (not git, HTTP, oci-layout or bake targets)\n"],
      ["x=/no/such/dir", 'Error: --build-context x=/no/such/dir: path "/no/such/dir" not found\n'],
    ] as const) {
      const r = await tsrun(["build", "--build-context", value, dir]);
      expect([r.code, r.stderr]).toEqual([125, message]);
    }
  });
});

describe("ARG and ENV of one name", () => {
  it("an ARG declared after the base image's ENV wins in RUN and expansions (ARG DEBIAN_FRONTEND=noninteractive), an ENV after the ARG wins over it; the image keeps the ENV", async () => {
    // docker/cli#3344, moby#36925: BuildKit sets both in the build's environment, in order.
    const parent = unique("env-parent");
    await ok(["build", "-q", "-t", parent, context({ Dockerfile: 'FROM busybox\nENV HELLO="World" DEBIAN_FRONTEND=teletype\n' })]);
    const dir = context({
      Dockerfile: [
        `FROM ${parent}`,
        "ARG HELLO",
        "ARG DEBIAN_FRONTEND=noninteractive",
        'RUN echo "$HELLO $DEBIAN_FRONTEND" > /seen && env | grep -E "^(HELLO|DEBIAN_FRONTEND)=" | sort >> /seen',
        "ARG CONT_IMG_VER",
        "ENV CONT_IMG_VER=v1.0.0",
        "RUN echo $CONT_IMG_VER >> /seen",
        "LABEL hello=$HELLO",
        "",
      ].join("\n"),
    });
    const name = unique("env-arg");
    await ok(["build", "-q", "--build-arg", "HELLO=cli", "--build-arg", "CONT_IMG_VER=v2", "-t", name, dir]);
    expect(await ok(["run", "--rm", "--network", "none", name, "cat", "/seen"])).toBe("cli noninteractive\nDEBIAN_FRONTEND=noninteractive\nHELLO=cli\nv1.0.0\n");
    expect(await ok(["inspect", "-f", "{{json .Config.Env}} {{json .Config.Labels}}", name])).toBe(
      '["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","HELLO=World","DEBIAN_FRONTEND=teletype","CONT_IMG_VER=v1.0.0"] {"hello":"cli"}\n',
    );
  });
});

describe("build --no-cache-filter", () => {
  it("builds the named stages without the cache, and what copies from them again; the other stages stay cached", async () => {
    const dir = context({
      Dockerfile: [
        "FROM busybox AS deps",
        "RUN echo deps-ran && cat /proc/sys/kernel/random/uuid > /deps",
        "FROM busybox AS tools",
        "RUN echo tools-ran && cat /proc/sys/kernel/random/uuid > /tools",
        "FROM busybox",
        "COPY --from=deps /deps /deps",
        "COPY --from=tools /tools /tools",
        "",
      ].join("\n"),
    });
    const name = unique("no-cache-filter");
    await ok(["build", "-q", "-t", name, dir]);
    const before = await ok(["run", "--rm", "--network", "none", name, "cat", "/deps", "/tools"]);
    const out = await ok(["build", "--no-cache-filter", "deps", "-t", name, dir]);
    expect(out).toMatch(/^deps-ran$/m);
    expect(out).not.toMatch(/^tools-ran$/m);
    const after = await ok(["run", "--rm", "--network", "none", name, "cat", "/deps", "/tools"]);
    const [depsBefore, toolsBefore] = before.trim().split("\n");
    const [depsAfter, toolsAfter] = after.trim().split("\n");
    expect(depsAfter).not.toBe(depsBefore);
    expect(toolsAfter).toBe(toolsBefore);
  });
});
