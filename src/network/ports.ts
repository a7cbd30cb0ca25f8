// Published ports: Docker's -p syntax, ranges expanded, and free host ports for -P.
import { TsrunError } from "../errors.js";
import { lazyDgram, lazyNet } from "../builtin.js";

export interface PortMapping {
  /** Host address to listen on; "" means all addresses. */
  hostIp: string;
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp";
}

function port(s: string, spec: string): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n < 1 || n > 65535) throw new TsrunError(`invalid port "${s}" in -p ${spec}`);
  return n;
}

function range(s: string, spec: string): [number, number] {
  const [a, b] = s.split("-");
  const from = port(a ?? "", spec);
  const to = b === undefined ? from : port(b, spec);
  if (to < from) throw new TsrunError(`invalid port range "${s}" in -p ${spec}`);
  return [from, to];
}

/**
 * `[IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]`, each port possibly a range (equal lengths, or a
 * host range for a single container port). HOST_PORT 0 or missing: a free port is chosen later.
 */
export function parsePortSpec(spec: string): PortMapping[] {
  let rest = spec;
  let protocol: "tcp" | "udp" = "tcp";
  const slash = rest.lastIndexOf("/");
  if (slash >= 0) {
    const p = rest.slice(slash + 1).toLowerCase();
    if (p !== "tcp" && p !== "udp") throw new TsrunError(`invalid protocol "${p}" in -p ${spec}: tcp or udp`);
    protocol = p;
    rest = rest.slice(0, slash);
  }
  let hostIp = "";
  const bracket = /^\[([0-9a-fA-F:.]+)\]:(.*)$/.exec(rest);
  if (bracket) {
    hostIp = bracket[1] as string;
    rest = bracket[2] as string;
  }
  const parts = rest.split(":");
  if (parts.length > 3 || parts.some((p, i) => p === "" && !(parts.length === 3 && i === 1))) throw new TsrunError(`invalid port specification "${spec}"`);
  if (parts.length === 3) {
    if (hostIp) throw new TsrunError(`invalid port specification "${spec}"`);
    hostIp = parts.shift() as string;
    if (!/^(\d{1,3}\.){3}\d{1,3}$/.test(hostIp) && !hostIp.includes(":")) throw new TsrunError(`invalid IP address "${hostIp}" in -p ${spec}`);
  }
  const [ctrFrom, ctrTo] = range(parts[parts.length - 1] as string, spec);
  const hostPart = parts.length === 2 ? (parts[0] as string) : "";
  const out: PortMapping[] = [];
  if (hostPart === "") {
    for (let p = ctrFrom; p <= ctrTo; p++) out.push({ hostIp, hostPort: 0, containerPort: p, protocol });
    return out;
  }
  const [hostFrom, hostTo] = range(hostPart, spec);
  if (hostTo - hostFrom !== ctrTo - ctrFrom) {
    if (ctrFrom === ctrTo) {
      // A host range for one container port: Docker picks the first free one; we take the first.
      return [{ hostIp, hostPort: hostFrom, containerPort: ctrFrom, protocol }];
    }
    throw new TsrunError(`invalid port specification "${spec}": host and container ranges differ in length`);
  }
  for (let i = 0; i <= ctrTo - ctrFrom; i++) out.push({ hostIp, hostPort: hostFrom + i, containerPort: ctrFrom + i, protocol });
  return out;
}

/** A port the kernel calls free right now (the listener is closed again before use). */
export async function freePort(protocol: "tcp" | "udp", hostIp: string): Promise<number> {
  const address = hostIp || "0.0.0.0";
  // Loaded on use: a container without published ports starts without them.
  const { createSocket } = lazyDgram();
  const { createServer } = lazyNet();
  return new Promise((resolve, reject) => {
    if (protocol === "udp") {
      const s = createSocket(address.includes(":") ? "udp6" : "udp4");
      s.once("error", reject);
      s.bind(0, address, () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
      return;
    }
    const server = createServer();
    server.once("error", reject);
    server.listen(0, address, () => {
      const a = server.address();
      const p = typeof a === "object" && a ? a.port : 0;
      server.close(() => resolve(p));
    });
  });
}

/** Fills host port 0 with free ports. */
export async function assignHostPorts(list: PortMapping[]): Promise<PortMapping[]> {
  const out: PortMapping[] = [];
  for (const m of list) out.push(m.hostPort === 0 ? { ...m, hostPort: await freePort(m.protocol, m.hostIp) } : m);
  return out;
}

/** `tsrun port` lines: "80/tcp -> 0.0.0.0:8080". */
export function formatPort(m: PortMapping): string {
  const ip = m.hostIp || "0.0.0.0";
  return `${m.containerPort}/${m.protocol} -> ${ip.includes(":") ? `[${ip}]` : ip}:${m.hostPort}`;
}
