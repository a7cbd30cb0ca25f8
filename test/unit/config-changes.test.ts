// Config instructions shared by Dockerfiles and `--change` lines (import, commit), and Docker's
// signal names: what Docker accepts changes the config, and what it refuses (BuildKit's argument
// counts, instructions that are no config, signals that are none) is one line naming it.
import { describe, expect, it } from "vitest";
import { applyChanges } from "../../src/image/config-changes.js";
import { signalNumber } from "../../src/format/signal.js";

describe("signal names (Docker's ParseSignal)", () => {
  it("names with and without SIG, any case, and numbers", () => {
    expect(signalNumber("SIGTERM")).toBe(15);
    expect(signalNumber("quit")).toBe(3);
    expect(signalNumber("9")).toBe(9);
  });
  it("the real-time signals systemd images stop with", () => {
    expect(signalNumber("SIGRTMIN+3")).toBe(37);
    expect(signalNumber("RTMIN")).toBe(34);
    expect(signalNumber("SIGRTMAX-1")).toBe(63);
    expect(signalNumber("SIGRTMAX")).toBe(64);
  });
  it("anything else is refused", () => {
    for (const bad of ["SIGFOO", "", "0", "65", "RTMIN+16", "RTMAX+1", "SIGRTMIN-1"]) expect(() => signalNumber(bad), bad).toThrow(/invalid signal/);
  });
});

describe("config instructions", () => {
  it("STOPSIGNAL keeps what was written once it is a signal", () => {
    expect(applyChanges({}, ["STOPSIGNAL SIGRTMIN+3"]).StopSignal).toBe("SIGRTMIN+3");
    expect(() => applyChanges({}, ["STOPSIGNAL SIGFOO"])).toThrow(/invalid signal: SIGFOO/);
    expect(() => applyChanges({}, ["STOPSIGNAL $UNSET"])).toThrow(/invalid signal/);
  });
  it("EXPOSE expands ranges as Docker does and refuses impossible ones", () => {
    expect(Object.keys(applyChanges({}, ["EXPOSE 80/udp 8000-8002 53/UDP"]).ExposedPorts ?? {})).toEqual(["80/udp", "8000/tcp", "8001/tcp", "8002/tcp", "53/udp"]);
    expect(() => applyChanges({}, ["EXPOSE 70000"])).toThrow(/up to 65535/);
    expect(() => applyChanges({}, ["EXPOSE 9000-8000"])).toThrow(/range/);
  });
});

describe("applyChanges", () => {
  it("sets what the instructions say, in order", () => {
    const config = applyChanges({ Env: ["PATH=/bin"] }, ["ENV A=1", "USER 1000:1000", "LABEL a=b c=$A", "STOPSIGNAL SIGINT", "WORKDIR app", 'CMD ["cat", "/f"]', "EXPOSE 80/udp"]);
    expect(config).toEqual({
      Env: ["PATH=/bin", "A=1"],
      User: "1000:1000",
      Labels: { a: "b", c: "1" },
      StopSignal: "SIGINT",
      WorkingDir: "/app",
      Cmd: ["cat", "/f"],
      ExposedPorts: { "80/udp": {} },
    });
  });

  it.each([
    ["USER", /invalid change "USER": USER requires exactly one argument/],
    ["LABEL", /invalid change "LABEL": LABEL requires at least one argument/],
    ["STOPSIGNAL", /invalid change "STOPSIGNAL": STOPSIGNAL requires exactly one argument/],
    ["ENV", /ENV requires at least one argument/],
    // BuildKit's parser refuses these too.
    ["VOLUME", /invalid change "VOLUME": VOLUME requires at least one argument/],
    ["EXPOSE", /EXPOSE requires at least one argument/],
    ["HEALTHCHECK --interval=5s CMD", /Missing command after HEALTHCHECK CMD/],
    ["HEALTHCHECK CMD []", /Missing command after HEALTHCHECK CMD/],
    ["FROM busybox", /from is not a valid change command/],
    ["RUN true", /run is not a valid change command/],
  ])("refuses %s", (change, message) => {
    expect(() => applyChanges({}, [change])).toThrow(message);
  });
});
