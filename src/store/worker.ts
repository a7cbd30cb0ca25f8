// Storage helper: runs inside the user namespace (root over the subordinate ids), started by
// Store.unpack. Node cannot enter a user namespace itself, so this is a separate process.
import { createReadStream, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { unpackLayer } from "./unpack.js";
import type { UnpackJob, UnpackJobResult } from "./store.js";

interface JobFile {
  jobs: UnpackJob[];
  resultFile: string;
  maxUid: number;
  maxGid: number;
}

async function unpackAll(jobFile: string): Promise<void> {
  const spec = JSON.parse(readFileSync(jobFile, "utf8")) as JobFile;
  const results: UnpackJobResult[] = [];
  for (const job of spec.jobs) {
    const warnings: string[] = [];
    const r = await unpackLayer(createReadStream(job.blob), path.join(job.dest, "diff"), {
      maxUid: spec.maxUid,
      maxGid: spec.maxGid,
      onWarning: (m: string) => warnings.push(m),
    });
    results.push({ ...r, warnings });
  }
  writeFileSync(spec.resultFile, JSON.stringify(results));
}

async function main(): Promise<void> {
  const [command, arg] = process.argv.slice(2);
  if (command === "unpack" && arg) await unpackAll(arg);
  else throw new Error(`unknown worker command ${command ?? ""}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
});
