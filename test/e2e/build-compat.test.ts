// `tsrun build` with Dockerfiles written the way other projects write them: the cases where it
// differed from Docker (BuildKit) and were fixed, each with the Dockerfile that showed it.
import { beforeAll, describe, expect, it } from "vitest";
import { filesDir, importBusybox, tsrun, unique } from "./helpers.js";

const context = (files: Record<string, string | [string, number]>): string => filesDir(files, "build-compat");

async function ok(args: string[], timeout = 120_000): Promise<string> {
  const r = await tsrun(args, { timeout });
  if (r.code !== 0) throw new Error(`tsrun ${args.join(" ")} exited ${r.code}: ${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

beforeAll(async () => {
  await importBusybox("busybox");
});

describe("STOPSIGNAL", () => {
  it("systemd's SIGRTMIN+3 builds and stops the container with signal 37; a name that is no signal is refused", async () => {
    const name = unique("rtmin");
    // The container's shell exits 37 when the signal arrives: stop sent SIGRTMIN+3, not SIGKILL.
    await ok(["build", "-q", "-t", name, context({ Dockerfile: "FROM busybox\nSTOPSIGNAL SIGRTMIN+3\nCMD [\"sh\", \"-c\", \"trap 'exit 37' 37; while true; do sleep 0.1; done\"]\n" })]);
    expect((await ok(["inspect", "-f", "{{.Config.StopSignal}}", name])).trim()).toBe("SIGRTMIN+3");
    const id = (await ok(["run", "-d", name])).trim();
    await ok(["stop", "-t", "30", id]);
    expect((await ok(["inspect", "-f", "{{.State.ExitCode}}", id])).trim()).toBe("37");
    await ok(["rm", id]);
    const bad = await tsrun(["build", "-t", unique("never"), context({ Dockerfile: "FROM busybox\nSTOPSIGNAL SIGFOO\n" })]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe("Error: Dockerfile:2: invalid signal: SIGFOO\n");
  });
});
