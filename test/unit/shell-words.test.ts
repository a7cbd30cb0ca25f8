// Word expansion checked against BuildKit's own cases (test/fixtures/conformance/shell, read the
// way frontend/dockerfile/shell/lex_test.go reads them) plus the table cases of lex_test.go.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { expandWord, expandWords, ShellExpansionError, ShellLex } from "../../src/build/shell-words.js";

const SHELL_FIXTURES = fileURLToPath(new URL("../fixtures/conformance/shell/", import.meta.url));

function fixtureLines(name: string): string[] {
  // bufio.Scanner in lex_test.go splits on "\n" and drops a final empty line.
  const lines = readFileSync(SHELL_FIXTURES + name, "utf8").split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines;
}

describe("envVarTest (BuildKit conformance)", () => {
  // The environment TestShellParser4EnvVars runs every case with.
  const envList = ["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="];
  const envMap = new Map([
    ["PWD", "/home"],
    ["SHELL", "bash"],
    ["KOREAN", "한국어"],
    ["NULL", ""],
  ]);

  interface EnvVarCase {
    lineNumber: number;
    platform: "A" | "U" | "W";
    source: string;
    expected: string;
  }
  const cases: EnvVarCase[] = [];
  fixtureLines("envVarTest").forEach((rawLine, index) => {
    if (rawLine.startsWith("#")) return;
    const line = rawLine.trim();
    if (line === "") return;
    const columns = line.split("|");
    if (columns.length !== 3) throw new Error(`envVarTest:${index + 1}: expected 3 columns`);
    const platform = (columns[0] ?? "").trim();
    if (platform !== "A" && platform !== "U" && platform !== "W") {
      throw new Error(`envVarTest:${index + 1}: bad platform tag ${platform}`);
    }
    cases.push({ lineNumber: index + 1, platform, source: (columns[1] ?? "").trim(), expected: (columns[2] ?? "").trim() });
  });

  it("has all the cases", () => {
    expect(cases.length).toBe(230);
  });

  // The first column says where BuildKit runs a case: A(ll), U(nix), W(indows). The only
  // difference BuildKit makes on Windows is that variable names are case-insensitive, which
  // ShellLex offers as an option, so every case runs here: U and W in their own mode, A in both.
  const modes = [
    { label: "unix", platforms: ["A", "U"], caseInsensitiveEnvKeys: false },
    { label: "windows", platforms: ["A", "W"], caseInsensitiveEnvKeys: true },
  ] as const;

  for (const mode of modes) {
    describe(mode.label, () => {
      const lex = new ShellLex("\\", { caseInsensitiveEnvKeys: mode.caseInsensitiveEnvKeys });
      for (const testCase of cases.filter((c) => (mode.platforms as readonly string[]).includes(c.platform))) {
        it(`line ${testCase.lineNumber}: ${testCase.source} -> ${testCase.expected}`, () => {
          // lex_test.go checks both the list and the map form of the environment.
          for (const env of [envList, envMap]) {
            if (testCase.expected === "error") {
              expect(() => lex.processWord(testCase.source, env)).toThrow(ShellExpansionError);
            } else {
              expect(lex.processWord(testCase.source, env)).toBe(testCase.expected);
            }
          }
        });
      }
    });
  }
});

describe("wordsTest (BuildKit conformance)", () => {
  interface WordsCase {
    lineNumber: number;
    source: string;
    expected: string[];
    env: string[];
  }
  const cases: WordsCase[] = [];
  // "ENV k=v" lines add to the environment of every later case.
  const env: string[] = [];
  fixtureLines("wordsTest").forEach((line, index) => {
    if (line.startsWith("#")) return;
    if (line.startsWith("ENV ")) {
      env.push(line.slice(3).replace(/^ +/, "")); // trailing spaces are part of the value
      return;
    }
    const columns = line.split("|");
    if (columns.length !== 2) throw new Error(`wordsTest:${index + 1}: expected exactly one |`);
    cases.push({
      lineNumber: index + 1,
      source: (columns[0] ?? "").trim(),
      expected: (columns[1] ?? "").replace(/^ +/, "").split(","),
      env: [...env],
    });
  });

  it("has all the cases", () => {
    expect(cases.length).toBe(24);
  });

  // lex_test.go also loops over a second mode (RawQuotes + SkipUnsetEnv), but it reuses the
  // already-exhausted file reader, so in BuildKit that mode runs no case; only this mode has
  // expected results.
  const lex = new ShellLex("\\");
  for (const testCase of cases) {
    it(`line ${testCase.lineNumber}: ${testCase.source} -> ${testCase.expected.join(",")}`, () => {
      for (const envForm of [testCase.env, new Map(testCase.env.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]))]) {
        let words: string[];
        try {
          words = lex.processWords(testCase.source, envForm);
        } catch (err) {
          expect(err).toBeInstanceOf(ShellExpansionError);
          words = ["error"];
        }
        expect(words).toEqual(testCase.expected);
      }
    });
  }
});

// The table of TestProcessWithMatches and friends in lex_test.go.
describe("lex_test.go cases", () => {
  interface MatchCase {
    input: string;
    env: Record<string, string>;
    expected?: string;
    matched?: string[];
    unmatched?: string[];
  }
  const cases: MatchCase[] = [
    { input: "x", env: { DUMMY: "dummy" }, expected: "x" },
    { input: "x ${UNUSED}", env: { DUMMY: "dummy" }, expected: "x ", unmatched: ["UNUSED"] },
    { input: "x ${FOO}", env: { FOO: "y" }, expected: "x y", matched: ["FOO"] },
    { input: "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", env: { FOO: "xxx", BAR: "" }, expected: "xxx  ccc", matched: ["FOO", "BAR"], unmatched: ["BAZ"] },
    { input: "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", env: { FOO: "xxx", BAR: "" }, expected: "xxx bbb ccc", matched: ["FOO", "BAR"], unmatched: ["BAZ"] },
    { input: "${FOO:-}", env: { FOO: "xxx", BAR: "" }, expected: "xxx", matched: ["FOO"] },
    { input: "${FOO:-}", env: {}, expected: "", unmatched: ["FOO"] },
    { input: "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", env: { FOO: "xxx", BAR: "" }, expected: "aaa bbb ", matched: ["FOO", "BAR"], unmatched: ["BAZ"] },
    { input: "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", env: { FOO: "xxx", BAR: "" }, expected: "aaa  ", matched: ["FOO", "BAR"], unmatched: ["BAZ"] },
    { input: "${FOO?aaa}", env: { FOO: "xxx", BAR: "" }, expected: "xxx", matched: ["FOO"] },
    { input: "${BAR?bbb}", env: { FOO: "xxx", BAR: "" }, expected: "", matched: ["BAR"] },
    { input: "${BAZ?ccc}", env: { FOO: "xxx", BAR: "" } },
    { input: "${FOO:?aaa}", env: { FOO: "xxx", BAR: "" }, expected: "xxx", matched: ["FOO"] },
    { input: "${BAR:?bbb}", env: { FOO: "xxx", BAR: "" } },
    { input: "${BAZ:?ccc}", env: { FOO: "xxx", BAR: "" } },
    { input: "${BAZ:?}", env: { FOO: "xxx", BAR: "" } },
    { input: "${FOO=aaa}", env: { FOO: "xxx", BAR: "" } },
    { input: "${FOO=:aaa}", env: { FOO: "xxx", BAR: "" } },
    { input: "${FOO=}", env: {} },
    // Special characters in regular expressions; } is escaped so it does not close the ${}.
    { input: "${FOO#()[]{\\}^$.\\*\\?|\\\\}", env: { FOO: "()[]{}^$.*?|\\x" }, expected: "x", matched: ["FOO"] },
    { input: "${FOO%%\\**}", env: { FOO: "xx**" }, expected: "xx", matched: ["FOO"] },
    { input: "${FOO#*x*y}", env: { FOO: "xxyy" }, expected: "y", matched: ["FOO"] },
    { input: "${FOO#*}", env: { FOO: "xxyy" }, expected: "xxyy", matched: ["FOO"] },
    { input: "${FOO#$BAR}", env: { FOO: "xxyy", BAR: "x" }, expected: "xyy", matched: ["FOO", "BAR"] },
    { input: "${FOO#$BAR}", env: { FOO: "xxyy", BAR: "" }, expected: "xxyy", matched: ["FOO", "BAR"] },
    { input: "${FOO#}", env: { FOO: "xxyy" }, expected: "xxyy", matched: ["FOO"] },
    { input: "${FOO##*x}", env: { FOO: "xxyy" }, expected: "yy", matched: ["FOO"] },
    { input: "${FOO##}", env: { FOO: "xxyy" }, expected: "xxyy", matched: ["FOO"] },
    { input: "${FOO#?\\?}", env: { FOO: "???y" }, expected: "?y", matched: ["FOO"] },
    { input: "${ABC:-.}${FOO%x}${ABC:-.}", env: { FOO: "xxyy" }, expected: ".xxyy.", matched: ["FOO"], unmatched: ["ABC"] },
    { input: "${FOO%%\\**\\*}", env: { FOO: "a***yy*" }, expected: "a", matched: ["FOO"] },
    { input: "${FOO%}", env: { FOO: "xxyy" }, expected: "xxyy", matched: ["FOO"] },
    { input: "${FOO%%$BAR}", env: { FOO: "xxyy", BAR: "" }, expected: "xxyy", matched: ["FOO", "BAR"] },
    { input: "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", env: { FOO: "/foo*/*/*.txt", NEEDLE: "\\*/" }, expected: "/foo.*/*.txt - /foo..*.txt", matched: ["FOO", "NEEDLE"] },
    { input: "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", env: { FOO: "/tmp/tmp/bar.txt", NEEDLE: "/tmp" }, expected: "/tmp/bar.txt - /bar.txt", matched: ["FOO", "NEEDLE"] },
    { input: "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}", env: { FOO: "/a/foo/b/c.txt", NEEDLE: "/?/", REPLACEMENT: "/" }, expected: "/foo/b/c.txt - /foo/c.txt", matched: ["FOO", "NEEDLE", "REPLACEMENT"] },
    { input: "${FOO/$NEEDLE/$REPLACEMENT}", env: { FOO: "http://google.de", NEEDLE: "http://", REPLACEMENT: "https://" }, expected: "https://google.de", matched: ["FOO", "NEEDLE", "REPLACEMENT"] },
    { input: "${FOO//\\//\\/}", env: { FOO: "/tmp/foo.txt" }, expected: "\\/tmp\\/foo.txt", matched: ["FOO"] },
    // Partial input: not guaranteed behaviour in BuildKit, but must not crash.
    { input: "${FOO/$BAR/ww}", env: { FOO: "xxyy", BAR: "" }, expected: "wwxxyy", matched: ["FOO", "BAR"] },
    { input: "${FOO//ww}", env: { FOO: "xxyy" } },
    { input: "${FOO//}", env: { FOO: "xxyy" } },
    { input: "${FOO///}", env: { FOO: "xxyy" }, expected: "xxyy", matched: ["FOO"] },
    { input: "${FOO///}", env: {}, expected: "", unmatched: ["FOO"] },
  ];

  const lex = new ShellLex("\\");
  for (const testCase of cases) {
    it(`${testCase.input} with ${JSON.stringify(testCase.env)}`, () => {
      if (testCase.expected === undefined) {
        expect(() => lex.process(testCase.input, testCase.env)).toThrow(ShellExpansionError);
        return;
      }
      const result = lex.process(testCase.input, testCase.env);
      expect(result.result).toBe(testCase.expected);
      expect([...result.matched].sort()).toEqual([...(testCase.matched ?? [])].sort());
      expect([...result.unmatched].sort()).toEqual([...(testCase.unmatched ?? [])].sort());
    });
  }

  it("reports ${VAR?message} and ${VAR:?message} with the message (TestShellParserMandatoryEnvVars)", () => {
    const setEnvs = ["VAR=plain", "ARG=x"];
    const emptyEnvs = ["VAR=", "ARG=x"];
    const unsetEnvs = ["ARG=x"];
    const noEmpty = "${VAR:?message here$ARG}";
    const noUnset = "${VAR?message here$ARG}";
    expect(expandWord(noEmpty, setEnvs)).toBe("plain");
    expect(() => expandWord(noEmpty, emptyEnvs)).toThrow("message herex");
    expect(() => expandWord(noEmpty, unsetEnvs)).toThrow("message herex");
    expect(expandWord(noUnset, setEnvs)).toBe("plain");
    expect(expandWord(noUnset, emptyEnvs)).toBe("");
    expect(() => expandWord(noUnset, unsetEnvs)).toThrow("message herex");
  });

  it("expands the release-name pattern of TestProcessWithMatchesPlatform", () => {
    const release = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    const env = { VERSION: "v1.2.3", TARGETOS: "linux", TARGETARCH: "arm", TARGETVARIANT: "v7" };
    expect(expandWord(release, env)).toBe("something-v1.2.3.linux-arm-v7.tar.gz");
    expect(expandWord(release, { ...env, TARGETVARIANT: "" })).toBe("something-v1.2.3.linux-arm.tar.gz");
  });

  it("takes the last of repeated variables in a list (TestGetEnv)", () => {
    expect(expandWord("$car", ["foo=bar", "car=hat", "car=bike"])).toBe("bike");
    expect(expandWord("[$foo]", ["foo"])).toBe("[]");
  });
});

describe("ShellLex options and API", () => {
  it("uses the backtick as escape character when asked", () => {
    expect(expandWord("a`$b", { b: "x" }, "`")).toBe("a$b");
    expect(expandWord("a\\b", {}, "`")).toBe("a\\b");
    expect(expandWords("a` b c", {}, "`")).toEqual(["a b", "c"]);
    expect(expandWord('"x`"y"', {}, "`")).toBe('x"y');
  });

  it("leaves unset variables as written with skipUnsetEnv", () => {
    const lex = new ShellLex("\\", { skipUnsetEnv: true });
    expect(lex.processWord("$A ${B} ${C:-d} ${E/x/y} $F", { F: "f" })).toBe("$A ${B} ${C:-d} ${E/x/y} f");
  });

  it("keeps quotes with rawQuotes and escapes with rawEscapes", () => {
    expect(new ShellLex("\\", { rawQuotes: true }).processWords(`'a b' "c d"`, [])).toEqual(["'a b'", '"c d"']);
    expect(new ShellLex("\\", { rawEscapes: true }).processWord("a\\ b", [])).toBe("a\\ b");
  });

  it("treats quotes as text with skipProcessQuotes", () => {
    expect(new ShellLex("\\", { skipProcessQuotes: true }).processWords(`'a b'`, [])).toEqual(["'a", "b'"]);
  });

  it("replaces like Go: no extra replacement for the empty match after a match, $0 is the match", () => {
    expect(expandWord("${X//*/y}", { X: "abc" })).toBe("y");
    expect(expandWord("${X//b/[$0]}", { X: "abcb" })).toBe("a[]c[]"); // the shell expands $0 (unset) first
    // An escaped "$" survives the shell step (escapes are kept in patterns and replacements), so
    // Go's template sees "$0".
    expect(expandWord("${X//b/<\\$0>}", { X: "abcb" })).toBe("a<\\b>c<\\b>");
  });

  it("rejects ${VAR:#pattern} and bad pattern escapes", () => {
    expect(() => expandWord("${X:#a}", { X: "a" })).toThrow("unsupported modifier (:#) in substitution");
    expect(() => expandWord("${X#\\a}", { X: "a" })).toThrow("invalid escape");
  });

  it("names the word in errors", () => {
    expect(() => expandWord("he${}", {})).toThrow('failed to process "he${}": syntax error: bad substitution');
    expect(() => expandWord("${X:-a", {})).toThrow("syntax error: missing '}'");
  });
});
