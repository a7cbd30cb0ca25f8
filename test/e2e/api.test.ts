// The library API: a Node program imports tsrun's typed API (dist/index.js) and runs containers
// without the CLI, as the unprivileged test user.
import { describe, expect, it } from "vitest";
import { writeFileSync, chmodSync } from "node:fs";
import path from "node:path";
import { env, importBusybox, scratchDir, shAsUser } from "./helpers.js";

describe("library API", () => {
  it("imports an image, lists it, runs a container to its exit status (leaving no child process, no zombie) and runs one detached", async () => {
    await importBusybox("busybox");
    const dir = scratchDir("api");
    const api = path.join(path.dirname(path.dirname(env.cli)), "dist", "index.js");
    const program = path.join(dir, "program.mjs");
    writeFileSync(
      program,
      `import { readdirSync, readFileSync } from "node:fs";
import { Tsrun, normaliseName, waitContainer, readLogs, removeContainer } from ${JSON.stringify(api)};
// This process's children, zombies included: a run's helpers (its slirp4netns) must be gone and reaped.
const children = () => readdirSync("/proc").filter((p) => /^\\d+$/.test(p)).filter((p) => {
  try {
    const stat = readFileSync("/proc/" + p + "/stat", "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1] === String(process.pid);
  } catch {
    return false;
  }
}).length;
const t = new Tsrun();
await t.importImage({ source: ${JSON.stringify(env.busyboxTar)}, reference: "api-box" });
const listed = t.listImages().filter((i) => i.repository === normaliseName("api-box").split(":")[0]).length;
const status = await t.run({ image: "api-box", args: ["sh", "-c", "exit 7"], autoRemove: true });
let childrenLeft = children();
for (let i = 0; i < 40 && childrenLeft > 0; i++) {
  await new Promise((r) => setTimeout(r, 50));
  childrenLeft = children();
}
const detached = await t.runDetached({ image: "api-box", args: ["sh", "-c", "echo from-detached"] });
const exitCode = await waitContainer(t.containers, detached.id);
const lines = [];
await readLogs(t.containers, detached.id, { onRecord: (r) => lines.push(r.stream + ":" + r.log) });
await removeContainer(t.containers, detached.id, false);
const left = t.containers.records.list().filter((c) => c.id === detached.id).length;
console.log(JSON.stringify({ listed, status, childrenLeft, id: detached.id, state: detached.state.status, exitCode, lines, left }));
`,
    );
    chmodSync(program, 0o644);
    const r = await shAsUser(`node ${program}`);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").pop() as string) as {
      listed: number;
      status: number;
      childrenLeft: number;
      id: string;
      state: string;
      exitCode: number;
      lines: string[];
      left: number;
    };
    expect(out.listed).toBe(1);
    expect(out.status).toBe(7);
    expect(out.childrenLeft).toBe(0);
    expect(out.id).toMatch(/^[0-9a-f]{64}$/);
    expect(out.state).toBe("running");
    expect(out.exitCode).toBe(0);
    expect(out.lines).toEqual(["stdout:from-detached\n"]);
    expect(out.left).toBe(0);
  });
});
