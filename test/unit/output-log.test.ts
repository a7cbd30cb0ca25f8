// The json-file log a foreground run writes: records as Docker's json-file driver has them,
// whichever way a chunk is encoded (at once when only its newlines need escaping, line by line
// otherwise), and the copy of a pipe into it.
import { describe, expect, it } from "vitest";
import { closeSync, mkdtempSync, readFileSync, readSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { JsonFileLog, copyOutput } from "../../src/container/output-log.js";
import { native } from "../../src/native.js";

function records(file: string): { log: string; stream: string; time: string }[] {
  return readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { log: string; stream: string; time: string });
}

describe("JsonFileLog", () => {
  it("writes one record a line, the same whether a chunk needs escaping or not", () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), "tsrun-log-")), "ctr.log");
    const log = new JsonFileLog(file);
    const chunks = ["plain one\nplain two\n", 'a "quote" and a \\ and a\ttab\n', "ünïcödé ✓\nhalf", " a line\n", "no newline at the end"];
    for (const c of chunks) log.write("stdout", Buffer.from(c));
    log.write("stderr", Buffer.from("to stderr\n"));
    log.close();
    const got = records(file);
    expect(got.map((r) => [r.stream, r.log])).toEqual([
      ["stdout", "plain one\n"],
      ["stdout", "plain two\n"],
      ["stdout", 'a "quote" and a \\ and a\ttab\n'],
      ["stdout", "ünïcödé ✓\n"],
      ["stdout", "half a line\n"],
      ["stderr", "to stderr\n"],
      ["stdout", "no newline at the end"],
    ]);
    for (const r of got) expect(r.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    // Byte for byte what JSON.stringify gives, as the records of the line-by-line way.
    const raw = readFileSync(file, "utf8").split("\n")[0] as string;
    expect(raw).toBe(`{"log":${JSON.stringify("plain one\n")},"stream":"stdout","time":"${got[0]?.time}"}`);
  });

  it("copyOutput copies a pipe to an fd and the log, and stop() ends it while a writer keeps the pipe open", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "tsrun-log-"));
    const log = new JsonFileLog(path.join(dir, "ctr.log"));
    const [source, sink] = native().pipe();
    const [shown, shownWrite] = native().pipe();
    const copy = copyOutput(source, shownWrite, "stdout", log);
    writeSync(sink, "one\ntwo\n");
    await new Promise((r) => setTimeout(r, 200));
    // The writer is still open (a process that escaped the container): stop() must not hang.
    copy.stop();
    await copy.ended;
    closeSync(sink);
    closeSync(shownWrite);
    log.close();
    const buf = Buffer.alloc(64);
    expect(buf.toString("utf8", 0, readSync(shown, buf))).toBe("one\ntwo\n");
    closeSync(shown);
    expect(records(path.join(dir, "ctr.log")).map((r) => r.log)).toEqual(["one\n", "two\n"]);
  });
});
