// --device HOST[:CONTAINER][:PERMISSIONS]: host device nodes made available in a container.
// Rootless, a device cannot be created (mknod) in the container: it is bind mounted from the
// host, as rootless Podman does, and what the container may do with it is what the host's
// permissions on the node allow the user. PERMISSIONS (Docker's cgroup device rules: r, w, m)
// are checked and recorded but, as with rootless Podman, not enforced: there is no device
// cgroup rootless, and a read-only mount does not stop writes to a device node.
import { lstatSync, readdirSync, realpathSync, type Stats } from "node:fs";
import path from "node:path";
import { TsrunError } from "../errors.js";

/** As Docker's HostConfig.Devices lists them. */
export interface DeviceMapping {
  pathOnHost: string;
  pathInContainer: string;
  cgroupPermissions: string;
}

const PERMISSIONS = /^[rwm]{1,3}$/;

function isDevice(st: Stats): boolean {
  return st.isCharacterDevice() || st.isBlockDevice();
}

/** Parses one --device value and finds its nodes (a directory gives every device below it). */
export function parseDevice(spec: string): DeviceMapping[] {
  const parts = spec.split(":");
  if (parts.length > 3 || parts.some((p) => p === "")) throw new TsrunError(`invalid --device "${spec}": expected HOST[:CONTAINER][:PERMISSIONS]`);
  const host = parts[0] as string;
  let container = host;
  let permissions = "rwm";
  if (parts.length === 3) {
    container = parts[1] as string;
    permissions = parts[2] as string;
  } else if (parts.length === 2) {
    // "HOST:rw" names permissions; anything else is the path in the container.
    if (PERMISSIONS.test(parts[1] as string) && !(parts[1] as string).startsWith("/")) permissions = parts[1] as string;
    else container = parts[1] as string;
  }
  if (!PERMISSIONS.test(permissions)) throw new TsrunError(`invalid --device "${spec}": permissions must be made of r, w and m`);
  if (!path.isAbsolute(host) || !path.isAbsolute(container)) throw new TsrunError(`invalid --device "${spec}": paths must be absolute`);
  // A symlink on the host (/dev/disk/by-id/...) means the node it leads to, as with Docker.
  let real: string;
  let st: Stats;
  try {
    real = realpathSync(host);
    st = lstatSync(real);
  } catch (err) {
    throw new TsrunError(`error gathering device information while adding custom device "${host}": ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file or directory" : (err as Error).message}`);
  }
  if (isDevice(st)) return [{ pathOnHost: real, pathInContainer: path.posix.normalize(container), cgroupPermissions: permissions }];
  if (!st.isDirectory()) throw new TsrunError(`--device ${host}: not a device node`);
  const found: DeviceMapping[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      const s = lstatSync(p);
      if (s.isDirectory()) walk(p);
      else if (isDevice(s)) found.push({ pathOnHost: p, pathInContainer: path.posix.join(container, path.relative(real, p)), cgroupPermissions: permissions });
    }
  };
  walk(real);
  if (found.length === 0) throw new TsrunError(`--device ${host}: no device nodes in the directory`);
  return found;
}
