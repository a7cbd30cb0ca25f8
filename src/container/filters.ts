// `ps --filter KEY=VALUE`, with Docker's rules: the values of one key are alternatives (any may
// match), except label filters, which must all match; different keys must all match; an unknown
// key or a bad value is an error.
import { TsrunError } from "../errors.js";
import { parseTimeArgument } from "../format/duration.js";
import type { ContainerRecord } from "./records.js";

/** What the filters need to know beyond the records themselves. */
export interface FilterContext {
  /** Every container (before= and since= name one). */
  all: ContainerRecord[];
  /** The image a reference or ID names (ancestor=): its ID and layers, or undefined. */
  findImage(reference: string): { id: string; layers: string[] } | undefined;
  /** Ports ("80/tcp") the container's image exposes. */
  imageExposedPorts(r: ContainerRecord): string[];
}

const STATES = ["created", "restarting", "running", "removing", "paused", "exited", "dead"];
const HEALTH = ["starting", "healthy", "unhealthy", "none"];
const KEYS = ["id", "name", "label", "exited", "status", "health", "ancestor", "before", "since", "volume", "network", "publish", "expose"];

/** Docker's state word: created, running, paused, restarting, exited. */
export function stateWord(r: ContainerRecord): string {
  if (r.state.status === "running" && r.state.restarting) return "restarting";
  return r.state.status === "running" && r.state.paused ? "paused" : r.state.status;
}

function invalid(key: string, value?: string): TsrunError {
  return new TsrunError(value === undefined ? `invalid filter '${key}'` : `invalid filter '${key}=${value}'`);
}

/** A port filter value: PORT[/PROTO] or START-END[/PROTO], tcp by default. */
function portRange(key: string, value: string): { from: number; to: number; protocol: string } {
  const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/.exec(value);
  const from = Number(m?.[1]);
  const to = m?.[2] === undefined ? from : Number(m[2]);
  if (!m || from < 1 || to > 65535 || to < from) throw invalid(key, value);
  return { from, to, protocol: m[3] ?? "tcp" };
}

function inRange(ports: string[], range: { from: number; to: number; protocol: string }): boolean {
  return ports.some((p) => {
    const [n, proto] = p.split("/");
    return (proto ?? "tcp") === range.protocol && Number(n) >= range.from && Number(n) <= range.to;
  });
}

function published(r: ContainerRecord): string[] {
  return (r.hostConfig.portBindings ?? []).map((b) => `${b.containerPort}/${b.protocol}`);
}

function nameRegExp(value: string): RegExp {
  try {
    return new RegExp(value);
  } catch {
    throw new TsrunError(`invalid filter 'name=${value}': not a regular expression`);
  }
}

/** Docker's label filter value: KEY (the label is there) or KEY=VALUE (with that value). */
export function labelMatcher(value: string): (labels: Record<string, string>) => boolean {
  const eq = value.indexOf("=");
  const key = eq < 0 ? value : value.slice(0, eq);
  return (labels) => key in labels && (eq < 0 || labels[key] === value.slice(eq + 1));
}

/** One predicate per value, checked before any container is looked at. */
function predicate(key: string, value: string, ctx: FilterContext): (r: ContainerRecord) => boolean {
  switch (key) {
    case "id":
      return (r) => r.id.startsWith(value);
    case "name": {
      // Docker matches "/NAME" as well as "NAME": ^/web$ and ^web$ both work.
      const re = nameRegExp(value);
      return (r) => re.test(r.name) || re.test(`/${r.name}`);
    }
    case "label": {
      const matches = labelMatcher(value);
      return (r) => matches(r.config.labels);
    }
    case "exited": {
      if (!/^-?\d+$/.test(value)) throw invalid(key, value);
      return (r) => r.state.status === "exited" && r.state.exitCode === Number(value);
    }
    case "status":
      if (!STATES.includes(value)) throw invalid(key, value);
      return (r) => stateWord(r) === value;
    case "health":
      if (!HEALTH.includes(value)) throw invalid(key, value);
      return (r) => {
        const hc = r.config.healthcheck;
        const hasCheck = hc !== undefined && hc.Test?.[0] !== "NONE";
        if (value === "none") return !hasCheck;
        return hasCheck && r.state.status === "running" && (r.state.health?.Status ?? "starting") === value;
      };
    case "ancestor": {
      // The image, or one built on it (its layers start with the image's), as Docker's
      // ancestor matches descendants; an unknown image matches nothing, as in Docker.
      const image = ctx.findImage(value);
      if (!image) return () => false;
      return (r) => r.image === image.id || (image.layers.length > 0 && image.layers.every((l, i) => r.layers[i] === l));
    }
    case "before":
    case "since": {
      const other = ctx.all.find((r) => r.id === value || r.name === value) ?? ctx.all.find((r) => r.id.startsWith(value));
      if (!other) throw new TsrunError(`no such container: ${value}`);
      return key === "before" ? (r) => r.created < other.created : (r) => r.created > other.created;
    }
    case "volume":
      // A volume's name or a mount's destination, as Docker matches it.
      return (r) => (r.hostConfig.mounts ?? []).some((m) => (m.type === "volume" && m.source === value) || m.target === value || m.target === value.replace(/\/+$/, ""));
    case "network":
      // By name or network ID (prefix); built-in modes by their name (bridge is the private network).
      return (r) =>
        r.hostConfig.networkMode === value ||
        (value === "bridge" && r.hostConfig.networkMode === "private") ||
        Object.entries(r.hostConfig.networks ?? {}).some(([n, e]) => n === value || e.networkId.startsWith(value));
    case "publish": {
      const range = portRange(key, value);
      return (r) => inRange(published(r), range);
    }
    case "expose": {
      const range = portRange(key, value);
      return (r) => inRange([...(r.config.exposedPorts ?? []), ...published(r), ...ctx.imageExposedPorts(r)], range);
    }
    default:
      throw invalid(key);
  }
}

/** The containers every filter (KEY=VALUE) lets through. */
export function filterContainers(list: ContainerRecord[], filters: string[], ctx: FilterContext): ContainerRecord[] {
  const byKey = new Map<string, ((r: ContainerRecord) => boolean)[]>();
  for (const f of filters) {
    const eq = f.indexOf("=");
    if (eq < 0) throw new TsrunError(`bad format of filter "${f}" (expected name=value)`);
    const key = f.slice(0, eq).toLowerCase();
    if (!KEYS.includes(key)) throw invalid(key);
    // Labels are the exception: every label filter must match (docker's MatchKVList).
    const group = key === "label" ? `label=${f.slice(eq + 1)}` : key;
    byKey.set(group, [...(byKey.get(group) ?? []), predicate(key, f.slice(eq + 1), ctx)]);
  }
  return list.filter((r) => [...byKey.values()].every((alternatives) => alternatives.some((p) => p(r))));
}

/**
 * `container prune --filter`: until=TIME (created before it), label=KEY[=VALUE] (every one must
 * match) and label!=KEY[=VALUE] (none may), as Docker's prune filters.
 */
export function pruneFilter(filters: string[]): (r: ContainerRecord) => boolean {
  return pruneFilterOf<ContainerRecord>(filters, { created: (r) => r.created, labels: (r) => r.config.labels });
}

/**
 * Docker's prune filters for any kind of record: until=TIME (created before it; only where the
 * kind has a creation time) and label=KEY[=VALUE] / label!=KEY[=VALUE]. Checked before anything
 * is looked at; an unknown key is Docker's "invalid filter" error.
 */
export function pruneFilterOf<T>(filters: string[], access: { created?: (t: T) => string | undefined; labels: (t: T) => Record<string, string> }): (t: T) => boolean {
  const checks: ((t: T) => boolean)[] = [];
  const created = access.created;
  for (const f of filters) {
    const m = (created ? /^(until|label!?)=(.*)$/s : /^(label!?)=(.*)$/s).exec(f);
    if (!m) {
      const eq = f.indexOf("=");
      if (eq < 0) throw new TsrunError(`bad format of filter "${f}" (expected name=value)`);
      throw invalid(f.slice(0, eq));
    }
    const [, key, value] = m as unknown as [string, string, string];
    if (key === "until" && created) {
      const until = parseTimeArgument(value, "until filter").getTime();
      checks.push((t) => Date.parse(created(t) ?? "") < until);
      continue;
    }
    const matches = labelMatcher(value);
    const has = (t: T): boolean => matches(access.labels(t));
    checks.push(key === "label" ? has : (t) => !has(t));
  }
  return (t) => checks.every((c) => c(t));
}
