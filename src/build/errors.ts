// The errors a build ends with, apart from bad flags. Kept apart from the builder so that the
// CLI and library users can name them without loading the builder.
import { TsrunError } from "../errors.js";

/** A build that failed: Docker's `build` exits with status 1 for these. */
export class BuildError extends TsrunError {
  constructor(message: string) {
    super(message, 1);
    this.name = "BuildError";
  }
}

/** The build was interrupted (SIGINT/SIGTERM): nothing was written but finished steps' layers. */
export class BuildCancelledError extends TsrunError {
  constructor(signal: NodeJS.Signals) {
    super(`build cancelled (${signal})`, signal === "SIGINT" ? 130 : 143);
    this.name = "BuildCancelledError";
  }
}
