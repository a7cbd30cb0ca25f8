// COPY/ADD --chmod: an octal mode, or a symbolic one as chmod(1) writes it (`u+x`, `go-w`,
// `u=rwx,go=rx`, `+X`, `g=u-w`), which BuildKit accepts since Dockerfile 1.14. The symbolic form is
// BSD's setmode(3) as BuildKit runs it (github.com/tonistiigi/dchapes-mode, a Go port of
// setmode.c): a list of bit commands applied to each copied file's own mode, where `X` looks at
// the mode the file had and whether it is a directory, and a clause without u/g/o is masked by
// the builder's umask (0022, buildkitd's).

/** One step of a symbolic mode (setmode.c's bitcmd). */
export interface BitCommand {
  /** "+" set bits, "-" clear bits, "X" set bits if executable or a directory, "u"/"g"/"o" copy a class's bits. */
  cmd: "+" | "-" | "X" | "u" | "g" | "o";
  bits: number;
  /** For u/g/o: which classes receive the copy, and whether it clears and/or sets. */
  copy?: { user: boolean; group: boolean; other: boolean; clear: boolean; set: boolean };
}

/** A parsed --chmod: the mode itself, or the commands of a symbolic one. */
export type ModeChange = { octal: number } | { symbolic: string; commands: BitCommand[] };

export class ChmodSyntaxError extends Error {}

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISTXT = 0o1000;
const RWXU = 0o700;
const RWXG = 0o070;
const RWXO = 0o007;
const STANDARD_BITS = S_ISUID | S_ISGID | RWXU | RWXG | RWXO;
const ALL_READ = 0o444;
const ALL_WRITE = 0o222;
const ALL_EXEC = 0o111;
/** buildkitd's file creation mask: what a clause without u, g, o or a leaves alone. */
const BUILDER_UMASK = 0o022;

/**
 * Parses a --chmod value as BuildKit does: digits are an octal mode (at most 07777), anything
 * else a symbolic mode. Throws ChmodSyntaxError with BuildKit's message.
 */
export function parseChmod(value: string, umask = BUILDER_UMASK): ModeChange {
  const nonOctal = new ChmodSyntaxError(`invalid chmod parameter: '${value}'. it should be octal string and between 0 and 07777`);
  if (/^[0-7]+$/.test(value)) {
    const mode = parseInt(value, 8);
    if (mode > 0o7777) throw nonOctal;
    return { octal: mode };
  }
  // What looks numeric but is no octal number gets the same message (BuildKit's compatibility rule).
  if (/^[0-9]/.test(value)) throw nonOctal;
  return { symbolic: value, commands: parseSymbolic(value, umask) };
}

function parseSymbolic(text: string, umask: number): BitCommand[] {
  const commands: BitCommand[] = [];
  const mask = ~umask & 0o7777;
  const add = (op: string, who: number, oparg: number): void => {
    if (op === "=") {
      commands.push({ cmd: "-", bits: who !== 0 ? who : STANDARD_BITS });
      op = "+";
    }
    if (op === "+" || op === "-" || op === "X") {
      commands.push({ cmd: op, bits: who !== 0 ? who & oparg : mask & oparg });
      return;
    }
    // u, g, o: copy that class's bits into the classes of `who` (all of them, masked, when none).
    const opChar = String.fromCharCode(oparg);
    commands.push({
      cmd: op as "u" | "g" | "o",
      bits: who !== 0 ? 0xffff : mask,
      copy: {
        user: who === 0 || (who & 0o400) !== 0,
        group: who === 0 || (who & 0o040) !== 0,
        other: who === 0 || (who & 0o004) !== 0,
        clear: opChar === "-" || opChar === "=",
        set: opChar === "+" || opChar === "=",
      },
    });
  };

  let s = text;
  let equalOpDone = false;
  for (;;) {
    let who = 0;
    for (; s.length > 0; s = s.slice(1)) {
      const c = s[0];
      if (c === "a") who |= STANDARD_BITS;
      else if (c === "u") who |= S_ISUID | RWXU;
      else if (c === "g") who |= S_ISGID | RWXG;
      else if (c === "o") who |= RWXO;
      else break;
    }
    // One or more operations for this `who` (`u+r-w`), then a comma or the end.
    for (;;) {
      const op = s[0];
      if (op !== "+" && op !== "-" && op !== "=") throw new ChmodSyntaxError(`invalid chmod parameter: '${text}': invalid syntax`);
      s = s.slice(1);
      if (op === "=") equalOpDone = false;
      who &= ~S_ISTXT;
      let perm = 0;
      let permX = 0;
      for (;; s = s.slice(1)) {
        const b = s[0] ?? "";
        if (b === "r") perm |= ALL_READ;
        else if (b === "s") {
          // Set-id bits mean nothing for "other" alone.
          if (who === 0 || (who & ~RWXO) !== 0) perm |= S_ISUID | S_ISGID;
        } else if (b === "t") {
          if (who === 0 || (who & ~RWXO) !== 0) {
            who |= S_ISTXT;
            perm |= S_ISTXT;
          }
        } else if (b === "w") perm |= ALL_WRITE;
        else if (b === "X") {
          if (op === "+") permX = ALL_EXEC;
        } else if (b === "x") perm |= ALL_EXEC;
        else if (b === "u" || b === "g" || b === "o") {
          if (perm !== 0) {
            add(op, who, perm);
            perm = 0;
          }
          if (op === "=") equalOpDone = true;
          if (permX !== 0) {
            add("X", who, permX);
            permX = 0;
          }
          add(b, who, op.charCodeAt(0));
        } else {
          if (perm !== 0 || (op === "=" && !equalOpDone)) {
            if (op === "=") equalOpDone = true;
            add(op, who, perm);
            perm = 0;
          }
          if (permX !== 0) add("X", who, permX);
          break;
        }
      }
      if (s === "" || s[0] === ",") break;
    }
    if (s === "") return commands;
    s = s.slice(1);
    if (s === "") throw new ChmodSyntaxError(`invalid chmod parameter: '${text}': invalid syntax`);
  }
}

/** The mode (permission bits, 07777) a file or directory gets from a --chmod. */
export function applyChmod(change: ModeChange, mode: number, isDirectory: boolean): number {
  if ("octal" in change) return change.octal;
  const original = mode & 0o7777;
  let next = original;
  for (const c of change.commands) {
    if (c.cmd === "+") next |= c.bits;
    else if (c.cmd === "-") next &= ~c.bits;
    else if (c.cmd === "X") {
      if ((original & ALL_EXEC) !== 0 || isDirectory) next |= c.bits;
    } else if (c.copy) {
      const shift = c.cmd === "u" ? 6 : c.cmd === "g" ? 3 : 0;
      const value = (next >> shift) & 0o7;
      const clearValue = c.copy.set ? 0o7 : value;
      if (c.copy.clear) {
        if (c.copy.user) next &= ~((clearValue << 6) & c.bits);
        if (c.copy.group) next &= ~((clearValue << 3) & c.bits);
        if (c.copy.other) next &= ~(clearValue & c.bits);
      }
      if (c.copy.set) {
        if (c.copy.user) next |= (value << 6) & c.bits;
        if (c.copy.group) next |= (value << 3) & c.bits;
        if (c.copy.other) next |= value & c.bits;
      }
    }
  }
  return next & 0o7777;
}
