// Whether bytes are a tar archive, as Docker decides it for `ADD` of a local file and for a build
// context on standard input: a compressed stream counts as one (for the context), an
// uncompressed one when its first block is a tar header with a valid checksum.

/** Whether a 512-byte block is a tar header whose checksum is right. */
export function isTarHeader(block: Buffer): boolean {
  if (block.length < 512 || block[0] === 0) return false;
  const field = block.toString("latin1", 148, 156).replace(/\0.*$/s, "").trim();
  if (!/^[0-7]+$/.test(field)) return false;
  let sum = 0;
  // The checksum is computed with its own field read as eight spaces.
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] as number);
  return sum === parseInt(field, 8);
}
