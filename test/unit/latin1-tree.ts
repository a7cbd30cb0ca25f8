// A directory tree whose names are not all valid UTF-8, as an old Latin-1 system leaves them:
// the tar tests pack it with every tool and expect it back byte for byte.
import { chmodSync, linkSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";

/** A path as bytes: the text's characters U+0000-U+00FF are the bytes (Latin-1). */
export const latin1 = (text: string): Buffer => Buffer.from(text, "latin1");

/** Makes the tree in dir (created): Latin-1 files, a directory, links to and named by such names, long ones. */
export function makeLatin1Tree(dir: string): void {
  const p = (rel: string): Buffer => Buffer.concat([Buffer.from(`${dir}/`), latin1(rel)]);
  mkdirSync(dir, { recursive: true });
  writeFileSync(p("caf\xe9"), "e-acute");
  writeFileSync(p("caf\xe8"), "e-grave"); // both would read as "caf\ufffd"
  mkdirSync(p("d\xe9"), { mode: 0o750 });
  writeFileSync(p("d\xe9/inner"), "inner");
  symlinkSync(latin1("caf\xe9"), p("link"));
  symlinkSync(latin1("d\xe9/inner"), p("l\xe9"));
  linkSync(p("caf\xe9"), p("hard\xe9"));
  // Beyond 100 bytes: a GNU long name, a PAX path or a ustar prefix, each with raw bytes.
  mkdirSync(p("\xe9".repeat(150)));
  writeFileSync(p(`${"\xe9".repeat(150)}/${"\xe8".repeat(200)}`), "long");
  writeFileSync(path.join(dir, "valid-\ufffd-\u00fc"), "valid UTF-8, with a real U+FFFD");
  writeFileSync(p("mixed-\xc3\xbc-\xfc"), "UTF-8 and Latin-1 in one name");
  chmodSync(dir, 0o755);
}
