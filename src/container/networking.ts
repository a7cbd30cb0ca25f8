// A container's user-defined networks: its endpoint on each (address, aliases, links), the
// /etc/hosts lines through which containers on one network know each other, and what a start
// asks of the network holder. Every change to endpoints and hosts files happens under the
// store lock, so two containers joining at once each see the other.
import path from "node:path";
import type { ContainerRecord, ContainerStore } from "./records.js";
import type { Store } from "../store/store.js";
import { Networks, bridgeName, macForIp, networkMtu, parseSubnet, type Endpoint, type NetworkRecord } from "../network/networks.js";
import { addHostsLines, hostsLine, removeHostsEntries } from "../network/hosts.js";
import { closeHolder, connectHolder, connectRunningHolder, holderRequest, type HolderConnection } from "../network/holder.js";
import { TsrunError } from "../errors.js";
import type { CreateNetworkOptions } from "../network/networks.js";

export interface JoinRequest {
  network: NetworkRecord;
  aliases?: string[];
  /** --link NAME[:ALIAS] */
  links?: string[];
  /** --ip */
  ip?: string | undefined;
}

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** `network inspect`: the record with the containers on the network, as Docker shows them. */
export type NetworkInspect = NetworkRecord & {
  Containers: Record<string, { Name: string; EndpointID: string; MacAddress: string; IPv4Address: string; IPv6Address: string }>;
};

export class ContainerNetworks {
  readonly networks: Networks;
  constructor(
    private readonly store: Store,
    private readonly records: ContainerStore,
  ) {
    this.networks = new Networks(store);
  }

  create(name: string, opts: CreateNetworkOptions = {}): Promise<NetworkRecord> {
    return this.networks.create(name, opts);
  }

  inspect(query: string): NetworkInspect {
    const n = this.networks.find(query);
    const containers: NetworkInspect["Containers"] = {};
    for (const r of this.members(n.Id)) {
      const e = Object.values(r.hostConfig.networks ?? {}).find((x) => x.networkId === n.Id) as Endpoint;
      containers[r.id] = { Name: r.name, EndpointID: "", MacAddress: e.macAddress, IPv4Address: `${e.ipAddress}/${e.prefixLen}`, IPv6Address: "" };
    }
    return { ...n, Containers: containers };
  }

  /** Removes a network no container uses (Docker refuses while any is connected). */
  async remove(query: string): Promise<NetworkRecord> {
    const n = this.networks.find(query);
    await this.store.lock(() => {
      const users = this.users(n);
      if (users.length > 0) throw new TsrunError(`network ${n.Name} is in use by container${users.length > 1 ? "s" : ""} ${users.join(", ")}: remove ${users.length > 1 ? "them" : "it"} or disconnect ${users.length > 1 ? "them" : "it"} first`);
      this.networks.remove(n);
    });
    // Its bridge goes too if the holder runs (otherwise it went with the holder).
    const conn = connectRunningHolder(this.store.paths.runRoot);
    if (conn) {
      try {
        holderRequest(conn, `rmbridge ${bridgeName(n)}`);
      } finally {
        closeHolder(conn);
      }
    }
    return n;
  }

  /** Removes every network no container uses; returns their names. */
  async prune(): Promise<string[]> {
    const removed: string[] = [];
    for (const n of this.networks.list()) {
      if (this.users(n).length > 0) continue;
      try {
        await this.remove(n.Id);
        removed.push(n.Name);
      } catch (err) {
        // Taken by a container created meanwhile: not unused any more.
        if (!(err instanceof TsrunError)) throw err;
      }
    }
    return removed;
  }

  /**
   * `network connect`: a created or stopped container gets the network at its next start; a
   * running one at once, if it was started on a user-defined network (one started on the private
   * network has its eth0 and default route from slirp4netns or pasta, and was set up without the
   * network's interface: it gets it at its next start).
   */
  async connect(record: ContainerRecord, query: string, opts: { aliases?: string[]; ip?: string | undefined } = {}): Promise<void> {
    const n = this.networks.find(query);
    const mode = record.hostConfig.networkMode;
    if (mode === "host" || mode === "none" || mode.startsWith("container:")) throw new TsrunError(`container ${record.name} uses --network ${mode}: it cannot be connected to a network`);
    const running = record.state.status === "running";
    if (running && Object.keys(record.hostConfig.networks ?? {}).length === 0)
      throw new TsrunError(`container ${record.name} is running on the private network: stop it, connect it, and start it again`);
    let endpoint: Endpoint | undefined;
    await this.store.lock(() => {
      const fresh = this.records.load(record.id);
      endpoint = this.endpoint(fresh, { network: n, aliases: opts.aliases ?? [], ip: opts.ip });
      fresh.hostConfig.networks = { ...(fresh.hostConfig.networks ?? {}), [n.Name]: endpoint };
      this.records.save(fresh);
      this.announce(fresh);
      record.hostConfig = fresh.hostConfig;
    });
    if (running && endpoint) {
      const conn = await connectHolder(this.store.paths.runRoot);
      try {
        ContainerNetworks.attach(conn, record.state.pid, [[n, endpoint]]);
      } finally {
        closeHolder(conn);
      }
    }
  }

  /** `network disconnect`: the reverse of connect (a running container loses the interface). */
  async disconnect(record: ContainerRecord, query: string): Promise<void> {
    const n = this.networks.find(query);
    const entry = Object.entries(record.hostConfig.networks ?? {}).find(([, e]) => e.networkId === n.Id);
    if (!entry) throw new TsrunError(`container ${record.name} is not connected to network ${n.Name}`);
    const [name, endpoint] = entry;
    if (record.state.status === "running") {
      const conn = await connectHolder(this.store.paths.runRoot);
      try {
        holderRequest(conn, `detach ${record.state.pid} ${endpoint.ifname}`);
      } finally {
        closeHolder(conn);
      }
    }
    await this.store.lock(() => {
      const fresh = this.records.load(record.id);
      this.withdraw(fresh, endpoint);
      const rest = { ...(fresh.hostConfig.networks ?? {}) };
      delete rest[name];
      fresh.hostConfig.networks = rest;
      this.records.save(fresh);
      record.hostConfig = fresh.hostConfig;
    });
  }

  private hostsFile(r: ContainerRecord): string {
    return path.join(this.records.containerDir(r.id), "hosts");
  }

  /** Containers on a network (any state: their addresses are theirs until removed). */
  members(networkId: string, except?: string): ContainerRecord[] {
    return this.records.list().filter((r) => r.id !== except && Object.values(r.hostConfig.networks ?? {}).some((e) => e.networkId === networkId));
  }

  /** Names of the containers that use a network (for network rm). */
  users(n: NetworkRecord): string[] {
    return this.members(n.Id).map((r) => r.name);
  }

  private static peerLine(r: ContainerRecord, e: Endpoint): string {
    return hostsLine(e.ipAddress, [r.name, ...e.aliases]);
  }

  /** What record's own hosts file says about the others: peers on each network, and links. */
  private linesFor(record: ContainerRecord): string[] {
    const lines: string[] = [];
    for (const e of Object.values(record.hostConfig.networks ?? {})) {
      for (const peer of this.members(e.networkId, record.id)) {
        const pe = Object.values(peer.hostConfig.networks ?? {}).find((x) => x.networkId === e.networkId);
        if (pe) lines.push(ContainerNetworks.peerLine(peer, pe));
      }
      for (const link of e.links) {
        const [target, alias] = link.split(":") as [string, string];
        const peer = this.records.list().find((r) => r.name === target);
        const pe = peer && Object.values(peer.hostConfig.networks ?? {}).find((x) => x.networkId === e.networkId);
        if (peer && pe) lines.push(hostsLine(pe.ipAddress, [alias, peer.name]));
      }
    }
    return lines;
  }

  /**
   * Gives a new container (not saved yet) an endpoint on a network: an address, a MAC, checked
   * aliases and links. Call under the store lock, then save the record and call announce().
   */
  endpoint(record: ContainerRecord, req: JoinRequest): Endpoint {
    const n = req.network;
    const existing = record.hostConfig.networks ?? {};
    if (existing[n.Name]) throw new TsrunError(`container ${record.name} is already connected to network ${n.Name}`);
    for (const a of req.aliases ?? []) if (!NAME.test(a)) throw new TsrunError(`invalid network alias "${a}"`);
    const members = this.members(n.Id, record.id);
    const links: string[] = [];
    for (const l of req.links ?? []) {
      const [target, alias, extra] = l.split(":");
      if (!target || extra !== undefined || alias === "") throw new TsrunError(`invalid --link "${l}": expected NAME[:ALIAS]`);
      const peer = this.records.list().find((r) => r.name === target || r.id === target);
      if (!peer) throw new TsrunError(`cannot link to ${target}: no such container`);
      if (!members.some((m) => m.id === peer.id))
        throw new TsrunError(`cannot link to ${target}: it is not on network ${n.Name} (links work between containers of one user-defined network)`);
      links.push(`${peer.name}:${alias ?? peer.name}`);
    }
    const used = members.map((m) => Object.values(m.hostConfig.networks ?? {}).find((e) => e.networkId === n.Id)?.ipAddress ?? "").filter(Boolean);
    const ip = this.networks.allocateAddress(n, used, req.ip);
    const config = n.IPAM.Config[0] as { Subnet: string; Gateway: string };
    return {
      networkId: n.Id,
      ipAddress: ip,
      prefixLen: parseSubnet(config.Subnet).prefix,
      gateway: config.Gateway,
      macAddress: macForIp(ip),
      aliases: req.aliases ?? [],
      links,
      ifname: ContainerNetworks.freeInterface(existing),
    };
  }

  private static freeInterface(existing: Record<string, Endpoint>): string {
    const taken = new Set(Object.values(existing).map((e) => e.ifname));
    let i = 0;
    while (taken.has(`eth${i}`)) i++;
    return `eth${i}`;
  }

  /** Writes the peers into record's hosts file and record into theirs (under the store lock). */
  announce(record: ContainerRecord): void {
    addHostsLines(this.hostsFile(record), this.linesFor(record));
    for (const [, e] of Object.entries(record.hostConfig.networks ?? {})) {
      for (const peer of this.members(e.networkId, record.id)) addHostsLines(this.hostsFile(peer), [ContainerNetworks.peerLine(record, e)]);
    }
  }

  /**
   * Takes record out of its peers' hosts files and them out of its own (when it is removed, or
   * leaves one network: only).
   */
  withdraw(record: ContainerRecord, only?: Endpoint): void {
    for (const e of Object.values(record.hostConfig.networks ?? {})) {
      if (only && e.networkId !== only.networkId) continue;
      for (const peer of this.members(e.networkId, record.id)) {
        removeHostsEntries(this.hostsFile(peer), e.ipAddress, [record.name]);
        const pe = Object.values(peer.hostConfig.networks ?? {}).find((x) => x.networkId === e.networkId);
        if (pe) removeHostsEntries(this.hostsFile(record), pe.ipAddress, [peer.name]);
      }
    }
  }

  /** The network records of a container's endpoints; a network removed since is an error. */
  networksOf(record: ContainerRecord): [NetworkRecord, Endpoint][] {
    if (Object.keys(record.hostConfig.networks ?? {}).length === 0) return [];
    const all = this.networks.list();
    return Object.entries(record.hostConfig.networks ?? {}).map(([name, e]) => {
      const n = all.find((x) => x.Id === e.networkId);
      if (!n) throw new TsrunError(`network ${name} of container ${record.name} no longer exists`);
      return [n, e];
    });
  }

  /** The holder requests that attach a started container (its pid inserted after the verb). */
  static attachRequests(pairs: [NetworkRecord, Endpoint][]): string[] {
    return pairs.map(([n, e]) => {
      const subnet = n.IPAM.Config[0] as { Subnet: string; Gateway: string };
      const prefix = parseSubnet(subnet.Subnet).prefix;
      return ["attach", e.ifname, bridgeName(n), `${subnet.Gateway}/${prefix}`, `${e.ipAddress}/${e.prefixLen}`, e.macAddress, String(networkMtu(n))].join(" ");
    });
  }

  /** Attaches a waiting (or running) container, by pid, through the holder. */
  static attach(conn: HolderConnection, pid: number, pairs: [NetworkRecord, Endpoint][]): void {
    for (const req of ContainerNetworks.attachRequests(pairs)) {
      const [verb, ...rest] = req.split(" ");
      holderRequest(conn, [verb, String(pid), ...rest].join(" "));
    }
  }

  /** Whether any of the container's networks gives outbound access (not --internal). */
  outbound(record: ContainerRecord): boolean {
    return this.networksOf(record).some(([n]) => !n.Internal);
  }
}
