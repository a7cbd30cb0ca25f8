// User-defined networks: their records (networks/<id>.json, as `docker network inspect` shows
// them), subnets and addresses. The bridges themselves live in tsrun-netns (see holder.ts).
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "../random.js";
import type { Store } from "../store/store.js";
import { writeJsonAtomic } from "../store/atomic.js";
import { NotFoundError, TsrunError } from "../errors.js";
import { removeFile } from "../remove-file.js";

export interface NetworkRecord {
  Name: string;
  Id: string;
  Created: string;
  Scope: "local";
  Driver: "bridge";
  EnableIPv6: false;
  IPAM: { Driver: "default"; Options: Record<string, string>; Config: { Subnet: string; Gateway: string; IPRange?: string; AuxiliaryAddresses?: Record<string, string> }[] };
  /** No outbound access: containers reach only each other. */
  Internal: boolean;
  Attachable: boolean;
  Ingress: false;
  Options: Record<string, string>;
  Labels: Record<string, string>;
}

/** A container's place on a user-defined network (Docker's EndpointSettings). */
export interface Endpoint {
  networkId: string;
  ipAddress: string;
  prefixLen: number;
  gateway: string;
  macAddress: string;
  /** Extra names the other containers know it by (--network-alias). */
  aliases: string[];
  /** --link NAME:ALIAS: names of other containers on this network, in this container's hosts. */
  links: string[];
  /** Its interface in the container: eth0, eth1, ... */
  ifname: string;
}

export interface CreateNetworkOptions {
  subnet?: string | undefined;
  gateway?: string | undefined;
  internal?: boolean;
  labels?: Record<string, string>;
  /** Driver options: `mtu` (or com.docker.network.driver.mtu). */
  options?: Record<string, string>;
  driver?: string | undefined;
  /** --ip-range: containers get their addresses from this part of the subnet. */
  ipRange?: string | undefined;
  /** --aux-address NAME=IP: addresses never handed out. */
  auxAddresses?: Record<string, string>;
  /** --attachable: recorded (every network here is). */
  attachable?: boolean;
}

/** The network modes that are not user-defined networks (Docker's and Podman's names). */
export const BUILTIN_NETWORKS = ["bridge", "host", "none", "private", "pasta", "slirp4netns", "default"];

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function ipToNumber(ip: string): number {
  const parts = ip.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) throw new TsrunError(`invalid IPv4 address "${ip}"`);
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

export function numberToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

export interface Subnet {
  base: number;
  prefix: number;
}

export function parseSubnet(cidr: string): Subnet {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(cidr);
  if (!m) throw new TsrunError(`invalid subnet "${cidr}": expected an IPv4 CIDR such as 10.89.5.0/24`);
  const prefix = Number(m[2]);
  if (prefix < 8 || prefix > 30) throw new TsrunError(`invalid subnet "${cidr}": the prefix must be between /8 and /30`);
  const ip = ipToNumber(m[1] as string);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { base: (ip & mask) >>> 0, prefix };
}

export function subnetText(s: Subnet): string {
  return `${numberToIp(s.base)}/${s.prefix}`;
}

export function inSubnet(ip: number, s: Subnet): boolean {
  return ip >>> 0 >= s.base && ip >>> 0 < s.base + 2 ** (32 - s.prefix);
}

function overlaps(a: Subnet, b: Subnet): boolean {
  return inSubnet(a.base, b) || inSubnet(b.base, a);
}

/** IPv4 routes of the host (from /proc/net/route), so a new subnet does not shadow them. */
function hostRoutes(): Subnet[] {
  const out: Subnet[] = [];
  try {
    for (const line of readFileSync("/proc/net/route", "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (!f[1] || !f[7] || f[1] === "00000000") continue;
      const le = (hex: string): number => parseInt(hex.match(/../g)?.reverse().join("") ?? "0", 16) >>> 0;
      const mask = le(f[7]);
      const prefix = mask.toString(2).replace(/0/g, "").length;
      out.push({ base: le(f[1]), prefix });
    }
  } catch {
    // No /proc/net/route: nothing to avoid.
  }
  return out;
}

/** Docker derives a container's MAC address from its IPv4 address: 02:42 and the four bytes. */
export function macForIp(ip: string): string {
  return ["02", "42", ...ip.split(".").map((p) => Number(p).toString(16).padStart(2, "0"))].join(":");
}

/** The Linux bridge of a network in the holder's namespace (at most 15 characters). */
export function bridgeName(n: NetworkRecord): string {
  return `br-${n.Id.slice(0, 12)}`;
}

/**
 * The bridge's MTU: 65520 unless the network says otherwise. The bridge only carries traffic
 * between containers of one machine (outbound traffic goes through the helper's tap, which has the
 * same MTU), so it need not be Ethernet's 1500; it measured about 1.5 times the throughput.
 */
export function networkMtu(n: NetworkRecord): number {
  const v = n.Options["mtu"] ?? n.Options["com.docker.network.driver.mtu"];
  return v ? Number(v) : 65520;
}

export class Networks {
  readonly dir: string;
  constructor(private readonly store: Store) {
    this.dir = path.join(store.paths.root, "networks");
  }

  list(): NetworkRecord[] {
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => /^[a-f0-9]{64}\.json$/.test(n));
    } catch {
      return [];
    }
    const out: NetworkRecord[] = [];
    for (const n of names) {
      try {
        out.push(JSON.parse(readFileSync(path.join(this.dir, n), "utf8")) as NetworkRecord);
      } catch {
        // Removed while we listed it.
      }
    }
    return out.sort((a, b) => a.Name.localeCompare(b.Name));
  }

  /** By name, full ID or unique ID prefix. */
  find(query: string): NetworkRecord {
    const all = this.list();
    const byName = all.find((n) => n.Name === query);
    if (byName) return byName;
    if (/^[a-f0-9]+$/.test(query)) {
      const matches = all.filter((n) => n.Id.startsWith(query));
      if (matches.length === 1) return matches[0] as NetworkRecord;
      if (matches.length > 1) throw new TsrunError(`network ID prefix "${query}" is ambiguous`);
    }
    throw new NotFoundError(`network ${query} not found`);
  }

  exists(query: string): boolean {
    try {
      this.find(query);
      return true;
    } catch {
      return false;
    }
  }

  create(name: string, opts: CreateNetworkOptions = {}): Promise<NetworkRecord> {
    if (!NAME.test(name)) throw new TsrunError(`invalid network name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    if (BUILTIN_NETWORKS.includes(name)) throw new TsrunError(`network name "${name}" is reserved for a built-in network mode`);
    if (opts.driver && opts.driver !== "bridge") throw new TsrunError(`network driver "${opts.driver}" is not supported: only bridge`);
    const options = { ...(opts.options ?? {}) };
    for (const [k, v] of Object.entries(options)) {
      if (k !== "mtu" && k !== "com.docker.network.driver.mtu") throw new TsrunError(`unsupported network option "${k}": only mtu`);
      if (!/^\d+$/.test(v) || Number(v) < 68 || Number(v) > 65535) throw new TsrunError(`invalid mtu "${v}": 68 to 65535`);
    }
    return this.store.lock(() => {
      const existing = this.list();
      if (existing.some((n) => n.Name === name)) throw new TsrunError(`network with name ${name} already exists`);
      const taken = existing.map((n) => parseSubnet(n.IPAM.Config[0]?.Subnet ?? "0.0.0.0/32"));
      let subnet: Subnet;
      if (opts.subnet) {
        subnet = parseSubnet(opts.subnet);
        const clash = existing.find((n) => overlaps(parseSubnet(n.IPAM.Config[0]?.Subnet ?? "0.0.0.0/32"), subnet));
        if (clash) throw new TsrunError(`subnet ${subnetText(subnet)} overlaps with network ${clash.Name} (${clash.IPAM.Config[0]?.Subnet})`);
      } else {
        // Podman's pool for created networks: 10.89.N.0/24, skipping any the host routes.
        const avoid = [...taken, ...hostRoutes()];
        let found: Subnet | undefined;
        for (let i = 0; i < 256 && !found; i++) {
          const candidate = { base: ipToNumber(`10.89.${i}.0`), prefix: 24 };
          if (!avoid.some((s) => overlaps(s, candidate))) found = candidate;
        }
        if (!found) throw new TsrunError("no free subnet left in 10.89.0.0/16: give one with --subnet");
        subnet = found;
      }
      const gateway = opts.gateway ? ipToNumber(opts.gateway) : subnet.base + 1;
      if (!inSubnet(gateway, subnet) || gateway === subnet.base || gateway === subnet.base + 2 ** (32 - subnet.prefix) - 1)
        throw new TsrunError(`gateway ${numberToIp(gateway)} is not a host address of subnet ${subnetText(subnet)}`);
      let ipRange: string | undefined;
      if (opts.ipRange) {
        const range = parseSubnet(opts.ipRange);
        if (range.prefix < subnet.prefix || !inSubnet(range.base, subnet)) throw new TsrunError(`ip-range ${opts.ipRange} is not within subnet ${subnetText(subnet)}`);
        ipRange = subnetText(range);
      }
      for (const [auxName, ip] of Object.entries(opts.auxAddresses ?? {})) {
        if (!inSubnet(ipToNumber(ip), subnet)) throw new TsrunError(`aux-address ${auxName}=${ip} is not within subnet ${subnetText(subnet)}`);
      }
      const record: NetworkRecord = {
        Name: name,
        Id: randomBytes(32).toString("hex"),
        Created: new Date().toISOString(),
        Scope: "local",
        Driver: "bridge",
        EnableIPv6: false,
        IPAM: {
          Driver: "default",
          Options: {},
          Config: [
            {
              Subnet: subnetText(subnet),
              Gateway: numberToIp(gateway),
              ...(ipRange ? { IPRange: ipRange } : {}),
              ...(opts.auxAddresses && Object.keys(opts.auxAddresses).length > 0 ? { AuxiliaryAddresses: opts.auxAddresses } : {}),
            },
          ],
        },
        Internal: opts.internal ?? false,
        Attachable: opts.attachable ?? false,
        Ingress: false,
        Options: options,
        Labels: opts.labels ?? {},
      };
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      writeJsonAtomic(path.join(this.dir, `${record.Id}.json`), record, 0o644, false);
      return record;
    });
  }

  /** Deletes the record; the caller has checked that no container uses the network. */
  remove(n: NetworkRecord): void {
    const file = path.join(this.dir, `${n.Id}.json`);
    if (!existsSync(file)) throw new NotFoundError(`network ${n.Name} not found`);
    removeFile(file);
  }

  /**
   * The next free address of a network (or the one asked for, checked), given the addresses
   * its containers hold. The gateway, network and broadcast addresses are never handed out.
   */
  allocateAddress(n: NetworkRecord, used: string[], wanted?: string): string {
    const config = n.IPAM.Config[0];
    if (!config) throw new TsrunError(`network ${n.Name} has no subnet`);
    const subnet = parseSubnet(config.Subnet);
    const reserved = new Set([...used, config.Gateway, ...Object.values(config.AuxiliaryAddresses ?? {})].map(ipToNumber));
    const last = subnet.base + 2 ** (32 - subnet.prefix) - 1;
    if (wanted) {
      const ip = ipToNumber(wanted);
      if (!inSubnet(ip, subnet) || ip === subnet.base || ip === last) throw new TsrunError(`address ${wanted} is not in network ${n.Name}'s subnet ${config.Subnet}`);
      if (reserved.has(ip)) throw new TsrunError(`address ${wanted} is already in use on network ${n.Name}`);
      return wanted;
    }
    // --ip-range: new addresses come from that part of the subnet (an --ip may be anywhere in it).
    const range = config.IPRange ? parseSubnet(config.IPRange) : subnet;
    const first = Math.max(range.base, subnet.base + 1);
    const end = Math.min(range.base + 2 ** (32 - range.prefix) - 1, last - 1);
    for (let ip = first; ip <= end; ip++) if (!reserved.has(ip)) return numberToIp(ip);
    throw new TsrunError(`no free address left in network ${n.Name} (${config.IPRange ?? config.Subnet})`);
  }
}
