// Names on user-defined networks: each container's /etc/hosts lists the other containers of its
// networks (name and aliases), and links. tsrun has no DNS server: names resolve through
// /etc/hosts (getaddrinfo, ping, wget, curl...), not through DNS queries (nslookup, dig).
// The file is bind-mounted into the container, so it is rewritten in place (same inode): a
// new file renamed over it would not be seen inside.
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";

/** One hosts line: the address, then the names. */
export function hostsLine(ip: string, names: string[]): string {
  return `${ip}\t${[...new Set(names)].join(" ")}`;
}

function rewrite(file: string, edit: (lines: string[]) => string[]): void {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return; // the container's directory is gone (removed at the same time)
  }
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  const next = edit(lines);
  if (next.join("\n") === lines.join("\n")) return;
  const bytes = Buffer.from(next.map((l) => `${l}\n`).join(""));
  try {
    // Overwrite, then cut: a reader in the container never sees an empty file (appending a
    // peer, the common case, only adds bytes at the end).
    const fd = openSync(file, "r+");
    try {
      writeSync(fd, bytes, 0, bytes.length, 0);
      ftruncateSync(fd, bytes.length);
    } finally {
      closeSync(fd);
    }
  } catch {
    // A container that made its hosts file read-only to us keeps its own version.
  }
}

/** Appends the lines a hosts file does not have yet. */
export function addHostsLines(file: string, add: string[]): void {
  rewrite(file, (lines) => [...lines, ...add.filter((l) => !lines.includes(l))]);
}

/** Removes the lines that give address ip to any of names (a peer that left, or was renamed). */
export function removeHostsEntries(file: string, ip: string, names: string[]): void {
  rewrite(file, (lines) =>
    lines.filter((l) => {
      const [addr, ...rest] = l.trim().split(/\s+/);
      return !(addr === ip && rest.some((n) => names.includes(n)));
    }),
  );
}
