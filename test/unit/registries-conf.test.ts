// registries.conf (containers-registries.conf(5)): parsing, the longest matching prefix, mirrors
// and location rewriting, blocked registries, and one-line errors for what cannot be used.
import { describe, expect, it } from "vitest";
import { findRegistry, parseRegistriesConf, pullSources, pushTarget } from "../../src/image/registry/registries-conf.js";
import { parseReference } from "../../src/image/reference.js";

const conf = `
unqualified-search-registries = ["docker.io"]

[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "mirror.example:5000/hub"
[[registry.mirror]]
location = "digests.example"
pull-from-mirror = "digest-only"
insecure = true

[[registry]]
prefix = "example.com/team"
location = "internal.example/team-images"
insecure = true

[[registry]]
location = "example.com"

[[registry]]
location = "blocked.example"
blocked = true

[[registry]]
prefix = "*.wild.example"
insecure = true

[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
`;

describe("registries.conf", () => {
  const entries = parseRegistriesConf(conf, "registries.conf");

  it("mirrors first (as pull-from-mirror allows), then the location", () => {
    expect(pullSources(entries, parseReference("busybox"))).toEqual([
      { domain: "mirror.example:5000", path: "hub/library/busybox", insecure: false, mirror: true },
      { domain: "docker.io", path: "library/busybox", insecure: false, mirror: false },
    ]);
    const byDigest = pullSources(entries, parseReference(`busybox@sha256:${"a".repeat(64)}`));
    expect(byDigest.map((s) => s.domain)).toEqual(["mirror.example:5000", "digests.example", "docker.io"]);
    expect(byDigest[1]?.insecure).toBe(true);
  });

  it("the longest prefix wins and its location replaces it; wildcards match subdomains", () => {
    expect(pullSources(entries, parseReference("example.com/team/app:1"))).toEqual([{ domain: "internal.example", path: "team-images/app", insecure: true, mirror: false }]);
    expect(pullSources(entries, parseReference("example.com/teammate/app:1"))).toEqual([{ domain: "example.com", path: "teammate/app", insecure: false, mirror: false }]);
    expect(findRegistry(entries, parseReference("a.b.wild.example/x"))?.insecure).toBe(true);
    expect(findRegistry(entries, parseReference("wild.example/x"))).toBeUndefined();
    expect(pullSources(entries, parseReference("quay.io/x/y"))).toEqual([{ domain: "quay.io", path: "x/y", insecure: false, mirror: false }]);
  });

  it("blocked registries are refused for pull and push", () => {
    expect(() => pullSources(entries, parseReference("blocked.example/x"))).toThrow(/^registry blocked\.example is blocked in registries\.conf$/);
    expect(() => pushTarget(entries, parseReference("blocked.example/x"))).toThrow(/is blocked/);
    expect(pushTarget(entries, parseReference("example.com/team/app"))).toEqual({ insecure: true });
  });

  it("reads the v1 format's insecure and block lists", () => {
    const v1 = parseRegistriesConf(`[registries.search]\nregistries = ["docker.io"]\n[registries.insecure]\nregistries = ["old.example:5000"]\n[registries.block]\nregistries = ["bad.example"]\n`, "v1.conf");
    expect(pushTarget(v1, parseReference("old.example:5000/x"))).toEqual({ insecure: true });
    expect(() => pullSources(v1, parseReference("bad.example/x"))).toThrow(/is blocked in v1\.conf/);
  });

  it("a file of comments and short-name aliases configures nothing (and is not parsed)", () => {
    expect(parseRegistriesConf(`# unqualified-search-registries = ["x"]\n[aliases]\n  "registry" = "docker.io/library/registry"\n  "a" = "b\n`, "shortnames.conf")).toEqual([]);
  });

  it("refuses what it cannot use, naming the file and the entry", () => {
    expect(() => parseRegistriesConf(`[[registry]\nlocation = "x"`, "f.conf")).toThrow(/^f\.conf: invalid TOML: /);
    expect(() => parseRegistriesConf(`[[registry]]\ninsecure = true`, "f.conf")).toThrow(/^f\.conf: \[\[registry\]\] #1: needs a location or a prefix$/);
    expect(() => parseRegistriesConf(`[[registry]]\nlocation = "https://x.example"`, "f.conf")).toThrow(/invalid location "https:\/\/x\.example"/);
    expect(() => parseRegistriesConf(`[[registry]]\nlocation = "x.example"\ninsecure = "yes"`, "f.conf")).toThrow(/"insecure" must be true or false/);
    expect(() => parseRegistriesConf(`[[registry]]\nlocation = "x.example"\n[[registry.mirror]]\ninsecure = true`, "f.conf")).toThrow(/mirror #1: needs a location/);
    expect(() => parseRegistriesConf(`[[registry]]\nlocation = "x.example"\n[[registry.mirror]]\nlocation = "m.example"\npull-from-mirror = "sometimes"`, "f.conf")).toThrow(/pull-from-mirror must be/);
  });
});
