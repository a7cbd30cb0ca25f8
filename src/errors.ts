// Errors that carry the exit status the CLI should end with, following Docker's conventions:
// 125 for tsrun's own errors, 126 when the command cannot be invoked, 127 when it is not found.
export class TsrunError extends Error {
  constructor(
    message: string,
    readonly exitCode = 125,
  ) {
    super(message);
    this.name = "TsrunError";
  }
}

export class NotFoundError extends TsrunError {}

/**
 * Node's system error text ("ENOSPC: no space left on device, write '/x'") as a person reads it
 * ("no space left on device (write /x)"), wherever it sits in a message.
 */
export function plainSystemErrors(message: string): string {
  return message.replace(/\b(E[A-Z0-9]+): ([^,\n]+?), (\w+)(?: '([^']*)')?(?: -> '([^']*)')?(?=$|[\s;)])/g, (_m, _code: string, text: string, syscall: string, file?: string, dest?: string) => {
    const where = [syscall, file, dest ? `-> ${dest}` : undefined].filter(Boolean).join(" ");
    return `${text} (${where})`;
  });
}
