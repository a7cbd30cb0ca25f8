// Dockerfile parser, ported from BuildKit (moby/buildkit frontend/dockerfile/parser: parser.go,
// line_parsers.go, split_command.go, directives.go). It turns the text into one Instruction per
// logical line, with the same argument splitting BuildKit does for each keyword, without yet
// expanding variables (that happens per instruction at build time, see shell-words.ts).
//
// The goal is byte-for-byte agreement with BuildKit's parse tree (checked against BuildKit's own
// conformance files by test/unit/dockerfile-parser.test.ts), so the code keeps BuildKit's rules
// even where they look odd: trailing whitespace is kept, a comment inside a continuation is
// dropped, `ENV a b c` means a="b c", JSON that does not parse silently falls back to shell form.
//
// Deliberate differences, all outside what a sane Dockerfile contains: BuildKit scans flags and
// HEALTHCHECK types byte by byte and so garbles non-ASCII characters there (a flag value "é"
// becomes "Ã©"); this port works on characters. Line numbers in errors are always the line the
// problem is on (BuildKit reports the line before for a bad parser directive).

import { isUnicodeSpace, ShellExpansionError, ShellLex, type EscapeChar } from "./shell-words.js";

/** A here-document attached to RUN, COPY or ADD (`<<EOF` ... `EOF`). */
export interface Heredoc {
  /** The delimiter word with quotes removed, e.g. EOF for <<'EOF'. */
  name: string;
  /** The n in `n<<EOF`; 0 when not given. */
  fileDescriptor: number;
  /** False when any part of the delimiter was quoted: the content is then not variable-expanded. */
  expand: boolean;
  /** `<<-EOF`: leading tabs are stripped from the content (see chompHeredocContent) and the delimiter line. */
  chomp: boolean;
  /** The lines between the instruction and the delimiter, line endings included, tabs not yet stripped. */
  content: string;
}

export interface Instruction {
  /** The instruction keyword, lowercased: "run", "copy", "onbuild", ... */
  keyword: string;
  /** `--name=value` flags between the keyword and the arguments, as written minus quotes/escapes. */
  flags: string[];
  /**
   * The arguments as BuildKit splits them for this keyword: the JSON array elements for exec
   * form; one string for shell-form RUN/CMD/ENTRYPOINT/SHELL and for USER/WORKDIR/...;
   * whitespace-separated words for FROM/EXPOSE/VOLUME/COPY/ADD; for ENV and LABEL triples
   * key, value, separator (separator "=" for `K=V`, "" for the legacy `ENV K V` form); for ARG
   * the words; for HEALTHCHECK the type ("CMD"/"NONE") then the command.
   */
  args: string[];
  /** True when the arguments were written as a JSON array (exec form). */
  json: boolean;
  heredocs: Heredoc[];
  /** First and last line (1-based) the instruction occupies, heredoc bodies included. */
  startLine: number;
  endLine: number;
  /** The logical line after joining continuations and dropping comments. */
  original: string;
  /** The comment lines directly above the instruction, without "#". */
  comments: string[];
  /** For ONBUILD: the trigger instruction. */
  next?: Instruction;
}

export interface ParserDirective {
  name: "syntax" | "escape" | "check";
  value: string;
  line: number;
}

export interface ParseWarning {
  message: string;
  line: number;
}

export interface Dockerfile {
  instructions: Instruction[];
  /** The escape character in effect (from `# escape=`), also used for variable expansion. */
  escapeChar: EscapeChar;
  directives: ParserDirective[];
  warnings: ParseWarning[];
}

export interface ParseOptions {
  /** Name used in error messages; "Dockerfile" by default. */
  fileName?: string;
  /**
   * Keep instructions BuildKit does not know (it parses them with no arguments and fails later,
   * when turning the tree into build steps). By default they are rejected straight away.
   */
  allowUnknownInstructions?: boolean;
}

/** A Dockerfile BuildKit would reject. The message reads "Dockerfile:LINE: reason". */
export class DockerfileParseError extends Error {
  constructor(
    /** What is wrong, in BuildKit's wording where it has one. */
    readonly reason: string,
    /** First line of the offending instruction (1-based); 0 when the file is empty. */
    readonly line: number,
    readonly endLine: number,
    readonly fileName: string,
  ) {
    super(line > 0 ? `${fileName}:${line}: ${reason}` : `${fileName}: ${reason}`);
    this.name = "DockerfileParseError";
  }
}

/** Instructions whose shell form may carry heredocs. */
const HEREDOC_KEYWORDS = new Set(["add", "copy", "run"]);

/** BuildKit's longest accepted physical line, in bytes (bufio.MaxScanTokenSize - 1). */
const MAX_LINE_BYTES = 65535;

/** Parses Dockerfile text (or its bytes, decoded as UTF-8) into instructions. */
export function parseDockerfile(source: string | Uint8Array, options: ParseOptions = {}): Dockerfile {
  const fileName = options.fileName ?? "Dockerfile";
  const text = typeof source === "string" ? source : new TextDecoder("utf-8", { ignoreBOM: true }).decode(source);
  const fail = (reason: string, line: number, endLine = line): DockerfileParseError =>
    new DockerfileParseError(reason, line, Math.max(line, endLine), fileName);

  const lines = new LineReader(text);
  const directives = new DirectiveState();
  const instructions: Instruction[] = [];
  const warnings: ParseWarning[] = [];
  let comments: string[] = [];
  let currentLine = 0;

  const processLine = (line: string, stripLeadingWhitespace: boolean): { text: string; isDirective: boolean } => {
    let token = trimNewline(line);
    if (stripLeadingWhitespace) token = trimLeadingWhitespace(token);
    try {
      const isDirective = directives.consider(token, currentLine + 1);
      return { text: isComment(token) ? "" : token, isDirective };
    } catch (err) {
      throw fail(errorMessage(err), currentLine + 1);
    }
  };

  for (let physical = lines.next(); physical !== undefined; physical = lines.next()) {
    const firstLine = currentLine === 0 ? physical.replace(/^\ufeff/, "") : physical;
    if (isComment(firstLine)) {
      // Like BuildKit, drop the first character (normally the "#") and trim; a blank comment
      // separates the comment block from the instruction below.
      const comment = goTrimSpace(firstLine.slice(1));
      if (comment === "") comments = [];
      else comments.push(comment);
    }
    const processed = processLine(firstLine, true);
    if (processed.isDirective) comments.pop();
    currentLine++;

    const startLine = currentLine;
    let { text: line, endOfLine } = directives.trimContinuation(processed.text);
    if (endOfLine && line === "") continue;

    let hasEmptyContinuationLine = false;
    while (!endOfLine) {
      const continuation = lines.next();
      if (continuation === undefined) break;
      const { text } = processLine(continuation, false);
      currentLine++;
      // Comment lines inside a continuation are skipped, blank ones too (with a warning).
      if (isComment(continuation)) continue;
      if (trimLeadingWhitespace(trimNewline(text)) === "") {
        hasEmptyContinuationLine = true;
        continue;
      }
      const trimmed = directives.trimContinuation(text);
      line += trimmed.text;
      endOfLine = trimmed.endOfLine;
    }

    if (hasEmptyContinuationLine) {
      warnings.push({ message: `Empty continuation line found in: ${line}`, line: currentLine });
    }

    let instruction: Instruction;
    try {
      instruction = instructionFromLine(line, directives.escapeChar, comments);
    } catch (err) {
      throw fail(errorMessage(err), startLine, currentLine);
    }

    if (canContainHeredoc(instruction) && line.includes("<<")) {
      let heredocs: Heredoc[];
      try {
        heredocs = heredocsFromLine(line);
      } catch (err) {
        throw fail(errorMessage(err), startLine, currentLine);
      }
      // Bodies follow the instruction one after another, each closed by its own delimiter line.
      for (const heredoc of heredocs) {
        let terminated = false;
        for (let body = lines.next(); body !== undefined; body = lines.next()) {
          currentLine++;
          let possibleTerminator = trimNewline(body);
          if (heredoc.chomp) possibleTerminator = possibleTerminator.replace(/^\t+/, "");
          if (possibleTerminator === heredoc.name) {
            terminated = true;
            break;
          }
          heredoc.content += body;
        }
        if (!terminated) throw fail("unterminated heredoc", startLine, currentLine);
        instruction.heredocs.push(heredoc);
      }
    }

    setLines(instruction, startLine, currentLine);
    instructions.push(instruction);
    comments = [];
  }

  if (instructions.length === 0) throw fail("file with no instructions", currentLine);
  if (lines.tooLong) throw fail(`dockerfile line greater than max allowed size of ${MAX_LINE_BYTES}`, currentLine + 1);

  if (!(options.allowUnknownInstructions ?? false)) {
    // BuildKit finds unknown instructions only after the whole file parsed, so syntax errors
    // further down win; checking afterwards keeps that order.
    for (const instruction of instructions) {
      if (!LINE_PARSERS.has(instruction.keyword)) {
        throw fail(`unknown instruction: ${keywordAsWritten(instruction)}`, instruction.startLine, instruction.endLine);
      }
    }
  }

  return { instructions, escapeChar: directives.escapeChar, directives: directives.found, warnings };
}

/** Removes the leading tabs of every line of a `<<-` heredoc body. */
export function chompHeredocContent(content: string): string {
  return content.replace(/^\t+/gm, "");
}

/**
 * Renders instructions as BuildKit's Node.Dump does, one `(keyword ["flags"] "args" ...)` per
 * line: the format of the conformance `result` files (including the final newline).
 */
export function dumpDockerfile(dockerfile: Dockerfile | readonly Instruction[]): string {
  const instructions = "instructions" in dockerfile ? dockerfile.instructions : dockerfile;
  return instructions.map((instruction) => `(${dumpInstruction(instruction)})\n`).join("");
}

/** One instruction in BuildKit's dump format, without the surrounding parentheses. */
export function dumpInstruction(instruction: Instruction): string {
  let text = instruction.keyword;
  if (instruction.flags.length > 0) text += ` [${instruction.flags.map(goQuote).join(" ")}]`;
  if (instruction.next !== undefined) text += ` (${dumpInstruction(instruction.next)})`;
  for (const arg of instruction.args) text += ` ${goQuote(arg)}`;
  return goTrimSpace(text);
}

// ---------------------------------------------------------------------------------------------
// Physical lines and parser directives

/**
 * Hands out physical lines, each with its "\n", like BuildKit's bufio.Scanner. A line over 64 KiB
 * stops the scan as if the file ended there; the parser reports it once it has finished.
 */
class LineReader {
  private position = 0;
  tooLong = false;

  constructor(private readonly text: string) {}

  next(): string | undefined {
    if (this.tooLong || this.position >= this.text.length) return undefined;
    const newline = this.text.indexOf("\n", this.position);
    const end = newline < 0 ? this.text.length : newline + 1;
    const line = this.text.slice(this.position, end);
    if (Buffer.byteLength(newline < 0 ? line : line.slice(0, -1), "utf8") > MAX_LINE_BYTES) {
      this.tooLong = true;
      return undefined;
    }
    this.position = end;
    return line;
  }
}

const DIRECTIVE_NAMES = new Set<string>(["syntax", "escape", "check"]);
// `\s` spelt as Go's [\t\n\f\r ], and `.` as [^\n] (JavaScript's `.` also refuses \r).
const DIRECTIVE_PATTERN = /^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*([^\n]+?)[\t\n\f\r ]*$/u;

function isDirectiveName(name: string): name is ParserDirective["name"] {
  return DIRECTIVE_NAMES.has(name);
}

/**
 * Parser directives (`# syntax=`, `# escape=`, `# check=`) count only in the comment lines at the
 * very top of the file; the first other line, or an unknown directive, ends them.
 */
class DirectiveState {
  escapeChar: EscapeChar = "\\";
  readonly found: ParserDirective[] = [];
  private continuationPattern = continuationPatternFor("\\");
  private done = false;

  /** Looks at one line; returns true when it was a directive. Throws on a repeated or bad one. */
  consider(line: string, lineNumber: number): boolean {
    if (this.done) return false;
    const match = DIRECTIVE_PATTERN.exec(line);
    const name = match?.[1]?.toLowerCase();
    if (match === null || name === undefined || !isDirectiveName(name)) {
      this.done = true;
      return false;
    }
    if (this.found.some((directive) => directive.name === name)) {
      throw new Error(`only one ${name} parser directive can be used`);
    }
    const value = match[2] ?? "";
    this.found.push({ name, value, line: lineNumber });
    if (name === "escape") this.setEscapeChar(value);
    return true;
  }

  /**
   * Removes a trailing line-continuation escape (plus trailing blanks). An escape preceded by
   * another escape is an escaped escape, not a continuation.
   */
  trimContinuation(line: string): { text: string; endOfLine: boolean } {
    if (!this.continuationPattern.test(line)) return { text: line, endOfLine: true };
    return { text: line.replace(this.continuationPattern, "$1"), endOfLine: false };
  }

  private setEscapeChar(value: string): void {
    if (value !== "`" && value !== "\\") throw new Error(`invalid escape token '${value}' does not match \` or \\`);
    this.escapeChar = value;
    this.continuationPattern = continuationPatternFor(value);
  }
}

function continuationPatternFor(escapeChar: EscapeChar): RegExp {
  const e = escapeChar === "\\" ? "\\\\" : "`";
  return new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`, "u");
}

// ---------------------------------------------------------------------------------------------
// Whitespace and comments, with Go's notion of whitespace

function trimNewline(line: string): string {
  return line.replace(/[\r\n]+$/, "");
}

function trimLeadingWhitespace(text: string): string {
  let start = 0;
  while (start < text.length && isUnicodeSpace(text.charCodeAt(start))) start++;
  return text.slice(start);
}

/** Go's strings.TrimSpace. */
function goTrimSpace(text: string): string {
  let end = text.length;
  while (end > 0 && isUnicodeSpace(text.charCodeAt(end - 1))) end--;
  return trimLeadingWhitespace(text.slice(0, end));
}

function isComment(line: string): boolean {
  return trimLeadingWhitespace(line).startsWith("#");
}

/** The whitespace that separates a keyword from its arguments, and words in shell-form lists. */
const ARGUMENT_SEPARATOR = /[\t\v\f\r ]+/u;

// ---------------------------------------------------------------------------------------------
// One logical line -> one instruction

interface ParsedArguments {
  args: string[];
  json: boolean;
  next?: Instruction;
}

type LineParser = (rest: string, escapeChar: EscapeChar) => ParsedArguments;

/** Fresh arrays every time: callers may edit an instruction's args. */
function noArguments(): ParsedArguments {
  return { args: [], json: false };
}

/**
 * What an unknown instruction gets (BuildKit's parseIgnore): its arguments are dropped, but
 * BuildKit's tree still holds one empty argument node, which shows in the dump as `(foo "")`.
 */
function ignoredArguments(): ParsedArguments {
  return { args: [""], json: false };
}

/** How BuildKit parses the arguments of each instruction it knows. */
const LINE_PARSERS: ReadonlyMap<string, LineParser> = new Map<string, LineParser>([
  ["add", parseMaybeJsonToList],
  ["arg", parseNameOrNameValue],
  ["cmd", parseMaybeJson],
  ["copy", parseMaybeJsonToList],
  ["entrypoint", parseMaybeJson],
  ["env", (rest, escapeChar) => parseNameValue(rest, "ENV", escapeChar)],
  ["expose", parseWhitespaceDelimited],
  ["from", parseWhitespaceDelimited],
  ["healthcheck", parseHealthcheck],
  ["label", (rest, escapeChar) => parseNameValue(rest, "LABEL", escapeChar)],
  ["maintainer", parseString],
  ["onbuild", parseSubCommand],
  ["run", parseMaybeJson],
  ["shell", parseMaybeJson],
  ["stopsignal", parseString],
  ["user", parseString],
  ["volume", parseMaybeJsonToList],
  ["workdir", parseString],
]);

function instructionFromLine(line: string, escapeChar: EscapeChar, comments: string[]): Instruction {
  const { command, flags, rest } = splitCommand(line, escapeChar);
  const keyword = command.toLowerCase();
  const parser = LINE_PARSERS.get(keyword);
  const parsed = parser === undefined ? ignoredArguments() : parser(rest, escapeChar);
  const instruction: Instruction = {
    keyword,
    flags,
    args: parsed.args,
    json: parsed.json,
    heredocs: [],
    startLine: 0,
    endLine: 0,
    original: line,
    comments,
  };
  if (parsed.next !== undefined) instruction.next = parsed.next;
  return instruction;
}

function setLines(instruction: Instruction, startLine: number, endLine: number): void {
  instruction.startLine = startLine;
  instruction.endLine = endLine;
  if (instruction.next !== undefined) setLines(instruction.next, startLine, endLine);
}

function keywordAsWritten(instruction: Instruction): string {
  return goTrimSpace(instruction.original).split(ARGUMENT_SEPARATOR)[0] ?? instruction.keyword;
}

/** Splits "KEYWORD --flag=x --other args..." into the keyword, the flags and the rest. */
function splitCommand(line: string, escapeChar: EscapeChar): { command: string; flags: string[]; rest: string } {
  const trimmed = goTrimSpace(line);
  const separator = ARGUMENT_SEPARATOR.exec(trimmed);
  if (separator === null) return { command: trimmed, flags: [], rest: "" };
  const command = trimmed.slice(0, separator.index);
  const { rest, flags } = extractFlags(trimmed.slice(separator.index + separator[0].length), escapeChar);
  return { command, flags, rest: goTrimSpace(rest) };
}

/** Code point at `index` of `text` and its length in UTF-16 units. */
function codePointAt(text: string, index: number): { ch: string; width: number } {
  const codePoint = text.codePointAt(index) ?? 0;
  const width = codePoint > 0xffff ? 2 : 1;
  return { ch: text.slice(index, index + width), width };
}

function isSpaceChar(ch: string): boolean {
  return isUnicodeSpace(ch.codePointAt(0) ?? 0);
}

/** Where a word scanner is: between words, inside a word, or inside a quoted part of a word. */
type WordPhase = "between-words" | "in-word" | "in-quote";

/**
 * Takes the leading words that start with "--" as flags (quotes and escapes removed), up to the
 * first other word or a lone "--", and returns the remaining text untouched.
 */
function extractFlags(line: string, escapeChar: EscapeChar): { rest: string; flags: string[] } {
  const flags: string[] = [];
  let phase: WordPhase = "between-words";
  let word = "";
  let quote = "";
  let blankOk = false;
  let ch = "";
  let width = 0;

  for (let pos = 0; pos <= line.length; pos += width) {
    if (pos !== line.length) ({ ch, width } = codePointAt(line, pos));
    else width = 1;

    if (phase === "between-words") {
      if (pos === line.length) break;
      if (isSpaceChar(ch)) continue;
      // Only words starting with "--" are flags.
      if (ch !== "-" || pos + 1 === line.length || line[pos + 1] !== "-") return { rest: line.slice(pos), flags };
      phase = "in-word";
    }
    if (pos === line.length) {
      if (word !== "--" && (blankOk || word.length > 0)) flags.push(word);
      break;
    }
    if (phase === "in-word") {
      if (isSpaceChar(ch)) {
        phase = "between-words";
        // A lone "--" ends the flags; what follows is arguments even if it starts with "--".
        if (word === "--") return { rest: line.slice(pos), flags };
        if (blankOk || word.length > 0) flags.push(word);
        word = "";
        blankOk = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOk = true;
        phase = "in-quote";
        continue;
      }
      if (ch === escapeChar) {
        if (pos + width === line.length) continue; // an escape at the very end is dropped
        pos += width;
        ({ ch, width } = codePointAt(line, pos));
      }
      word += ch;
      continue;
    }
    // in-quote
    if (ch === quote) {
      phase = "in-word";
      continue;
    }
    if (ch === escapeChar) {
      if (pos + width === line.length) {
        phase = "in-word";
        continue;
      }
      pos += width;
      ({ ch, width } = codePointAt(line, pos));
    }
    word += ch;
  }
  return { rest: "", flags };
}

/**
 * Splits on unquoted whitespace but, unlike the shell lexer, keeps quotes and escapes in the
 * words: ENV and LABEL values are expanded later, with the quotes still meaningful then.
 */
function parseWords(rest: string, escapeChar: EscapeChar): string[] {
  const words: string[] = [];
  let phase: WordPhase = "between-words";
  let word = "";
  let quote = "";
  let blankOk = false;
  let ch = "";
  let width = 0;

  for (let pos = 0; pos <= rest.length; pos += width) {
    if (pos !== rest.length) ({ ch, width } = codePointAt(rest, pos));
    else width = 1;

    if (phase === "between-words") {
      if (pos === rest.length) break;
      if (isSpaceChar(ch)) continue;
      phase = "in-word";
    }
    if (pos === rest.length) {
      if (blankOk || word.length > 0) words.push(word);
      break;
    }
    if (phase === "in-word") {
      if (isSpaceChar(ch)) {
        phase = "between-words";
        if (blankOk || word.length > 0) words.push(word);
        word = "";
        blankOk = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOk = true;
        phase = "in-quote";
      }
      if (ch === escapeChar) {
        if (pos + width === rest.length) continue; // an escape at the very end is dropped
        // An escaped character, even a quote, is kept with its escape and starts nothing.
        word += ch;
        pos += width;
        ({ ch, width } = codePointAt(rest, pos));
      }
      word += ch;
      continue;
    }
    // in-quote
    if (ch === quote) phase = "in-word";
    // Inside single quotes nothing can be escaped.
    if (ch === escapeChar && quote !== "'") {
      if (pos + width === rest.length) {
        phase = "in-word";
        continue;
      }
      pos += width;
      word += ch;
      ({ ch, width } = codePointAt(rest, pos));
    }
    word += ch;
  }
  return words;
}

/** ENV and LABEL: `K=V K2=V2 ...`, or the legacy `K value with spaces` when the first word has no "=". */
function parseNameValue(rest: string, instructionName: string, escapeChar: EscapeChar): ParsedArguments {
  const words = parseWords(rest, escapeChar);
  if (words.length === 0) return noArguments();

  if (!(words[0] ?? "").includes("=")) {
    const separator = ARGUMENT_SEPARATOR.exec(rest);
    if (separator === null) throw new Error(`${instructionName} must have two arguments`);
    const key = rest.slice(0, separator.index);
    const value = rest.slice(separator.index + separator[0].length);
    return { args: [key, value, ""], json: false };
  }

  const args: string[] = [];
  for (const word of words) {
    const equals = word.indexOf("=");
    if (equals < 0) {
      throw new Error(`Syntax error - can't find = in ${goQuote(word)}. Must be of the form: name=value`);
    }
    args.push(word.slice(0, equals), word.slice(equals + 1), "=");
  }
  return { args, json: false };
}

/** ARG: `name`, `name=value`, several of them. */
function parseNameOrNameValue(rest: string, escapeChar: EscapeChar): ParsedArguments {
  return { args: parseWords(rest, escapeChar), json: false };
}

function parseWhitespaceDelimited(rest: string): ParsedArguments {
  if (rest === "") return noArguments();
  return { args: rest.split(ARGUMENT_SEPARATOR), json: false };
}

function parseString(rest: string): ParsedArguments {
  if (rest === "") return noArguments();
  return { args: [rest], json: false };
}

/** Thrown for a JSON array with non-string elements: that is an error, not a fallback to shell form. */
class NotStringArrayError extends Error {
  constructor() {
    super("when using JSON array syntax, arrays must be comprised of strings only");
  }
}

/** The elements of a JSON array of strings, or undefined when `rest` is not a JSON array at all. */
function parseJsonArray(rest: string): string[] | undefined {
  const trimmed = trimLeadingWhitespace(rest);
  if (!trimmed.startsWith("[")) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed)) return undefined;
  const elements: string[] = [];
  for (const element of parsed as unknown[]) {
    if (typeof element !== "string") throw new NotStringArrayError();
    // Go's JSON decoder turns an unpaired surrogate escape ("\ud800") into U+FFFD.
    elements.push(element.replace(/\p{Cs}/gu, "\ufffd"));
  }
  return elements;
}

/** RUN, CMD, ENTRYPOINT, SHELL: a JSON array (exec form) or else the whole text as one argument. */
function parseMaybeJson(rest: string): ParsedArguments {
  if (rest === "") return noArguments();
  const elements = parseJsonArray(rest);
  if (elements !== undefined) return { args: elements, json: true };
  return { args: [rest], json: false };
}

/** ADD, COPY, VOLUME: a JSON array or else whitespace-separated words. */
function parseMaybeJsonToList(rest: string): ParsedArguments {
  const elements = parseJsonArray(rest);
  if (elements !== undefined) return { args: elements, json: true };
  return parseWhitespaceDelimited(rest);
}

/** HEALTHCHECK: a type word (CMD, NONE, or anything) followed by a command as for CMD. */
function parseHealthcheck(rest: string): ParsedArguments {
  let separator = 0;
  while (separator < rest.length && !isUnicodeSpace(rest.charCodeAt(separator))) separator++;
  let commandStart = separator;
  while (commandStart < rest.length && isUnicodeSpace(rest.charCodeAt(commandStart))) commandStart++;
  if (separator === 0) return noArguments();
  const command = parseMaybeJson(rest.slice(commandStart));
  return { args: [rest.slice(0, separator), ...command.args], json: command.json };
}

/** ONBUILD: the rest of the line is an instruction of its own. */
function parseSubCommand(rest: string, escapeChar: EscapeChar): ParsedArguments {
  if (rest === "") return noArguments();
  return { args: [], json: false, next: instructionFromLine(rest, escapeChar, []) };
}

// ---------------------------------------------------------------------------------------------
// Heredocs

const HEREDOC_PATTERN = /^([0-9]*)<<(-?)([^<]*)$/u;

function canContainHeredoc(instruction: Instruction): boolean {
  const target = instruction.keyword === "onbuild" && instruction.next !== undefined ? instruction.next : instruction;
  return HEREDOC_KEYWORDS.has(target.keyword) && !target.json;
}

/**
 * The heredocs an instruction line opens, in order. The line is split into shell words with
 * quotes and escapes kept, so `"<<EOF"` or `\<<EOF` is not a heredoc. BuildKit always uses `\`
 * here, whatever the escape directive says.
 */
function heredocsFromLine(line: string): Heredoc[] {
  const lexer = new ShellLex("\\", { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true });
  let words: string[];
  try {
    words = lexer.processWords(line, []);
  } catch (err) {
    if (!(err instanceof ShellExpansionError)) throw err;
    words = []; // a line the lexer cannot split has no heredocs
  }
  const heredocs: Heredoc[] = [];
  for (const word of words) {
    const heredoc = parseHeredoc(word);
    if (heredoc !== undefined) heredocs.push(heredoc);
  }
  return heredocs;
}

/** Recognises one heredoc opener such as `<<EOF`, `<<-'EOF'` or `3<<"EOF"`; undefined if it is not one. */
export function parseHeredoc(word: string): Heredoc | undefined {
  const match = HEREDOC_PATTERN.exec(word);
  if (match === null) return undefined;
  const rest = match[3] ?? "";
  if (rest === "") return undefined;

  // Lex the delimiter both with and without its quotes: if the quote count differs, part of it was
  // quoted, and quoting any part of the delimiter turns expansion of the body off.
  const unquoted = new ShellLex("\\", { skipUnsetEnv: true }).processWords(rest, []);
  if (unquoted.length !== 1) return undefined;
  const raw = new ShellLex("\\", { skipUnsetEnv: true, rawQuotes: true }).processWords(rest, []);
  if (raw.length !== unquoted.length) {
    throw new Error(`internal lexing of heredoc produced inconsistent results: ${rest}`);
  }
  const name = unquoted[0] ?? "";
  const countQuotes = (text: string): number => (text.match(/['"]/g) ?? []).length;
  const fileDescriptor = Number.parseInt(match[1] ?? "", 10);
  return {
    name,
    fileDescriptor: Number.isNaN(fileDescriptor) ? 0 : fileDescriptor,
    expand: countQuotes(name) === countQuotes(raw[0] ?? ""),
    chomp: match[2] === "-",
    content: "",
  };
}

// ---------------------------------------------------------------------------------------------
// Rendering

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u;

/** Go's strconv.Quote, which BuildKit's dump format uses for every string. */
function goQuote(text: string): string {
  let out = '"';
  for (const ch of text) {
    const codePoint = ch.codePointAt(0) ?? 0;
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (codePoint === 0x20 || PRINTABLE.test(ch)) out += ch;
    else if (ch === "\x07") out += "\\a";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\v") out += "\\v";
    else if (codePoint < 0x20 || codePoint === 0x7f) out += "\\x" + codePoint.toString(16).padStart(2, "0");
    else if (codePoint < 0x10000) out += "\\u" + codePoint.toString(16).padStart(4, "0");
    else out += "\\U" + codePoint.toString(16).padStart(8, "0");
  }
  return out + '"';
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
