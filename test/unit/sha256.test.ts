// The WebAssembly SHA-256 used for small blobs must agree with node:crypto byte for byte, and the
// module embedded in src/store/sha256-wasm.ts must be what src/store/sha256.wat assembles to.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../src/store/sha256.js";
import { sha256, Sha256Stream } from "../../src/store/digest.js";
import { SHA256_WASM_BASE64 } from "../../src/store/sha256-wasm.js";

const reference = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

describe("sha256", () => {
  it("matches the FIPS 180-4 examples", () => {
    expect(sha256Hex(Buffer.from(""))).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(sha256Hex(Buffer.from("abc"))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(sha256Hex(Buffer.from("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))).toBe("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  });

  it("agrees with node:crypto on every length around the block and padding boundaries, and on random data", () => {
    for (let n = 0; n <= 200; n++) {
      const b = randomBytes(n);
      expect(sha256Hex(b)).toBe(reference(b));
    }
    for (const n of [1000, 4095, 4096, 65535, 65536, 65537, 300000]) {
      const b = randomBytes(n);
      expect(sha256(b)).toBe(`sha256:${reference(b)}`);
    }
    expect(sha256("{\"a\":\"é\"}")).toBe(`sha256:${reference(Buffer.from("{\"a\":\"é\"}"))}`);
  });

  it("Sha256Stream agrees with node:crypto below and across the switch to node:crypto, and keeps pieces the writer reuses", () => {
    for (const sizes of [[], [0], [10, 20], [512, 512, 1024], [60000, 6000], [65536, 1], [200000, 3, 70000]]) {
      const whole = randomBytes(sizes.reduce((a, b) => a + b, 0));
      const stream = new Sha256Stream();
      const scratch = Buffer.alloc(Math.max(1, ...sizes));
      let at = 0;
      for (const n of sizes) {
        // The same buffer every time, overwritten after the call, as a writer reusing its block.
        whole.copy(scratch, 0, at, at + n);
        stream.update(scratch.subarray(0, n));
        scratch.fill(0xff);
        at += n;
      }
      expect(stream.digest(), sizes.join(",")).toBe(`sha256:${reference(whole)}`);
    }
  });

  it("grows the module's memory for a long message and hashes short ones correctly afterwards", () => {
    for (const n of [300000, 5, 1 << 20, 64]) {
      const b = randomBytes(n);
      expect(sha256Hex(b), String(n)).toBe(reference(b));
    }
  });

  it("embeds exactly the module src/store/sha256.wat assembles to (scripts/sha256-wasm.sh)", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "tsrun-wat-"));
    try {
      const out = path.join(dir, "sha256.wasm");
      // wat2wasm is Debian's wabt, which .ci/run and scripts/quickstart.sh install.
      execFileSync("wat2wasm", [fileURLToPath(new URL("../../src/store/sha256.wat", import.meta.url)), "-o", out]);
      expect(Buffer.from(SHA256_WASM_BASE64, "base64").equals(readFileSync(out))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
