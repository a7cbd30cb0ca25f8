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

/** The version in tsrun's package.json. */
export function tsrunVersion(): string {
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
