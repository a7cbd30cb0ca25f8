// Docker's "--flag=true|false" syntax for boolean flags, rewritten for commander.
import { describe, expect, it } from "vitest";
import { Command } from "commander";
import { normalizeBooleanFlags } from "../../src/cli/flag-syntax.js";

function program(): Command {
  const p = new Command("tsrun");
  p.command("run")
    .option("-i, --interactive")
    .option("-t, --tty")
    .option("--rm")
    .option("-e, --env <kv>")
    .option("--name <name>")
    .option("--no-healthcheck")
    .argument("<image>")
    .argument("[command...]");
  const image = p.command("image");
  image.command("ls").option("-a, --all").option("--no-trunc");
  return p;
}

const norm = (...args: string[]): string[] => normalizeBooleanFlags(program(), ["node", "tsrun", ...args]).slice(2);

describe("--flag=true|false", () => {
  it("rewrites boolean flags before the first argument, long and short", () => {
    expect(norm("run", "--rm=true", "--tty=false", "-i=true", "--no-healthcheck=TRUE", "img", "cmd")).toEqual(["run", "--rm", "-i", "--no-healthcheck", "img", "cmd"]);
    expect(norm("image", "ls", "--no-trunc=true", "-a=false")).toEqual(["image", "ls", "--no-trunc"]);
  });

  it("takes pflag's -X=VALUE for a short flag with a value (ps -n=3, -f=status=exited)", () => {
    expect(norm("run", "-e=A=1", "img", "-e=B")).toEqual(["run", "-e", "A=1", "img", "-e=B"]);
    expect(norm("run", "-e=", "img")).toEqual(["run", "-e", "", "img"]);
  });

  it("leaves values, the container's command line and unknown spellings alone", () => {
    expect(norm("run", "-e", "--rm=true", "--name=x", "-it", "img", "sh", "-c", "--rm=false")).toEqual(["run", "-e", "--rm=true", "--name=x", "-it", "img", "sh", "-c", "--rm=false"]);
    expect(norm("run", "-eX=1", "--rm=maybe", "img")).toEqual(["run", "-eX=1", "--rm=maybe", "img"]);
    expect(norm("run", "--", "--rm=true")).toEqual(["run", "--", "--rm=true"]);
  });
});
