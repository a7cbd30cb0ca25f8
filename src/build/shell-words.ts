// Shell-style word expansion for Dockerfile arguments, ported from BuildKit's lexer
// (moby/buildkit frontend/dockerfile/shell/lex.go). BuildKit does not run a real shell for
// ENV, COPY, WORKDIR and friends: it expands `$VAR`, `${VAR}`, the `${VAR:-word}` family and the
// `${VAR#pattern}` / `${VAR/pattern/replacement}` family itself, strips quotes and escapes, and
// optionally splits the result into words. Images built by tsrun must see exactly the same
// strings, so this module follows lex.go step by step, including its quirks (for example `$1`
// expands to "" and a lone `$` stays literal), rather than POSIX sh.

/** The escape character of a Dockerfile: `\` by default, `` ` `` after `# escape=``. */
export type EscapeChar = "\\" | "`";

/**
 * Variables visible to an expansion. A list holds "KEY=value" entries (a later entry wins and an
 * entry without "=" defines an empty variable), as BuildKit's EnvsFromSlice.
 */
export type ShellEnv = ReadonlyMap<string, string> | Readonly<Record<string, string>> | readonly string[];

export interface ShellLexOptions {
  /** Keep quote characters in the output (used by the Dockerfile parser to spot quoted heredoc names). */
  rawQuotes?: boolean;
  /** Keep escape characters in the output instead of consuming them. */
  rawEscapes?: boolean;
  /** Treat `'` and `"` as ordinary characters. */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as written (`$X`, `${X:-y}`) instead of expanding them. */
  skipUnsetEnv?: boolean;
  /** Compare variable names case-insensitively, as BuildKit does when the target platform is Windows. */
  caseInsensitiveEnvKeys?: boolean;
}

export interface ExpansionResult {
  /** The expanded word, spaces between words kept. */
  result: string;
  /** The expanded word split into words; quoted and escaped whitespace does not split. */
  words: string[];
  /** Variables the word referred to that were set. */
  matched: Set<string>;
  /** Variables the word referred to that were not set. */
  unmatched: Set<string>;
}

/** A word that cannot be expanded: bad `${...}` syntax, an unterminated quote, `${X?}` on an unset X, ... */
export class ShellExpansionError extends Error {
  constructor(
    /** The word as given. */
    readonly source: string,
    /** What went wrong, in BuildKit's words (e.g. "syntax error: bad substitution"). */
    readonly reason: string,
  ) {
    // BuildKit wraps lexer errors as `failed to process "<word>": <reason>`.
    super(`failed to process ${JSON.stringify(source)}: ${reason}`);
    this.name = "ShellExpansionError";
  }
}

/**
 * Go's unicode.IsSpace. BuildKit splits words with it, and it differs from JavaScript's `\s`
 * (Go counts U+0085 as space but not U+FEFF), so it is spelt out here.
 */
export function isUnicodeSpace(codePoint: number): boolean {
  switch (codePoint) {
    case 0x09: case 0x0a: case 0x0b: case 0x0c: case 0x0d: case 0x20:
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000:
      return true;
    default:
      return codePoint >= 0x2000 && codePoint <= 0x200a;
  }
}

/** Expands variables in `word` and removes quotes and escapes, as BuildKit's ProcessWord. */
export function expandWord(word: string, env: ShellEnv, escapeChar: EscapeChar = "\\"): string {
  return new ShellLex(escapeChar).processWord(word, env);
}

/** Expands `word` like expandWord, then splits it into words, as BuildKit's ProcessWords. */
export function expandWords(word: string, env: ShellEnv, escapeChar: EscapeChar = "\\"): string[] {
  return new ShellLex(escapeChar).processWords(word, env);
}

/** BuildKit's shell.Lex: an escape character plus processing switches, reusable for many words. */
export class ShellLex {
  constructor(
    readonly escapeChar: EscapeChar = "\\",
    readonly options: Readonly<ShellLexOptions> = {},
  ) {}

  processWord(word: string, env: ShellEnv): string {
    return this.process(word, env).result;
  }

  processWords(word: string, env: ShellEnv): string[] {
    return this.process(word, env).words;
  }

  /** Expands `word` and reports both renderings plus which variables were looked up. */
  process(word: string, env: ShellEnv): ExpansionResult {
    const variables = new VariableLookup(env, this.options.caseInsensitiveEnvKeys ?? false);
    const expander = new WordExpander(word, this.escapeChar.codePointAt(0) ?? BACKSLASH, this.options, variables);
    try {
      const { result, words } = expander.expandAll();
      return { result, words, matched: variables.matched, unmatched: variables.unmatched };
    } catch (err) {
      if (err instanceof LexFailure) throw new ShellExpansionError(word, err.message);
      throw err;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Internals

/** Raised deep inside the expander; ShellLex.process wraps it with the word being processed. */
class LexFailure extends Error {}

/** End of input, like text/scanner.EOF. */
const EOF = -1;
const BACKSLASH = 0x5c;
const DOLLAR = 0x24;
const SINGLE_QUOTE = 0x27;
const DOUBLE_QUOTE = 0x22;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const COLON = 0x3a;
const SLASH = 0x2f;
const BYTE_ORDER_MARK = 0xfeff;

const LETTER = /^\p{L}$/u;
const DECIMAL_DIGIT = /^\p{Nd}$/u;

/** Go's string(rune): EOF (-1) is not a valid rune and renders as U+FFFD. */
function runeToString(codePoint: number): string {
  return codePoint < 0 ? "\ufffd" : String.fromCodePoint(codePoint);
}

function isLetter(codePoint: number): boolean {
  return codePoint >= 0 && LETTER.test(String.fromCodePoint(codePoint));
}

function isDigit(codePoint: number): boolean {
  return codePoint >= 0 && DECIMAL_DIGIT.test(String.fromCodePoint(codePoint));
}

/** The special parameters of POSIX sh ($@, $*, $#, ...); BuildKit reads them as one-character names. */
function isSpecialParameter(codePoint: number): boolean {
  return "@*#?-$!0".includes(runeToString(codePoint));
}

/** Reads a word one Unicode code point at a time, like Go's text/scanner Next/Peek. */
class RuneScanner {
  private readonly runes: number[];
  private position = 0;

  constructor(text: string) {
    this.runes = Array.from(text, (ch) => ch.codePointAt(0) ?? 0);
    // text/scanner silently drops a byte order mark at the very start of its input.
    if (this.runes[0] === BYTE_ORDER_MARK) this.position = 1;
  }

  peek(): number {
    return this.position < this.runes.length ? (this.runes[this.position] ?? EOF) : EOF;
  }

  next(): number {
    const ch = this.peek();
    if (ch !== EOF) this.position++;
    return ch;
  }
}

/** Variable values with BuildKit's lookup rules, recording which names were found and which not. */
class VariableLookup {
  private readonly values = new Map<string, string>();
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();

  constructor(
    env: ShellEnv,
    private readonly caseInsensitive: boolean,
  ) {
    if (isEnvList(env)) {
      for (const entry of env) {
        const equals = entry.indexOf("=");
        if (equals < 0) this.values.set(this.normalize(entry), "");
        else this.values.set(this.normalize(entry.slice(0, equals)), entry.slice(equals + 1));
      }
    } else if (env instanceof Map) {
      for (const [key, value] of env) this.values.set(this.normalize(key), value);
    } else {
      for (const [key, value] of Object.entries(env)) this.values.set(this.normalize(key), value);
    }
  }

  /** The value of `name`, or undefined when the variable is not set (set-but-empty is ""). */
  get(name: string): string | undefined {
    const value = this.values.get(this.normalize(name));
    if (value === undefined) this.unmatched.add(name);
    else this.matched.add(name);
    return value;
  }

  private normalize(key: string): string {
    return this.caseInsensitive ? key.toUpperCase() : key;
  }
}

function isEnvList(env: ShellEnv): env is readonly string[] {
  return Array.isArray(env);
}

/**
 * Collects the words of an expansion. Characters from variable values split on whitespace;
 * characters that were quoted or escaped ("raw") never do.
 */
class WordCollector {
  private current = "";
  private inWord = false;
  private readonly words: string[] = [];

  addChar(codePoint: number): void {
    const space = isUnicodeSpace(codePoint);
    if (space && this.inWord) {
      // An empty current word (e.g. after `""`) does not end the word: BuildKit keeps inWord set.
      if (this.current.length !== 0) {
        this.words.push(this.current);
        this.current = "";
        this.inWord = false;
      }
    } else if (!space) {
      this.addRawChar(codePoint);
    }
  }

  addRawChar(codePoint: number): void {
    this.current += runeToString(codePoint);
    this.inWord = true;
  }

  addString(text: string): void {
    for (const ch of text) this.addChar(ch.codePointAt(0) ?? 0);
  }

  addRawString(text: string): void {
    this.current += text;
    this.inWord = true;
  }

  finish(): string[] {
    if (this.current.length > 0) {
      this.words.push(this.current);
      this.current = "";
      this.inWord = false;
    }
    return this.words;
  }
}

interface Expansion {
  result: string;
  words: string[];
}

/** One run of the lexer over one word (BuildKit's shellWord). */
class WordExpander {
  private readonly scanner: RuneScanner;
  private rawEscapes: boolean;

  constructor(
    word: string,
    private readonly escape: number,
    private readonly options: Readonly<ShellLexOptions>,
    private readonly variables: VariableLookup,
  ) {
    this.scanner = new RuneScanner(word);
    this.rawEscapes = options.rawEscapes ?? false;
  }

  expandAll(): Expansion {
    return this.processUntil(EOF, this.rawEscapes);
  }

  /**
   * Processes input up to `stopChar` (consumed) or the end of input when stopChar is EOF.
   * `rawEscapes` applies while this call runs: the pattern forms need their escapes kept so the
   * pattern compiler can tell `\*` from `*`.
   *
   * Each call collects words in its own buffer. (Some BuildKit revisions share one buffer between
   * nested calls, which makes ProcessWords drop the text before a `${X:-...}`; that is a bug, not a
   * behaviour worth copying, and no conformance case depends on it.)
   */
  private processUntil(stopChar: number, rawEscapes: boolean): Expansion {
    const savedRawEscapes = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      let result = "";
      const words = new WordCollector();
      const handleQuotes = !(this.options.skipProcessQuotes ?? false);
      while (this.scanner.peek() !== EOF) {
        let ch = this.scanner.peek();
        if (stopChar !== EOF && ch === stopChar) {
          this.scanner.next();
          return { result, words: words.finish() };
        }
        if (ch === DOLLAR) {
          const value = this.processDollar();
          result += value;
          words.addString(value);
          continue;
        }
        if (handleQuotes && (ch === SINGLE_QUOTE || ch === DOUBLE_QUOTE)) {
          const value = ch === SINGLE_QUOTE ? this.processSingleQuote() : this.processDoubleQuote();
          result += value;
          words.addRawString(value);
          continue;
        }
        ch = this.scanner.next();
        if (ch === this.escape) {
          if (this.rawEscapes) {
            words.addRawChar(ch);
            result += runeToString(ch);
          }
          // The escape character escapes anything that follows it; at the end it is dropped.
          ch = this.scanner.next();
          if (ch === EOF) break;
          words.addRawChar(ch);
        } else {
          words.addChar(ch);
        }
        result += runeToString(ch);
      }
      if (stopChar !== EOF) {
        throw new LexFailure(`unexpected end of statement while looking for matching ${runeToString(stopChar)}`);
      }
      return { result, words: words.finish() };
    } finally {
      this.rawEscapes = savedRawEscapes;
    }
  }

  /** '...': everything literal up to the next single quote, which cannot be escaped. */
  private processSingleQuote(): string {
    const keepQuotes = this.options.rawQuotes ?? false;
    let result = "";
    const opening = this.scanner.next();
    if (keepQuotes) result += runeToString(opening);
    for (;;) {
      const ch = this.scanner.next();
      if (ch === EOF) throw new LexFailure("unexpected end of statement while looking for matching single-quote");
      if (ch === SINGLE_QUOTE) {
        if (keepQuotes) result += runeToString(ch);
        return result;
      }
      result += runeToString(ch);
    }
  }

  /** "...": literal except `$` expansions; the escape character only escapes `"`, `$` and itself. */
  private processDoubleQuote(): string {
    const keepQuotes = this.options.rawQuotes ?? false;
    let result = "";
    const opening = this.scanner.next();
    if (keepQuotes) result += runeToString(opening);
    for (;;) {
      const peeked = this.scanner.peek();
      if (peeked === EOF) throw new LexFailure("unexpected end of statement while looking for matching double-quote");
      if (peeked === DOUBLE_QUOTE) {
        const closing = this.scanner.next();
        if (keepQuotes) result += runeToString(closing);
        return result;
      }
      if (peeked === DOLLAR) {
        result += this.processDollar();
        continue;
      }
      let ch = this.scanner.next();
      if (ch === this.escape) {
        if (this.rawEscapes) result += runeToString(ch);
        const following = this.scanner.peek();
        // An escape right before the end is ignored; the missing quote is reported next round.
        if (following === EOF) continue;
        if (following === DOUBLE_QUOTE || following === DOLLAR || following === this.escape) {
          ch = this.scanner.next();
        }
      }
      result += runeToString(ch);
    }
  }

  /** `$name`, `${name}` and the `${name<modifier>word}` forms; the scanner is on the `$`. */
  private processDollar(): string {
    this.scanner.next();
    const skipUnset = this.options.skipUnsetEnv ?? false;

    if (this.scanner.peek() !== OPEN_BRACE) {
      const name = this.processName();
      if (name === "") return "$"; // a `$` not followed by a name stays literal
      const value = this.variables.get(name);
      if (value === undefined && skipUnset) return "$" + name;
      return value ?? "";
    }

    this.scanner.next();
    const first = this.scanner.peek();
    if (first === EOF) throw new LexFailure("syntax error: missing '}'");
    if (first === OPEN_BRACE || first === CLOSE_BRACE || first === COLON) {
      // ${{x}, ${}, ${:x}
      throw new LexFailure("syntax error: bad substitution");
    }
    const name = this.processName();
    let modifier = this.scanner.next();
    let modifierText = runeToString(modifier);

    if (modifier === CLOSE_BRACE) {
      const value = this.variables.get(name);
      if (value === undefined && skipUnset) return `\${${name}}`;
      return value ?? "";
    }
    if (modifier === SLASH) return this.processReplacement(name);

    // With a colon, an empty variable counts as unset (`${X:-y}` vs `${X-y}`).
    let emptyIsUnset = false;
    if (modifier === COLON) {
      emptyIsUnset = true;
      modifier = this.scanner.next();
      modifierText += runeToString(modifier);
    } else if (!"+-?#%".includes(runeToString(modifier))) {
      throw new LexFailure(`unsupported modifier (${modifierText}) in substitution`);
    }

    const isPattern = modifier === 0x23 /* # */ || modifier === 0x25; /* % */
    if (emptyIsUnset && isPattern) throw new LexFailure(`unsupported modifier (${modifierText}) in substitution`);
    let word: string;
    try {
      // Patterns keep their escapes so that `\*` stays a literal star for the pattern compiler.
      word = this.processUntil(CLOSE_BRACE, isPattern).result;
    } catch (err) {
      if (err instanceof LexFailure && this.scanner.peek() === EOF) throw new LexFailure("syntax error: missing '}'");
      throw err;
    }

    const value = this.variables.get(name);
    if (value === undefined && skipUnset) return `\${${name}${modifierText}${word}}`;
    const unset = value === undefined || (emptyIsUnset && value === "");

    switch (runeToString(modifier)) {
      case "-":
        return unset ? word : (value ?? "");
      case "+":
        return unset ? "" : word;
      case "?":
        if (value === undefined) throw new LexFailure(`${name}: ${word !== "" ? word : "is not allowed to be unset"}`);
        if (unset) throw new LexFailure(`${name}: ${word !== "" ? word : "is not allowed to be empty"}`);
        return value;
      case "#":
      case "%": {
        // `#`/`%` remove the shortest matching prefix/suffix, `##`/`%%` the longest.
        const greedy = word.length > 0 && word.codePointAt(0) === modifier;
        const pattern = greedy ? word.slice(1) : word;
        return modifier === 0x25 ? trimSuffix(pattern, value ?? "", greedy) : trimPrefix(pattern, value ?? "", greedy);
      }
      default:
        throw new LexFailure(`unsupported modifier (${modifierText}) in substitution`);
    }
  }

  /** `${name/pattern/replacement}` (first match) and `${name//pattern/replacement}` (all matches). */
  private processReplacement(name: string): string {
    const replaceAll = this.scanner.peek() === SLASH;
    if (replaceAll) this.scanner.next();

    let pattern: string;
    try {
      pattern = this.processUntil(SLASH, true).result;
    } catch (err) {
      if (err instanceof LexFailure && this.scanner.peek() === EOF) throw new LexFailure("syntax error: missing '/' in ${}");
      throw err;
    }
    let replacement: string;
    try {
      replacement = this.processUntil(CLOSE_BRACE, true).result;
    } catch (err) {
      if (err instanceof LexFailure && this.scanner.peek() === EOF) throw new LexFailure("syntax error: missing '}'");
      throw err;
    }

    const value = this.variables.get(name);
    if (value === undefined && (this.options.skipUnsetEnv ?? false)) return `\${${name}/${pattern}/${replacement}}`;
    const regex = compilePattern(pattern, true, false);
    const subject = value ?? "";
    if (replaceAll) return replaceAllLikeGo(regex, subject, replacement);
    const match = regex.exec(subject);
    if (match === null) return subject;
    return subject.slice(0, match.index) + replacement + subject.slice(match.index + match[0].length);
  }

  /** A variable name: letters, digits and `_`, or all digits (`$12`), or one special parameter (`$@`). */
  private processName(): string {
    let name = "";
    while (this.scanner.peek() !== EOF) {
      const ch = this.scanner.peek();
      if (name.length === 0 && isDigit(ch)) {
        while (this.scanner.peek() !== EOF && isDigit(this.scanner.peek())) name += runeToString(this.scanner.next());
        return name;
      }
      if (name.length === 0 && isSpecialParameter(ch)) return runeToString(this.scanner.next());
      if (!isLetter(ch) && !isDigit(ch) && ch !== 0x5f /* _ */) break;
      name += runeToString(this.scanner.next());
    }
    return name;
  }
}

// ---------------------------------------------------------------------------------------------
// Shell patterns (`*`, `?`, `\x`) for the # % / forms, compiled to regular expressions as
// BuildKit's convertShellPatternToRegex does (no bracket expressions).

/** Characters that mean something in a regular expression and must match literally. */
const REGEX_SPECIALS = "[]{}.+()|^$";

function compilePattern(pattern: string, greedy: boolean, anchored: boolean): RegExp {
  const scanner = new RuneScanner(pattern);
  let source = anchored ? "^" : "";
  // Go's `.` matches anything but a newline; JavaScript's `.` also refuses \r, U+2028 and U+2029.
  const anyChar = "[^\\n]";
  const star = greedy ? `${anyChar}*` : `${anyChar}*?`;
  for (let tok = scanner.next(); tok !== EOF; tok = scanner.next()) {
    if (tok === 0x2a /* * */) {
      source += star;
      continue;
    }
    if (tok === 0x3f /* ? */) {
      source += anyChar;
      continue;
    }
    if (tok === BACKSLASH) {
      // `}` and `/` are escaped only to get them past the ${...} syntax; the escape is not part of the pattern.
      if (scanner.peek() === CLOSE_BRACE || scanner.peek() === SLASH) continue;
      const escaped = scanner.next();
      if (escaped !== 0x2a && escaped !== 0x3f && escaped !== BACKSLASH) {
        throw new LexFailure(`invalid pattern (${pattern}) in substitution: invalid escape '\\${runeToString(escaped)}'`);
      }
      source += "\\" + runeToString(escaped);
      continue;
    }
    const ch = runeToString(tok);
    source += REGEX_SPECIALS.includes(ch) ? "\\" + ch : ch;
  }
  return new RegExp(source, "u");
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const match = compilePattern(pattern, greedy, true).exec(value);
  return match === null ? value : value.slice(match.index + match[0].length);
}

/**
 * Regular expressions cannot find the shortest match that ends at the end of a string, so both
 * the value and the pattern are reversed and the suffix is removed as a prefix.
 */
function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  return reverseCodePoints(trimPrefix(reversePattern(pattern), reverseCodePoints(value), greedy));
}

function reverseCodePoints(text: string): string {
  return Array.from(text).reverse().join("");
}

/** Reverses a pattern but keeps each escape in front of the character it escapes: a\*c -> c\*a. */
function reversePattern(pattern: string): string {
  const runes = Array.from(pattern);
  const out = new Array<string>(runes.length);
  const last = runes.length - 1;
  for (let i = 0; i <= last; ) {
    const tok = runes[i] ?? "";
    const outIndex = last - i;
    if (tok === "\\" && i !== last) {
      out[outIndex - 1] = tok;
      out[outIndex] = runes[i + 1] ?? "";
      i += 2;
    } else {
      out[outIndex] = tok;
      i++;
    }
  }
  return out.join("");
}

/**
 * Go's Regexp.ReplaceAllString. It differs from String.prototype.replace in two ways that show
 * with shell patterns: an empty match right after a match is not replaced (replacing all "*"
 * by "y" in "abc" gives "y", not "yy"), and `$0`, `${0}`, `$$` and `$name` in the replacement are template references.
 */
function replaceAllLikeGo(pattern: RegExp, subject: string, replacement: string): string {
  const regex = new RegExp(pattern.source, "gu");
  let output = "";
  let lastMatchEnd = 0;
  let searchFrom = 0;
  while (searchFrom <= subject.length) {
    regex.lastIndex = searchFrom;
    const match = regex.exec(subject);
    if (match === null) break;
    const start = match.index;
    const end = start + match[0].length;
    output += subject.slice(lastMatchEnd, start);
    if (end > lastMatchEnd || start === 0) output += expandGoTemplate(replacement, match[0]);
    lastMatchEnd = end;
    // Always advance by at least one character.
    const width = searchFrom < subject.length ? ((subject.codePointAt(searchFrom) ?? 0) > 0xffff ? 2 : 1) : 0;
    if (searchFrom + width > end) searchFrom += width;
    else if (searchFrom + 1 > end) searchFrom++;
    else searchFrom = end;
  }
  return output + subject.slice(lastMatchEnd);
}

/** Go's Regexp.Expand for a pattern without capture groups: only group 0 (the match) exists. */
function expandGoTemplate(template: string, matched: string): string {
  let output = "";
  let rest = template;
  for (;;) {
    const dollar = rest.indexOf("$");
    if (dollar < 0) break;
    output += rest.slice(0, dollar);
    rest = rest.slice(dollar + 1);
    if (rest.startsWith("$")) {
      output += "$";
      rest = rest.slice(1);
      continue;
    }
    const reference = /^(?:\{([\p{L}\p{Nd}_]+)\}|([\p{L}\p{Nd}_]+))/u.exec(rest);
    if (reference === null) {
      output += "$"; // malformed reference: the `$` is literal text
      continue;
    }
    rest = rest.slice(reference[0].length);
    const name = reference[1] ?? reference[2] ?? "";
    if (name === "0") output += matched; // every other group or name is empty
  }
  return output + rest;
}
