import { describe, expect, it } from "vitest";
import { mergeCommand, mergeEnv, parseEnvFile, parseGroup, parsePasswd, parseUserSpec, resolveUser } from "../../src/container/spec.js";
import { TsrunError } from "../../src/errors.js";

// Docker's reference table (docs: "Understand how CMD and ENTRYPOINT interact"). A shell-form
// instruction is stored as ["/bin/sh", "-c", "..."].
const SH_ENTRY = ["/bin/sh", "-c", "exec_entry p1_entry"];
const EXEC_ENTRY = ["exec_entry", "p1_entry"];
const EXEC_CMD = ["exec_cmd", "p1_cmd"];
const SH_CMD = ["/bin/sh", "-c", "exec_cmd p1_cmd"];

describe("ENTRYPOINT/CMD merging (Docker's table)", () => {
  it("no ENTRYPOINT, no CMD: error", () => {
    expect(() => mergeCommand({}, { args: [] })).toThrow(TsrunError);
  });
  it("no ENTRYPOINT, exec CMD", () => expect(mergeCommand({ Cmd: EXEC_CMD }, { args: [] })).toEqual(EXEC_CMD));
  it("no ENTRYPOINT, shell CMD", () => expect(mergeCommand({ Cmd: SH_CMD }, { args: [] })).toEqual(SH_CMD));
  it("shell ENTRYPOINT ignores CMD", () => {
    expect(mergeCommand({ Entrypoint: SH_ENTRY }, { args: [] })).toEqual(SH_ENTRY);
    expect(mergeCommand({ Entrypoint: SH_ENTRY, Cmd: EXEC_CMD }, { args: [] })).toEqual([...SH_ENTRY, ...EXEC_CMD]);
  });
  it("exec ENTRYPOINT alone", () => expect(mergeCommand({ Entrypoint: EXEC_ENTRY }, { args: [] })).toEqual(EXEC_ENTRY));
  it("exec ENTRYPOINT + exec CMD", () =>
    expect(mergeCommand({ Entrypoint: EXEC_ENTRY, Cmd: EXEC_CMD }, { args: [] })).toEqual([...EXEC_ENTRY, ...EXEC_CMD]));
  it("exec ENTRYPOINT + shell CMD", () =>
    expect(mergeCommand({ Entrypoint: EXEC_ENTRY, Cmd: SH_CMD }, { args: [] })).toEqual([...EXEC_ENTRY, ...SH_CMD]));
  it("run arguments replace CMD", () =>
    expect(mergeCommand({ Entrypoint: EXEC_ENTRY, Cmd: EXEC_CMD }, { args: ["a", "b"] })).toEqual([...EXEC_ENTRY, "a", "b"]));
  it("--entrypoint replaces ENTRYPOINT and drops CMD", () => {
    expect(mergeCommand({ Entrypoint: EXEC_ENTRY, Cmd: EXEC_CMD }, { entrypoint: "/bin/echo", args: [] })).toEqual(["/bin/echo"]);
    expect(mergeCommand({ Cmd: EXEC_CMD }, { entrypoint: "/bin/echo", args: ["x"] })).toEqual(["/bin/echo", "x"]);
  });
  it('--entrypoint "" clears ENTRYPOINT', () => {
    expect(mergeCommand({ Entrypoint: EXEC_ENTRY, Cmd: EXEC_CMD }, { entrypoint: "", args: ["ls"] })).toEqual(["ls"]);
    expect(() => mergeCommand({ Entrypoint: EXEC_ENTRY, Cmd: EXEC_CMD }, { entrypoint: "", args: [] })).toThrow(/no command/);
  });
});

describe("environment", () => {
  const extra = { hostname: "abc", tty: false, home: "/root" };
  it("defaults PATH, HOSTNAME and HOME, lets the image and -e override", () => {
    const env = mergeEnv(["PATH=/bin", "A=1"], ["A=2", "B=3"], extra, {});
    expect(env).toEqual(["PATH=/bin", "HOSTNAME=abc", "A=2", "B=3", "HOME=/root"]);
  });
  it("-e KEY takes the host's value, or nothing", () => {
    const env = mergeEnv([], ["FROMHOST", "MISSING"], extra, { FROMHOST: "yes" });
    expect(env).toContain("FROMHOST=yes");
    expect(env.some((e) => e.startsWith("MISSING"))).toBe(false);
  });
  it("TERM with a tty", () => expect(mergeEnv([], [], { ...extra, tty: true }, {})).toContain("TERM=xterm"));
  it("env files: comments, blanks, bad keys", () => {
    expect(parseEnvFile("# c\n\nA=1\nB\n  C=x y\n", "f")).toEqual(["A=1", "B", "C=x y"]);
    expect(() => parseEnvFile("BAD KEY=1\n", "f")).toThrow(/f:1/);
  });
});

describe("users", () => {
  const passwd = parsePasswd("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n");
  const groups = parseGroup("root:x:0:\nstaff:x:50:alice,bob\nalice:x:1000:\n");
  const limits = { maxUid: 65536, maxGid: 65536 };
  it("parses specs", () => {
    expect(parseUserSpec("alice")).toEqual({ user: "alice" });
    expect(parseUserSpec("1:2")).toEqual({ user: "1", group: "2" });
    expect(() => parseUserSpec("a:b:c")).toThrow();
    expect(() => parseUserSpec(":x")).toThrow();
  });
  it("names resolve through passwd with supplementary groups", () =>
    expect(resolveUser({ user: "alice" }, passwd, groups, limits)).toEqual({ uid: 1000, gid: 1000, groups: [1000, 50], home: "/home/alice" }));
  it("unknown uid is allowed with gid 0", () =>
    expect(resolveUser({ user: "4242" }, passwd, groups, limits)).toEqual({ uid: 4242, gid: 0, groups: [0], home: "/" }));
  it("explicit group by name or number", () => {
    expect(resolveUser({ user: "alice", group: "staff" }, passwd, groups, limits).gid).toBe(50);
    expect(resolveUser({ user: "0", group: "7" }, passwd, groups, limits).gid).toBe(7);
  });
  it("unknown names and unmapped ids are errors", () => {
    expect(() => resolveUser({ user: "nobody" }, passwd, groups, limits)).toThrow(/unable to find user nobody/);
    expect(() => resolveUser({ user: "alice", group: "nogroup" }, passwd, groups, limits)).toThrow(/unable to find group/);
    expect(() => resolveUser({ user: "70000" }, passwd, groups, limits)).toThrow(/not mapped/);
  });
});
