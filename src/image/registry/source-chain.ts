// Where a pull reads from: the mirrors registries.conf names for the image, then the registry
// itself (registries-conf.ts's pullSources). The first source that serves the manifest is the
// one a pull reads everything from; when it then fails to serve one manifest, config or blob
// (it lacks it, it is down, it answers 5xx or 429), that one thing is asked of the sources
// after it, in order, as containers/image falls back per blob: a partial mirror still serves
// what it has. Content is addressed by digest, so a download that broke off is resumed from the
// next source where it stopped. An authentication failure or a local problem (certs.d, an auth
// file) is not a missing blob: it fails at once.
import { TsrunError } from "../../errors.js";
import { lookupCredentials } from "./auth.js";
import { RegistryClient, RegistryError } from "./client.js";
import type { PullSource } from "./registries-conf.js";

export interface SourceOptions {
  tlsVerify?: boolean | undefined;
  authFile?: string | undefined;
}

/** One source, ready to ask: its client and the repository path there. */
export interface OpenSource {
  client: RegistryClient;
  path: string;
  source: PullSource;
}

/** Network failures worth another request (the rest of a blob is asked for with Range). */
export function isTransient(err: unknown): boolean {
  if (err instanceof TsrunError) return false;
  const code = (err as NodeJS.ErrnoException).code ?? "";
  return code === "ECONNRESET" || code === "ETIMEDOUT" || code === "EPIPE" || code === "ECONNREFUSED" || (err as Error).message === "aborted";
}

/** Whether another source may serve what this one could not: it lacks it, is down or is overloaded. */
export function mayFallBack(err: unknown): boolean {
  if (!(err instanceof RegistryError)) return isTransient(err);
  return err.status === 0 || err.status === 404 || err.status === 429 || err.status >= 500;
}

/** "what: message (also tried: a: ...; b: ...)": the first source's error with what the others said. */
export function withOthers(first: unknown, others: string[]): unknown {
  if (others.length === 0 || !(first instanceof RegistryError)) return first;
  return new RegistryError(`${first.message} (also tried: ${others.join("; ")})`, first.status, first.code);
}

export class SourceChain {
  private readonly open = new Map<number, OpenSource>();
  /** The source everything is read from first (the one that served the manifest). */
  private first = 0;

  constructor(
    readonly sources: PullSource[],
    private readonly opts: SourceOptions,
  ) {}

  /** The source at index i, its client made on first use. */
  at(i: number): OpenSource {
    let open = this.open.get(i);
    if (!open) {
      const source = this.sources[i] as PullSource;
      const client = new RegistryClient(source.domain, { tlsVerify: this.opts.tlsVerify ?? !source.insecure, credentials: lookupCredentials(source.domain, this.opts.authFile) });
      client.addScope(`repository:${source.path}:pull`);
      open = { client, path: source.path, source };
      this.open.set(i, open);
    }
    return open;
  }

  /**
   * The manifest the image is pulled by, from the first source that serves it; from then on
   * that source is the one read from first. When every source fails, the error is the
   * registry's (the last source), with what each mirror said.
   */
  async openFirst<T>(context: string, op: (source: OpenSource) => Promise<T>): Promise<T> {
    const mirrorErrors: string[] = [];
    for (let i = 0; i < this.sources.length; i++) {
      const source = this.at(i);
      try {
        const result = await op(source);
        this.first = i;
        return result;
      } catch (err) {
        this.drop(i);
        // A local configuration problem (a bad auth file, proxy or certs.d) is the same for every source.
        if (!source.source.mirror || !(err instanceof RegistryError)) {
          if (err instanceof RegistryError && mirrorErrors.length > 0) throw new RegistryError(`${err.message} (mirrors also failed: ${mirrorErrors.join("; ")})`, err.status, err.code);
          throw err;
        }
        mirrorErrors.push(`${source.source.domain}: ${stripContext(err.message, context)}`);
      }
    }
    throw new RegistryError(`${context}: no source to pull from`);
  }

  /**
   * Runs op against the source the manifest came from, then against each later source while
   * the failure is one another source may not have (mayFallBack). The error, when all fail, is
   * the first source's, with what the others said.
   */
  async read<T>(context: string, op: (source: OpenSource) => Promise<T>): Promise<T> {
    let firstError: unknown;
    const others: string[] = [];
    for (let i = this.first; i < this.sources.length; i++) {
      try {
        return await op(this.at(i));
      } catch (err) {
        if (!mayFallBack(err)) throw err;
        if (firstError === undefined) firstError = err;
        else others.push(`${this.sources[i]?.domain}: ${stripContext((err as Error).message, context)}`);
      }
    }
    throw withOthers(firstError, others);
  }

  /** The source read from first (a download's own loop walks on from there). */
  get firstIndex(): number {
    return this.first;
  }

  private drop(i: number): void {
    this.open.get(i)?.client.close();
    this.open.delete(i);
  }

  close(): void {
    for (const open of this.open.values()) open.client.close();
    this.open.clear();
  }
}

export function stripContext(message: string, context: string): string {
  return message.startsWith(`${context}: `) ? message.slice(context.length + 2) : message;
}
