// `version`: tsrun's own version and what it runs on, for bug reports and scripts
// (`tsrun version --format '{{.Client.Version}}'`), shaped like Docker's client section.
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { packageRoot } from "../native.js";
import { hostPlatform } from "../image/types.js";

export interface VersionInfo {
  Client: {
    Version: string;
    /** The Node.js running tsrun. */
    NodeVersion: string;
    Os: string;
    Arch: string;
    /** "linux/amd64", as Docker prints it. */
    OsArch: string;
    KernelVersion: string;
  };
}

let cached: string | undefined;

/**
 * Set by scripts/bundle.mjs to package.json's version: every command registers `--version`, and
 * reading package.json for it cost ~1 ms of each start. Undefined where src is compiled by tsc
 * alone (the library), which reads the file.
 */
declare const __TSRUN_VERSION__: string | undefined;

/** The version in tsrun's package.json. */
export function tsrunVersion(): string {
  if (cached === undefined && typeof __TSRUN_VERSION__ === "string") cached = __TSRUN_VERSION__;
  if (cached === undefined) {
    try {
      cached = (JSON.parse(readFileSync(path.join(packageRoot(), "package.json"), "utf8")) as { version?: string }).version ?? "unknown";
    } catch {
      cached = "unknown";
    }
  }
  return cached;
}

export function versionInfo(): VersionInfo {
  const { os: osName, architecture: arch } = hostPlatform();
  return {
    Client: {
      Version: tsrunVersion(),
      NodeVersion: process.version,
      Os: osName,
      Arch: arch,
      OsArch: `${osName}/${arch}`,
      KernelVersion: os.release(),
    },
  };
}
