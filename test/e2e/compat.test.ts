// Where tsrun used to differ from Docker (BuildKit) and Podman on inputs written by other people:
// real-world Dockerfile idioms, archives made by other tools, hostile inputs, everyday flags.
// Each case is a regression test for one fix; the comments say what Docker does.
import { beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { filesDir, importBusybox, scratchDir, shAsUser, tsrun, unique, tsrunOk } from "./helpers.js";
import { startRegistry, stopRegistry } from "./registry-server.js";

/** A directory with these files (mode 0644, or [content, mode]), owned by the test user. */
const files = (entries: Record<string, string | [string, number]>, prefix = "compat"): string => filesDir(entries, prefix);

const ok = (args: string[], input?: string | Buffer): Promise<string> => tsrunOk(args, { timeout: 120_000, ...(input !== undefined ? { input } : {}) });

beforeAll(async () => {
  await importBusybox("busybox");
});

describe("Dockerfiles as people write them", () => {
  it("USER then WORKDIR: the directory belongs to the user; optional files by wildcard; PATH always set", async () => {
    // The node/python image idiom: a non-root user's WORKDIR is writable by RUN (BuildKit makes
    // it as the USER), `COPY go.mod go.sum* ./` works without a go.sum, and every image gets a
    // PATH even when its base has none (busybox imported here has no Env at all).
    // Patterns with "-" (`requirements-*.txt`, `build-*` in .dockerignore) used to be refused.
    const dir = files({
      Dockerfile: "FROM busybox\nWORKDIR /tmp\nUSER alice\nWORKDIR /home/alice/src/app\nCOPY go.mod go.sum* requirements-*.txt build-* ./\nRUN pwd > where && id -u >> where\n",
      "go.mod": "module x\n",
      "requirements-dev.txt": "r\n",
      "build-out": "ignored\n",
      ".dockerignore": "build-*\n",
    });
    const name = unique("workdir-user");
    await ok(["build", "-q", "-t", name, dir]);
    expect(JSON.parse(await ok(["inspect", "-f", "{{json .Config.Env}}", name]))).toEqual(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    const out = await ok(["run", "--rm", name, "sh", "-c", "cat where; stat -c '%u:%g %n' /home/alice/src /home/alice/src/app go.mod; ls"]);
    expect(out).toBe("/home/alice/src/app\n1000\n1000:1000 /home/alice/src\n1000:1000 /home/alice/src/app\n0:0 go.mod\ngo.mod\nrequirements-dev.txt\nwhere\n");
    // WORKDIR of a directory that exists adds no layer; one that it makes adds one.
    const history = (await ok(["history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Size}}", name])).trim().split("\n");
    expect(history.find((h) => h.startsWith("WORKDIR /tmp|"))).toBe("WORKDIR /tmp|0B");
    expect(history.find((h) => h.startsWith("WORKDIR /home/alice/src/app|"))).not.toMatch(/\|0B$/);
  });

  it("a stage built FROM another inherits its ARGs; a RUN heredoc with #! runs with that interpreter; HEALTHCHECK --start-interval is kept", async () => {
    // Docker's documentation: "arguments and variables are inherited from parent stages"; and
    // `RUN <<EOF` + `#!/usr/bin/env python3` runs the body with python (BuildKit mounts the
    // script at /dev/pipes/EOF), not with /bin/sh.
    const dir = files({
      Dockerfile: [
        "FROM busybox AS parent",
        "ARG VERSION=1.2",
        "FROM parent AS child",
        "RUN <<EOF",
        "#!/bin/awk -f",
        'BEGIN { print "awk ran " ENVIRON["VERSION"] > "/out.txt" }',
        "EOF",
        "RUN <<EOF",
        "#!/bin/sh",
        'echo "$0" >> /out.txt',
        "EOF",
        "HEALTHCHECK --interval=5s --start-interval=1s CMD true",
        "",
      ].join("\n"),
    });
    const name = unique("stage-args");
    await ok(["build", "-q", "-t", name, dir]);
    expect(await ok(["run", "--rm", name, "cat", "/out.txt"])).toBe("awk ran 1.2\n/dev/pipes/EOF\n");
    // Docker 25's --start-interval is kept in the config.
    expect(await ok(["inspect", "-f", "{{json .Config.Healthcheck}}", name])).toBe('{"Test":["CMD-SHELL","true"],"Interval":5000000000,"StartInterval":1000000000}\n');
  });
  it("RUN --mount=type=secret gets build --secret; a missing optional secret or ssh mount is skipped; nothing of it stays", async () => {
    // `RUN --mount=type=secret,id=npmrc,target=/root/.npmrc npm ci` is how private registries
    // are reached; Docker skips the mount when no secret is given (required=false), and the
    // secret and its mount points never reach the image.
    const dir = files({
      Dockerfile: [
        "FROM busybox",
        "RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /size && stat -c %a /run/secrets/token >> /size",
        "RUN --mount=type=secret,id=token,env=TOKEN --mount=type=secret,id=absent --mount=type=ssh test -n \"$TOKEN\" && test ! -e /run/secrets/absent && echo env-ok > /env",
        "RUN --mount=type=cache,target=/root/.cache/tool echo c > /root/.cache/tool/c",
        "",
      ].join("\n"),
      "token.txt": "s3cr3t-value\n",
    });
    const name = unique("secret");
    await ok(["build", "-q", "-t", name, "--secret", `id=token,src=${path.join(dir, "token.txt")}`, dir]);
    expect(await ok(["run", "--rm", name, "sh", "-c", "cat /size /env; ls -a /run /root/.cache 2>&1 | wc -l"])).toBe("13\n400\nenv-ok\n2\n");
    const saved = await shAsUser(`"$TSRUN" save ${name} | tar -xOf - | grep -c s3cr3t-value`);
    expect(saved.stdout.trim()).toBe("0");
    const required = files({ Dockerfile: "FROM busybox\nRUN --mount=type=secret,id=need,required=true true\n" });
    const r = await tsrun(["build", "-q", required]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: Dockerfile:2: .*secret need not found.*\n$/);
  });
});

describe("build contexts from other tools", () => {
  it("a context tarball on stdin keeps its symlinks as written (absolute, leading up); hostile entries are refused", async () => {
    // `tar -c . | docker build -` with `lib -> /usr/lib` or `shared -> ../../shared` in the
    // tree: Docker copies the links as links. node-tar used to refuse or rewrite them.
    const dir = files({ Dockerfile: "FROM busybox\nCOPY . /ctx/\n", "f.txt": "f\n" });
    const name = unique("stdin-ctx");
    const r = await shAsUser(`cd ${dir} && ln -s /etc/passwd abs && ln -s ../../shared/lib up && tar -cf - . | "$TSRUN" build -q -t ${name} -`);
    expect(r.code, r.stderr).toBe(0);
    expect(await ok(["run", "--rm", name, "sh", "-c", "readlink /ctx/abs; readlink /ctx/up; cat /ctx/f.txt"])).toBe("/etc/passwd\n../../shared/lib\nf\n");
    const hostile = await shAsUser(`cd ${dir} && tar -cf - --transform 's,^./f.txt,../escape.txt,' ./f.txt ./Dockerfile | "$TSRUN" build -q -`);
    expect(hostile.code).toBe(1);
    expect(hostile.stderr).toMatch(/^Error: unable to prepare context: .*climbs above/);
    expect(hostile.stderr.trim().split("\n")).toHaveLength(1);
  });
});

describe("everyday commands with real-world flags", () => {
  it("ps --format takes Go templates, table and json with docker/cli's fields", async () => {
    const name = unique("psfmt");
    expect((await tsrun(["run", "--name", name, "-l", "team=a", "busybox", "sh", "-c", "exit 3"])).code).toBe(3);
    const line = (await ok(["ps", "-a", "--filter", `name=^${name}$`, "--format", "{{.Names}} {{.State}} {{.Status}} {{.Labels}} {{.Networks}}"])).trim();
    expect(line).toMatch(new RegExp(`^${name} exited Exited \\(3\\) .* ago team=a bridge$`));
    const table = (await ok(["ps", "-a", "--filter", `name=^${name}$`, "--format", "table {{.Names}}\t{{.Command}}"])).split("\n");
    expect(table[0]).toMatch(/^NAMES +COMMAND$/);
    expect(table[1]).toMatch(new RegExp(`^${name} +"sh -c exit 3"$`));
    const json = JSON.parse(await ok(["ps", "-a", "--filter", `name=^${name}$`, "--format", "json"])) as Record<string, string>;
    expect(Object.keys(json)).toEqual(["Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes", "Mounts", "Names", "Networks", "Ports", "RunningFor", "Size", "State", "Status"]);
    expect(json.Image).toBe("busybox");
    await tsrun(["rm", name]);
  });

  it("images --filter: dangling, reference, label, before/since", async () => {
    const dir = files({ Dockerfile: "FROM busybox\nLABEL compat.filter=yes\n" });
    const tagged = unique("filt");
    const untagged = (await ok(["build", "-q", "--label", `run=${tagged}`, dir])).trim();
    // A later step, so a later creation time (a fully cached build would repeat the first's).
    writeFileSync(path.join(dir, "Dockerfile"), "FROM busybox\nLABEL compat.filter=yes\nLABEL later=1\n");
    await ok(["build", "-q", "-t", `${tagged}:v1`, "--label", `run=${tagged}`, "--label", "extra=1", dir]);
    const dangling = (await ok(["images", "-f", "dangling=true", "-q", "--no-trunc"])).split("\n");
    expect(dangling).toContain(untagged);
    expect(await ok(["images", "-f", `reference=${tagged.slice(0, 5)}*:v?`, "--format", "{{.Repository}}:{{.Tag}}"])).toBe(`${tagged}:v1\n`);
    expect(await ok(["images", "-f", `label=run=${tagged}`, "-f", "label=extra", "--format", "{{.Repository}}"])).toBe(`${tagged}\n`);
    expect(await ok(["images", "-f", `since=${untagged}`, "-f", `label=run=${tagged}`, "--format", "{{.Tag}}"])).toBe("v1\n");
    const bad = await tsrun(["images", "-f", "colour=blue"]);
    expect([bad.code, bad.stderr]).toEqual([125, "Error: invalid filter 'colour'\n"]);
  });

  it("build takes the flags CI scripts pass to docker build and buildx", async () => {
    // --platform (the host's), --progress=plain, --load, --cache-from, -o type=docker are
    // accepted; --add-host and --ulimit reach RUN; what cannot be honoured is a one-line error.
    const dir = files({ Dockerfile: "FROM busybox\nRUN grep ci-host /etc/hosts > /h; ulimit -n >> /h\n" });
    const arch = ({ x64: "amd64", arm64: "arm64" } as Record<string, string>)[process.arch] ?? process.arch;
    const name = unique("ciflags");
    const r = await tsrun(["build", "--progress=plain", "--platform", `linux/${arch}`, "--load", "--cache-from", "type=registry,ref=x", "-o", "type=docker", "--add-host", "ci-host:10.9.8.7", "--ulimit", "nofile=512:512", "--allow", "network.host", "-t", name, dir], { timeout: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/--cache-from and --cache-to are ignored/);
    expect(await ok(["run", "--rm", name, "cat", "/h"])).toBe("10.9.8.7\tci-host\n512\n");
    for (const [flags, message] of [
      [["--platform", "linux/s390x"], /only the build host's platform/],
      [["-o", "type=local,dest=out"], /only type=docker/],
      [["--ssh", "default"], /^Error: --ssh default: SSH agent forwarding is not supported yet/],
      [["--allow", "device"], /^Error: invalid --allow "device": expected network.host or security.insecure/],
    ] as [string[], RegExp][]) {
      const bad = await tsrun(["build", ...flags, dir]);
      expect(bad.code).toBe(125);
      expect(bad.stderr).toMatch(message);
    }
  });

  it("build --security-opt reaches RUN; --memory, --cpu-shares and the other cgroup flags are checked as run checks them; --compress is taken", async () => {
    const dir = files({ Dockerfile: "FROM busybox\nRUN grep Seccomp: /proc/self/status > /s\n" });
    const name = unique("buildsec");
    const r = await tsrun(["build", "--no-cache", "--compress", "--security-opt", "seccomp=unconfined", "-t", name, dir], { timeout: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(await ok(["run", "--rm", name, "cat", "/s"])).toBe("Seccomp:\t0\n");
    const filtered = unique("buildsec-default");
    expect((await tsrun(["build", "--no-cache", "-t", filtered, dir], { timeout: 120_000 })).code).toBe(0);
    expect(await ok(["run", "--rm", filtered, "cat", "/s"])).toBe("Seccomp:\t2\n");
    const bad = await tsrun(["build", "--cpu-shares", "x", dir]);
    expect([bad.code, bad.stderr]).toEqual([125, 'Error: invalid --cpu-shares "x": an integer from 0 to 262144\n']);
    const limited = await tsrun(["build", "--no-cache", "--memory", "64m", dir], { timeout: 120_000 });
    // Without a delegated cgroup v2 hierarchy (these machines), refused before the build as run refuses it.
    if (limited.code !== 0) expect(limited.stderr).toMatch(/^Error: --memory: resource limits need a cgroup v2 hierarchy delegated to your user; .+\n$/);
  });

  it("buildx's CI flags: --push and -o type=registry push every -t name, --metadata-file says what was built, --shm-size reaches RUN, --provenance/--sbom are accepted", async () => {
    // docker/build-push-action runs `docker buildx build --iidfile F --metadata-file F --push ...`.
    const registry = await startRegistry(scratchDir("ci-registry"), "ci");
    try {
      const dir = files({ Dockerfile: "FROM busybox\nRUN df -k /dev/shm | awk 'NR==2 {print $2}' > /shm\n" });
      const repo = `${registry.host}/ci/app`;
      const meta = path.join(scratchDir("ci-meta"), "metadata.json");
      const r = await tsrun(["build", "--push", "--metadata-file", meta, "--shm-size", "32m", "--provenance=false", "--sbom=true", "-t", `${repo}:v1`, "-t", `${repo}:latest`, dir], { timeout: 120_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain("tsrun: warning: --sbom: no attestations are made, the image is built without them\n");
      const id = r.stdout.trim().split("\n").at(-1) ?? "";
      const metadata = JSON.parse(readFileSync(meta, "utf8")) as Record<string, string>;
      expect(metadata["containerimage.config.digest"]).toBe(id);
      expect(metadata["image.name"]).toBe(`${repo}:v1,${repo}:latest`);
      const manifest = (tag: string): Promise<Response> =>
        fetch(`http://${registry.host}/v2/ci/app/manifests/${tag}`, { method: "HEAD", headers: { Accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json" } });
      for (const tag of ["v1", "latest"]) expect((await manifest(tag)).headers.get("docker-content-digest")).toBe(metadata["containerimage.digest"]);
      expect(await ok(["run", "--rm", "--network", "none", id, "cat", "/shm"])).toBe("32768\n");
      const viaOutput = await tsrun(["build", "-q", "-o", "type=registry", "-t", `${repo}:v2`, dir], { timeout: 120_000 });
      expect(viaOutput.code, viaOutput.stderr).toBe(0);
      expect((await manifest("v2")).status).toBe(200);
      const noName = await tsrun(["build", "-q", "--push", dir]);
      expect([noName.code, noName.stderr]).toEqual([1, "Error: --push: the image has no name to push to: give one with -t\n"]);
    } finally {
      stopRegistry(registry);
    }
  });
});
