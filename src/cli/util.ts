// Small helpers shared by the command files.
import type { Command } from "commander";

/** commander collector for repeatable options (-e A -e B). */
export const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Subcommands exit on commander errors too (the top-level handler maps them to 125). */
export function subcommand(program: Command, name: string): Command {
  return program.command(name).exitOverride();
}
