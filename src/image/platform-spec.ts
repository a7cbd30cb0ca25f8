// Platform specifiers as Docker, BuildKit and Podman read them (containerd's platforms.Parse and
// Normalize): "linux/amd64", "linux/arm/v7", but also "amd64", "linux", "x86_64", "aarch64",
// "armhf". Dockerfiles write `FROM --platform=amd64 ...` and CI scripts `--platform x86_64`; all
// of them mean the same platform once normalized.
import type { Platform } from "./types.js";
import { hostPlatform } from "./types.js";

const KNOWN_OS = new Set(["aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos", "wasip1"]);
const KNOWN_ARCH = new Set(["386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le", "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm"]);
const COMPONENT = /^[a-z0-9_.-]+$/;

export class PlatformSpecError extends Error {}

function normalizeOs(os: string): string {
  return os === "macos" ? "darwin" : os;
}

/** containerd's normalizeArch: the usual aliases, and the variants that mean the default. */
function normalizeArch(arch: string, variant: string): { architecture: string; variant: string } {
  switch (arch) {
    case "i386":
      return { architecture: "386", variant: "" };
    case "x86_64":
    case "x86-64":
    case "amd64":
      return { architecture: "amd64", variant: variant === "v1" ? "" : variant };
    case "aarch64":
    case "arm64":
      if (["8", "v8", "v8.0"].includes(variant)) return { architecture: "arm64", variant: "" };
      return { architecture: "arm64", variant: ["9", "9.0", "v9.0"].includes(variant) ? "v9" : variant };
    case "armhf":
      return { architecture: "arm", variant: "v7" };
    case "armel":
      return { architecture: "arm", variant: "v6" };
    case "arm":
      if (variant === "" || variant === "7") return { architecture: "arm", variant: "v7" };
      if (["5", "6", "8"].includes(variant)) return { architecture: "arm", variant: `v${variant}` };
      return { architecture: "arm", variant };
    default:
      return { architecture: arch, variant };
  }
}

/**
 * A platform specifier, normalized: one component is an OS (with the host's architecture) or
 * an architecture (with the host's OS); two are OS/ARCH; three OS/ARCH/VARIANT.
 */
export function parsePlatformSpec(text: string, host: Platform = hostPlatform()): Platform {
  const parts = text.toLowerCase().split("/");
  if (parts.length > 3 || !parts.every((p) => COMPONENT.test(p))) {
    throw new PlatformSpecError(`invalid platform "${text}": expected OS/ARCH[/VARIANT], e.g. linux/arm64`);
  }
  let os: string;
  let arch: { architecture: string; variant: string };
  if (parts.length === 1) {
    const only = parts[0] as string;
    if (KNOWN_OS.has(normalizeOs(only))) {
      os = normalizeOs(only);
      arch = { architecture: host.architecture, variant: host.variant ?? "" };
    } else {
      arch = normalizeArch(only, "");
      if (!KNOWN_ARCH.has(arch.architecture)) throw new PlatformSpecError(`invalid platform "${text}": unknown operating system or architecture`);
      os = host.os;
    }
  } else {
    os = normalizeOs(parts[0] as string);
    arch = normalizeArch(parts[1] as string, parts[2] ?? "");
  }
  return arch.variant ? { os, architecture: arch.architecture, variant: arch.variant } : { os, architecture: arch.architecture };
}

/** Whether a specifier names the host's platform (the only one tsrun builds and runs). */
export function isHostPlatform(text: string, host: Platform = hostPlatform()): boolean {
  const p = parsePlatformSpec(text, host);
  const hostArch = normalizeArch(host.architecture, host.variant ?? "");
  return p.os === host.os && p.architecture === hostArch.architecture && (p.variant ?? "") === hostArch.variant;
}

/** containerd's Normalize: "x86_64" is amd64, arm64's v8 and amd64's v1 are no variant, arm's default is v7. */
export function normalizePlatform(p: Platform): Platform {
  const arch = normalizeArch(p.architecture.toLowerCase(), (p.variant ?? "").toLowerCase());
  const os = normalizeOs(p.os.toLowerCase());
  return arch.variant ? { os, architecture: arch.architecture, variant: arch.variant } : { os, architecture: arch.architecture };
}

/**
 * arm64 variants and the major.minor versions each runs (containerd's arm64variantToVersion),
 * made when asked for (arm64 images only) rather than while every command starts.
 */
const arm64Versions = (): Record<string, { major: number[]; minor: number[] }> => ({
  v8: { major: [8], minor: [0] },
  ...Object.fromEntries([1, 2, 3, 4, 5, 6, 7, 8, 9].map((m) => [`v8.${m}`, { major: [8], minor: [m] }])),
  v9: { major: [9, 8], minor: [0, 5] },
  ...Object.fromEntries([1, 2, 3, 4, 5, 6, 7].map((m) => [`v9.${m}`, { major: [9, 8], minor: [m, Math.min(m + 5, 9)] }])),
});

/**
 * What a platform also runs, best first (containerd's platformVector, which `docker pull
 * --platform` matches with): amd64/vN runs vN..v1, then 386; arm/vN runs vN..v5; arm64/v8.x
 * runs v8.x..v8, then arm/v8..v5.
 */
export function compatiblePlatforms(want: Platform): Platform[] {
  const p = normalizePlatform(want);
  const variantNumber = (v: string | undefined): number => (v && /^v?\d+$/.test(v) ? Number(v.replace(/^v/, "")) : Number.NaN);
  const out: Platform[] = [p];
  if (p.architecture === "amd64") {
    const n = variantNumber(p.variant);
    for (let v = n - 1; v >= 1; v--) out.push(normalizePlatform({ os: p.os, architecture: "amd64", variant: `v${v}` }));
    out.push({ os: p.os, architecture: "386" });
  } else if (p.architecture === "arm") {
    const n = variantNumber(p.variant);
    for (let v = n - 1; v >= 5; v--) out.push({ os: p.os, architecture: "arm", variant: `v${v}` });
  } else if (p.architecture === "arm64") {
    const variant = p.variant ?? "v8";
    const versions = arm64Versions()[variant];
    if (!versions) return out;
    out.length = 0;
    versions.major.forEach((major, i) => {
      for (let minor = versions.minor[i] as number; minor >= 0; minor--) out.push(normalizePlatform({ os: p.os, architecture: "arm64", variant: minor === 0 ? `v${major}` : `v${major}.${minor}` }));
    });
    for (let v = 8; v >= 5; v--) out.push({ os: p.os, architecture: "arm", variant: `v${v}` });
  }
  return out;
}

/** How well a candidate fits what is wanted: 0 best, higher worse, -1 not at all (containerd's platforms.Only). */
export function platformRank(candidate: Platform | undefined, want: Platform): number {
  if (!candidate) return -1;
  const c = normalizePlatform(candidate);
  return compatiblePlatforms(want).findIndex((p) => p.os === c.os && p.architecture === c.architecture && (p.variant ?? "") === (c.variant ?? ""));
}
