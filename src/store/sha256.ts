// SHA-256 (FIPS 180-4) for small inputs, through a WebAssembly module (src/store/sha256.wat).
// Image configs and manifests are verified on every read and hashed on every write: a commit
// hashes eight of them, `images` one per image. Loading node:crypto for that costs 6-9 ms of a
// short command here; the TypeScript SHA-256 this replaces ran in V8's interpreter, 1-2 ms for
// each config of a few KB (14 ms of a 1-file commit). The module compiles in ~1 ms once, then
// hashes a few KB in microseconds. Large data still goes through node:crypto (digest.ts picks).
// Checked against node:crypto in test/unit/sha256.test.ts.
import { lazyCrypto } from "../builtin.js";
import { SHA256_WASM_BASE64 } from "./sha256-wasm.js";

interface Sha256Module {
  memory: WebAssembly.Memory;
  /** Sets the state to the initial hash value. */
  reset(): void;
  /** Compresses count 64-byte blocks starting at byte offset. */
  blocks(offset: number, count: number): void;
}

/** Where the module keeps the state H0-H7 (little-endian words) and where the message goes. */
const STATE_OFFSET = 512;
const MESSAGE_OFFSET = 1024;
const PAGE = 65536;

let compiled: Sha256Module | null | undefined;

/** The module, compiled on first use; null where WebAssembly is off (node --jitless). */
function wasmModule(): Sha256Module | null {
  if (compiled !== undefined) return compiled;
  if (typeof WebAssembly === "undefined") return (compiled = null);
  const bytes = Buffer.from(SHA256_WASM_BASE64, "base64");
  compiled = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as unknown as Sha256Module;
  return compiled;
}

/** The SHA-256 digest of data, as lowercase hex. */
export function sha256Hex(data: Uint8Array): string {
  const wasm = wasmModule();
  if (!wasm) return lazyCrypto().createHash("sha256").update(data).digest("hex");
  // Message + 0x80 + zero padding + 64-bit big-endian bit length, to a multiple of 64 bytes.
  const padded = Math.ceil((data.length + 9) / 64) * 64;
  const needed = MESSAGE_OFFSET + padded;
  const have = wasm.memory.buffer.byteLength;
  if (needed > have) wasm.memory.grow(Math.ceil((needed - have) / PAGE));
  // Views after any grow: growing detaches the old buffer.
  const bytes = new Uint8Array(wasm.memory.buffer);
  const view = new DataView(wasm.memory.buffer);
  bytes.set(data, MESSAGE_OFFSET);
  bytes.fill(0, MESSAGE_OFFSET + data.length, needed);
  bytes[MESSAGE_OFFSET + data.length] = 0x80;
  const bits = data.length * 8;
  view.setUint32(needed - 8, Math.floor(bits / 0x100000000));
  view.setUint32(needed - 4, bits >>> 0);
  wasm.reset();
  wasm.blocks(MESSAGE_OFFSET, padded / 64);
  let hex = "";
  for (let i = 0; i < 8; i++) hex += view.getUint32(STATE_OFFSET + i * 4, true).toString(16).padStart(8, "0");
  return hex;
}
