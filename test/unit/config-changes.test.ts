// `--change` lines for import and commit: what Docker accepts changes the config, and what it
// refuses (BuildKit's argument counts, instructions that are no config) is one line naming it.
import { describe, expect, it } from "vitest";
import { applyChanges } from "../../src/image/config-changes.js";

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
    ["FROM busybox", /from is not a valid change command/],
    ["RUN true", /run is not a valid change command/],
  ])("refuses %s", (change, message) => {
    expect(() => applyChanges({}, [change])).toThrow(message);
  });
});
