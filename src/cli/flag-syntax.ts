// Docker's flag parser (pflag) takes "--flag=true" and "--flag=false" for boolean flags, and
// scripts and tools that generate docker command lines write them (`--rm=true`, `--tty=false`,
// `--detach=false`, `--no-trunc=true`); commander takes bare boolean flags only. This rewrites
// them before parsing: "=true" to the bare flag, "=false" to nothing (every boolean flag here is
// off unless given). A value-taking short flag's "-n=3" is pflag's "-n 3". Only the options before a command's first argument are looked at: what
// follows an image is the container's own command line.
import type { Command, Option } from "commander";

const TRUE = /^(true|1|t)$/i;
const FALSE = /^(false|0|f)$/i;

const takesValue = (o: Option): boolean => o.required || o.optional;

export function normalizeBooleanFlags(program: Command, argv: readonly string[]): string[] {
  const args = argv.slice(2);
  const out = argv.slice(0, 2);
  let command = program;
  let i = 0;
  // The command path: "image ls", "container run", ...
  for (; i < args.length; i++) {
    const sub = command.commands.find((c) => c.name() === args[i] || c.aliases().includes(args[i] as string));
    if (!sub) break;
    command = sub;
    out.push(args[i] as string);
  }
  const byLong = new Map(command.options.filter((o) => o.long).map((o) => [o.long as string, o]));
  const byShort = new Map(command.options.filter((o) => o.short).map((o) => [o.short as string, o]));
  for (; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === "--" || !arg.startsWith("-") || arg === "-") break;
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq < 0 ? arg : arg.slice(0, eq);
      const option = byLong.get(name);
      if (option && !takesValue(option) && eq >= 0) {
        const value = arg.slice(eq + 1);
        if (TRUE.test(value)) out.push(name);
        else if (!FALSE.test(value)) out.push(arg); // commander says what is wrong with it
        continue;
      }
      out.push(arg);
      if (option?.required && eq < 0 && i + 1 < args.length) out.push(args[++i] as string);
      continue;
    }
    const shortValue = /^(-[a-zA-Z])=(.*)$/s.exec(arg);
    const shortOption = shortValue ? byShort.get(shortValue[1] as string) : undefined;
    if (shortValue && shortOption && !takesValue(shortOption)) {
      if (TRUE.test(shortValue[2] as string)) out.push(shortValue[1] as string);
      else if (!FALSE.test(shortValue[2] as string)) out.push(arg);
      continue;
    }
    // pflag's "-n=3" is "-n 3" (commander would take "=3" as the value).
    if (shortValue && shortOption?.required) {
      out.push(shortValue[1] as string, shortValue[2] as string);
      continue;
    }
    // Short flags, alone or bundled ("-it", "-e KEY=V"): a value-taking flag last in the bundle
    // takes the next argument; one first with more letters after it has its value attached.
    out.push(arg);
    const last = byShort.get(`-${arg.slice(-1)}`);
    const first = byShort.get(arg.slice(0, 2));
    const attached = arg.length > 2 && first !== undefined && takesValue(first);
    if (!attached && last?.required && i + 1 < args.length) out.push(args[++i] as string);
  }
  out.push(...args.slice(i));
  return out;
}
