// Platform specifiers with containerd's normalization (what BuildKit and Podman accept).
import { describe, expect, it } from "vitest";
import { isHostPlatform, parsePlatformSpec, PlatformSpecError } from "../../src/image/platform-spec.js";

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
});
