// --sysctl KEY=VALUE: kernel settings of the container's own namespaces, written by the child
// under /proc/sys before that goes read-only. Only what a namespace of the container's owns can
// be set, as Docker (runc's validation) allows: IPC (kernel.msg*, kernel.sem, kernel.shm*,
// fs.mqueue.*), UTS (kernel.domainname) and, with a network namespace of its own, net.*.
import { TsrunError } from "../errors.js";

const IPC_KEYS = new Set(["kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"]);

/** The key in dotted form; a key written as a path (net/ipv4/...) keeps the dots of its names. */
function dotted(key: string): string {
  return key.includes("/") ? key.replace(/\//g, ".") : key;
}

/** Validates --sysctl values; returns them as Docker's HostConfig.Sysctls keeps them. */
export function parseSysctls(values: string[], networkMode: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf("=");
    if (eq <= 0) throw new TsrunError(`invalid --sysctl "${value}": expected KEY=VALUE`);
    const key = value.slice(0, eq).trim();
    const setting = value.slice(eq + 1);
    const parts = key.split(/[./]/);
    if (parts.some((p) => p === "" || p === "." || p === "..")) throw new TsrunError(`invalid --sysctl "${value}": bad key ${key}`);
    const name = dotted(key);
    if (name.startsWith("net.")) {
      if (networkMode === "host") throw new TsrunError(`sysctl "${key}" not allowed in host network namespace`);
      if (networkMode.startsWith("container:")) throw new TsrunError(`sysctl "${key}" not allowed: the network namespace is another container's`);
    } else if (!(IPC_KEYS.has(name) || name.startsWith("fs.mqueue.") || name === "kernel.domainname")) {
      throw new TsrunError(`sysctl "${key}" is not allowed: only the container's own namespaces can be set (net.*, kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, kernel.domainname)`);
    }
    out[key] = setting;
  }
  return out;
}

/** Where the child writes each setting: /proc/sys/PATH, value. */
export function sysctlWrites(sysctls: Record<string, string>): Array<[string, string]> {
  return Object.entries(sysctls).map(([key, value]) => [`/proc/sys/${key.includes("/") ? key : key.replace(/\./g, "/")}`, value]);
}
