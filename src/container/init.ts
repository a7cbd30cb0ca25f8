// --init: a small init process as the container's PID 1 (Docker's docker-init, which is tini),
// which reaps orphaned children and passes signals on to the command. The host's statically
// linked init is bound read-only into the container at Docker's path, so that it runs in any
// image, even one without a C library.
import { accessSync, constants } from "node:fs";
import { TsrunError } from "../errors.js";

/** Where the container sees the init: Docker's path. */
export const INIT_TARGET = "/sbin/docker-init";

/** Static builds only: tini's (Debian's tini package) and catatonit (Podman's). */
const CANDIDATES = ["/usr/bin/tini-static", "/usr/libexec/podman/catatonit", "/usr/bin/catatonit"];

export function findInitBinary(): string {
  for (const candidate of CANDIDATES) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not this one.
    }
  }
  throw new TsrunError(`--init needs a static init binary on the host (${CANDIDATES.join(", ")}): install the tini package`);
}

/** The command under the init: tini and catatonit both take `--` before it. */
export function initArgv(argv: string[]): string[] {
  return [INIT_TARGET, "--", ...argv];
}
