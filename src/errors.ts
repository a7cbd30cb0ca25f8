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
