// Go's text/template, as the Docker CLI uses it for --format (docker ps, images, inspect, history).
//
// Docker users already know Go templates and keep them in scripts, so this is a port of Go's
// text/template rather than a look-alike: the lexer, parser and evaluator follow Go's
// text/template/parse (lex.go, parse.go, node.go) and text/template (exec.go, funcs.go) closely,
// including error wording, "<no value>" for missing map keys, sorted map iteration and fmt-style
// value printing. Docker's extra functions come from docker/cli templates/templates.go, and table
// output reproduces docker/cli's formatter (the "table" prefix, header row, tabwriter alignment).
//
// Data are plain JSON-like JS values standing in for Docker's Go structs and maps:
//   - objects behave like Go maps with string keys: a missing key yields "<no value>";
//   - an object property holding a JS function behaves like a Go method (e.g. `.Label "key"`);
//   - integers print without decimals (Go int), other numbers print like Go's float64;
//   - null is a nil value found inside the data (a nil interface in Go), undefined is "no value".
//
// Where JS data cannot carry Go's static types we pick what Docker's typed structs would show:
// error messages name the value's own type ("in type string", not "interface {}"), numbers compare
// and format as one kind (eq 0.0 0 is true, %f takes an integer), arrays of strings are []string,
// and `index` on a string map returns "" for a missing key. Known gaps, all rare in --format
// strings: complex numbers, %x/%b on non-integer floats, and the '#' flag on floats.

import { Buffer } from "node:buffer";

/** Parse or execution error, worded like Go's (e.g. `template: :1: unexpected "}" in operand`). */
export class TemplateError extends Error {
  override name = "TemplateError";

  constructor(
    message: string,
    /** Whether the template failed to parse or failed while running on some data. */
    readonly phase: "parse" | "execute",
  ) {
    super(message);
  }
}

/** Docker parses every --format template under the empty name, so errors read "template: :1: ...". */
const TEMPLATE_NAME = "";

// ---------------------------------------------------------------------------------------------
// Lexer (Go: text/template/parse/lex.go)
// ---------------------------------------------------------------------------------------------

type TokenType =
  | "error"
  | "bool"
  | "char"
  | "charConstant"
  | "complex"
  | "assign"
  | "declare"
  | "eof"
  | "field"
  | "identifier"
  | "leftDelim"
  | "leftParen"
  | "number"
  | "pipe"
  | "rawString"
  | "rightDelim"
  | "rightParen"
  | "space"
  | "string"
  | "text"
  | "variable"
  // Keywords.
  | "block"
  | "break"
  | "continue"
  | "dot"
  | "define"
  | "else"
  | "end"
  | "if"
  | "nil"
  | "range"
  | "template"
  | "with";

interface Token {
  readonly type: TokenType;
  /** Index of the token in the template source. */
  readonly pos: number;
  readonly val: string;
  readonly line: number;
}

const LEFT_DELIM = "{{";
const RIGHT_DELIM = "}}";
const LEFT_COMMENT = "/*";
const RIGHT_COMMENT = "*/";
const EOF = -1;

const KEYWORDS: ReadonlyMap<string, TokenType> = new Map<string, TokenType>([
  [".", "dot"],
  ["block", "block"],
  ["break", "break"],
  ["continue", "continue"],
  ["define", "define"],
  ["else", "else"],
  ["end", "end"],
  ["if", "if"],
  ["nil", "nil"],
  ["range", "range"],
  ["template", "template"],
  ["with", "with"],
]);
const KEYWORD_TYPES: ReadonlySet<TokenType> = new Set(KEYWORDS.values());

type LexState =
  | "text"
  | "leftDelim"
  | "comment"
  | "rightDelim"
  | "insideAction"
  | "space"
  | "identifier"
  | "field"
  | "variable"
  | "char"
  | "number"
  | "quote"
  | "rawQuote"
  | "done";

/** Go's isSpace in the lexer: the ASCII spaces that separate arguments and trim markers. */
function isSpace(r: number): boolean {
  return r === 0x20 || r === 0x09 || r === 0x0d || r === 0x0a;
}

const LETTER_OR_DIGIT = /^[\p{L}\p{Nd}]$/u;

function isAlphaNumeric(r: number): boolean {
  if (r < 0x80) {
    return r === 0x5f || (r >= 0x30 && r <= 0x39) || (r >= 0x41 && r <= 0x5a) || (r >= 0x61 && r <= 0x7a);
  }
  return LETTER_OR_DIGIT.test(String.fromCodePoint(r));
}

function hasLeftTrimMarker(input: string, at: number): boolean {
  return input.charCodeAt(at) === 0x2d && isSpace(input.charCodeAt(at + 1));
}

function hasRightTrimMarker(input: string, at: number): boolean {
  return isSpace(input.charCodeAt(at)) && input.charCodeAt(at + 1) === 0x2d;
}

function countNewlines(s: string, from: number, to: number): number {
  let count = 0;
  for (let i = s.indexOf("\n", from); i >= 0 && i < to; i = s.indexOf("\n", i + 1)) count++;
  return count;
}

/**
 * Scans the whole template up front. Go's lexer is lazy, but its output does not depend on the
 * parser, so scanning eagerly yields the same tokens and keeps the parser a plain index walk.
 */
class Lexer {
  private pos = 0;
  private start = 0;
  /** Once the end was read, backup() no longer moves (as in Go). */
  private atEOF = false;
  private parenDepth = 0;
  private line = 1;
  private startLine = 1;
  private insideAction = false;
  private readonly tokens: Token[] = [];

  constructor(private readonly input: string) {}

  /** Returns every token; the list always ends with "eof", preceded by "error" on failure. */
  scan(): Token[] {
    let state: LexState = "text";
    while (state !== "done") state = this.step(state);
    const last = this.tokens[this.tokens.length - 1];
    if (last === undefined || last.type !== "eof") {
      this.tokens.push({ type: "eof", pos: this.input.length, val: "", line: this.line });
    }
    return this.tokens;
  }

  private step(state: LexState): LexState {
    switch (state) {
      case "text":
        return this.lexText();
      case "leftDelim":
        return this.lexLeftDelim();
      case "comment":
        return this.lexComment();
      case "rightDelim":
        return this.lexRightDelim();
      case "insideAction":
        return this.lexInsideAction();
      case "space":
        return this.lexSpace();
      case "identifier":
        return this.lexIdentifier();
      case "field":
        return this.lexFieldOrVariable("field");
      case "variable":
        return this.lexFieldOrVariable("variable");
      case "char":
        return this.lexQuoted(0x27, "unterminated character constant", "charConstant");
      case "number":
        return this.lexNumber();
      case "quote":
        return this.lexQuoted(0x22, "unterminated quoted string", "string");
      case "rawQuote":
        return this.lexRawQuote();
      case "done":
        return "done";
    }
  }

  private next(): number {
    if (this.pos >= this.input.length) {
      this.atEOF = true;
      return EOF;
    }
    const r = this.input.codePointAt(this.pos) ?? EOF;
    this.pos += r > 0xffff ? 2 : 1;
    if (r === 0x0a) this.line++;
    return r;
  }

  private backup(): void {
    if (this.atEOF || this.pos === 0) return;
    const last = this.input.charCodeAt(this.pos - 1);
    let width = 1;
    if (last >= 0xdc00 && last <= 0xdfff && this.pos >= 2) {
      const before = this.input.charCodeAt(this.pos - 2);
      if (before >= 0xd800 && before <= 0xdbff) width = 2;
    }
    this.pos -= width;
    if (last === 0x0a) this.line--;
  }

  private peek(): number {
    const r = this.next();
    this.backup();
    return r;
  }

  private thisItem(type: TokenType): Token {
    const token: Token = { type, pos: this.start, val: this.input.slice(this.start, this.pos), line: this.startLine };
    this.start = this.pos;
    this.startLine = this.line;
    return token;
  }

  private emit(type: TokenType): LexState {
    this.tokens.push(this.thisItem(type));
    return this.insideAction ? "insideAction" : "text";
  }

  /** Skips text that was passed over without next(), so newlines in it are counted here. */
  private ignore(): void {
    this.line += countNewlines(this.input, this.start, this.pos);
    this.start = this.pos;
    this.startLine = this.line;
  }

  private accept(valid: string): boolean {
    const r = this.next();
    if (r !== EOF && valid.includes(String.fromCodePoint(r))) return true;
    this.backup();
    return false;
  }

  private acceptRun(valid: string): void {
    while (this.accept(valid)) {
      // Keep consuming.
    }
  }

  private errorf(message: string): LexState {
    this.tokens.push({ type: "error", pos: this.start, val: message, line: this.startLine });
    return "done";
  }

  private lexText(): LexState {
    const x = this.input.indexOf(LEFT_DELIM, this.pos);
    if (x >= 0) {
      if (x > this.pos) {
        this.pos = x;
        // "{{- " trims the spaces that end the text before it.
        let trimLength = 0;
        if (hasLeftTrimMarker(this.input, this.pos + LEFT_DELIM.length)) {
          let i = this.pos;
          while (i > this.start && isSpace(this.input.charCodeAt(i - 1))) i--;
          trimLength = this.pos - i;
        }
        this.pos -= trimLength;
        this.line += countNewlines(this.input, this.start, this.pos);
        const item = this.thisItem("text");
        this.pos += trimLength;
        this.ignore();
        if (item.val.length > 0) {
          this.tokens.push(item);
          return "text";
        }
      }
      return "leftDelim";
    }
    this.pos = this.input.length;
    if (this.pos > this.start) {
      this.line += countNewlines(this.input, this.start, this.pos);
      return this.emit("text");
    }
    this.tokens.push(this.thisItem("eof"));
    return "done";
  }

  private lexLeftDelim(): LexState {
    this.pos += LEFT_DELIM.length;
    const afterMarker = hasLeftTrimMarker(this.input, this.pos) ? 2 : 0;
    if (this.input.startsWith(LEFT_COMMENT, this.pos + afterMarker)) {
      this.pos += afterMarker;
      this.ignore();
      return "comment";
    }
    const item = this.thisItem("leftDelim");
    this.insideAction = true;
    this.pos += afterMarker;
    this.ignore();
    this.parenDepth = 0;
    this.tokens.push(item);
    return "insideAction";
  }

  private lexComment(): LexState {
    this.pos += LEFT_COMMENT.length;
    const x = this.input.indexOf(RIGHT_COMMENT, this.pos);
    if (x < 0) return this.errorf("unclosed comment");
    this.pos = x + RIGHT_COMMENT.length;
    const [delim, trimSpace] = this.atRightDelim();
    if (!delim) return this.errorf("comment ends before closing delimiter");
    this.line += countNewlines(this.input, this.start, this.pos);
    this.thisItem("text"); // Comments are dropped: they never reach the parse tree.
    if (trimSpace) this.pos += 2;
    this.pos += RIGHT_DELIM.length;
    if (trimSpace) this.pos += this.leadingSpaceLength(this.pos);
    this.ignore();
    return "text";
  }

  private leadingSpaceLength(from: number): number {
    let i = from;
    while (i < this.input.length && isSpace(this.input.charCodeAt(i))) i++;
    return i - from;
  }

  /** Reports whether "}}" (or " -}}", which also trims the following text) starts here. */
  private atRightDelim(): [delim: boolean, trimSpace: boolean] {
    if (hasRightTrimMarker(this.input, this.pos) && this.input.startsWith(RIGHT_DELIM, this.pos + 2)) return [true, true];
    if (this.input.startsWith(RIGHT_DELIM, this.pos)) return [true, false];
    return [false, false];
  }

  private lexRightDelim(): LexState {
    const [, trimSpace] = this.atRightDelim();
    if (trimSpace) {
      this.pos += 2;
      this.ignore();
    }
    this.pos += RIGHT_DELIM.length;
    const item = this.thisItem("rightDelim");
    if (trimSpace) {
      this.pos += this.leadingSpaceLength(this.pos);
      this.ignore();
    }
    this.insideAction = false;
    this.tokens.push(item);
    return "text";
  }

  private lexInsideAction(): LexState {
    const [delim] = this.atRightDelim();
    if (delim) {
      if (this.parenDepth === 0) return "rightDelim";
      return this.errorf("unclosed left paren");
    }
    const r = this.next();
    if (r === EOF) return this.errorf("unclosed action");
    if (isSpace(r)) {
      this.backup(); // Put the space back in case it starts " -}}".
      return "space";
    }
    switch (r) {
      case 0x3d: // =
        return this.emit("assign");
      case 0x3a: // :
        if (this.next() !== 0x3d) return this.errorf("expected :=");
        return this.emit("declare");
      case 0x7c: // |
        return this.emit("pipe");
      case 0x22: // "
        return "quote";
      case 0x60: // `
        return "rawQuote";
      case 0x24: // $
        return "variable";
      case 0x27: // '
        return "char";
      case 0x28: // (
        this.parenDepth++;
        return this.emit("leftParen");
      case 0x29: // )
        this.parenDepth--;
        if (this.parenDepth < 0) return this.errorf("unexpected right paren");
        return this.emit("rightParen");
      case 0x2e: {
        // "." starts a field unless a digit follows, as in ".5".
        const following = this.input.charCodeAt(this.pos);
        if (this.pos < this.input.length && (following < 0x30 || following > 0x39)) return "field";
        this.backup();
        return "number";
      }
    }
    if (r === 0x2b || r === 0x2d || (r >= 0x30 && r <= 0x39)) {
      this.backup();
      return "number";
    }
    if (isAlphaNumeric(r)) {
      this.backup();
      return "identifier";
    }
    if (r < 0x7f && r >= 0x20) return this.emit("char");
    return this.errorf(`unrecognized character in action: ${formatRuneForError(r)}`);
  }

  private lexSpace(): LexState {
    let numSpaces = 0;
    while (isSpace(this.peek())) {
      this.next();
      numSpaces++;
    }
    // A space may begin a trim-marked " -}}": leave it for lexRightDelim.
    if (hasRightTrimMarker(this.input, this.pos - 1) && this.input.startsWith(RIGHT_DELIM, this.pos - 1 + 2)) {
      this.backup();
      if (numSpaces === 1) return "rightDelim";
    }
    return this.emit("space");
  }

  private lexIdentifier(): LexState {
    for (;;) {
      const r = this.next();
      if (isAlphaNumeric(r)) continue;
      this.backup();
      const word = this.input.slice(this.start, this.pos);
      if (!this.atTerminator()) return this.errorf(`bad character ${formatRuneForError(r)}`);
      const keyword = KEYWORDS.get(word);
      if (keyword !== undefined) return this.emit(keyword);
      if (word === "true" || word === "false") return this.emit("bool");
      return this.emit("identifier");
    }
  }

  /** Scans ".Name" or "$name"; the "." or "$" has been read. */
  private lexFieldOrVariable(type: "field" | "variable"): LexState {
    if (this.atTerminator()) return this.emit(type === "variable" ? "variable" : "dot");
    let r: number;
    for (;;) {
      r = this.next();
      if (!isAlphaNumeric(r)) {
        this.backup();
        break;
      }
    }
    if (!this.atTerminator()) return this.errorf(`bad character ${formatRuneForError(r)}`);
    return this.emit(type);
  }

  /** Whether the next character may follow an identifier: ".X.Y" splits in two; "$x+2" is an error. */
  private atTerminator(): boolean {
    const r = this.peek();
    if (isSpace(r)) return true;
    switch (r) {
      case EOF:
      case 0x2e: // .
      case 0x2c: // ,
      case 0x7c: // |
      case 0x3a: // :
      case 0x29: // )
      case 0x28: // (
        return true;
    }
    return this.input.startsWith(RIGHT_DELIM, this.pos);
  }

  private lexQuoted(quote: number, unterminated: string, type: TokenType): LexState {
    for (;;) {
      let r = this.next();
      if (r === 0x5c) {
        r = this.next();
        if (r !== EOF && r !== 0x0a) continue;
        return this.errorf(unterminated);
      }
      if (r === EOF || r === 0x0a) return this.errorf(unterminated);
      if (r === quote) return this.emit(type);
    }
  }

  private lexRawQuote(): LexState {
    for (;;) {
      const r = this.next();
      if (r === EOF) return this.errorf("unterminated raw quoted string");
      if (r === 0x60) return this.emit("rawString");
    }
  }

  private lexNumber(): LexState {
    if (!this.scanNumber()) return this.errorf(`bad number syntax: ${goQuote(this.input.slice(this.start, this.pos))}`);
    const sign = this.peek();
    if (sign === 0x2b || sign === 0x2d) {
      // Complex: 1+2i. No spaces, must end in 'i'.
      if (!this.scanNumber() || this.input.charCodeAt(this.pos - 1) !== 0x69) {
        return this.errorf(`bad number syntax: ${goQuote(this.input.slice(this.start, this.pos))}`);
      }
      return this.emit("complex");
    }
    return this.emit("number");
  }

  /** Loose on purpose, like Go's: wrong numbers are rejected when the parser converts them. */
  private scanNumber(): boolean {
    this.accept("+-");
    let digits = "0123456789_";
    if (this.accept("0")) {
      if (this.accept("xX")) digits = "0123456789abcdefABCDEF_";
      else if (this.accept("oO")) digits = "01234567_";
      else if (this.accept("bB")) digits = "01_";
    }
    this.acceptRun(digits);
    if (this.accept(".")) this.acceptRun(digits);
    if (digits.length === 11 && this.accept("eE")) {
      this.accept("+-");
      this.acceptRun("0123456789_");
    }
    if (digits.length === 23 && this.accept("pP")) {
      this.accept("+-");
      this.acceptRun("0123456789_");
    }
    this.accept("i");
    if (isAlphaNumeric(this.peek())) {
      this.next();
      return false;
    }
    return true;
  }
}

/** Go's token String(): how tokens appear in "unexpected ... in ..." messages. */
function tokenToString(token: Token): string {
  if (token.type === "eof") return "EOF";
  if (token.type === "error") return token.val;
  if (KEYWORD_TYPES.has(token.type)) return `<${token.val}>`;
  if (utf8Length(token.val) > 10) return `${goQuote(Array.from(token.val).slice(0, 10).join(""))}...`;
  return goQuote(token.val);
}

// ---------------------------------------------------------------------------------------------
// Parse tree (Go: text/template/parse/node.go)
// ---------------------------------------------------------------------------------------------

interface TextNode {
  readonly kind: "text";
  readonly pos: number;
  readonly text: string;
}

interface ActionNode {
  readonly kind: "action";
  readonly pos: number;
  readonly pipe: PipeNode;
}

interface ListNode {
  readonly kind: "list";
  readonly pos: number;
  readonly nodes: Node[];
}

/** {{if}}, {{range}} and {{with}}: a pipeline, a body and an optional {{else}} body. */
interface BranchNode {
  readonly kind: "if" | "range" | "with";
  readonly pos: number;
  readonly pipe: PipeNode;
  readonly list: ListNode;
  readonly elseList: ListNode | null;
}

interface TemplateNode {
  readonly kind: "template";
  readonly pos: number;
  readonly name: string;
  readonly pipe: PipeNode | null;
}

interface LoopControlNode {
  readonly kind: "break" | "continue";
  readonly pos: number;
}

/** {{end}} and {{else}} only mark where a list stops; they never stay in the tree. */
interface EndNode {
  readonly kind: "end";
  readonly pos: number;
}

interface ElseNode {
  readonly kind: "else";
  readonly pos: number;
}

type ListEndNode = EndNode | ElseNode;

interface PipeNode {
  readonly kind: "pipe";
  readonly pos: number;
  /** True for `$x = ...` (assignment), false for `$x := ...` (declaration). */
  isAssign: boolean;
  readonly decl: VariableNode[];
  readonly cmds: CommandNode[];
}

interface CommandNode {
  readonly kind: "command";
  readonly pos: number;
  readonly args: ArgNode[];
}

interface FieldNode {
  readonly kind: "field";
  readonly pos: number;
  /** `.Config.Env` is ["Config", "Env"]. */
  readonly ident: readonly string[];
}

interface VariableNode {
  readonly kind: "variable";
  readonly pos: number;
  /** `$x.Name` is ["$x", "Name"]. */
  readonly ident: readonly string[];
}

/** Fields applied to something other than dot or a variable, as in `(index .A 0).Name`. */
interface ChainNode {
  readonly kind: "chain";
  readonly pos: number;
  readonly node: ArgNode;
  readonly fields: readonly string[];
}

interface IdentifierNode {
  readonly kind: "identifier";
  readonly pos: number;
  readonly name: string;
}

interface DotNode {
  readonly kind: "dot";
  readonly pos: number;
}

interface NilNode {
  readonly kind: "nil";
  readonly pos: number;
}

interface BoolNode {
  readonly kind: "bool";
  readonly pos: number;
  readonly value: boolean;
}

interface NumberNode {
  readonly kind: "number";
  readonly pos: number;
  /** The literal as written: "0x1F", "1e3", "'a'". */
  readonly text: string;
  readonly isInt: boolean;
  readonly isUint: boolean;
  readonly isFloat: boolean;
  readonly intValue: number;
  readonly floatValue: number;
}

interface StringNode {
  readonly kind: "string";
  readonly pos: number;
  /** The literal as written, quotes included. */
  readonly quoted: string;
  readonly text: string;
}

type ArgNode =
  | FieldNode
  | VariableNode
  | ChainNode
  | IdentifierNode
  | DotNode
  | NilNode
  | BoolNode
  | NumberNode
  | StringNode
  | PipeNode;

type Node = TextNode | ActionNode | ListNode | BranchNode | TemplateNode | LoopControlNode;

type AnyNode = Node | ListEndNode | ArgNode | CommandNode;

/** Go's Node.String(): used in error messages, e.g. `executing "" at <.State.Health>`. */
function nodeToString(node: AnyNode): string {
  switch (node.kind) {
    case "text":
      return node.text;
    case "action":
      return `{{${nodeToString(node.pipe)}}}`;
    case "list":
      return node.nodes.map(nodeToString).join("");
    case "if":
    case "range":
    case "with": {
      let s = `{{${node.kind} ${nodeToString(node.pipe)}}}${nodeToString(node.list)}`;
      if (node.elseList !== null) s += `{{else}}${nodeToString(node.elseList)}`;
      return `${s}{{end}}`;
    }
    case "template":
      return `{{template ${goQuote(node.name)}${node.pipe === null ? "" : ` ${nodeToString(node.pipe)}`}}}`;
    case "break":
    case "continue":
    case "end":
    case "else":
      return `{{${node.kind}}}`;
    case "pipe": {
      let s = "";
      if (node.decl.length > 0) s = node.decl.map(nodeToString).join(", ") + (node.isAssign ? " = " : " := ");
      return s + node.cmds.map(nodeToString).join(" | ");
    }
    case "command":
      return node.args.map((arg) => (arg.kind === "pipe" ? `(${nodeToString(arg)})` : nodeToString(arg))).join(" ");
    case "field":
      return node.ident.map((name) => `.${name}`).join("");
    case "variable":
      return node.ident.join(".");
    case "chain": {
      const base = node.node.kind === "pipe" ? `(${nodeToString(node.node)})` : nodeToString(node.node);
      return base + node.fields.map((name) => `.${name}`).join("");
    }
    case "identifier":
      return node.name;
    case "dot":
      return ".";
    case "nil":
      return "nil";
    case "bool":
      return node.value ? "true" : "false";
    case "number":
      return node.text;
    case "string":
      return node.quoted;
  }
}

// ---------------------------------------------------------------------------------------------
// Parser (Go: text/template/parse/parse.go)
// ---------------------------------------------------------------------------------------------

/** Deeper parenthesised nesting is refused instead of overflowing the JS stack (Go allows 10000). */
const MAX_EXPRESSION_DEPTH = 1000;

class Parser {
  private cursor = 0;
  /** Highest token index read so far: Go reports parse errors at the line of the last token lexed. */
  private furthest = 0;
  /** Variables visible at this point; Go checks variable names at parse time. */
  private vars: string[] = ["$"];
  private rangeDepth = 0;
  private expressionDepth = 0;
  /** Line of the action being parsed, to point back at it when it never closes. */
  private actionLine = 0;
  /** The main template under "" and every {{define}}/{{block}}. */
  readonly trees = new Map<string, ListNode>();

  constructor(
    private readonly tokens: readonly Token[],
    private readonly functionNames: ReadonlySet<string>,
  ) {}

  parse(): void {
    const root: ListNode = { kind: "list", pos: this.peek().pos, nodes: [] };
    while (this.peek().type !== "eof") {
      if (this.peek().type === "leftDelim") {
        const delimIndex = this.cursor;
        this.next();
        if (this.nextNonSpace().type === "define") {
          this.parseDefinition();
          continue;
        }
        this.cursor = delimIndex;
      }
      const node = this.textOrAction();
      if (node.kind === "end" || node.kind === "else") this.errorf(`unexpected ${nodeToString(node)}`);
      root.nodes.push(node);
    }
    this.addTree(TEMPLATE_NAME, root);
  }

  private errorf(message: string): never {
    const line = this.tokens[this.furthest].line;
    throw new TemplateError(`template: ${TEMPLATE_NAME}:${line}: ${message}`, "parse");
  }

  private next(): Token {
    const index = Math.min(this.cursor, this.tokens.length - 1);
    this.cursor = index + 1;
    if (index > this.furthest) this.furthest = index;
    return this.tokens[index];
  }

  private backup(): void {
    this.cursor--;
  }

  private peek(): Token {
    const token = this.next();
    this.backup();
    return token;
  }

  private nextNonSpace(): Token {
    let token = this.next();
    while (token.type === "space") token = this.next();
    return token;
  }

  private peekNonSpace(): Token {
    const token = this.nextNonSpace();
    this.backup();
    return token;
  }

  private expect(type: TokenType, context: string): Token {
    const token = this.nextNonSpace();
    if (token.type !== type) this.unexpected(token, context);
    return token;
  }

  private unexpected(token: Token, context: string): never {
    if (token.type === "error") {
      let extra = "";
      if (this.actionLine !== 0 && this.actionLine !== token.line) {
        extra = ` in action started at ${TEMPLATE_NAME}:${this.actionLine}`;
        if (token.val.endsWith(" action")) extra = extra.slice(" in action".length); // Avoid "action in action".
      }
      this.errorf(`${tokenToString(token)}${extra}`);
    }
    this.errorf(`unexpected ${tokenToString(token)} in ${context}`);
  }

  /** Registers a named template; an empty body never replaces a non-empty one, as in Go. */
  private addTree(name: string, list: ListNode): void {
    const existing = this.trees.get(name);
    if (existing === undefined || isEmptyTree(existing)) {
      this.trees.set(name, list);
      return;
    }
    if (!isEmptyTree(list)) this.errorf(`template: multiple definition of template ${goQuote(name)}`);
  }

  /** Parses a nested template body ({{define}} or {{block}}) with its own variable scope. */
  private parseNamedBody(name: string, context: string): void {
    const savedVars = this.vars;
    const savedRangeDepth = this.rangeDepth;
    this.vars = ["$"];
    this.rangeDepth = 0;
    const [list, end] = this.itemList();
    if (end.kind !== "end") this.errorf(`unexpected ${nodeToString(end)} in ${context}`);
    this.addTree(name, list);
    this.vars = savedVars;
    this.rangeDepth = savedRangeDepth;
  }

  private parseDefinition(): void {
    const context = "define clause";
    const nameToken = this.nextNonSpace();
    if (nameToken.type !== "string" && nameToken.type !== "rawString") this.unexpected(nameToken, context);
    const name = goUnquote(nameToken.val);
    if (name === null) this.errorf("invalid syntax");
    this.expect("rightDelim", context);
    this.parseNamedBody(name, context);
  }

  private itemList(): [ListNode, ListEndNode] {
    const list: ListNode = { kind: "list", pos: this.peekNonSpace().pos, nodes: [] };
    while (this.peekNonSpace().type !== "eof") {
      const node = this.textOrAction();
      if (node.kind === "end" || node.kind === "else") return [list, node];
      list.nodes.push(node);
    }
    this.errorf("unexpected EOF");
  }

  private textOrAction(): Node | ListEndNode {
    const token = this.nextNonSpace();
    switch (token.type) {
      case "text":
        return { kind: "text", pos: token.pos, text: token.val };
      case "leftDelim":
        this.actionLine = token.line;
        try {
          return this.action();
        } finally {
          this.actionLine = 0;
        }
      default:
        this.unexpected(token, "input");
    }
  }

  private action(): Node | ListEndNode {
    const token = this.nextNonSpace();
    switch (token.type) {
      case "block":
        return this.blockControl();
      case "break":
      case "continue":
        return this.loopControl(token);
      case "else":
        return this.elseControl();
      case "end":
        return { kind: "end", pos: this.expect("rightDelim", "end").pos };
      case "if":
      case "range":
      case "with":
        return this.branchControl(token.type);
      case "template":
        return this.templateControl();
    }
    this.backup();
    const start = this.peek();
    return { kind: "action", pos: start.pos, pipe: this.pipeline("command", "rightDelim") };
  }

  private loopControl(token: Token): LoopControlNode {
    const kind = token.type === "break" ? "break" : "continue";
    const next = this.nextNonSpace();
    if (next.type !== "rightDelim") this.unexpected(next, `{{${kind}}}`);
    if (this.rangeDepth === 0) this.errorf(`{{${kind}}} outside {{range}}`);
    return { kind, pos: token.pos };
  }

  private elseControl(): ListEndNode {
    // "{{else if ...}}" and "{{else with ...}}" leave the keyword pending: they read as
    // "{{else}}{{if ...}}...{{end}}" sharing the outer {{end}}.
    const peek = this.peekNonSpace();
    if (peek.type === "if" || peek.type === "with") return { kind: "else", pos: peek.pos };
    return { kind: "else", pos: this.expect("rightDelim", "else").pos };
  }

  private branchControl(kind: "if" | "range" | "with"): BranchNode {
    const varsLength = this.vars.length;
    try {
      const pipe = this.pipeline(kind, "rightDelim");
      if (kind === "range") this.rangeDepth++;
      const [list, next] = this.itemList();
      if (kind === "range") this.rangeDepth--;
      let elseList: ListNode | null = null;
      if (next.kind === "else") {
        const chained = this.peek().type;
        if ((kind === "if" && chained === "if") || (kind === "with" && chained === "with")) {
          this.next();
          elseList = { kind: "list", pos: next.pos, nodes: [this.branchControl(kind)] };
        } else {
          const [body, end] = this.itemList();
          if (end.kind !== "end") this.errorf(`expected end; found ${nodeToString(end)}`);
          elseList = body;
        }
      }
      return { kind, pos: pipe.pos, pipe, list, elseList };
    } finally {
      this.vars.length = varsLength; // Variables declared inside end with the control structure.
    }
  }

  private templateName(token: Token, context: string): string {
    if (token.type !== "string" && token.type !== "rawString") this.unexpected(token, context);
    const name = goUnquote(token.val);
    if (name === null) this.errorf("invalid syntax");
    return name;
  }

  private templateControl(): TemplateNode {
    const context = "template clause";
    const token = this.nextNonSpace();
    const name = this.templateName(token, context);
    let pipe: PipeNode | null = null;
    if (this.nextNonSpace().type !== "rightDelim") {
      this.backup();
      pipe = this.pipeline(context, "rightDelim");
    }
    return { kind: "template", pos: token.pos, name, pipe };
  }

  private blockControl(): TemplateNode {
    const context = "block clause";
    const token = this.nextNonSpace();
    const name = this.templateName(token, context);
    const pipe = this.pipeline(context, "rightDelim");
    this.parseNamedBody(name, context);
    return { kind: "template", pos: token.pos, name, pipe };
  }

  private pipeline(context: string, end: "rightDelim" | "rightParen"): PipeNode {
    const start = this.peekNonSpace();
    const pipe: PipeNode = { kind: "pipe", pos: start.pos, isAssign: false, decl: [], cmds: [] };
    // Declarations or assignments: "$x :=", "$x =", and for range "$i, $v :=".
    for (;;) {
      const variable = this.peekNonSpace();
      if (variable.type !== "variable") break;
      const variableIndex = this.cursor;
      this.next();
      const following = this.peekNonSpace();
      if (following.type === "assign" || following.type === "declare") {
        pipe.isAssign = following.type === "assign";
        this.nextNonSpace();
        pipe.decl.push({ kind: "variable", pos: variable.pos, ident: variable.val.split(".") });
        this.vars.push(variable.val);
      } else if (following.type === "char" && following.val === ",") {
        this.nextNonSpace();
        pipe.decl.push({ kind: "variable", pos: variable.pos, ident: variable.val.split(".") });
        this.vars.push(variable.val);
        if (context === "range" && pipe.decl.length < 2) {
          const after = this.peekNonSpace().type;
          if (after === "variable" || after === "rightDelim" || after === "rightParen") continue;
          this.errorf("range can only initialize variables");
        }
        this.errorf(`too many declarations in ${context}`);
      } else {
        this.cursor = variableIndex; // Just a variable used as a value.
      }
      break;
    }
    for (;;) {
      const token = this.nextNonSpace();
      if (token.type === end) {
        this.checkPipeline(pipe, context);
        return pipe;
      }
      switch (token.type) {
        case "bool":
        case "charConstant":
        case "complex":
        case "dot":
        case "field":
        case "identifier":
        case "number":
        case "nil":
        case "rawString":
        case "string":
        case "variable":
        case "leftParen":
          this.backup();
          pipe.cmds.push(this.command());
          break;
        default:
          this.unexpected(token, context);
      }
    }
  }

  private checkPipeline(pipe: PipeNode, context: string): void {
    if (pipe.cmds.length === 0) this.errorf(`missing value for ${context}`);
    // Only the first command of a pipeline may be a constant: "x | 3" makes no sense.
    pipe.cmds.slice(1).forEach((cmd, i) => {
      const first = cmd.args[0].kind;
      if (first === "bool" || first === "dot" || first === "nil" || first === "number" || first === "string") {
        this.errorf(`non executable command in pipeline stage ${i + 2}`);
      }
    });
  }

  private command(): CommandNode {
    const cmd: CommandNode = { kind: "command", pos: this.peekNonSpace().pos, args: [] };
    for (;;) {
      this.peekNonSpace(); // Skip leading spaces.
      const operand = this.operand();
      if (operand !== null) cmd.args.push(operand);
      const token = this.next();
      if (token.type === "space") continue;
      if (token.type === "rightDelim" || token.type === "rightParen") this.backup();
      else if (token.type !== "pipe") this.unexpected(token, "operand");
      break;
    }
    if (cmd.args.length === 0) this.errorf("empty command");
    return cmd;
  }

  private operand(): ArgNode | null {
    const node = this.term();
    if (node === null) return null;
    if (this.peek().type !== "field") return node;
    const chainPos = this.peek().pos;
    const fields: string[] = [];
    while (this.peek().type === "field") fields.push(this.next().val.slice(1));
    switch (node.kind) {
      case "field":
        return { kind: "field", pos: chainPos, ident: [...node.ident, ...fields] };
      case "variable":
        return { kind: "variable", pos: chainPos, ident: [...node.ident, ...fields] };
      case "bool":
      case "string":
      case "number":
      case "nil":
      case "dot":
        this.errorf(`unexpected . after term ${goQuote(nodeToString(node))}`);
      default:
        return { kind: "chain", pos: chainPos, node, fields };
    }
  }

  private term(): ArgNode | null {
    const token = this.nextNonSpace();
    switch (token.type) {
      case "identifier":
        if (!this.functionNames.has(token.val)) this.errorf(`function ${goQuote(token.val)} not defined`);
        return { kind: "identifier", pos: token.pos, name: token.val };
      case "dot":
        return { kind: "dot", pos: token.pos };
      case "nil":
        return { kind: "nil", pos: token.pos };
      case "variable":
        return this.useVariable(token);
      case "field":
        return { kind: "field", pos: token.pos, ident: token.val.slice(1).split(".") };
      case "bool":
        return { kind: "bool", pos: token.pos, value: token.val === "true" };
      case "charConstant":
      case "complex":
      case "number":
        return this.numberNode(token);
      case "leftParen": {
        if (this.expressionDepth >= MAX_EXPRESSION_DEPTH) this.errorf("max expression depth exceeded");
        this.expressionDepth++;
        try {
          return this.pipeline("parenthesized pipeline", "rightParen");
        } finally {
          this.expressionDepth--;
        }
      }
      case "string":
      case "rawString": {
        const text = goUnquote(token.val);
        if (text === null) this.errorf("invalid syntax");
        return { kind: "string", pos: token.pos, quoted: token.val, text };
      }
    }
    this.backup();
    return null;
  }

  private useVariable(token: Token): VariableNode {
    const ident = token.val.split(".");
    if (!this.vars.includes(ident[0])) this.errorf(`undefined variable ${goQuote(ident[0])}`);
    return { kind: "variable", pos: token.pos, ident };
  }

  /** Go's newNumber: a literal may be usable as int, uint and float at once ("1e3" is all three). */
  private numberNode(token: Token): NumberNode {
    const { pos, val: text } = token;
    if (token.type === "charConstant") {
      const parsed = unquoteChar(text, 1, 0x27);
      if (parsed === null) this.errorf("invalid syntax");
      if (text.slice(parsed.next) !== "'") this.errorf(`malformed character constant: ${text}`);
      const value = parsed.value;
      return { kind: "number", pos, text, isInt: true, isUint: true, isFloat: true, intValue: value, floatValue: value };
    }
    if (token.type === "complex" || text.endsWith("i")) this.errorf(`complex constant ${goQuote(text)} is not supported`);
    let isInt = false;
    let isUint = false;
    let isFloat = false;
    let intValue = 0;
    let floatValue = 0;
    const integer = parseGoInteger(text);
    if (integer !== null) {
      if (integer >= -(2n ** 63n) && integer < 2n ** 63n) {
        isInt = true;
        intValue = Number(integer);
      }
      if (integer >= 0n && integer < 2n ** 64n) isUint = true;
    }
    if (isInt || isUint) {
      isFloat = true;
      floatValue = Number(integer);
    } else {
      const float = parseGoFloat(text);
      if (float !== null) {
        // Parsed as a float but written like an integer: an integer too large for int64.
        if (!/[.eEpP]/.test(text)) this.errorf(`integer overflow: ${goQuote(text)}`);
        isFloat = true;
        floatValue = float;
        if (Number.isInteger(float) && Math.abs(float) < 2 ** 63) {
          isInt = true;
          intValue = float;
        }
        if (Number.isInteger(float) && float >= 0 && float < 2 ** 64) isUint = true;
      }
    }
    if (!isInt && !isUint && !isFloat) this.errorf(`illegal number syntax: ${goQuote(text)}`);
    return { kind: "number", pos, text, isInt, isUint, isFloat, intValue, floatValue };
  }
}

/** Go's IsEmptyTree: nothing but whitespace text. */
function isEmptyTree(list: ListNode): boolean {
  return list.nodes.every((node) => node.kind === "text" && node.text.trim() === "");
}

/** Go's underscoreOK: "_" may only separate digits (or follow a base prefix). */
function underscoresOk(digits: string, afterPrefix: boolean): boolean {
  if (!digits.includes("_")) return true;
  if (digits.includes("__") || digits.endsWith("_")) return false;
  return afterPrefix || !digits.startsWith("_");
}

/** strconv.ParseInt(text, 0, 64) syntax (0x, 0o, 0b, legacy 0755 octal, "_" separators). */
function parseGoInteger(text: string): bigint | null {
  const match = /^([+-]?)(0[xXoObB])?([0-9a-fA-F_]*)$/.exec(text);
  if (match === null) return null;
  const [, sign, basePrefix = ""] = match;
  let digits = match[3];
  let base = basePrefix === "" ? "" : basePrefix[1].toLowerCase();
  if (base === "" && digits.length > 1 && digits.startsWith("0")) {
    // A leading 0 means octal, as in C.
    base = "o";
    digits = digits.slice(1);
  }
  if (digits === "" || !underscoresOk(digits, base !== "")) return null;
  const clean = digits.replaceAll("_", "");
  const valid = base === "x" ? /^[0-9a-fA-F]+$/ : base === "o" ? /^[0-7]+$/ : base === "b" ? /^[01]+$/ : /^[0-9]+$/;
  if (!valid.test(clean)) return null;
  const value = BigInt(base === "" ? clean : `0${base}${clean}`);
  return sign === "-" ? -value : value;
}

/** strconv.ParseFloat syntax: decimal and hexadecimal (0x1p-2) floats, with "_" separators. */
function parseGoFloat(text: string): number | null {
  const decimal = /^[+-]?(?=\.?[0-9])[0-9_]*(\.[0-9_]*)?([eE][+-]?[0-9_]+)?$/.exec(text);
  if (decimal !== null) {
    if (!underscoresOk(text.replace(/^[+-]/, ""), false) || /_\.|\._|_[eE]|[eE][+-]?_/.test(text)) return null;
    const value = Number(text.replaceAll("_", ""));
    return Number.isFinite(value) ? value : null;
  }
  const hex = /^([+-]?)0[xX]([0-9a-fA-F_]*)(?:\.([0-9a-fA-F_]*))?[pP]([+-]?[0-9_]+)$/.exec(text);
  if (hex === null) return null;
  const [, sign, whole, fraction = "", exponent] = hex;
  const mantissaDigits = (whole + fraction).replaceAll("_", "");
  if (mantissaDigits === "") return null;
  const mantissa = Number.parseInt(mantissaDigits, 16) / 16 ** fraction.replaceAll("_", "").length;
  const value = mantissa * 2 ** Number(exponent.replaceAll("_", ""));
  if (!Number.isFinite(value)) return null;
  return sign === "-" ? -value : value;
}

// ---------------------------------------------------------------------------------------------
// Go string literals and quoting (Go: strconv)
// ---------------------------------------------------------------------------------------------

interface UnquotedChar {
  readonly value: number;
  /** \x and octal escapes give bytes, which may combine into UTF-8 sequences. */
  readonly isByte: boolean;
  readonly next: number;
}

/** strconv.UnquoteChar: one character or escape of a quoted literal starting at `i`. */
function unquoteChar(s: string, i: number, quote: number): UnquotedChar | null {
  if (i >= s.length) return null;
  const c = s.codePointAt(i) ?? 0;
  if (c === quote) return null;
  if (c !== 0x5c) return { value: c, isByte: false, next: i + (c > 0xffff ? 2 : 1) };
  if (i + 1 >= s.length) return null;
  const escape = s[i + 1];
  const simple: Readonly<Record<string, number>> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, "\\": 0x5c };
  const simpleValue = simple[escape];
  if (simpleValue !== undefined) return { value: simpleValue, isByte: false, next: i + 2 };
  if (escape === "x" || escape === "u" || escape === "U") {
    const length = escape === "x" ? 2 : escape === "u" ? 4 : 8;
    const hex = s.slice(i + 2, i + 2 + length);
    if (hex.length < length || !/^[0-9a-fA-F]+$/.test(hex)) return null;
    const value = Number.parseInt(hex, 16);
    if (escape === "x") return { value, isByte: true, next: i + 2 + length };
    if (value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) return null;
    return { value, isByte: false, next: i + 2 + length };
  }
  if (escape >= "0" && escape <= "7") {
    const octal = s.slice(i + 1, i + 4);
    if (!/^[0-7]{3}$/.test(octal)) return null;
    const value = Number.parseInt(octal, 8);
    if (value > 255) return null;
    return { value, isByte: true, next: i + 4 };
  }
  if ((escape === "'" || escape === '"') && escape.charCodeAt(0) === quote) {
    return { value: quote, isByte: false, next: i + 2 };
  }
  return null;
}

function pushUtf8(bytes: number[], codePoint: number): void {
  const cp = codePoint >= 0xd800 && codePoint <= 0xdfff ? 0xfffd : codePoint;
  if (cp < 0x80) bytes.push(cp);
  else if (cp < 0x800) bytes.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
  else if (cp < 0x10000) bytes.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  else bytes.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
}

/** strconv.Unquote for "..." and `...` literals; null means Go's "invalid syntax". */
function goUnquote(quoted: string): string | null {
  const quote = quoted.charCodeAt(0);
  if (quoted.length < 2 || quoted.charCodeAt(quoted.length - 1) !== quote) return null;
  const body = quoted.slice(1, -1);
  if (quote === 0x60) return body.includes("`") ? null : body.replaceAll("\r", "");
  if (quote !== 0x22) return null;
  if (!body.includes("\\")) return body.includes('"') || body.includes("\n") ? null : body;
  const bytes: number[] = [];
  for (let i = 0; i < body.length; ) {
    const c = unquoteChar(body, i, quote);
    if (c === null) return null;
    if (c.isByte) bytes.push(c.value);
    else pushUtf8(bytes, c.value);
    i = c.next;
  }
  return Buffer.from(bytes).toString("utf8");
}

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u;

/** unicode.IsPrint / strconv.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space. */
function isPrint(r: number): boolean {
  if (r < 0x80) return r >= 0x20 && r < 0x7f;
  if (r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff)) return false;
  return PRINTABLE.test(String.fromCodePoint(r));
}

function hex(value: number, digits: number, upper = false): string {
  const s = value.toString(16).padStart(digits, "0");
  return upper ? s.toUpperCase() : s;
}

/** strconv.Quote (and QuoteToASCII, QuoteRune): Go-syntax quoting with Go's escapes. */
function goQuote(s: string, asciiOnly = false, quote = 0x22): string {
  const q = String.fromCharCode(quote);
  let out = q;
  for (const ch of s) {
    const r = ch.codePointAt(0) ?? 0;
    if (r === quote || r === 0x5c) {
      out += `\\${ch}`;
      continue;
    }
    if (asciiOnly ? r < 0x80 && isPrint(r) : isPrint(r)) {
      out += ch;
      continue;
    }
    switch (r) {
      case 7:
        out += "\\a";
        break;
      case 8:
        out += "\\b";
        break;
      case 12:
        out += "\\f";
        break;
      case 10:
        out += "\\n";
        break;
      case 13:
        out += "\\r";
        break;
      case 9:
        out += "\\t";
        break;
      case 11:
        out += "\\v";
        break;
      default:
        if (r < 0x20 || r === 0x7f) out += `\\x${hex(r, 2)}`;
        else if (r >= 0xd800 && r <= 0xdfff) out += "\\ufffd";
        else if (r < 0x10000) out += `\\u${hex(r, 4)}`;
        else out += `\\U${hex(r, 8)}`;
    }
  }
  return out + q;
}

/** fmt's %#U, used by the lexer: U+007D '}'. */
function formatRuneForError(r: number): string {
  const code = `U+${hex(Math.max(r, 0), 4, true)}`;
  return isPrint(r) ? `${code} '${String.fromCodePoint(r)}'` : code;
}

/** strconv.CanBackquote: whether %#q may use a raw `...` string. */
function canBackquote(s: string): boolean {
  for (const ch of s) {
    const r = ch.codePointAt(0) ?? 0;
    if (r === 0x60 || r === 0xfeff || (r >= 0xd800 && r <= 0xdfff)) return false;
    if ((r < 0x20 && r !== 0x09) || r === 0x7f) return false;
  }
  return true;
}

function utf8Length(s: string): number {
  return isAscii(s) ? s.length : Buffer.byteLength(s, "utf8");
}

function isAscii(s: string): boolean {
  return /^[\x00-\x7f]*$/.test(s);
}

function runeCount(s: string): number {
  let count = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        count--;
        i++;
      }
    }
  }
  return count;
}

/** Go compares strings bytewise (code point order); JS's < compares UTF-16 units. */
function compareGoStrings(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const xSurrogate = x >= 0xd800 && x <= 0xdfff;
    const ySurrogate = y >= 0xd800 && y <= 0xdfff;
    // A surrogate encodes a character above U+FFFF, which sorts after every BMP character.
    if (xSurrogate !== ySurrogate) return xSurrogate ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

// ---------------------------------------------------------------------------------------------
// Values: how JS data stand in for Go values
// ---------------------------------------------------------------------------------------------

type JsObject = Record<string, unknown>;

function isObject(value: unknown): value is JsObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Array.isArray, narrowing to unknown elements rather than any. */
function isList(value: unknown): value is readonly unknown[] {
  return Array.isArray(value);
}

/** Integers that a Go int holds; larger integral numbers are treated as float64. */
function isGoInt(value: number): boolean {
  return Number.isInteger(value) && Math.abs(value) < 2 ** 63;
}

/** A property's value, or undefined when the key is absent (own properties only, never the prototype). */
function ownValue(object: JsObject, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(object, key) ? object[key] : undefined;
}

/** The map entries of an object: functions are methods, not entries, and undefined means absent. */
function entryKeys(object: JsObject): string[] {
  return Object.keys(object).filter((key) => {
    const value = object[key];
    return value !== undefined && typeof value !== "function";
  });
}

function sortedEntryKeys(object: JsObject): string[] {
  return entryKeys(object).sort(compareGoStrings);
}

/** The Go type a JS value stands for, as Go names it in messages and %T. */
function goTypeName(value: unknown): string {
  if (value === undefined) return "<nil>";
  if (value === null) return "interface {}";
  switch (typeof value) {
    case "string":
      return "string";
    case "number":
      return isGoInt(value) ? "int" : "float64";
    case "boolean":
      return "bool";
    case "bigint":
      return "int64";
    case "function":
      return "func";
    case "object":
      break;
    default:
      return typeof value;
  }
  if (isList(value)) {
    return value.length > 0 && value.every((item) => typeof item === "string") ? "[]string" : "[]interface {}";
  }
  if (!isObject(value)) return "interface {}";
  const keys = entryKeys(value);
  const allStrings = keys.length > 0 && keys.every((key) => typeof value[key] === "string");
  return allStrings ? "map[string]string" : "map[string]interface {}";
}

/** Go's truth for if/with/and/or/not: non-zero, non-empty, non-nil. */
function isTrue(value: unknown): boolean {
  if (value === undefined || value === null) return false;
  switch (typeof value) {
    case "string":
      return value.length > 0;
    case "number":
      return value !== 0;
    case "boolean":
      return value;
    case "bigint":
      return value !== 0n;
    case "object":
      if (isList(value)) return value.length > 0;
      return isObject(value) ? entryKeys(value).length > 0 : true;
    default:
      return true;
  }
}

// ---------------------------------------------------------------------------------------------
// Execution (Go: text/template/exec.go)
// ---------------------------------------------------------------------------------------------

/** Marks "no value came down the pipeline", as opposed to an undefined value that did. */
const MISSING: unique symbol = Symbol("missing");

/** Limit on nested {{template}} calls, below where the JS stack would overflow (Go allows 100000). */
const MAX_TEMPLATE_DEPTH = 1000;

/** Thrown by {{break}} and {{continue}}, caught by the enclosing {{range}}. */
class LoopSignal {
  constructor(readonly kind: "break" | "continue") {}
}
const BREAK = new LoopSignal("break");
const CONTINUE = new LoopSignal("continue");

/** How a function parameter takes its argument, mirroring the Go parameter types involved. */
type ParamKind =
  /** reflect.Value: anything, including "no value" (undefined). */
  | "value"
  /** interface{}: anything; "no value" becomes nil (null). */
  | "any"
  | "string"
  | "int"
  /** []string, as taken by Docker's join. */
  | "stringSlice";

interface TemplateFunction {
  readonly params: readonly ParamKind[];
  /** Type of the trailing variadic arguments, if the function is variadic. */
  readonly variadic?: ParamKind;
  /** and/or short-circuit and call invokes a function value: the evaluator handles them itself. */
  readonly special?: "and" | "or" | "call";
  readonly impl: (args: readonly unknown[]) => unknown;
}

type FunctionTable = ReadonlyMap<string, TemplateFunction>;

/** An error returned by a template function; the evaluator reports it as "error calling NAME: ...". */
class FunctionError extends Error {}

interface Variable {
  readonly name: string;
  value: unknown;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Go's ErrorContext position: 1-based line, byte offset within the line. */
function locate(source: string, pos: number): { line: number; column: number } {
  const before = source.slice(0, pos);
  const lastNewline = before.lastIndexOf("\n");
  return {
    line: 1 + countNewlines(before, 0, before.length),
    column: utf8Length(lastNewline === -1 ? before : before.slice(lastNewline + 1)),
  };
}

class Execution {
  output = "";
  /** Node being evaluated, for error messages (Go's state.node). */
  private node: AnyNode | null = null;
  /** Push-down stack of variables; "$" is the data the template runs on. */
  private vars: Variable[];
  private depth = 0;
  private templateName = TEMPLATE_NAME;

  constructor(
    private readonly source: string,
    private readonly trees: ReadonlyMap<string, ListNode>,
    private readonly functions: FunctionTable,
    root: unknown,
  ) {
    this.vars = [{ name: "$", value: root }];
  }

  private errorf(message: string): never {
    if (this.node === null) throw new TemplateError(`template: ${this.templateName}: ${message}`, "execute");
    const { line, column } = locate(this.source, this.node.pos);
    throw new TemplateError(
      `template: ${TEMPLATE_NAME}:${line}:${column}: executing ${goQuote(this.templateName)} at <${nodeToString(this.node)}>: ${message}`,
      "execute",
    );
  }

  walk(dot: unknown, node: Node): void {
    this.node = node;
    switch (node.kind) {
      case "action": {
        const value = this.evalPipeline(dot, node.pipe);
        // An action that declares variables prints nothing.
        if (node.pipe.decl.length === 0) this.printValue(node, value);
        return;
      }
      case "break":
        throw BREAK;
      case "continue":
        throw CONTINUE;
      case "if":
      case "with":
        this.walkIfOrWith(dot, node);
        return;
      case "list":
        for (const child of node.nodes) this.walk(dot, child);
        return;
      case "range":
        this.walkRange(dot, node);
        return;
      case "template":
        this.walkTemplate(dot, node);
        return;
      case "text":
        this.output += node.text;
        return;
    }
  }

  private walkIfOrWith(dot: unknown, node: BranchNode): void {
    const mark = this.vars.length;
    try {
      const value = this.evalPipeline(dot, node.pipe);
      if (isTrue(value)) this.walk(node.kind === "with" ? value : dot, node.list);
      else if (node.elseList !== null) this.walk(dot, node.elseList);
    } finally {
      this.vars.length = mark;
    }
  }

  private walkRange(dot: unknown, node: BranchNode): void {
    this.node = node;
    const outerMark = this.vars.length;
    try {
      const value = this.evalPipeline(dot, node.pipe); // Pushes the declared variables.
      const mark = this.vars.length;
      const { decl, isAssign } = node.pipe;
      const iterate = (index: unknown, element: unknown): void => {
        if (decl.length > 0) {
          // With one variable it gets the element; with two, the index (or key) then the element.
          if (isAssign) this.setVar(decl[0].ident[0], decl.length > 1 ? index : element);
          else this.vars[this.vars.length - 1].value = element;
        }
        if (decl.length > 1) {
          if (isAssign) this.setVar(decl[1].ident[0], element);
          else this.vars[this.vars.length - 2].value = index;
        }
        try {
          this.walk(element, node.list);
        } catch (error) {
          if (error !== CONTINUE) throw error;
        } finally {
          this.vars.length = mark;
        }
      };
      if (isList(value)) {
        if (value.length > 0) {
          for (let i = 0; i < value.length; i++) iterate(i, value[i] ?? null);
          return;
        }
      } else if (isObject(value)) {
        // Go iterates maps in sorted key order.
        const keys = sortedEntryKeys(value);
        if (keys.length > 0) {
          for (const key of keys) iterate(key, value[key]);
          return;
        }
      } else if (typeof value === "number" && isGoInt(value)) {
        // Go 1.22: ranging over an integer n yields 0..n-1.
        if (decl.length > 1) this.errorf(`can't use ${formatValue(value)} to iterate over more than one variable`);
        if (value > 0) {
          for (let i = 0; i < value; i++) iterate(undefined, i);
          return;
        }
      } else if (value !== undefined && value !== null) {
        this.errorf(`range can't iterate over ${formatValue(value)}`);
      }
      // Empty or nil: run the {{else}} branch, if any.
      if (node.elseList !== null) this.walk(dot, node.elseList);
    } catch (error) {
      if (error !== BREAK) throw error;
    } finally {
      this.vars.length = outerMark;
    }
  }

  private walkTemplate(dot: unknown, node: TemplateNode): void {
    this.node = node;
    const tree = this.trees.get(node.name);
    if (tree === undefined) this.errorf(`template ${goQuote(node.name)} not defined`);
    if (this.depth >= MAX_TEMPLATE_DEPTH) this.errorf(`exceeded maximum template depth (${MAX_TEMPLATE_DEPTH})`);
    const newDot = this.evalPipeline(dot, node.pipe); // Variables it declares stay with the caller.
    const savedVars = this.vars;
    const savedName = this.templateName;
    // No dynamic scoping: the called template sees only "$", set to its dot.
    this.vars = [{ name: "$", value: newDot }];
    this.templateName = node.name;
    this.depth++;
    try {
      this.walk(newDot, tree);
    } finally {
      this.depth--;
      this.vars = savedVars;
      this.templateName = savedName;
    }
  }

  private printValue(node: Node, value: unknown): void {
    this.node = node;
    if (typeof value === "string") this.output += value;
    else this.output += value === undefined || value === null ? "<no value>" : formatValue(value);
  }

  private evalPipeline(dot: unknown, pipe: PipeNode | null): unknown {
    if (pipe === null) return undefined;
    this.node = pipe;
    let value: unknown = MISSING;
    for (const cmd of pipe.cmds) {
      value = this.evalCommand(dot, cmd, value);
      // Go unwraps interface values here, turning a nil found in the data into "no value".
      if (value === null) value = undefined;
    }
    for (const variable of pipe.decl) {
      if (pipe.isAssign) this.setVar(variable.ident[0], value);
      else this.vars.push({ name: variable.ident[0], value });
    }
    return value;
  }

  private evalCommand(dot: unknown, cmd: CommandNode, final: unknown): unknown {
    const first = cmd.args[0];
    switch (first.kind) {
      case "field":
        return this.evalFieldNode(dot, first, cmd.args, final);
      case "chain":
        return this.evalChainNode(dot, first, cmd.args, final);
      case "identifier":
        return this.evalFunction(dot, first, cmd, cmd.args, final);
      case "pipe":
        // Parenthesised pipeline: its arguments are all inside, so nothing may follow it.
        this.notAFunction(cmd.args, final);
        return this.evalPipeline(dot, first);
      case "variable":
        return this.evalVariableNode(dot, first, cmd.args, final);
    }
    this.node = first;
    this.notAFunction(cmd.args, final);
    switch (first.kind) {
      case "bool":
        return first.value;
      case "dot":
        return dot;
      case "nil":
        return this.errorf("nil is not a command");
      case "number":
        return this.idealConstant(first);
      case "string":
        return first.text;
    }
  }

  private notAFunction(args: readonly ArgNode[], final: unknown): void {
    if (args.length > 1 || final !== MISSING) this.errorf(`can't give argument to non-function ${nodeToString(args[0])}`);
  }

  /** A number literal where no type is expected: its spelling decides between int and float64. */
  private idealConstant(constant: NumberNode): unknown {
    this.node = constant;
    const { text } = constant;
    const isHexInt = /^[+-]?0[xX]/.test(text) && !/[pP]/.test(text);
    if (constant.isFloat && !isHexInt && !text.startsWith("'") && /[.eEpP]/.test(text)) return constant.floatValue;
    if (constant.isInt) return constant.intValue;
    if (constant.isUint) this.errorf(`${text} overflows int`);
    return undefined;
  }

  private evalFieldNode(dot: unknown, field: FieldNode, args: readonly ArgNode[], final: unknown): unknown {
    this.node = field;
    return this.evalFieldChain(dot, dot, field, field.ident, args, final);
  }

  private evalChainNode(dot: unknown, chain: ChainNode, args: readonly ArgNode[] | null, final: unknown): unknown {
    this.node = chain;
    if (chain.node.kind === "nil") this.errorf(`indirection through explicit nil in ${nodeToString(chain)}`);
    const receiver = this.evalArg(dot, "untyped", chain.node);
    return this.evalFieldChain(dot, receiver, chain, chain.fields, args, final);
  }

  private evalVariableNode(dot: unknown, variable: VariableNode, args: readonly ArgNode[] | null, final: unknown): unknown {
    this.node = variable;
    const value = this.varValue(variable.ident[0]);
    if (variable.ident.length === 1) {
      if (args !== null) this.notAFunction(args, final);
      return value;
    }
    return this.evalFieldChain(dot, value, variable, variable.ident.slice(1), args, final);
  }

  private evalFieldChain(
    dot: unknown,
    receiver: unknown,
    node: AnyNode,
    ident: readonly string[],
    args: readonly ArgNode[] | null,
    final: unknown,
  ): unknown {
    let current = receiver;
    for (let i = 0; i < ident.length - 1; i++) current = this.evalField(dot, ident[i], node, null, MISSING, current);
    // Only the last name gets the arguments, in case it is a method.
    return this.evalField(dot, ident[ident.length - 1], node, args, final, current);
  }

  private evalField(
    dot: unknown,
    fieldName: string,
    node: AnyNode,
    args: readonly ArgNode[] | null,
    final: unknown,
    receiver: unknown,
  ): unknown {
    // A missing value has no fields, but that is not an error: .A.B on a missing .A is "<no value>".
    if (receiver === undefined) return undefined;
    if (receiver === null) this.errorf(`nil pointer evaluating interface {}.${fieldName}`);
    if (!isObject(receiver)) this.errorf(`can't evaluate field ${fieldName} in type ${goTypeName(receiver)}`);
    const value = ownValue(receiver, fieldName);
    if (typeof value === "function") return this.callMethod(dot, value, receiver, node, fieldName, args, final);
    const hasArgs = (args !== null && args.length > 1) || final !== MISSING;
    if (hasArgs) this.errorf(`${fieldName} is not a method but has arguments`);
    return value;
  }

  /** A function-valued property acts as a Go method: `.Label "com.example"` calls it with "com.example". */
  private callMethod(
    dot: unknown,
    method: Function,
    receiver: JsObject,
    node: AnyNode,
    name: string,
    args: readonly ArgNode[] | null,
    final: unknown,
  ): unknown {
    const callArgs = args === null ? [] : args.slice(1);
    const numIn = callArgs.length + (final !== MISSING ? 1 : 0);
    if (numIn !== method.length) this.errorf(`wrong number of args for ${name}: want ${method.length} got ${numIn}`);
    const argv = callArgs.map((arg) => this.evalArg(dot, "any", arg));
    if (final !== MISSING) argv.push(this.validateType(final, "any"));
    try {
      return Reflect.apply(method, receiver, argv);
    } catch (error) {
      this.node = node;
      return this.errorf(`error calling ${name}: ${errorMessage(error)}`);
    }
  }

  private evalFunction(
    dot: unknown,
    node: IdentifierNode,
    cmd: AnyNode,
    args: readonly ArgNode[] | null,
    final: unknown,
  ): unknown {
    this.node = node;
    const fn = this.functions.get(node.name);
    if (fn === undefined) this.errorf(`${goQuote(node.name)} is not a defined function`);
    return this.evalCall(dot, fn, cmd, node.name, args, final);
  }

  /** `args` starts with the function's own node, as in Go; `final` is the value piped in, if any. */
  private evalCall(
    dot: unknown,
    fn: TemplateFunction,
    node: AnyNode,
    name: string,
    args: readonly ArgNode[] | null,
    final: unknown,
  ): unknown {
    const callArgs = args === null ? [] : args.slice(1);
    const hasFinal = final !== MISSING;
    const numIn = callArgs.length + (hasFinal ? 1 : 0);
    const numParams = fn.params.length;
    let numFixed = callArgs.length;
    if (fn.variadic !== undefined) {
      numFixed = numParams;
      if (numIn < numFixed) {
        this.errorf(`wrong number of args for ${name}: want at least ${numParams} got ${callArgs.length}`);
      }
    } else if (numIn !== numParams) {
      this.errorf(`wrong number of args for ${name}: want ${numParams} got ${numIn}`);
    }

    if (fn.special === "and" || fn.special === "or") {
      // Short-circuit: arguments are evaluated only until the result is known.
      let value: unknown = undefined;
      for (const arg of callArgs) {
        value = this.evalArg(dot, "value", arg);
        if (isTrue(value) === (fn.special === "or")) return value;
      }
      return hasFinal ? final : value;
    }

    const argv: unknown[] = [];
    let i = 0;
    for (; i < numFixed && i < callArgs.length; i++) argv.push(this.evalArg(dot, fn.params[i], callArgs[i]));
    if (fn.variadic !== undefined) {
      for (; i < callArgs.length; i++) argv.push(this.evalArg(dot, fn.variadic, callArgs[i]));
    }
    if (hasFinal) {
      let kind: ParamKind;
      if (fn.variadic === undefined) kind = fn.params[numParams - 1];
      else kind = numIn - 1 < numFixed ? fn.params[numIn - 1] : fn.variadic;
      argv.push(this.validateType(final, kind));
    }

    try {
      if (fn.special === "call") {
        const callee = callArgs.length === 0 ? String(final) : nodeToString(callArgs[0]);
        return callFunctionValue(callee, argv[0], argv.slice(1));
      }
      return fn.impl(argv);
    } catch (error) {
      if (!(error instanceof FunctionError)) throw error;
      this.node = node;
      return this.errorf(`error calling ${name}: ${error.message}`);
    }
  }

  private evalArg(dot: unknown, kind: ParamKind | "untyped", node: ArgNode): unknown {
    this.node = node;
    switch (node.kind) {
      case "dot":
        return this.validateType(dot, kind);
      case "nil":
        if (kind === "untyped" || kind === "value") return undefined;
        if (kind === "any" || kind === "stringSlice") return null;
        return this.errorf(`cannot assign nil to ${kind}`);
      case "field":
        return this.validateType(this.evalFieldNode(dot, node, [node], MISSING), kind);
      case "variable":
        return this.validateType(this.evalVariableNode(dot, node, null, MISSING), kind);
      case "pipe":
        return this.validateType(this.evalPipeline(dot, node), kind);
      case "identifier":
        return this.validateType(this.evalFunction(dot, node, node, null, MISSING), kind);
      case "chain":
        return this.validateType(this.evalChainNode(dot, node, null, MISSING), kind);
    }
    // A literal: its spelling must suit the parameter type.
    switch (kind) {
      case "untyped":
      case "value":
      case "any":
        if (node.kind === "number") return this.idealConstant(node);
        return node.kind === "bool" ? node.value : node.text;
      case "string":
        if (node.kind === "string") return node.text;
        return this.errorf(`expected string; found ${nodeToString(node)}`);
      case "int":
        if (node.kind === "number" && node.isInt) return node.intValue;
        return this.errorf(`expected integer; found ${nodeToString(node)}`);
      case "stringSlice":
        return this.errorf(`can't handle ${nodeToString(node)} for arg of type []string`);
    }
  }

  /** Go's validateType: checks a computed value against a parameter type. */
  private validateType(value: unknown, kind: ParamKind | "untyped"): unknown {
    switch (kind) {
      case "untyped":
      case "value":
        return value;
      case "any":
        return value === undefined ? null : value;
      case "string":
        if (typeof value === "string") return value;
        if (value === undefined) this.errorf("invalid value; expected string");
        return this.errorf(`wrong type for value; expected string; got ${goTypeName(value)}`);
      case "int":
        if (typeof value === "number" && isGoInt(value)) return value;
        if (value === undefined) this.errorf("invalid value; expected int");
        return this.errorf(`wrong type for value; expected int; got ${goTypeName(value)}`);
      case "stringSlice":
        if (value === undefined || value === null) return null; // A nil slice.
        if (isList(value) && value.every((item) => typeof item === "string")) return value;
        return this.errorf(`wrong type for value; expected []string; got ${goTypeName(value)}`);
    }
  }

  private varValue(name: string): unknown {
    for (let i = this.vars.length - 1; i >= 0; i--) {
      if (this.vars[i].name === name) return this.vars[i].value;
    }
    return this.errorf(`undefined variable: ${name}`);
  }

  private setVar(name: string, value: unknown): void {
    for (let i = this.vars.length - 1; i >= 0; i--) {
      if (this.vars[i].name === name) {
        this.vars[i].value = value;
        return;
      }
    }
    this.errorf(`undefined variable: ${name}`);
  }
}

/** The `call` builtin: calls a function value found in the data. */
function callFunctionValue(name: string, fn: unknown, args: readonly unknown[]): unknown {
  if (fn === undefined || fn === null) throw new FunctionError("call of nil");
  if (typeof fn !== "function") throw new FunctionError(`non-function ${name} of type ${goTypeName(fn)}`);
  if (args.length !== fn.length) {
    throw new FunctionError(`wrong number of args for ${name}: got ${args.length} want ${fn.length}`);
  }
  try {
    return Reflect.apply(fn, undefined, args.map((arg) => (arg === undefined ? null : arg)));
  } catch (error) {
    throw new FunctionError(errorMessage(error));
  }
}

// ---------------------------------------------------------------------------------------------
// Built-in functions (Go: text/template/funcs.go)
// ---------------------------------------------------------------------------------------------

function asString(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function asInt(value: unknown): number {
  return typeof value === "number" ? value : 0;
}

function goLength(item: unknown): number {
  if (item === null) throw new FunctionError("len of nil pointer");
  // Go's len of an absent value fails inside reflect; its message is kept for fidelity.
  if (item === undefined) throw new FunctionError("reflect: call of reflect.Value.Type on zero Value");
  if (typeof item === "string") return utf8Length(item); // Go counts bytes.
  if (isList(item)) return item.length;
  if (isObject(item)) return entryKeys(item).length;
  throw new FunctionError(`len of type ${goTypeName(item)}`);
}

/** Go's indexArg: an int within 0..length (Go lets length itself through here; see goIndex). */
function indexArg(index: unknown, length: number): number {
  if (index === undefined || index === null) throw new FunctionError("cannot index slice/array with nil");
  if (typeof index !== "number" || !isGoInt(index)) {
    throw new FunctionError(`cannot index slice/array with type ${goTypeName(index)}`);
  }
  if (index < 0 || index > length) throw new FunctionError(`index out of range: ${index}`);
  return index;
}

/** The zero value Go's index returns for a missing key: "" for string maps such as Labels, else nil. */
function missingMapValue(map: JsObject): unknown {
  return entryKeys(map).every((key) => typeof map[key] === "string") ? "" : null;
}

function goIndex(item: unknown, indexes: readonly unknown[]): unknown {
  if (item === undefined || item === null) throw new FunctionError("index of untyped nil");
  let current: unknown = item;
  for (const rawIndex of indexes) {
    const index = rawIndex === null ? undefined : rawIndex;
    if (current === null || current === undefined) throw new FunctionError("index of nil pointer");
    if (typeof current === "string") {
      const bytes = Buffer.from(current, "utf8"); // Go indexes strings by byte.
      const x = indexArg(index, bytes.length);
      // Go's indexArg accepts x == length and reflect then panics with this message.
      if (x === bytes.length) throw new FunctionError("reflect: string index out of range");
      current = bytes[x];
    } else if (isList(current)) {
      const x = indexArg(index, current.length);
      if (x === current.length) throw new FunctionError("reflect: slice index out of range");
      current = current[x] ?? null;
    } else if (isObject(current)) {
      if (index === undefined) throw new FunctionError("value is nil; should be of type string");
      if (typeof index !== "string") throw new FunctionError(`value has type ${goTypeName(index)}; should be string`);
      const value = ownValue(current, index);
      current = value === undefined || typeof value === "function" ? missingMapValue(current) : value;
    } else {
      throw new FunctionError(`can't index item of type ${goTypeName(current)}`);
    }
  }
  return current;
}

function goSlice(item: unknown, indexes: readonly unknown[]): unknown {
  if (item === undefined || item === null) throw new FunctionError("slice of untyped nil");
  if (indexes.length > 3) throw new FunctionError(`too many slice indexes: ${indexes.length}`);
  let length: number;
  if (typeof item === "string") {
    if (indexes.length === 3) throw new FunctionError("cannot 3-index slice a string");
    length = utf8Length(item);
  } else if (isList(item)) {
    length = item.length;
  } else {
    throw new FunctionError(`can't slice item of type ${goTypeName(item)}`);
  }
  const bounds = [0, length, length];
  indexes.forEach((index, i) => {
    bounds[i] = indexArg(index === null ? undefined : index, length);
  });
  if (bounds[0] > bounds[1]) throw new FunctionError(`invalid slice index: ${bounds[0]} > ${bounds[1]}`);
  if (indexes.length === 3 && bounds[1] > bounds[2]) {
    throw new FunctionError(`invalid slice index: ${bounds[1]} > ${bounds[2]}`);
  }
  if (isList(item)) return item.slice(bounds[0], bounds[1]);
  if (typeof item === "string" && isAscii(item)) return item.slice(bounds[0], bounds[1]);
  return Buffer.from(asString(item), "utf8").subarray(bounds[0], bounds[1]).toString("utf8"); // Go slices bytes.
}

type BasicKind = "bool" | "number" | "string" | "invalid";

/** Go's basicKind. Numbers are one kind: JS cannot tell Go's int from float64 apart. */
function basicKind(value: unknown): BasicKind {
  switch (typeof value) {
    case "boolean":
      return "bool";
    case "number":
    case "bigint":
      return "number";
    case "string":
      return "string";
    default:
      return "invalid";
  }
}

/** reflect.Kind names that decide whether two non-basic values may be compared at all. */
function reflectKind(value: unknown): string {
  if (value === undefined || value === null) return "invalid";
  if (typeof value === "function") return "func";
  return isList(value) ? "slice" : "map";
}

function goEq(first: unknown, others: readonly unknown[]): boolean {
  const a = first === null ? undefined : first;
  if (others.length === 0) throw new FunctionError("missing argument for comparison");
  const kindA = basicKind(a);
  for (const other of others) {
    const b = other === null ? undefined : other;
    const kindB = basicKind(b);
    if (kindA !== kindB) {
      if (a !== undefined && b !== undefined) {
        throw new FunctionError(`incompatible types for comparison: ${goTypeName(a)} and ${goTypeName(b)}`);
      }
      continue;
    }
    if (kindA !== "invalid") {
      if (a === b) return true;
      continue;
    }
    // Neither is a basic value: only nil compares; slices, maps and funcs are not comparable in Go.
    const reflectA = reflectKind(a);
    const reflectB = reflectKind(b);
    if (reflectA !== reflectB && reflectA !== "invalid" && reflectB !== "invalid") {
      throw new FunctionError(sprintf("non-comparable types %s: %v, %s: %v", [a, goTypeName(a), goTypeName(b), b]));
    }
    if (a === undefined || b === undefined) {
      if (a === b) return true;
      continue;
    }
    throw new FunctionError(sprintf("non-comparable type %s: %v", [b, goTypeName(b)]));
  }
  return false;
}

function goLess(first: unknown, second: unknown): boolean {
  const a = first === null ? undefined : first;
  const b = second === null ? undefined : second;
  const kindA = basicKind(a);
  const kindB = basicKind(b);
  if (kindA === "invalid" || kindB === "invalid") throw new FunctionError("invalid type for comparison");
  if (kindA !== kindB) throw new FunctionError(`incompatible types for comparison: ${goTypeName(a)} and ${goTypeName(b)}`);
  if (kindA === "bool") throw new FunctionError("invalid type for comparison");
  if (typeof a === "string" && typeof b === "string") return compareGoStrings(a, b) < 0;
  return Number(a) < Number(b);
}

/** html, js and urlquery print their arguments like Sprint, except that nil shows as "<no value>". */
function printArgs(args: readonly unknown[]): string {
  if (args.length === 1 && typeof args[0] === "string") return args[0];
  return sprint(args.map((arg) => (arg === undefined || arg === null ? "<no value>" : arg)));
}

function htmlEscape(s: string): string {
  return s.replace(/[\0"'&<>]/g, (c) => HTML_ESCAPES[c] ?? c);
}
const HTML_ESCAPES: Readonly<Record<string, string>> = {
  "\0": "\uFFFD",
  '"': "&#34;",
  "'": "&#39;",
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
};

function jsEscape(s: string): string {
  let out = "";
  for (const ch of s) {
    const r = ch.codePointAt(0) ?? 0;
    if (r >= 0x80) {
      out += isPrint(r) ? ch : `\\u${hex(r, 4, true)}`;
      continue;
    }
    switch (ch) {
      case "\\":
        out += "\\\\";
        break;
      case "'":
        out += "\\'";
        break;
      case '"':
        out += '\\"';
        break;
      case "<":
        out += "\\u003C";
        break;
      case ">":
        out += "\\u003E";
        break;
      case "&":
        out += "\\u0026";
        break;
      case "=":
        out += "\\u003D";
        break;
      default:
        out += r < 0x20 ? `\\u00${hex(r, 2, true)}` : ch;
    }
  }
  return out;
}

/** url.QueryEscape. */
function urlQueryEscape(s: string): string {
  let out = "";
  for (const byte of Buffer.from(s, "utf8")) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(c)) out += c;
    else if (byte === 0x20) out += "+";
    else out += `%${hex(byte, 2, true)}`;
  }
  return out;
}

// --- Docker's functions (docker/cli templates/templates.go) ---------------------------------

/** strings.ToLower / ToUpper map rune by rune and never change the number of runes. */
function mapRunes(s: string, mapRune: (ch: string) => string): string {
  let out = "";
  for (const ch of s) out += mapRune(ch);
  return out;
}

function goToLower(s: string): string {
  if (isAscii(s)) return s.toLowerCase();
  return mapRunes(s, (ch) => String.fromCodePoint(ch.toLowerCase().codePointAt(0) ?? 0));
}

function goToUpper(s: string): string {
  if (isAscii(s)) return s.toUpperCase();
  return mapRunes(s, (ch) => {
    const upper = ch.toUpperCase();
    return runeCount(upper) === 1 ? upper : ch; // "ß" has no single-rune upper case: Go keeps it.
  });
}

/** strings.Title's word boundaries: every ASCII non-alphanumeric, and the non-ASCII spaces. */
function isTitleSeparator(r: number): boolean {
  if (r < 0x80) return !isAlphaNumeric(r);
  if (isAlphaNumeric(r)) return false;
  return /^\s$/u.test(String.fromCodePoint(r));
}

function goTitle(s: string): string {
  let previous = 0x20;
  return mapRunes(s, (ch) => {
    const r = ch.codePointAt(0) ?? 0;
    const separatorBefore = isTitleSeparator(previous);
    previous = r;
    if (!separatorBefore) return ch;
    const upper = ch.toUpperCase();
    return runeCount(upper) === 1 ? upper : ch;
  });
}

function goSplit(s: string, separator: string): string[] {
  return separator === "" ? Array.from(s) : s.split(separator);
}

function padWithSpace(source: string, prefix: number, suffix: number): string {
  if (source === "") return source;
  if (prefix < 0 || suffix < 0) throw new FunctionError("strings: negative Repeat count");
  return " ".repeat(prefix) + source + " ".repeat(suffix);
}

/** Docker cuts at a byte length; a cut inside a character shows as U+FFFD, as on a terminal. */
function truncateWithLength(source: string, length: number): string {
  if (utf8Length(source) < length) return source;
  if (length < 0) throw new FunctionError(`runtime error: slice bounds out of range [:${length}]`);
  if (isAscii(source)) return source.slice(0, length);
  return Buffer.from(source, "utf8").subarray(0, length).toString("utf8");
}

const BUILTIN_FUNCTIONS: Readonly<Record<string, TemplateFunction>> = {
  and: { params: ["value"], variadic: "value", special: "and", impl: () => undefined },
  or: { params: ["value"], variadic: "value", special: "or", impl: () => undefined },
  call: { params: ["value"], variadic: "value", special: "call", impl: () => undefined },
  not: { params: ["value"], impl: (args) => !isTrue(args[0]) },
  len: { params: ["value"], impl: (args) => goLength(args[0]) },
  index: { params: ["value"], variadic: "value", impl: (args) => goIndex(args[0], args.slice(1)) },
  slice: { params: ["value"], variadic: "value", impl: (args) => goSlice(args[0], args.slice(1)) },
  print: { params: [], variadic: "any", impl: (args) => sprint(args) },
  printf: { params: ["string"], variadic: "any", impl: (args) => sprintf(asString(args[0]), args.slice(1)) },
  println: { params: [], variadic: "any", impl: (args) => sprintln(args) },
  html: { params: [], variadic: "any", impl: (args) => htmlEscape(printArgs(args)) },
  js: { params: [], variadic: "any", impl: (args) => jsEscape(printArgs(args)) },
  urlquery: { params: [], variadic: "any", impl: (args) => urlQueryEscape(printArgs(args)) },
  eq: { params: ["value"], variadic: "value", impl: (args) => goEq(args[0], args.slice(1)) },
  ne: { params: ["value", "value"], impl: (args) => !goEq(args[0], [args[1]]) },
  lt: { params: ["value", "value"], impl: (args) => goLess(args[0], args[1]) },
  le: { params: ["value", "value"], impl: (args) => goLess(args[0], args[1]) || goEq(args[0], [args[1]]) },
  gt: { params: ["value", "value"], impl: (args) => !(goLess(args[0], args[1]) || goEq(args[0], [args[1]])) },
  ge: { params: ["value", "value"], impl: (args) => !goLess(args[0], args[1]) },
};

const DOCKER_FUNCTIONS: Readonly<Record<string, TemplateFunction>> = {
  json: { params: ["any"], impl: (args) => encodeJson(args[0]) },
  split: { params: ["string", "string"], impl: (args) => goSplit(asString(args[0]), asString(args[1])) },
  join: {
    params: ["stringSlice", "string"],
    impl: (args) => (isList(args[0]) ? args[0].join(asString(args[1])) : ""),
  },
  title: { params: ["string"], impl: (args) => goTitle(asString(args[0])) },
  lower: { params: ["string"], impl: (args) => goToLower(asString(args[0])) },
  upper: { params: ["string"], impl: (args) => goToUpper(asString(args[0])) },
  pad: { params: ["string", "int", "int"], impl: (args) => padWithSpace(asString(args[0]), asInt(args[1]), asInt(args[2])) },
  truncate: { params: ["string", "int"], impl: (args) => truncateWithLength(asString(args[0]), asInt(args[1])) },
};

/**
 * docker/cli's HeaderFunctions: for the table header the template runs on the column names,
 * which must come out unchanged (pad is kept so headers stay aligned with padded cells).
 */
const HEADER_FUNCTIONS: Readonly<Record<string, TemplateFunction>> = {
  json: { params: ["string"], impl: (args) => args[0] },
  split: { params: ["string", "string"], impl: (args) => args[0] },
  join: { params: ["string", "string"], impl: (args) => args[0] },
  title: { params: ["string"], impl: (args) => args[0] },
  lower: { params: ["string"], impl: (args) => args[0] },
  upper: { params: ["string"], impl: (args) => args[0] },
  truncate: { params: ["string", "int"], impl: (args) => args[0] },
};

const FUNCTIONS: FunctionTable = new Map(Object.entries({ ...BUILTIN_FUNCTIONS, ...DOCKER_FUNCTIONS }));
const HEADER_FUNCTION_TABLE: FunctionTable = new Map(
  Object.entries({ ...BUILTIN_FUNCTIONS, ...DOCKER_FUNCTIONS, ...HEADER_FUNCTIONS }),
);
const FUNCTION_NAMES: ReadonlySet<string> = new Set(FUNCTIONS.keys());

// ---------------------------------------------------------------------------------------------
// Value printing (Go: fmt)
// ---------------------------------------------------------------------------------------------

/** A number as exact decimal digits: value = 0.digits × 10^point (Go's decimalSlice). */
interface Decimal {
  digits: string;
  point: number;
}

/** The shortest digits that read back as the same float64 (JS and Go agree on these). */
function shortestDecimal(x: number): Decimal {
  if (x === 0) return { digits: "", point: 0 };
  const [mantissa, exponent] = x.toExponential().split("e");
  return { digits: mantissa.replace(".", ""), point: Number(exponent) + 1 };
}

/** The exact decimal value of a float64, so that fixed precisions round exactly as Go does. */
function exactDecimal(x: number): Decimal {
  if (x === 0) return { digits: "", point: 0 };
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const exponentBits = Number((bits >> 52n) & 0x7ffn);
  let mantissa = bits & ((1n << 52n) - 1n);
  let exponent = -1074;
  if (exponentBits !== 0) {
    mantissa |= 1n << 52n;
    exponent = exponentBits - 1075;
  }
  let digits: string;
  let point: number;
  if (exponent >= 0) {
    digits = (mantissa << BigInt(exponent)).toString();
    point = digits.length;
  } else {
    // mantissa × 2^-n equals mantissa × 5^n × 10^-n.
    digits = (mantissa * 5n ** BigInt(-exponent)).toString();
    point = digits.length + exponent;
  }
  return { digits: digits.replace(/0+$/, ""), point };
}

/** Rounds to `count` significant digits, ties to even (Go's decimal.Round). */
function roundDecimal(d: Decimal, count: number): Decimal {
  if (count < 0 || count >= d.digits.length) return d;
  const next = d.digits.charCodeAt(count);
  const exactHalf = next === 0x35 && count + 1 === d.digits.length;
  const roundUp = exactHalf ? count > 0 && (d.digits.charCodeAt(count - 1) - 0x30) % 2 === 1 : next >= 0x35;
  if (!roundUp) {
    const digits = d.digits.slice(0, count).replace(/0+$/, "");
    return { digits, point: digits === "" ? 0 : d.point };
  }
  let i = count - 1;
  while (i >= 0 && d.digits[i] === "9") i--;
  if (i < 0) return { digits: "1", point: d.point + 1 };
  return { digits: d.digits.slice(0, i) + String.fromCharCode(d.digits.charCodeAt(i) + 1), point: d.point };
}

function formatExponent(negative: boolean, d: Decimal, precision: number, letter: string): string {
  let out = negative ? "-" : "";
  out += d.digits.length === 0 ? "0" : d.digits[0];
  if (precision > 0) out += `.${d.digits.slice(1, precision + 1).padEnd(precision, "0")}`;
  let exponent = d.digits.length === 0 ? 0 : d.point - 1;
  const sign = exponent < 0 ? "-" : "+";
  exponent = Math.abs(exponent);
  return `${out}${letter}${sign}${exponent < 10 ? "0" : ""}${exponent}`;
}

function formatFixed(negative: boolean, d: Decimal, precision: number): string {
  let out = negative ? "-" : "";
  if (d.point > 0) out += d.digits.slice(0, d.point).padEnd(d.point, "0");
  else out += "0";
  if (precision > 0) {
    out += ".";
    for (let i = 1; i <= precision; i++) {
      const j = d.point + i - 1;
      out += j >= 0 && j < d.digits.length ? d.digits[j] : "0";
    }
  }
  return out;
}

/** strconv.FormatFloat(x, format, precision, 64); precision -1 means the shortest exact form. */
function formatFloat(x: number, format: "e" | "E" | "f" | "g" | "G", precision: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "+Inf";
  if (x === -Infinity) return "-Inf";
  const negative = x < 0 || Object.is(x, -0);
  const abs = Math.abs(x);
  const shortest = precision < 0;
  let prec = precision;
  let d: Decimal;
  if (shortest) {
    d = shortestDecimal(abs);
    if (format === "e" || format === "E") prec = Math.max(d.digits.length - 1, 0);
    else if (format === "f") prec = Math.max(d.digits.length - d.point, 0);
    else prec = d.digits.length;
  } else if (format === "f") {
    const exact = exactDecimal(abs);
    d = roundDecimal(exact, exact.point + prec);
  } else {
    if ((format === "g" || format === "G") && prec === 0) prec = 1;
    d = roundDecimal(exactDecimal(abs), format === "e" || format === "E" ? prec + 1 : prec);
  }
  switch (format) {
    case "e":
    case "E":
      return formatExponent(negative, d, prec, format);
    case "f":
      return formatFixed(negative, d, prec);
    case "g":
    case "G": {
      let exponentLimit = prec;
      if (exponentLimit > d.digits.length && d.digits.length >= d.point) exponentLimit = d.digits.length;
      // %v and %g with the shortest digits switch to exponent form from 1e+06 upwards.
      if (shortest) exponentLimit = 6;
      const exponent = d.point - 1;
      if (exponent < -4 || exponent >= exponentLimit) {
        return formatExponent(negative, d, Math.min(prec, d.digits.length) - 1, format === "g" ? "e" : "E");
      }
      if (prec > d.point) prec = d.digits.length;
      return formatFixed(negative, d, Math.max(prec - d.point, 0));
    }
  }
}

function integerDigits(value: number, base: number): string {
  const abs = Math.abs(value);
  return abs <= Number.MAX_SAFE_INTEGER ? abs.toString(base) : BigInt(abs).toString(base);
}

const FLOAT_VERBS: ReadonlySet<string> = new Set(["e", "E", "f", "F", "g", "G"]);

/** Go's fmt printer state for one Sprint/Sprintf call. */
class Printer {
  buf = "";
  private plus = false;
  private minus = false;
  private sharp = false;
  private space = false;
  private zero = false;
  /** %#v: the flag moves here so that nested values see it. */
  private sharpV = false;
  private width = 0;
  private widthPresent = false;
  private precision = 0;
  private precisionPresent = false;

  clearFlags(): void {
    this.plus = this.minus = this.sharp = this.space = this.zero = false;
    this.sharpV = false;
    this.width = this.precision = 0;
    this.widthPresent = this.precisionPresent = false;
  }

  setFlag(flag: string): void {
    switch (flag) {
      case "#":
        this.sharp = true;
        break;
      case "0":
        this.zero = !this.minus; // Zero padding only ever goes on the left.
        break;
      case "+":
        this.plus = true;
        break;
      case "-":
        this.minus = true;
        this.zero = false;
        break;
      case " ":
        this.space = true;
        break;
    }
  }

  setWidth(width: number, present: boolean): void {
    this.width = width;
    this.widthPresent = present;
    if (width < 0) {
      this.width = -width;
      this.minus = true;
      this.zero = false;
    }
  }

  setPrecision(precision: number, present: boolean): void {
    this.precision = precision;
    this.precisionPresent = present;
  }

  /** %#v prints Go syntax; %+v would name struct fields, which maps do not have. */
  prepareV(): void {
    this.sharpV = this.sharp;
    this.sharp = false;
    this.plus = false;
  }

  printArg(arg: unknown, verb: string): void {
    if (arg === null || arg === undefined) {
      if (verb === "T" || verb === "v") this.pad("<nil>");
      else this.badVerb(verb, arg);
      return;
    }
    if (verb === "T") {
      this.fmtString(goTypeName(arg), "s");
      return;
    }
    this.printValue(arg, verb);
  }

  private printValue(value: unknown, verb: string): void {
    if (value === null || value === undefined) {
      this.buf += "<nil>"; // A nil inside a slice or map.
      return;
    }
    switch (typeof value) {
      case "boolean":
        if (verb === "t" || verb === "v") this.pad(value ? "true" : "false");
        else this.badVerb(verb, value);
        return;
      case "number":
        // Integral numbers use the float verbs too: JS has no separate int type.
        if (isGoInt(value) && !FLOAT_VERBS.has(verb)) this.fmtInteger(value, verb);
        else this.fmtFloat(value, verb);
        return;
      case "bigint":
        this.fmtInteger(Number(value), verb);
        return;
      case "string":
        this.fmtString(value, verb);
        return;
      case "object":
        break;
      default:
        this.buf += `%!${verb}(${goTypeName(value)})`;
        return;
    }
    if (isList(value)) {
      if (this.sharpV) {
        this.buf += `${goTypeName(value)}{`;
        value.forEach((item, i) => {
          if (i > 0) this.buf += ", ";
          this.printValue(item, verb);
        });
        this.buf += "}";
        return;
      }
      this.buf += "[";
      value.forEach((item, i) => {
        if (i > 0) this.buf += " ";
        this.printValue(item, verb);
      });
      this.buf += "]";
      return;
    }
    if (!isObject(value)) return;
    const object = value;
    this.buf += this.sharpV ? `${goTypeName(object)}{` : "map[";
    sortedEntryKeys(object).forEach((key, i) => {
      if (i > 0) this.buf += this.sharpV ? ", " : " ";
      this.printValue(key, verb);
      this.buf += ":";
      this.printValue(object[key], verb);
    });
    this.buf += this.sharpV ? "}" : "]";
  }

  badVerb(verb: string, arg: unknown): void {
    this.buf += `%!${verb}(`;
    if (arg === null || arg === undefined) this.buf += "<nil>";
    else {
      this.buf += `${goTypeName(arg)}=`;
      this.printValue(arg, "v");
    }
    this.buf += ")";
  }

  private writePadding(n: number): void {
    if (n > 0) this.buf += (this.zero ? "0" : " ").repeat(n);
  }

  /** Pads to the width, counted in runes, on the left or (with '-') on the right. */
  private pad(s: string): void {
    if (!this.widthPresent || this.width === 0) {
      this.buf += s;
      return;
    }
    const padding = this.width - runeCount(s);
    if (this.minus) {
      this.buf += s;
      this.writePadding(padding);
    } else {
      this.writePadding(padding);
      this.buf += s;
    }
  }

  private truncate(s: string): string {
    if (!this.precisionPresent) return s;
    return Array.from(s).slice(0, this.precision).join("");
  }

  private fmtString(s: string, verb: string): void {
    switch (verb) {
      case "v":
        if (this.sharpV) this.fmtQ(s);
        else this.pad(this.truncate(s));
        return;
      case "s":
        this.pad(this.truncate(s));
        return;
      case "x":
      case "X":
        this.fmtHexString(s, verb === "X");
        return;
      case "q":
        this.fmtQ(s);
        return;
      default:
        this.badVerb(verb, s);
    }
  }

  private fmtQ(s: string): void {
    const text = this.truncate(s);
    if (this.sharp && canBackquote(text)) this.pad(`\`${text}\``);
    else this.pad(goQuote(text, this.plus));
  }

  private fmtHexString(s: string, upper: boolean): void {
    const bytes = Buffer.from(s, "utf8");
    let length = bytes.length;
    if (this.precisionPresent && this.precision < length) length = this.precision;
    let width = 2 * length;
    if (width > 0) {
      if (this.space) {
        if (this.sharp) width *= 2;
        width += length - 1;
      } else if (this.sharp) {
        width += 2;
      }
    } else {
      if (this.widthPresent) this.writePadding(this.width);
      return;
    }
    if (this.widthPresent && this.width > width && !this.minus) this.writePadding(this.width - width);
    const prefix = upper ? "0X" : "0x";
    let out = this.sharp ? prefix : "";
    for (let i = 0; i < length; i++) {
      if (this.space && i > 0) out += this.sharp ? ` ${prefix}` : " ";
      out += hex(bytes[i], 2, upper);
    }
    this.buf += out;
    if (this.widthPresent && this.width > width && this.minus) this.writePadding(this.width - width);
  }

  private fmtInteger(value: number, verb: string): void {
    switch (verb) {
      case "v":
      case "d":
        this.formatInteger(value, 10, verb, false);
        return;
      case "b":
        this.formatInteger(value, 2, verb, false);
        return;
      case "o":
      case "O":
        this.formatInteger(value, 8, verb, false);
        return;
      case "x":
      case "X":
        this.formatInteger(value, 16, verb, verb === "X");
        return;
      case "c":
        this.pad(runeString(value));
        return;
      case "q":
        this.pad(goQuote(runeString(value), this.plus, 0x27));
        return;
      case "U":
        this.fmtUnicode(value);
        return;
      default:
        this.badVerb(verb, value);
    }
  }

  private formatInteger(value: number, base: number, verb: string, upper: boolean): void {
    const negative = value < 0;
    let digits = integerDigits(value, base);
    if (upper) digits = digits.toUpperCase();
    // Two ways to ask for leading zeros: %.3d (precision) or %03d (zero flag with a width).
    let minDigits = 0;
    if (this.precisionPresent) {
      minDigits = this.precision;
      if (minDigits === 0 && value === 0) {
        // Precision 0 and value 0 print nothing but the padding.
        const zero = this.zero;
        this.zero = false;
        this.writePadding(this.width);
        this.zero = zero;
        return;
      }
    } else if (this.zero && this.widthPresent) {
      minDigits = this.width;
      if (negative || this.plus || this.space) minDigits--; // Room for the sign.
    }
    digits = digits.padStart(minDigits, "0");
    if (this.sharp) {
      if (base === 2) digits = `0b${digits}`;
      else if (base === 8 && !digits.startsWith("0")) digits = `0${digits}`;
      else if (base === 16) digits = (upper ? "0X" : "0x") + digits;
    }
    if (verb === "O") digits = `0o${digits}`;
    if (negative) digits = `-${digits}`;
    else if (this.plus) digits = `+${digits}`;
    else if (this.space) digits = ` ${digits}`;
    const zero = this.zero;
    this.zero = false; // Zero padding was done through minDigits.
    this.pad(digits);
    this.zero = zero;
  }

  private fmtUnicode(value: number): void {
    const digits = value < 0 ? BigInt.asUintN(64, BigInt(value)).toString(16) : integerDigits(value, 16);
    const minDigits = this.precisionPresent && this.precision > 4 ? this.precision : 4;
    let out = `U+${digits.toUpperCase().padStart(minDigits, "0")}`;
    if (this.sharp && value >= 0 && value <= 0x10ffff && isPrint(value)) out += ` '${String.fromCodePoint(value)}'`;
    const zero = this.zero;
    this.zero = false;
    this.pad(out);
    this.zero = zero;
  }

  private fmtFloat(value: number, verb: string): void {
    let format: "e" | "E" | "f" | "g" | "G";
    let precision: number;
    switch (verb) {
      case "v":
        format = "g";
        precision = -1;
        break;
      case "g":
      case "G":
        format = verb;
        precision = -1;
        break;
      case "e":
      case "E":
      case "f":
        format = verb;
        precision = 6;
        break;
      case "F":
        format = "f";
        precision = 6;
        break;
      default:
        this.badVerb(verb, value);
        return;
    }
    if (this.precisionPresent) precision = this.precision;
    let num = formatFloat(value, format, precision);
    if (num[0] !== "-" && num[0] !== "+") num = `+${num}`;
    if (this.space && num[0] === "+" && !this.plus) num = ` ${num.slice(1)}`;
    if (num[1] === "I" || num[1] === "N") {
      // Infinities and NaN are not numbers to pad with zeros.
      const zero = this.zero;
      this.zero = false;
      if (num[1] === "N" && !this.space && !this.plus) num = num.slice(1);
      this.pad(num);
      this.zero = zero;
      return;
    }
    if (this.plus || num[0] !== "+") {
      // With zero padding the sign goes before the zeros.
      if (this.zero && this.widthPresent && this.width > num.length) {
        this.buf += num[0];
        this.writePadding(this.width - num.length);
        this.buf += num.slice(1);
        return;
      }
      this.pad(num);
      return;
    }
    this.pad(num.slice(1));
  }
}

function runeString(value: number): string {
  const valid = value >= 0 && value <= 0x10ffff && !(value >= 0xd800 && value <= 0xdfff);
  return String.fromCodePoint(valid ? value : 0xfffd);
}

/** fmt.Sprint(value): how {{.X}} prints X. */
function formatValue(value: unknown): string {
  if (typeof value === "string") return value;
  const printer = new Printer();
  printer.printArg(value, "v");
  return printer.buf;
}

/** fmt.Sprint: spaces go between operands when neither is a string. */
function sprint(args: readonly unknown[]): string {
  const printer = new Printer();
  let previousIsString = false;
  args.forEach((arg, i) => {
    const isString = typeof arg === "string";
    if (i > 0 && !isString && !previousIsString) printer.buf += " ";
    printer.printArg(arg, "v");
    previousIsString = isString;
  });
  return printer.buf;
}

/** fmt.Sprintln: spaces between all operands, and a newline. */
function sprintln(args: readonly unknown[]): string {
  const printer = new Printer();
  args.forEach((arg, i) => {
    if (i > 0) printer.buf += " ";
    printer.printArg(arg, "v");
  });
  return `${printer.buf}\n`;
}

/** fmt's parsenum: a decimal number at `start`; huge numbers are rejected like Go's tooLarge. */
function parseNumber(s: string, start: number, end: number): { value: number; present: boolean; next: number } {
  let value = 0;
  let present = false;
  let i = start;
  for (; i < end && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39; i++) {
    if (value > 1e6) return { value: 0, present: false, next: end };
    value = value * 10 + (s.charCodeAt(i) - 0x30);
    present = true;
  }
  return { value, present, next: i };
}

/** fmt.Sprintf, including Go's in-band errors such as %!d(string=x), %!s(MISSING) and %!(EXTRA ...). */
function sprintf(format: string, args: readonly unknown[]): string {
  const printer = new Printer();
  const end = format.length;
  let argNum = 0;
  let reordered = false;

  // An explicit argument index such as %[2]d.
  const argNumber = (at: number): { index: number; next: number; found: boolean; good: boolean } => {
    if (at >= end || format[at] !== "[") return { index: argNum, next: at, found: false, good: true };
    reordered = true;
    const close = format.indexOf("]", at + 1);
    if (end - at < 3 || close < 0) return { index: argNum, next: at + 1, found: false, good: false };
    const parsed = parseNumber(format, at + 1, close);
    if (!parsed.present || parsed.next !== close) return { index: argNum, next: close + 1, found: false, good: false };
    const index = parsed.value - 1;
    if (index >= 0 && index < args.length) return { index, next: close + 1, found: true, good: true };
    return { index: argNum, next: close + 1, found: true, good: false };
  };

  // A width or precision given as "*", taken from the arguments.
  const intFromArg = (): { value: number; ok: boolean } => {
    if (argNum >= args.length) return { value: 0, ok: false };
    const arg = args[argNum];
    argNum++;
    if (typeof arg === "number" && isGoInt(arg) && Math.abs(arg) <= 1e6) return { value: arg, ok: true };
    return { value: 0, ok: false };
  };

  let i = 0;
  while (i < end) {
    let goodArgNum = true;
    const textStart = i;
    while (i < end && format[i] !== "%") i++;
    if (i > textStart) printer.buf += format.slice(textStart, i);
    if (i >= end) break;
    i++; // Skip the %.
    printer.clearFlags();
    while (i < end && "#0+- ".includes(format[i])) printer.setFlag(format[i++]);

    let index = argNumber(i);
    argNum = index.index;
    i = index.next;
    let afterIndex = index.found;
    if (!index.good) goodArgNum = false;

    if (i < end && format[i] === "*") {
      i++;
      const width = intFromArg();
      printer.setWidth(width.value, width.ok);
      if (!width.ok) printer.buf += "%!(BADWIDTH)";
      afterIndex = false;
    } else {
      const width = parseNumber(format, i, end);
      printer.setWidth(width.value, width.present);
      i = width.next;
      if (afterIndex && width.present) goodArgNum = false; // "%[3]2d" is not allowed.
    }

    if (i + 1 < end && format[i] === ".") {
      i++;
      if (afterIndex) goodArgNum = false; // "%[3].2d" is not allowed.
      index = argNumber(i);
      argNum = index.index;
      i = index.next;
      afterIndex = index.found;
      if (!index.good) goodArgNum = false;
      if (i < end && format[i] === "*") {
        i++;
        const precision = intFromArg();
        const negative = precision.value < 0;
        printer.setPrecision(negative ? 0 : precision.value, precision.ok && !negative);
        if (!precision.ok || negative) printer.buf += "%!(BADPREC)";
        afterIndex = false;
      } else {
        const precision = parseNumber(format, i, end);
        printer.setPrecision(precision.present ? precision.value : 0, true);
        i = precision.next;
      }
    }

    if (!afterIndex) {
      index = argNumber(i);
      argNum = index.index;
      i = index.next;
      if (!index.good) goodArgNum = false;
    }

    if (i >= end) {
      printer.buf += "%!(NOVERB)";
      break;
    }
    const verbCode = format.codePointAt(i) ?? 0;
    const verb = String.fromCodePoint(verbCode);
    i += verb.length;

    if (verb === "%") printer.buf += "%"; // Absorbs no operand and ignores width and precision.
    else if (!goodArgNum) printer.buf += `%!${verb}(BADINDEX)`;
    else if (argNum >= args.length) printer.buf += `%!${verb}(MISSING)`;
    else {
      if (verb === "v") printer.prepareV();
      if (verb === "w") printer.badVerb(verb, args[argNum]);
      else printer.printArg(args[argNum], verb);
      argNum++;
    }
  }

  if (!reordered && argNum < args.length) {
    printer.clearFlags();
    printer.buf += "%!(EXTRA ";
    args.slice(argNum).forEach((arg, n) => {
      if (n > 0) printer.buf += ", ";
      if (arg === null || arg === undefined) printer.buf += "<nil>";
      else {
        printer.buf += `${goTypeName(arg)}=`;
        printer.printArg(arg, "v");
      }
    });
    printer.buf += ")";
  }
  return printer.buf;
}

// ---------------------------------------------------------------------------------------------
// JSON (Go: encoding/json with SetEscapeHTML(false), as Docker's json function uses it)
// ---------------------------------------------------------------------------------------------

/** Values encoding/json refuses (NaN, cycles, functions); Docker's json then prints nothing. */
class UnsupportedJsonValue extends Error {}

function encodeJson(value: unknown): string {
  try {
    return encodeJsonValue(value, new Set());
  } catch (error) {
    if (error instanceof UnsupportedJsonValue) return "";
    throw error;
  }
}

/**
 * Key order: Go encodes struct fields in declaration order and map keys sorted. An object whose
 * keys all start with an upper-case letter is taken for a struct (Go's exported fields, Docker's
 * API objects) and keeps its insertion order; any other object (labels, ports, ...) is a map.
 */
function jsonKeys(object: JsObject): string[] {
  const keys = entryKeys(object);
  return keys.every((key) => /^[A-Z]/.test(key)) ? keys : keys.sort(compareGoStrings);
}

function encodeJsonValue(value: unknown, ancestors: Set<object>): string {
  if (value === null || value === undefined) return "null";
  switch (typeof value) {
    case "string":
      return jsonQuote(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw new UnsupportedJsonValue();
      // JS's number-to-string matches Go's float formatting for JSON (both follow ES6).
      return Object.is(value, -0) ? "-0" : String(value);
    case "bigint":
      return value.toString();
    case "object":
      break;
    default:
      throw new UnsupportedJsonValue();
  }
  if (ancestors.has(value)) throw new UnsupportedJsonValue(); // A cycle.
  ancestors.add(value);
  try {
    if (isList(value)) {
      const items: string[] = [];
      for (let i = 0; i < value.length; i++) items.push(encodeJsonValue(value[i], ancestors));
      return `[${items.join(",")}]`;
    }
    if (!isObject(value)) throw new UnsupportedJsonValue();
    return `{${jsonKeys(value)
      .map((key) => `${jsonQuote(key)}:${encodeJsonValue(value[key], ancestors)}`)
      .join(",")}}`;
  } finally {
    ancestors.delete(value);
  }
}

/** encoding/json string escaping without HTML escaping (U+2028/U+2029 are still escaped). */
function jsonQuote(s: string): string {
  if (!/[\u0000-\u001f"\\\u2028\u2029\ud800-\udfff]/.test(s)) return `"${s}"`;
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        out += s[i] + s[i + 1];
        i++;
        continue;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) out += "\\ufffd"; // Invalid UTF-16, like invalid UTF-8 in Go.
    else if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c === 0x08) out += "\\b";
    else if (c === 0x0c) out += "\\f";
    else if (c < 0x20 || c === 0x2028 || c === 0x2029) out += `\\u${hex(c, 4)}`;
    else out += s[i];
  }
  return `${out}"`;
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/** A parsed template: compile once, then execute per row. */
export class Template {
  private constructor(
    /** The template text as given. */
    readonly source: string,
    private readonly trees: ReadonlyMap<string, ListNode>,
  ) {}

  /** Parses a template; throws TemplateError with Go's message on a syntax error. */
  static compile(source: string): Template {
    const tokens = new Lexer(source).scan();
    const parser = new Parser(tokens, FUNCTION_NAMES);
    parser.parse();
    return new Template(source, parser.trees);
  }

  /** Runs the template on `data`; throws TemplateError when execution fails. */
  execute(data: unknown): string {
    const result = this.run(data, FUNCTIONS);
    if (result.error !== null) throw result.error;
    return result.output;
  }

  /**
   * Renders the header row of a table: the template runs on a map from field names to column
   * titles with Docker's header functions (json, upper, ... return the title unchanged). Like
   * Docker, an execution error is ignored and whatever was printed before it is kept.
   */
  executeHeader(headers: Readonly<Record<string, unknown>>): string {
    return this.run(headers, HEADER_FUNCTION_TABLE).output;
  }

  private run(data: unknown, functions: FunctionTable): { output: string; error: TemplateError | null } {
    // Go's reflect.ValueOf(nil) is "no value".
    const root = data === null ? undefined : data;
    const execution = new Execution(this.source, this.trees, functions, root);
    const tree = this.trees.get(TEMPLATE_NAME);
    try {
      if (tree !== undefined) execution.walk(root, tree);
    } catch (error) {
      if (error instanceof TemplateError) return { output: execution.output, error };
      if (error instanceof RangeError) {
        // Data nested too deeply (or cyclic) to print.
        const message = `template: ${TEMPLATE_NAME}: data nested too deeply to execute on (${error.message})`;
        return { output: execution.output, error: new TemplateError(message, "execute") };
      }
      throw error;
    }
    return { output: execution.output, error: null };
  }
}

/** Parses a Go template once for repeated execution. */
export function compileTemplate(src: string): Template {
  return Template.compile(src);
}

/** Parses and runs a template in one go. */
export function formatTemplate(src: string, data?: unknown): string {
  return Template.compile(src).execute(data);
}

const TABLE_PREFIX = "table";

/** Docker treats any --format starting with "table" as a table with a header row. */
export function isTableFormat(format: string): boolean {
  return format.startsWith(TABLE_PREFIX);
}

/**
 * docker/cli's formatter preFormat, used by ps, images, history and the like (not by inspect):
 * drops the "table" prefix, turns the bare "json" format into `{{json .}}`, trims spaces and
 * turns the two-character escapes \t and \n into a tab and a newline.
 */
export function parseTableFormat(format: string): { isTable: boolean; template: string } {
  const isTable = isTableFormat(format);
  let template = format;
  if (isTable) template = template.slice(TABLE_PREFIX.length);
  else if (format === "json") template = "{{json .}}";
  template = template.replace(/^ +| +$/g, "");
  template = template.replace(/\\([tn])/g, (_, letter: string) => (letter === "t" ? "\t" : "\n"));
  return { isTable, template };
}

/**
 * Renders rows as Docker renders a "table ..." format: the header row comes from running the
 * template on `headers` (field name to column title, e.g. { ID: "CONTAINER ID" }), each row from
 * running it on the row, and the whole is aligned on tabs like Docker's tabwriter. The format may
 * be given with or without its "table" prefix. Throws TemplateError if a row fails.
 */
export function renderTable(format: string, rows: readonly unknown[], headers: Readonly<Record<string, unknown>>): string {
  const template = compileTemplate(parseTableFormat(format).template);
  let body = "";
  for (const row of rows) body += `${template.execute(row)}\n`;
  return alignColumns(`${template.executeHeader(headers)}\n${body}`);
}

// ---------------------------------------------------------------------------------------------
// Table alignment (docker/cli's copy of Go's text/tabwriter)
// ---------------------------------------------------------------------------------------------

interface Cell {
  readonly text: string;
  readonly width: number;
  /** Ended by a tab, as opposed to a line break. */
  readonly htab: boolean;
}

/** Wide (two-column) ranges of East Asian scripts and emoji, as go-runewidth counts them. */
const WIDE_RANGES: readonly (readonly [number, number])[] = [
  [0x1100, 0x115f], [0x231a, 0x231b], [0x2329, 0x232a], [0x23e9, 0x23ec], [0x23f0, 0x23f0], [0x23f3, 0x23f3],
  [0x25fd, 0x25fe], [0x2614, 0x2615], [0x2648, 0x2653], [0x267f, 0x267f], [0x2693, 0x2693], [0x26a1, 0x26a1],
  [0x26aa, 0x26ab], [0x26bd, 0x26be], [0x26c4, 0x26c5], [0x26ce, 0x26ce], [0x26d4, 0x26d4], [0x26ea, 0x26ea],
  [0x26f2, 0x26f3], [0x26f5, 0x26f5], [0x26fa, 0x26fa], [0x26fd, 0x26fd], [0x2705, 0x2705], [0x270a, 0x270b],
  [0x2728, 0x2728], [0x274c, 0x274c], [0x274e, 0x274e], [0x2753, 0x2755], [0x2757, 0x2757], [0x2795, 0x2797],
  [0x27b0, 0x27b0], [0x27bf, 0x27bf], [0x2b1b, 0x2b1c], [0x2b50, 0x2b50], [0x2b55, 0x2b55], [0x2e80, 0x303e],
  [0x3041, 0x33ff], [0x3400, 0x4dbf], [0x4e00, 0x9fff], [0xa000, 0xa4cf], [0xa960, 0xa97f], [0xac00, 0xd7a3],
  [0xf900, 0xfaff], [0xfe10, 0xfe19], [0xfe30, 0xfe6f], [0xff00, 0xff60], [0xffe0, 0xffe6], [0x16fe0, 0x16fe4],
  [0x17000, 0x18aff], [0x1b000, 0x1b2ff], [0x1f004, 0x1f004], [0x1f0cf, 0x1f0cf], [0x1f18e, 0x1f18e],
  [0x1f191, 0x1f19a], [0x1f200, 0x1f251], [0x1f300, 0x1f64f], [0x1f680, 0x1f6ff], [0x1f900, 0x1f9ff],
  [0x1fa70, 0x1faff], [0x20000, 0x2fffd], [0x30000, 0x3fffd],
];

const ZERO_WIDTH = /^[\p{Mn}\p{Me}\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufe00-\ufe0f]$/u;

function runeWidth(r: number): number {
  if (r < 0x20 || (r >= 0x7f && r <= 0x9f) || r === 0xad) return 0;
  if (r < 0x300) return 1;
  if (ZERO_WIDTH.test(String.fromCodePoint(r))) return 0;
  for (const [low, high] of WIDE_RANGES) {
    if (r < low) break;
    if (r <= high) return 2;
  }
  return 1;
}

/** Terminal columns a cell takes (Docker's tabwriter uses go-runewidth). */
function displayWidth(s: string): number {
  if (/^[\x20-\x7e]*$/.test(s)) return s.length;
  let width = 0;
  for (const ch of s) width += runeWidth(ch.codePointAt(0) ?? 0);
  return width;
}

/** Go's tabwriter with Docker's settings: minwidth 10, padding 3, padded with spaces, no flags. */
class TabWriter {
  private output = "";
  private lines: Cell[][] = [[]];
  private cellText = "";
  private widths: number[] = [];

  constructor(
    private readonly minWidth: number,
    private readonly padding: number,
  ) {}

  write(text: string): void {
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      // Tab and vertical tab end a cell; newline and form feed end a line.
      if (c !== 0x09 && c !== 0x0b && c !== 0x0a && c !== 0x0c) continue;
      this.cellText += text.slice(start, i);
      start = i + 1;
      const cellsInLine = this.terminateCell(c === 0x09);
      if (c === 0x0a || c === 0x0c) {
        this.lines.push([]);
        // A line with a single cell cannot affect later columns: everything so far can go out.
        if (c === 0x0c || cellsInLine === 1) this.flushLines();
      }
    }
    this.cellText += text.slice(start);
  }

  flush(): string {
    this.flushLines();
    return this.output;
  }

  private terminateCell(htab: boolean): number {
    const line = this.lines[this.lines.length - 1];
    line.push({ text: this.cellText, width: displayWidth(this.cellText), htab });
    this.cellText = "";
    return line.length;
  }

  private flushLines(): void {
    if (this.cellText.length > 0) this.terminateCell(false);
    this.format(0, this.lines.length);
    this.lines = [[]];
    this.widths = [];
  }

  /**
   * Elastic tabstops: a column is the run of consecutive lines that have a tab-terminated cell at
   * that position; its width is its widest cell plus padding. The last cell of a line is never
   * part of a column.
   */
  private format(firstLine: number, endLine: number): void {
    let line0 = firstLine;
    const column = this.widths.length;
    for (let row = line0; row < endLine; row++) {
      if (column >= this.lines[row].length - 1) continue;
      // A column block starts here: print the lines before it with the widths known so far.
      this.writeLines(line0, row);
      line0 = row;
      let width = this.minWidth;
      for (; row < endLine; row++) {
        const cells = this.lines[row];
        if (column >= cells.length - 1) break;
        width = Math.max(width, cells[column].width + this.padding);
      }
      this.widths.push(width);
      this.format(line0, row);
      this.widths.pop();
      line0 = row;
    }
    this.writeLines(line0, endLine);
  }

  private writeLines(from: number, to: number): void {
    for (let i = from; i < to; i++) {
      this.lines[i].forEach((cell, j) => {
        this.output += cell.text;
        if (j < this.widths.length) this.output += " ".repeat(Math.max(this.widths[j] - cell.width, 0));
      });
      // The last buffered line has no line break yet.
      if (i + 1 < this.lines.length) this.output += "\n";
    }
  }
}

/**
 * Aligns tab-separated text the way Docker's table output does (tabwriter with minimum cell
 * width 10 and padding 3): every tab-terminated cell is padded to its column's width.
 */
export function alignColumns(text: string): string {
  const writer = new TabWriter(10, 3);
  writer.write(text);
  return writer.flush();
}
