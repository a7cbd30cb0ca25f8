// Platform specifiers with containerd's normalization (what BuildKit and Podman accept).
import { describe, expect, it } from "vitest";
import { compatiblePlatforms, isHostPlatform, parsePlatformSpec, PlatformSpecError, platformRank } from "../../src/image/platform-spec.js";
import { formatPlatform, selectPlatform } from "../../src/image/registry/manifest.js";

describe("platform specifiers", () => {
  const amd64 = { os: "linux", architecture: "amd64" };
  it.each([
    ["linux/amd64", { os: "linux", architecture: "amd64" }],
    ["amd64", { os: "linux", architecture: "amd64" }],
    ["x86_64", { os: "linux", architecture: "amd64" }],
    ["Linux/X86_64", { os: "linux", architecture: "amd64" }],
    ["linux", { os: "linux", architecture: "amd64" }],
    ["aarch64", { os: "linux", architecture: "arm64" }],
    ["linux/arm64/v8", { os: "linux", architecture: "arm64" }],
    ["linux/arm", { os: "linux", architecture: "arm", variant: "v7" }],
    ["armhf", { os: "linux", architecture: "arm", variant: "v7" }],
    ["linux/arm/6", { os: "linux", architecture: "arm", variant: "v6" }],
    ["i386", { os: "linux", architecture: "386" }],
    ["windows/amd64", { os: "windows", architecture: "amd64" }],
    ["macos/arm64", { os: "darwin", architecture: "arm64" }],
  ])("%s", (spec, want) => {
    expect(parsePlatformSpec(spec, amd64)).toEqual(want);
  });

  it("refuses what containerd refuses", () => {
    for (const bad of ["", "linux/amd64/v2/x", "linux amd64", "nosuchthing", "linux//amd64"]) expect(() => parsePlatformSpec(bad, amd64), bad).toThrow(PlatformSpecError);
  });

  it("tells the host's platform from others", () => {
    expect(["linux/amd64", "amd64", "x86_64", "linux", "linux/amd64/v1"].every((p) => isHostPlatform(p, amd64))).toBe(true);
    expect(["linux/arm64", "arm64", "windows/amd64", "linux/amd64/v3"].some((p) => isHostPlatform(p, amd64))).toBe(false);
    expect(isHostPlatform("linux/arm/v7", { os: "linux", architecture: "arm" })).toBe(true);
  });

  it("matches as containerd's platforms.Only: what a platform also runs, best first", () => {
    const fmt = (spec: string): string[] => compatiblePlatforms(parsePlatformSpec(spec, amd64)).map(formatPlatform);
    expect(fmt("linux/amd64")).toEqual(["linux/amd64", "linux/386"]);
    expect(fmt("linux/amd64/v3")).toEqual(["linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"]);
    expect(fmt("linux/arm64/v8")).toEqual(["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]);
    expect(fmt("linux/arm64/v8.2")).toEqual(["linux/arm64/v8.2", "linux/arm64/v8.1", "linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]);
    expect(fmt("linux/arm/v7")).toEqual(["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]);
    // An arm64 image without a variant is v8; one of v8 is arm64; amd64/v1 is amd64.
    expect(platformRank({ os: "linux", architecture: "arm64", variant: "v8" }, { os: "linux", architecture: "arm64" })).toBe(0);
    expect(platformRank({ os: "linux", architecture: "arm64" }, parsePlatformSpec("linux/arm64/v8", amd64))).toBe(0);
    expect(platformRank({ os: "linux", architecture: "amd64", variant: "v1" }, amd64)).toBe(0);
    expect(platformRank({ os: "linux", architecture: "amd64", variant: "v2" }, amd64)).toBe(-1);
    expect(platformRank({ os: "linux", architecture: "arm", variant: "v7" }, { os: "linux", architecture: "arm", variant: "v6" })).toBe(-1);
  });

  it("an index's best entry wins over an earlier acceptable one; no match names what there is", () => {
    const entry = (architecture: string, variant?: string): { mediaType: string; digest: string; size: number; platform: { os: string; architecture: string; variant?: string } } => ({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: `sha256:${architecture}${variant ?? ""}`,
      size: 1,
      platform: { os: "linux", architecture, ...(variant ? { variant } : {}) },
    });
    const index = { schemaVersion: 2 as const, manifests: [entry("386"), entry("arm", "v6"), entry("arm", "v7"), entry("arm64", "v8"), entry("amd64", "v2"), entry("amd64")] };
    expect(selectPlatform(index, amd64, "x").digest).toBe("sha256:amd64");
    expect(selectPlatform(index, parsePlatformSpec("linux/amd64/v3", amd64), "x").digest).toBe("sha256:amd64v2");
    expect(selectPlatform(index, parsePlatformSpec("arm64", amd64), "x").digest).toBe("sha256:arm64v8");
    expect(selectPlatform(index, parsePlatformSpec("linux/arm/v8", amd64), "x").digest).toBe("sha256:armv7");
    expect(() => selectPlatform(index, parsePlatformSpec("linux/s390x", amd64), "pull x")).toThrow(
      /^pull x: no image for linux\/s390x in the index \(available: linux\/386, linux\/arm\/v6, linux\/arm\/v7, linux\/arm64\/v8, linux\/amd64\/v2, linux\/amd64\)$/,
    );
  });
});
