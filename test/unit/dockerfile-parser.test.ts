// The Dockerfile parser checked against BuildKit's parser conformance files
// (test/fixtures/conformance/dockerfile-parser) and the behaviours of BuildKit's parser tests
// (parser_test.go, parser_heredoc_test.go, directives_test.go).

import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  chompHeredocContent,
  DockerfileParseError,
  dumpDockerfile,
  parseDockerfile,
  parseHeredoc,
  type Heredoc,
} from "../../src/build/dockerfile.js";

const PARSER_FIXTURES = fileURLToPath(new URL("../fixtures/conformance/dockerfile-parser/", import.meta.url));

function caseDirectories(kind: "testfiles" | "testfiles-negative"): string[] {
  return readdirSync(PARSER_FIXTURES + kind, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
}

describe("BuildKit parser conformance: testfiles", () => {
  const names = caseDirectories("testfiles");

  it("has all the cases", () => {
    expect(names.length).toBe(33);
  });

  for (const name of names) {
    it(`${name} parses to its result file`, () => {
      // Read as bytes, as BuildKit does, so a byte order mark or odd encoding is the parser's business.
      const dockerfile = readFileSync(`${PARSER_FIXTURES}testfiles/${name}/Dockerfile`);
      const expected = readFileSync(`${PARSER_FIXTURES}testfiles/${name}/result`, "utf8");
      expect(dumpDockerfile(parseDockerfile(dockerfile))).toBe(expected);
    });
  }
});

describe("BuildKit parser conformance: testfiles-negative", () => {
  const names = caseDirectories("testfiles-negative");

  it("has all the cases", () => {
    expect(names.length).toBe(4);
  });

  for (const name of names) {
    it(`${name} is rejected`, () => {
      const dockerfile = readFileSync(`${PARSER_FIXTURES}testfiles-negative/${name}/Dockerfile`);
      expect(() => parseDockerfile(dockerfile)).toThrow(DockerfileParseError);
    });
  }
});

/** The error parseDockerfile throws for `text`; fails the test when it does not throw. */
function parseError(text: string): DockerfileParseError {
  try {
    parseDockerfile(text);
  } catch (err) {
    if (err instanceof DockerfileParseError) return err;
    throw err;
  }
  throw new Error("expected the Dockerfile to be rejected");
}

describe("errors", () => {
  it("reports the line number and BuildKit's wording", () => {
    const err = parseError("FROM busybox\n\nENV PATH\n");
    expect(err.message).toBe("Dockerfile:3: ENV must have two arguments");
    expect(err.line).toBe(3);
    expect(err.reason).toBe("ENV must have two arguments");
  });

  it("rejects unknown instructions, unless asked to keep them", () => {
    expect(parseError("FROM scratch\nRUN true\nFOO bar\n").message).toBe("Dockerfile:3: unknown instruction: FOO");
    const parsed = parseDockerfile("FROM scratch\nFOO bar\n", { allowUnknownInstructions: true });
    expect(dumpDockerfile(parsed)).toBe('(from "scratch")\n(foo "")\n');
  });

  it("reports a syntax error further down before an unknown instruction, as BuildKit does", () => {
    expect(parseError("FOO\nENV X\n").message).toBe("Dockerfile:2: ENV must have two arguments");
  });

  it("uses the file name it is given", () => {
    expect(() => parseDockerfile("FROM a\nLABEL x\n", { fileName: "Containerfile" })).toThrow(
      "Containerfile:2: LABEL must have two arguments",
    );
  });

  it("spans the whole instruction for multi-line instructions", () => {
    const err = parseError("FROM a\nENV A=1 \\\n  B\n");
    expect([err.line, err.endLine]).toEqual([2, 3]);
    expect(err.reason).toBe(`Syntax error - can't find = in "B". Must be of the form: name=value`);
  });

  it("rejects JSON arrays of non-strings but falls back to shell form for broken JSON", () => {
    expect(parseError('FROM a\nCMD ["a", 1]\n').reason).toBe(
      "when using JSON array syntax, arrays must be comprised of strings only",
    );
    expect(dumpDockerfile(parseDockerfile('CMD ["a", 1\n'))).toBe('(cmd "[\\"a\\", 1")\n');
  });

  it("rejects an empty file and a file of comments", () => {
    expect(parseError("").message).toBe("Dockerfile: file with no instructions");
    expect(parseError("# a\n\n# b\n").message).toBe("Dockerfile:3: file with no instructions");
  });

  it("rejects repeated and invalid parser directives", () => {
    expect(parseError("# escape=`\n# escape=\\\nFROM a\n").message).toBe(
      "Dockerfile:2: only one escape parser directive can be used",
    );
    expect(parseError("# escape=x\nFROM a\n").reason).toBe("invalid escape token 'x' does not match ` or \\");
  });

  it("rejects an unterminated heredoc", () => {
    const err = parseError("FROM a\nRUN <<EOF\necho hi\n");
    expect(err.reason).toBe("unterminated heredoc");
    expect([err.line, err.endLine]).toEqual([2, 3]);
  });

  it("rejects a heredoc delimiter with an unbalanced quote", () => {
    expect(() => parseDockerfile("FROM a\nRUN <<'EOF\nx\nEOF\n")).toThrow(DockerfileParseError);
    expect(() => parseHeredoc("<<'EOF")).toThrow();
    expect(() => parseHeredoc('<<EOF"')).toThrow();
  });

  it("rejects a line over 64 KiB (TestParseReturnsScannerErrors)", () => {
    const label = "a".repeat(65536);
    expect(parseError(`\n\t\tFROM image\n\t\tLABEL test=${label}\n`).reason).toBe(
      "dockerfile line greater than max allowed size of 65535",
    );
  });
});

describe("instructions", () => {
  it("records lines, flags, JSON form and the original line", () => {
    const { instructions } = parseDockerfile(
      "# syntax=docker/dockerfile:1\n\nFROM alpine AS build\nRUN --mount=type=cache,target=/c \\\n  make\nCMD [\"sh\"]\n",
    );
    expect(instructions.map((i) => [i.keyword, i.startLine, i.endLine])).toEqual([
      ["from", 3, 3],
      ["run", 4, 5],
      ["cmd", 6, 6],
    ]);
    expect(instructions[0]?.args).toEqual(["alpine", "AS", "build"]);
    expect(instructions[1]?.flags).toEqual(["--mount=type=cache,target=/c"]);
    expect(instructions[1]?.args).toEqual(["make"]);
    expect(instructions[1]?.original).toBe("RUN --mount=type=cache,target=/c   make");
    expect(instructions[1]?.json).toBe(false);
    expect(instructions[2]?.json).toBe(true);
  });

  it("keeps line numbers like TestParseIncludesLineNumbers", () => {
    const text = [
      "# comment",
      "",
      "# comment",
      "",
      "FROM image",
      "",
      "# comment",
      "",
      "# comment",
      "",
      "RUN a \\",
      "    b",
      "",
      "# comment",
      "",
      "# comment",
      "RUN c \\",
      "  # comment",
      "  d",
      "",
    ].join("\n");
    const { instructions } = parseDockerfile(text);
    expect(instructions.map((i) => [i.startLine, i.endLine])).toEqual([
      [5, 5],
      [11, 12],
      [17, 19],
    ]);
  });

  it("keeps the comments right above an instruction", () => {
    const { instructions } = parseDockerfile("# one\n#\n# two\n#three\nFROM a\nRUN b\n");
    expect(instructions[0]?.comments).toEqual(["two", "three"]);
    expect(instructions[1]?.comments).toEqual([]);
  });

  it("parses ONBUILD triggers as nested instructions", () => {
    const { instructions } = parseDockerfile('ONBUILD --x=1 RUN ["a"]\nONBUILD\n');
    const onbuild = instructions[0];
    expect(onbuild?.flags).toEqual(["--x=1"]);
    expect(onbuild?.next?.keyword).toBe("run");
    expect(onbuild?.next?.args).toEqual(["a"]);
    expect(onbuild?.next?.json).toBe(true);
    expect(dumpDockerfile(instructions)).toBe('(onbuild ["--x=1"] (run "a"))\n(onbuild)\n');
  });

  it("parses HEALTHCHECK types and commands", () => {
    const { instructions } = parseDockerfile("HEALTHCHECK NONE\nHEALTHCHECK --interval=1s CMD [\"true\"]\n");
    expect(instructions[0]?.args).toEqual(["NONE"]);
    expect(instructions[1]?.args).toEqual(["CMD", "true"]);
    expect(instructions[1]?.json).toBe(true);
  });

  it("keeps quotes and escapes in ENV, LABEL and ARG for later expansion", () => {
    const { instructions } = parseDockerfile('ENV a="b c" d=e\\ f\nLABEL "x y"=z\nARG v="1 2" w\n');
    expect(instructions[0]?.args).toEqual(["a", '"b c"', "=", "d", "e\\ f", "="]);
    expect(instructions[1]?.args).toEqual(['"x y"', "z", "="]);
    expect(instructions[2]?.args).toEqual(['v="1 2"', "w"]);
  });

  it("honours the escape directive for flags and words", () => {
    const { instructions, escapeChar } = parseDockerfile("# escape=`\nFROM a\nCOPY --chown=a` b x y\nENV a=b` c\n");
    expect(escapeChar).toBe("`");
    expect(instructions[1]?.flags).toEqual(["--chown=a b"]);
    expect(instructions[2]?.args).toEqual(["a", "b` c", "="]);
  });

  it("strips a byte order mark and CRLF line endings", () => {
    const { instructions } = parseDockerfile("\ufeffFROM a\r\nRUN b \\\r\n  c\r\n");
    expect(dumpDockerfile(instructions)).toBe('(from "a")\n(run "b   c")\n');
  });

  it("warns about empty continuation lines (TestParseWarnsOnEmptyContinutationLine)", () => {
    const text =
      "\nFROM alpine:3.6\n\nRUN something \\\n\n    following \\\n\n    more\n\nRUN another \\\n\n    thing\n" +
      "RUN non-indented \\\n# this is a comment\n   after-comment\n\nRUN indented \\\n    # this is an indented comment\n    comment\n\t";
    const { warnings } = parseDockerfile(text);
    expect(warnings.map((w) => w.message)).toEqual([
      "Empty continuation line found in: RUN something     following     more",
      "Empty continuation line found in: RUN another     thing",
    ]);
  });
});

describe("parser directives", () => {
  it("reads syntax, escape and check at the top of the file", () => {
    const { directives, escapeChar } = parseDockerfile(
      "# syntax=docker/dockerfile:1\n#  CHECK = skip=JSONArgsRecommended;error=true \n# escape=`\nFROM a\n",
    );
    expect(directives).toEqual([
      { name: "syntax", value: "docker/dockerfile:1", line: 1 },
      { name: "check", value: "skip=JSONArgsRecommended;error=true", line: 2 },
      { name: "escape", value: "`", line: 3 },
    ]);
    expect(escapeChar).toBe("`");
  });

  it("stops looking after the first other line, blank lines and unknown directives included", () => {
    expect(parseDockerfile("\n# escape=`\nFROM a\n").escapeChar).toBe("\\");
    expect(parseDockerfile("# foo=bar\n# escape=`\nFROM a\n").escapeChar).toBe("\\");
    expect(parseDockerfile("# comment\n# escape=`\nFROM a\n").directives).toEqual([]);
  });
});

describe("heredocs (TestParseExtractsHeredoc)", () => {
  const dockerfile = `
FROM alpine:3.6

ENV NAME=me

RUN ls

USER <<INVALID
INVALID

RUN <<EMPTY
EMPTY

RUN 3<<EMPTY2
EMPTY2

RUN "<<NOHEREDOC"

RUN <<INDENT
\tfoo
\tbar
INDENT

RUN <<-UNINDENT
\tbaz
\tquux
UNINDENT

RUN <<-UNINDENT2
\tbaz
\tquux
\tUNINDENT2

RUN <<-EXPAND
\texpand $NAME
EXPAND

RUN <<-'NOEXPAND'
\tdon't expand $NAME
NOEXPAND

RUN <<COPY
echo hello world
echo foo bar
COPY

RUN <<COMMENT
# internal comment
echo hello world
echo foo bar # trailing comment
COMMENT

RUN --mount=type=cache,target=/foo <<MOUNT
echo hello
MOUNT

COPY <<FILE1 <<FILE2 /dest
content 1
FILE1
content 2
FILE2

COPY <<X <<Y /dest
Y
X
X
Y
\t`;

  const doc = (name: string, content: string, extra: Partial<Heredoc> = {}): Heredoc => ({
    name,
    content,
    fileDescriptor: 0,
    expand: true,
    chomp: false,
    ...extra,
  });

  const expected: Heredoc[][] = [
    [], // ENV NAME=me
    [], // RUN ls
    [], // USER <<INVALID
    [], // INVALID
    [doc("EMPTY", "")],
    [doc("EMPTY2", "", { fileDescriptor: 3 })],
    [], // RUN "<<NOHEREDOC"
    [doc("INDENT", "\tfoo\n\tbar\n")],
    [doc("UNINDENT", "\tbaz\n\tquux\n", { chomp: true })],
    [doc("UNINDENT2", "\tbaz\n\tquux\n", { chomp: true })],
    [doc("EXPAND", "\texpand $NAME\n", { chomp: true })],
    [doc("NOEXPAND", "\tdon't expand $NAME\n", { chomp: true, expand: false })],
    [doc("COPY", "echo hello world\necho foo bar\n")],
    [doc("COMMENT", "# internal comment\necho hello world\necho foo bar # trailing comment\n")],
    [doc("MOUNT", "echo hello\n")],
    [doc("FILE1", "content 1\n"), doc("FILE2", "content 2\n")],
    [doc("X", "Y\n"), doc("Y", "X\n")],
  ];

  it("attaches heredoc bodies to RUN and COPY", () => {
    // USER <<INVALID leaves "INVALID" as an unknown instruction, as in BuildKit's test.
    const { instructions } = parseDockerfile(dockerfile, { allowUnknownInstructions: true });
    expect(instructions.slice(1).map((i) => i.heredocs)).toEqual(expected);
  });

  it("does not look for heredocs in JSON form (TestParseJSONHeredoc)", () => {
    const { instructions } = parseDockerfile('FROM alpine:3.6\nRUN ["whoami"]\nRUN ["<<EOF"]\nRUN ["<<\'EOF\'"]\n');
    expect(instructions.map((i) => i.heredocs)).toEqual([[], [], [], []]);
  });

  it("finds heredocs in ONBUILD triggers", () => {
    const { instructions } = parseDockerfile("ONBUILD RUN <<EOF\nhi\nEOF\nFROM a\n");
    expect(instructions[0]?.heredocs).toEqual([doc("EOF", "hi\n")]);
    expect(instructions.map((i) => [i.keyword, i.startLine, i.endLine])).toEqual([
      ["onbuild", 1, 3],
      ["from", 4, 4],
    ]);
  });

  it("chomps leading tabs (TestHeredocChomp)", () => {
    expect(chompHeredocContent("\thello\n\tworld\n")).toBe("hello\nworld\n");
  });

  it("recognises heredoc openers (TestParseHeredocHelpers)", () => {
    for (const valid of ["<<EOF", "<<'EOF'", '<<"EOF"', "<<-EOF", "<<-'EOF'", '<<-"EOF"']) {
      expect(parseHeredoc(valid)?.name).toBe("EOF");
    }
    for (const notHeredoc of ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF"]) {
      expect(parseHeredoc(notHeredoc)).toBeUndefined();
    }
    for (const invalid of ["<<'EOF", '<<"EOF', "<<EOF'", '<<EOF"']) {
      expect(() => parseHeredoc(invalid)).toThrow();
    }
  });

  it("finds every opener on a line (TestHeredocsFromLine)", () => {
    const names = (line: string): string[] =>
      parseDockerfile(`${line}\nEOF\nEOF2\n`, { allowUnknownInstructions: true }).instructions[0]?.heredocs.map((h) => h.name) ?? [];
    expect(names("RUN <<EOF")).toEqual(["EOF"]);
    expect(names("RUN <<-EOF")).toEqual(["EOF"]);
    expect(names("RUN <<'EOF'")).toEqual(["EOF"]);
    expect(names("RUN 4<<EOF")).toEqual(["EOF"]);
    expect(names("RUN <<EOF <<EOF2")).toEqual(["EOF", "EOF2"]);
    expect(names("RUN '<<EOF'")).toEqual([]);
    expect(names('RUN "<<EOF"')).toEqual([]);
  });
});
