// `tsrun network create|ls|inspect|rm|prune|connect|disconnect`, with Docker's output.
import { Option, type Command } from "commander";
import { createHash } from "node:crypto";
import { Tsrun } from "../tsrun.js";
import { TsrunError, NotFoundError } from "../errors.js";
import { collect } from "./util.js";
import { formatRows } from "./output.js";
import { parseLabels } from "./run.js";
import type { NetworkRecord } from "../network/networks.js";
import { writeOut } from "./stdout.js";

/** The network modes Docker lists as networks; they cannot be created or removed. */
const PREDEFINED: { name: string; driver: string }[] = [
  { name: "bridge", driver: "bridge" },
  { name: "host", driver: "host" },
  { name: "none", driver: "null" },
];

const predefinedId = (name: string): string => createHash("sha256").update(`tsrun-network-${name}`).digest("hex");

interface LsRow {
  ID: string;
  Name: string;
  Driver: string;
  Scope: string;
  Internal: string;
  IPv6: string;
  Labels: string;
  CreatedAt: string;
}

const LS_HEADERS = { ID: "NETWORK ID", Name: "NAME", Driver: "DRIVER", Scope: "SCOPE", Internal: "INTERNAL", IPv6: "IPV6", Labels: "LABELS", CreatedAt: "CREATED AT" };

function filterMatch(filters: string[], row: { id: string; name: string; driver: string; labels: Record<string, string> }): boolean {
  return filters.every((f) => {
    const eq = f.indexOf("=");
    const key = eq < 0 ? f : f.slice(0, eq);
    const value = eq < 0 ? "" : f.slice(eq + 1);
    switch (key) {
      case "name":
        return row.name.includes(value);
      case "id":
        return row.id.startsWith(value);
      case "driver":
        return row.driver === value;
      case "label": {
        const [k, v] = value.split("=");
        return k !== undefined && k in row.labels && (v === undefined || row.labels[k] === v);
      }
      default:
        throw new TsrunError(`invalid filter '${key}'`);
    }
  });
}

function parseOpts(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const o of list) {
    const eq = o.indexOf("=");
    if (eq <= 0) throw new TsrunError(`invalid option "${o}": expected KEY=VALUE`);
    out[o.slice(0, eq)] = o.slice(eq + 1);
  }
  return out;
}

export function registerNetworks(program: Command): void {
  const network = program.command("network").description("Manage networks");

  network
    .command("create")
    .description("Create a network: containers on it reach each other by name")
    .argument("<name>")
    .option("-d, --driver <driver>", "driver (bridge)", "bridge")
    .option("--subnet <cidr>", "IPv4 subnet (default: a free 10.89.N.0/24)")
    .option("--gateway <ip>", "gateway address in the subnet")
    .option("--internal", "no outbound access: containers reach only each other", false)
    .option("-o, --opt <key=value>", "driver option: mtu=N", collect, [])
    .option("-l, --label <KEY=VALUE>", "set a label", collect, [])
    .option("--ip-range <cidr>", "give containers addresses from this part of the subnet")
    .option("--aux-address <name=ip>", "an address of the subnet never given to a container (repeatable)", collect, [])
    .option("--attachable", "recorded: every network here takes containers started on their own", false)
    .option("--ipam-driver <driver>", "IP address management: default only", "default")
    .option("--ipv6", "IPv6 addresses (not supported: one-line error)", false)
    .action(async (name: string, o: { driver: string; subnet?: string; gateway?: string; internal: boolean; opt: string[]; label: string[]; ipRange?: string; auxAddress: string[]; attachable: boolean; ipamDriver: string; ipv6: boolean }) => {
      if (o.ipv6) throw new TsrunError("IPv6 networks are not supported: containers on networks get IPv4 addresses");
      if (o.ipamDriver !== "default") throw new TsrunError(`IPAM driver ${o.ipamDriver} is not supported: only default`);
      if (o.ipRange !== undefined && o.subnet === undefined) throw new TsrunError("--ip-range needs --subnet");
      const auxAddresses: Record<string, string> = {};
      for (const a of o.auxAddress) {
        const eq = a.indexOf("=");
        if (eq <= 0 || !/^\d+\.\d+\.\d+\.\d+$/.test(a.slice(eq + 1))) throw new TsrunError(`invalid --aux-address "${a}": NAME=IPv4`);
        auxAddresses[a.slice(0, eq)] = a.slice(eq + 1);
      }
      const record = await new Tsrun().containers.networking.create(name, {
        ipRange: o.ipRange,
        auxAddresses,
        attachable: o.attachable,
        driver: o.driver,
        subnet: o.subnet,
        gateway: o.gateway,
        internal: o.internal,
        options: parseOpts(o.opt),
        labels: parseLabels(o.label),
      });
      writeOut(`${record.Id}\n`);
    });

  network
    .command("ls")
    .alias("list")
    .description("List networks")
    .option("-q, --quiet", "only network IDs", false)
    .option("--no-trunc", "do not truncate the IDs")
    .option("-f, --filter <filter>", "name=, id=, driver=, label=", collect, [])
    .option("--format <template>", "Go template, table or json")
    .action((o: { quiet: boolean; trunc: boolean; filter: string[]; format?: string }) => {
      const user = new Tsrun().containers.networking.networks.list();
      const all = [
        ...PREDEFINED.map((p) => ({ id: predefinedId(p.name), name: p.name, driver: p.driver, labels: {}, internal: false, created: "" })),
        ...user.map((n: NetworkRecord) => ({ id: n.Id, name: n.Name, driver: n.Driver, labels: n.Labels, internal: n.Internal, created: n.Created })),
      ].filter((r) => filterMatch(o.filter, r));
      const id = (full: string): string => (o.trunc ? full.slice(0, 12) : full);
      if (o.quiet) {
        for (const r of all) writeOut(`${id(r.id)}\n`);
        return;
      }
      const rows: LsRow[] = all.map((r) => ({
        ID: id(r.id),
        Name: r.name,
        Driver: r.driver,
        Scope: "local",
        Internal: String(r.internal),
        IPv6: "false",
        Labels: Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(","),
        CreatedAt: r.created,
      }));
      writeOut(formatRows(o.format ?? "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", rows as unknown as Record<string, unknown>[], LS_HEADERS));
    });

  network
    .command("inspect")
    .description("Show networks in JSON")
    .argument("<network...>")
    .option("-f, --format <template>", "Go template")
    .addOption(new Option("-v, --verbose", "accepted: the output is the same (no swarm)").hideHelp())
    .action((names: string[], o: { format?: string }) => {
      const networking = new Tsrun().containers.networking;
      const out = names.map((n) => {
        const builtin = PREDEFINED.find((p) => p.name === n);
        if (builtin) return { Name: n, Id: predefinedId(n), Scope: "local", Driver: builtin.driver, EnableIPv6: false, IPAM: { Driver: "default", Options: {}, Config: [] }, Internal: false, Containers: {}, Options: {}, Labels: {} };
        return networking.inspect(n);
      });
      if (o.format) writeOut(formatRows(o.format, out as unknown as Record<string, unknown>[], {}));
      else writeOut(JSON.stringify(out, null, 4) + "\n");
    });

  network
    .command("rm")
    .alias("remove")
    .description("Remove networks no container uses")
    .argument("<network...>")
    .option("-f, --force", "do not fail when a network does not exist", false)
    .action(async (names: string[], o: { force: boolean }) => {
      const networking = new Tsrun().containers.networking;
      let failed: unknown;
      for (const n of names) {
        try {
          if (PREDEFINED.some((p) => p.name === n)) throw new TsrunError(`${n} is a pre-defined network and cannot be removed`);
          await networking.remove(n);
          writeOut(`${n}\n`);
        } catch (err) {
          if (o.force && err instanceof NotFoundError) continue;
          // Docker goes on with the others and fails at the end.
          process.stderr.write(`Error: ${(err as Error).message}\n`);
          failed = err;
        }
      }
      if (failed) process.exit(1);
    });

  network
    .command("prune")
    .description("Remove every network no container uses")
    .option("-f, --force", "do not prompt", false)
    .action(async () => {
      const removed = await new Tsrun().containers.networking.prune();
      if (removed.length) writeOut(`Deleted Networks:\n${removed.join("\n")}\n`);
    });

  network
    .command("connect")
    .description("Connect a container to a network")
    .argument("<network>")
    .argument("<container>")
    .option("--alias <alias>", "another name for the container on the network", collect, [])
    .option("--ip <address>", "the container's IPv4 address on the network")
    .action(async (net: string, container: string, o: { alias: string[]; ip?: string }) => {
      const t = new Tsrun();
      await t.containers.networking.connect(t.containers.get(container), net, { aliases: o.alias, ip: o.ip });
    });

  network
    .command("disconnect")
    .description("Disconnect a container from a network")
    .argument("<network>")
    .argument("<container>")
    .option("-f, --force", "(accepted for Docker compatibility)", false)
    .action(async (net: string, container: string) => {
      const t = new Tsrun();
      await t.containers.networking.disconnect(t.containers.get(container), net);
    });
}
