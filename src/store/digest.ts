// Content digests and the ids derived from them (OCI image-spec "ChainID").
import { createHash } from "node:crypto";
import { readdirSync } from "node:fs";

export function sha256(data: string | Buffer): string {
  return "sha256:" + createHash("sha256").update(data).digest("hex");
}

/** The hex part of "sha256:<hex>", refusing anything else so it is safe as a file name. */
export function digestHex(digest: string): string {
  const m = /^sha256:([a-f0-9]{64})$/.exec(digest);
  if (!m || !m[1]) throw new Error(`unsupported or malformed digest "${digest}"`);
  return m[1];
}

export function isDigest(s: string): boolean {
  return /^sha256:[a-f0-9]{64}$/.test(s);
}

/** ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln)). */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : sha256(`${prev} ${d}`));
  }
  return out;
}

/** Entries of dir named by a digest's hex (blobs, layer dirs), as digests; temporaries and foreign names left out. */
export function digestNamedEntries(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((n) => /^[a-f0-9]{64}$/.test(n))
      .map((n) => `sha256:${n}`);
  } catch {
    return [];
  }
}
