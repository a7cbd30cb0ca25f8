// registries.conf as Podman users write it ($XDG_CONFIG_HOME/containers/registries.conf, or
// $CONTAINERS_REGISTRIES_CONF), against Debian's docker-registry on 127.0.0.1: a mirror is
// pulled from first and the registry itself when the mirror lacks the image or is down, a prefix
// is rewritten to its location, an insecure registry (https with a certificate nobody trusts)
// is used without verification, a blocked one is refused, and a file tsrun cannot use is a
// one-line error.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { env, filesDir, importBusybox, onPty, scratchDir, tsrun } from "./helpers.js";
import { freePort, startRegistry, stopRegistry, type Registry } from "./registry-server.js";

let work: string;
let upstream: Registry;
let mirror: Registry;
let secure: Registry;
let busyboxId: string;
let upstreamId: string;

/** XDG_CONFIG_HOME with containers/registries.conf holding text. */
function withConf(text: string): string {
  const home = scratchDir("regconf");
  mkdirSync(path.join(home, "containers"));
  writeFileSync(path.join(home, "containers", "registries.conf"), text);
  if (env.user) execFileSync("chown", ["-R", `${env.user.uid}:${env.user.gid}`, home]);
  return home;
}

const storedImages = (root: string): { id: string; names: string[] }[] => {
  const index = path.join(root, "images", "index.json");
  return existsSync(index) ? (JSON.parse(readFileSync(index, "utf8")) as { images: { id: string; names: string[] }[] }).images : [];
};

function storeIsEmpty(root: string): boolean {
  const blobs = path.join(root, "blobs", "sha256");
  return (!existsSync(blobs) || readdirSync(blobs).length === 0) && storedImages(root).length === 0;
}

function expectOneLineError(r: { code: number; stderr: string }, message: RegExp): void {
  expect(r.code, r.stderr).toBe(125);
  expect(r.stderr.trim().split("\n"), r.stderr).toEqual([expect.stringMatching(message)]);
}

async function pushTo(image: string, ref: string, extra: string[] = []): Promise<void> {
  const r = await tsrun(["push", "-q", ...extra, image, ref], { env: { XDG_CONFIG_HOME: scratchDir("regconf-none") } });
  expect(r.code, r.stderr).toBe(0);
}

beforeAll(async () => {
  work = scratchDir("registries-conf");
  busyboxId = await importBusybox("busybox");
  upstreamId = await importBusybox("busybox-upstream", ["LABEL from=upstream"]);
  const cert = path.join(work, "server.pem");
  const key = path.join(work, "server-key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { stdio: "ignore" });
  [upstream, mirror, secure] = await Promise.all([startRegistry(work, "upstream"), startRegistry(work, "mirror"), startRegistry(work, "tls", undefined, { certificate: cert, key })]);
  // The mirror has busybox as tsrun/app:1; the registry itself has another image under that
  // name, and one more the mirror lacks.
  await pushTo("busybox", `${mirror.host}/tsrun/app:1`);
  await pushTo("busybox-upstream", `${upstream.host}/tsrun/app:1`);
  await pushTo("busybox-upstream", `${upstream.host}/tsrun/only-upstream:1`);
  await pushTo("busybox", `${secure.host}/tsrun/app:1`, ["--tls-verify=false"]);
});

afterAll(() => {
  for (const r of [upstream, mirror, secure]) if (r) stopRegistry(r);
});

describe("registries.conf", () => {
  it("pulls from a mirror first, from the registry when the mirror lacks the image or is down; the image keeps its own name", async () => {
    const config = withConf(`[[registry]]\nlocation = "${upstream.host}"\n\n[[registry.mirror]]\nlocation = "${mirror.host}"\n`);
    const store = scratchDir("store-mirror");
    const pull = await tsrun(["pull", "-q", `${upstream.host}/tsrun/app:1`], { env: { XDG_CONFIG_HOME: config, TSRUN_ROOT: store } });
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stdout.trim()).toBe(busyboxId.replace(/^sha256:/, ""));
    expect(storedImages(store).find((i) => i.names.includes(`${upstream.host}/tsrun/app:1`))?.id).toBe(busyboxId);

    // A mirror that is down, then one without the image: the registry serves it.
    const down = `127.0.0.1:${await freePort()}`;
    const withDown = withConf(`[[registry]]\nlocation = "${upstream.host}"\n\n[[registry.mirror]]\nlocation = "${down}"\n\n[[registry.mirror]]\nlocation = "${mirror.host}"\n`);
    const fallback = await tsrun(["pull", "-q", `${upstream.host}/tsrun/only-upstream:1`], { env: { XDG_CONFIG_HOME: withDown, TSRUN_ROOT: store } });
    expect(fallback.code, fallback.stderr).toBe(0);
    expect(storedImages(store).find((i) => i.names.includes(`${upstream.host}/tsrun/only-upstream:1`))?.id).toBe(upstreamId);

    // Nowhere: the registry's error, with what the mirrors said, in one line; nothing stored.
    const empty = scratchDir("store-mirror-missing");
    const missing = await tsrun(["pull", "-q", `${upstream.host}/tsrun/nowhere:1`], { env: { XDG_CONFIG_HOME: config, TSRUN_ROOT: empty } });
    expectOneLineError(missing, new RegExp(`^Error: pull .*nowhere:1: .*manifest unknown.* \\(mirrors also failed: ${mirror.host}: .*manifest unknown.*\\)$`));
    expect(storeIsEmpty(empty)).toBe(true);
  });

  it("falls back per blob: what the mirror that served the manifest lacks comes from the next source", async () => {
    // A two-layer image on both registries; the mirror then loses the config and the top layer,
    // the registry the bottom layer: only a pull that asks for each blob where it is succeeds.
    const built = await tsrun(["build", "-q", "-t", "two-layers", filesDir({ Dockerfile: "FROM busybox\nCOPY f /f\n", f: "partial mirror\n" }, "two-layers")]);
    expect(built.code, built.stderr).toBe(0);
    const id = built.stdout.trim();
    await pushTo("two-layers", `${mirror.host}/tsrun/partial:1`);
    await pushTo("two-layers", `${upstream.host}/tsrun/partial:1`);
    const manifest = (await (
      await fetch(`http://${mirror.host}/v2/tsrun/partial/manifests/1`, { headers: { Accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json" } })
    ).json()) as { config: { digest: string }; layers: { digest: string }[] };
    expect(manifest.layers).toHaveLength(2);
    const forget = async (host: string, digest: string): Promise<void> => {
      const res = await fetch(`http://${host}/v2/tsrun/partial/blobs/${digest}`, { method: "DELETE" });
      expect(res.status).toBe(202);
      expect((await fetch(`http://${host}/v2/tsrun/partial/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
    };
    await forget(mirror.host, manifest.config.digest);
    await forget(mirror.host, manifest.layers[1]?.digest as string);
    await forget(upstream.host, manifest.layers[0]?.digest as string);

    const config = withConf(`[[registry]]\nlocation = "${upstream.host}"\n\n[[registry.mirror]]\nlocation = "${mirror.host}"\n`);
    const store = scratchDir("store-partial");
    const pull = await tsrun(["pull", "-q", `${upstream.host}/tsrun/partial:1`], { env: { XDG_CONFIG_HOME: config, TSRUN_ROOT: store } });
    expect(pull.code, pull.stderr).toBe(0);
    expect(`sha256:${pull.stdout.trim()}`).toBe(id);
    const run = await tsrun(["run", "--rm", `${upstream.host}/tsrun/partial:1`, "cat", "/f"], { env: { XDG_CONFIG_HOME: config, TSRUN_ROOT: store } });
    expect(run.stdout, run.stderr).toBe("partial mirror\n");

    // A blob no source has: one line with what each said, and nothing stored.
    await forget(upstream.host, manifest.layers[1]?.digest as string);
    const empty = scratchDir("store-partial-missing");
    const missing = await tsrun(["pull", "-q", `${upstream.host}/tsrun/partial:1`], { env: { XDG_CONFIG_HOME: config, TSRUN_ROOT: empty } });
    expectOneLineError(missing, new RegExp(`^Error: pull .*partial:1: blob ${manifest.layers[1]?.digest}: .*blob unknown.* \\(also tried: ${upstream.host}: .*blob unknown`));
    expect(storedImages(empty)).toEqual([]);
  });

  it("rewrites a prefix to its location; an insecure registry is used without verification unless --tls-verify says otherwise", async () => {
    const config = withConf(
      [`[[registry]]`, `prefix = "team.example/images"`, `location = "${upstream.host}/tsrun"`, ``, `[[registry]]`, `location = "${secure.host}"`, `insecure = true`, ``].join("\n"),
    );
    const store = scratchDir("store-prefix");
    const pull = await tsrun(["pull", "-q", "team.example/images/app:1"], { env: { XDG_CONFIG_HOME: config, TSRUN_ROOT: store } });
    expect(pull.code, pull.stderr).toBe(0);
    expect(storedImages(store).find((i) => i.names.includes("team.example/images/app:1"))?.id).toBe(upstreamId);

    const insecure = await tsrun(["pull", "-q", `${secure.host}/tsrun/app:1`], { env: { XDG_CONFIG_HOME: config, TSRUN_ROOT: store } });
    expect(insecure.code, insecure.stderr).toBe(0);
    const verified = scratchDir("store-verified");
    const refused = await tsrun(["pull", "-q", "--tls-verify=true", `${secure.host}/tsrun/app:1`], { env: { XDG_CONFIG_HOME: config, TSRUN_ROOT: verified } });
    expectOneLineError(refused, /self-signed certificate/);
    expect(storeIsEmpty(verified)).toBe(true);
  });

  it("refuses a blocked registry and a file it cannot use, in one line, with the store unchanged", async () => {
    const blocked = withConf(`[[registry]]\nlocation = "${upstream.host}"\nblocked = true\n`);
    const store = scratchDir("store-blocked");
    const file = path.join(blocked, "containers", "registries.conf");
    expectOneLineError(await tsrun(["pull", "-q", `${upstream.host}/tsrun/app:1`], { env: { XDG_CONFIG_HOME: blocked, TSRUN_ROOT: store } }), new RegExp(`^Error: registry ${upstream.host} is blocked in ${file}$`));
    expectOneLineError(await tsrun(["push", "-q", "busybox", `${upstream.host}/tsrun/blocked:1`], { env: { XDG_CONFIG_HOME: blocked } }), /is blocked in/);
    const badFiles: [string, RegExp][] = [
      [`[[registry]\nlocation = "x.example"\n`, /^Error: .*registries\.conf: invalid TOML: /],
      [`[[registry]]\nlocation = "https://x.example"\n`, /^Error: .*registries\.conf: \[\[registry\]\] #1: invalid location "https:\/\/x\.example" \(expected host\[:port\]\[\/path\], without a scheme\)$/],
      [`[[registry]]\nlocation = "${upstream.host}"\n[[registry.mirror]]\ninsecure = true\n`, /^Error: .*registries\.conf: \[\[registry\]\] #1 mirror #1: needs a location$/],
    ];
    for (const [text, message] of badFiles) expectOneLineError(await tsrun(["pull", "-q", `${upstream.host}/tsrun/app:1`], { env: { XDG_CONFIG_HOME: withConf(text), TSRUN_ROOT: store } }), message);
    const gone = path.join(work, "no-such-registries.conf");
    expectOneLineError(await tsrun(["pull", "-q", `${upstream.host}/tsrun/app:1`], { env: { CONTAINERS_REGISTRIES_CONF: gone, TSRUN_ROOT: store } }), new RegExp(`^Error: cannot read ${gone}: `));
    expect(storeIsEmpty(store)).toBe(true);
  });
});

describe("short names (unqualified-search-registries, short-name-mode, aliases)", () => {
  /** XDG_CONFIG_HOME with registries.conf, and drop-ins in registries.conf.d; an XDG_CACHE_HOME of its own. */
  function shortNameEnv(conf: string, dropIns: Record<string, string> = {}): Record<string, string> {
    const home = withConf(conf);
    mkdirSync(path.join(home, "containers", "registries.conf.d"));
    for (const [name, text] of Object.entries(dropIns)) writeFileSync(path.join(home, "containers", "registries.conf.d", name), text);
    const cache = path.join(home, "cache");
    mkdirSync(cache);
    if (env.user) execFileSync("chown", ["-R", `${env.user.uid}:${env.user.gid}`, home]);
    return { XDG_CONFIG_HOME: home, XDG_CACHE_HOME: cache, TSRUN_ROOT: scratchDir("store-short") };
  }

  it("tries each search registry in order (permissive, no terminal); the image is found again by its short name", async () => {
    const e = shortNameEnv(`unqualified-search-registries = ["${mirror.host}", "${upstream.host}"]
`);
    const pull = await tsrun(["pull", "tsrun/only-upstream:1"], { env: e });
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stderr).toContain(`Resolving "tsrun/only-upstream" using unqualified-search registries (${e.XDG_CONFIG_HOME}/containers/registries.conf)`);
    expect(pull.stderr).toContain(`Trying to pull ${mirror.host}/tsrun/only-upstream:1...`);
    expect(pull.stderr).toContain(`Trying to pull ${upstream.host}/tsrun/only-upstream:1...`);
    expect(storedImages(e.TSRUN_ROOT).map((i) => i.names)).toEqual([[`${upstream.host}/tsrun/only-upstream:1`]]);
    // The first registry that has it wins.
    expect((await tsrun(["pull", "-q", "tsrun/app:1"], { env: e })).stdout.trim()).toBe(busyboxId.replace(/^sha256:/, ""));

    // Local lookups find it under the search registry's name, as Podman's do; rmi untags that name.
    const inspect = await tsrun(["image", "inspect", "--format", "{{.Id}}", "tsrun/only-upstream:1"], { env: e });
    expect(inspect.stdout.trim(), inspect.stderr).toBe(upstreamId);
    const run = await tsrun(["run", "--rm", "--pull=never", "tsrun/only-upstream:1", "true"], { env: e });
    expect(run.code, run.stderr).toBe(0);
    const rmi = await tsrun(["rmi", "tsrun/only-upstream:1"], { env: e });
    expect(rmi.stdout, rmi.stderr).toContain(`Untagged: ${upstream.host}/tsrun/only-upstream:1`);

    // A blocked search registry is that candidate's failure: the next one is tried, as Podman does.
    const blockedFirst = shortNameEnv(`unqualified-search-registries = ["${mirror.host}", "${upstream.host}"]
[[registry]]
location = "${mirror.host}"
blocked = true
`);
    const past = await tsrun(["pull", "-q", "tsrun/app:1"], { env: blockedFirst });
    expect(past.code, past.stderr).toBe(0);
    expect(storedImages(blockedFirst.TSRUN_ROOT).map((i) => i.names)).toEqual([[`${upstream.host}/tsrun/app:1`]]);
    const tags = await tsrun(["pull", "-q", "--all-tags", "tsrun/only-upstream"], { env: blockedFirst });
    expect(tags.code, tags.stderr).toBe(0);
    expect(storedImages(blockedFirst.TSRUN_ROOT).flatMap((i) => i.names)).toContain(`${upstream.host}/tsrun/only-upstream:1`);

    // Found nowhere: one line with what each registry said.
    const none = await tsrun(["pull", "-q", "tsrun/nowhere:1"], { env: e });
    expectOneLineError(none, new RegExp(`^Error: pull tsrun/nowhere:1: no candidate could be pulled: pull ${mirror.host}/tsrun/nowhere:1: .*manifest unknown.*; pull ${upstream.host}/tsrun/nowhere:1: .*manifest unknown`));
  });

  it("enforcing with several search registries and no terminal: one line naming the candidates, nothing pulled", async () => {
    const e = shortNameEnv(`unqualified-search-registries = ["${mirror.host}", "${upstream.host}"]
short-name-mode = "enforcing"
`);
    const r = await tsrun(["pull", "-q", "tsrun/app:1"], { env: e });
    expectOneLineError(r, new RegExp(`^Error: short-name resolution enforced but cannot prompt without a TTY: "tsrun/app:1" could be ${mirror.host}/tsrun/app:1, ${upstream.host}/tsrun/app:1 `));
    expect(storeIsEmpty(e.TSRUN_ROOT)).toBe(true);
    // One search registry is no ambiguity; disabled tries them all.
    const one = shortNameEnv(`unqualified-search-registries = ["${upstream.host}"]
short-name-mode = "enforcing"
`);
    expect((await tsrun(["pull", "-q", "tsrun/app:1"], { env: one })).stdout.trim()).toBe(upstreamId.replace(/^sha256:/, ""));
    const disabled = shortNameEnv(`unqualified-search-registries = ["${mirror.host}", "${upstream.host}"]
short-name-mode = "disabled"
`);
    expect((await tsrun(["pull", "-q", "tsrun/app:1"], { env: disabled })).stdout.trim()).toBe(busyboxId.replace(/^sha256:/, ""));
  });

  it("an alias from a drop-in wins over the search registries; a later drop-in's empty alias erases it", async () => {
    const e = shortNameEnv(`unqualified-search-registries = ["${mirror.host}"]
short-name-mode = "enforcing"
`, {
      "10-aliases.conf": `[aliases]
"myapp" = "${upstream.host}/tsrun/app"
"gone" = "${upstream.host}/tsrun/app"
`,
      "20-erase.conf": `[aliases]
"gone" = ""
`,
    });
    const pull = await tsrun(["pull", "myapp:1"], { env: e });
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stderr).toContain(`Resolved "myapp" as an alias (${e.XDG_CONFIG_HOME}/containers/registries.conf.d/10-aliases.conf)`);
    expect(storedImages(e.TSRUN_ROOT).map((i) => i.names)).toEqual([[`${upstream.host}/tsrun/app:1`]]);
    expect((await tsrun(["image", "inspect", "--format", "{{.Id}}", "myapp:1"], { env: e })).stdout.trim()).toBe(upstreamId);
    // "gone" is no alias any more: the search registry (the mirror, which has no gone:1).
    const gone = await tsrun(["pull", "-q", "gone:1"], { env: e });
    expectOneLineError(gone, new RegExp(`^Error: pull ${mirror.host}/gone:1: `));
    const bad = shortNameEnv("", { "x.conf": `[aliases]
"app" = "app"
` });
    expectOneLineError(await tsrun(["pull", "-q", "app"], { env: bad }), /registries\.conf\.d\/x\.conf: \[aliases\]: alias "app": "app" is not fully qualified/);
  });

  it("at a terminal, asks which registry (Podman's prompt) and records the choice as an alias", async () => {
    const e = shortNameEnv(`unqualified-search-registries = ["${mirror.host}", "${upstream.host}"]
short-name-mode = "enforcing"
`);
    const line = `XDG_CONFIG_HOME=${e.XDG_CONFIG_HOME} XDG_CACHE_HOME=${e.XDG_CACHE_HOME} TSRUN_ROOT=${e.TSRUN_ROOT} $TSRUN pull tsrun/app:1`;
    const r = await onPty(24, 100, [{ expect: "Enter a number \\(1-2\\): " }, { send: "2\r" }, { expect: "[0-9a-f]{64}" }], line);
    expect(r.failed, r.output).toBeFalsy();
    expect(r.output).toContain(`1) ${mirror.host}/tsrun/app:1`);
    expect(r.code, r.output).toBe(0);
    expect(r.output).toContain(upstreamId.replace(/^sha256:/, ""));
    expect(readFileSync(path.join(e.XDG_CACHE_HOME, "containers", "short-name-aliases.conf"), "utf8")).toBe(`[aliases]\n  "tsrun/app" = "${upstream.host}/tsrun/app"\n`);
    // The recorded alias answers from now on, without asking.
    const again = await tsrun(["pull", "tsrun/app:1"], { env: e });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain(`Resolved "tsrun/app" as an alias (${e.XDG_CACHE_HOME}/containers/short-name-aliases.conf)`);
  });
});

