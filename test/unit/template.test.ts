// Expected outputs below were checked against Go's text/template (with Docker's template
// functions and JSON-decoded data) unless a comment says where we deliberately differ.

import { describe, expect, it } from "vitest";
import {
  alignColumns,
  compileTemplate,
  formatTemplate,
  isTableFormat,
  parseTableFormat,
  renderTable,
  Template,
  TemplateError,
} from "../../src/format/template.js";

/** Runs a template expecting it to fail and returns the error message. */
function errorOf(src: string, data: unknown = {}): string {
  try {
    formatTemplate(src, data);
  } catch (error) {
    expect(error).toBeInstanceOf(TemplateError);
    return (error as TemplateError).message;
  }
  throw new Error(`template ${JSON.stringify(src)} did not fail`);
}

const container = {
  ID: "4f66ad9a0b2e",
  Name: "/web",
  Args: ["-g", "daemon off;"],
  Config: { Env: ["PATH=/usr/bin", "TERM=xterm"], Labels: { "com.example.vendor": "ACME", version: "1.0" } },
  State: { Status: "running", Running: true, ExitCode: 0, Health: null },
  Mounts: [
    { Source: "/srv/data", Destination: "/data" },
    { Source: "/srv/logs", Destination: "/logs" },
  ],
  NetworkSettings: { Ports: { "80/tcp": [{ HostIp: "0.0.0.0", HostPort: "8080" }] } },
};

describe("fields and value printing", () => {
  it("prints fields separated by text", () => {
    expect(formatTemplate("{{.ID}}\t{{.Repository}}", { ID: "abc", Repository: "nginx" })).toBe("abc\tnginx");
  });

  it("walks nested fields and prints slices like Go", () => {
    expect(formatTemplate("{{.Config.Env}}", container)).toBe("[PATH=/usr/bin TERM=xterm]");
    expect(formatTemplate("{{.State.Running}} {{.State.ExitCode}}", container)).toBe("true 0");
  });

  it("reads map keys with field syntax and prints <no value> for missing ones", () => {
    expect(formatTemplate("{{.Config.Labels.version}}", container)).toBe("1.0");
    expect(formatTemplate("{{.Config.Labels.missing}}", container)).toBe("<no value>");
    expect(formatTemplate("{{.Missing.Deeper}}", container)).toBe("<no value>");
  });

  it("prints maps with sorted keys", () => {
    expect(formatTemplate("{{.Labels}}", { Labels: { b: "2", a: "1", C: "3" } })).toBe("map[C:3 a:1 b:2]");
    expect(formatTemplate("{{.}}", { x: { y: [1, 2, { z: null }] } })).toBe("map[x:map[y:[1 2 map[z:<nil>]]]]");
  });

  it("prints numbers as Go prints int and float64", () => {
    const data = { N: 42, F: 1.5, Big: 1e21, Small: 0.00001, Mid: 1234567.5, Neg: -0.25, E: 1e-7, T: 0.1 };
    expect(formatTemplate("{{.N}} {{.F}} {{.Big}} {{.Small}} {{.Mid}} {{.Neg}} {{.E}} {{.T}}", data)).toBe(
      "42 1.5 1e+21 1e-05 1.2345675e+06 -0.25 1e-07 0.1",
    );
  });

  it("prints nil as <no value> at top level and <nil> inside containers", () => {
    const data = { A: null, B: [1, "x", null, true], C: [], D: {} };
    expect(formatTemplate("{{.A}} {{.B}} {{.C}} {{.D}}", data)).toBe("<no value> [1 x <nil> true] [] map[]");
  });

  it("prints dot and $", () => {
    expect(formatTemplate("{{.}}", "hello")).toBe("hello");
    expect(formatTemplate("{{$}}", { a: 1 })).toBe("map[a:1]");
    expect(formatTemplate("{{.}}", null)).toBe("<no value>");
  });

  it("never reads inherited properties", () => {
    expect(formatTemplate("{{.constructor}} {{.toString}}", {})).toBe("<no value> <no value>");
  });

  it("fails on a field of a nil value, like Docker's nil pointer error", () => {
    expect(errorOf("{{.State.Health.Status}}", container)).toBe(
      'template: :1:8: executing "" at <.State.Health.Status>: nil pointer evaluating interface {}.Status',
    );
  });

  it("fails on a field of a non-map value", () => {
    // Go names the static type (interface {}) for decoded JSON; we name the value's own type.
    expect(errorOf("{{.Name.Foo}}", { Name: "x" })).toBe(
      'template: :1:7: executing "" at <.Name.Foo>: can\'t evaluate field Foo in type string',
    );
    expect(errorOf("{{.A 1}}", { A: "x" })).toBe(
      'template: :1:2: executing "" at <.A>: A is not a method but has arguments',
    );
  });
});

describe("index and slice", () => {
  it("indexes maps and arrays as in docker inspect examples", () => {
    expect(formatTemplate('{{index .NetworkSettings.Ports "80/tcp"}}', container)).toBe(
      "[map[HostIp:0.0.0.0 HostPort:8080]]",
    );
    expect(formatTemplate('{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}', container)).toBe("8080");
    expect(formatTemplate("{{index .Args 0}} {{index .A 1 0}}", { Args: ["a", "b"], A: [[1, 2], [3, 4]] })).toBe("a 3");
    expect(formatTemplate('{{index .Config.Labels "com.example.vendor"}}', container)).toBe("ACME");
  });

  it("returns the map's zero value for a missing key", () => {
    // Go returns "" for map[string]string (Docker's labels) and nil for other maps.
    expect(formatTemplate('[{{index .Config.Labels "nope"}}]', container)).toBe("[]");
    expect(formatTemplate('[{{index .Labels "nope"}}]', { Labels: {} })).toBe("[]");
    expect(formatTemplate('{{index .M "zz"}}', { M: { a: 1 } })).toBe("<no value>");
  });

  it("indexes strings by byte", () => {
    expect(formatTemplate("{{index .S 1}}", { S: "héllo" })).toBe("195");
  });

  it("reports index errors like Go", () => {
    const arr = { Arr: ["a", "b", "c"] };
    expect(errorOf("{{index .Arr 5}}", arr)).toBe(
      'template: :1:2: executing "" at <index .Arr 5>: error calling index: index out of range: 5',
    );
    expect(errorOf("{{index .Arr 3}}", arr)).toBe(
      'template: :1:2: executing "" at <index .Arr 3>: error calling index: reflect: slice index out of range',
    );
    expect(errorOf('{{index .Arr "x"}}', arr)).toContain("error calling index: cannot index slice/array with type string");
    expect(errorOf("{{index .M 1}}", { M: { a: 1 } })).toContain("error calling index: value has type int; should be string");
    expect(errorOf("{{index .Missing 0}}")).toContain("error calling index: index of untyped nil");
    expect(errorOf("{{index .N 0}}", { N: 5 })).toContain("error calling index: can't index item of type int");
  });

  it("slices strings and arrays", () => {
    expect(formatTemplate("{{slice .S 1 3}} {{slice .A 1}} {{slice .A}} {{slice .A 1 2 3}}", { S: "abcdef", A: [1, 2, 3] })).toBe(
      "bc [2 3] [1 2 3] [2]",
    );
    expect(formatTemplate('{{slice "héllo" 1 3}}')).toBe("é");
    expect(errorOf("{{slice .A 2 1}}", { A: [1, 2, 3] })).toContain("error calling slice: invalid slice index: 2 > 1");
    expect(errorOf('{{slice "abc" 1 2 3}}')).toContain("error calling slice: cannot 3-index slice a string");
  });
});

describe("Docker's template functions", () => {
  it("join and split", () => {
    expect(formatTemplate('{{join .Args " "}}', container)).toBe("-g daemon off;");
    expect(formatTemplate('{{join .Missing ","}}', {})).toBe("");
    expect(formatTemplate('{{split .Image ":"}}', { Image: "nginx:latest" })).toBe("[nginx latest]");
    expect(formatTemplate('{{split "héy" ""}} {{len (split "" ",")}} {{len (split "" "")}}')).toBe("[h é y] 1 0");
  });

  it("lower, upper and title", () => {
    expect(formatTemplate("{{lower .Name}}", { Name: "WEB-Server" })).toBe("web-server");
    expect(formatTemplate("{{lower .Name}} {{upper .Name}} {{title .Name}}", { Name: "hello wORLD-foo_bar ßtraße" })).toBe(
      "hello world-foo_bar ßtraße HELLO WORLD-FOO_BAR ßTRAßE Hello WORLD-Foo_bar ßtraße",
    );
    expect(formatTemplate('{{title "hello   wOrld-x.y_z 3am"}}')).toBe("Hello   WOrld-X.Y_z 3am");
  });

  it("pad and truncate", () => {
    expect(formatTemplate("{{pad .Name 2 3}}|{{pad .E 2 3}}|", { Name: "x", E: "" })).toBe("  x   ||");
    expect(formatTemplate("{{truncate .Name 3}}|{{truncate .Name 10}}|{{truncate .Name 5}}", { Name: "abcde" })).toBe(
      "abc|abcde|abcde",
    );
    expect(errorOf('{{truncate "abc" -1}}')).toContain(
      "error calling truncate: runtime error: slice bounds out of range [:-1]",
    );
  });

  it("json encodes like encoding/json without HTML escaping", () => {
    expect(formatTemplate("{{json .Config}}", container)).toBe(
      '{"Env":["PATH=/usr/bin","TERM=xterm"],"Labels":{"com.example.vendor":"ACME","version":"1.0"}}',
    );
    expect(formatTemplate("{{json .}}", { Name: 'x\u2028y\n\t\u0001"\\<&>' })).toBe(
      '{"Name":"x\\u2028y\\n\\t\\u0001\\"\\\\<&>"}',
    );
    expect(formatTemplate("{{json 1.5}} {{json .A}} {{json nil}} {{json 1e21}} {{json 1e-7}} {{json .Missing}}", {
      A: [1, "2", null, { a: [] }],
    })).toBe('1.5 [1,"2",null,{"a":[]}] null 1e+21 1e-7 null');
  });

  it("json keeps struct-like objects in order and sorts map-like ones, as Go does", () => {
    const data = { Config: { Tty: false, Env: ["A=1"], Labels: { z: "1", a: "2" } } };
    expect(formatTemplate("{{json .Config}}", data)).toBe('{"Tty":false,"Env":["A=1"],"Labels":{"a":"2","z":"1"}}');
  });

  it("json prints nothing for values encoding/json rejects", () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    expect(formatTemplate("[{{json .}}]", cyclic)).toBe("[]");
    expect(formatTemplate("[{{json .N}}]", { N: Number.NaN })).toBe("[]");
  });

  it("rejects arguments of the wrong type", () => {
    expect(errorOf("{{join .Args}}", container)).toBe(
      'template: :1:2: executing "" at <join>: wrong number of args for join: want 2 got 1',
    );
    expect(errorOf("{{lower 3}}")).toBe('template: :1:8: executing "" at <3>: expected string; found 3');
    expect(errorOf("{{lower .N}}", { N: 3 })).toBe(
      'template: :1:8: executing "" at <.N>: wrong type for value; expected string; got int',
    );
    expect(errorOf("{{lower .Missing}}")).toContain("invalid value; expected string");
    expect(errorOf('{{pad .S "a" 1}}', { S: "x" })).toContain('expected integer; found "a"');
  });
});

describe("Go built-in functions", () => {
  it("len counts bytes, elements and keys", () => {
    expect(formatTemplate("{{len .S}} {{len .A}} {{len .M}} {{len \"日本\"}}", { S: "héllo", A: [1, 2], M: { a: 1 } })).toBe(
      "6 2 1 6",
    );
    expect(errorOf("{{len .N}}", { N: 3 })).toContain("error calling len: len of type int");
    expect(errorOf("{{len .Nil}}", { Nil: null })).toContain("error calling len: len of nil pointer");
  });

  it("print and println space operands like fmt", () => {
    expect(formatTemplate('{{print .A .B 1 2 "x" 3}}', { A: 1, B: "s" })).toBe("1s1 2x3");
    expect(formatTemplate("{{print nil 1}} {{print .A .B}}", { A: [1], B: { x: 1 } })).toBe("<nil> 1 [1] map[x:1]");
    expect(formatTemplate('{{println .A "b" 3}}', { A: 1 })).toBe("1 b 3\n");
  });

  it("and, or and not return Go's values and short-circuit", () => {
    expect(formatTemplate('{{and 1 0 2}} {{and 1 2}} {{or 0 "" 3}} {{or 0 ""}} {{not 0}} {{not .A}}', { A: [1] })).toBe(
      "0 2 3  true false",
    );
    // The second argument would fail if it were evaluated.
    expect(formatTemplate('{{or .Missing "default"}} {{and .Missing (index .Missing 0)}}')).toBe("default <no value>");
  });

  it("compares with eq, ne, lt, le, gt, ge", () => {
    expect(formatTemplate('{{if eq .S "a" "b" "c"}}yes{{end}}', { S: "c" })).toBe("yes");
    expect(formatTemplate('{{ne .A 1}} {{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1 2}}', { A: 2 })).toBe(
      "true true true true false",
    );
    expect(formatTemplate('{{eq .Missing "x"}} {{eq .Missing nil}} {{eq .Nil .Missing}}', { Nil: null })).toBe(
      "false true true",
    );
    // Numbers compare by value: JS cannot tell Go's int from float64, so eq 0.0 0 is true here.
    expect(formatTemplate("{{if eq 0.0 .State.ExitCode}}exited cleanly{{end}}", container)).toBe("exited cleanly");
  });

  it("reports comparison errors", () => {
    expect(errorOf("{{eq .S 1}}", { S: "c" })).toBe(
      'template: :1:2: executing "" at <eq .S 1>: error calling eq: incompatible types for comparison: string and int',
    );
    expect(errorOf("{{eq .A .A}}", { A: [1] })).toContain("error calling eq: non-comparable type [%!s(int=1)]: []interface {}");
    expect(errorOf("{{lt true false}}")).toContain("error calling lt: invalid type for comparison");
    expect(errorOf("{{eq 1}}")).toContain("error calling eq: missing argument for comparison");
  });

  it("html, js and urlquery escape", () => {
    expect(formatTemplate(`{{html "<a href='x'>&"}}`)).toBe("&lt;a href=&#39;x&#39;&gt;&amp;");
    expect(formatTemplate('{{js "a\'b\\"c<d>=é\\n"}}')).toBe("a\\'b\\\"c\\u003Cd\\u003E\\u003Dé\\u000A");
    expect(formatTemplate('{{urlquery "a b&c=d/é"}}')).toBe("a+b%26c%3Dd%2F%C3%A9");
    expect(formatTemplate("{{html .Missing}} {{print .Missing}}")).toBe("&lt;no value&gt; <nil>");
  });
});

describe("printf", () => {
  it("pads with widths like %-10s", () => {
    expect(formatTemplate('{{printf "%-10s|" .Name}}', { Name: "web" })).toBe("web       |");
    expect(formatTemplate('{{printf "%-5d|%5s|" 3 "日本"}}')).toBe("3    |   日本|");
  });

  it("supports Go's verbs and flags", () => {
    expect(
      formatTemplate('{{printf "%10s|%5d|%-5d|%05d|%x|%X|%o|%b|%q|%v|%t" .Name 42 42 -42 255 255 8 5 .Name .Name true}}', {
        Name: "web",
      }),
    ).toBe('       web|   42|42   |-0042|ff|FF|10|101|"web"|web|true');
    expect(formatTemplate('{{printf "%.2f %8.3f %-8.1f| %e %E %g %G %f" 3.14159 2.5 1.25 123456.789 0.000123 1e21 1e-7 1.0}}')).toBe(
      "3.14    2.500 1.2     | 1.234568e+05 1.230000E-04 1e+21 1E-07 1.000000",
    );
    expect(formatTemplate('{{printf "%08.3f|%-8.2f|%+.3e|%.3g|%.10g|%g" -3.14159 2.5 12345.678 0.000123456 1.0 100000000.0}}')).toBe(
      "-003.142|2.50    |+1.235e+04|0.000123|1|1e+08",
    );
    expect(formatTemplate('{{printf "%c %U %#U %q" 65 65 233 97}}')).toBe("A U+0041 U+00E9 'é' 'a'");
    expect(formatTemplate('{{printf "%.3s|%.0d|%5.0d|%.3d|%+05d" "héllo" 0 0 7 42}}')).toBe("hél||     |007|+0042");
    expect(formatTemplate('{{printf "%x|% x|%#x|%# x" "hi" "hi" "hi" "hi"}}')).toBe("6869|68 69|0x6869|0x68 0x69");
    expect(formatTemplate('{{printf "%+q %#q %#q" "héllo" "back`tick" "plain"}}')).toBe('"h\\u00e9llo" "back`tick" `plain`');
    expect(formatTemplate('{{printf "%[3]v %[1]v %v" 1 2 3}}')).toBe("3 1 2");
    expect(formatTemplate('{{printf "%*s|%-*s|" 5 "a" 4 "b"}}')).toBe("    a|b   |");
    expect(formatTemplate('{{printf "%T %T %T %T %T %T" 1 1.5 "s" true .A .M}}', { A: [1], M: { a: 1 } })).toBe(
      "int float64 string bool []interface {} map[string]interface {}",
    );
  });

  it("rounds fixed precision exactly, ties to even", () => {
    expect(formatTemplate('{{printf "%.0f %.0f %.0f %.1f %.2f" 0.5 1.5 2.5 0.05 1.005}}')).toBe("0 2 2 0.1 1.00");
  });

  it("formats slices and maps element by element", () => {
    expect(formatTemplate('{{printf "%v|%s|%d|%q" .A .B .A .B}}', { A: [1, 2], B: ["x", "y"] })).toBe('[1 2]|[x y]|[1 2]|["x" "y"]');
    expect(formatTemplate('{{printf "%v %#v %#v" .M .M .S}}', { M: { b: [1], a: "x" }, S: "q" })).toBe(
      'map[a:x b:[1]] map[string]interface {}{"a":"x", "b":[]interface {}{1}} "q"',
    );
  });

  it("reports bad verbs and arguments in the output, as fmt does", () => {
    expect(formatTemplate('{{printf "%s %d" .Name}}', { Name: "x" })).toBe("x %!d(MISSING)");
    expect(formatTemplate('{{printf "%s" .Name 3 "y"}}', { Name: "x" })).toBe("x%!(EXTRA int=3, string=y)");
    expect(formatTemplate('{{printf "%d %s %t" .Name 3 1}}', { Name: "x" })).toBe("%!d(string=x) %!s(int=3) %!t(int=1)");
    expect(formatTemplate('{{printf "%s %v" .Missing .Missing}}')).toBe("%!s(<nil>) <nil>");
    expect(formatTemplate('{{printf "100%%"}} {{printf "%"}} {{printf "%z" 1}}')).toBe("100% %!(NOVERB) %!z(int=1)");
    expect(formatTemplate('{{printf "%[5]v"}} {{printf "%.*f" -1 3.14159}}')).toBe("%!v(BADINDEX) %!(BADPREC)3.141590");
  });
});

describe("control structures", () => {
  it("if / else if / else", () => {
    const tpl = compileTemplate('{{if eq .State.Status "running"}}up{{else}}down{{end}}');
    expect(tpl.execute(container)).toBe("up");
    expect(tpl.execute({ State: { Status: "exited" } })).toBe("down");
    const chain = compileTemplate("{{if eq .N 1}}one{{else if eq .N 2}}two{{else}}many{{end}}");
    expect([1, 2, 7].map((N) => chain.execute({ N }))).toEqual(["one", "two", "many"]);
  });

  it("uses Go's truth: empty strings, arrays and maps are false", () => {
    const tpl = compileTemplate("{{if .}}t{{else}}f{{end}}");
    expect([0, 1, "", "x", [], [0], {}, { a: 1 }, null, false, true].map((v) => tpl.execute(v))).toEqual([
      "f", "t", "f", "t", "f", "t", "f", "t", "f", "f", "t",
    ]);
  });

  it("range over arrays, with index and element variables", () => {
    expect(formatTemplate("{{range .Mounts}}{{.Source}} {{end}}", container)).toBe("/srv/data /srv/logs ");
    expect(formatTemplate("{{range $i, $v := .A}}{{$i}}:{{$v}} {{end}}", { A: ["x", "y"] })).toBe("0:x 1:y ");
    expect(formatTemplate("{{range $v := .A}}{{$v}}{{end}}", { A: ["x", "y"] })).toBe("xy");
    expect(formatTemplate("{{range $i, $e := .A}}{{$.Name}}-{{$i}}-{{$e}} {{end}}", { A: ["p", "q"], Name: "n" })).toBe(
      "n-0-p n-1-q ",
    );
  });

  it("range over maps in sorted key order", () => {
    expect(formatTemplate("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}", { Labels: { z: "1", a: "2", M: "3" } })).toBe(
      "M=3;a=2;z=1;",
    );
    expect(formatTemplate("{{range .}}{{.}}{{end}}", { b: 1, a: 2, é: 3, z: 4 })).toBe("2143");
  });

  it("range runs {{else}} for empty or missing collections", () => {
    const tpl = compileTemplate("{{range .A}}x{{else}}empty{{end}}");
    expect(tpl.execute({ A: [] })).toBe("empty");
    expect(tpl.execute({ A: {} })).toBe("empty");
    expect(tpl.execute({})).toBe("empty");
  });

  it("range over an integer counts from zero (Go 1.22)", () => {
    expect(formatTemplate("{{range 3}}{{.}}{{end}}")).toBe("012");
    expect(errorOf("{{range $i, $v := .}}{{end}}", 3)).toContain("can't use 3 to iterate over more than one variable");
  });

  it("break and continue", () => {
    expect(formatTemplate("{{range .A}}{{if eq . 3}}{{break}}{{end}}{{.}}{{end}}", { A: [1, 2, 3, 4] })).toBe("12");
    expect(formatTemplate("{{range .A}}{{if eq . 2}}{{continue}}{{end}}{{.}}{{end}}", { A: [1, 2, 3] })).toBe("13");
  });

  it("range fails on values it cannot iterate", () => {
    expect(errorOf("{{range .S}}x{{end}}", { S: "abc" })).toBe(
      'template: :1:8: executing "" at <.S>: range can\'t iterate over abc',
    );
  });

  it("with sets dot and has an else branch", () => {
    expect(formatTemplate("{{with .State}}{{.Status}}{{end}} {{with .Missing}}x{{else}}none{{end}}", container)).toBe(
      "running none",
    );
  });

  it("variables: declaration, assignment and scope", () => {
    expect(formatTemplate("{{$x := 1}}{{$x}}{{$x = 2}}{{$x}}")).toBe("12");
    expect(formatTemplate("{{$n := 0}}{{range .A}}{{$n = .}}{{end}}{{$n}}", { A: [1, 5, 9] })).toBe("9");
    expect(formatTemplate("{{if $x := .A}}{{$x}}{{end}}", { A: "val" })).toBe("val");
    expect(formatTemplate("{{$x := 1}}{{with $x := 2}}{{$x}}{{end}}{{$x}}")).toBe("21");
    expect(formatTemplate("{{with .A}}{{$}}{{end}}", { A: 1 })).toBe("map[A:1]");
    expect(errorOf("{{range $i, $x := .A}}{{end}}{{$i}}", { A: [1] })).toBe('template: :1: undefined variable "$i"');
  });

  it("pipelines and parenthesised sub-pipelines", () => {
    expect(formatTemplate('{{.Name | printf "%q"}} {{.Name | lower | printf "%s!"}}', { Name: "WEB" })).toBe('"WEB" web!');
    expect(formatTemplate('{{"x" | printf "%s-%s" "y"}}')).toBe("y-x");
    expect(formatTemplate('{{.A | len | printf "%d items"}}', { A: [1, 2, 3] })).toBe("3 items");
    expect(formatTemplate("{{len .A | eq 3}}", { A: [1, 2, 3] })).toBe("true");
    expect(formatTemplate("{{(.).A}} {{(index .B 0).C}}", { A: "dotparen", B: [{ C: "deep" }] })).toBe("dotparen deep");
  });

  it("define, template and block", () => {
    expect(formatTemplate('{{define "T"}}[{{.}}]{{end}}{{template "T" .A}}{{template "T"}}', { A: "x" })).toBe(
      "[x][<no value>]",
    );
    expect(formatTemplate('{{block "B" .A}}<{{.}}>{{end}}', { A: "y" })).toBe("<y>");
    expect(errorOf('{{template "nope"}}')).toBe(
      'template: :1:11: executing "" at <{{template "nope"}}>: template "nope" not defined',
    );
    expect(errorOf('{{define "x"}}{{template "x" .}}{{end}}{{template "x" .}}')).toContain(
      "exceeded maximum template depth",
    );
  });
});

describe("trim markers, comments and literals", () => {
  it("trims spaces around actions", () => {
    expect(formatTemplate("a  {{- .X -}}  b", { X: "!" })).toBe("a!b");
    expect(formatTemplate("a\n  {{- .X}}\n b {{.X -}} \n\n c", { X: "!" })).toBe("a!\n b !c");
    expect(formatTemplate("{{if .A -}}\n  yes\n{{- else -}}\n  no\n{{- end}}", { A: false })).toBe("no");
  });

  it("does not take {{-3}} for a trim marker", () => {
    expect(formatTemplate("{{-3}} {{- 3}} {{3 -}} x")).toBe("-33 3x");
  });

  it("drops comments", () => {
    expect(formatTemplate("x {{/* c */}} y {{- /* c */ -}} z")).toBe("x  yz");
    expect(formatTemplate("{{/* multi\nline */}}ok")).toBe("ok");
  });

  it("reads Go literals", () => {
    expect(
      formatTemplate("{{\"a\\tb\\u00e9\\x41\"}} {{`raw\\t`}} {{'a'}} {{0x10}} {{0o17}} {{0b101}} {{017}} {{1_000}} {{1.5e3}} {{.5}} {{+3}} {{true}}"),
    ).toBe("a\tbéA raw\\t 97 16 15 5 15 1000 1500 0.5 3 true");
  });

  it("allows newlines inside actions", () => {
    expect(formatTemplate('x\n{{.A\n| printf\n"%s"}}', { A: "q" })).toBe("x\nq");
  });
});

describe("function-valued properties act as Go methods", () => {
  const row = {
    labels: { "com.example": "v1" } as Record<string, string>,
    Label(key: string): string {
      return this.labels[key] ?? "";
    },
    Names: () => "web",
    Join: (a: string, b: string) => a + b,
    Boom(): string {
      throw new Error("kaboom");
    },
    Adder: () => (a: number, b: number) => a + b,
  };

  it("calls them with the template's arguments", () => {
    expect(formatTemplate('{{.Label "com.example"}} {{.Names}} {{"y" | .Join "x"}}', row)).toBe("v1 web xy");
    expect(formatTemplate("{{call .Adder 1 2}}", row)).toBe("3");
  });

  it("reports wrong arity and thrown errors", () => {
    expect(errorOf("{{.Label}}", row)).toBe('template: :1:2: executing "" at <.Label>: wrong number of args for Label: want 1 got 0');
    expect(errorOf("{{.Boom}}", row)).toBe('template: :1:2: executing "" at <.Boom>: error calling Boom: kaboom');
  });

  it("leaves them out of printed maps and JSON", () => {
    expect(formatTemplate("{{.}} {{json .}}", { A: 1, F: () => 2 })).toBe('map[A:1] {"A":1}');
  });
});

describe("parse errors", () => {
  const cases: [string, string][] = [
    ["{{.ID}", "template: :1: bad character U+007D '}'"],
    ["{{.ID }", 'template: :1: unexpected "}" in operand'],
    ["{{.ID", "template: :1: unclosed action"],
    ["{{if .A}}", "template: :1: unexpected EOF"],
    ["{{end}}", "template: :1: unexpected {{end}}"],
    ["{{else}}", "template: :1: unexpected {{else}}"],
    ["{{foo .}}", 'template: :1: function "foo" not defined'],
    ["{{$x}}", 'template: :1: undefined variable "$x"'],
    ["x {{/* c }}", "template: :1: unclosed comment"],
    ["x {{/* c */ }}", "template: :1: comment ends before closing delimiter"],
    ["{{ /* c */ }}", 'template: :1: unexpected "/" in command'],
    ["{{}}", "template: :1: missing value for command"],
    ["{{.A | 3}}", "template: :1: non executable command in pipeline stage 2"],
    ["{{(.A}}", "template: :1: unclosed left paren"],
    ["{{.A)}}", "template: :1: unexpected right paren"],
    ['{{"abc}}', "template: :1: unterminated quoted string"],
    ["{{3x}}", 'template: :1: bad number syntax: "3x"'],
    ["{{089}}", 'template: :1: integer overflow: "089"'],
    ['{{"\\q"}}', "template: :1: invalid syntax"],
    ["{{.A-b}}", "template: :1: bad character U+002D '-'"],
    ["{{if}}{{end}}", "template: :1: missing value for if"],
    ["{{range $a, $b, $c := .}}{{end}}", "template: :1: too many declarations in range"],
    ["{{range .}}{{else}}{{else}}{{end}}", "template: :1: expected end; found {{else}}"],
    ["{{break}}", "template: :1: {{break}} outside {{range}}"],
    ['{{"x".y}}', 'template: :1: unexpected . after term "\\"x\\""'],
    ["{{.x €}}", "template: :1: unrecognized character in action: U+20AC '€'"],
    ["line1\n{{.A\n\n", "template: :4: unclosed action started at :2"],
    ["line1\n{{if .A}}\nfoo\n{{end}", "template: :4: bad character U+007D '}'"],
    ['{{define "a"}}x{{end}}{{define "a"}}y{{end}}', 'template: :1: template: multiple definition of template "a"'],
    ["{{$x := 1}}{{$x :}}", "template: :1: expected :="],
  ];
  it.each(cases)("%j fails with Go's message", (src, message) => {
    let thrown: unknown;
    try {
      compileTemplate(src);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(TemplateError);
    expect((thrown as TemplateError).message).toBe(message);
    expect((thrown as TemplateError).phase).toBe("parse");
  });
});

describe("execution errors", () => {
  it("carry line, byte column and the failing expression", () => {
    expect(errorOf("a\nb {{index .A 9}}", { A: [1] })).toBe(
      'template: :2:4: executing "" at <index .A 9>: error calling index: index out of range: 9',
    );
    expect(errorOf("é日本 {{.A.B}}", { A: null })).toBe(
      'template: :1:13: executing "" at <.A.B>: nil pointer evaluating interface {}.B',
    );
    expect(errorOf("{{nil}}")).toBe('template: :1:2: executing "" at <nil>: nil is not a command');
    expect(errorOf("{{1 2}}")).toBe('template: :1:2: executing "" at <1>: can\'t give argument to non-function 1');
  });

  it("are TemplateErrors in the execute phase", () => {
    const tpl = compileTemplate("{{.A.B}}");
    expect(() => tpl.execute({ A: "x" })).toThrow(TemplateError);
    try {
      tpl.execute({ A: "x" });
    } catch (error) {
      expect((error as TemplateError).phase).toBe("execute");
      expect((error as TemplateError).name).toBe("TemplateError");
    }
  });
});

describe("compiled templates", () => {
  it("can be executed many times", () => {
    const tpl = compileTemplate("{{.ID}}:{{.Names}}");
    expect(tpl).toBeInstanceOf(Template);
    expect(tpl.source).toBe("{{.ID}}:{{.Names}}");
    const rows = Array.from({ length: 2000 }, (_, i) => ({ ID: i, Names: `n${i}` }));
    const out = rows.map((row) => tpl.execute(row));
    expect(out[0]).toBe("0:n0");
    expect(out[1999]).toBe("1999:n1999");
  });
});

describe("table formats", () => {
  it("recognises Docker's table prefix and prepares the template like docker/cli", () => {
    expect(isTableFormat("table {{.ID}}")).toBe(true);
    expect(isTableFormat("{{.ID}}")).toBe(false);
    expect(parseTableFormat("table {{.ID}}\\t{{.Name}}")).toEqual({ isTable: true, template: "{{.ID}}\t{{.Name}}" });
    expect(parseTableFormat("  {{.ID}}\\n ")).toEqual({ isTable: false, template: "{{.ID}}\n" });
    expect(parseTableFormat("json")).toEqual({ isTable: false, template: "{{json .}}" });
  });

  it("renders a header and rows aligned like docker ps", () => {
    const rows = [
      { ID: "abc123", Image: "busybox", Names: "web" },
      { ID: "def", Image: "nginx:latest", Names: "db" },
    ];
    const headers = { ID: "CONTAINER ID", Image: "IMAGE", Names: "NAMES" };
    expect(renderTable("table {{.ID}}\t{{.Image}}\t{{.Names}}", rows, headers)).toBe(
      "CONTAINER ID   IMAGE          NAMES\n" + "abc123         busybox        web\n" + "def            nginx:latest   db\n",
    );
  });

  it("keeps columns at least 10 wide and accepts the format without its prefix", () => {
    expect(renderTable("{{.ID}}\\t{{.Name}}", [{ ID: "a", Name: "b" }], { ID: "ID", Name: "NAME" })).toBe(
      "ID        NAME\na         b\n",
    );
  });

  it("prints only the header when there are no rows", () => {
    expect(renderTable("table {{.ID}}\t{{.Name}}", [], { ID: "ID", Name: "NAME" })).toBe("ID        NAME\n");
  });

  it("leaves headers untouched by json, upper and friends, but pads them", () => {
    const out = renderTable("table {{upper .Name}}\t{{json .Labels}}\t{{pad .ID 1 0}}", [{ Name: "web", Labels: { a: "1" }, ID: "x" }], {
      Name: "NAME",
      Labels: "LABELS",
      ID: "ID",
    });
    expect(out).toBe('NAME      LABELS       ID\nWEB       {"a":"1"}    x\n');
  });

  it("keeps the header printed before a header error, as Docker does", () => {
    expect(renderTable("table {{.ID}}\t{{json .Missing}}", [{ ID: "abc" }], { ID: "CONTAINER ID" })).toBe(
      "CONTAINER ID   \nabc            null\n",
    );
  });

  it("throws when a row fails", () => {
    expect(() => renderTable("table {{.A.B}}", [{ A: "x" }], { A: "A" })).toThrow(TemplateError);
  });

  it("aligns wide characters by display width", () => {
    expect(alignColumns("名前\tx\nab\ty\n")).toBe("名前      x\nab        y\n");
  });

  it("aligns like Go's tabwriter: a column ends where a line lacks that cell", () => {
    expect(alignColumns("aaaa\tbbb\td\naa\tb\tdd\na\t\naa\tcccc\teee\n")).toBe(
      "aaaa      bbb       d\naa        b         dd\na         \naa        cccc      eee\n",
    );
    expect(alignColumns("no newline\tat end")).toBe("no newline   at end");
  });
});
