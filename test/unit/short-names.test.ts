// Short names as Podman resolves them (containers-registries.conf(5), containers/image's
// pkg/shortnames): aliases first, then the unqualified-search registries under short-name-mode;
// Docker's docker.io when nothing is configured; the names a short name may have in the store;
// aliases recorded after a prompt.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { loadRegistriesConfig } from "../../src/image/registry/registries-conf.js";
import { localCandidates, recordAlias, resolveShortName } from "../../src/image/registry/short-names.js";
import { formatReference } from "../../src/image/reference.js";

function settings(text: string, cache?: string): { env: NodeJS.ProcessEnv; conf: ReturnType<typeof loadRegistriesConfig>["shortNames"] } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tsrun-shortnames-"));
  writeFileSync(path.join(dir, "registries.conf"), text);
  const env = { CONTAINERS_REGISTRIES_CONF: path.join(dir, "registries.conf"), XDG_CACHE_HOME: path.join(dir, "cache"), HOME: dir };
  if (cache !== undefined) {
    recordAlias("placeholder", "example.org/placeholder", env);
    writeFileSync(path.join(dir, "cache", "containers", "short-name-aliases.conf"), cache);
  }
  return { env, conf: loadRegistriesConfig(env, true).shortNames };
}

const names = async (input: string, text: string, select?: (c: string[]) => Promise<string>): Promise<string[]> =>
  (await resolveShortName(input, settings(text).conf, select)).candidates.map(formatReference);

describe("short names", () => {
  it("nothing configured: Docker's docker.io/library normalisation", async () => {
    expect(await names("busybox", "")).toEqual(["docker.io/library/busybox:latest"]);
    expect(await names("team/app:1", "")).toEqual(["docker.io/team/app:1"]);
    expect(await names("busybox", `unqualified-search-registries = []\n`)).toEqual(["docker.io/library/busybox:latest"]);
  });

  it("a qualified name is itself, whatever is configured", async () => {
    const conf = `unqualified-search-registries = ["a.example", "b.example"]\nshort-name-mode = "enforcing"\n`;
    expect(await names("quay.io/x/y:2", conf)).toEqual(["quay.io/x/y:2"]);
    expect(await names("localhost/x", conf)).toEqual(["localhost/x:latest"]);
    expect(await names("127.0.0.1:5000/x", conf)).toEqual(["127.0.0.1:5000/x:latest"]);
  });

  it("an alias wins over the search registries; its tag or digest is the input's", async () => {
    const conf = `unqualified-search-registries = ["a.example", "b.example"]\nshort-name-mode = "enforcing"\n[aliases]\n"app" = "quay.io/team/app"\n"ns/tool" = "docker.io/tool"\n`;
    const r = await resolveShortName("app:2", settings(conf).conf);
    expect(r.candidates.map(formatReference)).toEqual(["quay.io/team/app:2"]);
    expect(r.description).toMatch(/^Resolved "app" as an alias \(.*registries\.conf\)$/);
    expect(await names(`app@sha256:${"b".repeat(64)}`, conf)).toEqual([`quay.io/team/app@sha256:${"b".repeat(64)}`]);
    expect(await names("ns/tool", conf)).toEqual(["docker.io/library/tool:latest"]);
  });

  it("one search registry is used alone; several in order when permissive (the default) or disabled", async () => {
    expect(await names("app", `unqualified-search-registries = ["127.0.0.1:5000"]\nshort-name-mode = "enforcing"\n`)).toEqual(["127.0.0.1:5000/app:latest"]);
    const two = `unqualified-search-registries = ["a.example", "docker.io"]\n`;
    expect(await names("app:1", two)).toEqual(["a.example/app:1", "docker.io/library/app:1"]);
    expect(await names("app:1", `${two}short-name-mode = "disabled"\n`, async () => "a.example/app:1")).toEqual(["a.example/app:1", "docker.io/library/app:1"]);
    expect(await names("app:1", `${two}short-name-mode = "permissive"\n`)).toEqual(["a.example/app:1", "docker.io/library/app:1"]);
  });

  it("enforcing with several registries: an error naming the candidates without a terminal, the user's choice with one", async () => {
    const conf = `unqualified-search-registries = ["a.example", "b.example:5000"]\nshort-name-mode = "enforcing"\n`;
    await expect(names("app", conf)).rejects.toThrow(
      /^short-name resolution enforced but cannot prompt without a TTY: "app" could be a\.example\/app:latest, b\.example:5000\/app:latest \(short-name-mode "enforcing" in .*\): use a fully-qualified name or an alias$/,
    );
    const r = await resolveShortName("app", settings(conf).conf, async (c) => c[1] as string);
    expect(r.candidates.map(formatReference)).toEqual(["b.example:5000/app:latest"]);
    expect(r.record).toBe("app");
  });

  it("the names a short name may have in the store", () => {
    const { conf } = settings(`unqualified-search-registries = ["a.example"]\n[aliases]\n"app" = "quay.io/team/app"\n`);
    expect(localCandidates("app:3", conf)).toEqual(["quay.io/team/app:3", "localhost/app:3", "a.example/app:3"]);
    expect(localCandidates("other", conf)).toEqual(["localhost/other:latest", "a.example/other:latest"]);
    expect(localCandidates("quay.io/x", conf)).toEqual([]);
  });

  it("recorded aliases (short-name-aliases.conf) win over the files, and recording keeps the others", () => {
    const { env, conf } = settings(`[aliases]\n"app" = "quay.io/team/app"\n`, `[aliases]\n  "app" = "ghcr.io/me/app"\n  "x" = "docker.io/library/x"\n`);
    expect(conf.aliases.get("app")?.value).toBe("ghcr.io/me/app");
    recordAlias("new", "a.example/new", env);
    const again = loadRegistriesConfig(env, true).shortNames;
    expect([...again.aliases].map(([k, v]) => [k, v.value])).toEqual([
      ["app", "ghcr.io/me/app"],
      ["x", "docker.io/library/x"],
      ["new", "a.example/new"],
    ]);
    expect(readFileSync(path.join(env.XDG_CACHE_HOME as string, "containers", "short-name-aliases.conf"), "utf8")).toContain(`  "new" = "a.example/new"\n`);
  });

  it("refuses settings it cannot use, naming the file", () => {
    expect(() => settings(`short-name-mode = "strict"\n`)).toThrow(/registries\.conf: short-name-mode must be "enforcing", "permissive" or "disabled", not "strict"$/);
    expect(() => settings(`[aliases]\n"quay.io/x" = "quay.io/x"\n`)).toThrow(/\[aliases\]: invalid short name "quay\.io\/x": it names a registry$/);
    expect(() => settings(`[aliases]\n"x:1" = "quay.io/x"\n`)).toThrow(/invalid short name "x:1": an alias names no tag or digest$/);
    expect(() => settings(`[aliases]\n"x" = "x"\n`)).toThrow(/alias "x": "x" is not fully qualified/);
    expect(() => settings(`[aliases]\n"x" = "quay.io/x:1"\n`)).toThrow(/alias "x": "quay\.io\/x:1" must not name a tag or digest$/);
    expect(() => settings(`unqualified-search-registries = "a.example"\n`)).toThrow(/unqualified-search-registries must be a list of strings$/);
  });

  it("the v1 [registries.search] list is the search registries", async () => {
    expect(await names("app", `[registries.search]\nregistries = ["a.example", "b.example"]\n`)).toEqual(["a.example/app:latest", "b.example/app:latest"]);
  });
});
