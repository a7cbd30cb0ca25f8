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
