// Network helpers that need no container: choosing the outbound helper (and its errors when
// none is installed or /dev/net/tun is unusable), subnets and addresses, hosts file edits.
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { outboundHelper } from "../../src/network/outbound.js";
import { macForIp, parseSubnet, subnetText } from "../../src/network/networks.js";
import { addHostsLines, hostsLine, removeHostsEntries } from "../../src/network/hosts.js";
import { joinsHolder } from "../../src/network/holder.js";

const dir = mkdtempSync(path.join(tmpdir(), "tsrun-net-unit-"));
const usableTun = path.join(dir, "tun");
writeFileSync(usableTun, "");
const only = (...installed: string[]) => (name: string) => (installed.includes(name) ? `/usr/bin/${name}` : undefined);

describe("outbound helper", () => {
  it("prefers slirp4netns (the faster to start), falls back to pasta, honours an explicit choice", () => {
    expect(outboundHelper(undefined, only("pasta", "slirp4netns"), usableTun)).toEqual({ kind: "slirp4netns", path: "/usr/bin/slirp4netns" });
    expect(outboundHelper(undefined, only("pasta"), usableTun).kind).toBe("pasta");
    expect(outboundHelper("pasta", only("pasta", "slirp4netns"), usableTun).kind).toBe("pasta");
  });

  it("names the packages when neither is installed, or the one asked for is missing", () => {
    expect(() => outboundHelper(undefined, only(), usableTun)).toThrow(/install the "passt" package \(pasta\) or "slirp4netns"/);
    expect(() => outboundHelper("pasta", only("slirp4netns"), usableTun)).toThrow(/package "passt"/);
    expect(() => outboundHelper("slirp4netns", only("pasta"), usableTun)).toThrow(/package "slirp4netns"/);
  });

  it("explains a missing /dev/net/tun", () => {
    expect(() => outboundHelper(undefined, only("pasta"), path.join(dir, "missing"))).toThrow(/does not exist: .*modprobe tun/);
  });
});

describe("addresses", () => {
  it("normalises subnets, rejects bad ones, derives MACs as Docker does", () => {
    expect(subnetText(parseSubnet("10.89.3.77/24"))).toBe("10.89.3.0/24");
    expect(() => parseSubnet("10.1.2.3")).toThrow(/invalid subnet/);
    expect(() => parseSubnet("10.1.2.0/31")).toThrow(/between/);
    expect(macForIp("10.89.0.5")).toBe("02:42:0a:59:00:05");
  });

  it("starts in the holder's user namespace only with subordinate ids and the default mapping", () => {
    const m = { uid: 1000, gid: 1000, subUids: { start: 100000, count: 65536 }, subGids: { start: 100000, count: 65536 } };
    expect(joinsHolder(undefined, m)).toBe(true);
    expect(joinsHolder({ kind: "host" }, m)).toBe(true);
    expect(joinsHolder({ kind: "keep-id" }, m)).toBe(false);
    expect(joinsHolder({ kind: "nomap" }, m)).toBe(false);
    expect(joinsHolder(undefined, { ...m, subUids: null, subGids: null })).toBe(false);
    expect(joinsHolder(undefined, { uid: 0, gid: 0, subUids: null, subGids: null })).toBe(false);
  });
});

describe("hosts files", () => {
  it("adds and removes peers in place, keeping the inode and the container's own lines", () => {
    const file = path.join(dir, "hosts");
    writeFileSync(file, "127.0.0.1\tlocalhost\n10.0.0.9\tmine\n");
    const inode = statSync(file).ino;
    addHostsLines(file, [hostsLine("10.89.0.2", ["web", "www", "web"])]);
    addHostsLines(file, [hostsLine("10.89.0.2", ["web", "www"])]);
    expect(readFileSync(file, "utf8")).toBe("127.0.0.1\tlocalhost\n10.0.0.9\tmine\n10.89.0.2\tweb www\n");
    removeHostsEntries(file, "10.89.0.2", ["web"]);
    expect(readFileSync(file, "utf8")).toBe("127.0.0.1\tlocalhost\n10.0.0.9\tmine\n");
    expect(statSync(file).ino).toBe(inode);
  });
});
