// The builder's pure parts: .dockerignore and COPY wildcard matching (moby/patternmatcher and Go's
// filepath.Match rules), the stage graph, ARG scoping.
import { describe, expect, it } from "vitest";
import { BadPatternError, CopyFilter, cleanPath, compileGlob, IgnoreMatcher, readDockerignore } from "../../src/build/path-patterns.js";
import { findStage, parseFlags, stageGraph, targetStage } from "../../src/build/stages.js";
import { BuildArgs, StageArgs } from "../../src/build/build-args.js";
import { DockerfileParseError, parseDockerfile } from "../../src/build/dockerfile.js";

describe("COPY wildcards (Go filepath.Match)", () => {
  const cases: [string, string, boolean][] = [
    ["*.txt", "a.txt", true],
    ["*.txt", ".txt", true],
    ["*.txt", "a.txt.bak", false],
    ["*", "a/b", false],
    ["a?c", "abc", true],
    ["a?c", "a/c", false],
    ["[a-c]x", "bx", true],
    ["[a-c]x", "dx", false],
    ["[^a-c]x", "dx", true],
    ["[^a-c]x", "ax", false],
    ["\\*x", "*x", true],
    ["\\*x", "ax", false],
    ["f[.]g", "f.g", true],
    ["(x)+", "(x)+", true],
    // "-" is literal outside a class (a unicode RegExp refuses an escaped one).
    ["requirements-*.txt", "requirements-dev.txt", true],
    ["build-?", "build-1", true],
    ["[\\-x]a", "-a", true],
    ["a\\-b", "a-b", true],
  ];
  for (const [pattern, name, want] of cases) {
    it(`${pattern} ${want ? "matches" : "does not match"} ${name}`, () => {
      expect(compileGlob(pattern).test(name)).toBe(want);
    });
  }
  it("refuses what Go calls a bad pattern", () => {
    for (const bad of ["[", "[]", "a[b", "x\\", "[z-a]"]) expect(() => compileGlob(bad), bad).toThrow(BadPatternError);
  });
});

describe("Go path.Clean", () => {
  it("cleans like Go", () => {
    expect(cleanPath("")).toBe(".");
    expect(cleanPath("a//b/./c/")).toBe("a/b/c");
    expect(cleanPath("/../a/..")).toBe("/");
    expect(cleanPath("../a")).toBe("../a");
    expect(cleanPath("a/../..")).toBe("..");
  });
});

describe(".dockerignore", () => {
  it("reads patterns as moby's ignorefile does", () => {
    const text = "\ufeff# comment\n\n  *.log  \n/abs/path\n!keep.log\n! spaced\n./dir/../other/\n #not a comment\n";
    expect(readDockerignore(text)).toEqual(["*.log", "abs/path", "!keep.log", "!spaced", "other", "#not a comment"]);
  });

  const matches = (patterns: string[], file: string): boolean => new IgnoreMatcher(patterns).excludes(file);

  it("matches files, and everything below a matched directory", () => {
    expect(matches(["*.go"], "a.go")).toBe(true);
    expect(matches(["*.go"], "dir/a.go")).toBe(false);
    expect(matches(["dir"], "dir/sub/file")).toBe(true);
    expect(matches(["dir/*"], "dir/sub/file")).toBe(true);
    expect(matches(["di?"], "dir")).toBe(true);
  });

  it("** spans directories", () => {
    expect(matches(["**/*.go"], "a.go")).toBe(true);
    expect(matches(["**/*.go"], "x/y/a.go")).toBe(true);
    expect(matches(["docs/**"], "docs/a/b")).toBe(true);
    expect(matches(["a/**/b"], "a/b")).toBe(true);
    expect(matches(["a/**/b"], "a/x/y/b")).toBe(true);
    expect(matches(["a/**/b"], "a/x/y/c")).toBe(false);
    expect(matches(["**"], "anything/at/all")).toBe(true);
  });

  it("the last matching line decides; ! re-includes", () => {
    expect(matches(["*.log", "!keep.log"], "keep.log")).toBe(false);
    expect(matches(["*.log", "!keep.log"], "drop.log")).toBe(true);
    expect(matches(["!keep.log", "*.log"], "keep.log")).toBe(true);
    expect(matches(["dir", "!dir/keep"], "dir/keep")).toBe(false);
    expect(matches(["dir", "!dir/keep"], "dir/other")).toBe(true);
    expect(new IgnoreMatcher(["dir", "!dir/keep"]).hasExceptions).toBe(true);
  });

  it("never excludes the context root; refuses a lone !", () => {
    expect(matches(["*"], ".")).toBe(false);
    expect(() => new IgnoreMatcher(["!"])).toThrow(BadPatternError);
    expect(() => new IgnoreMatcher(["[z-a]"])).toThrow(BadPatternError);
  });
});

describe("COPY --exclude and --parents patterns", () => {
  it("an include pattern (--parents) takes what it names and everything below; directories on the way are walked, others not", () => {
    const f = new CopyFilter(["x/*/a.txt"], []);
    expect(f.accepts("x/y/a.txt")).toBe(true);
    expect(f.accepts("x/y/a.txt/deeper")).toBe(true);
    expect(f.accepts("x/y/b.txt")).toBe(false);
    expect(f.accepts("x")).toBe(false);
    expect(f.mayAcceptBelow("x")).toBe(true);
    expect(f.mayAcceptBelow("x/y")).toBe(true);
    expect(f.mayAcceptBelow("docs")).toBe(false);
    expect(f.mayAcceptBelow("x/y/z")).toBe(false);
    expect(new CopyFilter(["**/*.txt"], []).mayAcceptBelow("any/where")).toBe(true);
  });

  it("excludes drop a directory's contents unless an exception may re-include something", () => {
    expect(new CopyFilter([], ["node_modules"]).mayAcceptBelow("node_modules")).toBe(false);
    const withException = new CopyFilter([], ["docs", "!docs/keep.md"]);
    expect(withException.mayAcceptBelow("docs")).toBe(true);
    expect(withException.accepts("docs/keep.md")).toBe(true);
    expect(withException.accepts("docs/other.md")).toBe(false);
    expect(new CopyFilter(["x"], ["x/z"]).accepts("x/z/c.txt")).toBe(false);
    expect(() => new CopyFilter([], ["["])).toThrow(BadPatternError);
  });
});

describe("stage graph", () => {
  const graph = (text: string) => stageGraph(parseDockerfile(text));

  it("splits global ARGs and stages, names are case-insensitive", () => {
    const g = graph("ARG V=1\nFROM busybox:$V AS Builder\nRUN x\nFROM --platform=linux/amd64 builder\nCOPY --from=0 /a /b\n");
    expect(g.globalArgs.map((a) => a.args)).toEqual([["V=1"]]);
    expect(g.stages.map((s) => [s.index, s.name, s.base, s.platform, s.instructions.length])).toEqual([
      [0, "builder", "busybox:$V", undefined, 1],
      [1, undefined, "builder", "linux/amd64", 1],
    ]);
    expect(findStage(g, "BUILDER")?.index).toBe(0);
    expect(findStage(g, "1")?.index).toBe(1);
    expect(findStage(g, "nope")).toBeUndefined();
    expect(targetStage(g, undefined).index).toBe(1);
    expect(targetStage(g, "builder").index).toBe(0);
    expect(() => targetStage(g, "nope")).toThrow(/target stage "nope" could not be found/);
  });

  it("a name used twice is a warning: FROM sees the last stage above it, --from and --target the last one", () => {
    const g = graph("FROM a AS x\nFROM x AS y\nFROM b AS X\nFROM x\n");
    expect(g.warnings).toEqual([{ message: 'duplicate stage name "x", stage names should be unique', line: 3 }]);
    expect(findStage(g, "x", 1)?.index).toBe(0);
    expect(findStage(g, "x", 3)?.index).toBe(2);
    expect(findStage(g, "x")?.index).toBe(2);
    expect(targetStage(g, "x").index).toBe(2);
  });

  it("rejects what BuildKit rejects, with the line", () => {
    const err = (text: string): DockerfileParseError => {
      try {
        graph(text);
      } catch (e) {
        if (e instanceof DockerfileParseError) return e;
        throw e;
      }
      throw new Error("no error");
    };
    expect(err("RUN x\nFROM a\n").message).toBe("Dockerfile:1: no build stage in current context: RUN must come after a FROM");
    expect(err("FROM a AS 1x\n").message).toMatch(/^Dockerfile:1: invalid name for build stage/);
    expect(err("FROM a b\n").message).toBe("Dockerfile:1: FROM requires either one or three arguments");
    expect(err("ARG x\n").message).toMatch(/no build stage/);
    expect(err("FROM --bad=1 a\n").message).toBe("Dockerfile:1: unknown flag: --bad");
  });

  it("parses instruction flags", () => {
    const [ins] = parseDockerfile("COPY --from=a --link --chmod=755 x y\n").instructions;
    const flags = parseFlags(ins!, { from: "string", link: "bool", chmod: "string" });
    expect([...flags]).toEqual([["from", "a"], ["link", true], ["chmod", "755"]]);
    const [dup] = parseDockerfile("COPY --from=a --from=b x y\n").instructions;
    expect(() => parseFlags(dup!, { from: "string" })).toThrow(/duplicate flag specified: --from/);
    const [bad] = parseDockerfile("COPY --link=maybe x y\n").instructions;
    expect(() => parseFlags(bad!, { link: "bool" })).toThrow(/expecting boolean value/);
  });
});

describe("ARG scoping", () => {
  const platform = { os: "linux", architecture: "amd64" };
  const ins = (text: string) => parseDockerfile(text).instructions[0]!;

  it("global ARGs: defaults, --build-arg values, the automatic platform ARGs", () => {
    const args = new BuildArgs(new Map([["B", "given"]]), platform, "\\");
    const scope = args.globalScope([ins("ARG A=x${TARGETARCH}\n"), ins("ARG B=default C\n")]);
    expect(scope.get("A")).toBe("xamd64");
    expect(scope.get("B")).toBe("given");
    expect(scope.has("C")).toBe(false);
    expect(scope.get("BUILDPLATFORM")).toBe("linux/amd64");
    expect(args.unconsumed()).toEqual([]);
  });

  it("a stage sees ARGs from their declaration; ENV wins in expansions; RUN gets ARGs ENV does not set", () => {
    const args = new BuildArgs(new Map([["X", "from-cli"], ["UNUSED", "1"], ["http_proxy", "http://p"], ["BUILDKIT_INLINE_CACHE", "1"], ["SOURCE_DATE_EPOCH", "0"]]), platform, "\\");
    const globals = args.globalScope([ins("ARG G=global\n")]);
    const stage = new StageArgs(args, globals);
    expect(stage.expansionScope([]).has("G")).toBe(false);
    stage.declare(ins("ARG G\n"), []);
    stage.declare(ins("ARG X=default Y=$G-y\n"), []);
    stage.declare(ins("ARG TARGETOS\n"), []);
    // `ENV Y=env` after the ARG.
    stage.envSet(["Y"]);
    expect(Object.fromEntries(stage.expansionScope(["Y=env"]))).toEqual({ G: "global", X: "from-cli", Y: "env", TARGETOS: "linux" });
    const run = stage.runEnvironment(["Y=env"]);
    expect(run.args).toEqual([["G", "global"], ["TARGETOS", "linux"], ["X", "from-cli"]]);
    expect(run.proxies).toEqual([["http_proxy", "http://p"]]);
    expect(args.unconsumed()).toEqual(["UNUSED"]);
  });

  it("a global ARG without a value keeps the automatic platform value or an earlier default (BuildKit's buildMetaArgs)", () => {
    const args = new BuildArgs(new Map(), platform, "\\");
    const scope = args.globalScope([ins("ARG TARGETARCH\n"), ins("ARG A=1\n"), ins("ARG A\n"), ins("ARG NEVER\n")]);
    expect(scope.get("TARGETARCH")).toBe("amd64");
    expect(scope.get("A")).toBe("1");
    expect(scope.has("NEVER")).toBe(false);
  });

  it("an ARG declared after an ENV of its name (the base image's) wins until an ENV sets it again, as in BuildKit", () => {
    const args = new BuildArgs(new Map([["HELLO", "cli"]]), platform, "\\");
    const stage = new StageArgs(args, args.globalScope([]));
    const env = ["DEBIAN_FRONTEND=teletype", "HELLO=World"];
    stage.declare(ins("ARG DEBIAN_FRONTEND=noninteractive HELLO\n"), env);
    expect(stage.expansionScope(env).get("DEBIAN_FRONTEND")).toBe("noninteractive");
    expect(stage.runEnvironment(env).args).toEqual([["DEBIAN_FRONTEND", "noninteractive"], ["HELLO", "cli"]]);
    // A stage built FROM this one keeps that.
    expect(stage.derive().expansionScope(env).get("HELLO")).toBe("cli");
    stage.envSet(["HELLO"]);
    expect(stage.expansionScope(env).get("HELLO")).toBe("World");
    expect(stage.runEnvironment(env).args).toEqual([["DEBIAN_FRONTEND", "noninteractive"]]);
  });

  it("rejects a blank ARG name", () => {
    const args = new BuildArgs(new Map(), platform, "\\");
    expect(() => args.globalScope([ins("ARG =x\n")])).toThrow(/ARG names can not be blank/);
  });
});
